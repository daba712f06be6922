"""Parsers of the wheel audit: zip streaming, ELF, fatbin, cubin, GPU code and shared libraries."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from audit_fixtures import (
    c_array,
    cubin,
    demo_wheel,
    fatbin_container,
    fatbin_entry,
    gcc,
    host_elf,
    write_wheel,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sglang_matrix.audit import AuditError
from sglang_matrix.audit.blob import BytesBlob, FileBlob
from sglang_matrix.audit.cubin import is_cubin, parse_cubin
from sglang_matrix.audit.elf import cpython_tag, is_elf, parse_elf
from sglang_matrix.audit.fatbin import parse_fatbin
from sglang_matrix.audit.gpucode import audit_wheel, classify, parse_capability, runs_on
from sglang_matrix.audit.sharedlibs import PythonTarget, abi3_minimum, audit_shared_libs
from sglang_matrix.audit.wheelzip import WheelReader, unsafe_name_reason

# --- fatbin -------------------------------------------------------------------------------------

MIXED_FATBIN = fatbin_container(
    fatbin_entry(2, 80, payload=128),
    fatbin_entry(2, 90, flags=0x100011, payload=64),  # sm_90a
    fatbin_entry(2, 90, flags=0x102011, payload=48, uncompressed=400),  # sm_90a, LZ4
    fatbin_entry(2, 100, flags=0x1100011, payload=96, header_size=96),  # ABI-8 header, sm_100a
    fatbin_entry(2, 100, flags=0x1208011, payload=32, header_size=96, uncompressed=300),  # sm_100f, zstd
    fatbin_entry(1, 80, flags=0x2011, payload=40, header_size=80, uncompressed=1000),  # compute_80, LZ4
) + fatbin_container(fatbin_entry(1, 90, flags=0x11, payload=24, header_size=80))


def test_fatbin_entries_of_several_containers() -> None:
    entries = parse_fatbin(MIXED_FATBIN)
    got = [(e.kind, e.sm, e.suffix, e.stored_size, e.uncompressed_size, e.compression) for e in entries]
    assert got == [
        ("cubin", 80, "", 128, 128, "none"),
        ("cubin", 90, "a", 64, 64, "none"),
        ("cubin", 90, "a", 48, 400, "lz4"),
        ("cubin", 100, "a", 96, 96, "none"),
        ("cubin", 100, "f", 32, 300, "zstd"),
        ("ptx", 80, "", 40, 1000, "lz4"),
        ("ptx", 90, "", 24, 24, "none"),
    ]
    assert [e.target for e in entries][-2:] == ["compute_80", "compute_90"]


def test_fatbin_padding_between_containers_is_skipped() -> None:
    one = fatbin_container(fatbin_entry(2, 86))
    assert [e.sm for e in parse_fatbin(one + bytes(8) + one + bytes(5))] == [86, 86]


def test_fatbin_unknown_kind_is_other() -> None:
    (entry,) = parse_fatbin(fatbin_container(fatbin_entry(8, 90)))
    assert (entry.kind, entry.kind_code) == ("other", 8)


@pytest.mark.parametrize(
    ("blob", "needle"),
    [
        (b"\x01\x02\x03\x04" + bytes(12), "bad magic 0x04030201 at offset 0x0"),
        (
            fatbin_container(fatbin_entry(2, 90)) + b"\x50\xed\x55\xba\x01\x00",
            "truncated container header at",
        ),
        (struct.pack("<IHHQ", 0xBA55ED50, 1, 16, 1000) + bytes(64), "runs to 0x3f8, past the end"),
        (struct.pack("<IHHQ", 0xBA55ED50, 1, 8, 0), "container header size 8 < 16 at offset 0x0"),
        (fatbin_container(fatbin_entry(2, 90, header_size=64)[:40]), "truncated entry header at offset 0x10"),
    ],
)
def test_fatbin_corrupt_header_names_the_offset(blob: bytes, needle: str) -> None:
    with pytest.raises(AuditError, match="fatbin: ") as err:
        parse_fatbin(blob, "x.so")
    assert needle in str(err.value)
    assert err.value.file == "x.so"


def test_fatbin_entry_past_its_container() -> None:
    entry = bytearray(fatbin_entry(2, 90, payload=16))
    struct.pack_into("<Q", entry, 8, 4096)  # payload size beyond the container
    with pytest.raises(AuditError, match="entry at offset 0x10 runs to"):
        parse_fatbin(fatbin_container(bytes(entry)))


def test_fatbin_entry_header_too_small() -> None:
    entry = bytearray(fatbin_entry(2, 90))
    struct.pack_into("<I", entry, 4, 8)
    with pytest.raises(AuditError, match="entry header size 8 < 64 at offset 0x10"):
        parse_fatbin(fatbin_container(bytes(entry)))


# --- cubin --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("blob", "target", "source"),
    [
        (cubin(7, 0x500550), "sm_80", "e_flags"),  # ABI 7: bits 0-7
        (cubin(7, 0x5A0D5A), "sm_90a", "e_flags"),  # ABI 7: 0x800 marks "a"
        (cubin(7, 0x590559, elf_class=32), "sm_89", "e_flags"),
        (cubin(8, 0x600640A, tkinfo="sm_100a"), "sm_100a", "tkinfo"),  # ABI 8: bits 8-15, 0x8 = "a"
        (cubin(8, 0x1000670C), "sm_103a", "e_flags"),
        (cubin(8, 0x6007802), "sm_120", "e_flags"),
        (cubin(8, 0x6006402, tkinfo="sm_100f"), "sm_100f", "tkinfo"),  # "f" only in the note
        (cubin(8, 0x6006702, tkinfo="sm_103a"), "sm_103a", "tkinfo"),  # CUDA 13: no "a" bit
        (cubin(8, 0x6006402, tkinfo="sm_90"), "sm_100", "e_flags"),  # disagreeing note: e_flags win
        (cubin(9, 0x12345678, tkinfo="sm_110f"), "sm_110f", "tkinfo"),  # unknown ABI, note decides
    ],
)
def test_cubin_targets(blob: bytes, target: str, source: str) -> None:
    assert is_cubin(blob)
    info = parse_cubin(blob, "k.cubin")
    assert (info.target, info.source, info.size) == (target, source, len(blob))


def test_cubin_rejects_host_elf_and_garbage() -> None:
    with pytest.raises(AuditError, match="not a CUDA ELF"):
        parse_cubin(host_elf(["libc.so.6"]))
    with pytest.raises(AuditError, match="not an ELF"):
        parse_cubin(b"PK\x03\x04" + bytes(60))
    with pytest.raises(AuditError, match="unknown CUDA ELF ABI version 9"):
        parse_cubin(cubin(9, 0x6400))
    with pytest.raises(AuditError, match="section table"):
        parse_cubin(cubin(8, 0x6006402, tkinfo="sm_100f")[:-10])
    assert not is_cubin(host_elf([]))


# --- ELF ----------------------------------------------------------------------------------------


def test_elf_dynamic_facts_and_fatbin() -> None:
    fb = fatbin_container(fatbin_entry(2, 90))
    blob = host_elf(
        ["libfoo.so.1", "libm.so.6"], soname="libx.so.2", rpath="/a:/b", runpath="$ORIGIN", fatbin=fb
    )
    info = parse_elf(blob, "pkg/libx.so")
    assert info.needed == ("libfoo.so.1", "libm.so.6")
    assert (info.soname, info.rpath, info.runpath) == ("libx.so.2", "/a:/b", "$ORIGIN")
    assert (info.elf_class, info.machine, info.elf_type, info.has_dynamic) == (
        64,
        "EM_X86_64",
        "ET_DYN",
        True,
    )
    assert not info.is_cpython_extension
    (section,) = info.fatbins
    assert section.name == ".nv_fatbin" and section.size == len(fb)
    assert section.data is not None and bytes(section.data) == fb
    assert blob[section.offset : section.offset + section.size] == fb


@pytest.mark.parametrize(
    ("name", "tag"),
    [
        ("pkg/_m.cpython-310-x86_64-linux-gnu.so", "3.10"),
        ("_m.cpython-313t-aarch64-linux-gnu.so", "3.13t"),
        ("sgl_kernel/flash_ops.abi3.so", "abi3"),
        ("lib/mscclpp.so.0.6.0", None),
        ("libfoo.so", None),
    ],
)
def test_cpython_tag_from_name(name: str, tag: str | None) -> None:
    got = cpython_tag(name)
    assert (str(got) if got else None) == tag


def test_elf_not_elf_and_truncated() -> None:
    blob = host_elf(["libfoo.so.1"])
    assert not is_elf(b"\x7fEL")
    with pytest.raises(AuditError, match="not an ELF file"):
        parse_elf(b"#!/bin/sh\n", "script")
    for cut in (3, 20, 63, 100, len(blob) // 2, len(blob) - 1):
        with pytest.raises(AuditError, match=r"x\.so: "):
            parse_elf(blob[:cut], "x.so")


def test_elf_without_dynamic_section() -> None:
    info = parse_elf(cubin(7, 0x500550), "k.cubin")
    assert info.needed == () and not info.has_dynamic and info.is_cuda


def test_gcc_shared_objects(tmp_path: Path) -> None:
    fb = fatbin_container(fatbin_entry(2, 86, payload=256), fatbin_entry(2, 90, flags=0x100011))
    (tmp_path / "dep.c").write_text("int dep(int x) { return x + 1; }\n")
    (tmp_path / "main.c").write_text(
        "#include <math.h>\nint dep(int);\n"
        f'__attribute__((section(".nv_fatbin"), used)) static const unsigned char fb[] = {{{c_array(fb)}}};\n'
        "double f(double x) { return cos(x) + dep((int)x); }\n"
    )
    gcc(["-shared", "-fPIC", "-o", "libdep.so", "-Wl,-soname,libdep.so.1", "dep.c"], tmp_path)
    link = [
        "-shared",
        "-fPIC",
        "main.c",
        "-L.",
        "-ldep",
        "-lm",
        "-Wl,-soname,libmain.so.2",
        "-Wl,-rpath,/opt/x",
    ]
    gcc([*link, "-o", "old.so", "-Wl,--disable-new-dtags"], tmp_path)
    gcc([*link, "-o", "new.so", "-Wl,--enable-new-dtags"], tmp_path)
    gcc(["-c", "-fPIC", "-o", "dep.o", "dep.c"], tmp_path)

    dep = parse_elf((tmp_path / "libdep.so").read_bytes(), "libdep.so")
    assert dep.soname == "libdep.so.1" and dep.fatbins == ()
    old = parse_elf((tmp_path / "old.so").read_bytes(), "old.so")
    assert {"libdep.so.1", "libm.so.6"} <= set(old.needed)
    assert (old.soname, old.rpath, old.runpath) == ("libmain.so.2", "/opt/x", None)
    new = parse_elf((tmp_path / "new.so").read_bytes(), "new.so")
    assert (new.rpath, new.runpath) == (None, "/opt/x")
    (section,) = old.fatbins
    assert section.data is not None and bytes(section.data) == fb
    assert [(e.sm, e.suffix) for e in parse_fatbin(section.data)] == [(86, ""), (90, "a")]
    obj = parse_elf((tmp_path / "dep.o").read_bytes(), "dep.o")
    assert (obj.elf_type, obj.has_dynamic, obj.needed) == ("ET_REL", False, ())

    so = (tmp_path / "old.so").read_bytes()
    wheel = write_wheel(
        tmp_path / "demo-1.0-cp310-abi3-linux_x86_64.whl",
        {"demo/_ext.cpython-310-x86_64-linux-gnu.so": so, "demo/core.abi3.so": so, "demo/libdep.so": b"x"},
    )
    libs = audit_shared_libs(wheel)
    assert [p.path for p in libs.cannot_load("3.12")] == ["demo/_ext.cpython-310-x86_64-linux-gnu.so"]
    assert {p.path for p in libs.cannot_load("3.9")} == {
        "demo/_ext.cpython-310-x86_64-linux-gnu.so",
        "demo/core.abi3.so",
    }
    assert libs.needed_counts()["libdep.so.1"] == 2


# --- wheels -------------------------------------------------------------------------------------


def test_audit_wheel(tmp_path: Path) -> None:
    audit = audit_wheel(demo_wheel(tmp_path))
    gpu, libs = audit.gpu, audit.libs
    assert sorted(str(p) for p in gpu.problems) == [
        "demo-1.0-cp310-abi3-manylinux2014_x86_64.whl!../evil.so: member name has a '..' component: skipped",
        "demo-1.0-cp310-abi3-manylinux2014_x86_64.whl!/abs/evil.so: member name is an absolute path: skipped",
    ]
    k1, k2 = len(cubin(8, 0x6006402, tkinfo="sm_100f")), len(cubin(8, 0x1000670C))
    assert gpu.bytes_by_target() == {
        (80, "", "cubin"): 1000,
        (80, "", "ptx"): 300,
        (90, "a", "cubin"): 2000,
        (100, "f", "cubin"): k1,
        (103, "a", "cubin"): k2,
    }
    assert gpu.total_bytes == 3300 + k1 + k2
    assert gpu.uncompressed_bytes == 3900 + k1 + k2
    assert [o.path for o in gpu.objects] == [
        "demo/_ops.abi3.so",
        "demo/cubins/k1.cubin",
        "demo/cubins/k2.cubin",
    ]

    assert [o.name for o in libs.objects] == [
        "demo/_ops.abi3.so",
        "demo/_old.cpython-310-x86_64-linux-gnu.so",
    ]
    assert libs.needed_counts() == {"libcudart.so.12": 1, "libc10.so": 2, "libnuma.so.1": 1}
    assert libs.needed_by()["libc10.so"] == ["demo/_ops.abi3.so", "demo/_old.cpython-310-x86_64-linux-gnu.so"]
    bad = libs.cannot_load("3.12")
    assert [(p.path, p.reason) for p in bad] == [
        (
            "demo/_old.cpython-310-x86_64-linux-gnu.so",
            "extension module for CPython 3.10 only, target is 3.12",
        )
    ]
    assert len(libs.cannot_load("3.10", machine="aarch64")) == 2
    assert libs.cannot_load("3.10") == []

    h100 = gpu.classify(["9.0"])
    assert h100.runnable_bytes == 300 + 2000  # sm_80 cubins do not run on 9.0; compute_80 PTX does
    assert h100.dead_bytes == 1000 + k1 + k2
    b300 = gpu.classify(["10.3"])
    assert b300.runnable_bytes == 300 + k1 + k2  # PTX JIT + family cubin + sm_103a
    assert b300.per_object["demo/_ops.abi3.so"] == (300, 3000)


def test_corrupt_member_is_reported_not_fatal(tmp_path: Path) -> None:
    elf = host_elf(["libfoo.so.1"], fatbin=fatbin_container(fatbin_entry(2, 90, payload=512)))
    path = write_wheel(tmp_path / "c-1.0-py3-none-any.whl", {"a/x.so": elf, "a/y.so": elf}, stored=True)
    raw = bytearray(path.read_bytes())
    first = raw.find(elf)
    raw[first + len(elf) - 100] ^= 0xFF  # inside the first member's data: CRC no longer matches
    path.write_bytes(bytes(raw))
    audit = audit_wheel(path)
    (problem,) = audit.gpu.problems
    assert problem.file == "c-1.0-py3-none-any.whl!a/x.so" and "corrupt member" in problem.message
    assert [o.name for o in audit.libs.objects] == ["a/y.so"]


def test_corrupt_deflate_stream(tmp_path: Path) -> None:
    elf = host_elf(["libfoo.so.1"]) * 20
    path = write_wheel(tmp_path / "d-1.0-py3-none-any.whl", {"a/x.so": elf})
    raw = bytearray(path.read_bytes())
    start = 30 + len("a/x.so")
    for i in range(start + 10, start + 40):
        raw[i] ^= 0x5A
    path.write_bytes(bytes(raw))
    audit = audit_wheel(path)
    assert len(audit.gpu.problems) == 1 and audit.gpu.problems[0].file.endswith("!a/x.so")


def test_corrupt_fatbin_inside_object_keeps_library_facts(tmp_path: Path) -> None:
    elf = host_elf(["libfoo.so.1"], fatbin=b"\x01\x02\x03\x04" + bytes(60))
    audit = audit_wheel(write_wheel(tmp_path / "e-1.0-py3-none-any.whl", {"x.so": elf}))
    (problem,) = audit.gpu.problems
    assert "x.so:.nv_fatbin" in problem.file and "bad magic" in problem.message
    assert [o.name for o in audit.libs.objects] == ["x.so"]


def test_not_a_zip_and_missing(tmp_path: Path) -> None:
    bad = tmp_path / "bad-1.0-py3-none-any.whl"
    bad.write_bytes(b"this is not a zip archive")
    with pytest.raises(AuditError, match="not a zip archive"):
        audit_wheel(bad)
    with pytest.raises(AuditError, match="no such file"):
        WheelReader(tmp_path / "missing.whl")


@pytest.mark.parametrize(
    ("name", "unsafe"),
    [("a/b.so", False), ("a/../b", True), ("..", True), ("/etc/x", True), ("C:/x", True), ("a\\b", True)],
)
def test_unsafe_member_names(name: str, unsafe: bool) -> None:
    assert (unsafe_name_reason(name) is not None) is unsafe


def test_members_stream_lazily(tmp_path: Path) -> None:
    path = write_wheel(tmp_path / "f-1.0-py3-none-any.whl", {"a": b"x" * 1000, "b/": b"", "c": b"yz"})
    with WheelReader(path) as wheel:
        members = list(wheel.members())
        assert [(m.name, m.size, m.head[:2]) for m in members] == [("a", 1000, b"xx"), ("c", 2, b"yz")]
        assert members[0].read() == b"x" * 1000


# --- classification rules ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "sm", "suffix", "cap", "runs"),
    [
        ("cubin", 80, "", "8.0", True),
        ("cubin", 80, "", "8.6", True),
        ("cubin", 80, "", "8.9", True),
        ("cubin", 86, "", "8.0", False),
        ("cubin", 90, "", "10.0", False),
        ("cubin", 120, "", "12.1", True),
        ("cubin", 90, "a", "9.0", True),
        ("cubin", 100, "a", "10.3", False),
        ("cubin", 100, "f", "10.0", True),
        ("cubin", 100, "f", "10.3", True),
        ("cubin", 100, "f", "12.0", False),
        ("cubin", 103, "f", "10.0", False),
        ("ptx", 80, "", "12.0", True),
        ("ptx", 90, "", "8.9", False),
        ("ptx", 90, "a", "10.0", False),
        ("other", 90, "", "9.0", False),
    ],
)
def test_runs_on(kind: str, sm: int, suffix: str, cap: str, runs: bool) -> None:
    assert runs_on(kind, sm, suffix, parse_capability(cap)) is runs


def test_capabilities_are_validated() -> None:
    assert parse_capability(" 10.0a") == (10, 0)
    with pytest.raises(AuditError, match="not a compute capability"):
        parse_capability("sm_90")
    with pytest.raises(AuditError, match="not a CPython version"):
        PythonTarget.parse("python3")
    assert classify([], ["9.0"]).runnable_bytes == 0


def test_abi3_minimum_from_wheel_name() -> None:
    assert abi3_minimum("sgl_kernel-0.3.21-cp310-abi3-manylinux2014_x86_64.whl") == (3, 10)
    assert abi3_minimum("xgrammar-0.1.27-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl") is None
    assert abi3_minimum("x-1.0-py3-none-any.whl") is None


# --- property: parsers raise only AuditError -----------------------------------------------------

SEEDS = [
    host_elf(["libfoo.so.1"], soname="libx.so", runpath="$ORIGIN", fatbin=MIXED_FATBIN),
    cubin(7, 0x5A0D5A),
    cubin(8, 0x6006402, tkinfo="sm_100f"),
    cubin(7, 0x500550, elf_class=32),
    MIXED_FATBIN,
]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 6))):
        at = draw(st.integers(0, len(data) - 1))
        if draw(st.booleans()):
            data[at] = draw(st.integers(0, 255))
        else:
            word = draw(st.sampled_from([0, 1, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 2**63, 2**64 - 1]))
            data[at : at + 8] = word.to_bytes(8, "little")
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


BLOBS = st.one_of(
    st.binary(max_size=300),
    st.binary(max_size=300).map(lambda b: b"\x7fELF" + b),
    st.binary(max_size=300).map(lambda b: struct.pack("<IHH", 0xBA55ED50, 1, 16) + b),
    mutated(),
)


def _outcome(parse: Callable[[Any, str], Any], data: Any) -> tuple[str, Any]:
    try:
        return ("ok", parse(data, "fuzz"))
    except AuditError as e:
        assert e.file == "fuzz"
        # pyelftools' own exception text may differ between a BytesIO and a file stream; the verdict not.
        corrupt = e.message.startswith("corrupt or truncated ELF: ")
        return ("error", "corrupt or truncated ELF" if corrupt else e.message)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(BLOBS)
def test_parsers_raise_only_audit_error(blob: bytes) -> None:
    """Bytes in memory or the same bytes read from a file (at an offset, as inside a wheel): the same
    facts or the same error, and never an exception other than AuditError."""
    with tempfile.TemporaryFile() as f:
        f.write(b"PK-prefix" + blob + b"trailing")
        f.flush()
        in_file = FileBlob(f.fileno(), len(b"PK-prefix"), len(blob))
        for parse in (parse_elf, parse_fatbin, parse_cubin):
            assert _outcome(parse, blob) == _outcome(parse, in_file)


def test_blob_reads_and_zero_scans_agree(tmp_path: Path) -> None:
    data = bytes(3 << 20) + b"\x07" + bytes(100) + b"end"
    path = tmp_path / "blob"
    path.write_bytes(b"xx" + data)
    with path.open("rb") as f:
        blobs = [BytesBlob(data), FileBlob(f.fileno(), 2, len(data))]
        for blob in blobs:
            assert blob.size == len(data)
            assert blob.find_nonzero(0, blob.size) == 3 << 20
            assert blob.find_nonzero((3 << 20) + 1, (3 << 20) + 50) is None
            assert blob.read_at(len(data) - 3, 10) == b"end" and blob.read_at(len(data) + 5, 4) == b""
            stream = blob.stream()
            assert stream.seek(-3, io.SEEK_END) == len(data) - 3 and stream.read() == b"end"


# --- real wheels -----------------------------------------------------------------------------------

REAL = ["xgrammar==0.1.27", "apache-tvm-ffi==0.1.9"]


@pytest.fixture(scope="session")
def real_wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    cache = Path(os.environ.get("SGLANG_MATRIX_WHEEL_CACHE") or tmp_path_factory.mktemp("wheels"))
    cache.mkdir(parents=True, exist_ok=True)

    def found() -> dict[str, Path]:
        out = {}
        for prefix in ("xgrammar-0.1.27-cp312-", "apache_tvm_ffi-0.1.9-cp312-abi3-manylinux2014_x86_64"):
            hits = sorted(cache.glob(f"{prefix}*.whl"))
            if hits:
                out[prefix.split("-")[0]] = hits[0]
        return out

    if len(found()) < 2:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
        ]
        cmd += [
            "3.12",
            "--implementation",
            "cp",
            "--platform",
            "manylinux2014_x86_64",
            "-d",
            str(cache),
            *REAL,
        ]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            pytest.skip(f"pip download of {' '.join(REAL)} failed: {e}")
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            pytest.skip(f"pip download of {' '.join(REAL)} failed (exit {proc.returncode}): {tail}")
    wheels = found()
    if len(wheels) < 2:
        pytest.skip(f"pip download did not leave both wheels in {cache}")
    return wheels


@pytest.mark.network
def test_real_xgrammar(real_wheels: dict[str, Path]) -> None:
    audit = audit_wheel(real_wheels["xgrammar"])
    assert audit.gpu.objects == [] and audit.gpu.problems == [] and audit.libs.problems == []
    (ext,) = audit.libs.objects
    assert ext.name == "xgrammar/xgrammar_bindings.cpython-312-x86_64-linux-gnu.so"
    assert "libstdc++.so.6" in ext.needed
    assert not any("cuda" in lib or "nvrtc" in lib or "torch" in lib for lib in ext.needed)
    assert audit.libs.cannot_load("3.12") == []
    assert [p.path for p in audit.libs.cannot_load("3.13")] == [ext.name]


@pytest.mark.network
def test_real_tvm_ffi(real_wheels: dict[str, Path]) -> None:
    audit = audit_wheel(real_wheels["apache_tvm_ffi"])
    assert audit.gpu.objects == [] and audit.libs.problems == []
    by_name = {o.name: o for o in audit.libs.objects}
    assert set(by_name) >= {"tvm_ffi/core.abi3.so", "tvm_ffi/lib/libtvm_ffi.so"}
    assert by_name["tvm_ffi/lib/libtvm_ffi.so"].soname == "libtvm_ffi.so"
    assert "libtvm_ffi.so" in by_name["tvm_ffi/core.abi3.so"].needed
    assert by_name["tvm_ffi/core.abi3.so"].rpath == "$ORIGIN/lib"
    assert audit.libs.cannot_load("3.12") == []
    assert [p.path for p in audit.libs.cannot_load("3.11")] == ["tvm_ffi/core.abi3.so"]
