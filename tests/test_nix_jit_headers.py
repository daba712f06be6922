"""The runtime JIT's CUDA_HOME holds what the JIT sources include: matrix.toml's [jit-headers] checked
against the real wheels (FlashInfer 0.6.5's and sglang 0.5.9's JIT sources, sgl-kernel's DeepGEMM headers
where its 535 MB wheel is already cached), the header table against NVIDIA's own header lists, and
pkgs/cuda-home.nix against the table through lib/ (nixpkgs test double, Nix 2.26)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
    toolkit_headers,
)
from sglang_matrix.lockfile import fetch_index_wheel, wanted_wheels
from sglang_matrix.spec import load_spec
from test_nix import DOUBLE, eval_flake

SPEC = load_spec(ROOT / "matrix.toml")
TABLE = load_table(SPEC)
# What pkgs/sglang-env.nix's CUDA_HOME held before the table (a hand list): no cuRAND.
HAND_LIST = ("cuda_nvcc", "cuda_cudart", "cuda_cccl", "cuda_nvrtc", "libcublas")
# Wheels small enough to fetch in CI; sgl-kernel (535 MB) is checked only where it is already cached.
FETCHED = {
    "flashinfer-python": "flashinfer_python-0.6.5-py3-none-any.whl",
    "sglang": "sglang-0.5.9-py3-none-any.whl",
}
SGL_KERNEL = "sgl_kernel-0.3.21-cp310-abi3-manylinux2014_x86_64.whl"


def wheel_cache() -> Path:
    return Path(os.environ.get("SGLANG_MATRIX_WHEEL_CACHE") or cache_dir("wheels"))


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


# ---- the table against NVIDIA's header lists ---------------------------------------------------------

# NVIDIA's redistributables for CUDA 12.8 as pip ships them: the same include/ trees nixpkgs packages.
# Only the small ones are fetched in CI; curand (64 MB) and nvrtc (88 MB) where cached.
TOOLKIT = {
    "cuda_cudart": ("nvidia-cuda-runtime-cu12==12.8.90", True),
    "cuda_cccl": ("nvidia-cuda-cccl-cu12==12.8.90", True),
    "libcurand": ("nvidia-curand-cu12==10.3.9.90", False),
    "cuda_nvrtc": ("nvidia-cuda-nvrtc-cu12==12.8.93", False),
}


def toolkit_wheel(requirement: str, fetch: bool) -> Path | None:
    cache = wheel_cache() / "toolkit"
    name = requirement.split("==")[0].replace("-", "_")
    found = sorted(cache.glob(f"{name}-*.whl"))
    if found or not fetch:
        return found[0] if found else None
    cache.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet"]
    cmd += ["--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_27_x86_64"]
    cmd += ["--python-version", "3.12", "--implementation", "cp", "-d", str(cache), requirement]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.skip(f"cannot download {requirement} through pip: {proc.stderr.strip()[-300:]}")
    found = sorted(cache.glob(f"{name}-*.whl"))
    return found[0] if found else None


@pytest.mark.network
def test_each_cuda_entry_names_the_package_that_ships_it() -> None:
    headers = {}
    for attr, (requirement, fetch) in TOOLKIT.items():
        path = toolkit_wheel(requirement, fetch)
        if path is not None:
            headers[attr] = toolkit_headers(path)
    assert {"cuda_cudart", "cuda_cccl"} <= set(headers)
    assert "cuda_runtime.h" in headers["cuda_cudart"] and "cub/cub.cuh" in headers["cuda_cccl"]
    assert check_against_toolkit(TABLE, headers) == []
    # And a wrong entry is caught: curand's headers are not cudart's.
    wrong = replace(TABLE, cuda={**TABLE.cuda, "cuda_fp16.h": "cuda_cccl"})
    assert any("cuda_fp16.h" in p for p in check_against_toolkit(wrong, headers))


# ---- classification and the table's validation (no network) --------------------------------------------


def test_classify() -> None:
    names = {"pkg/include/a/util.cuh", "pkg/include/a/x.cuh"}
    inc = [
        Include("pkg/include/a/x.cuh", 1, "curand_kernel.h", True),  # CUDA: libcurand
        Include("pkg/include/a/x.cuh", 2, "util.cuh", False),  # beside the includer
        Include("pkg/include/a/x.cuh", 3, "a/util.cuh", True),  # under an include directory
        Include("pkg/include/a/x.cuh", 4, "vector", True),  # C++ standard library
        Include("pkg/include/a/x.cuh", 5, "tvm/ffi/function.h", True),  # [jit-headers.other]
        Include("pkg/include/a/x.cuh", 6, "cusparse.h", True),  # a CUDA header no entry covers
    ]
    report = classify("w.whl", inc, names, TABLE)
    assert report.cuda == {"libcurand": {"curand_kernel.h": ["pkg/include/a/x.cuh:1"]}}
    assert set(report.other) == {"tvm/ffi/function.h"}
    assert report.uncovered == {"cusparse.h": ["pkg/include/a/x.cuh:6"]}
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
            'sglang = ["sglang/jit_kernel"]',
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
    assert json.loads(proc.stdout) == TABLE.parts()


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
