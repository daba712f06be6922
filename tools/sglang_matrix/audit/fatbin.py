"""Parse NVIDIA fatbin containers (the contents of a `.nv_fatbin` or `__nv_relfatbin` section).

A section holds one or more containers back to back (zero bytes between them are skipped).
All integers are little-endian.

Container header, 16 bytes:
  0  u32 magic 0xBA55ED50
  4  u16 version (1)
  6  u16 header size (16)
  8  u64 size of the entries that follow the header

Entry header, 64 bytes or more (80 for PTX, 96 for CUDA ABI-8 cubins, as seen in real wheels):
  0  u16 kind: 1 = PTX, 2 = ELF (cubin); other kinds are reported as "other"
  2  u16 (0x0101 in every file seen)
  4  u32 header size: the payload starts this many bytes after the entry's start
  8  u64 payload size as stored (padded; compressed when a compression flag is set)
 16  u32 compressed size without padding (0 when not compressed)
 20  u32 offset of extra options inside the header (0 or 64)
 24  u16, u16: PTX ISA version minor/major for PTX (8.8), ELF ABI (1.7 / 1.8) for cubins
 28  u32 SM, e.g. 90 for sm_90 / compute_90
 32  u32, u32: object name offset / length
 40  u64 flags: 0x1 64-bit, 0x10 Linux, 0x2000 LZ4 payload, 0x8000 zstd payload,
               0x100000 "a" target (sm_90a), 0x200000 "f" target (sm_100f)
 48  u64 (zero)
 56  u64 uncompressed payload size (0 when not compressed)

Payloads are never decompressed, nor read: sizes come from the headers, which are read one at a
time through a `Blob` (so a section of any size is parsed in bounded memory). Anything inconsistent
(bad magic, a header size below the minimum, an entry or container running past its end) raises
`AuditError` naming the byte offset inside the section.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from sglang_matrix.audit import AuditError
from sglang_matrix.audit.blob import Blob, BytesBlob

FATBIN_MAGIC = 0xBA55ED50
CONTAINER_HEADER_SIZE = 16
ENTRY_MIN_HEADER_SIZE = 64

KIND_PTX = 1
KIND_CUBIN = 2

FLAG_LZ4 = 0x2000
FLAG_ZSTD = 0x8000
FLAG_ARCH_A = 0x100000
FLAG_ARCH_F = 0x200000

_CONTAINER = struct.Struct("<IHHQ")
_ENTRY = struct.Struct("<HHIQIIHHIIIQQQ")

Kind = Literal["cubin", "ptx", "other"]
Compression = Literal["none", "lz4", "zstd"]


@dataclass(frozen=True, slots=True)
class FatbinEntry:
    """One entry of a fatbin container: code for one SM."""

    kind: Kind
    sm: int
    suffix: str
    stored_size: int
    uncompressed_size: int | None
    compression: Compression
    offset: int
    header_size: int
    flags: int
    kind_code: int

    @property
    def target(self) -> str:
        """`sm_90a` for a cubin, `compute_80` for PTX."""
        return f"{'compute' if self.kind == 'ptx' else 'sm'}_{self.sm}{self.suffix}"


def parse_fatbin(data: bytes | memoryview | Blob, name: str = "<fatbin>") -> list[FatbinEntry]:
    """Every entry of every container in `data` (a fatbin section's contents)."""
    return list(iter_fatbin(data, name))


def iter_fatbin(
    data: bytes | memoryview | Blob, name: str = "<fatbin>", offset: int = 0, size: int | None = None
) -> Iterator[FatbinEntry]:
    """The entries of the section at [offset, offset + size) of `data` (all of it by default).

    Entry offsets are relative to the section's start.
    """
    blob = data if isinstance(data, Blob) else BytesBlob(data)
    end = blob.size - offset if size is None else size
    pos = 0
    while pos < end:
        if blob.read_at(offset + pos, 1) == b"\x00":  # padding between or after containers
            nonzero = blob.find_nonzero(offset + pos, offset + end)
            if nonzero is None:
                return
            pos = nonzero - offset
        if end - pos < CONTAINER_HEADER_SIZE:
            raise AuditError(name, f"fatbin: truncated container header at offset {pos:#x}")
        magic, _version, hsize, body = _CONTAINER.unpack(blob.read_at(offset + pos, CONTAINER_HEADER_SIZE))
        if magic != FATBIN_MAGIC:
            raise AuditError(name, f"fatbin: bad magic {magic:#010x} at offset {pos:#x}")
        if hsize < CONTAINER_HEADER_SIZE:
            raise AuditError(name, f"fatbin: container header size {hsize} < 16 at offset {pos:#x}")
        stop = pos + hsize + body
        if stop > end:
            raise AuditError(
                name, f"fatbin: container at offset {pos:#x} runs to {stop:#x}, past the end ({end:#x})"
            )
        yield from _entries(blob, offset, pos + hsize, stop, name)
        pos = stop


def _entries(blob: Blob, base: int, pos: int, stop: int, name: str) -> Iterator[FatbinEntry]:
    while pos < stop:
        if stop - pos < ENTRY_MIN_HEADER_SIZE:
            raise AuditError(name, f"fatbin: truncated entry header at offset {pos:#x}")
        (kind_code, _u1, hsize, size, _csize, _opt, _vmin, _vmaj, sm, _no, _nl, flags, _z, usize) = (
            _ENTRY.unpack(blob.read_at(base + pos, ENTRY_MIN_HEADER_SIZE))
        )
        if hsize < ENTRY_MIN_HEADER_SIZE:
            raise AuditError(name, f"fatbin: entry header size {hsize} < 64 at offset {pos:#x}")
        nxt = pos + hsize + size
        if nxt > stop:
            raise AuditError(
                name, f"fatbin: entry at offset {pos:#x} runs to {nxt:#x}, past its container ({stop:#x})"
            )
        compression: Compression = "none"
        if flags & FLAG_ZSTD:
            compression = "zstd"
        elif flags & FLAG_LZ4:
            compression = "lz4"
        suffix = "a" if flags & FLAG_ARCH_A else "f" if flags & FLAG_ARCH_F else ""
        kind: Kind = "ptx" if kind_code == KIND_PTX else "cubin" if kind_code == KIND_CUBIN else "other"
        yield FatbinEntry(
            kind=kind,
            sm=sm,
            suffix=suffix,
            stored_size=size,
            uncompressed_size=(usize or None) if compression != "none" else size,
            compression=compression,
            offset=pos,
            header_size=hsize,
            flags=flags,
            kind_code=kind_code,
        )
        pos = nxt
