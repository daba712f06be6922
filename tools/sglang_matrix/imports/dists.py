"""The distributions of a variant's closure and the top-level modules each provides.

The closure is what the Nix build propagates: the variant's wheels, each wheel's `requires` (the spec's
word, not the wheel's Requires-Dist, which the build strips or never reads), and the dependencies of every
nixpkgs-provided requirement. Those dependencies, and the modules each distribution provides, come from an
environment of installed distributions (`--env`: a venv or site-packages, such as the rehearsal's), whose
Requires-Dist is evaluated for the variant's Python and system. PyPI's metadata stands in for nixpkgs'
here. Without an environment, or for a distribution that it lacks, a distribution's modules are guessed
from its name, the spec's `[module-distributions]` and its wheel's `imports`, and its dependencies are
unknown: the report says which.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import subprocess
import sys
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from packaging.markers import InvalidMarker, UndefinedComparison, UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from ..errors import UserError
from ..spec import Line, Spec
from ..variants import Variant

# Top-level standard-library modules removed in each Python release (PEP 594, PEP 632): the host's
# sys.stdlib_module_names is adjusted to the variant's Python with these.
REMOVED_FROM_STDLIB = {
    "3.12": frozenset({"asynchat", "asyncore", "distutils", "imp", "smtpd"}),
    "3.13": frozenset(
        {
            "aifc", "audioop", "cgi", "cgitb", "chunk", "crypt", "imghdr", "lib2to3", "mailcap", "msilib",
            "nis", "nntplib", "ossaudiodev", "pipes", "sndhdr", "spwd", "sunau", "telnetlib", "uu", "xdrlib",
        }
    ),
}  # fmt: skip

Origin = Literal["wheel", "requires", "dependency"]


def stdlib_modules(python: str) -> frozenset[str]:
    """The top-level standard-library modules of CPython `python` ("3.12")."""
    names = set(sys.stdlib_module_names)
    version = tuple(int(p) for p in python.split("."))
    for release, removed in REMOVED_FROM_STDLIB.items():
        if version >= tuple(int(p) for p in release.split(".")):
            names -= removed
        else:
            names |= removed
    return frozenset(names)


def guess_distribution(module: str) -> str:
    return canonicalize_name(module)


@dataclass(frozen=True)
class Installed:
    """One distribution of the environment."""

    name: str  # canonical
    version: str
    modules: frozenset[str]
    requires: tuple[Requirement, ...]  # parsed once: every variant's closure walks them
    unparsable: tuple[str, ...] = ()


@dataclass
class Environment:
    path: Path
    site: Path
    dists: dict[str, Installed]

    def providers(self, module: str) -> list[str]:
        return sorted(name for name, d in self.dists.items() if module in d.modules)


def site_packages(path: Path) -> Path:
    """The site-packages of a venv, or the directory itself when it holds distributions."""
    if not path.is_dir():
        raise UserError(f"--env {path}: no such directory")
    if any(path.glob("*.dist-info")):
        return path
    if (path / "pyvenv.cfg").is_file():
        sites = sorted(path.glob("lib/python3*/site-packages"))
        if sites:
            return sites[-1]
    raise UserError(f"--env {path}: neither a venv nor a site-packages directory with *.dist-info in it")


def pth_directories(path: Path, site: Path) -> list[tuple[str, ...]]:
    """Directories under site-packages that its .pth files put on sys.path (relative parts, longest first).

    nvidia-cutlass-dsl's .pth runs code (`sys.path.insert(0, ...dsl_packages)`): where the environment has
    an interpreter, ask it (isolated mode still processes site-packages' .pth files, as the variant's
    Python does); else read the .pth files' plain directory lines."""
    found: set[Path] = set()
    python = path / "bin" / "python"
    if (path / "pyvenv.cfg").is_file() and python.is_file():
        code = "import json, sys; print(json.dumps(sys.path))"
        try:
            proc = subprocess.run(
                [str(python), "-I", "-c", code], capture_output=True, text=True, timeout=60, check=False
            )
            entries = json.loads(proc.stdout) if proc.returncode == 0 else []
        except (OSError, subprocess.TimeoutExpired, ValueError):
            entries = []
        found.update(Path(e) for e in entries if isinstance(e, str) and e)
    for pth in site.glob("*.pth"):
        try:
            lines = pth.read_text().splitlines()
        except (OSError, UnicodeDecodeError):
            continue
        for line in lines:
            line = line.strip()
            if line and not line.startswith(("#", "import ", "import\t")):
                found.add(site / line)
    rel = set()
    for entry in found:
        try:
            parts = entry.resolve().relative_to(site.resolve()).parts
        except (OSError, ValueError):
            continue
        if parts and (site / Path(*parts)).is_dir():
            rel.add(parts)
    return sorted(rel, key=len, reverse=True)


def read_environment(path: Path) -> Environment:
    site = site_packages(path)
    extra = pth_directories(path, site)
    dists: dict[str, Installed] = {}
    for dist in md.distributions(path=[str(site)]):
        raw = dist.metadata["Name"]
        if not raw:
            continue
        name = canonicalize_name(raw)
        if name in dists:
            continue  # the first on the path wins, as for imports
        parsed, bad = [], []
        for text in dist.requires or ():
            try:
                parsed.append(Requirement(text))
            except InvalidRequirement:
                bad.append(text)
        dists[name] = Installed(name, dist.version, _modules(dist, extra), tuple(parsed), tuple(bad))
    if not dists:
        raise UserError(f"--env {path}: no installed distributions in {site}")
    return Environment(path, site, dists)


def _modules(dist: md.Distribution, extra: Sequence[tuple[str, ...]] = ()) -> frozenset[str]:
    """Top-level import names: RECORD's installed files, and top_level.txt where the wheel has one. A file
    under a directory a .pth file puts on sys.path (`extra`) provides a top-level name there too."""
    names: set[str] = set()
    for file in dist.files or ():
        parts = file.parts
        under = next((d for d in extra if parts[: len(d)] == d and len(parts) > len(d)), None)
        if under is not None:
            stem, _, ext = parts[len(under)].partition(".")
            if stem.isidentifier() and (len(parts) > len(under) + 1 or ext == "py" or ext.endswith("so")):
                names.add(stem)
        if not parts or parts[0] == ".." or parts[0].endswith((".dist-info", ".data", ".egg-info")):
            continue
        if parts[0] == "__pycache__":
            continue
        if len(parts) > 1:
            if parts[0].isidentifier():
                names.add(parts[0])
            continue
        stem, _, ext = parts[0].partition(".")
        if stem.isidentifier() and (ext == "py" or ext.endswith(("so", "pyd"))):
            names.add(stem)
    top = dist.read_text("top_level.txt")
    if top:
        names.update(n.strip().split("/")[0] for n in top.splitlines() if n.strip().isidentifier())
    return frozenset(names)


# --- the closure -------------------------------------------------------------------------------------


@dataclass
class ClosureDist:
    name: str  # canonical
    origin: Origin
    # What asked for it: "variant wheels", "wheels.sglang.requires", a distribution's name.
    via: list[str] = field(default_factory=list)
    installed: Installed | None = None
    modules: frozenset[str] = frozenset()
    # Where its module list comes from: the environment, or a guess (its name, the spec's tables).
    modules_from: Literal["environment", "spec"] = "spec"

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "origin": self.origin,
            "via": self.via,
            "version": self.installed.version if self.installed else None,
            "modules": sorted(self.modules),
            "modules_from": self.modules_from,
        }


@dataclass
class Closure:
    dists: dict[str, ClosureDist]
    # closure distributions whose dependencies could not be followed (not in the environment)
    unknown_deps: list[str]
    notes: list[str]

    def providers(self, module: str) -> list[ClosureDist]:
        return [d for d in self.dists.values() if module in d.modules]


def variant_markers(variant: Variant) -> dict[str, str]:
    machine = {"x86_64-linux": "x86_64", "aarch64-linux": "aarch64"}.get(variant.system, "x86_64")
    full = f"{variant.python}.0"
    return {
        "implementation_name": "cpython",
        "implementation_version": full,
        "os_name": "posix",
        "platform_machine": machine,
        "platform_python_implementation": "CPython",
        "platform_release": "",
        "platform_system": "Linux",
        "platform_version": "",
        "python_full_version": full,
        "python_version": variant.python,
        "sys_platform": "linux",
        "extra": "",
    }


def module_distributions(spec: Spec, line: Line) -> dict[str, str]:
    """Import name -> distribution for a line: its own `[lines.X.module-distributions]` over the
    top-level table (0.5.23's deep_gemm is sgl-deep-gemm's, 0.5.9's sgl-kernel's)."""
    return {**spec.module_distributions, **line.module_distributions}


def spec_modules(
    spec: Spec, line: Line, dist: str, wheel_modules: dict[str, frozenset[str]]
) -> frozenset[str]:
    """A distribution's modules as the spec knows them: `[module-distributions]`, its wheel's `imports`
    and top-level names (when the wheel was read), else its own name as a module."""
    names = {m for m, d in module_distributions(spec, line).items() if canonicalize_name(d) == dist}
    wheel = next((w for attr, w in line.wheels.items() if canonicalize_name(attr) == dist), None)
    if wheel is not None:
        names.update(m.split(".")[0] for m in wheel.imports)
        names.update(wheel_modules.get(wheel.attr, ()))
        names.add(wheel.pname.lower())
    names.add(dist.replace("-", "_"))
    return frozenset(n for n in names if n.isidentifier())


def variant_closure(
    spec: Spec,
    variant: Variant,
    env: Environment | None,
    wheel_modules: dict[str, frozenset[str]],
) -> Closure:
    """Every distribution of the variant's Python closure, with where it came from."""
    line = spec.lines[variant.line]
    markers = variant_markers(variant)
    dists: dict[str, ClosureDist] = {}
    queue: deque[tuple[str, frozenset[str]]] = deque()
    notes: list[str] = []
    wheel_names = {canonicalize_name(attr): attr for attr in line.wheels}

    walked_extras: dict[str, frozenset[str]] = {}

    def add(name: str, origin: Origin, via: str, extras: frozenset[str] = frozenset()) -> None:
        name = canonicalize_name(name)
        if name in dists:
            if via not in dists[name].via:
                dists[name].via.append(via)
            if not extras <= walked_extras[name]:  # asked for again with more extras: walk those too
                walked_extras[name] |= extras
                queue.append((name, extras))
            return
        dists[name] = ClosureDist(name, origin, [via])
        walked_extras[name] = extras
        queue.append((name, extras))

    for attr in variant.wheels:
        add(attr, "wheel", "variant wheels")
    add("torch", "requires", f'lines."{line.name}".torch')
    for attr in variant.wheels:
        wheel = line.wheels[attr]
        for req, provider in wheel.requires.items():
            if provider in line.wheels and provider not in variant.wheels:
                continue  # an optional wheel this variant goes without: the build leaves the entry out
            add(provider, "requires", f"wheels.{attr}.requires")
            # The requirement's own name too where the environment installs it under that name (cuda-python
            # for nixpkgs' cuda-bindings).
            if env is not None and canonicalize_name(req) in env.dists:
                add(req, "requires", f"wheels.{attr}.requires")

    unknown: list[str] = []
    while queue:
        name, extras = queue.popleft()
        entry = dists[name]
        installed = env.dists.get(name) if env is not None else None
        entry.installed = installed
        if installed is not None:
            entry.modules, entry.modules_from = installed.modules, "environment"
        else:
            entry.modules = spec_modules(spec, line, name, wheel_modules)
        if name in wheel_names:
            continue  # a spec wheel propagates its `requires` only (added above)
        if installed is None:
            unknown.append(name)
            continue
        notes += [f"{name}: cannot parse Requires-Dist {text!r}" for text in installed.unparsable]
        for req in installed.requires:
            if req.marker is not None:
                try:
                    applies = any(
                        req.marker.evaluate({**markers, "extra": extra}) for extra in ("", *sorted(extras))
                    )
                except (InvalidMarker, UndefinedComparison, UndefinedEnvironmentName) as err:
                    notes.append(f"{name}: cannot evaluate the marker of {str(req)!r}: {err}")
                    continue
                if not applies:
                    continue
            add(req.name, "dependency", name, frozenset(req.extras))
    return Closure(dists, sorted(unknown) if env is not None else [], notes)
