"""Nix machines files (the format of nix.conf's `builders`), read as Nix reads them.

Each line is URI SYSTEMS SSH-KEY MAX-JOBS SPEED-FACTOR SUPPORTED-FEATURES MANDATORY-FEATURES HOST-KEY, `-` for
empty, trailing fields optional, `#` starts a comment, `;` separates machines too. What `plan --builders`
accepts here it prints back into `nix build --builders '...'`, so it accepts what Nix accepts and no more
(src/libstore/machines.cc and src/libutil/strings.cc at Nix 2.26): Python's int() and float() would also take
"1_0", " 12", Arabic-Indic digits, "inf" and numbers of any size.
"""

from __future__ import annotations

import math
import platform
import re
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from .errors import UserError

MACHINE_FIELDS = "URI SYSTEMS SSH-KEY MAX-JOBS SPEED-FACTOR SUPPORTED-FEATURES MANDATORY-FEATURES HOST-KEY"
# How Nix reads a machines file (src/libstore/machines.cc, src/libutil/strings.cc at 2.26): fields split
# at tokenizeString's whitespace; MAX-JOBS by string2Int<unsigned int>, SPEED-FACTOR string2Float<float>.
NIX_WHITESPACE = " \t\n\r"
UINT_MAX = 2**32 - 1
NIX_UINT_RE = re.compile(r"\A\+?[0-9]+\Z")
NIX_FLOAT_RE = re.compile(r"\A[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")


@dataclass(frozen=True)
class Builder:
    uri: str
    systems: tuple[str, ...]
    ssh_key: str
    max_jobs: int
    speed: float
    supported: tuple[str, ...]
    mandatory: tuple[str, ...]
    host_key: str
    where: str  # FILE:LINE
    line: str  # the machine's specification, as --builders takes it

    @property
    def features(self) -> set[str]:
        # Nix: mandatory features count as supported too.
        return set(self.supported) | set(self.mandatory)


def local_system() -> str:
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(platform.machine().lower(), platform.machine())
    kernel = "darwin" if sys.platform == "darwin" else "linux"
    return f"{machine}-{kernel}"


def _list(text: str) -> tuple[str, ...]:
    return () if text == "-" else tuple(p for p in text.split(",") if p)


def nix_uint(text: str) -> int | None:
    """An unsigned int as Nix reads one (string2Int<unsigned int>, i.e. boost::lexical_cast): an optional
    "+", ASCII digits, at most 2^32-1; None otherwise (Python's int() would also take "1_0", " 12",
    Arabic-Indic digits and any size)."""
    if not NIX_UINT_RE.match(text) or len(text.lstrip("+").lstrip("0")) > len(str(UINT_MAX)):
        return None
    value = int(text)
    return value if value <= UINT_MAX else None


def nix_float(text: str) -> float | None:
    """A decimal number Nix's string2Float<float> reads, and that fits a 32-bit float without becoming
    infinite; None otherwise ("inf", "nan", "1_0", "1e39" and Python's other extras included)."""
    if not NIX_FLOAT_RE.match(text):
        return None
    value = float(text)
    try:
        single = struct.unpack("f", struct.pack("f", value))[0]
    except OverflowError:
        return None
    return value if math.isfinite(single) else None


def _machine_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, machine specification) as Nix splits a machines file (machines.cc expandBuilderLines):
    at newlines and ';', each piece trimmed and cut at its first '#'."""
    for lineno, raw in enumerate(text.split("\n"), 1):
        for piece in raw.split(";"):
            piece = piece.strip(NIX_WHITESPACE).split("#", 1)[0]
            if piece:
                yield lineno, piece


class NixUInt(click.ParamType):
    """A command-line count as Nix reads --cores and --max-jobs: ASCII digits, 1 to 2^32-1."""

    name = "integer"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        number = value if isinstance(value, int) and not isinstance(value, bool) else nix_uint(str(value))
        if number is None or not 1 <= number <= UINT_MAX:
            self.fail(f"{value!r}: a positive integer of ASCII digits, at most {UINT_MAX}", param, ctx)
        return number


def parse_machines(text: str, file: str, default_system: str | None = None) -> list[Builder]:
    """Parse a Nix machines file as Nix does; every problem is a one-line UserError naming FILE:LINE."""
    builders: list[Builder] = []
    for lineno, spec_text in _machine_lines(text):
        where = f"{file}:{lineno}"
        parts = [p for p in re.split(f"[{NIX_WHITESPACE}]+", spec_text) if p]
        if not all(part.isprintable() for part in parts):
            raise UserError(f"{where}: {spec_text!r}: control characters in a machine specification")
        if not parts:
            continue
        if parts[0].startswith("@"):
            raise UserError(
                f"{where}: {parts[0]!r}: included machine files are not supported; list the machines here"
            )
        if len(parts) > 8:
            raise UserError(f"{where}: {len(parts)} fields, at most 8 ({MACHINE_FIELDS})")
        given = " ".join(parts)
        parts += ["-"] * (8 - len(parts))
        uri, systems, ssh_key, max_jobs_text, speed_text, supported, mandatory, host_key = parts
        if uri == "-":
            raise UserError(f"{where}: the machine's URI (first field) is missing")
        systems_list = _list(systems) or ((default_system or local_system()),)
        for system in systems_list:
            if not re.fullmatch(r"[a-z0-9_]+-[a-z0-9_]+", system):
                raise UserError(f"{where}: system {system!r} is not a Nix system such as x86_64-linux")
        max_jobs = 1 if max_jobs_text == "-" else nix_uint(max_jobs_text)
        if max_jobs is None:
            raise UserError(
                f"{where}: max-jobs {max_jobs_text!r} (field 4) must be a non-negative integer "
                f"(ASCII digits, at most {UINT_MAX}, as Nix reads it)"
            )
        speed = 1.0 if speed_text == "-" else nix_float(speed_text)
        # A positive speed, also as the 32-bit float Nix keeps: 1e-320 would be 0 there (and 1/speed
        # infinite here); Nix's own reading of 0 as "1" is not followed: 0 is an error.
        if speed is None or not struct.unpack("f", struct.pack("f", speed))[0] > 0:
            raise UserError(
                f"{where}: speed factor {speed_text!r} (field 5) must be a positive number "
                "(a finite decimal that a 32-bit float holds, as Nix reads it)"
            )
        builders.append(
            Builder(
                uri=uri,
                systems=systems_list,
                ssh_key=ssh_key,
                max_jobs=max_jobs,
                speed=speed,
                supported=_list(supported),
                mandatory=_list(mandatory),
                host_key=host_key,
                where=where,
                line=given,
            )
        )
    if not builders:
        raise UserError(f"{file}: no machines listed")
    return builders


def read_machines(path: Path, default_system: str | None = None) -> list[Builder]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: no such machines file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: cannot read: {err}") from None
    return parse_machines(text, str(path), default_system)
