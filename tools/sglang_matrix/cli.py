"""The `sglang-matrix` command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from . import workflow  # noqa: F401  (registers the CI workflow renderer)
from .context import Context, one_line_errors, pass_ctx, progress_bar
from .errors import UserError
from .fsutil import SPEC_NAME, cache_dir, deferred_signals, tree_lock, write_atomic
from .plan import plan
from .variants import find_variant, resolve_variants


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    help="Repository root (default: the nearest directory holding matrix.toml).",
)
@click.option(
    "--spec", "spec_path", type=click.Path(dir_okay=False, path_type=Path), help="Matrix spec file."
)
@click.version_option(package_name="sglang-matrix")
@click.pass_context
def main(ctx: click.Context, root: Path | None, spec_path: Path | None) -> None:
    """One matrix spec for per-SM, per-ISA Nix builds of SGLang: render, lock, audit, smoke."""
    ctx.obj = Context(root.resolve() if root else None, spec_path)


@main.command()
@click.option(
    "--check",
    is_flag=True,
    help="Write nothing; exit 1 and list each drifted, missing or stale file and stray temp file.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
@pass_ctx
@one_line_errors
def render(ctx: Context, check: bool, as_json: bool) -> None:
    """Regenerate pkgs/variants/*.nix, the README variant table and the CI workflow from the spec."""
    from .render import render as do_render

    with tree_lock(ctx.root, shared=check):  # the spec read under the lock: no lock --upgrade half-seen
        ctx.reload()
        outcome = do_render(ctx.spec, ctx.root, check=check, lock=False)
    if as_json:
        click.echo(json.dumps(outcome.to_json(), indent=2))
    elif check:
        for label, paths in (
            ("drifted", outcome.drifted),
            ("missing", outcome.missing),
            ("stale", outcome.stale),
            ("stray", outcome.stray),
        ):
            for path in paths:
                click.echo(f"{label}: {path}")
        if outcome.clean:
            click.echo(f"render --check: {len(outcome.unchanged)} generated files match {SPEC_NAME}")
        else:
            click.echo(
                "render --check: generated files differ from the spec; run `sglang-matrix render`", err=True
            )
    else:
        for path in outcome.written:
            click.echo(f"wrote {path}")
        for path in outcome.deleted:
            click.echo(f"deleted {path}")
        for path in outcome.stray:
            click.echo(f"removed {path} (a temp file an interrupted writer left)")
        click.echo(
            f"render: {len(outcome.written)} written, {len(outcome.deleted)} deleted, "
            f"{len(outcome.unchanged)} unchanged"
        )
    if check and not outcome.clean:
        sys.exit(1)


@main.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the variants as JSON.")
@pass_ctx
@one_line_errors
def list_variants(ctx: Context, as_json: bool) -> None:
    """List every variant of the matrix."""
    variants = resolve_variants(ctx.spec)
    if as_json:
        click.echo(json.dumps([v.to_json() for v in variants], indent=2))
        return
    table = Table("name", "long name", "capabilities", "ISA", "system")
    for v in variants:
        # A variant without an ISA (its torch is a prebuilt wheel) runs on any CPU of its system.
        table.add_row(v.name, v.long_name, " ".join(v.capabilities), v.isa or "any", v.system)
    Console().print(table)
    click.echo(f"{len(variants)} variants")


@main.command()
@click.argument("variant")
@click.option("--json", "as_json", is_flag=True, help="Print the variant as JSON.")
@pass_ctx
@one_line_errors
def show(ctx: Context, variant: str, as_json: bool) -> None:
    """Everything VARIANT resolves to: targets, flags, names, versions, wheels."""
    from . import pruning
    from .lockfile import read_lock

    found = find_variant(ctx.spec, variant)
    if found is None:
        raise UserError(f"no variant named {variant!r} (see `sglang-matrix list`)")
    data = found.to_json()
    # Sizes from pkgs/sources.json (recorded by `lock` from the real wheels): what pruning saves.
    data["pruning"] = pruning.summary(ctx.spec, found, pruning.lock_lookup(read_lock(ctx.root)["wheels"]))
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for key, value in data.items():
        if key == "pruning":
            continue
        if isinstance(value, dict):
            click.echo(f"{key}:")
            for k, v in value.items():
                click.echo(f"  {k}: {' '.join(v) if isinstance(v, list) else v}")
        elif isinstance(value, list):
            click.echo(f"{key}: {' '.join(str(x) for x in value)}")
        elif key == "isa" and value is None:
            click.echo(f"isa: none (any {found.system} CPU: torch is a prebuilt wheel)")
        elif value is None:
            click.echo(f"{key}: none")
        else:
            click.echo(f"{key}: {value}")
    prune = data["pruning"]
    if not prune["enabled"]:
        click.echo("pruning: off ([build] prune-device-code)")
        return
    click.echo(f"pruning saves {prune['saved_bytes'] / 1e6:,.0f} MB:")
    for item in prune["left_out"]:
        size = "size unknown" if item["bytes"] is None else f"{item['bytes'] / 1e6:,.0f} MB"
        click.echo(f"  {item['wheel']}: {item['what']} ({size}): {item['reason']}")


@main.command("lock")
@click.option(
    "--check", is_flag=True, help="Offline: verify that every fetched wheel is in the lock, well formed."
)
@click.option(
    "--upgrade", "upgrade", metavar="NAME==VERSION", help="Set one wheel's version in the spec, then lock it."
)
@click.option("--line", "line_name", help="The release line for --upgrade (when several hold the package).")
@click.option(
    "--cache",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where downloaded wheels are kept (default: ~/.cache/sglang-matrix/wheels).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_ctx
@one_line_errors
def lock_cmd(
    ctx: Context, check: bool, upgrade: str | None, line_name: str | None, cache: Path | None, as_json: bool
) -> None:
    """Resolve every wheel the spec names through pip, hash it, and write pkgs/sources.json."""

    from . import lockfile

    if check:
        with tree_lock(ctx.root, shared=True):
            problems = lockfile.check_lock(ctx.spec, ctx.root)
        if as_json:
            click.echo(json.dumps({"ok": not problems, "problems": problems}, indent=2))
        else:
            for problem in problems:
                click.echo(problem)
            if not problems:
                click.echo(
                    f"lock --check: {len(lockfile.wanted_wheels(ctx.spec))} wheels locked and well formed"
                )
        sys.exit(1 if problems else 0)

    # Nothing is written until every wheel is downloaded and hashed; then the spec (with --upgrade) and the
    # lock are written together, signals held back, under the tree lock (no render or lock in between).
    spec_path = ctx.root / SPEC_NAME
    with tree_lock(ctx.root):
        only = None
        only_line = None
        new_spec_text = None
        spec = ctx.spec
        if upgrade:
            from .spec import load_spec_text
            from .upgrade import plan_upgrade

            name, new_spec_text = plan_upgrade(spec_path, upgrade, line_name)
            only = [name]
            # The line whose wheel changes (plan_upgrade has made sure there is exactly one): the same
            # attribute on another line keeps its locked files.
            only_line = line_name or next(n for n, line in spec.lines.items() if name in line.wheels)
            spec = load_spec_text(new_spec_text, spec_path)
        with progress_bar(as_json) as progress:
            task = progress.add_task("locking", total=len(lockfile.wanted_wheels(spec)))

            def report(filename: str, done: int, total: int) -> None:
                progress.update(task, completed=done, total=total, description=filename or "done")

            lock_text, notes = lockfile.resolve_lock(
                spec, ctx.root, cache or cache_dir("wheels"), only=only, progress=report, only_line=only_line
            )
        lockfile.lock_temps(ctx.root, remove=True)  # left by a killed run (we hold the lock: none is live)
        with deferred_signals():
            before = spec_path.read_text(encoding="utf-8") if new_spec_text is not None else None
            if new_spec_text is not None:
                write_atomic(spec_path, new_spec_text)
            try:
                changed = write_atomic(ctx.root / lockfile.LOCK_PATH, lock_text)
            except BaseException:
                if before is not None:  # the lock could not be written: the spec goes back as it was
                    write_atomic(spec_path, before)
                raise
    if as_json:
        click.echo(json.dumps({"changed": changed, "notes": notes}, indent=2))
        return
    for note in notes:
        click.echo(f"note: {note}", err=True)
    click.echo(f"lock: {lockfile.LOCK_PATH} {'updated' if changed else 'unchanged'}")


from .which import which  # noqa: E402

main.add_command(which)


main.add_command(plan)


from .audit_cli import audit  # noqa: E402

main.add_command(audit)

from .smoke import smoke  # noqa: E402

main.add_command(smoke)

from .rehearse import rehearse  # noqa: E402

main.add_command(rehearse)

from .k8s import k8s  # noqa: E402  (also registers the manifests' renderer)

main.add_command(k8s)
