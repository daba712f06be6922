"""`sglang-matrix smoke`: the command, and one RESULT checked from end to end."""

from __future__ import annotations

import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from ..errors import UserError
from ..which import recorded_host_options
from .checks import check_metadata, check_python, check_torch_arch, check_variant, gpu_gate, import_check
from .closure import build_closure, check_shared_libs, nix_closure_paths, system_library_dirs
from .hosts import probe_host
from .model import (
    GPU_CHECKS,
    IMPORT_TIMEOUT_S,
    IMPORTS,
    PROBE_TIMEOUT_S,
    VARIANT_JSON,
    Check,
    Host,
    Report,
    SmokeVariant,
    failed,
    skipped,
)
from .report import junit_xml, render_human
from .run import INTERP_PROBE, TORCH_PROBE, find_python, find_site_packages, run_python, signal_name
from .variant import read_json_file, self_description, variant_from_json, variant_from_spec


@dataclass(frozen=True)
class Options:
    gpu: bool | None = None
    server_timeout: int = 600


def smoke_one(
    result: Path,
    variant: SmokeVariant,
    own: Any | None,
    given: bool,
    host: Host,
    options: Options,
    progress: Any = None,
) -> Report:
    def say(text: str) -> None:
        if progress is not None:
            progress(text)

    checks: list[Check] = [check_variant(result, variant, own, given)]
    python = find_python(result)
    interp: dict[str, Any] | None = None
    why = ""
    if python is not None:
        ran = run_python(python, INTERP_PROBE, PROBE_TIMEOUT_S)
        interp = ran.json() if ran.rc == 0 else None
        why = ran.last_line() or f"exit status {ran.rc}"
        if ran.rc < 0:
            why = f"killed by {signal_name(ran.rc)}"
    checks.append(check_python(python, interp, why, variant))

    say("imports")
    if python is None:
        for module in IMPORTS:
            checks.append(
                failed(f"import:{module}", f"import {module} (clean environment)", "no interpreter")
            )
        imports: dict[str, Check] = {}
    else:
        with ThreadPoolExecutor(max_workers=min(len(IMPORTS), max(2, os.cpu_count() or 2))) as pool:
            futures = {m: pool.submit(import_check, python, m, host, variant) for m in IMPORTS}
            imports = {m: f.result() for m, f in futures.items()}
        checks.extend(imports[m] for m in IMPORTS)

    torch_info: dict[str, Any] | None = None
    if python is not None and imports.get("torch") and imports["torch"].status == "passed":
        ran = run_python(python, TORCH_PROBE, IMPORT_TIMEOUT_S)
        info = ran.json()
        torch_info = info if ran.rc == 0 and isinstance(info, dict) else None

    site = find_site_packages(result, variant.python)
    say("torch architectures")
    checks.append(check_torch_arch(site, variant, torch_info))
    checks.append(check_metadata(site))

    say("shared libraries")
    store_paths = nix_closure_paths(result)
    why_approx = ""
    if store_paths is None:
        real = os.path.realpath(result)
        why_approx = (
            "nix-store is not on PATH" if real.startswith("/nix/store/") else "RESULT is not a Nix store path"
        )
    prefix_dirs: list[Path] = []
    if interp:
        for key in ("base_prefix", "prefix"):
            base = Path(str(interp.get(key, "")))
            if str(base) and base.is_absolute():
                prefix_dirs += [base / "lib", base / "lib64"]
    closure = build_closure(
        result,
        store_paths=store_paths,
        prefix_dirs=list(dict.fromkeys(prefix_dirs)),
        system_dirs=system_library_dirs() if store_paths is None else (),
        why_approximated=why_approx,
    )
    checks.append(check_shared_libs(closure))

    index, reasons = gpu_gate(host, variant, torch_info, options.gpu)
    if reasons or python is None:
        reason = "; ".join(reasons) or "no interpreter"
        for cid, title in GPU_CHECKS:
            if options.gpu:
                checks.append(failed(cid, title, f"--gpu given but {reason}"))
            else:
                checks.append(skipped(cid, title, reason))
    else:
        from .gpu import run_gpu_checks

        assert index is not None
        say("GPU checks")
        capability = next((g[2] for g in host.gpus if g[0] == index), None)
        for check in run_gpu_checks(result, python, index, options.server_timeout, say):
            reason = variant.gaps.get(check.id, {}).get(capability or "") if capability else None
            if reason and check.status != "passed":
                check = skipped(check.id, check.title, f"the spec accepts no code for {capability}: {reason}")
            checks.append(check)
    return Report(str(result), variant, closure.description, checks)


# ------------------------------------------------------------------------------------------------ CLI


def _spec_or_none(obj: Any) -> Any:
    try:
        return obj.spec if obj is not None else None
    except UserError:
        return None


def _pick_variant(
    result: Path, name: str | None, obj: Any, fallback: str | None
) -> tuple[SmokeVariant, Any, bool]:
    """(variant under test, RESULT's own JSON or None, whether the variant was given by the user)."""
    own = self_description(result)
    if own is not None and not isinstance(own, dict):
        raise UserError(f"{result / VARIANT_JSON}: not a JSON object")
    if name is not None:
        path = Path(name)
        if name.endswith(".json") and path.is_file():
            return variant_from_json(read_json_file(path), str(path), _spec_or_none(obj)), own, True
        spec = obj.spec  # raises UserError (one line, exit 2) without a matrix.toml
        return variant_from_spec(spec, name), own, True
    if own is not None:
        return variant_from_json(own, str(result / VARIANT_JSON), _spec_or_none(obj)), own, False
    if fallback is not None:
        spec = obj.spec
        return variant_from_spec(spec, fallback), own, False
    raise UserError(f"{result}: carries no {VARIANT_JSON}; give --variant NAME")


def results_in(directory: Path) -> list[tuple[Path, str]]:
    """(path, name) of every `result-<name>` entry in `directory`, by name."""
    if not directory.is_dir():
        raise UserError(f"{directory}: not a directory")
    found = sorted(
        (p, p.name[len("result-") :])
        for p in directory.iterdir()
        if p.name.startswith("result-") and len(p.name) > len("result-")
    )
    if not found:
        raise UserError(
            f"{directory}: holds no result-<variant> entries (nix build .#X -o {directory}/result-X)"
        )
    for path, _ in found:
        if not path.is_dir():
            raise UserError(f"{path}: not a directory (a dangling link?)")
    return found


@click.command()
@click.argument("result", required=False, type=click.Path(path_type=Path))
@click.option(
    "--all",
    "all_dir",
    type=click.Path(path_type=Path),
    metavar="DIR",
    help="Check every result-<variant> in DIR (as `nix build .#X -o DIR/result-X` names them).",
)
@click.option(
    "--variant",
    metavar="NAME|FILE.json",
    help=f"The variant RESULT is (a name, or a Variant JSON file) [default: RESULT's own {VARIANT_JSON}].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--junit",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Write a JUnit XML report.",
)
@click.option(
    "--gpu/--no-gpu",
    default=None,
    help="Require the GPU checks (a reason to skip becomes a failure) / turn them off [default: run them "
    "when a GPU of a target capability is visible].",
)
@click.option(
    "--server-timeout",
    type=click.IntRange(10, 7200),
    default=600,
    show_default=True,
    help="Seconds to wait for the test server's /health.",
)
@recorded_host_options
@click.pass_obj
def smoke(
    obj: Any,
    result: Path | None,
    all_dir: Path | None,
    variant: str | None,
    as_json: bool,
    junit: Path | None,
    gpu: bool | None,
    server_timeout: int,
    cpuinfo: Path | None,
    nvidia_smi_output: Path | None,
) -> None:
    """Check a built variant RESULT: imports, torch's CUDA architectures, METADATA, shared libraries, and
    (with a GPU of a target capability) kernels and a tiny end-to-end server.

    Exit 0 when no check failed (skips do not fail), 1 when one did, 2 on bad input.
    """
    try:
        code = run_smoke(
            obj,
            result,
            all_dir,
            variant,
            as_json,
            junit,
            Options(gpu, server_timeout),
            cpuinfo,
            nvidia_smi_output,
        )
    except UserError as err:
        click.echo(f"sglang-matrix: {err}", err=True)
        sys.exit(err.exit_code)
    sys.exit(code)


def run_smoke(
    obj: Any,
    result: Path | None,
    all_dir: Path | None,
    variant: str | None,
    as_json: bool,
    junit: Path | None,
    options: Options,
    cpuinfo: Path | None,
    nvidia_smi_output: Path | None,
) -> int:
    from rich.console import Console

    if (result is None) == (all_dir is None):
        raise UserError("give RESULT or --all DIR (one of them)")
    if all_dir is not None and variant is not None:
        raise UserError("--variant cannot be used with --all (each result-<variant> names its own)")
    if result is not None:
        if not result.exists():
            raise UserError(f"{result}: no such file or directory")
        if not result.is_dir():
            raise UserError(f"{result}: not a directory (a Python environment is expected)")
        targets = [(result, *_pick_variant(result, variant, obj, None))]
    else:
        assert all_dir is not None
        targets = [(path, *_pick_variant(path, None, obj, name)) for path, name in results_in(all_dir)]
    host = probe_host(cpuinfo, nvidia_smi_output)
    err_console = Console(stderr=True)
    out_console = Console()

    def progress(text: str) -> None:
        if err_console.is_terminal:
            err_console.print(f"[dim]smoke: {text}...[/]")

    reports = []
    for path, smoke_variant, own, given in targets:
        progress(f"{path} as {smoke_variant.name}")
        report = smoke_one(path, smoke_variant, own, given, host, options, progress)
        reports.append(report)
        if not as_json:
            render_human(report, out_console)
    if junit is not None:
        try:
            junit.parent.mkdir(parents=True, exist_ok=True)
            junit.write_text(junit_xml(reports), encoding="utf-8")
        except OSError as err:
            raise UserError(f"{junit}: cannot write: {err.strerror or err}") from None
    if as_json:
        if all_dir is None:
            click.echo(json.dumps(reports[0].to_json(), indent=2))
        else:
            click.echo(
                json.dumps(
                    {"ok": all(r.ok for r in reports), "reports": [r.to_json() for r in reports]}, indent=2
                )
            )
    return 0 if all(r.ok for r in reports) else 1
