"""Per wheel: the GPU code it ships, per SM, and which of it can run on given GPUs.

`audit_wheel(path)` makes one pass over the wheel: every host ELF object's fatbin entries
(`fatbin.py`), every standalone `.cubin` (`cubin.py`), and the shared-library facts
(`sharedlibs.py`) from the same parse. Sizes are the bytes as stored in the object (an LZ4 or zstd
entry counts its compressed size); `uncompressed_bytes` gives the other view where headers tell it.

Which code runs on a GPU of compute capability M.N (`runs_on`):
  * cubin `sm_XY` (no suffix): on X.Y and on newer minors of the same major (X.Y' with Y' >= Y),
    binary compatibility within a major: sm_80 runs on 8.6 and 8.9, sm_90 does not run on 10.0;
  * cubin `sm_XYa` (arch-specific): only on exactly X.Y;
  * cubin `sm_XYf` (family): on the same major with minor >= Y: sm_100f runs on 10.0 and 10.3;
  * PTX `compute_XY`: JIT-compiled by the driver on any capability >= X.Y (`compute_XYa` only on
    X.Y, `compute_XYf` like an "f" cubin);
  * entries of any other kind are never counted as runnable.
Given a set of target capabilities, an entry is "runnable" if it runs on at least one of them and
"dead" otherwise (`classify`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from sglang_matrix.audit import AuditError
from sglang_matrix.audit.cubin import is_cubin, parse_cubin
from sglang_matrix.audit.elf import is_elf
from sglang_matrix.audit.fatbin import iter_fatbin
from sglang_matrix.audit.sharedlibs import SharedLibReport, host_object
from sglang_matrix.audit.wheelzip import Member, WheelReader

TargetKey = tuple[int, str, str]
"""(sm, suffix, kind): (90, "a", "cubin") is sm_90a code, (80, "", "ptx") is compute_80."""

Capability = tuple[int, int]

_CAPABILITY_RE = re.compile(r"^(\d+)\.(\d)[af]?$")


@dataclass(frozen=True, slots=True)
class CodeEntry:
    """Device code for one target inside an object."""

    kind: str
    sm: int
    suffix: str
    stored_size: int
    uncompressed_size: int | None = None
    compression: str = "none"

    @property
    def key(self) -> TargetKey:
        return (self.sm, self.suffix, self.kind)

    @property
    def target(self) -> str:
        return format_target(self.key)


@dataclass(slots=True)
class ObjectCode:
    """The device code of one wheel member: a host object's fatbin entries, or one cubin."""

    path: str
    source: Literal["fatbin", "cubin"]
    entries: list[CodeEntry] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(e.stored_size for e in self.entries)

    def bytes_by_target(self) -> dict[TargetKey, int]:
        return _sum_by_key(self.entries)

    def uncompressed_by_target(self) -> dict[TargetKey, int]:
        return _sum_by_key(self.entries, uncompressed=True)

    def entry_counts(self) -> dict[TargetKey, int]:
        return dict(sorted(Counter(e.key for e in self.entries).items()))


@dataclass(frozen=True, slots=True)
class Classification:
    """Device code split into runnable and dead for a set of target capabilities."""

    capabilities: tuple[Capability, ...]
    runnable_bytes: int
    dead_bytes: int
    runnable_by_target: dict[TargetKey, int]
    dead_by_target: dict[TargetKey, int]
    per_object: dict[str, tuple[int, int]]
    """path -> (runnable bytes, dead bytes)."""


@dataclass(slots=True)
class GpuCodeReport:
    wheel: str
    objects: list[ObjectCode] = field(default_factory=list)
    problems: list[AuditError] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(o.total_bytes for o in self.objects)

    @property
    def uncompressed_bytes(self) -> int:
        """Total after decompression; entries whose header lacks the size count as stored."""
        return sum(e.uncompressed_size or e.stored_size for o in self.objects for e in o.entries)

    def bytes_by_target(self) -> dict[TargetKey, int]:
        return _sum_by_key(e for o in self.objects for e in o.entries)

    def uncompressed_by_target(self) -> dict[TargetKey, int]:
        """Bytes per target after decompression (entries whose header lacks the size count as stored)."""
        return _sum_by_key((e for o in self.objects for e in o.entries), uncompressed=True)

    def entry_counts(self) -> dict[TargetKey, int]:
        """Number of entries (fatbin entries and cubin files) per target."""
        return dict(sorted(Counter(e.key for o in self.objects for e in o.entries).items()))

    def classify(self, capabilities: Iterable[str | Capability]) -> Classification:
        return classify(self.objects, capabilities)


@dataclass(slots=True)
class WheelAudit:
    gpu: GpuCodeReport
    libs: SharedLibReport


def format_target(key: TargetKey) -> str:
    sm, suffix, kind = key
    name = f"{'compute' if kind == 'ptx' else 'sm'}_{sm}{suffix}"
    return name if kind in ("ptx", "cubin") else f"{name}/{kind}"


def parse_capability(value: str | Capability) -> Capability:
    """Parse a capability: "9.0" -> (9, 0); "10.0a" -> (10, 0) (a GPU has no suffix).

    A (major, minor) tuple is returned as it is.
    """
    if isinstance(value, tuple):
        return value
    m = _CAPABILITY_RE.match(value.strip())
    if not m:
        raise AuditError("capabilities", f"{value!r} is not a compute capability like 9.0 or 12.0")
    return int(m[1]), int(m[2])


def runs_on(kind: str, sm: int, suffix: str, capability: Capability) -> bool:
    """Whether code for (kind, sm, suffix) runs on a GPU of `capability` (rules: module docstring)."""
    target = divmod(sm, 10)
    if kind not in ("cubin", "ptx"):
        return False
    if suffix == "a":
        return capability == target
    if kind == "ptx" and suffix == "":
        return capability >= target
    return capability[0] == target[0] and capability[1] >= target[1]


def classify(objects: Iterable[ObjectCode], capabilities: Iterable[str | Capability]) -> Classification:
    caps = tuple(sorted({parse_capability(c) for c in capabilities}))
    runnable: Counter[TargetKey] = Counter()
    dead: Counter[TargetKey] = Counter()
    per_object: dict[str, tuple[int, int]] = {}
    for obj in objects:
        ok = bad = 0
        for e in obj.entries:
            if any(runs_on(e.kind, e.sm, e.suffix, c) for c in caps):
                runnable[e.key] += e.stored_size
                ok += e.stored_size
            else:
                dead[e.key] += e.stored_size
                bad += e.stored_size
        per_object[obj.path] = (ok, bad)
    return Classification(
        capabilities=caps,
        runnable_bytes=sum(runnable.values()),
        dead_bytes=sum(dead.values()),
        runnable_by_target=dict(sorted(runnable.items())),
        dead_by_target=dict(sorted(dead.items())),
        per_object=per_object,
    )


def audit_wheel(path: str | Path) -> WheelAudit:
    """One pass over a wheel: GPU code and shared-library facts. Bad members go to `problems`."""
    with WheelReader(path) as wheel:
        gpu = GpuCodeReport(wheel.name)
        libs = SharedLibReport(wheel.name)
        for member in wheel.members():
            try:
                _audit_member(member, gpu, libs)
            except AuditError as e:
                gpu.problems.append(e)
                libs.problems.append(e)
        gpu.problems[:0] = wheel.problems
        libs.problems[:0] = wheel.problems
    return WheelAudit(gpu, libs)


def audit_gpu_code(path: str | Path) -> GpuCodeReport:
    return audit_wheel(path).gpu


def _audit_member(member: Member, gpu: GpuCodeReport, libs: SharedLibReport) -> None:
    """Reads this one member's headers, dynamic section and fatbin headers; never all of its bytes."""
    head = member.head
    if not is_elf(head):
        return
    with member.open_blob() as blob:
        if is_cubin(head):
            info = parse_cubin(blob, member.label)
            entry = CodeEntry("cubin", info.sm, info.suffix, info.size, info.size)
            gpu.objects.append(ObjectCode(member.name, "cubin", [entry]))
            return
        obj = host_object(blob, member.name, member.label)
        if obj is None:
            return
        libs.objects.append(obj)
        entries = [
            CodeEntry(e.kind, e.sm, e.suffix, e.stored_size, e.uncompressed_size, e.compression)
            for section in obj.fatbins
            for e in iter_fatbin(blob, f"{member.label}:{section.name}", section.offset, section.size)
        ]
    if entries:
        gpu.objects.append(ObjectCode(member.name, "fatbin", entries))


def _sum_by_key(entries: Iterable[CodeEntry], uncompressed: bool = False) -> dict[TargetKey, int]:
    out: Counter[TargetKey] = Counter()
    for e in entries:
        out[e.key] += (e.uncompressed_size or e.stored_size) if uncompressed else e.stored_size
    return dict(sorted(out.items()))
