"""Running RESULT's interpreter: a clean environment (PATH and HOME only), timeouts, the probes' code."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The closure must bring its own tools (ninja, nvcc, a C++ compiler for runtime JIT): the checks run with
# the PATH a bare system has, not the runner's.
MINIMAL_PATH = "/usr/bin:/bin"


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A minimal PATH and HOME only (no PYTHONPATH, no PYTHONHOME), plus `extra`."""
    env = {"PATH": MINIMAL_PATH, "HOME": os.environ.get("HOME", "/")}
    env.update(extra or {})
    for name in ("PYTHONPATH", "PYTHONHOME"):
        env.pop(name, None)
    return env


# What RESULT's launchers print themselves (the driver search's note on a host without a driver): kept
# apart from the interpreter's own stderr, which the checks read (the note names libcuda.so.1 too).
LAUNCHER_NOTE = "sglang-matrix: "


def split_notes(stderr: str) -> tuple[str, tuple[str, ...]]:
    lines = stderr.splitlines(keepends=True)
    notes = tuple(line.rstrip("\n") for line in lines if line.startswith(LAUNCHER_NOTE))
    return "".join(line for line in lines if not line.startswith(LAUNCHER_NOTE)), notes


@dataclass(frozen=True)
class Ran:
    rc: int
    stdout: str
    stderr: str
    timed_out: bool = False
    notes: tuple[str, ...] = ()

    def last_line(self) -> str:
        for text in (self.stderr, self.stdout):
            lines = [line.strip() for line in text.splitlines() if line.strip()]
            if lines:
                return lines[-1]
        return ""

    def json(self) -> Any:
        for line in reversed(self.stdout.splitlines()):
            if line.startswith("{"):
                try:
                    return json.loads(line)
                except ValueError:
                    return None
        return None


def run_python(
    python: Path, code: str, timeout: float, env: Mapping[str, str] | None = None, args: Iterable[str] = ()
) -> Ran:
    try:
        done = subprocess.run(
            [str(python), "-c", code, *args],
            env=clean_env(env),
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
        return Ran(124, out, err, timed_out=True)
    except OSError as exc:
        return Ran(127, "", f"cannot run {python}: {exc.strerror or exc}")
    stderr, notes = split_notes(done.stderr)
    return Ran(done.returncode, done.stdout, stderr, notes=notes)


def signal_name(rc: int) -> str:
    try:
        return signal.Signals(-rc).name
    except ValueError:
        return f"signal {-rc}"


def find_python(result: Path) -> Path | None:
    for name in ("python3", "python"):
        candidate = result / "bin" / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def find_site_packages(result: Path, python: str | None) -> Path | None:
    """RESULT/lib/pythonX.Y/site-packages: the variant's version first, else the only one."""
    found = sorted(p for p in result.glob("lib/python*/site-packages") if p.is_dir())
    if python:
        for p in found:
            if p.parent.name == f"python{python}":
                return p
    return found[0] if found else None


INTERP_PROBE = (
    "import json, sys; print(json.dumps({'version': '%d.%d' % sys.version_info[:2], "
    "'prefix': sys.prefix, 'base_prefix': sys.base_prefix, 'executable': sys.executable}))"
)

TORCH_PROBE = """
import json
import torch
info = {"version": torch.__version__, "cuda": torch.version.cuda, "arch": list(torch.cuda.get_arch_list())}
try:
    info["available"] = bool(torch.cuda.is_available())
    if info["available"]:
        info["devices"] = [
            [i, torch.cuda.get_device_name(i), "%d.%d" % torch.cuda.get_device_capability(i)]
            for i in range(torch.cuda.device_count())
        ]
except Exception as exc:  # a broken driver is an answer, not a crash
    info["available"] = False
    info["error"] = "%s: %s" % (type(exc).__name__, exc)
print(json.dumps(info))
"""

IMPORT_CODE = (
    "import importlib, json, sys; m = importlib.import_module(sys.argv[1]); "
    "print(json.dumps({'version': str(getattr(m, '__version__', '') or '')}))"
)
