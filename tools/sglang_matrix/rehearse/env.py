"""Build the rehearsal's environment: a venv holding the variant's closure, through pip.

The environment is built in a scratch directory and moved into place only when complete, so an
interrupted build leaves nothing half-made; a complete one is reused while its install plan is unchanged.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from packaging.tags import sys_tags
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from ..errors import UserError
from ..lockfile import LockError, Wanted, fetch_index_wheel, fetch_url_wheel
from ..spec import Spec
from .closure import BUILT_FROM_SOURCE, Closure, runtime_modules

TOOL_DIR = Path(__file__).resolve().parent.parent
DEFAULT_TORCH = "2.13.0"
READY = "rehearsal-ready.json"

Step = Callable[[str], None]


class RehearseError(UserError):
    """The environment could not be built (pip failed, a wheel could not be fetched)."""


@dataclass
class StandIn:
    """Something the rehearsal holds in place of what the variant's closure holds."""

    what: str
    variant_has: str
    rehearsal_has: str
    why: str


@dataclass
class Environment:
    root: Path
    python: Path
    site: Path
    stand_ins: list[StandIn] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # locked wheels that could not be had here
    pip_check: list[str] = field(default_factory=list)
    distributions: dict[str, dict] = field(default_factory=dict)
    reused: bool = False

    def to_json(self) -> dict[str, object]:
        return {
            "root": str(self.root),
            "python": str(self.python),
            "stand_ins": [vars(s) for s in self.stand_ins],
            "missing": self.missing,
            "pip_check": self.pip_check,
            "reused": self.reused,
        }


def torchvision_for(torch_version: str) -> str:
    """torchvision's release for a torch release: 0.(minor + 15).patch since torch 2.0 / torchvision 0.15."""
    try:
        v = Version(torch_version)
    except InvalidVersion:
        raise UserError(f"--torch: {torch_version!r} is not a version") from None
    if v.major != 2:
        raise UserError(f"--torch: {torch_version!r}: only torch 2.x stand-ins are known")
    return f"0.{v.minor + 15}.{v.micro}"


def _pip(python: Path, args: list[str], what: str) -> str:
    proc = subprocess.run(
        [str(python), "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        lines = [
            ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("WARNING: Location")
        ]
        detail = " | ".join(lines[-4:]) if lines else "(no output)"
        raise RehearseError(f"pip could not {what}: {detail}")
    return proc.stdout


def _installable(filename: str) -> bool:
    """Whether a wheel file installs on the interpreter running this tool (the venv's)."""
    _, _, _, tags = parse_wheel_filename(filename)
    supported = set(sys_tags())
    return any(tag in supported for tag in tags)


def _fetch_locked(
    spec: Spec, closure: Closure, cache: Path, env: Environment, extra: list[StandIn], step: Step
) -> list[Path]:
    """The locked wheel files, or for a wheel built for another CPython, the same release for this one."""
    line = spec.lines[closure.line]
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    files: list[Path] = []
    for locked in closure.wheels:
        wheel = line.wheels[locked.attr]
        want = Wanted(locked.filename, wheel, closure.system, closure.python)
        step(f"fetching {locked.filename}")
        if locked.url:
            path = fetch_url_wheel(want, cache)
            if path is None:
                env.missing.append(
                    f"{locked.attr}: {locked.filename} is not on the package index, and its host "
                    "cannot be reached from here"
                )
                continue
        else:
            try:
                path = fetch_index_wheel(want, cache)
            except LockError as err:
                raise RehearseError(str(err)) from None
        if not _installable(path.name):
            step(f"fetching {wheel.pname}=={wheel.version} for CPython {here}")
            dest = cache / "rehearse-stand-ins"
            dest.mkdir(parents=True, exist_ok=True)
            before = set(dest.glob("*.whl"))
            release = f"{wheel.pname}=={wheel.version}"
            args = ["download", "--quiet", "--no-deps", "--only-binary=:all:", "-d", str(dest), release]
            _pip(Path(sys.executable), args, f"download {release} for CPython {here}")
            got = [
                p
                for p in sorted(dest.glob("*.whl"), key=lambda p: (p not in before, p.name))
                if canonicalize_name(parse_wheel_filename(p.name)[0]) == canonicalize_name(wheel.pname)
                and str(parse_wheel_filename(p.name)[1]) == wheel.version
                and _installable(p.name)
            ]
            if not got:
                raise RehearseError(f"no {wheel.pname}=={wheel.version} wheel for CPython {here}")
            why = f"the locked wheel is for CPython {closure.python}"
            extra.append(StandIn(locked.attr, locked.filename, got[-1].name, why))
            path = got[-1]
        files.append(path)
    return files


def _prune(site: Path, closure: Closure) -> None:
    """Drop what the variant's Nix build drops (pkgs/prebuilt-wheel.nix): each rule must match."""
    for locked in closure.wheels:
        for pattern in locked.pruned:
            matches = glob.glob(str(site / pattern))
            if not matches:
                raise RehearseError(f"prune path {pattern} matches nothing in {locked.attr}")
            for match in matches:
                if os.path.isdir(match) and not os.path.islink(match):
                    shutil.rmtree(match)
                else:
                    os.unlink(match)


def _distributions(python: Path) -> dict[str, dict]:
    code = r"""
import importlib.metadata as md, json, sys
out = {}
for d in md.distributions():
    top = (d.read_text("top_level.txt") or "").split()
    if not top:
        parts = [f.parts[0] for f in (d.files or []) if f.parts]
        skip = (".dist-info", ".data")
        top = sorted({p.removesuffix(".py") for p in parts if not p.endswith(skip) and p != ".."})
    out[d.metadata["Name"]] = {"version": d.version, "requires": d.requires or [], "top_level": top}
json.dump(out, sys.stdout)
"""
    proc = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RehearseError(f"cannot list the environment's distributions: {proc.stderr.strip()[-300:]}")
    return json.loads(proc.stdout)


def build_environment(
    spec: Spec, closure: Closure, cache: Path, torch_version: str, rebuild: bool, step: Step
) -> Environment:
    here = f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
    tv_version = torchvision_for(torch_version)
    plan = {
        "closure": closure.install_plan(),
        "python": here,
        "torch": torch_version,
        "torchvision": tv_version,
        "runtime": {name: (TOOL_DIR / name).read_text() for name in runtime_modules()},
    }
    base = cache / "rehearse"
    root = base / closure.key
    env = Environment(root=root, python=root / "venv" / "bin" / "python", site=Path())
    line_torch = spec.lines[closure.line].torch_version
    env.stand_ins = [
        StandIn(
            "python",
            f"CPython {closure.python} (nixpkgs)",
            f"CPython {here}",
            "the interpreter running this tool",
        ),
        StandIn(
            "torch",
            f"nixpkgs' torch {line_torch}, built for the variant's SMs and ISA",
            f"torch {torch_version} (pip's local build; CPU-only where it is +cpu)",
            "no CUDA torch is built or downloaded here",
        ),
        StandIn(
            "torchvision",
            "nixpkgs' torchvision, built against the variant's torch",
            f"torchvision {tv_version}'s Python code, its compiled operators declared by name only",
            "PyPI's torchvision is built against PyPI's CUDA torch: its operators cannot load here",
        ),
    ]
    ready = root / READY
    if not rebuild and ready.is_file():
        try:
            saved = json.loads(ready.read_text())
        except (OSError, json.JSONDecodeError):
            saved = None
        if saved and saved.get("plan") == plan:
            env.reused = True
            env.stand_ins += [StandIn(**s) for s in saved.get("extra_stand_ins", [])]
            env.missing = saved.get("missing", [])
            env.pip_check = saved.get("pip_check", [])
            env.site = Path(saved["site"])
            env.distributions = _distributions(env.python)
            return env

    base.mkdir(parents=True, exist_ok=True)
    scratch = base / f".{closure.key}.{os.getpid()}.tmp"
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        step("creating the virtual environment")
        subprocess.run([sys.executable, "-m", "venv", str(scratch / "venv")], check=True, capture_output=True)
        python = scratch / "venv" / "bin" / "python"
        site = Path(
            subprocess.run(
                [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                capture_output=True, text=True, check=True,
            ).stdout.strip()
        )  # fmt: skip
        # pip 26 is the first that can take the newest release out by a date (--uploaded-prior-to).
        step("upgrading pip in the environment")
        _pip(python, ["install", "--quiet", "--upgrade", "pip>=26.0"], "upgrade pip")
        constraints = scratch / "constraints.txt"
        pins = [f"torch=={torch_version}", f"torchvision=={tv_version}"]
        pins += [
            f"{r.dist}{r.specifier}"
            for r in closure.requirements
            if r.specifier and r.attr not in BUILT_FROM_SOURCE
        ]
        constraints.write_text("\n".join(pins) + "\n")
        step(f"installing torch {torch_version} (stand-in)")
        _pip(python, ["install", "--quiet", f"torch=={torch_version}"], f"install torch=={torch_version}")
        step(f"installing torchvision {tv_version} (stand-in, without its dependencies)")
        tv = f"torchvision=={tv_version}"
        _pip(python, ["install", "--quiet", "--no-deps", tv], f"install {tv}")
        extra: list[StandIn] = []
        files = _fetch_locked(spec, closure, cache / "wheels", env, extra, step)
        env.stand_ins += extra
        step(f"installing {len(files)} locked wheels (without their Requires-Dist, as the Nix build does)")
        if files:
            _pip(python, ["install", "--quiet", "--no-deps", *map(str, files)], "install the locked wheels")
        wanted = [f"{r.dist}{r.specifier}" for r in closure.requirements if r.attr not in BUILT_FROM_SOURCE]
        step(f"installing {len(wanted)} nixpkgs-provided requirements and their dependencies")
        dated = ["--uploaded-prior-to", closure.nixpkgs_date] if closure.nixpkgs_date else []
        _pip(
            python,
            ["install", "--quiet", *dated, "-c", str(constraints), *wanted],
            "install nixpkgs' versions",
        )
        step("pruning what the variant prunes")
        _prune(site, closure)
        for name in runtime_modules():
            (site / "sglang_matrix" / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(TOOL_DIR / name, site / "sglang_matrix" / name)
        check = subprocess.run(
            [str(python), "-m", "pip", "check"], capture_output=True, text=True, check=False
        )
        env.pip_check = [ln for ln in check.stdout.splitlines() if ln.strip() and "No broken" not in ln]
        ready_data = {
            "plan": plan,
            "site": str(root / site.relative_to(scratch)),
            "extra_stand_ins": [vars(s) for s in extra],
            "missing": env.missing,
            "pip_check": env.pip_check,
        }
        (scratch / READY).write_text(json.dumps(ready_data, indent=1))
        # A venv survives the move for `bin/python -m ...` (pyvenv.cfg is found next to the interpreter);
        # only its console scripts' shebangs keep the scratch path, and the rehearsal never runs those.
        shutil.rmtree(root, ignore_errors=True)
        os.replace(scratch, root)
        # An environment of the same closure with an older plan is stale: a few GB each, never reused.
        prefix = closure.key.rsplit("-", 1)[0] + "-"
        for old in base.glob(f"{prefix}*"):
            if old != root and old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    env.site = Path(json.loads(ready.read_text())["site"])
    env.distributions = _distributions(env.python)
    return env


def dependency_only(closure: Closure, env: Environment) -> dict[str, list[str]]:
    """Distributions that came in only as dependencies, each with who requires it."""
    direct = {canonicalize_name(p) for p in BUILT_FROM_SOURCE}
    direct |= {canonicalize_name(w.pname) for w in closure.wheels} | {
        canonicalize_name(w.attr) for w in closure.wheels
    }
    direct |= {r.dist for r in closure.requirements}
    direct |= {"pip", "setuptools"}
    required_by: dict[str, list[str]] = {}
    for name, info in env.distributions.items():
        for req in info["requires"]:
            if "extra ==" in req:
                continue
            dep = canonicalize_name(re.split(r"[\s;<>=!~\[(]", req, maxsplit=1)[0])
            required_by.setdefault(dep, []).append(name)
    return {
        name: sorted(set(required_by.get(canonicalize_name(name), [])))
        for name in sorted(env.distributions, key=str.lower)
        if canonicalize_name(name) not in direct
    }
