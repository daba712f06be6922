"""This host as the gating rules see it: its GPUs (`host.probe`: NVML, the driver API, nvidia-smi, or a
recording), its CPU flags, and whether the launchers' driver search finds a driver."""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import UserError
from ..host.driver import find_driver
from ..host.probe import parse_cpuinfo, probe_gpus, read_recorded
from .model import Host, SmokeVariant


def probe_host(cpuinfo: Path | None, nvidia_smi_output: Path | None) -> Host:
    probe = read_recorded(nvidia_smi_output) if nvidia_smi_output else probe_gpus()
    gpus = tuple((g.index, g.name, g.capability) for g in probe.gpus)
    path = cpuinfo or Path("/proc/cpuinfo")
    flags: frozenset[str] | None
    try:
        _, flags = parse_cpuinfo(path.read_text(encoding="utf-8", errors="replace"), str(path))
    except OSError:
        if cpuinfo is not None:
            raise UserError(f"{cpuinfo}: cannot read") from None
        flags = None
    except UserError:
        if cpuinfo is not None:
            raise
        flags = None
    driver = bool(gpus) if nvidia_smi_output else (bool(gpus) or driver_library_present())
    return Host(gpus, probe.problem, flags, str(path), driver)


def driver_library_present() -> bool:
    """Whether RESULT's launchers would find an NVIDIA driver on this host: the same search they run
    (`sglang_matrix.host.driver`, NixOS's /run/opengl-driver/lib, the linker cache, the usual and WSL
    directories, container mounts)."""
    return find_driver().driver is not None


def isa_label(isa: str) -> str:
    """`avx512` -> `AVX-512`, `avx2` -> `AVX2`, `armv8_2` -> `ARMV8_2`."""
    return re.sub(r"^AVX512", "AVX-512", isa.upper())


def missing_cpu_features(host: Host, variant: SmokeVariant) -> list[str]:
    if host.cpu_flags is None:
        return []
    return [f for f in variant.cpu_features if f not in host.cpu_flags]


def cpu_reason(host: Host, variant: SmokeVariant) -> str | None:
    """Why this CPU cannot run the variant's code; None when it can, and always for a variant without an
    ISA (any CPU of its system runs it)."""
    missing = missing_cpu_features(host, variant)
    if variant.isa is None or not missing:
        return None
    return f"this CPU lacks {isa_label(variant.isa)} ({' '.join(missing)})"
