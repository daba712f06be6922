"""`sglang-matrix rehearse VARIANT`: the variant's Python environment, rehearsed without Nix or a GPU.

closure (what the variant's closure holds) -> env (a venv holding it, with named stand-ins) -> checks
(what the build and the launcher run) -> report.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click
from rich.console import Console

from ..context import Context, err_console, one_line_errors, pass_ctx
from ..errors import UserError
from ..fsutil import cache_dir
from ..variants import find_variant
from . import checks
from .closure import line_nixpkgs_date, plan_closure
from .env import DEFAULT_TORCH, build_environment, dependency_only
from .report import Rehearsal, print_report


@click.command()
@click.argument("variant")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
@click.option(
    "--torch",
    "torch_version",
    default=DEFAULT_TORCH,
    show_default=True,
    help="The torch release that stands in for the variant's (pip's local CPU build where there is one).",
)
@click.option("--rebuild", is_flag=True, help="Build the environment anew even when a complete one matches.")
@click.option(
    "--cache",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where wheels and environments are kept (default: the sglang-matrix cache directory).",
)
@pass_ctx
@one_line_errors
def rehearse(
    ctx: Context, variant: str, as_json: bool, torch_version: str, rebuild: bool, cache: Path | None
) -> None:
    """Rehearse VARIANT's Python environment here, without Nix or a GPU.

    Builds a virtual environment holding the distributions the variant's closure holds (its locked wheels,
    pruned as the variant prunes them, and every requirement nixpkgs provides, at nixpkgs' version),
    with named stand-ins for what this machine cannot hold (torch, torchvision, the Python version), then
    runs what the Nix build and the launcher run: each wheel's import check, `python -m
    sglang.launch_server --help`, the imports of the modules the server's processes load, and
    `sglang-serve --dry-run`. Exit 0 when everything passes, 1 when something fails.
    """
    spec = ctx.spec
    found = find_variant(spec, variant)
    if found is None:
        raise UserError(f"{spec.path.name}: no variant named {variant!r} (see `sglang-matrix list`)")
    closure = plan_closure(spec, found, line_nixpkgs_date(spec, found.line, ctx.root / "flake.lock"))
    cache = cache or cache_dir()
    console = err_console
    start = time.monotonic()
    with console.status("rehearsing", spinner="dots") as status:

        def step(text: str) -> None:
            status.update(f"rehearse {found.name}: {text}")
            if not console.is_terminal and not as_json:
                click.echo(f"rehearse: {text}", err=True)

        env = build_environment(spec, closure, cache, torch_version, rebuild, step)
        line = spec.lines[found.line]
        wheel_imports = {w.attr: line.wheels[w.attr].imports for w in closure.wheels}
        results = []
        step("import checks of the build (no GPU, no stand-in for one)")
        results += checks.build_imports(env, wheel_imports)
        step("python -m sglang.launch_server --help")
        help_check, help_text = checks.launch_server_help(closure, env)
        results.append(help_check)
        step("the server's modules")
        results.append(checks.server_modules(closure, env))
        step("sglang-serve --dry-run")
        results.append(checks.serve_dry_run(env, help_text, found.serve_defaults))
    rehearsal = Rehearsal(
        variant=found,
        closure=closure,
        env=env,
        checks=results,
        dependency_only=dependency_only(closure, env),
        seconds=round(time.monotonic() - start, 1),
    )
    if as_json:
        click.echo(json.dumps(rehearsal.to_json(), indent=2))
    else:
        print_report(Console(), rehearsal)
    sys.exit(0 if rehearsal.ok else 1)
