"""Shared fixtures: the repository, a scratch copy of it, the CLI, Nix (2.26 via scripts/setup-nix.sh)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from sglang_matrix.rehearse.env import Environment

ROOT = Path(__file__).resolve().parent.parent
# Files a scratch copy of the project needs for render, lock --check and Nix evaluation.
PROJECT_PARTS = (
    "matrix.toml", "README.md", "flake.nix", "flake.lock", "lib", "pkgs", "templates", ".github",
    "deploy", "nix",
)  # fmt: skip


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A scratch copy of the project's spec, templates, Nix code and generated files."""
    dest = tmp_path / "project"
    dest.mkdir()
    for part in PROJECT_PARTS:
        src = ROOT / part
        if src.is_dir():
            shutil.copytree(src, dest / part)
        elif src.is_file():
            shutil.copy2(src, dest / part)
    return dest


def run_cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `sglang-matrix` as a user would (a fresh process: exit codes and stderr are real)."""
    return subprocess.run(
        [sys.executable, "-m", "sglang_matrix", *args],
        cwd=cwd or ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture(scope="session")
def nix_bin() -> Iterator[Path]:
    """The directory of the Nix 2.26 wrappers. Skips where Nix cannot be set up, unless CI requires it."""
    required = os.environ.get("SGLANG_MATRIX_REQUIRE_NIX") == "1"
    found = os.environ.get("SGLANG_MATRIX_NIX_BIN")
    if not found:
        proc = subprocess.run(
            ["bash", str(ROOT / "scripts" / "setup-nix.sh")], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            reason = f"Nix 2.26 could not be set up: {(proc.stderr.strip().splitlines() or ['?'])[-1]}"
            if required:
                pytest.fail(reason)
            pytest.skip(reason)
        found = proc.stdout.strip().splitlines()[-1]
    yield Path(found)


def nix_env(nix_bin: Path) -> dict[str, str]:
    return {**os.environ, "PATH": f"{nix_bin}{os.pathsep}{os.environ['PATH']}"}


# What a path-flake copy of the project needs to evaluate its packages (runtime-scripts reads tools/ and
# pyproject.toml; nixosModules reads nix/).
FLAKE_PARTS = ("matrix.toml", "README.md", "pyproject.toml", "flake.nix", "flake.lock", "lib", "pkgs", "nix")


def eval_packages_of_copy(nix_bin: Path, dest: Path, apply: str) -> Any:
    """`nix eval --json path:COPY#packages --apply APPLY` against the nixpkgs test double, on a scratch
    copy of the project: a path flake, so files not committed yet count (a git flake sees only those)."""
    dest.mkdir(parents=True)
    for part in FLAKE_PARTS:
        src = ROOT / part
        if src.is_dir():
            shutil.copytree(src, dest / part)
        elif src.is_file():
            shutil.copy2(src, dest / part)
    shutil.copytree(
        ROOT / "tools", dest / "tools", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    double = ROOT / "tests" / "nixpkgs-double"
    proc = subprocess.run(
        [
            *["nix", "eval", "--json", "--override-input", "nixpkgs", f"path:{double}"],
            # The 0.5.23 line's pin: its double shares code with the first through `../` (so `dir=`).
            *["--override-input", "nixpkgs-0_5_23", f"path:{ROOT / 'tests'}?dir=nixpkgs-double-0_5_23"],
            *[f"path:{dest}#packages", "--apply", apply],
        ],
        env=nix_env(nix_bin),
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(f"nix eval failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout)


def slow_rename(when: str) -> str:
    """A `python -c` script that runs `sglang-matrix ARGS...` (argv: READY SECONDS ARGS...) with os.replace
    slowed down: at the first rename for which the Python expression `when` (over src and dst) holds, it
    writes src's name to READY and sleeps SECONDS, the window a signal or a second process hits."""
    return f"""
import os, pathlib, sys, time
ready, seconds = pathlib.Path(sys.argv[1]), float(sys.argv[2])
real = os.replace
def replace(src, dst, *args, **kwargs):
    if ({when}) and not ready.exists():
        ready.write_text(str(src))
        time.sleep(seconds)
    return real(src, dst, *args, **kwargs)
os.replace = replace
from sglang_matrix.cli import main
sys.argv = ["sglang-matrix", *sys.argv[3:]]
main()
"""


# ------------------------------------------------------------------ the rehearsal's environment, shared
# The default variant of the 0.5.9 line, the one `sglang-matrix rehearse` is tested on (test_rehearse.py).
REHEARSED_VARIANT = "sglang-sm90-avx512"


@pytest.fixture(scope="session")
def rehearsed_env() -> Environment:
    """The environment `sglang-matrix rehearse sglang-sm90-avx512` builds: sglang's real closure (its locked
    wheels, pruned as the variant prunes them; nixpkgs' versions of the rest), with pip's local CPU torch
    standing in for the variant's. A few GB and minutes to build, so built once into the cache
    (rehearse/env.py) from the same install plan as the command's: whichever of the command and this
    fixture runs first builds it, the other finds it complete. (A plan that differed would rebuild it and
    remove the other's as stale.) Skips where the package index cannot be reached, as the command's
    tests do."""
    from sglang_matrix.fsutil import cache_dir
    from sglang_matrix.rehearse.closure import nixpkgs_date, plan_closure
    from sglang_matrix.rehearse.env import DEFAULT_TORCH, RehearseError, build_environment
    from sglang_matrix.spec import load_spec
    from sglang_matrix.variants import find_variant

    spec = load_spec(ROOT / "matrix.toml")
    variant = find_variant(spec, REHEARSED_VARIANT)
    assert variant is not None, REHEARSED_VARIANT
    # Dated as the command dates it: by the line's own nixpkgs pin where it has one, else the top-level one.
    rev = spec.lines[variant.line].nixpkgs_rev or spec.nixpkgs_rev
    closure = plan_closure(spec, variant, nixpkgs_date(ROOT / "flake.lock", rev))
    try:
        return build_environment(spec, closure, cache_dir(), DEFAULT_TORCH, False, lambda _: None)
    except RehearseError as err:
        if "network" in str(err).lower():
            pytest.skip(f"the package index is not reachable: {err}")
        raise


def shadowed_venv(site: Path, dest: Path, distribution: str) -> Path:
    """A venv at DEST whose site-packages links every entry of SITE's but DISTRIBUTION's package and
    metadata: that environment as it would be without the distribution (importlib finds neither its
    modules nor its metadata). Seconds to make, where a copy of the environment would take GBs."""
    from packaging.utils import canonicalize_name

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(dest)], check=True)
    code = "import sysconfig; print(sysconfig.get_path('purelib'))"
    out = subprocess.run(
        [str(dest / "bin" / "python"), "-c", code], capture_output=True, text=True, check=True
    )
    own = Path(out.stdout.strip())
    gone = canonicalize_name(distribution)
    for entry in site.iterdir():
        stem = entry.name.split("-")[0] if entry.name.endswith(".dist-info") else entry.name
        if canonicalize_name(stem.removesuffix(".py")) != gone:
            (own / entry.name).symlink_to(entry)
    return dest
