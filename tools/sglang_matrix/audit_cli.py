"""`sglang-matrix audit`: check prebuilt wheels against the spec (libraries, GPU code, Requires-Dist)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from rich.text import Text

from .audit.report import (
    AuditEnv,
    AuditResult,
    WheelReport,
    audit_file,
    error_report,
    line_capabilities,
    match_wheel,
    skipped_report,
)
from .context import Context, one_line_errors, pass_ctx, progress_bar
from .errors import UserError
from .fsutil import cache_dir
from .imports.command import run as run_imports
from .lockfile import LockError, Wanted, fetch_index_wheel, fetch_url_wheel
from .spec import Spec
from .variants import Variant, find_variant

URL_TIMEOUT = 15.0
STYLE = {"hard": "bold red", "warning": "yellow", "info": "dim"}
STATUS_STYLE = {"ok": "green", "fail": "bold red", "skipped": "yellow", "error": "bold red"}
REQ_STYLE = {
    "provided": "green",
    "nixpkgs": "",
    "skew": "bold red",
    "skew-accepted": "yellow",
    "dropped": "dim",
    "missing": "bold red",
}


@click.command()
@click.argument(
    "wheels", nargs=-1, metavar="[WHEEL]...", type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--variant",
    "variant_name",
    metavar="VARIANT",
    help="Audit every wheel VARIANT fetches; with WHEEL files, audit those for VARIANT's Python and GPUs.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (stable keys).")
@click.option(
    "--cache",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where wheels are found and downloaded to (default: ~/.cache/sglang-matrix/wheels).",
)
@click.option(
    "--imports",
    is_flag=True,
    help="Instead: walk sglang's module-level imports (ast) from its entry modules and check each against "
    "the variant's distributions (default variant unless --variant or --all).",
)
@click.option("--all", "every", is_flag=True, help="With --imports: every variant of the matrix.")
@click.option(
    "--env",
    "env_dir",
    type=click.Path(path_type=Path),
    help="With --imports: a venv or site-packages whose installed distributions (e.g. the rehearsal's) "
    "say which modules each distribution provides and what it depends on.",
)
@pass_ctx
@one_line_errors
def audit(
    ctx: Context,
    wheels: tuple[Path, ...],
    variant_name: str | None,
    as_json: bool,
    cache: Path | None,
    imports: bool,
    every: bool,
    env_dir: Path | None,
) -> None:
    """Check prebuilt wheels against matrix.toml: shared libraries, GPU code per SM, Requires-Dist.

    WHEEL files are matched to the spec's wheels by file name; without --variant each is audited for
    its release line's Python and every capability of the line's targets. With --variant alone, every
    wheel the variant fetches is taken from --cache, or downloaded into it; a wheel that is not on the
    package index and cannot be downloaded is reported as skipped.

    With --imports, nothing above: the sglang wheel's modules are parsed (never imported) and every
    import that runs when `import sglang` or a module of the line's `server-modules` is imported is
    checked against the modules the variant's closure provides; a miss is reported with its chain of
    file:line hops.

    Exit status: 0 when there is no hard finding, 1 when there is one (a file that cannot be read is
    one), 2 for bad input.
    """
    if imports or every or env_dir is not None:
        if not imports:
            raise click.UsageError("--all and --env go with --imports")
        if wheels or (every and variant_name):
            raise click.UsageError("--imports takes --variant VARIANT or --all, and no WHEEL files")
        sys.exit(run_imports(ctx.spec, variant_name, every, env_dir, cache or cache_dir("wheels"), as_json))
    if not wheels and not variant_name:
        raise click.UsageError("give WHEEL files, --variant VARIANT, or both")
    spec = ctx.spec
    variant = None
    if variant_name:
        variant = find_variant(spec, variant_name)
        if variant is None:
            raise UserError(f"no variant named {variant_name!r} (see `sglang-matrix list`)")
    cache = cache or cache_dir("wheels")
    progress = progress_bar(as_json)
    with progress:
        if wheels:
            result = _audit_files(spec, wheels, variant, progress)
        else:
            assert variant is not None
            result = _audit_variant(spec, variant, cache, progress)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
    else:
        _print(result)
    sys.exit(0 if result.ok else 1)


def _variant_env(spec: Spec, variant: Variant) -> AuditEnv:
    line = spec.lines[variant.line]
    return AuditEnv(
        line, variant.system, variant.python, variant.capabilities, variant.name, pruned=variant.pruned
    )


def _audit_files(
    spec: Spec, paths: tuple[Path, ...], variant: Variant | None, progress: Progress
) -> AuditResult:
    env = _variant_env(spec, variant) if variant else None
    task = progress.add_task("auditing", total=len(paths))
    reports = []
    for path in paths:
        progress.update(task, description=f"auditing {path.name}")
        if env is not None:
            match = match_wheel(spec, path.name, env.line, python=env.python, system=env.system)
        else:
            match = match_wheel(spec, path.name)
        if env is not None:
            wheel_env = env
        elif match is not None:
            wheel_env = AuditEnv(match.line, match.system, match.python, line_capabilities(spec, match.line))
        else:
            line = spec.lines[sorted(spec.lines)[0]]
            wheel_env = AuditEnv(line, line.systems[0], line.python, line_capabilities(spec, line))
        wheel = match.wheel if match else None
        reports.append(audit_file(path, spec, wheel_env, wheel, match.expected if match else None))
        progress.advance(task)
    return AuditResult(env, reports, _pruning(spec, variant, list(paths)) if variant else None)


def _audit_variant(spec: Spec, variant: Variant, cache: Path, progress: Progress) -> AuditResult:
    env = _variant_env(spec, variant)
    task = progress.add_task("auditing", total=len(variant.wheels))
    reports: list[WheelReport] = []
    for attr, filename in variant.wheels.items():
        wheel = env.line.wheels[attr]
        want = Wanted(filename, wheel, variant.system, variant.python)
        path: Path | None = cache / filename
        if not path.is_file():
            progress.update(task, description=f"fetching {filename}")
            if variant.system in wheel.url:
                path = fetch_url_wheel(want, cache, timeout=URL_TIMEOUT)
                if path is None:
                    reports.append(
                        skipped_report(
                            filename,
                            attr,
                            env,
                            f"not available offline: not in {cache} and its host cannot be reached",
                        )
                    )
                    progress.advance(task)
                    continue
            else:
                try:
                    path = fetch_index_wheel(want, cache)
                except LockError as e:
                    reports.append(error_report(filename, attr, env, f"{filename}: cannot fetch: {e}"))
                    progress.advance(task)
                    continue
        progress.update(task, description=f"auditing {filename}")
        reports.append(audit_file(path, spec, env, wheel))
        progress.advance(task)
    return AuditResult(env, reports, _pruning(spec, variant, sorted(cache.glob("*.whl"))))


def _pruning(spec: Spec, variant: Variant, files: list[Path]) -> dict:
    """Bytes pruning saves for the variant, measured on the wheel files at hand (else from the lock)."""
    from . import pruning
    from .lockfile import read_lock

    measured = pruning.wheel_lookup(spec, variant.line, files)
    locked = pruning.lock_lookup(read_lock(spec.path.parent)["wheels"])
    return pruning.summary(spec, variant, lambda attr, name: measured(attr, name) or locked(attr, name))


# --- human output ------------------------------------------------------------------------------------


def _size(n: int) -> str:
    for unit, size in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def _print(result: AuditResult) -> None:
    out = Console(highlight=False)
    if result.env is not None:
        env = result.env
        out.print(
            f"[bold]audit[/bold] for {env.variant}: CPython {env.python}, {env.system}, "
            f"capabilities {' '.join(env.capabilities)}"
        )
    for report in result.wheels:
        out.print()
        _print_wheel(out, report, show_env=result.env is None)
    if result.pruning and result.pruning["enabled"]:
        out.print()
        out.print(f"pruning leaves out {_size(result.pruning['saved_bytes'])} for this variant:")
        for item in result.pruning["left_out"]:
            size = "size unknown" if item["bytes"] is None else _size(item["bytes"])
            out.print(f"  {item['wheel']}: {item['what']} ({size})")
    hard, warnings, infos = (result.count(s) for s in ("hard", "warning", "info"))
    statuses = [w.status for w in result.wheels]
    parts = [f"{statuses.count(s)} {s}" for s in ("ok", "fail", "skipped", "error") if statuses.count(s)]
    skipped = statuses.count("skipped")
    incomplete = f"; incomplete: {skipped} wheel(s) not audited" if skipped else ""
    out.print()
    out.print(
        f"audit: {len(result.wheels)} wheel(s): {', '.join(parts)}; "
        f"{hard} hard finding(s), {warnings} warning(s), {infos} note(s){incomplete}",
        style="bold red" if hard else "bold yellow" if skipped else "bold green",
    )


def _print_wheel(out: Console, report: WheelReport, show_env: bool) -> None:
    title = Text(report.file, style="bold")
    if report.attr:
        title.append(f" (wheels.{report.attr})")
    title.append(f": {report.status}", style=STATUS_STYLE[report.status])
    out.print(title)
    if show_env:
        env = report.env
        out.print(
            f"  for line {env.line.name}: CPython {env.python}, {env.system}, "
            f"capabilities {' '.join(env.capabilities)}"
        )
    if report.skipped:
        out.print(f"  skipped: {report.skipped}", style="yellow")
        return
    if report.error:
        out.print(f"  error: {report.error}", style="bold red")
        click.echo(f"sglang-matrix: audit: {report.error}", err=True)
        return
    libs = report.libraries
    if libs is not None and libs.needed:
        table = Table(
            "needed SONAME", "provider", "objects", title=f"shared libraries ({libs.objects} objects)"
        )
        for use in libs.needed:
            provider = "(in the wheel)" if use.bundled else use.provider or Text("UNMAPPED", style="bold red")
            table.add_row(use.soname, provider, str(len(use.objects)))
        out.print(table)
        if libs.declared is not None:
            out.print(f"  libraries declared: {', '.join(libs.declared) or '(none)'}")
    gpu = report.gpu
    if gpu is not None and gpu.total_bytes:
        table = Table(
            "object", "code (stored bytes)", "runnable", "dead", title=f"GPU code ({_size(gpu.total_bytes)})"
        )
        for row in gpu.objects:
            name = row.path if row.source == "fatbin" else f"{row.path} ({row.count} cubins)"
            if row.pruned_bytes:
                name += " (pruned)" if row.pruned_bytes == row.total_bytes else " (partly pruned)"
            code = ", ".join(f"{t} {_size(n)}" for t, n in row.targets.items())
            table.add_row(name, code, _size(row.runnable_bytes), _size(row.dead_bytes))
        out.print(table)
        caps = ", ".join(
            f"{c.capability}: {_size(c.runnable_bytes)}" + (" (acknowledged gap)" if c.acknowledged else "")
            for c in gpu.capabilities
        )
        pruned = f", pruned {_size(gpu.pruned_bytes)}" if gpu.pruned_bytes else ""
        out.print(
            f"  runnable {_size(gpu.runnable_bytes)}, dead {_size(gpu.dead_bytes)}{pruned}; "
            f"per capability: {caps}"
        )
    reqs = report.requires
    if reqs is not None and (reqs.requirements or reqs.extra):
        table = Table(
            "requirement",
            "status",
            "provider / reason",
            title=f"Requires-Dist ({reqs.declared} declared, {reqs.not_applicable} not applicable here)",
        )
        for r in reqs.requirements:
            detail = r.reason or ""
            if r.attr:
                detail = f"{r.attr} {r.version}" if r.version else f"{r.attr} (nixpkgs)"
                if r.reason:
                    detail += f": {r.reason}"
            table.add_row(r.requirement, Text(r.status, style=REQ_STYLE[r.status]), detail)
        for name, attr in reqs.extra:
            table.add_row(name, Text("extra", style="dim"), f"{attr}: not declared by the wheel")
        out.print(table)
    # Acknowledged GPU gaps are shown with their reason; other notes are in the tables or in --json.
    shown = [f for f in report.findings if f.severity != "info" or f.check == "gpu"]
    for finding in shown:
        out.print(Text(f"  {finding.severity}: {finding.message}", style=STYLE[finding.severity]))
    notes = report.count("info") - sum(1 for f in shown if f.severity == "info")
    if notes:
        out.print(
            f"  {notes} note(s) (acknowledged or not checkable offline; --json lists them)", style="dim"
        )
