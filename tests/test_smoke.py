"""`sglang-matrix smoke`: unit tests on synthetic environments; the harness on a venv of real wheels."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from audit_fixtures import fatbin_container, fatbin_entry, gcc, host_elf
from sglang_matrix.smoke.checks import (
    capability_of_target,
    check_metadata,
    check_torch_arch,
    gpu_gate,
    requires_dist,
)
from sglang_matrix.smoke.closure import build_closure, resolve_needed, system_library_dirs
from sglang_matrix.smoke.model import NEEDS_DRIVER, Host, SmokeVariant
from sglang_matrix.smoke.report import junit_xml

FIXTURES = Path(__file__).parent / "fixtures" / "which"
H100_CPU = FIXTURES / "h100.cpuinfo"  # has AVX-512
LAPTOP_CPU = FIXTURES / "laptop.cpuinfo"  # AVX2 only
A100_SMI = FIXTURES / "a100.nvidia-smi"
H100_SMI = FIXTURES / "h100.nvidia-smi"
HERE_PYTHON = f"{sys.version_info[0]}.{sys.version_info[1]}"
SM90 = SmokeVariant("sglang-sm90-avx512", ("9.0",), "3.12", "avx512", ("avx512f", "avx512bw"), "test")
CUBIN, PTX = 2, 1
GPU_IDS = ["gpu:matmul", "gpu:flashinfer", "gpu:sgl-kernel", "gpu:server"]

FAKE_TORCH = """
__version__ = "2.9.1"
class version:
    cuda = "12.8"
class cuda:
    @staticmethod
    def get_arch_list():
        return {arch!r}
    @staticmethod
    def is_available():
        return False
"""


def no_driver(tmp_path: Path) -> Path:
    """A recorded nvidia-smi that failed: the host has no driver, whatever this machine has."""
    path = tmp_path / "nodriver.nvidia-smi"
    path.write_text(
        "### failed\nNVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n"
    )
    return path


def sm_blob(*targets: tuple[int, int] | tuple[int, int, int]) -> bytes:
    """A fatbin with one entry per (kind, sm[, flags])."""
    entries = [fatbin_entry(t[0], t[1], flags=t[2] if len(t) == 3 else 0x11) for t in targets]
    return fatbin_container(*entries)


def make_site(root: Path, python: str = HERE_PYTHON) -> Path:
    site = root / "lib" / f"python{python}" / "site-packages"
    site.mkdir(parents=True)
    return site


def write_torch_lib(site: Path, *targets: tuple[int, int] | tuple[int, int, int], cuda: bool = True) -> Path:
    lib = site / "torch" / "lib"
    lib.mkdir(parents=True, exist_ok=True)
    (lib / "libc10.so").write_bytes(host_elf(["libc.so.6"], soname="libc10.so"))
    (lib / "libtorch_cpu.so").write_bytes(
        host_elf(["libc10.so"], soname="libtorch_cpu.so", runpath="$ORIGIN")
    )
    if cuda:
        blob = sm_blob(*targets) if targets else None
        (lib / "libc10_cuda.so").write_bytes(
            host_elf(["libc10.so", "libcuda.so.1"], soname="libc10_cuda.so", runpath="$ORIGIN", fatbin=blob)
        )
        (lib / "libtorch_cuda.so").write_bytes(
            host_elf(
                ["libc10_cuda.so", "libtorch_cpu.so"],
                soname="libtorch_cuda.so",
                runpath="$ORIGIN",
                fatbin=blob,
            )
        )
    return lib


def write_metadata(site: Path, requires: list[str]) -> None:
    info = site / "sglang-0.5.9.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    head = "Metadata-Version: 2.4\nName: sglang\nVersion: 0.5.9\n"
    head += "".join(f"Requires-Dist: {r}\n" for r in requires)
    (info / "METADATA").write_text(head + "\nRequires-Dist: in the description, not a header\n")


def fake_result(
    root: Path,
    *,
    variant: dict[str, Any] | None = None,
    modules: dict[str, str] | None = None,
    arch: tuple[str, ...] = ("sm_90",),
    requires: tuple[str, ...] = (),
) -> Path:
    """A prefix shaped like a built variant: bin/python3 (a wrapper that sets its own path, as Nix's does),
    site-packages with stand-in modules, torch/lib with synthetic CUDA objects, sglang's dist-info."""
    root.mkdir(parents=True)
    site = make_site(root)
    for name in ("sglang", "xgrammar", "flashinfer", "sgl_kernel"):
        (site / name).mkdir()
        (site / name / "__init__.py").write_text((modules or {}).get(name, '__version__ = "0.0"\n'))
    write_torch_lib(site, (CUBIN, 90))
    (site / "torch" / "__init__.py").write_text(
        (modules or {}).get("torch", FAKE_TORCH.format(arch=list(arch)))
    )
    write_metadata(site, list(requires))
    (root / "bin").mkdir()
    python = root / "bin" / "python3"
    python.write_text(
        f'#!/bin/sh\nPYTHONPATH="{site}${{PYTHONPATH:+:$PYTHONPATH}}" exec "{sys.executable}" -s "$@"\n'
    )
    python.chmod(0o755)
    if variant is not None:
        (root / "nix-support").mkdir()
        (root / "nix-support" / "sglang-matrix-variant.json").write_text(json.dumps(variant))
    return root


def own_json(
    name: str = "sglang-sm90-avx2", python: str = HERE_PYTHON, caps: tuple[str, ...] = ("9.0",)
) -> dict:
    return {"name": name, "capabilities": list(caps), "python": python, "isa": "avx2", "target": "sm90"}


def smoke_json(cli, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    proc = cli("smoke", *args, "--json")
    assert proc.returncode in (0, 1), proc.stderr
    return proc, json.loads(proc.stdout)


def by_id(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in report["checks"]}


# ------------------------------------------------------------------------------------------------ DT_NEEDED


def test_resolver_follows_runpath_and_reports_missing(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "dep.c").write_text("int dep(void) { return 1; }\n")
    (src / "gone.c").write_text("int gone(void) { return 2; }\n")
    (src / "top.c").write_text(
        '#include <stdio.h>\nint dep(void); int top(void) { puts("x"); return dep(); }\n'
    )
    (src / "bad.c").write_text("int gone(void); int bad(void) { return gone(); }\n")
    gcc(["-shared", "-fPIC", "-o", "libsmokedep.so", "-Wl,-soname,libsmokedep.so", "dep.c"], src)
    gcc(["-shared", "-fPIC", "-o", "libsmokegone.so.3", "-Wl,-soname,libsmokegone.so.3", "gone.c"], src)
    link = ["-shared", "-fPIC", "-L.", "-Wl,--enable-new-dtags"]
    gcc([*link, "-o", "libsmoketop.so", "top.c", "-lsmokedep", "-Wl,-rpath,$ORIGIN/deps"], src)
    gcc([*link, "-o", "libsmokebad.so", "bad.c", "-l:libsmokegone.so.3", "-Wl,-rpath,$ORIGIN"], src)
    result = tmp_path / "result"
    (result / "lib" / "deps").mkdir(parents=True)
    shutil.copy(src / "libsmoketop.so", result / "lib")
    shutil.copy(src / "libsmokedep.so", result / "lib" / "deps")
    shutil.copy(src / "libsmokebad.so", result / "lib")  # its libsmokegone.so.3 is nowhere
    closure = build_closure(result, store_paths=None, system_dirs=system_library_dirs())
    assert closure.mode == "approximated" and "closure approximated" in closure.description
    checked, unresolved, problems = resolve_needed(closure)
    assert problems == []
    assert checked == 3
    assert unresolved == {str(result / "lib" / "libsmokebad.so"): ["libsmokegone.so.3"]}
    # Without the system directories libc.so.6 is missing too: resolution is really confined.
    bare = build_closure(result, store_paths=None)
    _, unresolved, _ = resolve_needed(bare)
    assert "libc.so.6" in unresolved[str(result / "lib" / "libsmoketop.so")]


def test_resolver_counts_only_the_closure_in_nix_mode(tmp_path: Path) -> None:
    store = tmp_path / "store"
    a, b, outside = store / "aaa-torch", store / "bbb-cuda", tmp_path / "outside"
    for d in (a / "lib", b / "lib", outside):
        d.mkdir(parents=True)
    (b / "lib" / "libcudart.so.12").write_bytes(host_elf([], soname="libcudart.so.12"))
    (outside / "libnuma.so.1").write_bytes(host_elf([], soname="libnuma.so.1"))
    runpath = f"$ORIGIN:{b / 'lib'}:{outside}"
    (a / "lib" / "libtorch_cuda.so").write_bytes(
        host_elf(["libcudart.so.12", "libnuma.so.1", "libcuda.so.1"], runpath=runpath)
    )
    (a / "lib" / "libbyname.so").write_bytes(host_elf(["libcudart.so.12"]))  # no RUNPATH: found by name
    closure = build_closure(a, store_paths=[a, b])
    assert closure.mode == "nix"
    checked, unresolved, _ = resolve_needed(closure)
    assert checked == 3
    # libnuma exists on disk but outside the closure; libcuda.so.1 is the driver's.
    assert unresolved == {str(a / "lib" / "libtorch_cuda.so"): ["libnuma.so.1"]}


# ------------------------------------------------------------------------------------------------ arches


def test_capability_of_target() -> None:
    assert capability_of_target("sm_90") == "9.0"
    assert capability_of_target("sm_90a") == "9.0"
    assert capability_of_target("sm_100f") == "10.0"
    assert capability_of_target("sm_120") == "12.0"
    assert capability_of_target("compute_90") == "compute_90"


@pytest.mark.parametrize(
    ("targets", "caps", "status", "needle"),
    [
        ([(CUBIN, 90)], ("9.0",), "passed", "fatbins: sm_90"),
        ([(CUBIN, 90), (CUBIN, 90, 0x100011)], ("9.0",), "passed", "sm_90 sm_90a"),
        ([(CUBIN, 80), (CUBIN, 90)], ("9.0",), "failed", "extra 8.0"),
        ([(CUBIN, 90), (PTX, 90)], ("9.0",), "failed", "extra compute_90"),
        ([(CUBIN, 90)], ("9.0", "10.0"), "failed", "missing 10.0"),
        ([(CUBIN, 75), (CUBIN, 120)], ("7.5", "12.0"), "passed", "sm_75 sm_120"),
    ],
)
def test_torch_arch_against_the_capabilities(
    tmp_path: Path, targets: list[tuple[int, ...]], caps: tuple[str, ...], status: str, needle: str
) -> None:
    site = make_site(tmp_path)
    write_torch_lib(site, *targets)  # type: ignore[arg-type]
    variant = SmokeVariant("v", caps, "3.12", "avx2", (), "test")
    check = check_torch_arch(site, variant, None)
    assert check.status == status, check.reason
    assert needle in check.reason


def test_torch_arch_cpu_build_and_arch_list(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    write_torch_lib(site, cuda=False)
    check = check_torch_arch(site, SM90, {"arch": [], "cuda": None})
    assert (check.status, check.reason) == ("failed", "torch has no CUDA libraries (CPU build)")
    site = make_site(tmp_path / "other")
    write_torch_lib(site, (CUBIN, 90))
    assert check_torch_arch(site, SM90, {"arch": ["sm_90"]}).status == "passed"
    wrong = check_torch_arch(site, SM90, {"arch": ["sm_80", "sm_90"]})
    assert wrong.status == "failed" and "get_arch_list() says sm_80 sm_90" in wrong.reason
    assert check_torch_arch(make_site(tmp_path / "none"), SM90, None).reason.startswith(
        "torch is not installed"
    )


# ------------------------------------------------------------------------------------------------ METADATA


def test_metadata_with_and_without_requires_dist(tmp_path: Path) -> None:
    site = make_site(tmp_path / "a")
    write_metadata(site, [])
    check = check_metadata(site)
    assert check.status == "passed", check.reason
    site = make_site(tmp_path / "b")
    write_metadata(site, ["torch==2.9.1", 'IPython; extra == "dev"'])
    check = check_metadata(site)
    assert check.status == "failed"
    assert "declares 2 Requires-Dist (torch, IPython)" in check.reason
    assert check_metadata(make_site(tmp_path / "c")).reason.startswith("no sglang-*.dist-info")
    assert requires_dist("Name: x\nRequires-Dist: a\n\nRequires-Dist: body") == ["a"]


# ------------------------------------------------------------------------------------------------ gating


def host(
    gpus: tuple[tuple[int, str, str], ...] = (), flags: tuple[str, ...] = ("avx512f", "avx512bw")
) -> Host:
    return Host(gpus, None if gpus else "nvidia-smi not found", frozenset(flags), "test", bool(gpus))


def test_gpu_gate_reasons() -> None:
    assert gpu_gate(host(), SM90, None, None) == (None, ["no GPU visible (nvidia-smi not found)"])
    a100 = ((0, "A100", "8.0"),)
    assert gpu_gate(host(a100), SM90, None, None)[1] == [
        "GPU capability 8.0 is not a target of sglang-sm90-avx512 (9.0)"
    ]
    mixed = ((0, "A100", "8.0"), (1, "H100", "9.0"))
    assert gpu_gate(host(mixed), SM90, None, None) == (1, [])
    assert gpu_gate(host(mixed, flags=("avx2",)), SM90, None, None)[1] == [
        "this CPU lacks AVX-512 (avx512f avx512bw)"
    ]
    assert gpu_gate(host(mixed), SM90, None, False)[1] == ["GPU checks turned off (--no-gpu)"]
    # No driver answer, but torch inside RESULT sees a GPU.
    torch_info = {"available": True, "devices": [[0, "H100", "9.0"]]}
    assert gpu_gate(host(), SM90, torch_info, None) == (0, [])


def test_gpu_not_a_target_and_cpu_lacking_isa_on_the_cli(cli, tmp_path: Path) -> None:
    result = fake_result(tmp_path / "r")
    base = [str(result), "--variant", "sglang-sm90-avx512"]
    _, report = smoke_json(cli, *base, "--nvidia-smi-output", str(A100_SMI), "--cpuinfo", str(H100_CPU))
    for cid in GPU_IDS:
        check = by_id(report)[cid]
        assert check["status"] == "skipped"
        assert check["reason"] == "GPU capability 8.0 is not a target of sglang-sm90-avx512 (9.0)"
    _, report = smoke_json(cli, *base, "--nvidia-smi-output", str(H100_SMI), "--cpuinfo", str(LAPTOP_CPU))
    for cid in GPU_IDS:
        check = by_id(report)[cid]
        assert check["status"] == "skipped"
        assert check["reason"] == "this CPU lacks AVX-512 (avx512f avx512dq avx512vl avx512bw)"
    # --gpu turns a reason to skip into a failure.
    proc, report = smoke_json(cli, *base, "--nvidia-smi-output", str(A100_SMI), "--gpu")
    assert proc.returncode == 1
    assert by_id(report)["gpu:matmul"]["status"] == "failed"
    assert by_id(report)["gpu:matmul"]["reason"].startswith("--gpu given but GPU capability 8.0")


def test_import_skips_are_precise(cli, tmp_path: Path) -> None:
    modules = {
        "sgl_kernel": 'raise OSError("libcuda.so.1: cannot open shared object file: No such file")\n',
        "torch": "import os, signal\nos.kill(os.getpid(), signal.SIGILL)\n",
    }
    result = fake_result(tmp_path / "r", modules=modules)
    args = [str(result), "--variant", "sglang-sm90-avx512", "--nvidia-smi-output", str(no_driver(tmp_path))]
    _, report = smoke_json(cli, *args, "--cpuinfo", str(LAPTOP_CPU))
    checks = by_id(report)
    assert checks["import:sgl_kernel"]["status"] == "skipped"
    assert checks["import:sgl_kernel"]["reason"] == NEEDS_DRIVER
    assert checks["import:torch"]["status"] == "skipped"
    assert checks["import:torch"]["reason"] == (
        "this CPU lacks AVX-512 (avx512f avx512dq avx512vl avx512bw): the import died of SIGILL"
    )
    assert checks["import:sglang"]["status"] == "passed"
    # On a CPU that has the ISA, SIGILL is a real failure.
    _, report = smoke_json(cli, *args, "--cpuinfo", str(H100_CPU))
    assert by_id(report)["import:torch"] == {
        "id": "import:torch",
        "title": "import torch (clean environment)",
        "status": "failed",
        "reason": "killed by SIGILL",
    }


def test_a_pruned_sgl_kernel_without_its_gpu_is_skipped_not_failed(cli, tmp_path: Path) -> None:
    """sglang-sm90-avx512 prunes sgl_kernel/sm100; without a GPU the loader asks for exactly that."""
    modules = {
        "sgl_kernel": 'raise ImportError("[sgl_kernel] CRITICAL: Could not load any common_ops library!")\n'
    }
    result = fake_result(tmp_path / "r", modules=modules)
    base = [str(result), "--variant", "sglang-sm90-avx512", "--cpuinfo", str(H100_CPU)]
    _, report = smoke_json(cli, *base, "--nvidia-smi-output", str(no_driver(tmp_path)))
    check = by_id(report)["import:sgl_kernel"]
    assert check["status"] == "skipped"
    assert check["reason"] == (
        "sglang-sm90-avx512 prunes sgl_kernel/sm100, lib, _mscclpp.cpython-310-*.so (dead code for 9.0); "
        "it loads only on a GPU of its targets, and none is visible"
    )
    # On a GPU of its targets the same error is a failure.
    _, report = smoke_json(cli, *base, "--nvidia-smi-output", str(H100_SMI))
    assert by_id(report)["import:sgl_kernel"]["status"] == "failed"


SM90_0523 = "sglang-0_5_23-sm90-x86_64"


def test_a_variant_without_an_isa_is_never_blamed_on_the_cpu(cli, tmp_path: Path) -> None:
    """0.5.23's variants have no ISA (torch is a prebuilt wheel): on a CPU without AVX-512 a SIGILL is a real
    failure and the GPU checks are not skipped for the CPU; its pruned sglang-kernel (the 0.5.23 name of
    sgl-kernel) is still recognised when no GPU of its targets is visible."""
    modules = {
        "torch": "import os, signal\nos.kill(os.getpid(), signal.SIGILL)\n",
        "sgl_kernel": 'raise ImportError("[sgl_kernel] CRITICAL: Could not load any common_ops library!")\n',
    }
    own = {"name": SM90_0523, "capabilities": ["9.0"], "python": "3.12", "isa": None, "target": "sm90"}
    result = fake_result(tmp_path / "r", modules=modules, variant=own)
    args = [str(result), "--variant", SM90_0523, "--cpuinfo", str(LAPTOP_CPU)]
    _, report = smoke_json(cli, *args, "--nvidia-smi-output", str(no_driver(tmp_path)))
    assert report["variant"]["isa"] is None and report["variant"]["cpuFeatures"] == []
    checks = by_id(report)
    assert checks["variant"]["status"] == "passed"  # RESULT's own isa null agrees with the spec's
    assert checks["import:torch"]["status"] == "failed"
    assert checks["import:torch"]["reason"] == "killed by SIGILL"
    assert checks["import:sgl_kernel"]["status"] == "skipped"
    assert checks["import:sgl_kernel"]["reason"] == (
        f"{SM90_0523} prunes sgl_kernel/sm100, sgl_kernel/infllm_ops.cpython-310-*.so (dead code for 9.0); "
        "it loads only on a GPU of its targets, and none is visible"
    )
    # The text report says the same.
    text = cli("smoke", *args, "--nvidia-smi-output", str(no_driver(tmp_path)))
    assert "killed by SIGILL" in text.stdout and "lacks" not in text.stdout


def test_the_gpu_gate_ignores_the_cpu_for_a_variant_without_an_isa(root: Path) -> None:
    from sglang_matrix.smoke.variant import variant_from_json, variant_from_spec
    from sglang_matrix.spec import load_spec

    spec = load_spec(root / "matrix.toml")
    variant = variant_from_spec(spec, SM90_0523)
    assert (variant.isa, variant.cpu_features) == (None, ())
    h100 = ((0, "H100", "9.0"),)
    assert gpu_gate(host(h100, flags=()), variant, None, None) == (0, [])
    assert gpu_gate(host(h100, flags=()), SM90, None, None)[1] == [
        "this CPU lacks AVX-512 (avx512f avx512bw)"
    ]
    # sglang-kernel's accepted gap (no code below sm_80) reaches the sgl-kernel GPU check of 0.5.23.
    fat = variant_from_spec(spec, "sglang-0_5_23-all-x86_64")
    assert "7.5" in fat.gaps["gpu:sgl-kernel"]
    # RESULT's own JSON, as the Nix side writes it (isa null).
    own = variant_from_json(variant.data, "result")
    assert (own.isa, own.cpu_features) == (None, ())


def test_behind_the_real_launcher_a_missing_module_still_fails(cli, tmp_path: Path) -> None:
    """RESULT's bin/python3 is the real launcher (pkgs/launcher.bash) in front of the fake interpreter: on a
    host without a driver it notes so on stderr, naming libcuda.so.1; that note must not turn a real import
    failure into a "needs the driver" skip."""
    from host_fixtures import render_launcher

    modules = {
        "sglang": "import not_installed_dependency\n",
        "sgl_kernel": 'raise OSError("libcuda.so.1: cannot open shared object file: No such file")\n',
    }
    result = fake_result(tmp_path / "r", modules=modules)
    wrapped = result / "bin" / ".python3-wrapped"
    (result / "bin" / "python3").rename(wrapped)
    render_launcher(result / "bin" / "python3", str(wrapped))
    args = [str(result), "--variant", "sglang-sm90-avx512", "--nvidia-smi-output", str(no_driver(tmp_path))]
    _, report = smoke_json(cli, *args, "--cpuinfo", str(H100_CPU), "--no-gpu")
    checks = by_id(report)
    assert checks["import:sglang"]["status"] == "failed"
    missing = "ModuleNotFoundError: No module named 'not_installed_dependency'"
    assert checks["import:sglang"]["reason"] == missing
    assert checks["import:sgl_kernel"]["status"] == "skipped"
    assert checks["import:torch"]["status"] == "passed"


def test_imports_run_without_pythonpath(cli, tmp_path: Path) -> None:
    """Only PATH and HOME reach RESULT's interpreter (its own wrapper may set PYTHONPATH, as Nix's does)."""
    code = (
        "import os\nassert 'SMOKE_X' not in os.environ and 'stray' not in os.environ.get('PYTHONPATH', ''), "
        "sorted(os.environ)\n"
    )
    result = fake_result(tmp_path / "r", modules={"sglang": code}, variant=own_json())
    env = {"PYTHONPATH": "/stray/site-packages", "SMOKE_X": "1"}
    proc = cli("smoke", str(result), "--json", "--no-gpu", env=env)
    report = json.loads(proc.stdout)
    assert by_id(report)["import:sglang"]["status"] == "passed", by_id(report)["import:sglang"]


# ------------------------------------------------------------------------------------------------ exit codes


def test_exit_0_when_every_runnable_check_passes(cli, tmp_path: Path) -> None:
    result = fake_result(tmp_path / "r", variant=own_json())
    proc = cli("smoke", str(result), "--no-gpu", "--cpuinfo", str(H100_CPU))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "smoke sglang-sm90-avx2:" in proc.stdout and "0 failed" in proc.stdout
    assert "closure approximated" in proc.stdout
    proc, report = smoke_json(cli, str(result), "--no-gpu", "--cpuinfo", str(H100_CPU))
    assert report["ok"] is True and report["variant"]["name"] == "sglang-sm90-avx2"
    statuses = {c["id"]: c["status"] for c in report["checks"]}
    assert statuses == {
        "variant": "passed",
        "python": "passed",
        **{f"import:{m}": "passed" for m in ("sglang", "torch", "xgrammar", "flashinfer", "sgl_kernel")},
        "torch-arch": "passed",
        "sglang-metadata": "passed",
        "shared-libs": "passed",
        **dict.fromkeys(GPU_IDS, "skipped"),
    }
    assert by_id(report)["torch-arch"]["reason"] == "fatbins: sm_90; get_arch_list: sm_90"


def test_exit_1_on_a_failed_check(cli, tmp_path: Path) -> None:
    result = fake_result(tmp_path / "r", variant=own_json(), arch=("sm_80",), requires=("torch",))
    proc, report = smoke_json(cli, str(result), "--no-gpu")
    assert proc.returncode == 1 and report["ok"] is False
    assert by_id(report)["torch-arch"]["status"] == "failed"
    assert by_id(report)["sglang-metadata"]["reason"].endswith("declares 1 Requires-Dist (torch)")


def test_variant_disagreement_fails(cli, tmp_path: Path) -> None:
    result = fake_result(tmp_path / "r", variant=own_json("sglang-sm80-avx2"))
    _, report = smoke_json(cli, str(result), "--variant", "sglang-sm90-avx2", "--no-gpu")
    assert by_id(report)["variant"]["status"] == "failed"
    assert "RESULT says it is 'sglang-sm80-avx2'" in by_id(report)["variant"]["reason"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["/nonexistent/result"], "/nonexistent/result: no such file or directory"),
        (["{r}", "--variant", "sglang-sm99-avx9"], "no variant named 'sglang-sm99-avx9'"),
        (["{r}"], "carries no nix-support/sglang-matrix-variant.json; give --variant NAME"),
        ([], "give RESULT or --all DIR"),
        (["--all", "{tmp}/empty"], "holds no result-<variant> entries"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(cli, tmp_path: Path, args: list[str], needle: str) -> None:
    result = fake_result(tmp_path / "r")
    (tmp_path / "empty").mkdir()
    argv = [a.replace("{r}", str(result)).replace("{tmp}", str(tmp_path)) for a in args]
    proc = cli("smoke", *argv)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert needle in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr


# -------------------------------------------------------------------------------------------- --all, JUnit


def test_all_checks_every_result_link(cli, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    fake_result(tmp_path / "store" / "one", variant=own_json())
    fake_result(tmp_path / "store" / "two")  # says nothing: its link name says sglang-sm80-avx2
    (out / "result-sglang-sm90-avx2").symlink_to(tmp_path / "store" / "one")
    (out / "result-sglang-sm80-avx2").symlink_to(tmp_path / "store" / "two")
    (out / "unrelated").mkdir()
    junit = tmp_path / "junit.xml"
    proc = cli("smoke", "--all", str(out), "--json", "--junit", str(junit), "--no-gpu")
    data = json.loads(proc.stdout)
    assert [r["variant"]["name"] for r in data["reports"]] == ["sglang-sm80-avx2", "sglang-sm90-avx2"]
    two, one = data["reports"]
    assert one["ok"] is True
    # sm80 is built for Python 3.12 and holds sm_90 code: both are findings.
    assert two["ok"] is False and by_id(two)["python"]["status"] == "failed"
    assert "extra 9.0" in by_id(two)["torch-arch"]["reason"]
    assert data["ok"] is False and proc.returncode == 1
    suites = ET.parse(junit).getroot()
    assert [s.get("name") for s in suites] == ["smoke.sglang-sm80-avx2", "smoke.sglang-sm90-avx2"]
    assert suites.get("tests") == str(len(one["checks"]) + len(two["checks"]))


def test_junit_counts_match_the_report(tmp_path: Path) -> None:
    from sglang_matrix.smoke.model import Report, failed, passed, skipped

    report = Report(
        "/r",
        SM90,
        "nix",
        [
            passed("a", "A", "ok"),
            failed("b", "B", "bad \x01 byte", {"x": 1}),
            skipped("c", "C", "no GPU visible"),
        ],
    )
    root = ET.fromstring(junit_xml([report]).encode())
    suite = root.find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "1", "1")
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    failure = cases["b"].find("failure")
    assert failure is not None and failure.get("message") == "bad ? byte"
    skip = cases["c"].find("skipped")
    assert skip is not None and skip.get("message") == "no GPU visible"
    assert cases["a"].find("failure") is None and cases["a"].find("skipped") is None


# ------------------------------------------------------------------------------------------------ a real venv
# The rehearsal's environment of 0.5.9's default variant (conftest.rehearsed_env, shared with `sglang-matrix
# rehearse`'s tests): sglang's real closure as the variant installs it, with pip's local CPU torch standing in
# for the variant's CUDA torch. Its python is this one (3.11), not the variant's 3.12.

# What the CPU torch stand-in lacks that CUDA-built objects need: torch's CUDA libraries and CUDA's own
# (the variant's closure has them; libcuda.so.1 is the driver's, which the check does not ask for).
STAND_IN_LACKS = {
    "libc10_cuda.so", "libtorch_cuda.so", "libcudart.so.12", "libnvrtc.so.12", "libcublas.so.12",
    "libcublasLt.so.12",
}  # fmt: skip


def _smoke_venv(venv: Path, tmp: Path) -> tuple[int, dict[str, Any], Path]:
    from conftest import REHEARSED_VARIANT, run_cli

    junit = tmp / "junit.xml"
    args = [str(venv), "--variant", REHEARSED_VARIANT, "--json", "--junit", str(junit)]
    proc = run_cli("smoke", *args, "--nvidia-smi-output", str(no_driver(tmp)))
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout), junit


@pytest.fixture(scope="session")
def venv_report(
    rehearsed_env: Any, tmp_path_factory: pytest.TempPathFactory
) -> tuple[int, dict[str, Any], Path]:
    return _smoke_venv(rehearsed_env.root / "venv", tmp_path_factory.mktemp("smoke-report"))


@pytest.mark.network
def test_real_venv_static_checks(venv_report: tuple[int, dict[str, Any], Path], rehearsed_env: Any) -> None:
    from sglang_matrix.rehearse.env import DEFAULT_TORCH
    from sglang_matrix.spec import load_spec

    code, report, _ = venv_report
    checks = by_id(report)
    wheels = load_spec(Path(__file__).parent.parent / "matrix.toml").lines["0.5.9"].wheels
    assert code == 1 and report["ok"] is False
    assert checks["import:torch"]["status"] == "passed"
    assert checks["import:torch"]["reason"] == f"version {DEFAULT_TORCH}+cpu"
    # The closure's modules import with their real dependencies, each in a clean interpreter.
    assert checks["import:sglang"]["reason"] == f"version {wheels['sglang'].version}"
    assert checks["import:flashinfer"]["reason"] == f"version {wheels['flashinfer-python'].version}"
    for module in ("sglang", "xgrammar", "flashinfer"):
        assert checks[f"import:{module}"]["status"] == "passed", checks[f"import:{module}"]
    # sgl_kernel's real loader, with no GPU, asks for the common_ops the variant prunes (sm100): a skip that
    # says so, not a failure.
    kernel = checks["import:sgl_kernel"]
    assert kernel["status"] == "skipped"
    assert kernel["reason"].startswith("sglang-sm90-avx512 prunes sgl_kernel/sm100, lib, ")
    assert "No module named 'common_ops'" in kernel["details"]
    assert checks["torch-arch"]["status"] == "failed"
    assert checks["torch-arch"]["reason"] == "torch has no CUDA libraries (CPU build)"
    assert checks["torch-arch"]["details"]["get_arch_list"] == []
    # The wheel still has its Requires-Dist (the Nix build is what strips them).
    assert checks["sglang-metadata"]["status"] == "failed"
    assert checks["sglang-metadata"]["reason"].startswith(
        "sglang-0.5.9.dist-info/METADATA declares 97 Requires-Dist"
    )
    # Every object's DT_NEEDED resolves in the approximated closure but what the CPU stand-in lacks (and
    # libnuma.so.1, sgl-kernel's, where this host has none: the variant's closure has numactl's).
    libs = checks["shared-libs"]
    assert libs["status"] == "failed"
    assert "closure approximated, RESULT is not a Nix store path" in libs["reason"]
    assert report["closure"].startswith("closure approximated")
    unresolved = {
        str(Path(path).relative_to(rehearsed_env.site)): set(names)
        for path, names in libs["details"]["unresolved"].items()
    }
    host_numa = any((d / "libnuma.so.1").exists() for d in system_library_dirs())
    assert set().union(*unresolved.values()) == STAND_IN_LACKS | (set() if host_numa else {"libnuma.so.1"})
    assert {"sgl_kernel/sm90/common_ops.abi3.so", "deep_gemm/deep_gemm_cpp.abi3.so"} <= set(unresolved)
    for resolved in ("torch/", "xgrammar/", "tvm_ffi/", "flashinfer/"):
        assert not [p for p in unresolved if p.startswith(resolved)], unresolved
    assert checks["python"]["reason"] == "RESULT's python is 3.11, sglang-sm90-avx512 is built for 3.12"
    for cid in GPU_IDS:
        assert checks[cid]["status"] == "skipped"
        assert checks[cid]["reason"].startswith("no GPU visible")


@pytest.mark.network
def test_real_venv_names_a_missing_dependency(rehearsed_env: Any, tmp_path: Path) -> None:
    """The same environment without IPython (which the first round dropped): sglang's import fails, naming
    the module; the others still import."""
    from conftest import shadowed_venv

    venv = shadowed_venv(rehearsed_env.site, tmp_path / "venv", "ipython")
    code, report, _ = _smoke_venv(venv, tmp_path)
    checks = by_id(report)
    assert code == 1
    assert checks["import:sglang"]["status"] == "failed"
    assert checks["import:sglang"]["reason"] == "ModuleNotFoundError: No module named 'IPython'"
    for module in ("torch", "xgrammar", "flashinfer"):
        assert checks[f"import:{module}"]["status"] == "passed", checks[f"import:{module}"]


@pytest.mark.network
def test_real_venv_json_and_junit(venv_report: tuple[int, dict[str, Any], Path]) -> None:
    _, report, junit = venv_report
    assert set(report) == {"result", "variant", "closure", "ok", "counts", "checks"}
    assert report["variant"]["name"] == "sglang-sm90-avx512" and report["variant"]["capabilities"] == ["9.0"]
    for check in report["checks"]:
        assert {"id", "title", "status", "reason"} <= set(check)
        assert check["status"] in ("passed", "failed", "skipped")
    counts = report["counts"]
    assert sum(counts.values()) == len(report["checks"])
    root = ET.parse(junit).getroot()
    suite = root.find("testsuite")
    assert suite is not None
    assert int(suite.get("tests", "-1")) == len(report["checks"])
    assert int(suite.get("failures", "-1")) == counts["failed"] == len(list(suite.iter("failure")))
    assert int(suite.get("skipped", "-1")) == counts["skipped"] == len(list(suite.iter("skipped")))


# ---------------------------------------------------------------------------------------- server plumbing

FAKE_SERVER = r"""
import json, os, subprocess, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

child = subprocess.Popen(["sh", "-c", sys.argv[1]])  # a worker, like sglang's scheduler


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, body, status=200):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.reply({}) if self.path == "/health" else self.reply({"error": "no"}, 404)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        chat = self.path == "/v1/chat/completions"
        if self.path == "/generate":
            return self.reply({"text": "a b c", "meta_info": {"completion_tokens": 8}})
        choice = {"message": {"role": "assistant", "content": "hi"}} if chat else {"text": "hi"}
        if not body.get("stream"):
            return self.reply({"choices": [choice]})
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        delta = {"delta": {"content": "hi"}} if chat else {"text": "hi"}
        for _ in range(3):
            self.wfile.write(b"data: " + json.dumps({"choices": [delta]}).encode() + b"\n\n")
        self.wfile.write(b"data: [DONE]\n\n")


ThreadingHTTPServer((os.environ["SGLANG_HOST"], int(os.environ["SGLANG_PORT"])), Handler).serve_forever()
"""


@pytest.mark.parametrize(
    ("worker", "grace", "how"), [("sleep 300", 10, "SIGTERM:"), ("trap '' TERM; sleep 300", 1, "SIGKILL")]
)
def test_server_endpoints_and_stop(tmp_path: Path, worker: str, grace: float, how: str) -> None:
    import time

    from sglang_matrix.smoke.gpu import _pgroup_members, exercise, free_port, http, stop_group

    port = free_port()
    env = {**os.environ, "SGLANG_HOST": "127.0.0.1", "SGLANG_PORT": str(port)}
    proc = subprocess.Popen(
        [sys.executable, "-c", FAKE_SERVER, worker], env=env, start_new_session=True, stdin=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if http(f"http://127.0.0.1:{port}/health", timeout=2)[0] == 200:
                    break
            except OSError:
                time.sleep(0.2)
        assert exercise(f"http://127.0.0.1:{port}") == []
        assert len(_pgroup_members(proc.pid)) >= 2  # the server and its worker
    finally:
        gone, said = stop_group(proc, grace=grace)
    assert gone, said
    assert how in said
    assert _pgroup_members(proc.pid) == []


def test_gpu_scripts_compile() -> None:
    from sglang_matrix.smoke import gpu as smoke_gpu

    for name in ("MATMUL", "FLASHINFER", "SGL_KERNEL", "MAKE_MODEL"):
        compile(getattr(smoke_gpu, name), name, "exec")


def test_gpu_checks_know_the_spec_s_accepted_gaps(root: Path) -> None:
    """On a GPU whose capability sgl-kernel has no code for (as the spec accepts), its check is skipped."""
    from sglang_matrix.smoke.variant import variant_from_spec
    from sglang_matrix.spec import load_spec

    spec = load_spec(root / "matrix.toml")
    variant = variant_from_spec(spec, "sglang-sm75-avx2")
    wheels = spec.lines[variant.data["line"]].wheels
    assert variant.gaps["gpu:sgl-kernel"] == dict(wheels["sgl-kernel"].gpu_code_gaps)
    assert {"6.1", "7.5"} <= set(variant.gaps["gpu:sgl-kernel"])
    assert "cannot run on Turing" in variant.gaps["gpu:sgl-kernel"]["7.5"]
    assert variant.gaps.get("gpu:flashinfer", {}) == dict(wheels["flashinfer-python"].gpu_code_gaps)


# ------------------------------------------------------------------------------------------------ layout


def test_smoke_and_host_are_small_modules_with_one_way_imports(root: Path) -> None:
    """smoke/ and host/: no module over 500 lines, and no import circle (a module imported at run time,
    inside a function, counts as well)."""
    import ast

    tools = root / "tools" / "sglang_matrix"
    modules = {p: p for package in ("smoke", "host") for p in sorted((tools / package).glob("*.py"))}
    graph: dict[str, set[str]] = {}
    for path in modules:
        assert len(path.read_text().splitlines()) <= 500, path
        name = f"{path.parent.name}.{path.stem}"
        graph[name] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                targets = [node.module] if node.module else [a.name for a in node.names]
                graph[name] |= {f"{path.parent.name}.{t.split('.')[0]}" for t in targets}
    graph = {k: {t for t in v if t in graph and t != k} for k, v in graph.items()}
    done: set[str] = set()

    def visit(node: str, stack: tuple[str, ...]) -> None:
        assert node not in stack, " -> ".join((*stack, node))
        if node in done:
            return
        for target in graph[node]:
            visit(target, (*stack, node))
        done.add(node)

    for node in graph:
        visit(node, ())
    assert "smoke.__init__" in graph and graph["smoke.gpu"] <= {"smoke.model", "smoke.run"}
