"""Resolve the spec into variants: release line x system x target x ISA.

`Variant.to_json()` has exactly the shape that the nixpkgs-free Nix layer (`lib/`) computes for each
variant, so a test can compare the two views field by field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import SpecError
from .spec import NAME_RE, key

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
            "python": self.python,
            "cuda": self.cuda,
            "cudnn": self.cudnn,
            "maxJobsCap": self.max_jobs_cap,
            "versions": dict(sorted(self.versions.items())),
            "wheels": dict(sorted(self.wheels.items())),
            "nixpkgsKey": self.nixpkgs_key,
        }


def expand(template: str, line: Line, target: str, isa: str) -> str:
    values = {
        "target": target,
        "isa": isa,
        "python": line.python.replace(".", ""),
        "cuda": line.cuda.replace(".", "_"),
        "line": line.name.replace(".", "_"),
    }
    for placeholder, value in values.items():
        template = template.replace("{" + placeholder + "}", value)
    return template


def resolve_variants(spec: Spec) -> list[Variant]:
    """Every variant of the matrix, in a stable order: lines by name, then the line's own orders."""
    file = spec.path.name
    variants: list[Variant] = []
    seen: dict[str, str] = {}
    for line_name in sorted(spec.lines):
        line = spec.lines[line_name]
        for system in line.systems:
            for target_name in line.targets:
                target = spec.targets[target_name]
                for isa_name in line.isas:
                    isa = spec.isas[isa_name]
                    if system not in isa.systems:
                        continue
                    names = {}
                    for field_name, template in (
                        ("short-name", line.short_name),
                        ("long-name", line.long_name),
                    ):
                        name = expand(template, line, target_name, isa_name)
                        where = f"lines.{key(line_name)}.{field_name}"
                        if not NAME_RE.match(name):
                            raise SpecError(file, where, name, "does not make a valid Nix attribute name")
                        if name in seen:
                            raise SpecError(file, where, name, f"duplicate variant name (also {seen[name]})")
                        seen[name] = f"lines.{key(line_name)} {system} {target_name} {isa_name}"
                        names[field_name] = name
                    versions = {attr: w.version for attr, w in line.wheels.items()}
                    versions["torch"] = line.torch_version
                    wheels = {}
                    for attr, wheel in line.wheels.items():
                        filename = wheel.filename(system, line.python)
                        if filename is not None:
                            wheels[attr] = filename
                    variants.append(
                        Variant(
                            name=names["short-name"],
                            long_name=names["long-name"],
                            line=line_name,
                            system=system,
                            target=target_name,
                            isa=isa_name,
                            capabilities=target.capabilities,
                            architecture=target.architecture,
                            gpus=target.gpus,
                            cflags=isa.flags,
                            python=line.python,
                            cuda=line.cuda,
                            cudnn=target.cudnn,
                            max_jobs_cap=spec.max_jobs_cap,
                            versions=versions,
                            wheels=wheels,
                        )
                    )
    return variants


def find_variant(spec: Spec, name: str) -> Variant | None:
    for variant in resolve_variants(spec):
        if name in (variant.name, variant.long_name):
            return variant
    return None
