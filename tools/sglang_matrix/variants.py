"""Resolve the spec into variants: release line x system x target x ISA.

`Variant.to_json()` has exactly the shape that the nixpkgs-free Nix layer (`lib/`) computes for each
variant, so a test can compare the two views field by field.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import SpecError
from .spec import NAME_RE, key, unsupported

if TYPE_CHECKING:
    from .spec import Line, Spec


@dataclass(frozen=True)
class Variant:
    name: str
    long_name: str
    line: str
    system: str
    target: str
    isa: str
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

    @property
    def nixpkgs_key(self) -> str:
        """One nixpkgs instance serves every variant with the same key (ISA only changes torch)."""
        return f"{self.system}-cuda{self.cuda}-{'+'.join(self.capabilities)}"

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
        }


def expand(template: str, line: Line, python: str, cuda: str, target: str, isa: str) -> str:
    values = {
        "target": target,
        "isa": isa,
        "python": python.replace(".", ""),
        "cuda": cuda.replace(".", "_"),
        "line": line.name.replace(".", "_"),
    }
    for placeholder, value in values.items():
        template = template.replace("{" + placeholder + "}", value)
    return template


def combinations(spec: Spec, line: Line) -> Iterator[dict[str, str]]:
    """The line's Python x CUDA x system x target x ISA, less what the rules leave out."""
    for python, cuda, system, target, isa in itertools.product(
        line.pythons, line.cudas, line.systems, line.targets, line.isas
    ):
        if system not in spec.isas[isa].systems:
            continue
        if unsupported(spec.capabilities, spec.targets[target].capabilities, cuda) is not None:
            continue
        values = {"python": python, "cuda": cuda, "system": system, "target": target, "isa": isa}
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
        for c in combinations(spec, line):
            default = c["python"] == line.python and c["cuda"] == line.cuda
            long_name = expand(line.long_name, line, c["python"], c["cuda"], c["target"], c["isa"])
            short_name = (
                expand(line.short_name, line, c["python"], c["cuda"], c["target"], c["isa"])
                if default
                else long_name
            )
            what = f"lines.{key(line_name)} " + " ".join(f"{k} {v}" for k, v in c.items())
            for field_name, name in (("short-name", short_name), ("long-name", long_name)):
                where = f"lines.{key(line_name)}.{field_name}"
                if not NAME_RE.match(name):
                    raise SpecError(file, where, name, "does not make a valid Nix attribute name")
                if seen.get(name, what) != what:
                    raise SpecError(file, where, name, f"duplicate variant name (also {seen[name]})")
                seen[name] = what
            target, isa = spec.targets[c["target"]], spec.isas[c["isa"]]
            prune = spec.prune_device_code
            available = {
                attr: wheel
                for attr, wheel in line.wheels.items()
                if wheel.available(c["system"], c["cuda"]) and (not prune or wheel.kept(target.capabilities))
            }
            pruned = {
                attr: paths
                for attr, wheel in available.items()
                if prune and (paths := wheel.pruned_paths(target.capabilities))
            }
            versions = {attr: wheel.version for attr, wheel in available.items()}
            versions["torch"] = line.torch_version
            wheels = {
                attr: wheel.filename(c["system"], c["python"]) or "" for attr, wheel in available.items()
            }
            variants.append(
                Variant(
                    name=short_name,
                    long_name=long_name,
                    line=line_name,
                    system=c["system"],
                    target=c["target"],
                    isa=c["isa"],
                    capabilities=target.capabilities,
                    architecture=target.architecture,
                    gpus=target.gpus,
                    cflags=isa.flags,
                    python=c["python"],
                    cuda=c["cuda"],
                    cudnn=target.cudnn and spec.torch_cuda_libraries.get("cudnn", True),
                    max_jobs_cap=spec.max_jobs_cap,
                    versions=versions,
                    wheels=wheels,
                    pruned=pruned,
                    gcc_arch=isa.gcc_arch,
                    cusparselt=spec.torch_cuda_libraries.get("cusparselt", True),
                    torch_nvcc_flags=spec.torch_nvcc_flags,
                )
            )
    return variants


def find_variant(spec: Spec, name: str) -> Variant | None:
    for variant in resolve_variants(spec):
        if name in (variant.name, variant.long_name):
            return variant
    return None
