"""The variants as preflight sees them: what each is built for, and NVIDIA's driver table.

Two sources give the same shape:

* the spec (`matrix_from_spec`: matrix.toml through `resolve_variants`), in a checkout;
* an environment's own record, `$SGLANG_MATRIX_RECORD`, which pkgs/sglang-env.nix writes from the same
  matrix.toml (the variants of its system and the [cuda-drivers] table) and its launchers export, so a
  variant's `sglang-serve` can name the variant that fits without the spec or the tool.

The record is JSON: {"schema": 1, "variant": LONG_NAME, "cudaDrivers": {"minimum": {...}, "full": {...}}
or null, "variants": [{"name", "longName", "line", "system", "target", "isa", "python", "cuda",
"capabilities", "cpuFeatures"}, ...]}: the variants of the environment's own release line and system.
`isa` is null, and `cpuFeatures` empty, for a variant without an ISA (a line whose torch is a prebuilt
wheel: it runs on any CPU of its system). Standard library only.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .probe import HostError

RECORD_ENV = "SGLANG_MATRIX_RECORD"
RECORD_SCHEMA = 1
FIELDS = ("name", "longName", "line", "system", "target", "isa", "python", "cuda")
# Fields that may be null: a variant without an ISA.
NULLABLE = frozenset({"isa"})
VERSION_RE = re.compile(r"[0-9]+(\.[0-9]+){0,2}")


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


@dataclass(frozen=True)
class VariantFacts:
    name: str
    long_name: str
    line: str
    system: str
    target: str
    isa: str | None
    python: str
    cuda: str
    capabilities: tuple[str, ...]
    cpu_features: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "longName": self.long_name,
            "line": self.line,
            "system": self.system,
            "target": self.target,
            "isa": self.isa,
            "python": self.python,
            "cuda": self.cuda,
            "capabilities": list(self.capabilities),
            "cpuFeatures": list(self.cpu_features),
        }


@dataclass(frozen=True)
class DriverTable:
    """[cuda-drivers]: the oldest driver per CUDA major (minor-version compatibility) and the driver of
    each CUDA release's GA (full support: every feature, PTX of that release)."""

    minimum: dict[str, str]
    full: dict[str, str]

    def minimum_for(self, cuda: str) -> str | None:
        return self.minimum.get(cuda.split(".")[0])

    def full_for(self, cuda: str) -> str | None:
        return self.full.get(cuda)

    def to_json(self) -> dict[str, Any]:
        return {"minimum": dict(self.minimum), "full": dict(self.full)}


@dataclass(frozen=True)
class Matrix:
    variants: tuple[VariantFacts, ...]
    drivers: DriverTable | None
    current: VariantFacts
    source: str

    def find(self, name: str) -> VariantFacts | None:
        return next((v for v in self.variants if name in (v.name, v.long_name)), None)

    def select(self, name: str) -> Matrix:
        found = self.find(name)
        if found is None:
            raise HostError(f"--variant {name!r}: no such variant in {self.source}")
        return Matrix(self.variants, self.drivers, found, self.source)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": RECORD_SCHEMA,
            "variant": self.current.long_name,
            "cudaDrivers": self.drivers.to_json() if self.drivers else None,
            "variants": [v.to_json() for v in self.variants],
        }


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise HostError(f"{where}: must be a list of strings")
    return tuple(value)


def _table(value: Any, where: str, key: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise HostError(f"{where}: must be an object")
    for k, v in value.items():
        if not re.fullmatch(key, k) or not isinstance(v, str) or not VERSION_RE.fullmatch(v):
            raise HostError(f"{where}.{k}: {v!r} is not a driver version")
    return dict(value)


def parse_record(data: Any, where: str) -> Matrix:
    """A record (see the module's docstring); every problem is one HostError naming the field."""
    if not isinstance(data, dict) or data.get("schema") != RECORD_SCHEMA:
        raise HostError(f"{where}: not a sglang-matrix record (schema {RECORD_SCHEMA})")
    variants = []
    raw = data.get("variants")
    if not isinstance(raw, list) or not raw:
        raise HostError(f"{where}: variants: must be a non-empty list")
    for i, entry in enumerate(raw):
        here = f"{where}: variants[{i}]"
        if not isinstance(entry, dict):
            raise HostError(f"{here}: must be an object")
        for name in FIELDS:
            if name in NULLABLE and entry.get(name, "") is None:
                continue
            if not isinstance(entry.get(name), str) or not entry[name]:
                null = " or null" if name in NULLABLE else ""
                raise HostError(f"{here}.{name}: must be a non-empty string{null}")
        variants.append(
            VariantFacts(
                *(entry[name] for name in FIELDS),
                capabilities=_strings(entry.get("capabilities"), f"{here}.capabilities"),
                cpu_features=_strings(entry.get("cpuFeatures"), f"{here}.cpuFeatures"),
            )
        )
    drivers = None
    if data.get("cudaDrivers") is not None:
        raw_drivers = data["cudaDrivers"]
        if not isinstance(raw_drivers, dict):
            raise HostError(f"{where}: cudaDrivers: must be an object")
        drivers = DriverTable(
            _table(raw_drivers.get("minimum"), f"{where}: cudaDrivers.minimum", r"[0-9]+"),
            _table(raw_drivers.get("full"), f"{where}: cudaDrivers.full", r"[0-9]+\.[0-9]+"),
        )
    name = data.get("variant")
    current = next((v for v in variants if name in (v.name, v.long_name)), None)
    if current is None:
        raise HostError(f"{where}: variant: {name!r} is not among its variants")
    return Matrix(tuple(variants), drivers, current, where)


def load_record(path: str | Path) -> Matrix:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise HostError(f"{path}: cannot read: {err.strerror or err}") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise HostError(f"{path}: not valid JSON: {err}") from None
    return parse_record(data, str(path))


def matrix_from_spec(spec: Any, name: str) -> Matrix:
    """The record an environment of variant `name` carries (what pkgs/sglang-env.nix writes: the variants
    of its line and system), computed from a loaded spec through `Variant.to_json` and read back by
    `parse_record`, so both sources pass the same checks."""
    from ..variants import resolve_variants  # the spec's modules: only in a checkout, never at run time

    every = resolve_variants(spec)
    chosen = next((v for v in every if name in (v.name, v.long_name)), None)
    if chosen is None:
        raise HostError(f"--variant {name!r}: no such variant in {spec.path} (see `sglang-matrix list`)")
    entries = []
    for v in every:
        if (v.system, v.line) != (chosen.system, chosen.line):
            continue
        data = v.to_json()
        entry = {key: data[key] for key in (*FIELDS, "capabilities")}
        entry["cpuFeatures"] = list(spec.isas[v.isa].cpu_features) if v.isa is not None else []
        entries.append(entry)
    table = getattr(spec, "cuda_drivers", None)
    drivers = DriverTable(dict(table.minimum), dict(table.full)).to_json() if table is not None else None
    record = {
        "schema": RECORD_SCHEMA,
        "variant": chosen.long_name,
        "cudaDrivers": drivers,
        "variants": entries,
    }
    return parse_record(record, str(spec.path))
