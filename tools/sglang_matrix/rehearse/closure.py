"""What a variant's Python closure holds, as the rehearsal installs it.

The Nix build composes three kinds of distributions: the release line's locked wheels (after pruning),
the requirements nixpkgs provides (at the versions nixpkgs has at the line's pin), and their own
dependencies. The rehearsal installs the same, with stand-ins where this machine cannot hold the real
thing (no GPU, no CUDA torch, another CPython): every stand-in is named in the plan and in the report.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from packaging.utils import canonicalize_name

from ..errors import UserError
from ..spec import Spec
from ..variants import Variant

# What the environment's runtime package (pkgs/runtime-scripts.nix) installs from tools/sglang_matrix
# (pkgs/runtime-modules.json, the one list both read), and what it propagates: `sglang-serve` and
# `sglang-resolve-model` run from these modules.
RUNTIME_LIST = Path(__file__).resolve().parents[3] / "pkgs" / "runtime-modules.json"
RUNTIME_REQUIRES = ("click",)


def runtime_modules() -> tuple[str, ...]:
    try:
        return tuple(json.loads(RUNTIME_LIST.read_text()))
    except (OSError, ValueError) as err:
        raise UserError(f"{RUNTIME_LIST}: cannot read the runtime package's module list: {err}") from None


# torch and torchvision are built from source by the variant's nixpkgs (CUDA, its SMs, its ISA): they
# always stand in here.
BUILT_FROM_SOURCE = ("torch", "torchvision")


@dataclass(frozen=True)
class LockedWheel:
    """One of the variant's locked wheels: the file Nix fetches and the paths it prunes."""

    attr: str
    pname: str
    version: str
    filename: str
    pruned: tuple[str, ...]
    # The wheel's file is fetched from a URL that is not on the package index (GitHub releases).
    url: str | None = None


@dataclass(frozen=True)
class Requirement:
    """A distribution the variant's Python set provides from nixpkgs (not one of the line's wheels)."""

    attr: str
    specifier: str  # nixpkgs' version at the pin ("==X"), or the range the evidence allows, or ""
    source: str | None  # where that was read, and how sure it is
    wanted_by: tuple[str, ...]

    @property
    def dist(self) -> str:
        return canonicalize_name(self.attr)


@dataclass(frozen=True)
class Closure:
    variant: str
    line: str
    python: str
    system: str
    wheels: tuple[LockedWheel, ...]
    requirements: tuple[Requirement, ...]
    # Requires-Dist names the spec leaves out on purpose (canonical name -> reason, first wheel's wins).
    dropped: dict[str, str]
    server_modules: dict[str, str]
    # Module (or package) -> why it cannot load without a GPU; the rehearsal stands in for it only when
    # it fails for that reason.
    gpu_only: dict[str, str]
    build_imports: tuple[str, ...]
    # When the line's nixpkgs was committed (flake.lock's lastModified, ISO 8601): a requirement whose
    # version the spec can only bracket gets the newest release in range that was out by then.
    nixpkgs_date: str | None = None

    @property
    def key(self) -> str:
        """Which closure this is: variants with the same key rehearse the same environment."""
        digest = hashlib.sha256(json.dumps(self.install_plan(), sort_keys=True).encode()).hexdigest()
        return f"{self.line}-py{self.python.replace('.', '')}-{self.system}-{digest[:12]}"

    def install_plan(self) -> dict[str, object]:
        """The part of the closure that decides what gets installed (not the checks)."""
        return {
            "wheels": [asdict(w) for w in self.wheels],
            "requirements": [asdict(r) for r in self.requirements],
            "nixpkgs_date": self.nixpkgs_date,
        }

    def requirement(self, attr: str) -> Requirement | None:
        return next((r for r in self.requirements if r.attr == attr), None)


def nixpkgs_date(flake_lock: Path, rev: str) -> str | None:
    """The commit time of nixpkgs at `rev`, from flake.lock's lastModified (None where it is not there)."""
    try:
        nodes = json.loads(flake_lock.read_text())["nodes"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    for node in nodes.values() if isinstance(nodes, dict) else ():
        locked = node.get("locked") if isinstance(node, dict) else None
        if (
            isinstance(locked, dict)
            and locked.get("rev") == rev
            and isinstance(locked.get("lastModified"), int)
        ):
            stamp = datetime.fromtimestamp(locked["lastModified"], tz=UTC)
            return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")
    return None


def line_nixpkgs_date(spec: Spec, line: str, flake_lock: Path) -> str | None:
    """When the nixpkgs of a release line was committed: its own pin's ([lines.X.nixpkgs]) where it has
    one, else the top-level [nixpkgs]'s."""
    return nixpkgs_date(flake_lock, spec.lines[line].nixpkgs_rev or spec.nixpkgs_rev)


def plan_closure(spec: Spec, variant: Variant, pinned_at: str | None = None) -> Closure:
    """The variant's closure as the Nix code composes it (pkgs/python-packages.nix, sglang-env.nix)."""
    line = spec.lines[variant.line]
    wheels: list[LockedWheel] = []
    wanted: dict[str, list[str]] = {}
    dropped: dict[str, str] = {}
    gpu_only: dict[str, str] = {}
    build_imports: list[str] = []
    for attr, filename in variant.wheels.items():
        wheel = line.wheels[attr]
        if not filename:
            raise UserError(f"{spec.path.name}: {variant.name} has no {attr} wheel for {variant.system}")
        wheels.append(
            LockedWheel(
                attr=attr,
                pname=wheel.pname,
                version=wheel.version,
                filename=filename,
                pruned=variant.pruned.get(attr, ()),
                url=wheel.url.get(variant.system),
            )
        )
        for provider in wheel.dependencies:
            # A requirement on one of the line's wheels that this variant goes without is left out, as
            # the Nix code does.
            if provider in line.wheels:
                continue
            wanted.setdefault(provider, []).append(attr)
        for name, reason in wheel.dropped.items():
            dropped.setdefault(canonicalize_name(name), f"{attr}: {reason}")
        build_imports.extend(wheel.imports)
    for provider in RUNTIME_REQUIRES:
        wanted.setdefault(provider, []).append("sglang-matrix-runtime")
    versions = line.nixpkgs_versions
    requirements = tuple(
        Requirement(
            attr=attr,
            specifier=versions[attr].specifier if attr in versions else "",
            source=versions[attr].source if attr in versions else None,
            wanted_by=tuple(dict.fromkeys(by)),
        )
        for attr, by in sorted(wanted.items())
    )
    gpu_only.update(line.gpu_only_modules)
    return Closure(
        variant=variant.name,
        line=variant.line,
        python=variant.python,
        system=variant.system,
        wheels=tuple(wheels),
        requirements=requirements,
        dropped=dropped,
        server_modules=dict(line.server_modules),
        gpu_only=gpu_only,
        build_imports=tuple(dict.fromkeys(build_imports)),
        nixpkgs_date=pinned_at,
    )
