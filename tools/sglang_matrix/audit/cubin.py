"""The target of a standalone CUDA ELF (`.cubin`, e_machine EM_CUDA = 190).

The SM comes from e_flags, read according to e_ident[EI_ABIVERSION]:
  * ABI version 7 (and older): SM = e_flags bits 0-7, 0x800 marks an "a" target (sm_90a);
  * ABI version 8 (CUDA 12.8+ for Blackwell): SM = e_flags bits 8-15, 0x8 marks an "a" target.
e_flags has no "f" (family) bit, and CUDA 13's ptxas no longer sets the "a" bit: the exact target
is in the `.note.nv.tkinfo` note (ptxas' command line, `-arch sm_100f`). When that note names the
same SM as e_flags, its suffix wins (`source == "tkinfo"`); otherwise e_flags decide.

This is a small struct-based reader (no pyelftools): flashinfer-cubin alone has 9,262 cubins.
It reads only the ELF header, the section table, the names of note sections and the tkinfo note,
through a `Blob`, never the code. Bytes that are not a CUDA ELF, or a truncated header or section
table, raise `AuditError`.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Literal

from sglang_matrix.audit import AuditError
from sglang_matrix.audit.blob import Blob, BytesBlob

EM_CUDA = 190
SHT_NOTE = 7
NT_NVIDIA_TKINFO = 2000
TKINFO_SECTION = b".note.nv.tkinfo"
MAX_NOTE_SIZE = 1 << 20
MAX_TABLE_READ = 1 << 20
"""A toolkit note is a few hundred bytes; a larger `.note.nv.tkinfo` is not read (an error)."""

_ARCH_RE = re.compile(rb"(?:-arch|--gpu-name)[= ]+sm_(\d+)([af]?)(?![0-9A-Za-z_])")

# (offset of e_shoff, e_flags, e_shentsize) per ELF class, and the section header layouts.
_HDR = {
    1: (struct.Struct("<I"), 32, 36, 46, struct.Struct("<IIIIII")),
    2: (struct.Struct("<Q"), 40, 48, 58, struct.Struct("<IIQQQQ")),
}


@dataclass(frozen=True, slots=True)
class CubinInfo:
    """Target of one cubin."""

    sm: int
    suffix: str
    abi_version: int
    e_flags: int
    source: Literal["e_flags", "tkinfo"]
    tkinfo_target: str | None
    size: int

    @property
    def target(self) -> str:
        return f"sm_{self.sm}{self.suffix}"


def is_cubin(head: bytes | memoryview) -> bool:
    """Whether the bytes start like a CUDA ELF (magic and e_machine == EM_CUDA)."""
    head = bytes(head[:20])
    return len(head) >= 20 and head[:4] == b"\x7fELF" and struct.unpack_from("<H", head, 18)[0] == EM_CUDA


def parse_cubin(data: bytes | memoryview | Blob, name: str = "<cubin>") -> CubinInfo:
    """The SM and suffix of a cubin (bytes in memory, or a `Blob`)."""
    blob = data if isinstance(data, Blob) else BytesBlob(data)
    size = blob.size
    head = blob.read_at(0, 64)
    if size < 52 or head[:4] != b"\x7fELF":
        raise AuditError(name, "not an ELF file (bad magic or shorter than an ELF header)")
    elf_class, encoding, abi = head[4], head[5], head[8]
    if elf_class not in _HDR:
        raise AuditError(name, f"bad ELF class {elf_class}")
    if encoding != 1:
        raise AuditError(name, "big-endian ELF: not a cubin")
    word, shoff_at, flags_at, shent_at, shdr = _HDR[elf_class]
    if size < shent_at + 6:
        raise AuditError(name, "truncated ELF header")
    machine = struct.unpack_from("<H", head, 18)[0]
    if machine != EM_CUDA:
        raise AuditError(name, f"not a CUDA ELF (e_machine {machine}, want {EM_CUDA})")
    e_flags = struct.unpack_from("<I", head, flags_at)[0]

    if abi <= 7:
        sm, suffix = e_flags & 0xFF, "a" if e_flags & 0x800 else ""
    elif abi == 8:
        sm, suffix = (e_flags >> 8) & 0xFF, "a" if e_flags & 0x8 else ""
    else:
        sm, suffix = 0, ""

    tk = _tkinfo_target(blob, head, word.unpack_from(head, shoff_at)[0], shent_at, shdr, name)
    source: Literal["e_flags", "tkinfo"] = "e_flags"
    if tk is not None and (tk[0] == sm or sm == 0):
        sm, suffix, source = tk[0], tk[1], "tkinfo"
    if sm == 0:
        raise AuditError(name, f"unknown CUDA ELF ABI version {abi} and no .note.nv.tkinfo target")
    return CubinInfo(
        sm=sm,
        suffix=suffix,
        abi_version=abi,
        e_flags=e_flags,
        source=source,
        tkinfo_target=None if tk is None else f"sm_{tk[0]}{tk[1]}",
        size=size,
    )


def _tkinfo_target(
    blob: Blob, head: bytes, shoff: int, shent_at: int, shdr: struct.Struct, name: str
) -> tuple[int, str] | None:
    """(sm, suffix) from ptxas' `-arch` in `.note.nv.tkinfo`, or None when there is no such note."""
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", head, shent_at)
    if shnum == 0 or shoff == 0:
        return None
    if shentsize < shdr.size or shoff + shnum * shentsize > blob.size:
        raise AuditError(name, f"truncated ELF: section table at {shoff:#x} runs past the end")
    if shnum * shentsize <= MAX_TABLE_READ:  # a real cubin's table is a few kB: one read
        table = blob.read_at(shoff, shnum * shentsize)
        sections = [shdr.unpack_from(table, i * shentsize) for i in range(shnum)]
    else:
        sections = [shdr.unpack(blob.read_at(shoff + i * shentsize, shdr.size)) for i in range(shnum)]
    if shstrndx >= shnum:
        return None
    _n, _t, _f, _a, str_off, str_size = sections[shstrndx]
    if str_off + str_size > blob.size:
        raise AuditError(name, "truncated ELF: section name table runs past the end")
    want = TKINFO_SECTION + b"\x00"
    for sh_name, sh_type, _f, _a, off, length in sections:
        if sh_type != SHT_NOTE or sh_name >= str_size:
            continue
        if blob.read_at(str_off + sh_name, min(len(want), str_size - sh_name)) != want:
            continue
        if off + length > blob.size:
            raise AuditError(name, "truncated ELF: .note.nv.tkinfo runs past the end")
        if length > MAX_NOTE_SIZE:
            raise AuditError(name, f".note.nv.tkinfo is {length} bytes: too large for a toolkit note")
        return _arch_from_notes(blob.read_at(off, length))
    return None


def _arch_from_notes(notes: bytes) -> tuple[int, str] | None:
    pos = 0
    while pos + 12 <= len(notes):
        namesz, descsz, ntype = struct.unpack_from("<III", notes, pos)
        desc = pos + 12 + ((namesz + 3) & ~3)
        nxt = desc + ((descsz + 3) & ~3)
        if nxt > len(notes):
            return None
        if ntype == NT_NVIDIA_TKINFO:
            m = _ARCH_RE.search(notes, desc, desc + descsz)
            if m:
                return int(m[1]), m[2].decode()
        pos = nxt
    return None
