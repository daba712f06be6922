"""Shared fixtures: the repository, a scratch copy of it, the CLI, Nix (2.26 via scripts/setup-nix.sh)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

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
