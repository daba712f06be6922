"""The audit runs in bounded memory: a wheel member is streamed, never held whole.

A synthetic wheel holds one 256 MiB shared object (almost all of it a zero-filled fatbin entry), stored
or deflated; `sglang-matrix audit --json` runs on it in a child process, whose peak RSS (wait4's
ru_maxrss) must stay under `MAX_RSS`. The audit that held whole members peaked above the member's size
(2.1 GB on a 1 GiB object of zeros); this one stays near the interpreter's own ~40 MB.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from audit_fixtures import demo_wheel, fatbin_entry_header, host_elf_chunks, write_chunks
from sglang_matrix.audit import AuditError, wheelzip
from sglang_matrix.audit.gpucode import audit_wheel

ROOT = Path(__file__).resolve().parent.parent
MEMBER_ZEROS = 256 << 20
# Measured: 41-43 MB streaming; 308 MB (stored) and 576 MB (deflated) when whole members were held.
MAX_RSS = 128 * 10**6
NAME = "demo/_huge.abi3.so"


def big_wheel(path: Path, compression: int) -> tuple[Path, int]:
    """A wheel whose one ELF member carries a fatbin with one sm_90 cubin entry of MEMBER_ZEROS zeros."""
    header = fatbin_entry_header(2, 90, payload=MEMBER_ZEROS)
    container = (0xBA55ED50).to_bytes(4, "little") + (1).to_bytes(2, "little") + (16).to_bytes(2, "little")
    container += (len(header) + MEMBER_ZEROS).to_bytes(8, "little")
    chunks = host_elf_chunks(
        ["libcudart.so.12"],
        soname="lib_huge.so",
        runpath="$ORIGIN",
        fatbin=(container + header, MEMBER_ZEROS),
    )
    meta = b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n"
    info = zipfile.ZipInfo(NAME)
    info.compress_type = compression  # a ZipInfo's own type wins over the archive's
    with zipfile.ZipFile(path, "w", compression, compresslevel=1) as z:
        with z.open(info, "w", force_zip64=True) as out:
            write_chunks(out, chunks)
        z.writestr("demo-1.0.dist-info/METADATA", meta)
    with zipfile.ZipFile(path) as z:
        assert z.getinfo(NAME).compress_type == compression
    return path, sum(c if isinstance(c, int) else len(c) for c in chunks)


def peak_rss(cmd: list[str], out: Path, env: dict[str, str] | None = None) -> tuple[int, int]:
    """Run `cmd` with stdout to `out`; (exit code, the child's peak RSS in bytes)."""
    with out.open("wb") as stdout:
        proc = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.DEVNULL, cwd=ROOT, env=env)
        _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss * 1024  # KiB on Linux


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss in KiB is Linux's")
@pytest.mark.parametrize(
    "compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED], ids=["stored", "deflated"]
)
def test_audit_of_a_huge_object_stays_in_bounded_memory(tmp_path: Path, compression: int) -> None:
    wheel, size = big_wheel(tmp_path / "demo-1.0-py3-none-any.whl", compression)
    cache = tmp_path / "cache"
    code, rss = peak_rss(
        [sys.executable, "-m", "sglang_matrix", "audit", "--json", str(wheel)],
        tmp_path / "out.json",
        {**os.environ, "SGLANG_MATRIX_CACHE": str(cache)},
    )
    assert rss < MAX_RSS, f"peak RSS {rss / 1e6:.0f} MB for a {size / 1e6:.0f} MB member"
    data = json.loads((tmp_path / "out.json").read_text())
    (report,) = data["wheels"]
    # Audited for the whole line: sm_90 code leaves other capabilities without code (hard findings), but
    # the file itself was read without a problem.
    assert code in (0, 1) and report["error"] is None
    assert [f for f in report["findings"] if f["check"] == "file" and f["severity"] == "hard"] == []
    # It really read the object: its dynamic section, and the fatbin entry at the far end of the zeros.
    (obj,) = report["libraries"]["elf_objects"]
    assert (obj["path"], obj["size"], obj["needed"], obj["soname"], obj["runpath"]) == (
        NAME,
        size,
        ["libcudart.so.12"],
        "lib_huge.so",
        "$ORIGIN",
    )
    assert report["gpu"]["by_target"] == {"sm_90": MEMBER_ZEROS}
    # A deflated member was inflated into the cache directory's spool (not /tmp); nothing is left there.
    spool = cache / "spool"
    assert spool.is_dir() is (compression == zipfile.ZIP_DEFLATED)
    assert not spool.is_dir() or list(spool.iterdir()) == []


@pytest.mark.parametrize("stored", [True, False], ids=["stored", "deflated"])
def test_large_members_are_read_in_place_or_spooled_with_the_same_facts(
    tmp_path: Path, stored: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every member above the threshold: the same facts as read in memory, and CRC-32 still checked."""
    path = demo_wheel(tmp_path, stored=stored)
    in_memory = audit_wheel(path)
    monkeypatch.setattr(wheelzip, "SPOOL_THRESHOLD", 0)
    streamed = audit_wheel(path)
    assert streamed.gpu.objects == in_memory.gpu.objects
    assert streamed.libs.objects == in_memory.libs.objects
    assert [str(p) for p in streamed.gpu.problems] == [str(p) for p in in_memory.gpu.problems]

    raw = bytearray(path.read_bytes())
    at = raw.index(b"demo/_ops.abi3.so") + len("demo/_ops.abi3.so") + 40  # inside its data
    raw[at : at + 4] = bytes(b ^ 0x5A for b in raw[at : at + 4])
    path.write_bytes(bytes(raw))
    broken = audit_wheel(path)
    assert [p.file for p in broken.gpu.problems if "corrupt member" in p.message] == [
        f"{path.name}!demo/_ops.abi3.so"
    ]
    assert "demo/_ops.abi3.so" not in [o.name for o in broken.libs.objects]


@pytest.mark.parametrize("fails", ["create", "write"])
def test_a_spool_that_cannot_be_written_is_one_finding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fails: str
) -> None:
    class Full:
        def __enter__(self) -> Full:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def write(self, _data: bytes) -> int:
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(wheelzip, "SPOOL_THRESHOLD", 0)

    def temporary_file(**_kw: object) -> Full:
        if fails == "create":
            raise OSError(28, "No space left on device")
        return Full()

    monkeypatch.setattr(wheelzip.tempfile, "TemporaryFile", temporary_file)
    audit = audit_wheel(demo_wheel(tmp_path))
    spooled = [p for p in audit.gpu.problems if "spool" in p.message]
    assert spooled and all(isinstance(p, AuditError) and "No space left" in p.message for p in spooled)
