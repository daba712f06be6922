"""The pin-B nixpkgs double (tests/nixpkgs-double-0_5_23, nixpkgs 494ce7fd) has what pin B has, refuses
what it lacks, and derives values as nixpkgs does (each case cites the file in the double's pin.nix)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import test_nix_double
from conftest import ROOT, nix_env

DOUBLE_B = ROOT / "tests" / "nixpkgs-double-0_5_23"
X86 = 'system = "x86_64-linux"'


def pkgs(caps: str = '"9.0" "10.0"', extra: str = "") -> str:
    return (
        f"(import ./. {{ {X86}; config = {{ allowUnfree = true; cudaSupport = true; "
        f"cudaCapabilities = [ {caps} ]; {extra} }}; }})"
    )


def evaluate(nix_bin: Path, expr: str) -> subprocess.CompletedProcess[str]:
    return test_nix_double.evaluate(nix_bin, expr, DOUBLE_B)


def value(nix_bin: Path, expr: str) -> object:
    return test_nix_double.value(nix_bin, expr, DOUBLE_B)


def error(nix_bin: Path, expr: str) -> str:
    return test_nix_double.error(nix_bin, expr, DOUBLE_B)


def test_default_sets_follow_all_packages(nix_bin: Path) -> None:
    """all-packages.nix of the era: cudaPackages = 12_9, cudaPackages_13 = 13_2; python3 = python314."""
    got = value(
        nix_bin,
        f"let p = {pkgs()}; in [ p.cudaPackages.cudaMajorMinorVersion "
        "p.cudaPackages_13.cudaMajorMinorVersion p.python3.pythonVersion p.python313.sitePackages "
        "p.python312.interpreter ]",
    )
    assert got[:4] == ["12.9", "13.2", "3.14", "lib/python3.13/site-packages"]
    assert str(got[4]).endswith("/bin/python3.12")


def test_cuda_13_0_is_13_0_3(nix_bin: Path) -> None:
    """redistrib_13.0.3.json: the versions torch 2.14.1's pip pins match."""
    names = ["cuda_cudart", "cuda_nvrtc", "libcublas", "libcufft", "libcusparse"]
    listed = " ".join(f'"{n}"' for n in names)
    got = value(nix_bin, f"map (n: {pkgs()}.cudaPackages_13_0.${{n}}.version) [ {listed} ]")
    assert got == ["13.0.96", "13.0.88", "13.1.1.3", "12.0.0.61", "12.6.3.3"]


def test_nccl_follows_the_capabilities_and_redistributables_do_not(nix_bin: Path) -> None:
    """nccl is built from source with flags' gencode (PTX for the last capability); cudart is not."""
    expr = (
        'map (caps: let c = (import ./. { system = "x86_64-linux"; config = { allowUnfree = true; '
        "cudaCapabilities = caps; }; }).cudaPackages_13_0; in "
        "{ n = c.nccl.drvPath; r = c.cuda_cudart.drvPath; f = c.nccl.makeFlags; }) "
        '[ [ "9.0" ] [ "9.0" "10.0" ] ]'
    )
    one, two = value(nix_bin, expr)
    assert one["n"] != two["n"] and one["r"] == two["r"]
    assert two["f"] == [
        "NVCC_GENCODE=-gencode=arch=compute_90,code=sm_90 -gencode=arch=compute_100,code=sm_100 "
        "-gencode=arch=compute_100,code=compute_100"
    ]


@pytest.mark.parametrize(("cap", "ok"), [("7.0", False), ("6.1", False), ("12.1a", True), ("10.3f", True)])
def test_cuda_13_capability_ranges(nix_bin: Path, cap: str, ok: bool) -> None:
    """bootstrap/cuda.nix: 6.x/7.0 end at 12.9 (CUDA 13 cannot build them); the a/f forms start at 12.9."""
    expr = f'(import ./. {{ {X86}; config = {{ allowUnfree = true; cudaCapabilities = [ "{cap}" ]; }}; }})'
    drv = f"{expr}.cudaPackages_13_0.cuda_cudart.drvPath"
    if ok:
        assert value(nix_bin, f"builtins.isString {drv}") is True
    else:
        assert "assertion 'condition' failed" in error(nix_bin, drv)
        assert value(nix_bin, f"builtins.isString {expr}.cudaPackages_12_9.cuda_cudart.drvPath") is True


def test_names_pin_b_lacks_fail(nix_bin: Path) -> None:
    for expr in (
        f"{pkgs()}.python313.pkgs.cuda-python.name",
        f"{pkgs()}.python313.pkgs.sgl-kernel.name",
        f"{pkgs()}.cudaPackages_12_6.cuda_cudart.name",
    ):
        assert "attribute" in error(nix_bin, expr) and "missing" in error(nix_bin, expr)
    assert value(nix_bin, f"{pkgs()}.python313.pkgs.hf-xet.name") == "python3.13-hf-xet-0-double"
    assert value(nix_bin, f"{pkgs()}.zlib.name") == "zlib-1.3.1"


def test_compressed_tensors_checks_pull_accelerate(nix_bin: Path) -> None:
    """compressed-tensors 0.17.1's nativeCheckInputs (accelerate, a torch consumer) while checks run."""
    ps = f"{pkgs()}.python313.pkgs"
    expr = (
        f"let f = d: map (x: x.name) d.nativeBuildInputs; in [ (f {ps}.compressed-tensors) "
        f"(f ({ps}.compressed-tensors.overridePythonAttrs {{ doCheck = false; }})) ]"
    )
    on, off = value(nix_bin, expr)
    assert "python3.13-accelerate-0-double" in on and "python3.13-accelerate-0-double" not in off


def test_nixpkgs_torch_is_strict_at_pin_b(nix_bin: Path) -> None:
    """torch 2.12.0 (the last version seen on the channel): broken for CUDA 13 (not found allowed), and
    2.13.0's dropped arguments refused."""
    cuda13 = f"{pkgs()}.python313.pkgs.torch.override {{ cudaPackages = {pkgs()}.cudaPackages_13_0; }}"
    assert "is marked as broken" in error(nix_bin, f"({cuda13}).drvPath")
    assert value(nix_bin, f"{pkgs()}.python313.pkgs.torch.name") == "python3.13-torch-2.12.0"
    typo = f"({pkgs()}.python313.pkgs.torch.override {{ astunparse = null; }}).drvPath"
    assert "unexpected argument 'astunparse'" in error(nix_bin, typo)


def test_flake_reads_the_shared_code_through_dir(nix_bin: Path) -> None:
    """The flake imports ../nixpkgs-double, so it is read as path:tests?dir=nixpkgs-double-0_5_23."""
    proc = subprocess.run(
        ["nix", "eval", "--json", f"path:{ROOT / 'tests'}?dir=nixpkgs-double-0_5_23#lib.fakeHash"],
        env=nix_env(nix_bin),
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout).startswith("sha256-")
