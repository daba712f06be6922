"""Resolve the spec into variants: release line x system x target x ISA (a line whose torch is a wheel has
no ISAs: one variant per system and target).

`Variant.to_json()` has exactly the shape that the nixpkgs-free Nix layer (`lib/`) computes for each
variant, so a test can compare the two views field by field.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import SpecError
from .spec.model import unsupported
from .spec.schema import NAME_RE, key

if TYPE_CHECKING:
    from .spec.model import Line, Spec


@dataclass(frozen=True)
class Variant:
    name: str
    long_name: str
    line: str
    system: str
    target: str
    # None on a line whose torch is a wheel: the same files run on every CPU of the system.
    isa: str | None
    capabilities: tuple[str, ...]
    architecture: str
    gpus: tuple[str, ...]
    cflags: tuple[str, ...]
    python: str
    cuda: str
    cudnn: bool
    max_jobs_cap: int
    versions: dict[str, str]
    wheels: dict[str, str]
    # Paths each wheel leaves out for this variant (pruning on): dead device code, per the spec's rules.
    pruned: dict[str, tuple[str, ...]]
    # The ISA's -march name: torch and what imports it require the system feature gccarch-<gcc_arch>.
    gcc_arch: str | None = None
    # Whether torch links cuSPARSELt ([build] torch-cuda-libraries); `cudnn` above likewise, and a
    # target's `cudnn = false` wins.
    cusparselt: bool = True
    # Extra nvcc flags for torch's CUDA code ([build] torch-nvcc-flags: TORCH_NVCC_FLAGS).
    torch_nvcc_flags: tuple[str, ...] = ()
    # "nixpkgs" (source torch per target and ISA) or "wheel" (the line's torch wheel).
    torch_source: str = "nixpkgs"
    # The line's own flake input (None: the flake's `nixpkgs`).
    nixpkgs_input: str | None = None
    # config.cudaCapabilities of the variant's nixpkgs instance. A wheel-torch line shares one instance
    # per system and CUDA among its targets (the union of their capabilities): torch and the CUDA
    # libraries (NCCL is built from source for config.cudaCapabilities) are then one store path for all of
    # them, and only the pruned wheels differ per target.
    instance_capabilities: tuple[str, ...] = ()
    # SGLANG_* variables the launchers default ([[lines.X.serve-defaults]] entries that match, in order).
    serve_defaults: dict[str, str] = field(default_factory=dict)

    @property
    def arch(self) -> str:
        """The CPU part of the Nix system ("x86_64"), the {arch} placeholder."""
        return self.system.split("-")[0]

    @property
    def nixpkgs_key(self) -> str:
        """One nixpkgs instance serves every variant with the same key (ISA only changes torch)."""
        if self.torch_source == "wheel":
            return f"{self.nixpkgs_input or 'nixpkgs'}-{self.system}-cuda{self.cuda}"
        key = f"{self.system}-cuda{self.cuda}-{'+'.join(self.capabilities)}"
        return f"{self.nixpkgs_input}-{key}" if self.nixpkgs_input else key

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "longName": self.long_name,
            "line": self.line,
            "system": self.system,
            "target": self.target,
            "isa": self.isa,
            "capabilities": list(self.capabilities),
            "architecture": self.architecture,
            "gpus": list(self.gpus),
            "cflags": list(self.cflags),
            "gccArch": self.gcc_arch,
            "python": self.python,
            "cuda": self.cuda,
            "cudnn": self.cudnn,
            "cusparselt": self.cusparselt,
            "torchNvccFlags": list(self.torch_nvcc_flags),
            "maxJobsCap": self.max_jobs_cap,
            "versions": dict(sorted(self.versions.items())),
            "wheels": dict(sorted(self.wheels.items())),
            "pruned": {attr: list(paths) for attr, paths in sorted(self.pruned.items())},
            "nixpkgsKey": self.nixpkgs_key,
            # Only where they differ from a source-torch line on the flake's nixpkgs, so that such a
            # line's variant records (and so its drvPaths) do not move.
            **({"nixpkgsInput": self.nixpkgs_input} if self.nixpkgs_input else {}),
            **(
                {"torchSource": self.torch_source, "instanceCapabilities": list(self.instance_capabilities)}
                if self.torch_source == "wheel"
                else {}
            ),
            **({"serveDefaults": dict(self.serve_defaults)} if self.serve_defaults else {}),
        }


def expand(
    template: str, line: Line, python: str, cuda: str, target: str, isa: str | None, system: str
) -> str:
    values = {
        "target": target,
        "isa": isa or "",
        "arch": system.split("-")[0],
        "python": python.replace(".", ""),
        "cuda": cuda.replace(".", "_"),
        "line": line.name.replace(".", "_"),
    }
    for placeholder, value in values.items():
        template = template.replace("{" + placeholder + "}", value)
    return template


def combinations(spec: Spec, line: Line) -> Iterator[dict[str, str | None]]:
    """The line's Python x CUDA x system x target x ISA, less what the rules leave out (ISA None on a
    line without ISAs)."""
    isas: tuple[str | None, ...] = line.isas or (None,)
    for python, cuda, system, target, isa in itertools.product(
        line.pythons, line.cudas, line.systems, line.targets, isas
    ):
        if isa is not None and system not in spec.isas[isa].systems:
            continue
        if unsupported(spec.capabilities, spec.targets[target].capabilities, cuda) is not None:
            continue
        values: dict[str, str | None] = {
            "python": python, "cuda": cuda, "system": system, "target": target, "isa": isa
        }  # fmt: skip
        if any(rule.matches(values) for rule in line.excludes):
            continue
        yield values


def resolve_variants(spec: Spec) -> list[Variant]:
    """Every variant of the matrix, in a stable order: lines by name, then the line's own orders."""
    file = spec.path.name
    variants: list[Variant] = []
    seen: dict[str, str] = {}
    for line_name in sorted(spec.lines):
        line = spec.lines[line_name]
        combos = list(combinations(spec, line))
        wheel_torch = line.torch_source == "wheel"
        for c in combos:
            python, cuda, system, target_name = (str(c[k]) for k in ("python", "cuda", "system", "target"))
            isa_name = c["isa"]
            default = python == line.python and cuda == line.cuda
            long_name = expand(line.long_name, line, python, cuda, target_name, isa_name, system)
            short_name = (
                expand(line.short_name, line, python, cuda, target_name, isa_name, system)
                if default
                else long_name
            )
            what = f"lines.{key(line_name)} " + " ".join(f"{k} {v}" for k, v in c.items() if v is not None)
            for field_name, name in (("short-name", short_name), ("long-name", long_name)):
                where = f"lines.{key(line_name)}.{field_name}"
                if not NAME_RE.match(name):
                    raise SpecError(file, where, name, "does not make a valid Nix attribute name")
                if seen.get(name, what) != what:
                    raise SpecError(file, where, name, f"duplicate variant name (also {seen[name]})")
                seen[name] = what
            target = spec.targets[target_name]
            isa = spec.isas[isa_name] if isa_name is not None else None
            prune = spec.prune_device_code
            available = {
                attr: wheel
                for attr, wheel in line.wheels.items()
                if wheel.available(system, cuda) and (not prune or wheel.kept(target.capabilities))
            }
            pruned = {
                attr: paths
                for attr, wheel in available.items()
                if prune and (paths := wheel.pruned_paths(target.capabilities, system))
            }
            versions = {attr: wheel.version for attr, wheel in available.items()}
            versions["torch"] = line.torch_version
            wheels = {attr: wheel.filename(system, python) or "" for attr, wheel in available.items()}
            shared = _instance_capabilities(spec, combos, system, cuda) if wheel_torch else ()
            defaults = {
                k: v for rule in line.serve_defaults if rule.matches(c) for k, v in rule.variables.items()
            }
            variants.append(
                Variant(
                    name=short_name,
                    long_name=long_name,
                    line=line_name,
                    system=system,
                    target=target_name,
                    isa=isa_name,
                    capabilities=target.capabilities,
                    architecture=target.architecture,
                    gpus=target.gpus,
                    cflags=isa.flags if isa else (),
                    python=python,
                    cuda=cuda,
                    # A torch wheel links cuDNN and cuSPARSELt as built; the switches are for source builds.
                    cudnn=wheel_torch or (target.cudnn and spec.torch_cuda_libraries.get("cudnn", True)),
                    max_jobs_cap=spec.max_jobs_cap,
                    versions=versions,
                    wheels=wheels,
                    pruned=pruned,
                    gcc_arch=isa.gcc_arch if isa else None,
                    cusparselt=wheel_torch or spec.torch_cuda_libraries.get("cusparselt", True),
                    torch_nvcc_flags=() if wheel_torch else spec.torch_nvcc_flags,
                    torch_source=line.torch_source,
                    nixpkgs_input=line.nixpkgs_input,
                    instance_capabilities=shared,
                    serve_defaults=defaults,
                )
            )
    return variants


def _instance_capabilities(
    spec: Spec, combos: list[dict[str, str | None]], system: str, cuda: str
) -> tuple[str, ...]:
    """The union of the capabilities of a line's targets on one system and CUDA, oldest first."""
    caps = {
        cap
        for c in combos
        if c["system"] == system and c["cuda"] == cuda
        for cap in spec.targets[str(c["target"])].capabilities
    }
    return tuple(sorted(caps, key=lambda cap: tuple(int(p) for p in cap.split("."))))


def find_variant(spec: Spec, name: str) -> Variant | None:
    for variant in resolve_variants(spec):
        if name in (variant.name, variant.long_name):
            return variant
    return None
