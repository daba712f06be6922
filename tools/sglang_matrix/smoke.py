"""`sglang-matrix smoke`: check a built variant (a Python environment) the way a user would run it.

RESULT is what `nix build .#VARIANT` made (a store path or the `result` symlink), or any prefix with
`bin/python3` and `lib/pythonX.Y/site-packages` (a venv: the tests use one). Every check ends as passed,
failed or skipped, with a reason; the exit status is 0 only when no check failed (skips do not fail),
1 otherwise, 2 for bad input (RESULT missing, unknown variant).

Static checks (no GPU):

* `variant`, `python`: what RESULT says about itself (`nix-support/sglang-matrix-variant.json`, the
  variant's `Variant.to_json()`) matches the variant under test, and its interpreter is the variant's Python.
* `import:<module>`: RESULT's interpreter, in an environment holding only PATH and HOME (no PYTHONPATH,
  no PYTHONHOME), imports sglang, torch, xgrammar, flashinfer and sgl_kernel, each in its own process. An
  import that fails because libcuda.so.1 is missing is skipped when this host has no NVIDIA driver; one that
  dies of SIGILL on a CPU that lacks the variant's ISA is skipped with that reason.
* `torch-arch`: the CUDA code in every shared object under torch/lib (the fatbin entries, read with the
  audit parsers) is for exactly the variant's capabilities: cubin sm_90 is "9.0" (an arch-specific sm_90a
  counts as 9.0, since it runs only there), PTX is "compute_90" (never a capability, so always extra);
  `torch.cuda.get_arch_list()` must say the same when torch imports.
* `sglang-metadata`: the installed sglang's METADATA has no Requires-Dist (the Nix build strips them).
* `shared-libs`: every DT_NEEDED of every shared object in the closure resolves inside the closure, except
  libcuda.so.1 (the driver). The closure is `nix-store -qR RESULT` when RESULT is a store path and
  nix-store is on PATH; otherwise it is approximated by RESULT's tree, the interpreter's prefix and this
  host's system library directories, and the report says so. Resolution follows the object's
  RUNPATH/RPATH ($ORIGIN expanded), then any object of the closure with that file name.

GPU checks (`smoke_gpu`) run only when a GPU is visible, its capability is one of the variant's and this
CPU has the ISA's cpu-features; otherwise each is skipped with the exact reason.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import click

from .audit import AuditError
from .audit.elf import ElfInfo, is_elf, parse_elf
from .audit.fatbin import parse_fatbin
from .errors import UserError
from .which import recorded_host_options

Status = Literal["passed", "failed", "skipped"]

VARIANT_JSON = "nix-support/sglang-matrix-variant.json"
IMPORTS = ("sglang", "torch", "xgrammar", "flashinfer", "sgl_kernel")
DRIVER_SONAMES = frozenset({"libcuda.so.1"})
IMPORT_TIMEOUT_S = 300
PROBE_TIMEOUT_S = 120
NEEDS_DRIVER = "needs the NVIDIA driver (libcuda.so.1), not present"
GPU_CHECKS = (
    ("gpu:matmul", "torch matmul on CUDA vs CPU"),
    ("gpu:flashinfer", "FlashInfer rmsnorm vs torch"),
    ("gpu:sgl-kernel", "sgl-kernel silu_and_mul vs torch"),
    ("gpu:server", "sglang-serve end to end (tiny random Llama)"),
)


# ------------------------------------------------------------------------------------------------ model


@dataclass
class Check:
    id: str
    title: str
    status: Status
    reason: str
    details: Any = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "title": self.title,
            "status": self.status,
            "reason": self.reason,
        }
        if self.details is not None:
            out["details"] = self.details
        return out


def passed(id: str, title: str, reason: str, details: Any = None) -> Check:
    return Check(id, title, "passed", reason, details)


def failed(id: str, title: str, reason: str, details: Any = None) -> Check:
    return Check(id, title, "failed", reason, details)


def skipped(id: str, title: str, reason: str, details: Any = None) -> Check:
    return Check(id, title, "skipped", reason, details)


@dataclass(frozen=True)
class SmokeVariant:
    """What the checks need to know about the variant under test."""

    name: str
    capabilities: tuple[str, ...]
    python: str
    isa: str
    cpu_features: tuple[str, ...]
    source: str
    data: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    # GPU-check id -> {capability: reason}: GPU code the spec accepts a wheel does not have
    # (`gpu-code-gaps`), so that check is skipped on such a GPU rather than failed.
    gaps: dict[str, dict[str, str]] = field(default_factory=dict, compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "capabilities": list(self.capabilities),
            "python": self.python,
            "isa": self.isa,
            "cpuFeatures": list(self.cpu_features),
            "source": self.source,
        }


@dataclass
class Report:
    result: str
    variant: SmokeVariant
    closure: str
    checks: list[Check] = field(default_factory=list)

    def count(self, status: Status) -> int:
        return sum(1 for c in self.checks if c.status == status)

    @property
    def ok(self) -> bool:
        return not any(c.status == "failed" for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {
            "result": self.result,
            "variant": self.variant.to_json(),
            "closure": self.closure,
            "ok": self.ok,
            "counts": {s: self.count(s) for s in ("passed", "failed", "skipped")},
            "checks": [c.to_json() for c in self.checks],
        }


@dataclass(frozen=True)
class Host:
    """This host as the gating rules see it."""

    gpus: tuple[tuple[int, str, str], ...]
    """(index, name, capability) from the driver (NVML/nvidia-smi) or a recording."""
    gpu_problem: str | None
    cpu_flags: frozenset[str] | None
    cpu_source: str
    driver_present: bool


# ------------------------------------------------------------------------------------------------ variant


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
    isa = data.get("isa") if isinstance(data.get("isa"), str) else ""
    features: tuple[str, ...] | None = None
    if "cpuFeatures" in data:
        features = _strings(data["cpuFeatures"], f"{where}: cpuFeatures")
    elif spec is not None and isa in spec.isas:
        features = spec.isas[isa].cpu_features
    else:
        features = features_from_cflags(data.get("cflags") or [])
    return SmokeVariant(
        name, capabilities, python, isa, features, where, data, spec_gaps(spec, data.get("line"))
    )


# The GPU check that exercises each wheel, for the spec's gpu-code-gaps.
GPU_CHECK_OF_WHEEL = {"sgl-kernel": "gpu:sgl-kernel", "flashinfer-python": "gpu:flashinfer"}


def spec_gaps(spec: Any, line: Any) -> dict[str, dict[str, str]]:
    wheels = spec.lines[line].wheels if spec is not None and line in getattr(spec, "lines", {}) else {}
    return {
        cid: dict(wheels[attr].gpu_code_gaps)
        for attr, cid in GPU_CHECK_OF_WHEEL.items()
        if attr in wheels and wheels[attr].gpu_code_gaps
    }


def variant_from_spec(spec: Any, name: str) -> SmokeVariant:
    from .variants import find_variant

    found = find_variant(spec, name)
    if found is None:
        raise UserError(f"no variant named {name!r} (see `sglang-matrix list`)")
    data = found.to_json()
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


# ------------------------------------------------------------------------------------------------ host


def probe_host(cpuinfo: Path | None, nvidia_smi_output: Path | None) -> Host:
    from .which import parse_cpuinfo, probe_gpus, read_recorded

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
    """Whether libcuda.so.1 can be found on this host (NixOS keeps it in /run/opengl-driver/lib)."""
    if Path("/run/opengl-driver/lib/libcuda.so.1").exists():
        return True
    import ctypes

    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


def isa_label(isa: str) -> str:
    """`avx512` -> `AVX-512`, `avx2` -> `AVX2`, `armv8_2` -> `ARMV8_2`."""
    return re.sub(r"^AVX512", "AVX-512", isa.upper())


def missing_cpu_features(host: Host, variant: SmokeVariant) -> list[str]:
    if host.cpu_flags is None:
        return []
    return [f for f in variant.cpu_features if f not in host.cpu_flags]


def cpu_reason(host: Host, variant: SmokeVariant) -> str | None:
    missing = missing_cpu_features(host, variant)
    if not missing:
        return None
    return f"this CPU lacks {isa_label(variant.isa)} ({' '.join(missing)})"


# ------------------------------------------------------------------------------------------------ running


# The closure must bring its own tools (ninja, nvcc, a C++ compiler for runtime JIT): the checks run with
# the PATH a bare system has, not the runner's.
MINIMAL_PATH = "/usr/bin:/bin"


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A minimal PATH and HOME only (no PYTHONPATH, no PYTHONHOME), plus `extra`."""
    env = {"PATH": MINIMAL_PATH, "HOME": os.environ.get("HOME", "/")}
    env.update(extra or {})
    for name in ("PYTHONPATH", "PYTHONHOME"):
        env.pop(name, None)
    return env


@dataclass(frozen=True)
class Ran:
    rc: int
    stdout: str
    stderr: str
    timed_out: bool = False

    def last_line(self) -> str:
        for text in (self.stderr, self.stdout):
            lines = [line.strip() for line in text.splitlines() if line.strip()]
            if lines:
                return lines[-1]
        return ""

    def json(self) -> Any:
        for line in reversed(self.stdout.splitlines()):
            if line.startswith("{"):
                try:
                    return json.loads(line)
                except ValueError:
                    return None
        return None


def run_python(
    python: Path, code: str, timeout: float, env: Mapping[str, str] | None = None, args: Iterable[str] = ()
) -> Ran:
    try:
        done = subprocess.run(
            [str(python), "-c", code, *args],
            env=clean_env(env),
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
        return Ran(124, out, err, timed_out=True)
    except OSError as exc:
        return Ran(127, "", f"cannot run {python}: {exc.strerror or exc}")
    return Ran(done.returncode, done.stdout, done.stderr)


def signal_name(rc: int) -> str:
    try:
        return signal.Signals(-rc).name
    except ValueError:
        return f"signal {-rc}"


def find_python(result: Path) -> Path | None:
    for name in ("python3", "python"):
        candidate = result / "bin" / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def find_site_packages(result: Path, python: str | None) -> Path | None:
    """RESULT/lib/pythonX.Y/site-packages: the variant's version first, else the only one."""
    found = sorted(p for p in result.glob("lib/python*/site-packages") if p.is_dir())
    if python:
        for p in found:
            if p.parent.name == f"python{python}":
                return p
    return found[0] if found else None


INTERP_PROBE = (
    "import json, sys; print(json.dumps({'version': '%d.%d' % sys.version_info[:2], "
    "'prefix': sys.prefix, 'base_prefix': sys.base_prefix, 'executable': sys.executable}))"
)

TORCH_PROBE = """
import json
import torch
info = {"version": torch.__version__, "cuda": torch.version.cuda, "arch": list(torch.cuda.get_arch_list())}
try:
    info["available"] = bool(torch.cuda.is_available())
    if info["available"]:
        info["devices"] = [
            [i, torch.cuda.get_device_name(i), "%d.%d" % torch.cuda.get_device_capability(i)]
            for i in range(torch.cuda.device_count())
        ]
except Exception as exc:  # a broken driver is an answer, not a crash
    info["available"] = False
    info["error"] = "%s: %s" % (type(exc).__name__, exc)
print(json.dumps(info))
"""

IMPORT_CODE = (
    "import importlib, json, sys; m = importlib.import_module(sys.argv[1]); "
    "print(json.dumps({'version': str(getattr(m, '__version__', '') or '')}))"
)


# ------------------------------------------------------------------------------------------------ checks


def check_variant(result: Path, variant: SmokeVariant, own: Any | None, given: bool) -> Check:
    title = "RESULT's variant"
    if own is None:
        return skipped(
            "variant",
            title,
            f"RESULT has no {VARIANT_JSON}; testing it as {variant.name} ({variant.source})",
        )
    if not given:
        return passed("variant", title, f"{VARIANT_JSON} says {variant.name}")
    own_name = own.get("name") if isinstance(own, dict) else None
    names = {variant.name, str(variant.data.get("longName", ""))} - {""}
    if own_name not in names:
        return failed("variant", title, f"RESULT says it is {own_name!r}, tested as {variant.name}")
    diffs = [
        k
        for k in ("capabilities", "python", "isa", "cuda", "target")
        if k in variant.data and k in own and own[k] != variant.data[k]
    ]
    if diffs:
        return failed(
            "variant",
            title,
            f"{VARIANT_JSON} differs from the spec's {variant.name} in {', '.join(diffs)}",
            {k: {"result": own[k], "spec": variant.data[k]} for k in diffs},
        )
    return passed("variant", title, f"{VARIANT_JSON} matches {variant.name}")


def check_python(
    python: Path | None, interp: dict[str, Any] | None, why: str, variant: SmokeVariant
) -> Check:
    title = "interpreter version"
    if python is None:
        return failed("python", title, "RESULT has no bin/python3 or bin/python")
    if interp is None:
        return failed("python", title, f"{python} does not run: {why}")
    version = interp.get("version")
    if version != variant.python:
        return failed(
            "python",
            title,
            f"RESULT's python is {version}, {variant.name} is built for {variant.python}",
            interp,
        )
    return passed("python", title, f"Python {version}", interp)


def import_check(python: Path, module: str, host: Host, variant: SmokeVariant) -> Check:
    cid, title = f"import:{module}", f"import {module} (clean environment)"
    ran = run_python(python, IMPORT_CODE, IMPORT_TIMEOUT_S, args=[module])
    if ran.rc == 0:
        info = ran.json() or {}
        version = info.get("version") if isinstance(info, dict) else None
        return passed(cid, title, f"version {version}" if version else "imported")
    if ran.timed_out:
        return failed(cid, title, f"timed out after {IMPORT_TIMEOUT_S}s", ran.last_line() or None)
    output = ran.stderr + ran.stdout
    if ran.rc < 0:
        sig = signal_name(ran.rc)
        lacking = cpu_reason(host, variant)
        if ran.rc == -signal.SIGILL and lacking:
            return skipped(cid, title, f"{lacking}: the import died of SIGILL")
        return failed(cid, title, f"killed by {sig}", ran.last_line() or None)
    if "libcuda.so.1" in output and not host.driver_present:
        return skipped(cid, title, NEEDS_DRIVER, ran.last_line())
    pruned = pruned_paths(variant, module)
    if pruned and "common_ops" in output and not any(gpu[2] in variant.capabilities for gpu in host.gpus):
        # sgl_kernel picks its common_ops by the GPU it finds (sm100/ when it finds none); a variant pruned
        # for its own GPUs can only load on one of them.
        return skipped(
            cid,
            title,
            f"{variant.name} prunes {', '.join(pruned)} (dead code for {' '.join(variant.capabilities)}); "
            "it loads only on a GPU of its targets, and none is visible",
            ran.last_line(),
        )
    return failed(cid, title, ran.last_line() or f"exit status {ran.rc}")


def pruned_paths(variant: SmokeVariant, module: str) -> list[str]:
    """The paths the variant prunes from the wheel that provides `module` (sgl_kernel -> sgl-kernel)."""
    pruned = variant.data.get("pruned") if isinstance(variant.data, dict) else None
    if not isinstance(pruned, dict):
        return []
    paths = pruned.get(module.replace("_", "-"))
    return [p for p in paths if isinstance(p, str)] if isinstance(paths, list) else []


def capability_of_target(target: str) -> str:
    """`sm_90` -> `9.0`, `sm_90a` -> `9.0` (runs only there), `sm_100f` -> `10.0`, PTX stays `compute_90`."""
    m = re.fullmatch(r"sm_(\d+)(\d)[af]?", target)
    if m:
        return f"{int(m.group(1))}.{m.group(2)}"
    m = re.fullmatch(r"compute_(\d+)", target)
    return f"compute_{m.group(1)}" if m else target


def fatbin_targets(lib_dir: Path) -> tuple[dict[str, list[str]], list[str]]:
    """Per shared object under `lib_dir`: its fatbin targets (`sm_90`, `compute_90`); and problems."""
    per_object: dict[str, list[str]] = {}
    problems: list[str] = []
    for path in sorted(lib_dir.rglob("*")):
        if not _is_so_name(path.name) or not path.is_file():
            continue
        try:
            data = path.read_bytes()
            if not is_elf(data):
                continue
            info = parse_elf(data, str(path.relative_to(lib_dir)))
            targets = set()
            for section in info.fatbins:
                if section.data is None:
                    continue
                for entry in parse_fatbin(section.data, f"{info.name}:{section.name}"):
                    if entry.kind in ("cubin", "ptx"):
                        targets.add(entry.target)
        except (OSError, AuditError) as err:
            problems.append(str(err))
            continue
        if targets:
            per_object[info.name] = sorted(targets, key=_target_key)
    return per_object, problems


def _target_key(target: str) -> tuple[int, str]:
    m = re.search(r"(\d+)", target)
    return (int(m.group(1)) if m else 0, target)


def _capability_key(cap: str) -> tuple[float, str]:
    m = re.fullmatch(r"(\d+)\.(\d+)", cap)
    return (int(m.group(1)) * 100 + int(m.group(2)) if m else 1e9, cap)


def compare_arches(found: Iterable[str], expected: Iterable[str]) -> tuple[list[str], list[str]]:
    """(extra, missing) between device-code targets (`sm_90`, `compute_90`) and capabilities ("9.0")."""
    have = {capability_of_target(t) for t in found}
    want = set(expected)
    return sorted(have - want, key=_capability_key), sorted(want - have, key=_capability_key)


def check_torch_arch(site: Path | None, variant: SmokeVariant, torch_info: dict[str, Any] | None) -> Check:
    cid, title = "torch-arch", f"torch's CUDA architectures = {' '.join(variant.capabilities)}"
    if site is None:
        return failed(cid, title, "RESULT has no lib/python*/site-packages")
    lib = site / "torch" / "lib"
    if not lib.is_dir():
        return failed(cid, title, f"torch is not installed in RESULT (no {lib})")
    details: dict[str, Any] = {"lib": str(lib)}
    if torch_info is not None:
        details["get_arch_list"] = torch_info.get("arch")
        details["torch.version.cuda"] = torch_info.get("cuda")
    if not any(lib.glob("libtorch_cuda*.so*")):
        return failed(cid, title, "torch has no CUDA libraries (CPU build)", details)
    per_object, problems = fatbin_targets(lib)
    details["objects"] = per_object
    if problems:
        details["problems"] = problems
        return failed(
            cid, title, f"cannot read the device code of {len(problems)} objects: {problems[0]}", details
        )
    all_targets = sorted({t for ts in per_object.values() for t in ts}, key=_target_key)
    details["targets"] = all_targets
    if not all_targets:
        return failed(cid, title, "torch's CUDA libraries hold no device code at all", details)
    extra, missing = compare_arches(all_targets, variant.capabilities)
    problems_text = []
    if extra:
        problems_text.append(f"extra {' '.join(extra)}")
    if missing:
        problems_text.append(f"missing {' '.join(missing)}")
    if problems_text:
        culprits = sorted(
            name
            for name, ts in per_object.items()
            if {capability_of_target(t) for t in ts} - set(variant.capabilities)
        )
        if culprits:
            details["extra_in"] = culprits
        return failed(
            cid, title, f"device code {'; '.join(problems_text)} (found {' '.join(all_targets)})", details
        )
    reason = f"fatbins: {' '.join(all_targets)}"
    if torch_info is not None:
        listed = [str(a) for a in torch_info.get("arch") or []]
        extra, missing = compare_arches(listed, variant.capabilities)
        if extra or missing:
            said = " ".join(listed) or "nothing"
            return failed(cid, title, f"torch.cuda.get_arch_list() says {said}; {reason}", details)
        reason += f"; get_arch_list: {' '.join(listed)}"
    else:
        reason += "; torch does not import, get_arch_list not asked"
    return passed(cid, title, reason, details)


def requires_dist(metadata: str) -> list[str]:
    """The Requires-Dist values of a METADATA file (headers only: the body after the first blank line)."""
    out = []
    for line in metadata.split("\n\n", 1)[0].splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip().lower() == "requires-dist":
            out.append(value.strip())
    return out


def check_metadata(site: Path | None) -> Check:
    cid, title = "sglang-metadata", "sglang's METADATA has no Requires-Dist"
    if site is None:
        return failed(cid, title, "RESULT has no lib/python*/site-packages")
    infos = sorted(site.glob("sglang-*.dist-info"))
    if not infos:
        return failed(cid, title, f"no sglang-*.dist-info under {site}")
    path = infos[0] / "METADATA"
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        return failed(cid, title, f"{path}: cannot read: {err.strerror or err}")
    reqs = requires_dist(text)
    if reqs:
        names = [re.split(r"[\s;<>=!~\[(]", r, maxsplit=1)[0] for r in reqs]
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        return failed(
            cid,
            title,
            f"{infos[0].name}/METADATA declares {len(reqs)} Requires-Dist ({shown})",
            reqs,
        )
    return passed(cid, title, f"{infos[0].name}/METADATA declares none")


# ------------------------------------------------------------------------------------------------ closure


def _is_so_name(name: str) -> bool:
    return name.endswith(".so") or ".so." in name


def system_library_dirs() -> list[Path]:
    """The dynamic loader's default directories on this host (and /etc/ld.so.conf.d entries)."""
    arch = platform.machine()
    dirs = [
        f"/lib/{arch}-linux-gnu",
        f"/usr/lib/{arch}-linux-gnu",
        "/lib64",
        "/usr/lib64",
        "/lib",
        "/usr/lib",
    ]
    conf = Path("/etc/ld.so.conf.d")
    if conf.is_dir():
        for file in sorted(conf.glob("*.conf")):
            try:
                lines = file.read_text(encoding="utf-8", errors="replace").splitlines()
            except OSError:
                continue
            dirs += [line.strip() for line in lines if line.strip().startswith("/")]
    out: list[Path] = []
    for d in dict.fromkeys(dirs):
        if Path(d).is_dir():
            out.append(Path(d))
    return out


@dataclass
class Closure:
    """The files a RESULT may load from, and the shared objects to check."""

    mode: str
    """"nix" or "approximated"."""
    description: str
    objects: list[Path] = field(default_factory=list)
    by_name: dict[str, list[Path]] = field(default_factory=dict)
    files: set[str] = field(default_factory=set)
    """Real paths of every file in the closure."""
    system_dirs: list[Path] = field(default_factory=list)
    short: str = ""
    """One phrase for a check's reason (the description has the directories)."""

    def add_file(self, path: Path, check: bool) -> None:
        real = os.path.realpath(path)
        if not os.path.isfile(real):
            return
        self.files.add(real)
        if _is_so_name(path.name):
            self.by_name.setdefault(path.name, []).append(path)
            if check:
                self.objects.append(path)

    def contains(self, path: Path) -> bool:
        real = os.path.realpath(path)
        if real in self.files:
            return True
        return os.path.isfile(real) and any(path.parent == d for d in self.system_dirs)

    def walk(self, top: Path, *, follow: bool, check: bool) -> None:
        """Every file under `top` (following symlinked directories when `follow`)."""
        seen_dirs: set[str] = set()
        seen_objects: set[str] = {os.path.realpath(o) for o in self.objects}
        if top.is_file():
            self.add_file(top, check=False)
            return
        for dirpath, dirnames, filenames in os.walk(top, followlinks=follow):
            real = os.path.realpath(dirpath)
            if real in seen_dirs:
                dirnames[:] = []
                continue
            seen_dirs.add(real)
            for name in filenames:
                if not _is_so_name(name):
                    continue
                path = Path(dirpath, name)
                is_object = check and (follow or not path.is_symlink())
                real_file = os.path.realpath(path)
                if is_object and real_file in seen_objects:
                    is_object = False
                if is_object:
                    seen_objects.add(real_file)
                self.add_file(path, check=is_object)


def nix_closure_paths(result: Path) -> list[Path] | None:
    """`nix-store -qR` of RESULT when it is a store path and nix-store is on PATH, else None."""
    real = Path(os.path.realpath(result))
    if not str(real).startswith("/nix/store/") or shutil.which("nix-store") is None:
        return None
    try:
        done = subprocess.run(
            ["nix-store", "-qR", str(real)], capture_output=True, text=True, timeout=300, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return [Path(line) for line in done.stdout.splitlines() if line.strip()]


def build_closure(
    result: Path,
    *,
    store_paths: list[Path] | None,
    prefix_dirs: Iterable[Path] = (),
    system_dirs: Iterable[Path] = (),
    why_approximated: str = "",
) -> Closure:
    if store_paths is not None:
        closure = Closure(
            "nix",
            f"nix: the closure of {os.path.realpath(result)} (nix-store -qR, {len(store_paths)} store paths)",
        )
        for path in store_paths:
            closure.walk(path, follow=False, check=True)
        return closure
    prefix_dirs = [d for d in prefix_dirs if d.is_dir()]
    system = list(system_dirs)
    parts = ["RESULT's tree (symlinks followed)"]
    if prefix_dirs:
        parts.append(f"the interpreter's prefix ({', '.join(str(d) for d in prefix_dirs)})")
    if system:
        parts.append(f"this host's system library directories ({', '.join(str(d) for d in system)})")
    why = why_approximated or "RESULT is not a Nix store path"
    closure = Closure(
        "approximated",
        f"closure approximated ({why}): " + ", ".join(parts),
        system_dirs=system,
        short=f"closure approximated, {why}: RESULT's tree, the interpreter's prefix and the system "
        "library directories",
    )
    closure.walk(result, follow=True, check=True)
    for d in prefix_dirs:
        for child in sorted(d.iterdir()):
            if child.is_file():
                closure.add_file(child, check=False)
    return closure


def _search_dirs(obj: Path, info: ElfInfo) -> list[Path]:
    raw = info.runpath if info.runpath is not None else info.rpath
    if not raw:
        return []
    origins = [str(obj.parent), os.path.dirname(os.path.realpath(obj))]
    out: list[Path] = []
    for entry in raw.split(":"):
        if not entry:
            continue
        if "$ORIGIN" in entry or "${ORIGIN}" in entry:
            for origin in origins:
                out.append(Path(entry.replace("${ORIGIN}", origin).replace("$ORIGIN", origin)))
        else:
            out.append(Path(entry))
    return list(dict.fromkeys(out))


def _resolves(closure: Closure, dirs: list[Path], soname: str) -> bool:
    """RUNPATH/RPATH directories first, then any closure object of that name, then system directories."""
    if "/" in soname:
        return closure.contains(Path(soname))
    if any((d / soname).exists() and closure.contains(d / soname) for d in dirs):
        return True
    if soname in closure.by_name:
        return True
    return any((d / soname).exists() for d in closure.system_dirs)


def resolve_needed(closure: Closure) -> tuple[int, dict[str, list[str]], list[str]]:
    """(objects checked, object -> unresolved SONAMEs, problems) over the closure's shared objects."""
    unresolved: dict[str, list[str]] = {}
    problems: list[str] = []
    checked = 0
    for obj in closure.objects:
        try:
            with obj.open("rb") as handle:
                head = handle.read(4)
            if not is_elf(head):
                continue
            info = parse_elf(obj.read_bytes(), str(obj))
        except OSError as err:
            problems.append(f"{obj}: cannot read: {err.strerror or err}")
            continue
        except AuditError as err:
            problems.append(str(err))
            continue
        if info.is_cuda or not info.has_dynamic or info.elf_type != "ET_DYN":
            continue
        checked += 1
        dirs = _search_dirs(obj, info)
        missing = [s for s in info.needed if s not in DRIVER_SONAMES and not _resolves(closure, dirs, s)]
        if missing:
            unresolved[str(obj)] = missing
    return checked, unresolved, problems


def check_shared_libs(closure: Closure) -> Check:
    cid, title = "shared-libs", "every DT_NEEDED resolves inside the closure (libcuda.so.1 excepted)"
    checked, unresolved, problems = resolve_needed(closure)
    details: dict[str, Any] = {"closure": closure.description, "objects": checked}
    if unresolved:
        details["unresolved"] = unresolved
    if problems:
        details["problems"] = problems
    note = f" ({closure.short})" if closure.mode == "approximated" else ""
    if unresolved:
        shown = "; ".join(f"{Path(o).name} ({', '.join(m)})" for o, m in list(unresolved.items())[:3])
        more = f"; and {len(unresolved) - 3} more" if len(unresolved) > 3 else ""
        return failed(
            cid,
            title,
            f"{len(unresolved)} of {checked} objects have unresolved DT_NEEDED: {shown}{more}{note}",
            details,
        )
    if problems:
        return failed(cid, title, f"{len(problems)} objects cannot be read: {problems[0]}{note}", details)
    if checked == 0:
        return failed(cid, title, f"no shared objects found{note}", details)
    return passed(cid, title, f"{checked} shared objects, all resolved{note}", details)


# ------------------------------------------------------------------------------------------------ GPU gate


def gpu_gate(
    host: Host, variant: SmokeVariant, torch_info: dict[str, Any] | None, mode: bool | None
) -> tuple[int | None, list[str]]:
    """(index of the GPU to use, reasons not to run). Reasons are empty when the GPU checks can run."""
    if mode is False:
        return None, ["GPU checks turned off (--no-gpu)"]
    reasons: list[str] = []
    gpus = list(host.gpus)
    if not gpus and torch_info and torch_info.get("available"):
        gpus = [(int(d[0]), str(d[1]), str(d[2])) for d in torch_info.get("devices") or []]
    index: int | None = None
    if not gpus:
        why = host.gpu_problem or (torch_info or {}).get("error")
        reasons.append("no GPU visible" + (f" ({why})" if why else ""))
    else:
        fitting = [g for g in gpus if g[2] in variant.capabilities]
        if fitting:
            index = fitting[0][0]
        else:
            caps = sorted({g[2] for g in gpus}, key=_capability_key)
            targets = " ".join(variant.capabilities)
            if len(caps) == 1:
                reasons.append(f"GPU capability {caps[0]} is not a target of {variant.name} ({targets})")
            else:
                reasons.append(
                    f"GPU capabilities {', '.join(caps)} are not targets of {variant.name} ({targets})"
                )
    lacking = cpu_reason(host, variant)
    if lacking:
        reasons.append(lacking)
    return index, reasons


# ------------------------------------------------------------------------------------------------ harness


@dataclass(frozen=True)
class Options:
    gpu: bool | None = None
    server_timeout: int = 600


def smoke_one(
    result: Path,
    variant: SmokeVariant,
    own: Any | None,
    given: bool,
    host: Host,
    options: Options,
    progress: Any = None,
) -> Report:
    def say(text: str) -> None:
        if progress is not None:
            progress(text)

    checks: list[Check] = [check_variant(result, variant, own, given)]
    python = find_python(result)
    interp: dict[str, Any] | None = None
    why = ""
    if python is not None:
        ran = run_python(python, INTERP_PROBE, PROBE_TIMEOUT_S)
        interp = ran.json() if ran.rc == 0 else None
        why = ran.last_line() or f"exit status {ran.rc}"
        if ran.rc < 0:
            why = f"killed by {signal_name(ran.rc)}"
    checks.append(check_python(python, interp, why, variant))

    say("imports")
    if python is None:
        for module in IMPORTS:
            checks.append(
                failed(f"import:{module}", f"import {module} (clean environment)", "no interpreter")
            )
        imports: dict[str, Check] = {}
    else:
        with ThreadPoolExecutor(max_workers=min(len(IMPORTS), max(2, os.cpu_count() or 2))) as pool:
            futures = {m: pool.submit(import_check, python, m, host, variant) for m in IMPORTS}
            imports = {m: f.result() for m, f in futures.items()}
        checks.extend(imports[m] for m in IMPORTS)

    torch_info: dict[str, Any] | None = None
    if python is not None and imports.get("torch") and imports["torch"].status == "passed":
        ran = run_python(python, TORCH_PROBE, IMPORT_TIMEOUT_S)
        info = ran.json()
        torch_info = info if ran.rc == 0 and isinstance(info, dict) else None

    site = find_site_packages(result, variant.python)
    say("torch architectures")
    checks.append(check_torch_arch(site, variant, torch_info))
    checks.append(check_metadata(site))

    say("shared libraries")
    store_paths = nix_closure_paths(result)
    why_approx = ""
    if store_paths is None:
        real = os.path.realpath(result)
        why_approx = (
            "nix-store is not on PATH" if real.startswith("/nix/store/") else "RESULT is not a Nix store path"
        )
    prefix_dirs: list[Path] = []
    if interp:
        for key in ("base_prefix", "prefix"):
            base = Path(str(interp.get(key, "")))
            if str(base) and base.is_absolute():
                prefix_dirs += [base / "lib", base / "lib64"]
    closure = build_closure(
        result,
        store_paths=store_paths,
        prefix_dirs=list(dict.fromkeys(prefix_dirs)),
        system_dirs=system_library_dirs() if store_paths is None else (),
        why_approximated=why_approx,
    )
    checks.append(check_shared_libs(closure))

    index, reasons = gpu_gate(host, variant, torch_info, options.gpu)
    if reasons or python is None:
        reason = "; ".join(reasons) or "no interpreter"
        for cid, title in GPU_CHECKS:
            if options.gpu:
                checks.append(failed(cid, title, f"--gpu given but {reason}"))
            else:
                checks.append(skipped(cid, title, reason))
    else:
        from .smoke_gpu import run_gpu_checks

        assert index is not None
        say("GPU checks")
        capability = next((g[2] for g in host.gpus if g[0] == index), None)
        for check in run_gpu_checks(result, python, index, options.server_timeout, say):
            reason = variant.gaps.get(check.id, {}).get(capability or "") if capability else None
            if reason and check.status != "passed":
                check = skipped(check.id, check.title, f"the spec accepts no code for {capability}: {reason}")
            checks.append(check)
    return Report(str(result), variant, closure.description, checks)


# ------------------------------------------------------------------------------------------------ output


def junit_xml(reports: list[Report]) -> str:
    suites = ET.Element("testsuites")
    total = {"tests": 0, "failures": 0, "skipped": 0}
    for report in reports:
        counts = {
            "tests": len(report.checks),
            "failures": report.count("failed"),
            "skipped": report.count("skipped"),
        }
        for k, v in counts.items():
            total[k] += v
        suite = ET.SubElement(
            suites,
            "testsuite",
            {
                "name": f"smoke.{report.variant.name}",
                "tests": str(counts["tests"]),
                "failures": str(counts["failures"]),
                "errors": "0",
                "skipped": str(counts["skipped"]),
            },
        )
        props = ET.SubElement(suite, "properties")
        for name, value in (("result", report.result), ("closure", report.closure)):
            ET.SubElement(props, "property", {"name": name, "value": _xml_safe(value)})
        for check in report.checks:
            case = ET.SubElement(
                suite, "testcase", {"classname": f"smoke.{report.variant.name}", "name": check.id}
            )
            if check.status == "failed":
                node = ET.SubElement(case, "failure", {"message": _xml_safe(check.reason)})
                node.text = _xml_safe(_details_text(check))
            elif check.status == "skipped":
                ET.SubElement(case, "skipped", {"message": _xml_safe(check.reason)})
            else:
                out = ET.SubElement(case, "system-out")
                out.text = _xml_safe(check.reason)
    for k, v in total.items():
        suites.set(k, str(v))
    suites.set("errors", "0")
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def _xml_safe(text: str) -> str:
    return re.sub(r"[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]", "?", text)


def _details_text(check: Check) -> str:
    if check.details is None:
        return check.reason
    if isinstance(check.details, str):
        return f"{check.reason}\n{check.details}"
    return f"{check.reason}\n{json.dumps(check.details, indent=2, sort_keys=True)}"


STYLES = {"passed": "green", "failed": "bold red", "skipped": "yellow"}


def render_human(report: Report, console: Any) -> None:
    from rich.markup import escape
    from rich.table import Table

    console.print(f"[bold]{escape(report.result)}[/] as [bold]{escape(report.variant.name)}[/]")
    console.print(f"closure: {escape(report.closure)}")
    table = Table("check", "status", "reason", show_lines=False)
    for check in report.checks:
        table.add_row(escape(check.id), f"[{STYLES[check.status]}]{check.status}[/]", escape(check.reason))
    console.print(table)
    console.print(
        f"smoke {escape(report.variant.name)}: {report.count('passed')} passed, {report.count('failed')} "
        f"failed, {report.count('skipped')} skipped"
    )


# ------------------------------------------------------------------------------------------------ CLI


def _spec_or_none(obj: Any) -> Any:
    try:
        return obj.spec if obj is not None else None
    except UserError:
        return None


def _pick_variant(
    result: Path, name: str | None, obj: Any, fallback: str | None
) -> tuple[SmokeVariant, Any, bool]:
    """(variant under test, RESULT's own JSON or None, whether the variant was given by the user)."""
    own = self_description(result)
    if own is not None and not isinstance(own, dict):
        raise UserError(f"{result / VARIANT_JSON}: not a JSON object")
    if name is not None:
        path = Path(name)
        if name.endswith(".json") and path.is_file():
            return variant_from_json(read_json_file(path), str(path), _spec_or_none(obj)), own, True
        spec = obj.spec  # raises UserError (one line, exit 2) without a matrix.toml
        return variant_from_spec(spec, name), own, True
    if own is not None:
        return variant_from_json(own, str(result / VARIANT_JSON), _spec_or_none(obj)), own, False
    if fallback is not None:
        spec = obj.spec
        return variant_from_spec(spec, fallback), own, False
    raise UserError(f"{result}: carries no {VARIANT_JSON}; give --variant NAME")


def results_in(directory: Path) -> list[tuple[Path, str]]:
    """(path, name) of every `result-<name>` entry in `directory`, by name."""
    if not directory.is_dir():
        raise UserError(f"{directory}: not a directory")
    found = sorted(
        (p, p.name[len("result-") :])
        for p in directory.iterdir()
        if p.name.startswith("result-") and len(p.name) > len("result-")
    )
    if not found:
        raise UserError(
            f"{directory}: holds no result-<variant> entries (nix build .#X -o {directory}/result-X)"
        )
    for path, _ in found:
        if not path.is_dir():
            raise UserError(f"{path}: not a directory (a dangling link?)")
    return found


@click.command()
@click.argument("result", required=False, type=click.Path(path_type=Path))
@click.option(
    "--all",
    "all_dir",
    type=click.Path(path_type=Path),
    metavar="DIR",
    help="Check every result-<variant> in DIR (as `nix build .#X -o DIR/result-X` names them).",
)
@click.option(
    "--variant",
    metavar="NAME|FILE.json",
    help=f"The variant RESULT is (a name, or a Variant JSON file) [default: RESULT's own {VARIANT_JSON}].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--junit",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Write a JUnit XML report.",
)
@click.option(
    "--gpu/--no-gpu",
    default=None,
    help="Require the GPU checks (a reason to skip becomes a failure) / turn them off [default: run them "
    "when a GPU of a target capability is visible].",
)
@click.option(
    "--server-timeout",
    type=click.IntRange(10, 7200),
    default=600,
    show_default=True,
    help="Seconds to wait for the test server's /health.",
)
@recorded_host_options
@click.pass_obj
def smoke(
    obj: Any,
    result: Path | None,
    all_dir: Path | None,
    variant: str | None,
    as_json: bool,
    junit: Path | None,
    gpu: bool | None,
    server_timeout: int,
    cpuinfo: Path | None,
    nvidia_smi_output: Path | None,
) -> None:
    """Check a built variant RESULT: imports, torch's CUDA architectures, METADATA, shared libraries, and
    (with a GPU of a target capability) kernels and a tiny end-to-end server.

    Exit 0 when no check failed (skips do not fail), 1 when one did, 2 on bad input.
    """
    try:
        code = run_smoke(
            obj,
            result,
            all_dir,
            variant,
            as_json,
            junit,
            Options(gpu, server_timeout),
            cpuinfo,
            nvidia_smi_output,
        )
    except UserError as err:
        click.echo(f"sglang-matrix: {err}", err=True)
        sys.exit(err.exit_code)
    sys.exit(code)


def run_smoke(
    obj: Any,
    result: Path | None,
    all_dir: Path | None,
    variant: str | None,
    as_json: bool,
    junit: Path | None,
    options: Options,
    cpuinfo: Path | None,
    nvidia_smi_output: Path | None,
) -> int:
    from rich.console import Console

    if (result is None) == (all_dir is None):
        raise UserError("give RESULT or --all DIR (one of them)")
    if all_dir is not None and variant is not None:
        raise UserError("--variant cannot be used with --all (each result-<variant> names its own)")
    if result is not None:
        if not result.exists():
            raise UserError(f"{result}: no such file or directory")
        if not result.is_dir():
            raise UserError(f"{result}: not a directory (a Python environment is expected)")
        targets = [(result, *_pick_variant(result, variant, obj, None))]
    else:
        assert all_dir is not None
        targets = [(path, *_pick_variant(path, None, obj, name)) for path, name in results_in(all_dir)]
    host = probe_host(cpuinfo, nvidia_smi_output)
    err_console = Console(stderr=True)
    out_console = Console()

    def progress(text: str) -> None:
        if err_console.is_terminal:
            err_console.print(f"[dim]smoke: {text}...[/]")

    reports = []
    for path, smoke_variant, own, given in targets:
        progress(f"{path} as {smoke_variant.name}")
        report = smoke_one(path, smoke_variant, own, given, host, options, progress)
        reports.append(report)
        if not as_json:
            render_human(report, out_console)
    if junit is not None:
        try:
            junit.parent.mkdir(parents=True, exist_ok=True)
            junit.write_text(junit_xml(reports), encoding="utf-8")
        except OSError as err:
            raise UserError(f"{junit}: cannot write: {err.strerror or err}") from None
    if as_json:
        if all_dir is None:
            click.echo(json.dumps(reports[0].to_json(), indent=2))
        else:
            click.echo(
                json.dumps(
                    {"ok": all(r.ok for r in reports), "reports": [r.to_json() for r in reports]}, indent=2
                )
            )
    return 0 if all(r.ok for r in reports) else 1
