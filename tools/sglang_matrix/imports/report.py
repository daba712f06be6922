"""One variant's import audit: every module sglang imports from outside itself, against its closure.

hard     an import that runs whenever an entry module is imported (module level, or under a
         module-level `if` the spec does not call optional), of a module no distribution of the
         closure provides; also an entry module the wheel lacks
warning  what cannot be settled: no environment to follow dependencies with, a source that does not
         parse, a spec entry (optional-imports, module-distributions) that the data contradicts
info     imports of unprovided modules that need not succeed: under try/except ImportError, inside
         functions, under `__main__`, or conditional and acknowledged in `optional-imports`
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from packaging.utils import canonicalize_name

from ..spec import Line, Spec, Wheel
from ..variants import Variant
from .dists import Closure, Environment, guess_distribution, module_distributions, stdlib_modules
from .walk import ORDER, Reach, Site, Walk

Severity = Literal["hard", "warning", "info"]


@dataclass
class ImportFinding:
    severity: Severity
    module: str
    # The surest way it is imported (module, conditional, guarded, main, function), or what is wrong with
    # the wheel itself: entry (an entry module it lacks), unresolved (an import of its own name it lacks),
    # parse (a source that does not parse); also optional and mapping (spec entries the data contradicts).
    kind: str
    message: str
    reaches: list[Reach] = field(default_factory=list)  # import-time reaches, one per entry, entry order
    sites: list[Site] = field(default_factory=list)  # imports that do not run on import (function, main)
    distribution: str | None = None
    dropped: dict[str, str] | None = None  # {"wheel": attr, "reason": ...}

    @property
    def chain(self) -> tuple[Site, ...]:
        return self.reaches[0].chain if self.reaches else ()

    @property
    def entry(self) -> str | None:
        return self.reaches[0].entry if self.reaches else None

    def to_json(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "module": self.module,
            "kind": self.kind,
            "message": self.message,
            "distribution": self.distribution,
            "dropped": self.dropped,
            "entry": self.entry,
            "chain": [s.to_json() for s in self.chain],
            "reaches": [r.to_json() for r in self.reaches],
            "sites": [s.to_json() for s in self.sites],
        }


@dataclass
class VariantImports:
    variant: Variant
    wheel_file: str
    env: Environment | None
    closure: Closure
    findings: list[ImportFinding]
    provided: dict[str, list[str]]  # third-party top-level module -> closure distributions providing it
    dependency_only: list[dict[str, Any]]
    type_checking_only: list[str]
    modules_walked: int

    def count(self, severity: Severity) -> int:
        return sum(1 for f in self.findings if f.severity == severity)

    @property
    def ok(self) -> bool:
        return self.count("hard") == 0

    def signature(self) -> str:
        """Equal for variants whose reports read the same (for grouping in human output)."""
        return "\n".join(
            sorted(f"{f.severity}|{f.module}|{f.kind}|{f.message}" for f in self.findings)
            + [f"dep|{d['distribution']}" for d in self.dependency_only]
            + [f"unknown|{name}" for name in self.closure.unknown_deps]
        )

    def summary_json(self) -> dict[str, Any]:
        """The variant's own part of the report (its result is shared with variants that read the same)."""
        v = self.variant
        return {
            "variant": v.name,
            "line": v.line,
            "system": v.system,
            "python": v.python,
            "cuda": v.cuda,
            "ok": self.ok,
            "counts": {
                "hard": self.count("hard"),
                "warning": self.count("warning"),
                "info": self.count("info"),
                "modules_walked": self.modules_walked,
                "third_party_provided": len(self.provided),
                "distributions": len(self.closure.dists),
            },
        }

    def result_json(self) -> dict[str, Any]:
        """Everything found: findings with their chains, what provides each module, the closure."""
        return {
            "wheel": self.wheel_file,
            "python": self.variant.python,
            "system": self.variant.system,
            "findings": [f.to_json() for f in self.findings],
            "provided": self.provided,
            "dependency_only": self.dependency_only,
            "type_checking_only": self.type_checking_only,
            "distributions": [d.to_json() for d in self.closure.dists.values()],
            "dependencies_unknown": self.closure.unknown_deps,
            "notes": self.closure.notes,
        }


def dropped_by(line: Line, dist: str) -> dict[str, str] | None:
    for attr, wheel in line.wheels.items():
        for name, reason in wheel.dropped.items():
            if canonicalize_name(name) == dist:
                return {"wheel": attr, "reason": reason}
    return None


def analyse(
    spec: Spec,
    variant: Variant,
    wheel: Wheel,
    wheel_file: str,
    walk: Walk,
    own: frozenset[str],
    closure: Closure,
    env: Environment | None,
) -> VariantImports:
    """Check every module the walk found against the closure's distributions."""
    line = spec.lines[variant.line]
    stdlib = stdlib_modules(variant.python)
    findings: list[ImportFinding] = []
    provided: dict[str, list[str]] = {}
    dependency_only: dict[str, dict[str, Any]] = {}
    type_checking_only: list[str] = []
    order = {e: i for i, e in enumerate(walk.entries)}

    def by_sureness(per_entry: dict[str, Reach]) -> list[Reach]:
        return sorted(per_entry.values(), key=lambda r: (ORDER.index(r.kind), order[r.entry]))

    for entry in walk.missing_entries:
        message = f"{entry}: an entry module of the spec, but {wheel_file} has no such module"
        findings.append(ImportFinding("hard", entry, "entry", message))
    for error in walk.parse_errors:
        findings.append(ImportFinding("warning", error.split(":")[0], "parse", error))
    for dotted, per_entry in sorted(walk.unresolved.items()):
        reaches = by_sureness(per_entry)
        severity: Severity = "hard" if reaches[0].kind == "module" else "info"
        message = f"{dotted}: imported ({reaches[0].site.where}), but {wheel_file} has no such module"
        findings.append(ImportFinding(severity, dotted, "unresolved", message, reaches))

    for module in sorted(set(walk.external) | set(walk.deferred)):
        if module in stdlib or module in own or module == "__main__":
            continue
        reaches = by_sureness(walk.external.get(module, {}))
        deferred = [s for s in walk.deferred.get(module, []) if s.kind != "type-checking"]
        if not reaches and not deferred:
            type_checking_only.append(module)
            continue
        providers = closure.providers(module)
        if providers:
            provided[module] = [d.name for d in providers]
            needed = reaches and reaches[0].kind in ("module", "conditional")
            if needed and all(d.origin == "dependency" for d in providers):
                for d in providers:
                    item = dependency_only.setdefault(d.name, {"distribution": d.name, "via": d.via})
                    item.setdefault("modules", []).append({"module": module, **reaches[0].to_json()})
            continue
        findings.append(_missing(spec, line, wheel, module, reaches, deferred, env, closure))

    findings += _spec_checks(spec, line, wheel, wheel_file, provided, findings, env)
    rank = {"hard": 0, "warning": 1, "info": 2}
    findings.sort(key=lambda f: (rank[f.severity], f.module))
    return VariantImports(
        variant,
        wheel_file,
        env,
        closure,
        findings,
        provided,
        sorted(dependency_only.values(), key=lambda d: d["distribution"]),
        type_checking_only,
        walk.modules,
    )


def _missing(
    spec: Spec,
    line: Line,
    wheel: Wheel,
    module: str,
    reaches: list[Reach],
    deferred: list[Site],
    env: Environment | None,
    closure: Closure,
) -> ImportFinding:
    """The finding for a module that no distribution of the closure provides."""
    installed = env.providers(module) if env is not None else []
    mapped = module_distributions(spec, line).get(module)
    dist = installed[0] if installed else canonicalize_name(mapped) if mapped else guess_distribution(module)
    dropped = dropped_by(line, dist)
    if dropped:
        why = f"{dist} is dropped by wheels.{dropped['wheel']} ({dropped['reason']})"
    elif installed or mapped:
        why = f"{dist} is not in the closure"
    else:
        why = "no distribution of the closure provides it"
    if installed:
        why += f" (the environment has {', '.join(installed)}, outside the variant's closure)"
    kind = reaches[0].kind if reaches else min((s.kind for s in deferred), key=ORDER.index)
    hop = reaches[0].decisive if reaches else deferred[0]
    where, condition = hop.where, hop.condition

    def finding(severity: Severity, message: str) -> ImportFinding:
        return ImportFinding(severity, module, kind, message, reaches, deferred, dist, dropped)

    if kind == "module" or kind == "conditional":
        if kind == "conditional" and module in wheel.optional_imports:
            return finding(
                "info",
                f"{module}: imported only under `{condition}` ({where}); "
                f"optional: {wheel.optional_imports[module]}",
            )
        if env is None and dropped is None:
            return finding(
                "warning",
                f"{module}: imported at module level ({where}); no distribution of the closure is known "
                "to provide it, and without --env their dependencies are not followed",
            )
        if kind == "conditional":
            return finding(
                "hard",
                f"{module}: imported under `{condition}` ({where}), and {why}; if that is "
                f"optional, say why in wheels.{wheel.attr}.optional-imports",
            )
        return finding("hard", f"{module}: imported at module level ({where}), and {why}")
    what = {
        "guarded": f"under `{condition}`",
        "main": "under `if __name__ == '__main__'`",
        "function": "inside functions only",
    }[kind]
    return finding("info", f"{module}: imported {what} ({where}); {why}")


def _spec_checks(
    spec: Spec,
    line: Line,
    wheel: Wheel,
    wheel_file: str,
    provided: dict[str, list[str]],
    findings: list[ImportFinding],
    env: Environment | None,
) -> list[ImportFinding]:
    """Spec entries the data contradicts: stale optional-imports, wrong module-distributions."""
    out = []
    for module, reason in wheel.optional_imports.items():
        if module in provided:
            message = (
                f"optional-imports.{module} ({reason}): provided after all, by {', '.join(provided[module])}"
            )
            out.append(ImportFinding("info", module, "optional", message))
        elif not any(f.module == module for f in findings):
            message = (
                f"optional-imports.{module}: {wheel_file} does not import it when its entry modules load"
            )
            out.append(ImportFinding("warning", module, "optional", message))
    if env is not None:
        for module, dist in module_distributions(spec, line).items():
            name = canonicalize_name(dist)
            if name in env.dists and module not in env.dists[name].modules:
                has = ", ".join(sorted(env.dists[name].modules)) or "no module"
                table = (
                    "module-distributions"
                    if module not in line.module_distributions
                    else (f'lines."{line.name}".module-distributions')
                )
                message = f"{table}.{module} = {dist}: the environment's {dist} provides {has}"
                out.append(ImportFinding("warning", module, "mapping", message))
    return out
