"""The parsed spec: frozen dataclasses, and `unsupported()`, the CUDA-capability rule that both the spec's
checks and the variants apply. Imports nothing of the project (but a type, for the checker)."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..weights import Weights


@dataclass(frozen=True)
class Isa:
    name: str
    systems: tuple[str, ...]
    description: str
    flags: tuple[str, ...]
    cpu_features: tuple[str, ...]
    # The -march name builders advertise as the system feature gccarch-<name> (None: any builder).
    gcc_arch: str | None = None


@dataclass(frozen=True)
class Capability:
    name: str
    min_cuda: str
    max_cuda: str | None


@dataclass(frozen=True)
class Target:
    name: str
    capabilities: tuple[str, ...]
    architecture: str
    gpus: tuple[str, ...]
    cudnn: bool
    cudnn_reason: str | None


@dataclass(frozen=True)
class PruneRule:
    """A path inside a wheel's install tree (a shell glob, relative to site-packages) that a variant drops
    when none of its capabilities uses it: kept `for` these capabilities, or for any capability
    `but` these; with neither, dropped from every variant (dead for all of them)."""

    path: str
    keep_for: tuple[str, ...]
    keep_but: tuple[str, ...]
    reason: str
    # The systems whose wheel has the path (empty: every system's). sglang-kernel 0.4.10's FA3 object is in
    # its x86_64 wheel only, and a rule that matches nothing stops the Nix build.
    systems: tuple[str, ...] = ()

    def applies(self, system: str | None) -> bool:
        """Whether the rule is about this system's wheel (None: any system, as for a pure wheel)."""
        return system is None or not self.systems or system in self.systems

    def keeps(self, capabilities: tuple[str, ...]) -> bool:
        if self.keep_for:
            return any(cap in self.keep_for for cap in capabilities)
        if self.keep_but:
            return any(cap not in self.keep_but for cap in capabilities)
        return False


@dataclass(frozen=True)
class Wheel:
    attr: str
    pname: str
    version: str
    tags: dict[str, str]
    url: dict[str, str]
    hash: dict[str, str]
    libraries: tuple[str, ...]
    requires: dict[str, str]
    dropped: dict[str, str]
    gpu_code_gaps: dict[str, str]
    accepted_skew: dict[str, str]
    imports: tuple[str, ...]
    no_import_check: str | None
    remove_deps: bool
    native_code: bool
    description: str
    homepage: str
    license: str
    cudas: tuple[str, ...] = ()
    # Why variants may go without this wheel (None: every variant needs it).
    optional: str | None = None
    # With pruning on: the wheel is left out of variants with none of these capabilities.
    keep_for: tuple[str, ...] = ()
    prune: tuple[PruneRule, ...] = ()
    # Modules the wheel's code imports only under a condition (an `if` at module level) that may go
    # unprovided: module -> why (`audit --imports` fails on any other unprovided conditional import).
    optional_imports: dict[str, str] = field(default_factory=dict)

    def kept(self, capabilities: tuple[str, ...]) -> bool:
        """Whether pruning keeps this wheel for a variant with these capabilities."""
        return not self.keep_for or any(cap in self.keep_for for cap in capabilities)

    def pruned_paths(self, capabilities: tuple[str, ...], system: str | None = None) -> tuple[str, ...]:
        return tuple(
            rule.path for rule in self.prune if rule.applies(system) and not rule.keeps(capabilities)
        )

    def available(self, system: str, cuda: str) -> bool:
        """Whether a variant on this system and CUDA gets this wheel."""
        return ("any" in self.tags or system in self.tags) and (not self.cudas or cuda in self.cudas)

    def tag(self, system: str, python: str) -> str | None:
        """The wheel's python-abi-platform tag for a system, or None when it has none there."""
        raw = self.tags.get("any", self.tags.get(system))
        return None if raw is None else raw.replace("{python}", python.replace(".", ""))

    def filename(self, system: str, python: str) -> str | None:
        tag = self.tag(system, python)
        return None if tag is None else f"{self.pname}-{self.version}-{tag}.whl"

    @property
    def pure(self) -> bool:
        return "any" in self.tags

    @property
    def dependencies(self) -> tuple[str, ...]:
        """Attributes of the variant's Python set this wheel propagates, each once, in spec order."""
        return tuple(dict.fromkeys(self.requires.values()))


@dataclass(frozen=True)
class Exclude:
    """Leaves out the variants that match every field (each a set of accepted values)."""

    fields: dict[str, tuple[str, ...]]
    reason: str

    def matches(self, values: dict[str, str | None]) -> bool:
        return all(values[name] in accepted for name, accepted in self.fields.items())


@dataclass(frozen=True)
class ServeDefault:
    """SGLANG_* variables the launchers of the matching variants (every field, as an exclude) set unless
    the user has: a launch default the variant needs (GH200's sglang-kernel has no FA3, sglang's Hopper
    default)."""

    fields: dict[str, tuple[str, ...]]
    variables: dict[str, str]
    reason: str

    def matches(self, values: dict[str, str | None]) -> bool:
        return all(values[name] in accepted for name, accepted in self.fields.items())


@dataclass(frozen=True)
class NixpkgsVersion:
    """The version of a Python package nixpkgs has at a line's pin, and the evidence for it."""

    version: str | None  # settled (or probable, as evidence says)
    range: str | None  # where no single version can be settled: what the evidence allows (PEP 440)
    file: str
    commit: str | None
    evidence: str

    @property
    def source(self) -> str:
        at = f" @ {self.commit[:12]}" if self.commit else ""
        return f"nixpkgs {self.file}{at}: {self.evidence}"

    @property
    def specifier(self) -> str:
        """As a requirement specifier: "==4.57.1", ">=1.0,<2", or "" where nothing is known."""
        return f"=={self.version}" if self.version else (self.range or "")


@dataclass(frozen=True)
class Line:
    name: str
    pythons: tuple[str, ...]
    cudas: tuple[str, ...]
    systems: tuple[str, ...]
    targets: tuple[str, ...]
    isas: tuple[str, ...]
    short_name: str
    long_name: str
    torch_version: str
    wheels: dict[str, Wheel]
    excludes: tuple[Exclude, ...] = ()
    serve_defaults: tuple[ServeDefault, ...] = ()
    # Module the server loads at start-up -> who loads it (rehearse imports them, audit --imports walks them).
    server_modules: dict[str, str] = field(default_factory=dict)
    # Module (or package) -> why it cannot load without a GPU (the rehearsal stands in for it then).
    gpu_only_modules: dict[str, str] = field(default_factory=dict)
    # nixpkgs attribute of the variant's Python set -> the version nixpkgs has at the pin.
    nixpkgs_versions: dict[str, NixpkgsVersion] = field(default_factory=dict)
    # "nixpkgs" (nixpkgs' source torch, per target and ISA) or "wheel" (the line's torch wheel; no ISAs).
    torch_source: str = "nixpkgs"
    # The line's own nixpkgs ([lines.X.nixpkgs]): flake input and revision; None: the top-level [nixpkgs].
    nixpkgs_input: str | None = None
    nixpkgs_rev: str | None = None
    # Import name -> distribution, for this line only (over the top-level [module-distributions]).
    module_distributions: dict[str, str] = field(default_factory=dict)

    @property
    def python(self) -> str:
        """The line's default Python (its variants get the short names)."""
        return self.pythons[0]

    @property
    def cuda(self) -> str:
        """The line's default CUDA (its variants get the short names)."""
        return self.cudas[0]


@dataclass(frozen=True)
class CudaDrivers:
    """[cuda-drivers]: `minimum` per CUDA major (the oldest driver that runs it through minor-version
    compatibility), `full` per CUDA release (the driver of its GA: every feature and its PTX)."""

    minimum: dict[str, str]
    full: dict[str, str]


@dataclass(frozen=True)
class Spec:
    path: Path
    nixpkgs_rev: str
    min_nix: str
    max_jobs_cap: int
    default_variant: str
    prune_device_code: bool
    isas: dict[str, Isa]
    capabilities: dict[str, Capability]
    targets: dict[str, Target]
    sonames: dict[str, str]
    lines: dict[str, Line]
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)
    # Top-level import name -> the distribution that provides it, where the names differ (audit --imports).
    module_distributions: dict[str, str] = field(default_factory=dict)
    # [cuda-drivers]: NVIDIA's driver versions per CUDA release (None when the spec has no such table).
    cuda_drivers: CudaDrivers | None = None
    # [build] torch-nvcc-flags: extra nvcc flags for torch's CUDA code (TORCH_NVCC_FLAGS).
    torch_nvcc_flags: tuple[str, ...] = ()
    # [build] torch-cuda-libraries: library -> whether torch links it (absent: it does, nixpkgs' default).
    torch_cuda_libraries: dict[str, bool] = field(default_factory=dict)
    # [plan]: the weights `plan` and the CI timeouts use (None only for a Spec built without parse_spec).
    weights: Weights | None = None

    def provider(self, soname: str) -> str | None:
        """What provides a SONAME per [sonames] (first matching glob), or None."""
        for pattern, provider in self.sonames.items():
            if fnmatch.fnmatchcase(soname, pattern):
                return provider
        return None


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


def unsupported(capabilities: dict[str, Capability], caps: tuple[str, ...], cuda: str) -> str | None:
    """Why CUDA `cuda` cannot build these capabilities, or None when it can."""
    for cap in caps:
        info = capabilities[cap]
        if _version_tuple(cuda) < _version_tuple(info.min_cuda):
            return f"capability {cap} needs CUDA >= {info.min_cuda}, but this line uses CUDA {cuda}"
        if info.max_cuda is not None and _version_tuple(cuda) > _version_tuple(info.max_cuda):
            return f"capability {cap} needs CUDA <= {info.max_cuda}, but this line uses CUDA {cuda}"
    return None
