"""`sglang-serve --preflight`: can this host run the variant? Checked before anything starts.

* **driver**: the NVIDIA driver is found (`driver.find_driver`, the launchers' own search) and says where;
  its driver API answers (cuInit through ctypes; no torch).
* **cuda**: NVIDIA's compatibility rules, with the versions from [cuda-drivers] (matrix.toml, or the
  environment's record): a driver of an older CUDA major than the variant's, or below that major's
  minimum, is refused; one of the same major but an older minor runs the variant through minor-version
  compatibility, with a warning that says what may fail and names a variant built for an older CUDA.
* **gpu**: every GPU the driver shows (it applies CUDA_VISIBLE_DEVICES) has a capability among the
  variant's targets. The variants carry no PTX to fall back on (torch is built for exactly its targets:
  `smoke`'s torch-arch check holds it to that), so, as for `which`, only those capabilities fit.
* **cpu**: this machine is the variant's system and its CPU has the flags of the variant's ISA (a
  variant without an ISA, whose torch is a prebuilt wheel, runs on any CPU of its system: the record's
  `isa` is null and its `cpuFeatures` empty).

Every refusal is one line that names what fits (the driver to install, the variant to use); any refusal
makes the exit status 2. Standard library only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .driver import DRIVER_DIR_ENV, LIBCUDA, ROOT_ENV, SEARCH_ENV, find_driver
from .probe import HostError, cuda_error, driver_release, probe_cpu, query_driver_api
from .record import Matrix, VariantFacts, version_tuple

LEVELS = ("ok", "note", "warning", "refused")


@dataclass(frozen=True)
class Finding:
    check: str
    level: str
    text: str

    def to_json(self) -> dict[str, str]:
        return {"check": self.check, "level": self.level, "text": self.text}


@dataclass
class Outcome:
    variant: VariantFacts | None
    findings: list[Finding] = field(default_factory=list)
    host: dict[str, Any] = field(default_factory=dict)

    def add(self, check: str, level: str, text: str) -> None:
        self.findings.append(Finding(check, level, " ".join(text.split())))

    @property
    def refused(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "refused"]

    @property
    def exit_code(self) -> int:
        return 2 if self.refused else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "variant": self.variant.name if self.variant else None,
            "ok": not self.refused,
            "findings": [f.to_json() for f in self.findings],
            "host": self.host,
        }


def _cuda(text: str) -> tuple[int, int]:
    major, _, minor = text.partition(".")
    return int(major), int(minor or 0)


def _runs(driver_cuda: str | None, cuda: str) -> bool:
    """Whether a driver of `driver_cuda` runs code of `cuda` at all (same major or newer)."""
    return driver_cuda is None or _cuda(cuda)[0] <= _cuda(driver_cuda)[0]


def best_variant(
    matrix: Matrix,
    *,
    caps: set[str],
    flags: frozenset[str] | None,
    driver_cuda: str | None,
    same_target: bool = False,
    max_cuda: str | None = None,
) -> VariantFacts | None:
    """The variant that fits, ranked as `which` ranks (fewest capabilities; the current variant's Python,
    CUDA and ISA first; the ISA with the most cpu-features, on a tie the one listed later)."""
    current = matrix.current
    order = {v.long_name: i for i, v in enumerate(matrix.variants)}
    candidates = [
        v
        for v in matrix.variants
        if v.system == current.system
        and caps <= set(v.capabilities)
        and (flags is None or set(v.cpu_features) <= flags)
        and _runs(driver_cuda, v.cuda)
        and (not same_target or v.target == current.target)
        and (max_cuda is None or _cuda(v.cuda) <= _cuda(max_cuda))
    ]

    def key(v: VariantFacts) -> tuple[Any, ...]:
        return (
            len(v.capabilities),
            v.python != current.python,
            v.cuda != current.cuda,
            v.isa != current.isa,
            -len(v.cpu_features),
            -order[v.long_name],
        )

    return min(candidates, key=key, default=None)


def _visible_ids(environ: Mapping[str, str], count: int) -> list[str]:
    """The CUDA_VISIBLE_DEVICES entry of each ordinal the driver shows (the ordinal when it is unset)."""
    given = environ.get("CUDA_VISIBLE_DEVICES")
    if given is None:
        return [str(i) for i in range(count)]
    entries = [e.strip() for e in given.split(",") if e.strip()]
    return [entries[i] if i < len(entries) else str(i) for i in range(count)]


def _check_cuda(
    out: Outcome,
    matrix: Matrix,
    driver_cuda: str,
    release: str | None,
    drv: str,
    flags: frozenset[str] | None,
) -> None:
    v = matrix.current
    table = matrix.drivers
    need_min = table.minimum_for(v.cuda) if table else None
    need_full = table.full_for(v.cuda) if table else None
    if need_min:
        update = f"update the driver to ≥ {need_min}"
        if need_full:
            update += f" (≥ {need_full} for full {v.cuda} support)"
    else:
        update = f"update the driver to one of CUDA {v.cuda} or newer"
    (d_major, d_minor), (v_major, v_minor) = _cuda(driver_cuda), _cuda(v.cuda)
    below_minimum = bool(release and need_min and version_tuple(release) < version_tuple(need_min))
    if d_major < v_major or (d_major == v_major and below_minimum):
        older = best_variant(
            matrix, caps=set(v.capabilities), flags=flags, driver_cuda=driver_cuda, max_cuda=driver_cuda
        )
        alternative = f"; or use {older.name} (CUDA {older.cuda})" if older else ""
        out.add("cuda", "refused", f"{drv} cannot run {v.name} (CUDA {v.cuda}): {update}{alternative}")
        return
    if d_major == v_major and d_minor < v_minor:
        older = best_variant(
            matrix, caps=set(v.capabilities), flags=flags, driver_cuda=driver_cuda, max_cuda=driver_cuda
        )
        alternative = (
            f"{older.name} is built for CUDA {older.cuda}"
            if older
            else f"no variant of {v.target} in the matrix is built for CUDA {driver_cuda} or older"
        )
        fix = f"≥ {need_full}" if need_full else f"one of CUDA {v.cuda}"
        out.add(
            "cuda",
            "warning",
            f"{drv} runs {v.name} (CUDA {v.cuda}) only through CUDA's minor-version compatibility: "
            f"what needs a CUDA {v.cuda} driver fails (its newer driver APIs, and PTX from CUDA "
            f"{v.cuda}'s compilers, which this driver cannot JIT-compile); update the driver to {fix} "
            f"for full support, or use an older CUDA: {alternative}",
        )
        return
    full = bool(release and need_full and version_tuple(release) >= version_tuple(need_full))
    out.add("cuda", "ok", f"{drv} runs {v.name} (CUDA {v.cuda}){' fully' if full else ''}")


def _check_gpus(
    out: Outcome,
    matrix: Matrix,
    gpus: list[tuple[str, str, str]],
    flags: frozenset[str] | None,
) -> None:
    """gpus: (CUDA_VISIBLE_DEVICES id, name, capability) per ordinal."""
    v = matrix.current
    caps = {cap for _, _, cap in gpus}
    fits = [gid for gid, _, cap in gpus if cap in v.capabilities]
    # The driver is its own finding: the variant named here fits the GPUs and the CPU.
    other = best_variant(matrix, caps=caps, flags=flags, driver_cuda=None)
    for gid, name, cap in gpus:
        if cap in v.capabilities:
            out.add("gpu", "ok", f"GPU {gid}: {name}, capability {cap}, a target of {v.name}")
            continue
        if other is not None:
            fix = f"use {other.name} ({', '.join(other.capabilities)})"
        else:
            fix = f"no variant of the matrix for {v.system} covers capability {', '.join(sorted(caps))}"
        if fits:
            fix += f", or set CUDA_VISIBLE_DEVICES={','.join(fits)} to use only the GPUs it fits"
        out.add(
            "gpu",
            "refused",
            f"GPU {gid} ({name}, capability {cap}) cannot run {v.name}, built for "
            f"{', '.join(v.capabilities)} only: {fix}",
        )


def _check_cpu(out: Outcome, matrix: Matrix, system: str, flags: frozenset[str], source: str) -> None:
    v = matrix.current
    if system != v.system:
        out.add("cpu", "refused", f"{v.name} is built for {v.system}; this host is {system}")
        return
    if v.isa is None:
        out.add("cpu", "ok", f"{v.name} has no ISA: it runs on any {v.system} CPU")
        return
    lacking = [f for f in v.cpu_features if f not in flags]
    if not lacking:
        out.add("cpu", "ok", f"the CPU has every flag of {v.isa} ({' '.join(v.cpu_features)})")
        return
    other = best_variant(matrix, caps=set(v.capabilities), flags=flags, driver_cuda=None, same_target=True)
    fix = f"use {other.name} ({other.isa})" if other else f"no ISA of the matrix for {v.target} fits this CPU"
    lacks = f"this CPU lacks {' '.join(lacking)} ({source}), which {v.name} ({v.isa}) needs"
    out.add("cpu", "refused", f"{lacks}: {fix}")


def run_preflight(
    matrix: Matrix | None, environ: Mapping[str, str] | None = None, cpuinfo: Path | None = None
) -> Outcome:
    """Check this host against `matrix.current` (only the driver and the GPUs it lists when None)."""
    env = os.environ if environ is None else environ
    v = matrix.current if matrix else None
    out = Outcome(v)
    if matrix is None:
        out.add(
            "variant",
            "note",
            "no variant given (--variant NAME, or the environment's $SGLANG_MATRIX_RECORD): the "
            "driver's CUDA, the GPU targets and the ISA are not checked",
        )

    # The CPU first: it needs no driver.
    flags: frozenset[str] | None = None
    root = (env.get(ROOT_ENV) or "").rstrip("/")
    try:
        recorded = cpuinfo or (Path(root + "/proc/cpuinfo") if root else None)
        cpu = probe_cpu(recorded, None, env)
        flags = cpu.flags
        out.host["cpu"] = {"machine": cpu.machine, "model": cpu.model, "source": cpu.source}
        if matrix is not None:
            _check_cpu(out, matrix, cpu.system, cpu.flags, cpu.source)
    except HostError as err:
        out.add("cpu", "note", f"the CPU is not checked: {err}")

    if env.get(SEARCH_ENV, "1").strip() == "0":
        library, where = LIBCUDA, f"the loader's own path ({SEARCH_ENV}=0: no search)"
        release = None
    else:
        search = find_driver(env)
        driver = search.driver
        out.host["driver"] = search.to_json()
        if driver is None:
            need = ""
            if matrix and matrix.drivers and v:
                need = f" ({v.name} needs a driver ≥ {matrix.drivers.minimum_for(v.cuda)}"
                full = matrix.drivers.full_for(v.cuda)
                need += f", ≥ {full} for full CUDA {v.cuda} support)" if full else ")"
            out.add(
                "driver",
                "refused",
                f"no NVIDIA driver found ({search.problem}): install the NVIDIA driver{need}, or set "
                f"{DRIVER_DIR_ENV} to the directory that holds its {LIBCUDA}",
            )
            return out
        library = driver.libcuda
        release = driver_release(driver, env)
        where = f"{driver.directory} ({driver.source})"
        out.add(
            "driver",
            "ok",
            f"driver {release or '(release unknown)'} found in {where}: "
            f"{len(driver.libraries)} libraries exposed ({', '.join(sorted(driver.libraries)[:4])}"
            f"{', ...' if len(driver.libraries) > 4 else ''})",
        )
    api = query_driver_api(library, release)
    out.host["cuda"] = api.cuda
    out.host["gpus"] = [g.to_json() for g in api.gpus]
    drv = f"driver {release or '(release unknown)'} (CUDA {api.cuda or '?'})"
    if api.problem is not None:
        hint = ""
        if api.code == 34:
            hint = f": this {LIBCUDA} is the CUDA toolkit's stub, not a driver"
        elif api.code == 100:
            visible = env.get("CUDA_VISIBLE_DEVICES")
            hint = f": no GPU visible (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else ""
        out.add("driver", "refused", f"{drv} in {where} cannot start CUDA: {api.problem}{hint}")
        return out
    if not api.gpus:
        out.add("gpu", "refused", f"{drv} in {where} shows no GPU ({cuda_error(100)})")
        return out
    if matrix is not None and api.cuda is not None:
        _check_cuda(out, matrix, api.cuda, release, drv, flags)
    ids = _visible_ids(env, len(api.gpus))
    gpus = [(ids[g.index], g.name, g.capability) for g in api.gpus]
    if matrix is not None:
        _check_gpus(out, matrix, gpus, flags)
    else:
        for gid, name, cap in gpus:
            out.add("gpu", "ok", f"GPU {gid}: {name}, capability {cap}")
    return out


def render(outcome: Outcome, prefix: str = "") -> tuple[list[str], list[str]]:
    """(lines for stdout, lines for stderr): refusals go to stderr, one line each."""
    head = outcome.variant
    lines = [f"{prefix}preflight for {head.name}" if head else f"{prefix}preflight (no variant)"]
    errors = []
    for f in outcome.findings:
        (errors if f.level == "refused" else lines).append(f"{prefix}{f.level}: {f.text}")
    return lines, errors
