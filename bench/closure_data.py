"""The fixed facts bench/closure counts with: which wheels stand in for which nixpkgs packages, the
sizes NVIDIA's manifests give, what nixpkgs' torch does not link, and the target. Each says where it was
read; closure_parts.py adds up, closure_measure.py measures.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

MB = 1e6
# `pip install sglang==0.5.9`, Python 3.12, x86_64, as FACTS.md records it (169 distributions): a
# cross-check for the baseline that --measure takes again.
FACTS_BASELINE = 10_973_509_908
TARGET = ("sglang-sm90-avx512", 0.6)
# The variants the recorded sizes describe (pip's cu128 wheels for CPython 3.12 on x86_64).
MEASURED = {"system": "x86_64-linux", "python": "3.12", "cuda": "12.8"}

NIXPKGS_TORCH = "nixpkgs pkgs/development/python-modules/torch/source/default.nix @ 6b516b42"
MANIFEST = "nixpkgs pkgs/development/cuda-modules/cuda/manifests/redistrib_12.8.1.json @ f803fb87"
CUDNN_MANIFEST = (
    "nixpkgs pkgs/development/cuda-modules/_cuda/manifests/cudnn/redistrib_9.13.0.json @ cd53001d"
)


@dataclass(frozen=True)
class CudaLib:
    """A CUDA library nixpkgs' torch links (its buildInputs at the pin), with pip's wheel as the proxy.

    `archive` is the size NVIDIA's manifest gives (the .tar.xz download, static libraries and headers
    included): neither the unpacked size nor a bound of the `lib` output the closure holds, so it is
    shown beside the proxy, never added."""

    key: str
    label: str
    requirement: str
    nixpkgs: str
    archive: int | None
    switch: str | None = None
    note: str = ""


CUDA_LIBS = (
    CudaLib("cublas", "cuBLAS", "nvidia-cublas-cu12==12.8.4.1", "libcublas 12.8.4.1", 938_651_324),
    CudaLib(
        "cudnn",
        "cuDNN",
        "nvidia-cudnn-cu12==9.13.0.50",
        "cudnn 9.13.0.50",
        873_944_756,
        "cudnn",
        "nixpkgs' cuDNN at the pin; pip's torch 2.9.1 pins 9.10.2.21",
    ),
    CudaLib("cusparse", "cuSPARSE", "nvidia-cusparse-cu12==12.5.8.93", "libcusparse 12.5.8.93", 322_479_876),
    CudaLib(
        "cusparselt",
        "cuSPARSELt",
        "nvidia-cusparselt-cu12==0.7.1",
        "libcusparse_lt",
        None,
        "cusparselt",
        "pip's torch 2.9.1 pin; nixpkgs' version at the pin not read",
    ),
    CudaLib("cufft", "cuFFT", "nvidia-cufft-cu12==11.3.3.83", "libcufft 11.3.3.83", 448_695_100),
    CudaLib("curand", "cuRAND", "nvidia-curand-cu12==10.3.9.90", "libcurand 10.3.9.90", 88_606_668),
    CudaLib("cusolver", "cuSOLVER", "nvidia-cusolver-cu12==11.7.3.90", "libcusolver 11.7.3.90", 256_328_120),
    CudaLib("nvrtc", "NVRTC", "nvidia-cuda-nvrtc-cu12==12.8.93", "cuda_nvrtc 12.8.93", 114_287_212),
    CudaLib("nvjitlink", "nvJitLink", "nvidia-nvjitlink-cu12==12.8.93", "libnvjitlink 12.8.93", 53_997_360),
    CudaLib("cupti", "CUPTI", "nvidia-cuda-cupti-cu12==12.8.90", "cuda_cupti 12.8.90", 15_383_056),
    CudaLib("cudart", "cudart", "nvidia-cuda-runtime-cu12==12.8.90", "cuda_cudart 12.8.90", 1_354_240),
)
# Other wheels --measure reads: torch (host and device code), NCCL (static in nixpkgs' torch), triton,
# the JIT toolchain's nvcc and CCCL, and nvFatbin for the compression experiment.
OTHER_WHEELS = {
    "torch": "torch==2.9.1",
    "nccl": "nvidia-nccl-cu12==2.27.5",
    "triton": "triton==3.5.1",
    "nvcc": "nvidia-cuda-nvcc-cu12==12.8.93",
    "cccl": "nvidia-cuda-cccl-cu12==12.8.90",
    "nvfatbin": "nvidia-nvfatbin-cu12==12.8.90",
}
NOT_LINKED = {
    "cuFile": "torch's USE_CUFILE defaults to OFF and nixpkgs does not set it (pip's CI turns it on)",
    "NVSHMEM": f"not among torch's buildInputs ({NIXPKGS_TORCH}); pip's torch depends on it",
    "NVTX": "header-only (nvtx3) in torch 2.9",
}
# torch's `dependencies` in nixpkgs (triton is a part of its own); triton's in nixpkgs.
TORCH_NIX_DEPS = (
    "astunparse", "expecttest", "filelock", "fsspec", "hypothesis", "jinja2", "networkx", "ninja",
    "packaging", "psutil", "pyyaml", "requests", "sympy", "types-dataclasses", "typing-extensions",
    "pillow", "six", "tensorboard", "protobuf", "pybind11",
)  # fmt: skip
TRITON_NIX_DEPS = ("filelock", "setuptools")
# pip distributions that are parts of their own here, not Python dependencies.
_CUDA_WHEEL = re.compile(r"^nvidia-[a-z0-9-]+-cu1\d$")
SEPARATE = {"torch", "triton"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def is_separate(name: str, line_wheels: Iterable[str]) -> bool:
    """Distributions that are parts of their own (torch, triton, CUDA libraries, the line's wheels)."""
    name = canonical(name)
    return name in SEPARATE or bool(_CUDA_WHEEL.match(name)) or name in {canonical(w) for w in line_wheels}
