"""The generated CI workflow, .github/workflows/matrix.yml, and its actionlint config.

Registered with render.EXTRA_RENDERERS on import, so `sglang-matrix render` writes it and `render --check`
catches drift. Jobs: `eval` (GitHub-hosted: flake check, render/lock --check), `build` (one self-hosted
Nix builder per variant, pushing to a Cachix binary cache) and `smoke` (one self-hosted GPU runner per
variant, substituting the build from that cache). Runner labels:

  build   self-hosted, nix, big-parallel, gccarch-<march>, X64 | ARM64 (the variant's system)
  smoke   self-hosted, nix, gpu, sm<capability> (sm90 for capability 9.0, ...), gccarch-<march>, X64 | ARM64

gccarch-<march> is the variant's ISA as nixpkgs' system feature names it (matrix.toml [isas.*] gcc-arch,
gccarch-x86-64-v4 for avx512): torch and the builds that import it run the ISA's code, and so does the
smoke test, so both runners' CPUs must have it. A variant whose ISA names no gcc-arch gets `nix` there
(a label every runner has).

A variant without an ISA (a line whose torch is a prebuilt wheel: it runs on any CPU of its system) has
jobs of its own, `build-any-cpu` and `smoke-any-cpu`, with neither gccarch-<march> nor, for the build,
big-parallel (it compiles no torch; `plan` lists what it builds, NCCL, with no system feature):

  build-any-cpu   self-hosted, nix, X64 | ARM64
  smoke-any-cpu   self-hosted, nix, gpu, sm<capability>, X64 | ARM64

The smoke runner needs the variant's system too: an aarch64-linux variant (GH200: sm90, ARM64) exists only
under the flake's aarch64-linux packages, so an x86_64 H100 runner must not pick it up, nor a GH200 runner
an x86_64 one.

A fat target with several capabilities (`all`) is smoke-tested on the runner label of one capability it
holds: the default variant's SM when the target covers it (sm90 here), else its newest. The per-SM
variants cover the other SMs; a runner of an SM the fat build lacks (sm61) must never pick it up, which a
bare `gpu` label would allow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

from . import escape, render
from .errors import UserError
from .plan import ci_timeout_minutes, make_plan
from .spec import Spec
from .variants import Variant

WORKFLOW = Path(".github") / "workflows" / "matrix.yml"
ACTIONLINT_CONFIG = Path(".github") / "actionlint.yaml"
TEMPLATE = "workflow.yml.j2"
ARCH_LABELS = {"x86_64-linux": "X64", "aarch64-linux": "ARM64"}


def sm_label(capability: str) -> str:
    return "sm" + capability.replace(".", "")


def smoke_label(spec: Spec, v: Variant) -> str:
    caps = v.capabilities
    if len(caps) == 1:
        return sm_label(caps[0])
    default = next(
        (x for x in _variants(spec) if spec.default_variant in (x.name, x.long_name)),
        None,
    )
    if default is not None and len(default.capabilities) == 1 and default.capabilities[0] in caps:
        return sm_label(default.capabilities[0])
    return sm_label(max(caps, key=lambda c: tuple(int(p) for p in c.split("."))))


def _variants(spec: Spec) -> list[Variant]:
    from .variants import resolve_variants

    return resolve_variants(spec)


def gccarch_label(v: Variant) -> str:
    return f"gccarch-{v.gcc_arch}" if v.gcc_arch else "nix"


def context(spec: Spec, variants: list[Variant]) -> dict[str, Any]:
    plan = make_plan(spec)
    by_name = {v.name: v for v in plan.variants}
    entries: list[dict[str, Any]] = []
    any_cpu: list[dict[str, Any]] = []
    for v in variants:
        arch = ARCH_LABELS.get(v.system)
        if arch is None:
            raise UserError(f"{WORKFLOW}: no runner label for system {v.system!r} (variant {v.name})")
        entry = {
            "name": v.name,
            "system": v.system,
            "target": v.target,
            "arch": arch,
            "sm": smoke_label(spec, v),
            "timeout": ci_timeout_minutes(plan, by_name[v.name]),
        }
        if v.isa is None:
            any_cpu.append(entry)
        else:
            entries.append({**entry, "isa": v.isa, "gccarch": gccarch_label(v)})
    labels = {"nix", "gpu"} | {e["sm"] for e in entries + any_cpu}
    if entries:
        labels |= {"big-parallel"} | {e["gccarch"] for e in entries}
    groups = [
        {"build": build, "smoke": smoke, "isa": isa, "entries": group}
        for build, smoke, isa, group in (
            ("build", "smoke", True, entries),
            ("build-any-cpu", "smoke-any-cpu", False, any_cpu),
        )
        if group
    ]
    return {"groups": groups, "labels": sorted(labels)}


def render_workflow(spec: Spec, variants: list[Variant], env: jinja2.Environment) -> dict[Path, str]:
    try:
        env.get_template(TEMPLATE)
    except jinja2.TemplateNotFound:
        return {}  # a checkout without the template (e.g. a test's cut-down copy) renders no workflow
    ctx = context(spec, variants)
    files = {}
    for path, name in ((WORKFLOW, TEMPLATE), (ACTIONLINT_CONFIG, None)):
        if name is None:
            files[path] = actionlint_config(ctx["labels"])
        else:
            files[path] = render._render(env, name, **ctx)
    return files


def actionlint_config(labels: list[str]) -> str:
    lines = [
        f"# {render.HEADER}",
        "#",
        "# actionlint's list of the custom self-hosted runner labels .github/workflows/matrix.yml uses",
        "# (scripts/install-actionlint.sh's wrapper reads it too).",
        "self-hosted-runner:",
        "  labels:",
        *(f"    - {escape.yaml_scalar(label)}" for label in labels),
    ]
    return "\n".join(lines) + "\n"


if render_workflow not in render.EXTRA_RENDERERS:
    render.EXTRA_RENDERERS.append(render_workflow)
