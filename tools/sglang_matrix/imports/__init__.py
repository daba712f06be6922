"""`sglang-matrix audit --imports`: a static (ast) walk of sglang's module-level import closure, checked
against the modules that a variant's distributions provide.

walk: parse a wheel's modules and follow the imports that run when an entry module is imported.
dists: the distributions of a variant's closure and the modules each provides (an installed environment,
the spec's wheels and `[module-distributions]`).
report: one variant's findings, as rich tables and JSON.
"""
