"""The static checks (variant, interpreter, imports, torch's architectures, METADATA) and the GPU gate."""

from __future__ import annotations

import re
import signal
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..audit import AuditError
from ..audit.elf import is_elf, parse_elf
from ..audit.fatbin import parse_fatbin
from .closure import is_so_name
from .hosts import cpu_reason
from .model import (
    IMPORT_TIMEOUT_S,
    NEEDS_DRIVER,
    VARIANT_JSON,
    Check,
    Host,
    SmokeVariant,
    failed,
    passed,
    skipped,
)
from .run import IMPORT_CODE, run_python, signal_name


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


# The wheel attributes that provide a module, where the name differs (sglang 0.5.23 renamed sgl-kernel).
WHEELS_OF_MODULE = {"sgl_kernel": ("sgl-kernel", "sglang-kernel")}


def pruned_paths(variant: SmokeVariant, module: str) -> list[str]:
    """The paths the variant prunes from the wheel that provides `module` (sgl_kernel -> sgl-kernel, or
    sglang-kernel)."""
    pruned = variant.data.get("pruned") if isinstance(variant.data, dict) else None
    if not isinstance(pruned, dict):
        return []
    for attr in WHEELS_OF_MODULE.get(module, (module.replace("_", "-"),)):
        paths = pruned.get(attr)
        if isinstance(paths, list):
            return [p for p in paths if isinstance(p, str)]
    return []


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
        if not is_so_name(path.name) or not path.is_file():
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
