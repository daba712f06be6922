"""Builders for synthetic test inputs of the wheel audit: ELF objects, cubins, fatbins, wheels."""

from __future__ import annotations

import shutil
import struct
import subprocess
import zipfile
from pathlib import Path
from typing import BinaryIO

import pytest

EM_X86_64 = 62
EM_CUDA = 190
SHT_PROGBITS, SHT_STRTAB, SHT_DYNAMIC, SHT_NOTE = 1, 3, 6, 7
DT_NULL, DT_NEEDED, DT_SONAME, DT_RPATH, DT_RUNPATH = 0, 1, 14, 15, 29

Chunk = bytes | int
"""Bytes, or an int: that many zero bytes (written in pieces, never held whole in memory)."""

Section = tuple[str, int, bytes | tuple[Chunk, ...], str | None, int]
"""(name, sh_type, data, name of the sh_link section or None, sh_entsize)."""

ZERO_BLOCK = bytes(1 << 20)


def chunks_size(chunks: bytes | tuple[Chunk, ...] | list[Chunk]) -> int:
    if isinstance(chunks, bytes):
        return len(chunks)
    return sum(c if isinstance(c, int) else len(c) for c in chunks)


def write_chunks(out: BinaryIO, chunks: list[Chunk]) -> None:
    for chunk in chunks:
        if isinstance(chunk, bytes):
            out.write(chunk)
            continue
        left = chunk
        while left:
            out.write(ZERO_BLOCK[: min(left, len(ZERO_BLOCK))])
            left -= min(left, len(ZERO_BLOCK))


def build_elf(
    machine: int,
    sections: list[Section],
    *,
    e_flags: int = 0,
    osabi: int = 0,
    abi: int = 0,
    e_type: int = 3,
    elf_class: int = 64,
) -> bytes:
    """A little-endian ELF with the given sections (plus the null section and .shstrtab)."""
    parts = build_elf_chunks(
        machine, sections, e_flags=e_flags, osabi=osabi, abi=abi, e_type=e_type, elf_class=elf_class
    )
    return b"".join(c if isinstance(c, bytes) else bytes(c) for c in parts)


def build_elf_chunks(
    machine: int,
    sections: list[Section],
    *,
    e_flags: int = 0,
    osabi: int = 0,
    abi: int = 0,
    e_type: int = 3,
    elf_class: int = 64,
) -> list[Chunk]:
    """`build_elf` as chunks: a section's data may hold zero runs (ints) of any size."""
    names = [s[0] for s in sections] + [".shstrtab"]
    shstrtab = b"\x00"
    name_off = {}
    for n in names:
        name_off[n] = len(shstrtab)
        shstrtab += n.encode() + b"\x00"
    all_sections = [*sections, (".shstrtab", SHT_STRTAB, shstrtab, None, 0)]
    index = {s[0]: i + 1 for i, s in enumerate(all_sections)}
    ehsize, shentsize = (64, 64) if elf_class == 64 else (52, 40)
    body: list[Chunk] = []
    at = ehsize
    placed = []
    for _name, _type, data, _link, _ent in all_sections:
        if at % 8:
            body.append(bytes(-at % 8))
            at += -at % 8
        placed.append(at)
        body.extend([data] if isinstance(data, bytes) else data)
        at += chunks_size(data)
    if at % 8:
        body.append(bytes(-at % 8))
        at += -at % 8
    shoff = at
    table = bytearray(shentsize)  # the null section
    for (name, stype, data, link, ent), off in zip(all_sections, placed, strict=True):
        link_index = index[link] if link else 0
        size = chunks_size(data)
        if elf_class == 64:
            table += struct.pack("<IIQQQQIIQQ", name_off[name], stype, 0, 0, off, size, link_index, 0, 1, ent)
        else:
            table += struct.pack("<IIIIIIIIII", name_off[name], stype, 0, 0, off, size, link_index, 0, 1, ent)
    ident = b"\x7fELF" + bytes([2 if elf_class == 64 else 1, 1, 1, osabi, abi]) + bytes(7)
    shnum, shstrndx = len(all_sections) + 1, len(all_sections)
    if elf_class == 64:
        rest = struct.pack(
            "<HHIQQQIHHHHHH", e_type, machine, 1, 0, 0, shoff, e_flags, 64, 0, 0, 64, shnum, shstrndx
        )
    else:
        rest = struct.pack(
            "<HHIIIIIHHHHHH", e_type, machine, 1, 0, 0, shoff, e_flags, 52, 0, 0, 40, shnum, shstrndx
        )
    return [ident + rest, *body, bytes(table)]


def host_elf(
    needed: list[str],
    *,
    soname: str | None = None,
    rpath: str | None = None,
    runpath: str | None = None,
    fatbin: bytes | None = None,
) -> bytes:
    """An x86_64 shared object with a dynamic section and optionally a .nv_fatbin section."""
    parts = host_elf_chunks(needed, soname=soname, rpath=rpath, runpath=runpath, fatbin=fatbin)
    return b"".join(c if isinstance(c, bytes) else bytes(c) for c in parts)


def host_elf_chunks(
    needed: list[str],
    *,
    soname: str | None = None,
    rpath: str | None = None,
    runpath: str | None = None,
    fatbin: bytes | tuple[Chunk, ...] | None = None,
) -> list[Chunk]:
    """`host_elf` as chunks: the fatbin section may hold zero runs (ints) of any size."""
    dynstr = b"\x00"
    entries = []

    def add(tag: int, text: str) -> None:
        nonlocal dynstr
        entries.append((tag, len(dynstr)))
        dynstr += text.encode() + b"\x00"

    for lib in needed:
        add(DT_NEEDED, lib)
    if soname:
        add(DT_SONAME, soname)
    if rpath:
        add(DT_RPATH, rpath)
    if runpath:
        add(DT_RUNPATH, runpath)
    entries.append((DT_NULL, 0))
    dynamic = b"".join(struct.pack("<qQ", tag, val) for tag, val in entries)
    sections: list[Section] = [
        (".dynstr", SHT_STRTAB, dynstr, None, 0),
        (".dynamic", SHT_DYNAMIC, dynamic, ".dynstr", 16),
    ]
    if fatbin is not None:
        sections.append((".nv_fatbin", SHT_PROGBITS, fatbin, None, 0))
    return build_elf_chunks(EM_X86_64, sections)


def tkinfo_note(arch: str) -> bytes:
    """A .note.nv.tkinfo note as ptxas writes it, with `-arch <arch>` in its options."""
    strings = b"\x00ptxas\x00Cuda compilation tools, release 13.0\x00Build cuda_13.0\x00"
    options_at = len(strings)
    strings += f"-arch {arch} -m 64 ".encode() + b"\x00"
    desc = struct.pack("<6I", 2, 0, 1, 7, 7 + 37, options_at) + strings
    desc += bytes(-len(desc) % 4)
    name = b"NVIDIA Corp\x00"
    return struct.pack("<III", len(name), len(desc), 2000) + name + desc


def cubin(abi: int, e_flags: int, *, tkinfo: str | None = None, elf_class: int = 64) -> bytes:
    """A CUDA ELF with the given ABI version and e_flags, optionally with a tkinfo note."""
    sections: list[Section] = [(".text.kernel", SHT_PROGBITS, b"\x00" * 32, None, 0)]
    if tkinfo:
        sections.append((".note.nv.tkinfo", SHT_NOTE, tkinfo_note(tkinfo), None, 0))
    osabi = 0x41 if abi >= 8 else 0x33
    return build_elf(EM_CUDA, sections, e_flags=e_flags, osabi=osabi, abi=abi, e_type=2, elf_class=elf_class)


def fatbin_entry(
    kind: int,
    sm: int,
    *,
    flags: int = 0x11,
    payload: int = 64,
    header_size: int = 64,
    uncompressed: int = 0,
) -> bytes:
    """One fatbin entry: header (kind, header size, payload size, sm, flags, sizes) + payload."""
    head = fatbin_entry_header(
        kind, sm, flags=flags, payload=payload, header_size=header_size, uncompressed=uncompressed
    )
    return head + b"\xab" * payload


def fatbin_entry_header(
    kind: int,
    sm: int,
    *,
    flags: int = 0x11,
    payload: int = 64,
    header_size: int = 64,
    uncompressed: int = 0,
) -> bytes:
    """The header of a fatbin entry whose payload (`payload` bytes) follows it."""
    compressed = payload - 3 if flags & 0xA000 else 0
    head = struct.pack(
        "<HHIQIIHHIIIQQQ",
        kind,
        0x101,
        header_size,
        payload,
        compressed,
        0,
        7,
        1,
        sm,
        0,
        0,
        flags,
        0,
        uncompressed,
    )
    return head + bytes(header_size - len(head))


def fatbin_container(*entries: bytes) -> bytes:
    body = b"".join(entries)
    return struct.pack("<IHHQ", 0xBA55ED50, 1, 16, len(body)) + body


def write_wheel(path: Path, members: dict[str, bytes], *, stored: bool = False) -> Path:
    mode = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(path, "w", mode) as z:
        for name, data in members.items():
            z.writestr(zipfile.ZipInfo(name), data, compress_type=mode)
    return path


def demo_wheel(tmp_path: Path, **kw: object) -> Path:
    """A wheel with host objects (fatbin, CPython 3.10 tag), cubins and two unsafe member names."""
    fb = fatbin_container(
        fatbin_entry(2, 80, payload=1000),
        fatbin_entry(2, 90, flags=0x100011, payload=2000),
        fatbin_entry(1, 80, flags=0x2011, payload=300, header_size=80, uncompressed=900),
    )
    return write_wheel(
        tmp_path / "demo-1.0-cp310-abi3-manylinux2014_x86_64.whl",
        {
            "demo/__init__.py": b"",
            "demo/_ops.abi3.so": host_elf(["libcudart.so.12", "libc10.so"], fatbin=fb),
            "demo/_old.cpython-310-x86_64-linux-gnu.so": host_elf(["libnuma.so.1", "libc10.so"]),
            "demo/cubins/k1.cubin": cubin(8, 0x6006402, tkinfo="sm_100f"),
            "demo/cubins/k2.cubin": cubin(8, 0x1000670C),
            "../evil.so": host_elf([]),
            "/abs/evil.so": host_elf([]),
        },
        **kw,  # type: ignore[arg-type]
    )


def gcc(args: list[str], cwd: Path) -> None:
    """Run gcc in `cwd`; skip the test when there is no gcc."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed: cannot build shared objects")
    proc = subprocess.run(["gcc", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.fail(f"gcc {' '.join(args)} failed: {proc.stderr}")


def c_array(data: bytes) -> str:
    return ", ".join(str(b) for b in data)
