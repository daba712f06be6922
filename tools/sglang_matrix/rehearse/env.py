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

from ..errors import UserError
from ..lockfile import LockError, Wanted, fetch_index_wheel, fetch_url_wheel
from ..spec import Line, Spec
from .closure import BUILT_FROM_SOURCE, Closure, runtime_modules
from .torchplan import TorchPlan, stand_ins, torch_abi_config, torch_plan
from .torchplan import torchvision_for as torchvision_for  # re-exported

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
    torch: TorchPlan | None = None
    # The harness's torch-ABI stand-in (torchplan.torch_abi_config), or None.
    torch_abi: dict[str, object] | None = None

    @property
    def declare_torchvision_ops(self) -> bool:
        return self.torch is None or self.torch.declare_torchvision_ops

    def to_json(self) -> dict[str, object]:
        return {
            "root": str(self.root),
            "python": str(self.python),
            "stand_ins": [vars(s) for s in self.stand_ins],
            "missing": self.missing,
            "pip_check": self.pip_check,
            "reused": self.reused,
            "torch": self.torch.to_json() if self.torch else None,
            "torch_abi": self.torch_abi,
        }


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
    spec: Spec,
    closure: Closure,
    cache: Path,
    env: Environment,
    extra: list[StandIn],
    step: Step,
    skip: frozenset[str] = frozenset(),
) -> dict[str, Path]:
    """The locked wheel files (attr -> file), or for a wheel built for another CPython, the same release
    for this one: the file of the same tag for this CPython where the tag follows the Python (fetched into
    the lock's wheel cache without the locked file), else whatever file pip picks for it. `skip`: wheels
    a stand-in replaces (a wheel line's torch and torchvision beside a stand-in torch)."""
    line = spec.lines[closure.line]
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    files: dict[str, Path] = {}
    for locked in closure.wheels:
        if locked.attr in skip:
            continue
        wheel = line.wheels[locked.attr]
        want = Wanted(locked.filename, wheel, closure.system, closure.python)
        if locked.url:
            step(f"fetching {locked.filename}")
            path = fetch_url_wheel(want, cache)
            if path is None:
                env.missing.append(
                    f"{locked.attr}: {locked.filename} is not on the package index, and its host "
                    "cannot be reached from here"
                )
                continue
            files[locked.attr] = path
            continue
        if _installable(locked.filename):
            step(f"fetching {locked.filename}")
            try:
                files[locked.attr] = fetch_index_wheel(want, cache)
            except LockError as err:
                raise RehearseError(str(err)) from None
            continue
        why = f"the locked wheel is for CPython {closure.python}"
        same_tag = wheel.filename(closure.system, here)
        if same_tag and _installable(same_tag):
            step(f"fetching {same_tag}")
            try:
                path = fetch_index_wheel(Wanted(same_tag, wheel, closure.system, here), cache)
            except LockError as err:
                raise RehearseError(str(err)) from None
        else:
            path = _download_for_here(wheel.pname, wheel.version, cache / "rehearse-stand-ins", step)
        extra.append(StandIn(locked.attr, locked.filename, path.name, why))
        files[locked.attr] = path
    return files


def _download_for_here(pname: str, version: str, dest: Path, step: Step) -> Path:
    """Whatever wheel of pname==version pip picks for the interpreter running this tool."""
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    step(f"fetching {pname}=={version} for CPython {here}")
    dest.mkdir(parents=True, exist_ok=True)
    before = set(dest.glob("*.whl"))
    release = f"{pname}=={version}"
    args = ["download", "--quiet", "--no-deps", "--only-binary=:all:", "-d", str(dest), release]
    _pip(Path(sys.executable), args, f"download {release} for CPython {here}")
    got = [
        p
        for p in sorted(dest.glob("*.whl"), key=lambda p: (p not in before, p.name))
        if canonicalize_name(parse_wheel_filename(p.name)[0]) == canonicalize_name(pname)
        and str(parse_wheel_filename(p.name)[1]) == version
        and _installable(p.name)
    ]
    if not got:
        raise RehearseError(f"no {pname}=={version} wheel for CPython {here}")
    return got[-1]


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


def install_plan(closure: Closure, torch: TorchPlan) -> dict[str, object]:
    """What decides an environment's content: a complete one with the same plan is reused."""
    plan = {
        "closure": closure.install_plan(),
        "python": ".".join(map(str, sys.version_info[:3])),
        "torch": torch.version,
        "torchvision": torch.torchvision,
        "runtime": {name: (TOOL_DIR / name).read_text() for name in runtime_modules()},
    }
    # As saved (tuples become lists): compared with the saved plan, an unnormalised one never matched.
    return json.loads(json.dumps(plan))


def build_environment(
    spec: Spec, closure: Closure, cache: Path, torch_version: str, rebuild: bool, step: Step
) -> Environment:
    here = f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
    line = spec.lines[closure.line]
    torch = torch_plan(line, torch_version)
    plan = install_plan(closure, torch)
    base = cache / "rehearse"
    # The line's own torch gets an environment of its own beside the stand-in's.
    root = base / (closure.key + ("-torch" + torch_version if torch.real else ""))
    env = Environment(root=root, python=root / "venv" / "bin" / "python", site=Path(), torch=torch)
    env.stand_ins = [
        StandIn(
            "python",
            f"CPython {closure.python} (nixpkgs)",
            f"CPython {here}",
            "the interpreter running this tool",
        ),
        *(StandIn(*s) for s in stand_ins(torch, line, closure.python)),
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
            env.torch_abi = _torch_abi(torch, line, closure, env)
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
        extra: list[StandIn] = []
        files = _fetch_locked(spec, closure, cache / "wheels", env, extra, step, torch.skip_wheels)
        env.stand_ins += extra
        constraints = scratch / "constraints.txt"
        pins = [f"torch=={torch.version}", f"torchvision=={torch.torchvision}"]
        # The locked wheels stay as locked: nixpkgs' packages are built against them, not beside others.
        pins += [f"{canonicalize_name(line.wheels[a].pname)}=={line.wheels[a].version}" for a in files]
        pins += [
            f"{r.dist}{r.specifier}"
            for r in closure.requirements
            if r.specifier and r.attr not in BUILT_FROM_SOURCE
        ]
        constraints.write_text("\n".join(dict.fromkeys(pins)) + "\n")
        if torch.real:
            # The line's torch with its Requires-Dist: pip's nvidia-* wheels stand in for the CUDA libraries
            # autoPatchelf links in the Nix build (a stand-in the report names), and the locked triton.
            with_deps = [files.pop(a) for a in ("torch", "triton") if a in files]
            step(f"installing torch {torch.version} (the line's) with pip's CUDA libraries")
            args = ["install", "--quiet", "-c", str(constraints), *map(str, with_deps)]
            _pip(python, args, f"install torch {torch.version}")
        else:
            step(f"installing torch {torch.version} (stand-in)")
            _pip(python, ["install", "--quiet", f"torch=={torch.version}"], f"install torch=={torch.version}")
            step(f"installing torchvision {torch.torchvision} (stand-in, without its dependencies)")
            tv = f"torchvision=={torch.torchvision}"
            _pip(python, ["install", "--quiet", "--no-deps", tv], f"install {tv}")
        step(f"installing {len(files)} locked wheels (without their Requires-Dist, as the Nix build does)")
        if files:
            paths = [str(p) for p in files.values()]
            _pip(python, ["install", "--quiet", "--no-deps", *paths], "install the locked wheels")
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
        # (The line's own torch and the stand-in each keep one environment.)
        prefix = closure.key.rsplit("-", 1)[0] + "-"
        for old in base.glob(f"{prefix}*"):
            if old != root and old.is_dir() and ("-torch" in old.name) == torch.real:
                shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    env.site = Path(json.loads(ready.read_text())["site"])
    env.distributions = _distributions(env.python)
    env.torch_abi = _torch_abi(torch, line, closure, env)
    return env


def _torch_abi(torch: TorchPlan, line: Line, closure: Closure, env: Environment) -> dict[str, object] | None:
    top = {canonicalize_name(n): d["top_level"] for n, d in env.distributions.items()}
    return torch_abi_config(torch, line, [w.attr for w in closure.wheels], top)


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
