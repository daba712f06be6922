"""Facts about one host ELF object (a shared library, an extension module) read with pyelftools.

`parse_elf(data, name)` returns an `ElfInfo`: SONAME, DT_NEEDED (in order), DT_RPATH, DT_RUNPATH,
machine, class, type, size, the CPython tag from the file name, and where the fatbin sections are
(`.nv_fatbin`, and `__nv_relfatbin` in relocatable objects): their offset and size, not their bytes.
`data` is bytes or a `Blob`; pyelftools reads the headers, the dynamic section and its string table
through a seekable stream, so the object itself is never held in memory.

An object without a dynamic section (a static object, `gcc -c` output) gives `needed == ()` and
`has_dynamic is False`. Bytes that are not ELF, or a truncated or corrupt ELF, raise `AuditError`
(pyelftools' own exceptions never escape).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import Section

from sglang_matrix.audit import AuditError
from sglang_matrix.audit.blob import Blob, BytesBlob

ELF_MAGIC = b"\x7fELF"
EM_CUDA = 190
FATBIN_SECTIONS = (".nv_fatbin", "__nv_relfatbin")

_CPYTHON_RE = re.compile(r"\.cpython-(?P<major>\d)(?P<minor>\d+)(?P<t>t?)(?:-(?P<platform>[^./]+))?\.so$")
_ABI3_RE = re.compile(r"\.abi3\.so$")


def is_elf(data: bytes | memoryview | Blob) -> bool:
    """Whether the bytes start with the ELF magic."""
    head = data.read_at(0, 4) if isinstance(data, Blob) else bytes(data[:4])
    return head == ELF_MAGIC


@dataclass(frozen=True, slots=True)
class CPythonTag:
    """Which CPython an extension module's file name says it is for."""

    abi3: bool
    version: tuple[int, int] | None = None
    free_threaded: bool = False
    platform: str | None = None

    def __str__(self) -> str:
        if self.abi3:
            return "abi3"
        assert self.version is not None
        return f"{self.version[0]}.{self.version[1]}{'t' if self.free_threaded else ''}"


def cpython_tag(filename: str) -> CPythonTag | None:
    """`x.cpython-310-x86_64-linux-gnu.so` -> 3.10; `x.abi3.so` -> abi3; anything else -> None."""
    base = PurePosixPath(filename).name
    m = _CPYTHON_RE.search(base)
    if m:
        return CPythonTag(
            abi3=False,
            version=(int(m["major"]), int(m["minor"])),
            free_threaded=bool(m["t"]),
            platform=m["platform"],
        )
    if _ABI3_RE.search(base):
        return CPythonTag(abi3=True)
    return None


@dataclass(frozen=True, slots=True)
class FatbinSection:
    """Where a fatbin section lies inside a host object (`fatbin.iter_fatbin` reads it from there).

    `data` is a zero-copy view of the section when the object was parsed from bytes in memory, and
    None when it was parsed from a file (a `FileBlob`).
    """

    name: str
    offset: int
    size: int
    data: memoryview | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class ElfInfo:
    """Facts about one ELF object."""

    name: str
    elf_class: int
    machine: str
    elf_type: str
    soname: str | None
    needed: tuple[str, ...]
    rpath: str | None
    runpath: str | None
    has_dynamic: bool
    cpython: CPythonTag | None
    fatbins: tuple[FatbinSection, ...] = ()
    size: int = 0
    """The object's size in bytes (the member's unpacked size)."""

    @property
    def is_cpython_extension(self) -> bool:
        return self.cpython is not None

    @property
    def is_cuda(self) -> bool:
        """A CUDA device ELF (a cubin), not a host object."""
        return self.machine == "EM_CUDA"

    @property
    def fatbin_size(self) -> int:
        return sum(s.size for s in self.fatbins)


def parse_elf(data: bytes | memoryview | Blob, name: str = "<elf>") -> ElfInfo:
    """Parse an ELF object (bytes, or a `Blob`). Raises `AuditError` for non-ELF or corrupt bytes."""
    blob = data if isinstance(data, Blob) else BytesBlob(data)
    if not is_elf(blob):
        raise AuditError(name, "not an ELF file (bad magic)")
    try:
        return _parse(blob, name)
    except AuditError:
        raise
    except Exception as e:  # pyelftools raises many types (ELFError, struct/construct errors, ...)
        raise AuditError(name, f"corrupt or truncated ELF: {type(e).__name__}: {e}") from e


def _parse(blob: Blob, name: str) -> ElfInfo:
    size = blob.size
    elf = ELFFile(blob.stream())
    header = elf.header
    shoff, shnum, shentsize = header["e_shoff"], header["e_shnum"], header["e_shentsize"]
    if shnum and (shoff + shnum * shentsize > size):
        raise AuditError(
            name, f"truncated ELF: section headers end at {shoff + shnum * shentsize}, file is {size}"
        )

    soname: str | None = None
    needed: list[str] = []
    rpath: str | None = None
    runpath: str | None = None
    has_dynamic = False
    fatbins: list[FatbinSection] = []

    for section in elf.iter_sections():
        stype = section["sh_type"]
        if isinstance(section, DynamicSection) and stype == "SHT_DYNAMIC":
            _check_bounds(section, size, name)
            has_dynamic = True
            for tag in section.iter_tags():
                d_tag = tag.entry.d_tag
                if d_tag == "DT_NEEDED":
                    needed.append(tag.needed)
                elif d_tag == "DT_SONAME":
                    soname = tag.soname
                elif d_tag == "DT_RPATH":
                    rpath = tag.rpath
                elif d_tag == "DT_RUNPATH":
                    runpath = tag.runpath
        elif section.name in FATBIN_SECTIONS and stype != "SHT_NOBITS":
            offset, length = _check_bounds(section, size, name)
            view = blob.view[offset : offset + length] if isinstance(blob, BytesBlob) else None
            fatbins.append(FatbinSection(section.name, offset, length, view))

    return ElfInfo(
        name=name,
        elf_class=elf.elfclass,
        machine=str(header["e_machine"]),
        elf_type=str(header["e_type"]),
        soname=soname,
        needed=tuple(needed),
        rpath=rpath,
        runpath=runpath,
        has_dynamic=has_dynamic,
        cpython=cpython_tag(name),
        fatbins=tuple(fatbins),
        size=size,
    )


def _check_bounds(section: Section, size: int, name: str) -> tuple[int, int]:
    offset, length = section["sh_offset"], section["sh_size"]
    if offset + length > size:
        end = offset + length
        raise AuditError(name, f"truncated ELF: section {section.name} ends at {end}, file is {size}")
    return offset, length
