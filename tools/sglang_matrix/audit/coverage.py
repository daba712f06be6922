"""The GPU-code check: device code per object and target, and whether each capability has code to run.

Coverage is checked on the code a variant keeps: objects under the variant's pruned paths
(`Variant.pruned`, from the wheel's `[[prune]]` rules) count as pruned, neither runnable nor dead, so that
`total = runnable + dead + pruned`. Audited for a whole release line (no variant), each capability is
checked on what a variant of that capability alone would keep, and no object is marked pruned.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from sglang_matrix.audit.findings import AuditEnv, Finding, size_text
from sglang_matrix.audit.gpucode import GpuCodeReport, classify, format_target
from sglang_matrix.pruning import matched_bytes
from sglang_matrix.spec import Wheel

# Cubins are many small files (flashinfer-cubin has 9,262): reports group them by directory, this deep.
CUBIN_GROUP_DEPTH = 3


@dataclass
class GpuObjectRow:
    path: str  # a member, or a directory of cubins ("dir/ (N cubins)")
    source: str  # "fatbin" or "cubin"
    count: int  # 1 for a fatbin object, the number of cubin files for a group
    targets: dict[str, int]  # stored bytes per target
    runnable_bytes: int
    dead_bytes: int
    entries: dict[str, int] = field(default_factory=dict)  # fatbin entries (or cubin files) per target
    uncompressed: dict[str, int] = field(default_factory=dict)  # bytes per target after decompression
    pruned_bytes: int = 0  # in paths the variant prunes (neither runnable nor dead)

    @property
    def total_bytes(self) -> int:
        return sum(self.targets.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "source": self.source,
            "count": self.count,
            "total_bytes": self.total_bytes,
            "runnable_bytes": self.runnable_bytes,
            "dead_bytes": self.dead_bytes,
            "pruned_bytes": self.pruned_bytes,
            "uncompressed_bytes": sum(self.uncompressed.values()),
            "targets": self.targets,
            "entries": self.entries,
            "uncompressed_targets": self.uncompressed,
        }


@dataclass
class CapabilityCode:
    capability: str
    runnable_bytes: int  # of the code the variant keeps
    acknowledged: str | None  # the gpu-code-gaps reason when runnable_bytes == 0 and the spec says why
    pruned_runnable_bytes: int = 0  # code that would run here but is in a pruned path

    def to_json(self) -> dict[str, Any]:
        return {
            "capability": self.capability,
            "runnable_bytes": self.runnable_bytes,
            "pruned_runnable_bytes": self.pruned_runnable_bytes,
            "gap": self.runnable_bytes == 0,
            "acknowledged": self.acknowledged,
        }


@dataclass
class GpuCheck:
    total_bytes: int
    by_target: dict[str, int]
    objects: list[GpuObjectRow]
    runnable_bytes: int  # total = runnable + dead + pruned
    dead_bytes: int
    capabilities: list[CapabilityCode]
    pruned_bytes: int = 0
    entries_by_target: dict[str, int] = field(default_factory=dict)
    uncompressed_by_target: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "total_bytes": self.total_bytes,
            "uncompressed_bytes": sum(self.uncompressed_by_target.values()),
            "by_target": self.by_target,
            "entries_by_target": self.entries_by_target,
            "uncompressed_by_target": self.uncompressed_by_target,
            "runnable_bytes": self.runnable_bytes,
            "dead_bytes": self.dead_bytes,
            "pruned_bytes": self.pruned_bytes,
            "capabilities": [c.to_json() for c in self.capabilities],
            "objects": [o.to_json() for o in self.objects],
        }


def is_pruned(path: str, patterns: Iterable[str]) -> bool:
    """Whether a member lies under one of the prune paths (the rule `pruning.matched_bytes` sizes)."""
    return any(matched_bytes({path: 0}, pattern) is not None for pattern in patterns)


def _named(counts: dict[Any, int]) -> dict[str, int]:
    return {format_target(k): v for k, v in counts.items()}


def check_gpu(
    gpu: GpuCodeReport, env: AuditEnv, wheel: Wheel | None, findings: list[Finding], prune: bool = False
) -> GpuCheck:
    """GPU code per object and per capability. `prune`: whether the spec prunes device code (used when
    `env` is a whole line: each capability is then checked on what a variant for it alone keeps)."""
    caps = env.capabilities
    variant_pruned: tuple[str, ...] | None = None
    if env.pruned is not None:
        variant_pruned = env.pruned.get(wheel.attr, ()) if wheel is not None else ()
    pruned = {o.path for o in gpu.objects if variant_pruned and is_pruned(o.path, variant_pruned)}
    kept = [o for o in gpu.objects if o.path not in pruned]
    overall = classify(kept, caps) if caps else None
    rows: list[GpuObjectRow] = []
    groups: dict[str, GpuObjectRow] = {}
    for obj in gpu.objects:
        targets = _named(obj.bytes_by_target())
        entries = _named(obj.entry_counts())
        uncompressed = _named(obj.uncompressed_by_target())
        cut = obj.total_bytes if obj.path in pruned else 0
        if cut:
            ok, bad = 0, 0
        else:
            ok, bad = overall.per_object.get(obj.path, (0, 0)) if overall else (0, obj.total_bytes)
        if obj.source == "fatbin":
            rows.append(GpuObjectRow(obj.path, "fatbin", 1, targets, ok, bad, entries, uncompressed, cut))
            continue
        parts = PurePosixPath(obj.path).parent.parts[:CUBIN_GROUP_DEPTH]
        group = "/".join(parts) + "/" if parts else "./"
        row = groups.get(group)
        if row is None:
            row = groups[group] = GpuObjectRow(group, "cubin", 0, {}, 0, 0)
            rows.append(row)
        row.count += 1
        row.runnable_bytes += ok
        row.dead_bytes += bad
        row.pruned_bytes += cut
        for into, add in ((row.targets, targets), (row.entries, entries), (row.uncompressed, uncompressed)):
            for t, n in add.items():
                into[t] = into.get(t, 0) + n
    for row in groups.values():
        row.targets = _sorted_targets(row.targets)
        row.entries = _sorted_targets(row.entries)
        row.uncompressed = _sorted_targets(row.uncompressed)
    gaps = wheel.gpu_code_gaps if wheel is not None else {}
    per_cap: list[CapabilityCode] = []
    if gpu.total_bytes:
        for cap in caps:
            if variant_pruned is not None:
                paths = variant_pruned
            else:
                paths = wheel.pruned_paths((cap,)) if prune and wheel is not None else ()
            everything = classify(gpu.objects, [cap]).runnable_bytes
            runnable = (
                classify([o for o in gpu.objects if not is_pruned(o.path, paths)], [cap]).runnable_bytes
                if paths
                else everything
            )
            reason = gaps.get(cap, gaps.get("*")) if runnable == 0 else None
            per_cap.append(CapabilityCode(cap, runnable, reason, everything - runnable))
            if runnable == 0 and reason is None:
                why = (
                    f"the {size_text(everything)} that would run there is pruned ({', '.join(paths)})"
                    if everything
                    else f"{size_text(gpu.total_bytes)} for other GPUs"
                )
                findings.append(
                    Finding(
                        "hard",
                        "gpu",
                        f"no GPU code {'kept after pruning ' if everything else ''}runs on capability "
                        f"{cap} ({why}); acknowledge it in `gpu-code-gaps` if that is intended",
                    )
                )
            elif runnable == 0:
                findings.append(Finding("info", "gpu", f"no GPU code for capability {cap}: {reason}"))
            elif cap in gaps:
                findings.append(
                    Finding(
                        "warning",
                        "gpu",
                        f"`gpu-code-gaps` lists {cap}, but {size_text(runnable)} of code runs on it",
                    )
                )
    return GpuCheck(
        total_bytes=gpu.total_bytes,
        by_target=_named(gpu.bytes_by_target()),
        objects=rows,
        runnable_bytes=overall.runnable_bytes if overall else 0,
        dead_bytes=overall.dead_bytes if overall else sum(o.total_bytes for o in kept),
        capabilities=per_cap,
        pruned_bytes=sum(o.total_bytes for o in gpu.objects if o.path in pruned),
        entries_by_target=_named(gpu.entry_counts()),
        uncompressed_by_target=_named(gpu.uncompressed_by_target()),
    )


def _sorted_targets(targets: dict[str, int]) -> dict[str, int]:
    return dict(sorted(targets.items(), key=lambda kv: _target_order(kv[0])))


def _target_order(target: str) -> tuple[int, str]:
    digits = "".join(ch for ch in target.split("_", 1)[-1] if ch.isdigit())
    return (int(digits) if digits else 0, target)
