"""`sglang-matrix audit --imports`: walk each release line's sglang wheel once, check every variant."""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import click
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from rich.text import Text

from ..context import progress_bar
from ..errors import UserError
from ..lockfile import Wanted, fetch_index_wheel, fetch_url_wheel
from ..spec import Line, Spec
from ..variants import Variant, find_variant, resolve_variants
from .dists import Closure, Environment, read_environment, variant_closure
from .report import VariantImports, analyse
from .walk import Walk, WheelModules, walk

# The wheel whose code is walked: its `imports` and the line's `server-modules` are the entry modules.
WALKED = "sglang"
STYLE = {"hard": "bold red", "warning": "yellow", "info": "dim"}
WHY = {
    "entry": "no such module in the wheel",
    "unresolved": "no such module in the wheel",
    "conditional": "conditional import, not in optional-imports; not in the closure",
}


@dataclass
class Walked:
    file: str
    walk: Walk
    own: frozenset[str]  # the wheel's top-level names


def entries(line: Line) -> tuple[str, ...]:
    return tuple(dict.fromkeys((*line.wheels[WALKED].imports, *line.server_modules)))


def pick_variants(spec: Spec, name: str | None, every: bool) -> list[Variant]:
    if every:
        return resolve_variants(spec)
    wanted = name or spec.default_variant
    variant = find_variant(spec, wanted)
    if variant is None:
        raise UserError(f"no variant named {wanted!r} (see `sglang-matrix list`)")
    return [variant]


def wheel_path(spec: Spec, variant: Variant, cache: Path) -> Path:
    line = spec.lines[variant.line]
    filename = variant.wheels.get(WALKED)
    if filename is None:
        raise UserError(f'{spec.path.name}: lines."{line.name}".wheels: no {WALKED} wheel to walk')
    want = Wanted(filename, line.wheels[WALKED], variant.system, variant.python)
    if variant.system in want.wheel.url:
        path = fetch_url_wheel(want, cache)
        if path is None:
            raise UserError(f"{filename}: not in {cache} and its host cannot be reached")
        return path
    return fetch_index_wheel(want, cache)  # LockError (exit 2) names what pip said


def audit_imports(
    spec: Spec,
    variants: list[Variant],
    envs: dict[str, Environment | None],
    cache: Path,
    progress: Progress,
) -> tuple[list[VariantImports], list[Walked]]:
    """`envs`: release line -> the environment its variants are checked against (None: none)."""
    walked: dict[tuple[str, tuple[str, ...]], Walked] = {}
    # Variants that differ only in GPU target and ISA share a closure: line, Python, system, wheels decide it.
    closures: dict[tuple[str, str, str, tuple[tuple[str, str], ...]], Closure] = {}
    results = []
    task = progress.add_task("imports", total=len(variants))
    for variant in variants:
        line = spec.lines[variant.line]
        env = envs.get(variant.line)
        if WALKED not in line.wheels:
            raise UserError(f'{spec.path.name}: lines."{line.name}".wheels: no {WALKED} wheel to walk')
        key = (variant.wheels.get(WALKED, ""), entries(line))
        if key not in walked:
            progress.update(task, description=f"fetching {key[0]}")
            path = wheel_path(spec, variant, cache)
            progress.update(task, description=f"walking {path.name}")
            try:
                with WheelModules(path) as wheel:
                    walked[key] = Walked(path.name, walk(wheel, key[1]), wheel.top_level)
            except (OSError, zipfile.BadZipFile) as err:
                raise UserError(f"{path}: not a readable wheel: {err}") from None
        done = walked[key]
        progress.update(task, description=f"checking {variant.name}")
        closure_key = (variant.line, variant.python, variant.system, tuple(sorted(variant.wheels.items())))
        if closure_key not in closures:
            closures[closure_key] = variant_closure(spec, variant, env, {WALKED: done.own})
        closure = closures[closure_key]
        wheel = line.wheels[WALKED]
        results.append(analyse(spec, variant, wheel, done.file, done.walk, done.own, closure, env))
        progress.advance(task)
    return results, list(walked.values())


def _env_json(env: Environment | None) -> dict[str, str] | None:
    return None if env is None else {"path": str(env.path), "site": str(env.site)}


def to_json(results: list[VariantImports], walked: list[Walked], envs: dict[str, Environment | None]) -> str:
    """Variants that read the same share one entry of `results` (139 variants make one or a few)."""
    shared: dict[str, int] = {}
    bodies: list[dict[str, object]] = []
    variants = []
    for r in results:
        body = r.result_json()
        key = json.dumps(body, sort_keys=True)
        if key not in shared:
            shared[key] = len(bodies)
            bodies.append(body)
        variants.append({**r.summary_json(), "result": shared[key]})
    return json.dumps(
        {
            "ok": all(r.ok for r in results),
            # The first line's environment (as before there were lines), and each line's.
            "env": _env_json(next((e for e in envs.values() if e is not None), None)),
            "envs": {line: _env_json(e) for line, e in envs.items()},
            "wheels": [
                {"file": w.file, "entries": list(w.walk.entries), "modules_walked": w.walk.modules}
                for w in walked
            ],
            "variants": variants,
            "results": bodies,
        },
        indent=2,
    )


# --- human output ------------------------------------------------------------------------------------


def print_report(results: list[VariantImports], envs: dict[str, Environment | None]) -> None:
    out = Console(highlight=False)
    for line, env in envs.items():
        if env is None:
            out.print(
                f"line {line}: no --env and no rehearsal of it: a distribution's modules are guessed from "
                "the spec, and dependencies are not followed; only modules of dropped distributions can be "
                "hard misses",
                style="yellow",
            )
        else:
            out.print(
                f"line {line}: environment {env.site} ({len(env.dists)} distributions; PyPI's metadata "
                "stands in)"
            )
    groups: dict[str, list[VariantImports]] = {}
    for r in results:
        groups.setdefault(r.signature(), []).append(r)
    for members in groups.values():
        out.print()
        _print_group(out, members)
    hard = sum(1 for r in results if not r.ok)
    out.print()
    out.print(
        f"audit --imports: {len(results)} variant(s), {len(groups)} distinct result(s); "
        f"{hard} variant(s) with hard findings",
        style="bold red" if hard else "bold green",
    )


def _names(members: list[VariantImports], limit: int = 6) -> str:
    names = [m.variant.name for m in members]
    if len(names) <= limit:
        return ", ".join(names)
    return ", ".join(names[:limit]) + f", … ({len(names)} in all)"


def _span(values: list[int]) -> str:
    low, high = min(values), max(values)
    return str(low) if low == high else f"{low} to {high}"


def _print_group(out: Console, members: list[VariantImports]) -> None:
    r = members[0]
    out.print(
        Text.assemble(
            ("imports", "bold"),
            f" of {r.wheel_file} for {_names(members)}: {r.modules_walked} modules walked, "
            f"{_span([len(m.closure.dists) for m in members])} distributions in the closure",
        )
    )
    hard = [f for f in r.findings if f.severity == "hard"]
    if hard:
        table = Table("module", "distribution", "why", title="hard findings")
        table.add_column("chain (from the entry module)", no_wrap=True)  # file:line hops stay whole
        for f in hard:
            why = f"dropped: {f.dropped['reason']}" if f.dropped else WHY.get(f.kind, "not in the closure")
            hops = "\n".join(f"{s.where}" for s in f.chain) or "-"
            entry = f"import {f.entry}\n" if f.entry else ""
            table.add_row(Text(f.module, style="bold red"), f.distribution or "-", why, entry + hops)
        out.print(table)
        for f in hard:
            out.print(Text(f"  hard: {f.message}", style=STYLE["hard"]))
    for f in r.findings:
        if f.severity == "warning":
            out.print(Text(f"  warning: {f.message}", style=STYLE["warning"]))
    infos = [f for f in r.findings if f.severity == "info"]
    if infos:
        kinds: dict[str, int] = {}
        for f in infos:
            kinds[f.kind] = kinds.get(f.kind, 0) + 1
        parts = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
        out.print(
            f"  {len(infos)} unprovided module(s) that need not import ({parts}); --json lists them",
            style="dim",
        )
    if r.dependency_only:
        deps = ", ".join(f"{d['distribution']} (via {', '.join(d['via'])})" for d in r.dependency_only)
        out.print(f"  imported by {WALKED} but in the closure only as dependencies: {deps}", style="dim")
    if r.closure.unknown_deps:
        out.print(
            f"  not in the environment (dependencies not followed): {', '.join(r.closure.unknown_deps)}",
            style="yellow",
        )
    counts = f"{r.count('hard')} hard, {r.count('warning')} warning(s), {r.count('info')} note(s)"
    out.print(f"  {counts}", style="bold red" if hard else "bold green")


def rehearsed_environment(spec: Spec, variants: list[Variant]) -> Path | None:
    """The environment `sglang-matrix rehearse` built for one of these variants' closures, if there is one:
    the closest stand-in for their Python set this machine has (its distributions' modules and
    dependencies)."""
    from ..fsutil import cache_dir
    from ..rehearse.closure import line_nixpkgs_date, plan_closure

    # Variants of a line differ in pruning only (removed files, same distributions): the first variant
    # whose closure was rehearsed stands for all of them.
    for variant in variants:
        date = line_nixpkgs_date(spec, variant.line, spec.path.parent / "flake.lock")
        venv = cache_dir("rehearse", plan_closure(spec, variant, date).key, "venv")
        if venv.is_dir():
            return venv
    return None


def run(
    spec: Spec,
    variant_name: str | None,
    every: bool,
    env_dir: Path | None,
    cache: Path,
    as_json: bool,
) -> int:
    """The exit status: 0 without hard findings, 1 with."""
    variants = pick_variants(spec, variant_name, every)
    lines = list(dict.fromkeys(v.line for v in variants))
    envs: dict[str, Environment | None]
    if env_dir is not None:  # the user's environment, for every line
        env = read_environment(env_dir)
        envs = dict.fromkeys(lines, env)
    else:  # each line's own rehearsal, where one was built: lines differ in every version
        envs = {}
        for line in lines:
            found = rehearsed_environment(spec, [v for v in variants if v.line == line])
            envs[line] = read_environment(found) if found is not None else None
    progress = progress_bar(as_json)
    with progress:
        results, walked = audit_imports(spec, variants, envs, cache, progress)
    if as_json:
        click.echo(to_json(results, walked, envs))
    else:
        print_report(results, envs)
    return 0 if all(r.ok for r in results) else 1
