"""Per wheel: what every host ELF object needs (DT_NEEDED), and which objects cannot load.

Raw facts only: no mapping of SONAMEs to packages (the caller does that).

An object cannot load on a target CPython when:
  * its name carries a version tag for another CPython (`_x.cpython-310-x86_64-linux-gnu.so` on
    3.12), or the free-threading flag differs (`cpython-313t` vs a default 3.13 build);
  * it is an `abi3` module and the target is older than the wheel's python tag (`cp310-abi3`
    wheel on 3.9), or the target is a free-threaded build (abi3 is not available there);
  * a target machine is given and the object is built for another one (`EM_AARCH64` on x86_64).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from sglang_matrix.audit import AuditError
from sglang_matrix.audit.blob import Blob
from sglang_matrix.audit.cubin import is_cubin
from sglang_matrix.audit.elf import ElfInfo, is_elf, parse_elf
from sglang_matrix.audit.wheelzip import WheelReader

MACHINES = {"x86_64": "EM_X86_64", "aarch64": "EM_AARCH64", "arm64": "EM_AARCH64", "ppc64le": "EM_PPC64"}

_PYTHON_RE = re.compile(r"^(\d+)\.(\d+)(t?)$")
_WHEEL_RE = re.compile(r"^[^-]+-[^-]+(?:-\d[^-]*)?-(?P<py>[^-]+)-(?P<abi>[^-]+)-(?P<plat>[^-]+)\.whl$")


@dataclass(frozen=True, slots=True)
class PythonTarget:
    """A CPython to install for: `3.12`, or `3.13t` for a free-threaded build."""

    version: tuple[int, int]
    free_threaded: bool = False

    @classmethod
    def parse(cls, text: str) -> PythonTarget:
        m = _PYTHON_RE.match(text.strip())
        if not m:
            raise AuditError("python", f"{text!r} is not a CPython version like 3.12 or 3.13t")
        return cls((int(m[1]), int(m[2])), bool(m[3]))

    def __str__(self) -> str:
        return f"{self.version[0]}.{self.version[1]}{'t' if self.free_threaded else ''}"


@dataclass(frozen=True, slots=True)
class LoadProblem:
    path: str
    reason: str


def abi3_minimum(wheel_name: str) -> tuple[int, int] | None:
    """The lowest CPython of an abi3 wheel from its file name (`cp310-abi3` -> (3, 10))."""
    m = _WHEEL_RE.match(Path(wheel_name).name)
    if not m or "abi3" not in m["abi"].split("."):
        return None
    versions = [(int(t[2]), int(t[3:])) for t in m["py"].split(".") if re.fullmatch(r"cp\d\d+", t)]
    return min(versions) if versions else None


def cannot_load_reason(
    obj: ElfInfo,
    python: PythonTarget,
    *,
    abi3_min: tuple[int, int] | None = None,
    machine: str | None = None,
) -> str | None:
    """Why `obj` cannot load on `python` (None when nothing in its tags forbids it)."""
    if machine is not None:
        want = MACHINES.get(machine, machine)
        if obj.machine != want:
            return f"built for {obj.machine}, target machine is {want}"
    tag = obj.cpython
    if tag is None:
        return None
    if tag.abi3:
        if python.free_threaded:
            return f"abi3 module: free-threaded CPython {python} has no stable ABI"
        if abi3_min is not None and python.version < abi3_min:
            return f"abi3 module for CPython >= {abi3_min[0]}.{abi3_min[1]}, target is {python}"
        return None
    if tag.version != python.version or tag.free_threaded != python.free_threaded:
        return f"extension module for CPython {tag} only, target is {python}"
    return None


@dataclass(slots=True)
class SharedLibReport:
    """Host ELF objects of one wheel."""

    wheel: str
    objects: list[ElfInfo] = field(default_factory=list)
    problems: list[AuditError] = field(default_factory=list)

    def needed_by(self) -> dict[str, list[str]]:
        """SONAME -> paths of the objects that list it in DT_NEEDED."""
        out: dict[str, list[str]] = {}
        for obj in self.objects:
            for lib in obj.needed:
                out.setdefault(lib, []).append(obj.name)
        return dict(sorted(out.items()))

    def needed_counts(self) -> Counter[str]:
        """SONAME -> number of objects that need it."""
        return Counter(lib for obj in self.objects for lib in set(obj.needed))

    def cannot_load(self, python: str | PythonTarget, machine: str | None = None) -> list[LoadProblem]:
        """Objects that cannot load on `python` (e.g. "3.12"), optionally on `machine` too."""
        target = PythonTarget.parse(python) if isinstance(python, str) else python
        minimum = abi3_minimum(self.wheel)
        out = []
        for obj in self.objects:
            reason = cannot_load_reason(obj, target, abi3_min=minimum, machine=machine)
            if reason is not None:
                out.append(LoadProblem(obj.name, reason))
        return out


def host_object(data: bytes | Blob, member: str, label: str) -> ElfInfo | None:
    """The `ElfInfo` of a host ELF member (None for a cubin); errors name `label`."""
    try:
        info = parse_elf(data, member)
    except AuditError as e:
        raise AuditError(label, e.message) from e
    return None if info.is_cuda else info


def audit_shared_libs(path: str | Path) -> SharedLibReport:
    """One pass over a wheel: every host ELF object and its dynamic-section facts."""
    with WheelReader(path) as wheel:
        report = SharedLibReport(wheel.name)
        for member in wheel.members():
            try:
                head = member.head
                if not is_elf(head) or is_cubin(head):
                    continue
                with member.open_blob() as blob:
                    info = host_object(blob, member.name, member.label)
            except AuditError as e:
                report.problems.append(e)
                continue
            if info is not None:
                report.objects.append(info)
        report.problems[:0] = wheel.problems
    return report
