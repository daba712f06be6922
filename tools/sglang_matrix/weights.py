"""matrix.toml's [plan] table: the hours and gigabytes `plan` and the CI timeouts are computed from.

Parsed with the rest of the spec (spec.parse_spec), so every command accepts or rejects a spec alike. Every
field is optional; the defaults are the same numbers, so a cut-down spec without the table still plans and
renders. Each number must be finite and within bounds that keep every product of them finite: no NaN,
infinity or 1e308 reaches a timeout, a JSON document or a command line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .errors import SpecError
from .spec.schema import key

# Upper bounds: generous for any real builder, small enough that sums and products over thousands of
# variants stay far from float overflow.
MAX_CORES = 65536
MAX_HOURS = 10_000.0
MAX_DISK_GB = 1_000_000.0
MAX_TIMEOUT_FACTOR = 100.0


@dataclass(frozen=True)
class Weights:
    """The [plan] table. Field names are the TOML keys with dashes as underscores."""

    reference_cores: int = 16
    torch_hours_per_capability: float = 2.5
    torch_disk_gb: float = 30.0
    cuda_libs_hours_per_capability: float = 0.5
    cuda_libs_disk_gb: float = 5.0
    variant_hours: float = 0.25
    variant_disk_gb: float = 5.0
    pure_wheels_hours: float = 0.05
    pure_wheels_disk_gb: float = 2.0
    torchvision_hours: float = 0.25
    torchvision_hours_per_capability: float = 0.03
    torchvision_disk_gb: float = 3.0
    # A line whose torch is a prebuilt wheel: unpacking and patching it (once per system, CUDA and Python),
    # and NCCL, the one CUDA library its nixpkgs instance compiles, per capability of that instance.
    torch_wheel_hours: float = 0.1
    torch_wheel_disk_gb: float = 4.0
    nccl_hours_per_capability: float = 0.15
    ci_timeout_factor: float = 2.0


def toml_key(name: str) -> str:
    return name.replace("_", "-")


def _bounds(name: str) -> tuple[float, float]:
    if name == "reference-cores":
        return 1, MAX_CORES
    if name == "ci-timeout-factor":
        return 1, MAX_TIMEOUT_FACTOR
    return 0, MAX_DISK_GB if name.endswith("-disk-gb") else MAX_HOURS


def parse_weights(data: dict[str, Any], file: str) -> Weights:
    """The [plan] table of a parsed matrix.toml (absent: the defaults); SpecError on any bad value."""
    raw = data.get("plan", {})
    if not isinstance(raw, dict):
        raise SpecError(file, "plan", raw, "must be a table")
    known = {toml_key(f.name): f for f in fields(Weights)}
    values: dict[str, Any] = {}
    for name, value in raw.items():
        where = f"plan.{key(name)}"
        if name not in known:
            raise SpecError(file, where, value, f"unknown field (known: {', '.join(sorted(known))})")
        f = known[name]
        low, high = _bounds(name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SpecError(file, where, value, "must be a number")
        if f.type in (int, "int"):
            if not isinstance(value, int) or not low <= value <= high:
                raise SpecError(file, where, value, f"must be a positive integer, at most {high:g}")
        elif not (math.isfinite(value) and low <= value <= high):
            least = "at least 1" if low == 1 else "a non-negative number"
            raise SpecError(file, where, value, f"must be {least}, at most {high:g} (and finite)")
        values[f.name] = value
    return Weights(**values)


def spec_file_name(path: Path) -> str:
    """The spec's name as load_spec reports it."""
    return path.name if path.parent == Path(".") else str(path)
