"""Stream a wheel's members without extracting anything to disk.

`WheelReader(path)` opens the archive (an `AuditError` if it is missing or not a zip) and
`members()` yields one `Member` per regular file. A member's first bytes (`head`) are cheap to read,
so callers can sniff the type (ELF magic, ...) and open only the members they need.

`Member.open_blob()` gives random access to a member (`blob.Blob`) after checking its CRC-32 in one
streaming pass, without holding a large member in memory:
  * a member up to `SPOOL_THRESHOLD` bytes is read into memory;
  * a larger STORED member is read in place, through a window over the wheel file;
  * a larger compressed member is inflated once into an anonymous temporary file, which is gone when
    the blob is closed (or the process ends). It lives in the cache directory
    (~/.cache/sglang-matrix/spool, or $SGLANG_MATRIX_CACHE/spool) beside the downloaded wheels, not in
    /tmp, which is RAM (tmpfs) on many systems; the system's temporary directory only when the cache
    directory cannot be created.
`Member.read()` returns the whole member in memory; it is for small members (METADATA).

Unsafe or unreadable members are reported, never fatal for the wheel:
  * names that are absolute (`/x`, `C:/x`) or have a `..` component, or contain a NUL or a
    backslash, are skipped: `members()` does not yield them and `problems` gets one
    `AuditError` each;
  * a member whose data fails to decompress or whose CRC-32 does not match raises `AuditError`
    from `read()`, `open_blob()` (and from `head`); `members()` itself goes on with the next member.
Corruption is only detected in members that are read: the audit reads the ELF and cubin members,
not every file (that is what makes it about as fast as `unzip -t`).
"""

from __future__ import annotations

import os
import re
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from sglang_matrix.audit import AuditError
from sglang_matrix.audit.blob import CHUNK, Blob, BytesBlob, FileBlob
from sglang_matrix.fsutil import cache_dir

HEAD_SIZE = 64
"""Bytes `Member.head` holds: enough for an ELF64 header."""

SPOOL_THRESHOLD = 16 << 20
"""Members up to this size are read into memory; larger ones are read in place or spooled."""

_LOCAL_HEADER = struct.Struct("<4s5H3I2H")
_LOCAL_MAGIC = b"PK\x03\x04"
_UTF8_FLAG = 0x800
# Encrypted, compressed patched data, strong encryption: left to zipfile (it refuses them).
_ZIPFILE_ONLY_FLAGS = 0x01 | 0x20 | 0x40
_DIRECT = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
_HEAD_READ = 4096  # compressed bytes read for `head`

_DRIVE = re.compile(r"^[A-Za-z]:")
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, RuntimeError)


def unsafe_name_reason(name: str) -> str | None:
    """Why a member name is unsafe to extract (None when it is fine)."""
    if "\x00" in name:
        return "member name contains a NUL byte"
    if "\\" in name:
        return "member name contains a backslash"
    if name.startswith("/") or _DRIVE.match(name):
        return "member name is an absolute path"
    if any(part == ".." for part in name.split("/")):
        return "member name has a '..' component"
    return None


@dataclass(slots=True)
class Member:
    """One regular file inside the wheel; its data is read on demand."""

    name: str
    size: int
    compressed_size: int
    _zip: zipfile.ZipFile = field(repr=False)
    _info: zipfile.ZipInfo = field(repr=False)
    _wheel: str = field(repr=False)
    _file: BinaryIO = field(repr=False)
    _head: bytes | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        """`wheel!member`, the name used in errors."""
        return f"{self._wheel}!{self.name}"

    @property
    def head(self) -> bytes:
        """The first `HEAD_SIZE` bytes (fewer for a smaller member; a member that small is CRC-checked)."""
        if self._head is None:
            if self.size <= HEAD_SIZE:
                self._head = self.read()
            else:
                chunks = self._chunks(HEAD_SIZE, _HEAD_READ)
                try:
                    self._head = next(chunks, b"")[:HEAD_SIZE]
                except _READ_ERRORS as e:
                    raise AuditError(self.label, f"corrupt member: {e}") from e
                finally:
                    chunks.close()
        return self._head

    def read(self) -> bytes:
        """The whole member, checked against its CRC-32."""
        try:
            data = b"".join(self._chunks(max(self.size, 1), max(self.compressed_size, 1)))
        except _READ_ERRORS as e:
            raise AuditError(self.label, f"corrupt member: {e}") from e
        if len(data) != self.size:
            raise AuditError(self.label, f"corrupt member: {len(data)} bytes, header says {self.size}")
        return data

    @contextmanager
    def open_blob(self, threshold: int | None = None) -> Iterator[Blob]:
        """The member as a `Blob`, checked against its CRC-32 first (module docstring: where it lives).

        `threshold` defaults to `SPOOL_THRESHOLD`."""
        if self.size <= (SPOOL_THRESHOLD if threshold is None else threshold):
            yield BytesBlob(self.read())
        elif self._info.compress_type == zipfile.ZIP_STORED:
            self._copy(None)  # the CRC-32 pass; the data is then read in place
            yield FileBlob(self._file.fileno(), self._data_offset(), self.size)
        else:
            with self._spool_file() as spool:
                self._copy(spool)
                yield FileBlob(spool.fileno(), 0, self.size)

    def _spool_file(self) -> BinaryIO:
        """An unnamed temporary file in the spool directory."""
        try:
            return tempfile.TemporaryFile(prefix="sglang-matrix-audit-", dir=_spool_dir())
        except OSError as e:
            raise AuditError(self.label, f"cannot spool to a temporary file: {e}") from e

    def _copy(self, out: BinaryIO | None) -> None:
        """Read the member once, in chunks (checking its CRC-32), writing it to `out` if given."""
        copied = 0
        try:
            for chunk in self._chunks(CHUNK, CHUNK):
                copied += len(chunk)
                if out is not None:
                    try:
                        out.write(chunk)
                    except OSError as e:
                        raise AuditError(self.label, f"cannot spool to a temporary file: {e}") from e
        except _READ_ERRORS as e:
            raise AuditError(self.label, f"corrupt member: {e}") from e
        if copied != self.size:
            raise AuditError(self.label, f"corrupt member: {copied} bytes, header says {self.size}")
        if out is not None:
            try:
                out.flush()
            except OSError as e:
                raise AuditError(self.label, f"cannot spool to a temporary file: {e}") from e

    def _chunks(self, out_size: int, in_size: int) -> Iterator[bytes]:
        """The member's bytes, at most `out_size` at a time, its CRC-32 checked once all are read.

        STORED and DEFLATED members are read here with pread and zlib, as zipfile reads them (the same
        checks, and the same limits: at most `file_size` bytes, the CRC-32 over them) but without its
        per-call overhead; anything else (other methods, encryption) goes through zipfile itself.
        """
        info = self._info
        if info.compress_type not in _DIRECT or info.flag_bits & _ZIPFILE_ONLY_FLAGS:
            with self._zip.open(info) as f:
                yield from iter(lambda: f.read(out_size), b"")
            return
        fd, pos, left_in, left_out = (
            self._file.fileno(),
            self._data_offset(),
            info.compress_size,
            info.file_size,
        )
        inflate = zlib.decompressobj(-15) if info.compress_type == zipfile.ZIP_DEFLATED else None
        crc, pending = 0, b""
        while left_out > 0:
            if not pending:
                if left_in <= 0 or (inflate is not None and inflate.eof):
                    break
                pending = os.pread(fd, min(in_size if inflate else out_size, left_in), pos)
                if not pending:
                    raise EOFError("the wheel ends inside this member")
                pos += len(pending)
                left_in -= len(pending)
            if inflate is None:
                data, pending = pending, b""
            else:
                data = inflate.decompress(pending, out_size)
                pending = b"" if inflate.eof else inflate.unconsumed_tail
            data = data[:left_out]
            left_out -= len(data)
            crc = zlib.crc32(data, crc)
            if data:
                yield data
        if crc != info.CRC:
            raise zipfile.BadZipFile(f"Bad CRC-32 for file {info.filename!r}")

    def _data_offset(self) -> int:
        """Where the member's data starts in the wheel file, after its local header (checked as zipfile
        checks it)."""
        info = self._info
        raw = os.pread(self._file.fileno(), _LOCAL_HEADER.size, info.header_offset)
        if len(raw) < _LOCAL_HEADER.size:
            raise AuditError(self.label, "corrupt member: Truncated file header")
        magic, _version, flags, *_rest, name_len, extra_len = _LOCAL_HEADER.unpack(raw)
        if magic != _LOCAL_MAGIC:
            raise AuditError(self.label, "corrupt member: Bad magic number for file header")
        start = info.header_offset + _LOCAL_HEADER.size
        name = os.pread(self._file.fileno(), name_len, start)
        try:
            text = name.decode("utf-8" if flags & _UTF8_FLAG else "cp437")
        except UnicodeDecodeError as e:
            raise AuditError(self.label, f"corrupt member: undecodable name in its header: {e}") from e
        if text != info.orig_filename:
            raise AuditError(
                self.label,
                f"corrupt member: File name in directory {info.orig_filename!r} and header {name!r} differ.",
            )
        start += name_len + extra_len
        stored = (
            info.compress_size
            if info.compress_type != zipfile.ZIP_STORED
            else max(info.compress_size, self.size)
        )
        if start + stored > os.fstat(self._file.fileno()).st_size:
            raise AuditError(self.label, "corrupt member: its data runs past the end of the wheel")
        return start


def _spool_dir() -> str | None:
    """Where large compressed members are inflated to (None: the system's temporary directory)."""
    path = cache_dir("spool")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return str(path)


class WheelReader:
    """An open wheel (any zip archive). Use as a context manager or call `close()`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.name = self.path.name
        self.problems: list[AuditError] = []
        try:
            self._file: BinaryIO = self.path.open("rb")
        except FileNotFoundError as e:
            raise AuditError(str(path), "no such file") from e
        except IsADirectoryError as e:
            raise AuditError(str(path), "is a directory, not a wheel") from e
        except OSError as e:
            raise AuditError(str(path), f"cannot open: {e}") from e
        try:
            self._zip = zipfile.ZipFile(self._file)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as e:
            self._file.close()
            raise AuditError(str(path), f"not a zip archive ({e})") from e

    def __enter__(self) -> WheelReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._zip.close()
        self._file.close()

    def members(self) -> Iterator[Member]:
        """Every regular file with a safe name, in archive order; unsafe names go to `problems`."""
        for info in self._zip.infolist():
            if info.is_dir():
                continue
            reason = unsafe_name_reason(info.filename)
            if reason is not None:
                self.problems.append(AuditError(f"{self.name}!{info.filename}", f"{reason}: skipped"))
                continue
            member = Member(
                name=info.filename,
                size=info.file_size,
                compressed_size=info.compress_size,
                _zip=self._zip,
                _info=info,
                _wheel=self.name,
                _file=self._file,
            )
            yield member
