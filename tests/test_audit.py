"""`sglang-matrix audit`: wheels checked against matrix.toml (libraries, GPU code, Requires-Dist).

Synthetic wheels are built here (tests/audit_fixtures.py); the real ones are the three small wheels of
pkgs/sources.json, downloaded through pip (`network` marker, skipped when the download fails).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import pytest
from audit_fixtures import c_array, fatbin_container, fatbin_entry, gcc, host_elf, write_wheel
from sglang_matrix.errors import UserError
from sglang_matrix.lockfile import fetch_index_wheel, wanted_wheels
from sglang_matrix.spec import load_spec

Cli = Callable[..., CompletedProcess[str]]

SGLANG = "sglang-0.5.9-py3-none-any.whl"
XGRAMMAR = "xgrammar-0.1.27-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
TVM_FFI = "apache_tvm_ffi-0.1.9-cp312-abi3-manylinux2014_x86_64.manylinux_2_17_x86_64.whl"
SGL_KERNEL = "sgl_kernel-0.3.21-cp310-abi3-manylinux2014_x86_64.whl"
SM90 = "sglang-sm90-avx512"
SM75 = "sglang-sm75-avx2"
LINE = 'lines."0.5.9".wheels'


# --- helpers -------------------------------------------------------------------------------------------


def audit_json(cli: Cli, *args: str | Path, root: Path | None = None) -> tuple[int, dict[str, Any], str]:
    """Run `audit --json`; return (exit code, the report, stderr)."""
    pre = ["--root", str(root)] if root else []
    proc = cli(*pre, "audit", "--json", *(str(a) for a in args))
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout, f"no JSON on stdout (exit {proc.returncode}): {proc.stderr}"
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def findings(wheel: dict[str, Any], severity: str, check: str | None = None) -> list[str]:
    return [
        f["message"]
        for f in wheel["findings"]
        if f["severity"] == severity and (check is None or f["check"] == check)
    ]


def requirement(wheel: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [r for r in wheel["requires"]["requirements"] if r["name"] == name]
    return found


def edit_spec(project: Path, edit: Callable[[str], str]) -> None:
    path = project / "matrix.toml"
    before = path.read_text(encoding="utf-8")
    after = edit(before)
    assert after != before, "the edit changed nothing"
    path.write_text(after, encoding="utf-8")


def in_section(text: str, header: str, old: str, new: str) -> str:
    """Replace `old` (once) inside the TOML table `[header]` only (up to the next table header)."""
    start = text.index(f"[{header}]\n")
    end = text.find("\n[", start + 1)
    end = len(text) if end < 0 else end
    body = text[start:end]
    assert body.count(old) == 1, f"{old!r} in [{header}]"
    return text[:start] + body.replace(old, new) + text[end:]


def drop_wheel(text: str, attr: str) -> str:
    """Remove `[lines."0.5.9".wheels.ATTR]` and its sub-tables."""
    out, skipping = [], False
    for line in text.splitlines(keepends=True):
        if line.startswith("["):
            header = line.lstrip("[")  # tables and arrays of tables ([[...prune]])
            skipping = header.startswith((f"{LINE}.{attr}]", f"{LINE}.{attr}."))
        if not skipping:
            out.append(line)
    return "".join(out)


def make_wheel(path: Path, members: dict[str, bytes], requires: tuple[str, ...] = ()) -> Path:
    """A wheel with the given members and a METADATA naming the file's project and version."""
    name, version = path.name.split("-")[:2]
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    meta += "".join(f"Requires-Dist: {r}\n" for r in requires)
    return write_wheel(path, {**members, f"{name}-{version}.dist-info/METADATA": meta.encode()})


# --- real small wheels (network) ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def real_cache(tmp_path_factory: pytest.TempPathFactory, root: Path) -> Path:
    """A cache holding the three small wheels of pkgs/sources.json, fetched through pip if need be."""
    cache = Path(os.environ.get("SGLANG_MATRIX_WHEEL_CACHE") or tmp_path_factory.mktemp("wheels"))
    wanted = wanted_wheels(load_spec(root / "matrix.toml"))
    for filename in (SGLANG, XGRAMMAR, TVM_FFI):
        assert filename in wanted, f"{filename} is no longer in the spec: update this test"
        try:
            fetch_index_wheel(wanted[filename], cache)
        except (UserError, OSError) as e:
            pytest.skip(f"cannot download {filename} through pip: {e}")
    return cache


@pytest.mark.network
def test_sglang_requires_dist(cli: Cli, real_cache: Path, root: Path) -> None:
    code, data, _ = audit_json(cli, "--variant", SM90, real_cache / SGLANG)
    assert code == 0 and data["ok"] and data["counts"]["hard"] == 0
    assert data["environment"]["capabilities"] == ["9.0"] and data["environment"]["python"] == "3.12"
    (wheel,) = data["wheels"]
    assert (wheel["attr"], wheel["status"]) == ("sglang", "ok")
    statuses = {r["name"]: r["status"] for r in wheel["requires"]["requirements"]}
    assert "missing" not in statuses.values()
    # The flashinfer pins (==0.6.3) against the matrix's 0.6.5: reported, acknowledged.
    for name in ("flashinfer-python", "flashinfer-cubin"):
        req = requirement(wheel, name)
        assert (req["status"], req["version"], req["requirement"]) == (
            "skew-accepted",
            "0.6.5",
            f"{name.replace('-', '_')}==0.6.3",
        )
        assert req["reason"] and "0.6.3" in req["reason"]
        assert any(name in m and "accepted" in m for m in findings(wheel, "info", "requires"))
    assert requirement(wheel, "torch")["status"] == "provided"
    assert requirement(wheel, "sgl-kernel") == {
        "name": "sgl-kernel",
        "requirement": "sgl-kernel==0.3.21",
        "status": "provided",
        "attr": "sgl-kernel",
        "version": "0.3.21",
        "reason": None,
    }
    # sglang pins transformers==4.57.1; nixpkgs' version at the pin is bracketed to 4.57.6..5.1: a skew the
    # spec accepts, with its reason.
    transformers = requirement(wheel, "transformers")
    assert (transformers["status"], transformers["version"]) == ("skew-accepted", "the range >=4.57.6,<5.2.0")
    # `import sglang` needs IPython: provided from nixpkgs ("IPython" is canonicalized), at nixpkgs' version.
    assert requirement(wheel, "ipython") == {
        "name": "ipython",
        "requirement": "IPython",
        "status": "nixpkgs",
        "attr": "ipython",
        "version": "9.9.0",
        "reason": None,
    }
    assert requirement(wheel, "torchvision")["status"] == "nixpkgs"
    # Dropped on purpose, with the spec's reasons.
    dropped = load_spec(root / "matrix.toml").lines["0.5.9"].wheels["sglang"].dropped
    assert requirement(wheel, "torchcodec")["reason"] == dropped["torchcodec"]
    # Markers: `av` is for aarch64 only, `torchcodec` for everything else; extras are not requested.
    assert "av" not in statuses and statuses["torchcodec"] == "dropped"
    assert wheel["requires"]["declared"] == 97 and len(statuses) == 63
    assert wheel["libraries"]["objects"] == 0 and wheel["gpu"]["total_bytes"] == 0

    # The same wheel on aarch64 markers is not part of this line; on this line 3.12 stays the Python.
    proc = cli("audit", "--variant", SM90, str(real_cache / SGLANG))
    assert proc.returncode == 0, proc.stderr
    assert "skew-accepted" in proc.stdout and "0 hard finding(s)" in proc.stdout


@pytest.mark.network
def test_sglang_removed_requires_entry_is_hard(cli: Cli, real_cache: Path, project: Path) -> None:
    edit_spec(project, lambda t: in_section(t, f"{LINE}.sglang.requires", 'einops = "einops"\n', ""))
    code, data, _ = audit_json(cli, "--variant", SM90, real_cache / SGLANG, root=project)
    assert code == 1 and not data["ok"]
    (wheel,) = data["wheels"]
    assert wheel["status"] == "fail"
    assert requirement(wheel, "einops")["status"] == "missing"
    assert [m for m in findings(wheel, "hard") if "einops" in m] == findings(wheel, "hard")
    proc = cli("--root", str(project), "audit", "--variant", SM90, str(real_cache / SGLANG))
    assert proc.returncode == 1 and "einops" in proc.stdout and "hard" in proc.stdout


@pytest.mark.network
def test_sglang_unacknowledged_skew_is_hard(cli: Cli, real_cache: Path, project: Path) -> None:
    edit_spec(
        project,
        lambda t: re.sub(r'\nflashinfer-cubin = "sglang 0\.5\.9 pins[^\n]*', "", t, count=1),
    )
    code, data, _ = audit_json(cli, "--variant", SM90, real_cache / SGLANG, root=project)
    assert code == 1
    (wheel,) = data["wheels"]
    assert requirement(wheel, "flashinfer-cubin")["status"] == "skew"
    assert requirement(wheel, "flashinfer-python")["status"] == "skew-accepted"
    (hard,) = findings(wheel, "hard")
    assert "flashinfer_cubin==0.6.3" in hard and "0.6.5" in hard and "accepted-skew" in hard


@pytest.mark.network
@pytest.mark.parametrize(
    ("filename", "attr"), [(XGRAMMAR, "xgrammar"), (TVM_FFI, "apache-tvm-ffi")], ids=["xgrammar", "tvm-ffi"]
)
def test_real_libraries_match(cli: Cli, real_cache: Path, project: Path, filename: str, attr: str) -> None:
    code, data, _ = audit_json(cli, "--variant", SM90, real_cache / filename)
    assert code == 0, data
    (wheel,) = data["wheels"]
    libs = wheel["libraries"]
    assert wheel["attr"] == attr and wheel["status"] == "ok"
    assert libs["providers"] == ["stdenv.cc.cc.lib"] == libs["declared"]
    assert (libs["missing"], libs["surplus"], libs["unmapped"], libs["cannot_load"]) == ([], [], [], [])
    providers = {u["soname"]: u["provider"] for u in libs["needed"] if not u["bundled"]}
    assert providers["libstdc++.so.6"] == providers["libgcc_s.so.1"] == "stdenv.cc.cc.lib"
    assert set(providers.values()) == {"stdenv.cc.cc.lib", "glibc"}
    if attr == "apache-tvm-ffi":  # core.abi3.so needs the wheel's own libtvm_ffi.so
        assert {u["soname"] for u in libs["needed"] if u["bundled"]} >= {"libtvm_ffi.so"}
    assert wheel["gpu"]["total_bytes"] == 0 and findings(wheel, "hard") == []

    edit_spec(
        project,
        lambda t: in_section(t, f"{LINE}.{attr}", 'libraries = ["stdenv.cc.cc.lib"]\n', ""),
    )
    code, data, _ = audit_json(cli, "--variant", SM90, real_cache / filename, root=project)
    assert code == 1
    (wheel,) = data["wheels"]
    assert wheel["libraries"]["missing"] == ["stdenv.cc.cc.lib"]
    (hard,) = findings(wheel, "hard", "libraries")
    assert "stdenv.cc.cc.lib" in hard and "libstdc++.so.6" in hard


@pytest.mark.network
def test_real_wheels_without_variant(cli: Cli, real_cache: Path) -> None:
    """Without --variant: the line's Python and every capability of its targets."""
    code, data, _ = audit_json(cli, real_cache / XGRAMMAR, real_cache / TVM_FFI)
    assert code == 0 and data["environment"] is None
    for wheel in data["wheels"]:
        env = wheel["environment"]
        assert (env["variant"], env["line"], env["python"], env["system"]) == (
            None,
            "0.5.9",
            "3.12",
            "x86_64-linux",
        )
        assert "6.1" in env["capabilities"] and "12.0" in env["capabilities"]


@pytest.mark.network
def test_variant_fetches_from_cache_and_skips_offline_url_wheel(
    cli: Cli, real_cache: Path, project: Path, tmp_path: Path
) -> None:
    """--variant alone: wheels come from --cache; the URL-only wheel, unreachable, is skipped."""

    def small_line(text: str) -> str:
        for attr in ("sgl-kernel", "flashinfer-cubin", "flashinfer-python"):
            text = drop_wheel(text, attr)
            # [jit-headers.roots] may name only wheels of the spec.
            text = re.sub(rf"(?m)^{re.escape(attr)} = \[[^\]\n]*\]\n", "", text)
        # Port 9 on localhost: refused at once, wherever the test runs.
        return re.sub(
            r'url = \{ x86_64-linux = "https://[^"]+" \}',
            'url = { x86_64-linux = "http://127.0.0.1:9/x.whl" }',
            text,
        )

    edit_spec(project, small_line)
    cache = tmp_path / "cache"
    cache.mkdir()
    for filename in (SGLANG, XGRAMMAR, TVM_FFI):
        (cache / filename).symlink_to(real_cache / filename)
    code, data, _ = audit_json(cli, "--variant", SM90, "--cache", cache, root=project)
    assert code == 0 and data["ok"] and not data["complete"] and data["skipped"] == 1
    by_attr = {w["attr"]: w for w in data["wheels"]}
    assert set(by_attr) == {"sglang", "xgrammar", "apache-tvm-ffi", "flashinfer-jit-cache"}
    jit = by_attr["flashinfer-jit-cache"]
    assert jit["status"] == "skipped" and jit["skipped"].startswith("not available offline")
    assert all(by_attr[a]["status"] == "ok" for a in ("sglang", "xgrammar", "apache-tvm-ffi"))
    # flashinfer left the line: its version is unknown now, so the accepted skews are stale.
    assert any("accepted-skew.flashinfer-python" in m for m in findings(by_attr["sglang"], "warning"))
    proc = cli("--root", str(project), "audit", "--variant", SM90, "--cache", str(cache))
    assert proc.returncode == 0
    assert "not available offline" in proc.stdout and "incomplete: 1 wheel(s) not audited" in proc.stdout


# --- synthetic wheels ---------------------------------------------------------------------------------


def test_unmapped_soname_is_hard(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "foo.c").write_text("int foo(int x) { return x * 2; }\n")
    (tmp_path / "bar.c").write_text("int foo(int);\nint bar(int x) { return foo(x) + 1; }\n")
    gcc(["-shared", "-fPIC", "-o", "libfoo.so.1", "-Wl,-soname,libfoo.so.1", "foo.c"], tmp_path)
    gcc(["-shared", "-fPIC", "-o", "bar.so", "bar.c", "-L.", "-l:libfoo.so.1"], tmp_path)
    wheel = make_wheel(
        tmp_path / XGRAMMAR,
        {"xgrammar/bar.cpython-312-x86_64-linux-gnu.so": (tmp_path / "bar.so").read_bytes()},
    )
    code, data, _ = audit_json(cli, "--variant", SM90, wheel)
    assert code == 1
    (report,) = data["wheels"]
    libs = report["libraries"]
    assert report["attr"] == "xgrammar" and libs["unmapped"] == ["libfoo.so.1"]
    (use,) = [u for u in libs["needed"] if u["soname"] == "libfoo.so.1"]
    assert use == {
        "soname": "libfoo.so.1",
        "provider": None,
        "bundled": False,
        "objects": ["xgrammar/bar.cpython-312-x86_64-linux-gnu.so"],
    }
    (hard,) = findings(report, "hard")
    assert "libfoo.so.1" in hard and "[sonames]" in hard
    # A C object needs no libstdc++: the declared library is surplus (a warning, not hard).
    assert libs["surplus"] == ["stdenv.cc.cc.lib"]
    assert any("stdenv.cc.cc.lib" in m for m in findings(report, "warning", "libraries"))

    # Bundled in the same wheel, the SONAME is no finding.
    (tmp_path / "other").mkdir()
    both = make_wheel(
        tmp_path / "other" / XGRAMMAR,
        {
            "xgrammar/bar.cpython-312-x86_64-linux-gnu.so": (tmp_path / "bar.so").read_bytes(),
            "xgrammar/lib/libfoo.so.1": (tmp_path / "libfoo.so.1").read_bytes(),
        },
    )
    code, data, _ = audit_json(cli, "--variant", SM90, both)
    assert code == 0, data["wheels"][0]["findings"]
    assert data["wheels"][0]["libraries"]["unmapped"] == []


def test_unmatched_wheel_is_audited_without_spec_checks(cli: Cli, tmp_path: Path) -> None:
    wheel = make_wheel(
        tmp_path / "demo-1.0-py3-none-any.whl", {"demo/x.so": host_elf(["libc.so.6"])}, ("six",)
    )
    code, data, _ = audit_json(cli, wheel)
    assert code == 0
    (report,) = data["wheels"]
    assert report["attr"] is None and report["requires"]["requirements"] == []
    assert any("matches no wheel" in m for m in findings(report, "warning", "file"))


# What matrix.toml's prune rules for sgl-kernel expect to find in it (else a hard "prune" finding).
PRUNE_TARGETS = {
    "sgl_kernel/sm90/placeholder.txt": b"",
    "sgl_kernel/sm100/placeholder.txt": b"",
    "lib/placeholder.txt": b"",
    "_mscclpp.cpython-310-x86_64-linux-gnu.so": host_elf(["libc.so.6"]),
}
MSCCLPP = "_mscclpp.cpython-310-x86_64-linux-gnu.so"


def test_prune_rule_matching_nothing_is_hard(cli: Cli, tmp_path: Path) -> None:
    members = {k: v for k, v in PRUNE_TARGETS.items() if not k.startswith("lib/")}
    wheel = make_wheel(tmp_path / SGL_KERNEL, members)
    code, data, _ = audit_json(cli, "--variant", SM90, wheel)
    assert code == 1
    assert findings(data["wheels"][0], "hard", "prune") == ["prune path 'lib' matches nothing in this wheel"]
    assert data["pruning"]["enabled"] is True
    left_out = {(item["wheel"], item["what"]): item["bytes"] for item in data["pruning"]["left_out"]}
    # Measured on the file given: sm100/ is 0 bytes here, and lib/ is missing (unknown).
    assert (
        left_out[("sgl-kernel", "sgl_kernel/sm100")] is None
        or left_out[("sgl-kernel", "sgl_kernel/sm100")] >= 0
    )
    assert ("flashinfer-cubin", "the whole wheel") in left_out


def sm80_kernel_wheel(path: Path) -> Path:
    """sgl-kernel's file name, one object with code for sm_80 only."""
    fb = fatbin_container(fatbin_entry(2, 80, payload=1000))
    return make_wheel(
        path / SGL_KERNEL,
        {"sgl_kernel/common_ops.abi3.so": host_elf(["libcudart.so.12"], fatbin=fb), **PRUNE_TARGETS},
    )


def test_gpu_gap_is_hard_unless_acknowledged(cli: Cli, tmp_path: Path, project: Path) -> None:
    wheel = sm80_kernel_wheel(tmp_path)
    code, data, _ = audit_json(cli, "--variant", SM90, wheel)
    assert code == 1
    (report,) = data["wheels"]
    gpu = report["gpu"]
    assert gpu["total_bytes"] == 1000 and gpu["by_target"] == {"sm_80": 1000}
    assert (gpu["runnable_bytes"], gpu["dead_bytes"]) == (0, 1000)
    assert gpu["capabilities"] == [
        {
            "capability": "9.0",
            "runnable_bytes": 0,
            "pruned_runnable_bytes": 0,
            "gap": True,
            "acknowledged": None,
        }
    ]
    (obj,) = gpu["objects"]
    assert obj["path"] == "sgl_kernel/common_ops.abi3.so" and obj["targets"] == {"sm_80": 1000}
    (hard,) = findings(report, "hard", "gpu")
    assert "9.0" in hard and "gpu-code-gaps" in hard

    # sm_80 code runs on 8.6 (same major, newer minor): no gap there.
    code, data, _ = audit_json(cli, "--variant", "sglang-sm86-avx2", wheel)
    assert data["wheels"][0]["gpu"]["capabilities"][0]["runnable_bytes"] == 1000
    assert findings(data["wheels"][0], "hard", "gpu") == []

    # The spec's own gap for 7.5 acknowledges it there.
    code, data, _ = audit_json(cli, "--variant", SM75, wheel)
    (cap,) = data["wheels"][0]["gpu"]["capabilities"]
    assert cap["gap"] and cap["acknowledged"] and "sm_80" in cap["acknowledged"]
    assert findings(data["wheels"][0], "hard", "gpu") == []

    edit_spec(
        project,
        lambda t: in_section(
            t,
            f"{LINE}.sgl-kernel",
            'gpu-code-gaps."7.5"',
            'gpu-code-gaps."9.0" = "test: acknowledged"\ngpu-code-gaps."7.5"',
        ),
    )
    code, data, _ = audit_json(cli, "--variant", SM90, wheel, root=project)
    (report,) = data["wheels"]
    assert report["gpu"]["capabilities"][0]["acknowledged"] == "test: acknowledged"
    assert findings(report, "hard", "gpu") == []
    assert "test: acknowledged" in " ".join(findings(report, "info", "gpu"))


def test_gpu_gap_star_covers_every_capability(cli: Cli, tmp_path: Path, project: Path) -> None:
    wheel = sm80_kernel_wheel(tmp_path)
    edit_spec(
        project,
        lambda t: in_section(
            t, f"{LINE}.sgl-kernel", 'gpu-code-gaps."7.5"', 'gpu-code-gaps."*" = "any"\ngpu-code-gaps."7.5"'
        ),
    )
    code, data, _ = audit_json(cli, "--variant", "sglang-sm120-avx2", wheel, root=project)
    assert code == 0
    assert data["wheels"][0]["gpu"]["capabilities"][0]["acknowledged"] == "any"
    assert findings(data["wheels"][0], "hard", "gpu") == []


def test_cpython_310_module_cannot_load_on_312(cli: Cli, tmp_path: Path) -> None:
    fb = fatbin_container(fatbin_entry(2, 90, payload=64))
    wheel = make_wheel(
        tmp_path / SGL_KERNEL,
        {
            **PRUNE_TARGETS,
            "_mscclpp.cpython-310-x86_64-linux-gnu.so": host_elf(["libc.so.6"], fatbin=fb),
            "sgl_kernel/common_ops.abi3.so": host_elf(["libc.so.6"], fatbin=fb),
        },
    )
    code, data, _ = audit_json(cli, "--variant", SM90, wheel)
    (report,) = data["wheels"]
    assert report["libraries"]["cannot_load"] == [
        {
            "object": "_mscclpp.cpython-310-x86_64-linux-gnu.so",
            "reason": "extension module for CPython 3.10 only, target is 3.12",
        }
    ]
    (warning,) = findings(report, "warning", "load")
    assert "_mscclpp" in warning and "3.12" in warning
    assert code == 0, findings(report, "hard")  # a warning only (the spec's libraries are surplus here)


def test_corrupt_wheel_is_one_line_and_the_rest_is_audited(cli: Cli, tmp_path: Path) -> None:
    bad = tmp_path / "broken-1.0-py3-none-any.whl"
    bad.write_bytes(b"PK\x03\x04 this is no zip archive")
    good = make_wheel(tmp_path / "demo-1.0-py3-none-any.whl", {"demo/x.so": host_elf(["libc.so.6"])})
    code, data, stderr = audit_json(cli, bad, good)
    assert code == 1
    first, second = data["wheels"]
    assert first["status"] == "error" and "not a zip archive" in first["error"]
    assert second["status"] == "ok"
    assert stderr == ""  # --json: the error is in the report
    proc = cli("audit", str(bad), str(good))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "broken-1.0-py3-none-any.whl" in lines[0] and "not a zip archive" in lines[0]


def test_corrupt_member_is_a_hard_finding(cli: Cli, tmp_path: Path) -> None:
    elf = host_elf(["libc.so.6"])
    wheel = make_wheel(tmp_path / "demo-1.0-py3-none-any.whl", {"demo/x.so": elf, "demo/y.so": elf})
    raw = bytearray(wheel.read_bytes())
    at = raw.index(b"demo/y.so") + len("demo/y.so") + 20  # inside y.so's compressed data
    raw[at : at + 8] = b"\xff" * 8
    wheel.write_bytes(bytes(raw))
    code, data, _ = audit_json(cli, wheel)
    assert code == 1
    (report,) = data["wheels"]
    assert report["status"] == "fail" and any("demo/y.so" in m for m in findings(report, "hard", "file"))


def test_wheel_without_metadata_is_an_error(cli: Cli, tmp_path: Path) -> None:
    wheel = write_wheel(tmp_path / "demo-1.0-py3-none-any.whl", {"demo/__init__.py": b""})
    code, data, _ = audit_json(cli, wheel)
    assert code == 1 and "METADATA" in data["wheels"][0]["error"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ((), "give WHEEL files, --variant VARIANT, or both"),
        (("--variant", "sglang-sm99-avx2"), "no variant named 'sglang-sm99-avx2'"),
        (("/nonexistent/x.whl",), "does not exist"),
    ],
)
def test_bad_input_exits_2(cli: Cli, args: tuple[str, ...], needle: str) -> None:
    proc = cli("audit", *args)
    assert proc.returncode == 2 and needle in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("old", "new", "needle"),
    [
        (
            'gpu-code-gaps."7.5"',
            "gpu-code-gaps.sm75",
            "gpu-code-gaps.sm75 = 'sm75': must be \"*\" or a capability",
        ),
        ('gpu-code-gaps."7.5" = "', 'gpu-code-gaps."7.5" = 3\n# "', "must be a non-empty string"),
    ],
)
def test_spec_gpu_code_gaps_validated(cli: Cli, project: Path, old: str, new: str, needle: str) -> None:
    edit_spec(project, lambda t: in_section(t, f"{LINE}.sgl-kernel", old, new))
    proc = cli("--root", str(project), "list")
    assert proc.returncode == 2 and needle in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_spec_accepted_skew_must_name_a_requirement(cli: Cli, project: Path) -> None:
    edit_spec(
        project,
        lambda t: in_section(
            t, f"{LINE}.sglang.accepted-skew", "flashinfer-cubin = ", "flashinfer-cubinx = "
        ),
    )
    proc = cli("--root", str(project), "list")
    assert proc.returncode == 2 and "accepted-skew.flashinfer-cubinx" in proc.stderr
    assert "names no entry of requires" in proc.stderr


def test_fatbin_in_c_object_counts(tmp_path: Path, cli: Cli) -> None:
    """A gcc-built object carrying a real .nv_fatbin section, as nvcc links it."""
    fb = fatbin_container(fatbin_entry(2, 90, flags=0x100011, payload=512), fatbin_entry(1, 80, payload=100))
    (tmp_path / "k.c").write_text(
        f'__attribute__((section(".nv_fatbin"), used)) static const unsigned char fb[] = {{{c_array(fb)}}};\n'
        "int k(void) { return 1; }\n"
    )
    gcc(["-shared", "-fPIC", "-o", "k.so", "k.c"], tmp_path)
    wheel = make_wheel(
        tmp_path / SGL_KERNEL, {"sgl_kernel/k.abi3.so": (tmp_path / "k.so").read_bytes(), **PRUNE_TARGETS}
    )
    code, data, _ = audit_json(cli, "--variant", "sglang-sm100-avx2", wheel)
    assert code == 0
    (report,) = data["wheels"]
    # sm_90a runs on 9.0 only; compute_80 PTX is JIT-compiled on 10.0.
    assert report["gpu"]["by_target"] == {"compute_80": 100, "sm_90a": 512}
    assert report["gpu"]["capabilities"][0]["runnable_bytes"] == 100
    assert report["gpu"]["dead_bytes"] == 512 and findings(report, "hard", "gpu") == []
