"""Stream a wheel's members without extracting anything to disk.

`WheelReader(path)` opens the archive (an `AuditError` if it is missing or not a zip) and
`members()` yields one `Member` per regular file. A member's first bytes (`head`) are cheap to read,
so callers can sniff the type (ELF magic, ...) and call `read()` only for the members they need.
`read()` returns the whole member in memory; callers keep at most one member's bytes alive at a
time (drop the reference before moving to the next member).

Unsafe or unreadable members are reported, never fatal for the wheel:
  * names that are absolute (`/x`, `C:/x`) or have a `..` component, or contain a NUL or a
    backslash, are skipped: `members()` does not yield them and `problems` gets one
    `AuditError` each;
  * a member whose data fails to decompress or whose CRC-32 does not match raises `AuditError`
    from `read()` (and from `head`); `members()` itself goes on with the next member.
Corruption is only detected in members that are read: the audit reads the ELF and cubin members,
not every file (that is what makes it about as fast as `unzip -t`).
"""

from __future__ import annotations

import re
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sglang_matrix.audit import AuditError

HEAD_SIZE = 64
"""Bytes `Member.head` holds: enough for an ELF64 header."""

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
    _head: bytes | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        """`wheel!member`, the name used in errors."""
        return f"{self._wheel}!{self.name}"

    @property
    def head(self) -> bytes:
        """The first `HEAD_SIZE` bytes (fewer for a smaller member)."""
        if self._head is None:
            try:
                with self._zip.open(self._info) as f:
                    self._head = f.read(HEAD_SIZE)
            except _READ_ERRORS as e:
                raise AuditError(self.label, f"corrupt member: {e}") from e
        return self._head

    def read(self) -> bytes:
        """The whole member, checked against its CRC-32."""
        try:
            with self._zip.open(self._info) as f:
                data = f.read()
        except _READ_ERRORS as e:
            raise AuditError(self.label, f"corrupt member: {e}") from e
        if len(data) != self.size:
            raise AuditError(self.label, f"corrupt member: {len(data)} bytes, header says {self.size}")
        return data


class WheelReader:
    """An open wheel (any zip archive). Use as a context manager or call `close()`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.name = self.path.name
        self.problems: list[AuditError] = []
        try:
            self._zip = zipfile.ZipFile(self.path)
        except FileNotFoundError as e:
            raise AuditError(str(path), "no such file") from e
        except IsADirectoryError as e:
            raise AuditError(str(path), "is a directory, not a wheel") from e
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as e:
            raise AuditError(str(path), f"not a zip archive ({e})") from e

    def __enter__(self) -> WheelReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._zip.close()

    def members(self) -> Iterator[Member]:
        """Every regular file with a safe name, in archive order; unsafe names go to `problems`."""
        for info in self._zip.infolist():
            if info.is_dir():
                continue
            reason = unsafe_name_reason(info.filename)
            if reason is not None:
                self.problems.append(AuditError(f"{self.name}!{info.filename}", f"{reason}: skipped"))
                continue
            yield Member(
                name=info.filename,
                size=info.file_size,
                compressed_size=info.compress_size,
                _zip=self._zip,
                _info=info,
                _wheel=self.name,
            )
