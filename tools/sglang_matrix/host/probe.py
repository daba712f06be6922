"""This host's GPUs, NVIDIA driver and CPU, read live or from recordings (shared by `sglang-matrix which`,
`sglang-matrix smoke` and `sglang-serve --preflight`).

GPUs and the driver come from, in this order: NVML through `pynvml` when importable; the CUDA driver API
through ctypes on the libcuda.so.1 that `driver.find_driver` finds (cuInit, cuDriverGetVersion,
cuDeviceGetCount, cuDeviceGetAttribute, cuDeviceGetName: the driver itself applies CUDA_VISIBLE_DEVICES);
`nvidia-smi`. The CPU's flags and architecture come from /proc/cpuinfo (or a recorded copy, or `lscpu`
output); a recorded file's architecture wins over this machine's.

Recorded `nvidia-smi` output is one text file with `### ` section headers (see tests/fixtures/which):

    ### query
    <output of nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader>
    ### nvidia-smi
    <output of plain nvidia-smi: the banner holds "CUDA Version: 12.8">

or, for a host where the driver is missing or broken, a `### failed` section holding what nvidia-smi said.

Standard library only (a variant's runtime package installs this file without the rest of the tool).
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from .driver import ROOT_ENV, Driver, find_driver

QUERY_ARGS = ["--query-gpu=name,compute_cap,driver_version", "--format=csv,noheader"]
SECTIONS = ("query", "nvidia-smi", "failed")
CAPABILITY_RE = re.compile(r"([0-9]+)\.([0-9]+)")
CUDA_VERSION_RE = re.compile(r"CUDA Version:\s*([0-9]+\.[0-9]+)")
NVRM_RE = re.compile(r"Kernel Module(?:\s+for\s+\S+)?\s+([0-9]+\.[0-9]+(?:\.[0-9]+)?)")
# The architectures sglang-matrix builds for, as Nix names them, and other spellings of them.
MACHINES = ("x86_64", "aarch64")
MACHINE_ALIASES = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64", "armv8l": "aarch64"}
NVIDIA_SMI_TIMEOUT_S = 30
# cuda.h: CUdevice_attribute and the CUresult codes a preflight may meet.
ATTRIBUTE_CC_MAJOR, ATTRIBUTE_CC_MINOR = 75, 76
CUDA_ERRORS = {
    1: "CUDA_ERROR_INVALID_VALUE",
    3: "CUDA_ERROR_NOT_INITIALIZED",
    34: "CUDA_ERROR_STUB_LIBRARY",
    100: "CUDA_ERROR_NO_DEVICE",
    101: "CUDA_ERROR_INVALID_DEVICE",
    304: "CUDA_ERROR_OPERATING_SYSTEM",
    801: "CUDA_ERROR_NOT_SUPPORTED",
    803: "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH",
    804: "CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE",
    999: "CUDA_ERROR_UNKNOWN",
}


class HostError(UserError):
    """A recorded host file or a host option that cannot be used: one line, exit 2."""


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    capability: str
    driver: str

    def to_json(self) -> dict[str, object]:
        return {"index": self.index, "name": self.name, "capability": self.capability, "driver": self.driver}


@dataclass(frozen=True)
class GpuProbe:
    """What the driver said: the GPUs and the highest CUDA it supports, or why there is no GPU."""

    gpus: tuple[Gpu, ...]
    driver_cuda: str | None
    source: str
    problem: str | None = None


@dataclass(frozen=True)
class Cpu:
    machine: str
    system: str
    model: str | None
    flags: frozenset[str]
    source: str


def cuda_version_text(version: int) -> str:
    """cuDriverGetVersion's 12080 -> "12.8"."""
    return f"{version // 1000}.{(version % 1000) // 10}"


def capability_text(text: str) -> str | None:
    match = CAPABILITY_RE.fullmatch(text.strip())
    return f"{int(match.group(1))}.{int(match.group(2))}" if match else None


# ------------------------------------------------------------------------------------------- recordings


def parse_query(text: str, where: str) -> tuple[Gpu, ...]:
    """Lines of `nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader`."""
    gpus = []
    for line in text.splitlines():
        if not line.strip():
            continue
        # The name may itself hold commas in principle: the last two fields are fixed.
        parts = [p.strip() for p in line.rsplit(",", 2)]
        capability = capability_text(parts[1]) if len(parts) == 3 else None
        if capability is None or not parts[0] or not parts[2]:
            raise HostError(
                f"{where}: cannot read GPU line {line.strip()!r} (want 'name, compute_cap, driver_version')"
            )
        gpus.append(Gpu(len(gpus), parts[0], capability, parts[2]))
    return tuple(gpus)


def parse_banner(text: str, where: str) -> str:
    """The highest CUDA version the driver supports, from plain `nvidia-smi`'s banner."""
    match = CUDA_VERSION_RE.search(text)
    if not match:
        raise HostError(f"{where}: no 'CUDA Version: X.Y' in the nvidia-smi banner")
    return match.group(1)


def parse_recorded(text: str, where: str) -> GpuProbe:
    """A recorded-output file: `### query` + `### nvidia-smi` sections, or one `### failed` section."""
    sections: dict[str, list[str]] = {}
    current: str | None = None
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.startswith("### "):
            name = line[4:].strip()
            if name not in SECTIONS:
                raise HostError(f"{where}:{lineno}: unknown section {name!r} (known: {', '.join(SECTIONS)})")
            if name in sections:
                raise HostError(f"{where}:{lineno}: section {name!r} given twice")
            sections[name] = []
            current = name
        elif current is None:
            if line.strip() and not line.startswith("#"):
                raise HostError(f"{where}:{lineno}: text before the first '### query' section")
        else:
            sections[current].append(line)
    if "failed" in sections:
        if len(sections) > 1:
            raise HostError(f"{where}: a 'failed' section stands alone (no 'query' or 'nvidia-smi')")
        said = next((s.strip() for s in sections["failed"] if s.strip()), "nvidia-smi failed")
        return GpuProbe((), None, f"recorded ({where})", problem=said)
    for name in ("query", "nvidia-smi"):
        if name not in sections:
            raise HostError(f"{where}: no '### {name}' section (see tests/fixtures/which/README.md)")
    gpus = parse_query("\n".join(sections["query"]), where)
    if not gpus:
        return GpuProbe((), None, f"recorded ({where})", problem="nvidia-smi lists no GPU")
    return GpuProbe(gpus, parse_banner("\n".join(sections["nvidia-smi"]), where), f"recorded ({where})")


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as err:
        raise HostError(f"{path}: cannot read: {err.strerror or err}") from None
    except UnicodeDecodeError:
        raise HostError(f"{path}: not UTF-8 text") from None


def read_recorded(path: Path) -> GpuProbe:
    return parse_recorded(read_text(path), str(path))


# ------------------------------------------------------------------------------------------- driver API


@dataclass(frozen=True)
class DriverApi:
    """What libcuda.so.1 answered: its CUDA (cuDriverGetVersion) and the visible GPUs, or a problem."""

    cuda: str | None
    gpus: tuple[Gpu, ...]
    problem: str | None = None
    code: int | None = None


def cuda_error(code: int) -> str:
    return f"{CUDA_ERRORS.get(code, 'CUresult')} ({code})"


def query_driver_api(libcuda: str, release: str | None = None) -> DriverApi:
    """Ask libcuda.so.1 (a path) through ctypes, in this process: no torch, no runtime library."""
    import ctypes

    try:
        lib = ctypes.CDLL(libcuda)
    except OSError as err:
        return DriverApi(None, (), f"cannot load {libcuda}: {err}")
    version = ctypes.c_int(0)
    code = lib.cuInit(0)
    cuda = None
    if lib.cuDriverGetVersion(ctypes.byref(version)) == 0 and version.value > 0:
        cuda = cuda_version_text(version.value)
    if code != 0:
        return DriverApi(cuda, (), f"cuInit failed: {cuda_error(code)}", code)
    count = ctypes.c_int(0)
    code = lib.cuDeviceGetCount(ctypes.byref(count))
    if code != 0:
        return DriverApi(cuda, (), f"cuDeviceGetCount failed: {cuda_error(code)}", code)
    get_device = getattr(lib, "cuDeviceGet", None)
    gpus = []
    for ordinal in range(count.value):
        device = ctypes.c_int(ordinal)
        if get_device is not None and get_device(ctypes.byref(device), ordinal) != 0:
            return DriverApi(cuda, tuple(gpus), f"cuDeviceGet({ordinal}) failed", None)
        major, minor = ctypes.c_int(0), ctypes.c_int(0)
        name = ctypes.create_string_buffer(256)
        failed = (
            lib.cuDeviceGetAttribute(ctypes.byref(major), ATTRIBUTE_CC_MAJOR, device)
            or lib.cuDeviceGetAttribute(ctypes.byref(minor), ATTRIBUTE_CC_MINOR, device)
            or lib.cuDeviceGetName(name, len(name), device)
        )
        if failed:
            return DriverApi(cuda, tuple(gpus), f"cannot read GPU {ordinal}: {cuda_error(failed)}", failed)
        label = name.value.decode("utf-8", "replace") or f"GPU {ordinal}"
        gpus.append(Gpu(ordinal, label, f"{major.value}.{minor.value}", release or "unknown"))
    return DriverApi(cuda, tuple(gpus))


def driver_release(driver: Driver, environ: Mapping[str, str] | None = None) -> str | None:
    """The driver's release (570.124.06): from libcuda's versioned file name, else the kernel module's
    /proc/driver/nvidia/version, else NVML in the driver's own libnvidia-ml.so.1 (WSL has only that)."""
    if driver.version:
        return driver.version
    env = os.environ if environ is None else environ
    root = (env.get(ROOT_ENV) or "").rstrip("/")
    try:
        match = NVRM_RE.search(Path(root + "/proc/driver/nvidia/version").read_text(errors="replace"))
    except OSError:
        match = None
    if match:
        return match.group(1)
    nvml = driver.libraries.get("libnvidia-ml.so.1")
    if nvml is None:
        return None
    import ctypes

    try:
        lib = ctypes.CDLL(nvml)
        if lib.nvmlInit_v2() != 0:
            return None
    except (OSError, AttributeError):
        return None
    try:
        buffer = ctypes.create_string_buffer(96)
        if lib.nvmlSystemGetDriverVersion(buffer, len(buffer)) == 0:
            return buffer.value.decode("ascii", "replace") or None
        return None
    finally:
        with contextlib.suppress(Exception):
            lib.nvmlShutdown()


# ------------------------------------------------------------------------------------------- live GPUs


def _probe_nvml() -> GpuProbe | None:
    """NVML through pynvml (nvidia-ml-py) when it is importable and the driver answers; else None."""
    try:
        import pynvml  # type: ignore[import-not-found]
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:
        return None
    try:
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(handle)
            major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
            driver = pynvml.nvmlSystemGetDriverVersion()
            gpus.append(
                Gpu(
                    i,
                    name.decode() if isinstance(name, bytes) else str(name),
                    f"{major}.{minor}",
                    driver.decode() if isinstance(driver, bytes) else str(driver),
                )
            )
        cuda = int(pynvml.nvmlSystemGetCudaDriverVersion())
        if not gpus:
            return GpuProbe((), None, "NVML", problem="NVML lists no GPU")
        return GpuProbe(tuple(gpus), cuda_version_text(cuda), "NVML")
    except Exception:
        return None
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


def _probe_driver_api() -> GpuProbe | None:
    """The driver API on the driver `find_driver` finds; None when there is none or it lists no GPU."""
    driver = find_driver().driver
    if driver is None:
        return None
    api = query_driver_api(driver.libcuda, driver_release(driver))
    if api.problem is not None or not api.gpus:
        return None
    return GpuProbe(api.gpus, api.cuda, f"CUDA driver API ({driver.libcuda})")


def _run(argv: list[str]) -> tuple[int, str]:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=NVIDIA_SMI_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return 124, f"timed out after {NVIDIA_SMI_TIMEOUT_S}s"
    except OSError as err:
        return 127, err.strerror or str(err)
    return done.returncode, (done.stdout or "") + (done.stderr if done.returncode else "")


def _probe_nvidia_smi() -> GpuProbe:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return GpuProbe((), None, "nvidia-smi", problem="nvidia-smi not found")
    rc, out = _run([exe, *QUERY_ARGS])
    if rc != 0:
        said = next((s.strip() for s in out.splitlines() if s.strip()), f"exit status {rc}")
        return GpuProbe((), None, "nvidia-smi", problem=f"nvidia-smi failed: {said}")
    gpus = parse_query(out, "nvidia-smi --query-gpu")
    if not gpus:
        return GpuProbe((), None, "nvidia-smi", problem="nvidia-smi lists no GPU")
    rc, banner = _run([exe])
    if rc != 0:
        said = next((s.strip() for s in banner.splitlines() if s.strip()), f"exit status {rc}")
        return GpuProbe((), None, "nvidia-smi", problem=f"nvidia-smi failed: {said}")
    return GpuProbe(gpus, parse_banner(banner, "nvidia-smi"), "nvidia-smi")


def probe_gpus() -> GpuProbe:
    """Ask the driver: NVML, the driver API, nvidia-smi. No driver is an answer, not an error."""
    return _probe_nvml() or _probe_driver_api() or _probe_nvidia_smi()


# ------------------------------------------------------------------------------------------------ CPU


def parse_cpuinfo(text: str, where: str) -> tuple[str | None, frozenset[str]]:
    """The CPU model and the feature flags every processor has.

    x86 writes `flags`, aarch64 `Features`; `lscpu` output (`Flags:`) is read too.
    """
    flag_sets: list[set[str]] = []
    model: str | None = None
    part: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip().lower()
        if key in ("flags", "features"):
            flag_sets.append(set(value.split()))
        elif key == "model name" and model is None and value.strip():
            model = value.strip()
        elif key in ("cpu implementer", "cpu part") and key not in part:
            part[key] = value.strip()
    if not flag_sets:
        raise HostError(f"{where}: no 'flags' or 'Features' line (is this /proc/cpuinfo?)")
    if model is None and part:
        model = f"implementer {part.get('cpu implementer', '?')} part {part.get('cpu part', '?')}"
    return model, frozenset(set.intersection(*flag_sets))


def cpuinfo_machine(text: str) -> str | None:
    """The architecture a /proc/cpuinfo (or lscpu output) was recorded on, when it says: lscpu's
    `Architecture:`; x86's `flags` (x86_64 with `lm`); arm's `Features` (aarch64 with `asimd` or
    `CPU architecture: 8` and later)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    if fields.get("architecture"):
        return normalise_machine(fields["architecture"])
    if "flags" in fields:
        return "x86_64" if "lm" in fields["flags"].split() else "i686"
    if "features" in fields:
        arch = fields.get("cpu architecture", "")
        if "asimd" in fields["features"].split() or (arch.isascii() and arch.isdigit() and int(arch) >= 8):
            return "aarch64"
        return "arm"
    return None


def normalise_machine(text: str) -> str:
    arch = text.strip().lower()
    return MACHINE_ALIASES.get(arch, arch)


def nix_system(machine: str) -> str:
    return f"{normalise_machine(machine)}-linux"


def given_machine(text: str) -> str:
    """A machine named on the command line: one of MACHINES (or an alias of one), else HostError."""
    arch = normalise_machine(text)
    if arch not in MACHINES:
        known = ", ".join((*MACHINES, *MACHINE_ALIASES))
        raise HostError(f"--machine {text!r}: not a machine architecture sglang-matrix knows ({known})")
    return arch


def probe_cpu(cpuinfo: Path | None, machine: str | None, environ: Mapping[str, str] | None = None) -> Cpu:
    """This CPU (or a recorded one). The architecture: --machine, else the recorded file's, else this
    machine's; a --machine that contradicts the recorded file is an error."""
    env = os.environ if environ is None else environ
    path = cpuinfo or Path((env.get(ROOT_ENV) or "").rstrip("/") + "/proc/cpuinfo")
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        raise HostError(f"{path}: cannot read: {err.strerror} (give --cpuinfo FILE)") from None
    model, flags = parse_cpuinfo(text, str(path))
    recorded = cpuinfo_machine(text) if cpuinfo is not None else None
    if machine is not None:
        arch = given_machine(machine)
        if recorded is not None and recorded != arch:
            raise HostError(f"--machine {machine!r} contradicts {path}, recorded on {recorded}")
    else:
        arch = recorded or normalise_machine(platform.machine())
        if not arch:
            raise HostError("cannot tell this machine's architecture (give --machine ARCH)")
    return Cpu(arch, nix_system(arch), model, flags, str(path))
