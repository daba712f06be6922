"""The runtime JIT's CUDA_HOME holds what the JIT sources include: matrix.toml's [jit-headers] checked
against the real wheels (FlashInfer 0.6.5's and sglang 0.5.9's JIT sources; sgl-kernel's DeepGEMM headers
where its 535 MB wheel is already cached; the 0.5.23 line's FlashInfer 0.7.2, sglang 0.5.23 and
sgl-deep-gemm, fetched into the lock's wheel cache, which the line's rehearsal then reuses), the header
table against NVIDIA's own header lists for CUDA 12.8 and 13.0, and pkgs/cuda-home.nix against the table
through lib/ (nixpkgs test double, Nix 2.26)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import ROOT, nix_env
from sglang_matrix.errors import SpecError, UserError
from sglang_matrix.fsutil import cache_dir
from sglang_matrix.jit_headers import (
    Include,
    check_against_toolkit,
    check_wheel,
    classify,
    load_table,
    scan_wheel,
    toolkit_headers,
)
from sglang_matrix.lockfile import fetch_index_wheel, wanted_wheels
from sglang_matrix.spec import load_spec
from test_nix import DOUBLE, eval_flake

SPEC = load_spec(ROOT / "matrix.toml")
TABLE = load_table(SPEC)
# What pkgs/sglang-env.nix's CUDA_HOME held before the table (a hand list): no cuRAND.
HAND_LIST = ("cuda_nvcc", "cuda_cudart", "cuda_cccl", "cuda_nvrtc", "libcublas")
# CUDA_HOME's parts, the same for every variant of both lines (lib/default.nix jitCudaParts): the 0.5.9
# line's derivations must not change, so a 0.5.23 header of another package is a gap in [jit-headers.other].
PARTS = ["cuda_cccl", "cuda_cudart", "cuda_nvcc", "cuda_nvrtc", "libcublas", "libcurand"]
# Wheels small enough to fetch in CI; sgl-kernel (535 MB) is checked only where it is already cached.
FETCHED = {
    "flashinfer-python": "flashinfer_python-0.6.5-py3-none-any.whl",
    "sglang": "sglang-0.5.9-py3-none-any.whl",
}
SGL_KERNEL = "sgl_kernel-0.3.21-cp310-abi3-manylinux2014_x86_64.whl"
# The 0.5.23 line's wheels with JIT sources, fetched into the lock's wheel cache (about 110 MB; the line's
# rehearsal in CI takes flashinfer and sgl-deep-gemm from there afterwards).
LINE_0523 = {
    "flashinfer-python": "flashinfer_python-0.7.2-py3-none-any.whl",
    "sglang": "sglang-0.5.23-cp312-cp312-manylinux_2_34_x86_64.whl",
    "sgl-deep-gemm": "sgl_deep_gemm-0.2.3.post2-py3-none-manylinux2014_x86_64.whl",
}


def wheel_cache() -> Path:
    return Path(os.environ.get("SGLANG_MATRIX_WHEEL_CACHE") or cache_dir("wheels"))


def cached_wheel(filename: str) -> Path:
    path = wheel_cache() / filename
    if not path.is_file():
        pytest.skip(f"{filename} is not in {wheel_cache()}; this test does not download it")
    return path


def real_wheel(filename: str) -> Path:
    want = wanted_wheels(SPEC)[filename]
    try:
        return fetch_index_wheel(want, wheel_cache())
    except (UserError, OSError) as e:
        pytest.skip(f"cannot download {filename} through pip: {e}")


# ---- the scan on the real wheels ------------------------------------------------------------------------


@pytest.mark.network
@pytest.mark.parametrize("attr", sorted(FETCHED))
def test_every_include_of_the_jit_sources_is_covered(attr: str) -> None:
    report = check_wheel(real_wheel(FETCHED[attr]), attr, TABLE)
    assert report.ok, json.dumps(report.to_json()["uncovered"], indent=1)
    assert report.files > 30
    # Every CUDA package the sources include is in CUDA_HOME's list (lib/ computes the same list).
    assert set(report.cuda) <= set(TABLE.parts())


@pytest.mark.network
def test_flashinfer_sampling_needs_curand() -> None:
    """FlashInfer's sampling kernels include cuRAND: the 12.9 and aarch64 variants have no jit-cache
    wheel and compile them at run time, so CUDA_HOME must hold libcurand."""
    report = check_wheel(real_wheel(FETCHED["flashinfer-python"]), "flashinfer-python", TABLE)
    curand = report.cuda["libcurand"]
    assert {"curand.h", "curand_kernel.h", "curand_philox4x32_x.h"} <= set(curand)
    assert any(w.startswith("flashinfer/data/include/flashinfer/sampling.cuh:") for w in curand["curand.h"])
    assert "libcurand" in TABLE.parts()
    assert "libcurand" not in HAND_LIST


@pytest.mark.network
def test_a_table_without_curand_fails_the_scan() -> None:
    """The scan catches a missing package: with cuRAND's entry removed (the hand list's coverage), the
    curand headers are uncovered, each with where it is included."""
    table = replace(TABLE, cuda={g: a for g, a in TABLE.cuda.items() if a != "libcurand"})
    report = check_wheel(real_wheel(FETCHED["flashinfer-python"]), "flashinfer-python", table)
    assert not report.ok
    assert "curand_kernel.h" in report.uncovered
    assert any("sampling.cuh" in w for w in report.uncovered["curand_kernel.h"])


def test_sgl_kernel_deep_gemm_headers_when_cached() -> None:
    path = wheel_cache() / SGL_KERNEL
    if not path.is_file():
        pytest.skip(f"{SGL_KERNEL} (535 MB) is not in {wheel_cache()}; CI does not download it")
    report = check_wheel(path, "sgl-kernel", TABLE)
    assert report.ok, report.to_json()["uncovered"]
    assert set(report.cuda) == {"cuda_cudart", "cuda_cccl"}


def test_the_0_5_23_wheels_are_the_lines() -> None:
    """The file names below are the ones the line fetches (a version bump must update this test)."""
    assert set(LINE_0523.values()) <= set(wanted_wheels(SPEC))
    assert {SPEC.lines["0.5.23"].wheels[attr].version for attr in LINE_0523} == {
        "0.7.2",
        "0.5.23",
        "0.2.3.post2",
    }


@pytest.mark.network
@pytest.mark.parametrize("attr", sorted(LINE_0523))
def test_every_include_of_the_0_5_23_jit_sources_is_covered(attr: str) -> None:
    report = check_wheel(real_wheel(LINE_0523[attr]), attr, TABLE)
    assert report.ok, json.dumps(report.to_json()["uncovered"], indent=1)
    assert set(report.cuda) <= set(PARTS)
    assert "math_constants.h" not in report.uncovered


@pytest.mark.network
def test_flashinfer_0_7_2_headers() -> None:
    """FlashInfer 0.7.2 needs every part but nvcc; its NCCL device-API module is the one gap."""
    report = check_wheel(real_wheel(LINE_0523["flashinfer-python"]), "flashinfer-python", TABLE)
    assert set(report.cuda) == {"cuda_cccl", "cuda_cudart", "cuda_nvrtc", "libcublas", "libcurand"}
    assert {"math_constants.h", "cuda_awbarrier_primitives.h"} <= set(report.cuda["cuda_cudart"])
    assert "nccl_device.h" in report.other and "ATen/ATen.h" in report.other
    # The fmha_v2 templates' `fused_multihead_attention_kernel_{{ kernel_variant }}.h` are shipped files.
    assert not any("{{" in h for h in report.other)


@pytest.mark.network
def test_sglang_0_5_23_reads_its_moved_jit_sources() -> None:
    """0.5.23 moved sglang/jit_kernel to sglang/kernels/jit: with 0.5.9's root alone the scan finds nothing;
    with both roots it scans the new tree, and the 0.5.9 wheel (which lacks it) still passes."""
    path = real_wheel(LINE_0523["sglang"])
    with pytest.raises(ValueError, match="no JIT sources"):
        check_wheel(path, "sglang", replace(TABLE, roots={**TABLE.roots, "sglang": ("sglang/jit_kernel",)}))
    report = check_wheel(path, "sglang", TABLE)
    assert report.files > 200 and set(report.cuda) == {"cuda_cccl", "cuda_cudart"}
    assert {"cublasdx.hpp", "hip/hip_runtime.h", "torch/extension.h"} <= set(report.other)
    includes, _ = scan_wheel(path, TABLE.roots["sglang"])
    assert {i.file.split("/")[1] for i in includes} == {"kernels"}


@pytest.mark.network
def test_sgl_deep_gemm_headers() -> None:
    report = check_wheel(real_wheel(LINE_0523["sgl-deep-gemm"]), "sgl-deep-gemm", TABLE)
    assert report.ok and set(report.cuda) == {"cuda_cudart", "cuda_cccl"} and report.files > 50


@pytest.mark.network
def test_the_0_5_23_headers_fail_the_old_table() -> None:
    """Without this issue's entries (math_constants.h, the torch headers), FlashInfer 0.7.2 is uncovered."""
    table = replace(
        TABLE,
        cuda={g: a for g, a in TABLE.cuda.items() if g != "math_constants.h"},
        other={g: w for g, w in TABLE.other.items() if g not in ("ATen/*", "torch/*")},
    )
    report = check_wheel(real_wheel(LINE_0523["flashinfer-python"]), "flashinfer-python", table)
    assert {"math_constants.h", "ATen/ATen.h", "torch/library.h"} <= set(report.uncovered)


def test_a_root_the_wheel_lacks_is_another_lines(tmp_path: Path) -> None:
    """Roots are per wheel attribute over both lines: a wheel needs one of them, not all."""
    roots = ("pkg/jit_kernel", "pkg/kernels/jit")
    new, neither = tmp_path / "new.whl", tmp_path / "neither.whl"
    with zipfile.ZipFile(new, "w") as zf:
        zf.writestr("pkg/kernels/jit/include/a.cuh", "#include <cuda_fp16.h>\n#include <math_constants.h>\n")
    with zipfile.ZipFile(neither, "w") as zf:
        zf.writestr("pkg/other/a.cuh", "#include <cuda_fp16.h>\n")
    table = replace(TABLE, roots={**TABLE.roots, "x": roots})
    report = check_wheel(new, "x", table)
    assert report.ok and report.cuda == {
        "cuda_cudart": {
            "cuda_fp16.h": ["pkg/kernels/jit/include/a.cuh:1"],
            "math_constants.h": ["pkg/kernels/jit/include/a.cuh:2"],
        }
    }
    with pytest.raises(ValueError, match="no JIT sources under pkg/jit_kernel, pkg/kernels/jit"):
        check_wheel(neither, "x", table)


# ---- the table against NVIDIA's header lists ---------------------------------------------------------

# NVIDIA's redistributables as pip ships them, per CUDA version: the same include/ trees nixpkgs packages
# (CUDA 13's cu13 wheels nest CCCL in include/cccl/, which nixpkgs un-nests: toolkit_headers). Only the small
# ones are fetched in CI (runtime and cccl, 1-3 MB each); curand, nvrtc and NCCL where cached.
TOOLKIT = {
    "12.8": {
        "cuda_cudart": ("nvidia-cuda-runtime-cu12==12.8.90", True),
        "cuda_cccl": ("nvidia-cuda-cccl-cu12==12.8.90", True),
        "libcurand": ("nvidia-curand-cu12==10.3.9.90", False),
        "cuda_nvrtc": ("nvidia-cuda-nvrtc-cu12==12.8.93", False),
    },
    # The versions of cudaPackages_13_0 (13.0.3) and of torch 2.14.1's cuda-toolkit==13.0.3 pin.
    "13.0": {
        "cuda_cudart": ("nvidia-cuda-runtime==13.0.96", True),
        "cuda_cccl": ("nvidia-cuda-cccl==13.0.85", True),
        "libcurand": ("nvidia-curand==10.4.0.35", False),
        "cuda_nvrtc": ("nvidia-cuda-nvrtc==13.0.88", False),
        "nccl": ("nvidia-nccl-cu13==2.30.7", False),
    },
}


def toolkit_wheel(requirement: str, fetch: bool) -> Path | None:
    cache = wheel_cache() / "toolkit"
    name, version = requirement.replace("-", "_").split("==")
    found = sorted(cache.glob(f"{name}-{version}-*.whl"))
    if found or not fetch:
        return found[0] if found else None
    cache.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet"]
    cmd += ["--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_27_x86_64"]
    cmd += ["--python-version", "3.12", "--implementation", "cp", "-d", str(cache), requirement]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.skip(f"cannot download {requirement} through pip: {proc.stderr.strip()[-300:]}")
    found = sorted(cache.glob(f"{name}-{version}-*.whl"))
    return found[0] if found else None


def toolkit(cuda: str) -> dict[str, set[str]]:
    headers = {}
    for attr, (requirement, fetch) in TOOLKIT[cuda].items():
        path = toolkit_wheel(requirement, fetch)
        if path is not None:
            headers[attr] = toolkit_headers(path)
    return headers


@pytest.mark.network
@pytest.mark.parametrize("cuda", sorted(TOOLKIT))
def test_each_cuda_entry_names_the_package_that_ships_it(cuda: str) -> None:
    headers = toolkit(cuda)
    assert {"cuda_cudart", "cuda_cccl"} <= set(headers)
    assert "cuda_runtime.h" in headers["cuda_cudart"] and "cub/cub.cuh" in headers["cuda_cccl"]
    # FlashInfer 0.7.2's and sglang 0.5.23's new CUDA headers are cudart's in both versions.
    assert {"math_constants.h", "cuda_awbarrier_primitives.h"} <= headers["cuda_cudart"]
    assert check_against_toolkit(TABLE, headers) == []
    # And a wrong entry is caught: curand's headers are not cudart's.
    wrong = replace(TABLE, cuda={**TABLE.cuda, "cuda_fp16.h": "cuda_cccl"})
    assert any("cuda_fp16.h" in p for p in check_against_toolkit(wrong, headers))


@pytest.mark.network
def test_nccl_device_h_is_nccls_and_no_part_ships_it() -> None:
    """[jit-headers.other]'s nccl_device.h gap: NCCL ships it, no part of CUDA_HOME does (CUDA 13.0)."""
    headers = toolkit("13.0")
    if "nccl" not in headers:
        pytest.skip("nvidia-nccl-cu13 (216 MB) is not cached; CI does not download it")
    assert "nccl_device.h" in headers["nccl"]
    assert not any("nccl_device.h" in shipped for attr, shipped in headers.items() if attr in PARTS)
    assert "nccl" not in TABLE.parts()


# ---- classification and the table's validation (no network) --------------------------------------------


def test_classify() -> None:
    names = {"pkg/include/a/util.cuh", "pkg/include/a/x.cuh", "pkg/include/k/kernel_1xN.h"}
    inc = [
        Include("pkg/include/a/x.cuh", 1, "curand_kernel.h", True),  # CUDA: libcurand
        Include("pkg/include/a/x.cuh", 2, "util.cuh", False),  # beside the includer
        Include("pkg/include/a/x.cuh", 3, "a/util.cuh", True),  # under an include directory
        Include("pkg/include/a/x.cuh", 4, "vector", True),  # C++ standard library
        Include("pkg/include/a/x.cuh", 5, "tvm/ffi/function.h", True),  # [jit-headers.other]
        Include("pkg/include/a/x.cuh", 6, "cusparse.h", True),  # a CUDA header no entry covers
        Include("pkg/t/a.jinja", 7, "kernel_{{ variant }}.h", True),  # a template: a shipped file fits
        Include("pkg/t/a.jinja", 8, "kernel_{{ variant }}_noloop.h", True),  # no shipped file fits
    ]
    report = classify("w.whl", inc, names, TABLE)
    assert report.cuda == {"libcurand": {"curand_kernel.h": ["pkg/include/a/x.cuh:1"]}}
    assert set(report.other) == {"tvm/ffi/function.h"}
    assert report.uncovered == {
        "cusparse.h": ["pkg/include/a/x.cuh:6"],
        "kernel_{{ variant }}_noloop.h": ["pkg/t/a.jinja:8"],
    }
    assert not report.ok


@pytest.mark.parametrize(
    ("old", "new", "where", "problem"),
    [
        (
            '"curand*.h" = "libcurand"',
            '"curand*.h" = "libcurandd"',
            'jit-headers.cuda."curand*.h"',
            "not a cudaPackages",
        ),
        (
            "flashinfer-python = [",
            "flashinfer-pythn = [",
            "jit-headers.roots.flashinfer-pythn",
            "names no wheel",
        ),
        (
            'sglang = ["sglang/jit_kernel", "sglang/kernels/jit"]',
            'sglang = ["../x"]',
            "jit-headers.roots.sglang[0]",
            "relative path",
        ),
        (
            'always = ["cuda_nvcc", "cuda_cudart"]',
            'always = ["nvcc"]',
            "jit-headers.always[0]",
            "not a cudaPackages",
        ),
        ('always = ["cuda_nvcc", "cuda_cudart"]', "extra = 1", "jit-headers.extra", "unknown field"),
    ],
)
def test_bad_table_is_one_line_naming_the_field(
    tmp_path: Path, old: str, new: str, where: str, problem: str
) -> None:
    text = (ROOT / "matrix.toml").read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    spec = tmp_path / "matrix.toml"
    spec.write_text(text.replace(old, new), encoding="utf-8")
    with pytest.raises(SpecError) as err:
        load_spec(spec)
    message = str(err.value)
    assert where in message and problem in message and "\n" not in message


# ---- CUDA_HOME: lib/ and Python agree, and the variant's home has cuRAND ---------------------------------


def test_lib_and_python_list_the_same_cuda_parts(nix_bin: Path) -> None:
    proc = subprocess.run(
        ["nix", "eval", "--json", "--file", str(ROOT / "lib" / "default.nix"), "jitCudaParts"],
        env=nix_env(nix_bin),
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == TABLE.parts() == PARTS


def test_the_variants_cuda_home_has_curand(nix_bin: Path) -> None:
    home = eval_flake(
        nix_bin,
        "packages.x86_64-linux",
        "p: builtins.mapAttrs (_: e: { parts = e.cudaHome.jitCudaParts or null; "
        "paths = map (x: x.name) e.cudaHome.paths; }) "
        "{ inherit (p) sglang-sm90-avx512 sglang-python312-cuda12_9-sm90-avx512; }",
    )
    for name, cuda in (("sglang-sm90-avx512", "12.8"), ("sglang-python312-cuda12_9-sm90-avx512", "12.9")):
        paths = home[name]["paths"]
        for part in TABLE.parts():
            assert f"cuda{cuda}-{part}-{cuda}" in paths, (name, part)
        assert f"cuda{cuda}-libcurand-{cuda}" in paths
    assert DOUBLE.is_dir()
