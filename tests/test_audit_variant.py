"""`sglang-matrix audit` for a variant: coverage on what the variant keeps after pruning, the variant's own
Python for per-Python wheels, and a `--json` complete enough that scripts need not re-read the wheels.
"""

from __future__ import annotations

from pathlib import Path

from audit_fixtures import cubin, fatbin_container, fatbin_entry, host_elf
from test_audit import LINE, SGL_KERNEL, Cli, audit_json, edit_spec, findings, make_wheel

SM103 = "sglang-python312-cuda12_9-sm103-avx2"
PY313 = "sglang-python313-cuda12_8-sm90-avx2"
XGRAMMAR_312 = "xgrammar-0.1.27-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
XGRAMMAR_313 = "xgrammar-0.1.27-cp313-cp313-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"


# --- 10.3 after pruning --------------------------------------------------------------------------------


def kernel_wheel_like_sgl_kernel(path: Path) -> Path:
    """sgl-kernel 0.3.21's shape: sm_100a-only kernels, and PTX only in the mscclpp objects pruning drops."""

    def obj(*entries: bytes) -> bytes:
        return host_elf(["libcudart.so.12"], fatbin=fatbin_container(*entries))

    return make_wheel(
        path / SGL_KERNEL,
        {
            "sgl_kernel/sm100/common_ops.abi3.so": obj(fatbin_entry(2, 100, flags=0x100011, payload=4000)),
            "sgl_kernel/sm90/common_ops.abi3.so": obj(fatbin_entry(2, 90, flags=0x100011, payload=3000)),
            "lib/mscclpp.so": obj(fatbin_entry(1, 90, payload=500, header_size=80)),
            "_mscclpp.cpython-310-x86_64-linux-gnu.so": obj(fatbin_entry(1, 80, payload=300, header_size=80)),
        },
    )


def test_coverage_counts_only_what_the_variant_keeps(cli: Cli, tmp_path: Path, project: Path) -> None:
    wheel = kernel_wheel_like_sgl_kernel(tmp_path)
    code, data, _ = audit_json(cli, "--variant", SM103, wheel, root=project)
    (report,) = data["wheels"]
    gpu = report["gpu"]
    # The PTX would JIT-compile on 10.3, but both of its objects are pruned: nothing of sgl-kernel runs.
    (cap,) = gpu["capabilities"]
    assert cap["runnable_bytes"] == 0 and findings(report, "warning", "gpu") == []
    assert data["environment"]["pruned"]["sgl-kernel"] == [
        "sgl_kernel/sm90",
        "lib",
        "_mscclpp.cpython-310-*.so",
    ]
    assert (cap["capability"], cap["runnable_bytes"], cap["pruned_runnable_bytes"], cap["gap"]) == (
        "10.3",
        0,
        800,
        True,
    )
    assert "10.3" in cap["acknowledged"]  # matrix.toml's sgl-kernel gpu-code-gaps."10.3"
    assert (gpu["total_bytes"], gpu["runnable_bytes"], gpu["dead_bytes"], gpu["pruned_bytes"]) == (
        7800,
        0,
        4000,
        3800,
    )
    rows = {row["path"]: row for row in gpu["objects"]}
    assert rows["lib/mscclpp.so"]["pruned_bytes"] == 500 and rows["lib/mscclpp.so"]["runnable_bytes"] == 0
    assert rows["sgl_kernel/sm100/common_ops.abi3.so"]["pruned_bytes"] == 0
    assert findings(report, "warning", "gpu") == [] and findings(report, "hard", "gpu") == []
    assert code == 0, findings(report, "hard")

    # Without the spec's acknowledgement the gap is hard, and says where the code went.
    def drop_gap(text: str) -> str:
        start = text.index(f"[{LINE}.sgl-kernel]\n")
        at = text.index('gpu-code-gaps."10.3" = ', start)
        return text[:at] + text[text.index("\n", at) + 1 :]

    edit_spec(project, drop_gap)
    code, data, _ = audit_json(cli, "--variant", SM103, wheel, root=project)
    (hard,) = findings(data["wheels"][0], "hard", "gpu")
    assert code == 1 and "10.3" in hard and "pruned" in hard and "_mscclpp" in hard


def test_line_audit_checks_each_capability_on_what_its_variant_keeps(cli: Cli, tmp_path: Path) -> None:
    """Without --variant, capability C is checked on what a variant of C alone keeps (prune rules)."""
    _code, data, _ = audit_json(cli, kernel_wheel_like_sgl_kernel(tmp_path))
    (report,) = data["wheels"]
    caps = {c["capability"]: c for c in report["gpu"]["capabilities"]}
    assert caps["10.3"]["runnable_bytes"] == 0 and caps["10.3"]["acknowledged"]
    assert not any("10.3" in m for m in findings(report, "warning", "gpu"))
    assert caps["10.3"]["pruned_runnable_bytes"] == 800
    # 9.0 keeps sm90/ (its sm_90a cubin), and would JIT the pruned PTX: 800 bytes pruned.
    assert (caps["9.0"]["runnable_bytes"], caps["9.0"]["pruned_runnable_bytes"]) == (3000, 800)
    assert caps["10.0"]["runnable_bytes"] == 4000
    assert report["gpu"]["pruned_bytes"] == 0  # no one variant: rows are not marked pruned


# --- the variant's Python ------------------------------------------------------------------------------


def xgrammar_wheel(path: Path, name: str, python: str) -> Path:
    ext = f"xgrammar/xgrammar_bindings.cpython-{python}-x86_64-linux-gnu.so"
    return make_wheel(path / name, {ext: host_elf(["libstdc++.so.6", "libc.so.6"])})


def test_cp313_wheel_is_matched_for_python_313(cli: Cli, tmp_path: Path) -> None:
    wheel = xgrammar_wheel(tmp_path, XGRAMMAR_313, "313")
    code, data, _ = audit_json(cli, "--variant", PY313, wheel)
    (report,) = data["wheels"]
    assert code == 0 and report["attr"] == "xgrammar"
    assert findings(report, "warning") == []  # no "the spec's wheels.xgrammar is ...cp312...", no load

    # Without --variant: audited for the Python its file name matches (3.13), not the line's default.
    code, data, _ = audit_json(cli, wheel)
    (report,) = data["wheels"]
    assert report["environment"]["python"] == "3.13" and report["attr"] == "xgrammar"
    assert report["libraries"]["cannot_load"] == [] and findings(report, "warning") == []

    # The cp312 file for a 3.13 variant is still the wrong file, and its module cannot load there.
    (tmp_path / "312").mkdir()
    code, data, _ = audit_json(cli, "--variant", PY313, xgrammar_wheel(tmp_path / "312", XGRAMMAR_312, "312"))
    warnings = findings(data["wheels"][0], "warning")
    assert any(XGRAMMAR_313 in m for m in findings(data["wheels"][0], "warning", "file"))
    assert any("cannot load on CPython 3.13" in m for m in warnings)


# --- --json completeness -------------------------------------------------------------------------------


def test_json_has_every_object_fact(cli: Cli, tmp_path: Path) -> None:
    fb = fatbin_container(
        fatbin_entry(2, 80, payload=100),
        fatbin_entry(2, 90, flags=0x100011, payload=200),
        fatbin_entry(2, 90, flags=0x102011, payload=48, uncompressed=400),  # sm_90a, LZ4
        fatbin_entry(1, 80, flags=0x2011, payload=40, header_size=80, uncompressed=1000),  # compute_80, LZ4
    )
    a_so = host_elf(
        ["libz.so.1", "libc.so.6", "libm.so.6"], soname="liba.so.1", runpath="$ORIGIN/lib", fatbin=fb
    )
    b_so = host_elf(["liba.so.1"], rpath="/opt/x")
    k = cubin(8, 0x6006402, tkinfo="sm_100f")
    wheel = make_wheel(
        tmp_path / "demo-1.0-py3-none-any.whl",
        {
            "demo/a.so": a_so,
            "demo/b.cpython-312-x86_64-linux-gnu.so": b_so,
            "demo/cubins/k1.cubin": k,
            "demo/cubins/k2.cubin": k,
        },
    )
    _code, data, _ = audit_json(cli, wheel)
    (report,) = data["wheels"]
    common = {"machine": "EM_X86_64", "class": 64, "type": "ET_DYN"}
    assert report["libraries"]["elf_objects"] == [
        {
            "path": "demo/a.so",
            "size": len(a_so),
            **common,
            "soname": "liba.so.1",
            "needed": ["libz.so.1", "libc.so.6", "libm.so.6"],  # the object's order, not sorted
            "rpath": None,
            "runpath": "$ORIGIN/lib",
            "cpython": None,
            "fatbin_bytes": len(fb),
        },
        {
            "path": "demo/b.cpython-312-x86_64-linux-gnu.so",
            "size": len(b_so),
            **common,
            "soname": None,
            "needed": ["liba.so.1"],
            "rpath": "/opt/x",
            "runpath": None,
            "cpython": "3.12",
            "fatbin_bytes": 0,
        },
    ]
    gpu = report["gpu"]
    assert gpu["by_target"] == {"sm_80": 100, "compute_80": 40, "sm_90a": 248, "sm_100f": 2 * len(k)}
    assert gpu["entries_by_target"] == {"sm_80": 1, "compute_80": 1, "sm_90a": 2, "sm_100f": 2}
    unpacked = {"sm_80": 100, "compute_80": 1000, "sm_90a": 600, "sm_100f": 2 * len(k)}
    assert gpu["uncompressed_by_target"] == unpacked
    assert gpu["uncompressed_bytes"] == sum(unpacked.values())
    rows = {row["path"]: row for row in gpu["objects"]}
    assert rows["demo/a.so"]["entries"] == {"sm_80": 1, "compute_80": 1, "sm_90a": 2}
    assert rows["demo/a.so"]["uncompressed_targets"] == {"sm_80": 100, "compute_80": 1000, "sm_90a": 600}
    assert rows["demo/a.so"]["uncompressed_bytes"] == 1700
    cubins = rows["demo/cubins/"]
    assert (cubins["count"], cubins["entries"], cubins["uncompressed_bytes"]) == (
        2,
        {"sm_100f": 2},
        2 * len(k),
    )
