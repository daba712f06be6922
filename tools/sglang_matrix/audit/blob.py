"""Random access to one member's bytes without holding them in memory.

The parsers (`elf`, `fatbin`, `cubin`) read only what they need through a `Blob`: `read_at` for a
header, `find_nonzero` to skip padding, `stream()` for pyelftools. A `Blob` is either bytes in memory
(`BytesBlob`: small members, tests) or a byte range of an open file (`FileBlob`: a stored member read
in place inside the wheel, or a compressed member spooled to a temporary file), read with `os.pread`,
so what a parse keeps is bounded by what it asks for, not by the member's size.
"""

from __future__ import annotations

import io
import os
import re
from typing import BinaryIO

CHUNK = 1 << 20
"""Bytes read at a time when scanning (`find_nonzero`) or copying."""

_NONZERO = re.compile(rb"[^\x00]")


class Blob:
    """`size` bytes that can be read at any offset."""

    size: int

    def read_at(self, offset: int, length: int) -> bytes:
        """Up to `length` bytes from `offset` (fewer only at the end; b"" past it)."""
        raise NotImplementedError

    def find_nonzero(self, start: int, end: int) -> int | None:
        """The offset of the first non-zero byte in [start, end), or None."""
        pos = start
        while pos < end:
            chunk = self.read_at(pos, min(CHUNK, end - pos))
            if not chunk:
                return None
            m = _NONZERO.search(chunk)
            if m:
                return pos + m.start()
            pos += len(chunk)
        return None

    def stream(self) -> BinaryIO:
        """A seekable, read-only file object over the whole blob (for pyelftools)."""
        raise NotImplementedError


class BytesBlob(Blob):
    """Bytes held in memory (a small member, or a test's data)."""

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self._bytes = data if isinstance(data, bytes) else bytes(data)
        self.view = memoryview(self._bytes)
        self.size = len(self._bytes)

    def read_at(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise ValueError("negative offset or length")
        return bytes(self.view[offset : offset + length])

    def find_nonzero(self, start: int, end: int) -> int | None:
        m = _NONZERO.search(self.view, start, min(end, self.size))
        return None if m is None else m.start()

    def stream(self) -> BinaryIO:
        return io.BytesIO(self._bytes)  # shares the bytes object's buffer: no copy


class FileBlob(Blob):
    """`size` bytes of an open file, starting at `base` (read with pread: no shared file position)."""

    def __init__(self, fileno: int, base: int, size: int) -> None:
        self._fd = fileno
        self._base = base
        self.size = size

    def read_at(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise ValueError("negative offset or length")
        length = max(0, min(length, self.size - offset))
        out = bytearray()
        while len(out) < length:
            got = os.pread(self._fd, length - len(out), self._base + offset + len(out))
            if not got:
                break  # the file is shorter than it said: callers see a short read
            out += got
        return bytes(out)

    def stream(self) -> BinaryIO:
        return io.BufferedReader(_Window(self), buffer_size=1 << 16)  # type: ignore[return-value]


class _Window(io.RawIOBase):
    """A seekable raw stream over a `FileBlob`."""

    def __init__(self, blob: FileBlob) -> None:
        self._blob = blob
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self._blob.size + offset
        else:
            raise ValueError(f"bad whence {whence}")
        if pos < 0:
            raise OSError("negative seek position")
        self._pos = pos
        return pos

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._blob.read_at(self._pos, len(buffer))
        n = len(data)
        memoryview(buffer).cast("B")[:n] = data
        self._pos += n
        return n
