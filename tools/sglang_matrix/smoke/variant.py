"""Which variant RESULT is: its own record, a name from the spec, or a Variant JSON file."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import UserError
from .model import VARIANT_JSON, SmokeVariant


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UserError(f"{where}: must be a list of strings")
    return tuple(value)


def features_from_cflags(cflags: Iterable[str]) -> tuple[str, ...]:
    """`-mavx512f` -> `avx512f`: the /proc/cpuinfo flag each `-m<feature>` needs (no spec at hand)."""
    out = []
    for flag in cflags:
        m = re.fullmatch(r"-m([a-z0-9_]+)", flag)
        if m:
            out.append(m.group(1))
    return tuple(out)


def variant_from_json(data: Any, where: str, spec: Any = None) -> SmokeVariant:
    """A variant from `Variant.to_json()` (the file RESULT installs, or one given with --variant)."""
    if not isinstance(data, dict):
        raise UserError(f"{where}: not a JSON object")
    name = data.get("name")
    python = data.get("python")
    if not isinstance(name, str) or not name:
        raise UserError(f"{where}: no 'name'")
    if not isinstance(python, str) or not re.fullmatch(r"\d+\.\d+", python):
        raise UserError(f"{where}: 'python' must be like \"3.12\", not {python!r}")
    capabilities = _strings(data.get("capabilities"), f"{where}: capabilities")
    # null (or absent): no ISA, the variant runs on any CPU of its system.
    isa = data["isa"] if isinstance(data.get("isa"), str) and data["isa"] else None
    features: tuple[str, ...] | None = None
    if "cpuFeatures" in data:
        features = _strings(data["cpuFeatures"], f"{where}: cpuFeatures")
    elif isa is None:
        features = ()
    elif spec is not None and isa in spec.isas:
        features = spec.isas[isa].cpu_features
    else:
        features = features_from_cflags(data.get("cflags") or [])
    return SmokeVariant(
        name, capabilities, python, isa, features, where, data, spec_gaps(spec, data.get("line"))
    )


# The GPU check that exercises each wheel, for the spec's gpu-code-gaps (sgl-kernel is `sglang-kernel`
# from sglang 0.5.23 on: the same sgl_kernel module).
GPU_CHECK_OF_WHEEL = {
    "sgl-kernel": "gpu:sgl-kernel",
    "sglang-kernel": "gpu:sgl-kernel",
    "flashinfer-python": "gpu:flashinfer",
}


def spec_gaps(spec: Any, line: Any) -> dict[str, dict[str, str]]:
    wheels = spec.lines[line].wheels if spec is not None and line in getattr(spec, "lines", {}) else {}
    return {
        cid: dict(wheels[attr].gpu_code_gaps)
        for attr, cid in GPU_CHECK_OF_WHEEL.items()
        if attr in wheels and wheels[attr].gpu_code_gaps
    }


def variant_from_spec(spec: Any, name: str) -> SmokeVariant:
    from ..variants import find_variant

    found = find_variant(spec, name)
    if found is None:
        raise UserError(f"no variant named {name!r} (see `sglang-matrix list`)")
    data = found.to_json()
    if found.isa is None:
        features: tuple[str, ...] = ()  # no ISA: any CPU of its system
    else:
        isa = spec.isas.get(found.isa)
        features = isa.cpu_features if isa is not None else features_from_cflags(found.cflags)
    return SmokeVariant(
        found.name,
        found.capabilities,
        found.python,
        found.isa,
        features,
        f"{spec.path.name}",
        data,
        spec_gaps(spec, found.line),
    )


def read_json_file(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise UserError(f"{path}: cannot read: {err.strerror or err}") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not valid JSON: {err}") from None


def self_description(result: Path) -> Any | None:
    """RESULT's own variant JSON, or None when it carries none."""
    path = result / VARIANT_JSON
    return read_json_file(path) if path.is_file() else None
