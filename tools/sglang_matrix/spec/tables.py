"""The top-level tables a release line refers to ([isas], [capabilities], [targets], [sonames]), [build]
torch-nvcc-flags, and [cuda-drivers], which must cover every line's CUDA releases."""

from __future__ import annotations

import re
from typing import Any

from .model import Capability, CudaDrivers, Isa, Line, Target
from .reader import Reader, check_provider
from .schema import (
    CAPABILITY_KEYS,
    CAPABILITY_RE,
    GCC_ARCH_RE,
    ISA_KEYS,
    MAJOR_MINOR_RE,
    NAME_RE,
    TARGET_KEYS,
    key,
)


def parse_nvcc_flags(r: Reader, build: dict[str, Any]) -> tuple[str, ...]:
    """nvcc flags for torch: torch's CMake splits TORCH_NVCC_FLAGS at spaces, so each flag is one word of
    printable characters (a space or a control character would split or corrupt the command line)."""
    flags = r.strings(build, "torch-nvcc-flags", "build", required=False)
    for i, flag in enumerate(flags):
        if not re.fullmatch(r"[!-~]+", flag):
            raise r.fail(f"build.torch-nvcc-flags[{i}]", flag, "must be one word of printable ASCII")
    return flags


def parse_isas(r: Reader, raw: dict[str, Any]) -> dict[str, Isa]:
    isas = {}
    for name in raw:
        path = f"isas.{key(name)}"
        if not NAME_RE.match(name):
            raise r.fail(path, name, "ISA names must be letters, digits, '_' or '-'")
        t = r.table(raw, name, "isas")
        r.only(t, path, ISA_KEYS)
        systems = r.systems(t, "systems", path)
        flags = r.strings(t, "flags", path)
        gcc_arch = r.string(t, "gcc-arch", path, required=False) or None
        if gcc_arch is not None and not GCC_ARCH_RE.match(gcc_arch):
            raise r.fail(f"{path}.gcc-arch", gcc_arch, 'a -march name such as "x86-64-v4" or "armv9-a"')
        description = r.string(t, "description", path)
        isas[name] = Isa(name, systems, description, flags, r.strings(t, "cpu-features", path), gcc_arch)
    return isas


def parse_capabilities(r: Reader, raw: dict[str, Any]) -> dict[str, Capability]:
    caps = {}
    for name in raw:
        path = f"capabilities.{key(name)}"
        if not CAPABILITY_RE.match(name):
            raise r.fail(path, name, 'a capability must look like "9.0"')
        t = r.table(raw, name, "capabilities")
        r.only(t, path, CAPABILITY_KEYS)
        min_cuda = r.string(t, "min-cuda", path)
        max_cuda = r.string(t, "max-cuda", path, required=False) or None
        for fname, value in (("min-cuda", min_cuda), ("max-cuda", max_cuda)):
            if value is not None and not MAJOR_MINOR_RE.match(value):
                raise r.fail(f"{path}.{fname}", value, 'a CUDA version must look like "12.8"')
        caps[name] = Capability(name, min_cuda, max_cuda)
    return caps


def parse_targets(r: Reader, raw: dict[str, Any], capabilities: dict[str, Capability]) -> dict[str, Target]:
    targets = {}
    for name in raw:
        path = f"targets.{key(name)}"
        if not NAME_RE.match(name):
            raise r.fail(path, name, "target names must be letters, digits, '_' or '-'")
        t = r.table(raw, name, "targets")
        r.only(t, path, TARGET_KEYS)
        caps = r.strings(t, "capabilities", path)
        if not caps:
            raise r.fail(f"{path}.capabilities", [], "a target needs at least one capability")
        for i, cap in enumerate(caps):
            if not CAPABILITY_RE.match(cap):
                raise r.fail(f"{path}.capabilities[{i}]", cap, 'a capability must look like "9.0"')
            if cap not in capabilities:
                raise r.fail(
                    f"{path}.capabilities[{i}]", cap, "not in [capabilities] (say which CUDA can build it)"
                )
        if len(set(caps)) != len(caps):
            raise r.fail(f"{path}.capabilities", list(caps), "lists a capability twice")
        cudnn = r.boolean(t, "cudnn", path, True)
        reason = r.string(t, "cudnn-reason", path, required=False) or None
        if not cudnn and not reason:
            raise r.fail(f"{path}.cudnn-reason", "<missing>", "say why cuDNN is off for this target")
        targets[name] = Target(
            name=name,
            capabilities=caps,
            architecture=r.string(t, "architecture", path),
            gpus=r.strings(t, "gpus", path),
            cudnn=cudnn,
            cudnn_reason=reason,
        )
    return targets


def parse_sonames(r: Reader, raw: dict[str, Any]) -> dict[str, str]:
    sonames = r.string_map({"sonames": raw}, "sonames", "")
    for pattern, provider in sonames.items():
        check_provider(r, f"sonames.{key(pattern)}", provider)
    return sonames


def parse_cuda_drivers(r: Reader, data: dict[str, Any], lines: dict[str, Line]) -> CudaDrivers | None:
    if "cuda-drivers" not in data:
        return None
    t = r.table(data, "cuda-drivers", "")
    r.only(t, "cuda-drivers", ("minimum", "full"))
    tables: dict[str, dict[str, str]] = {}
    for name, key_re, example in (("minimum", r"[0-9]+", '"12"'), ("full", r"[0-9]+\.[0-9]+", '"12.8"')):
        table = r.string_map(t, name, "cuda-drivers")
        for cuda, driver in table.items():
            if not re.fullmatch(key_re, cuda):
                raise r.fail(f"cuda-drivers.{name}", cuda, f"must be a CUDA version like {example}")
            if not re.fullmatch(r"[0-9]+(\.[0-9]+){0,2}", driver):
                raise r.fail(
                    f"cuda-drivers.{name}.{key(cuda)}", driver, 'must be a driver version like "570.26"'
                )
        tables[name] = table
    for line_name, line in lines.items():
        for cuda in line.cudas:
            for name, wanted in (("minimum", cuda.split(".")[0]), ("full", cuda)):
                if wanted not in tables[name]:
                    raise r.fail(
                        f"cuda-drivers.{name}", wanted, f"no entry for CUDA {cuda} (lines.{key(line_name)})"
                    )
    return CudaDrivers(tables["minimum"], tables["full"])
