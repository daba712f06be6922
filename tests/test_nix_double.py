"""The nixpkgs test double is faithful where nixpkgs derives a value, and strict where it refuses: each
case models a nixpkgs file (cited in tests/nixpkgs-double), evaluated with Nix 2.26."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import nix_env
from test_nix import DOUBLE

X86 = 'system = "x86_64-linux"'
CUDA = 'config = { allowUnfree = true; cudaSupport = true; cudaCapabilities = [ "9.0" "10.0" ]; }'


def evaluate(nix_bin: Path, expr: str, double: Path = DOUBLE) -> subprocess.CompletedProcess[str]:
    """EXPR evaluated strictly to JSON in the double's directory (`import ./.` is that pin's nixpkgs)."""
    return subprocess.run(
        ["nix-instantiate", "--eval", "--strict", "--json", "--expr", expr],
        cwd=double,
        env=nix_env(nix_bin),
        capture_output=True,
        text=True,
        check=False,
    )


def value(nix_bin: Path, expr: str, double: Path = DOUBLE) -> object:
    proc = evaluate(nix_bin, expr, double)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def error(nix_bin: Path, expr: str, double: Path = DOUBLE) -> str:
    proc = evaluate(nix_bin, expr, double)
    assert proc.returncode != 0, proc.stdout
    return proc.stderr


def test_name_is_late_bound_from_the_final_pname(nix_bin: Path) -> None:
    """mk-python-derivation: name = namePrefix + "${finalAttrs.pname}-${finalAttrs.version}"."""
    ps = f"(import ./. {{ {X86}; }}).python312.pkgs"
    base = f'({ps}.buildPythonPackage {{ pname = "x"; version = "1"; format = "other"; }})'
    assert value(nix_bin, f'({base}.overrideAttrs (old: {{ pname = "y"; }})).name') == "python3.12-y-1"
    # A layer's prevAttrs.name already carries that layer's pname: setting both repeats it.
    doubled = f'({base}.overrideAttrs (old: {{ pname = "x-tag"; name = "${{old.name}}-tag"; }})).name'
    assert value(nix_bin, doubled) == "python3.12-x-tag-1-tag"
    torch = f'({ps}.torch.overrideAttrs (old: {{ pname = "torch-t"; }})).name'
    assert value(nix_bin, torch) == "python3.12-torch-t-2.9.1"


def test_capability_list_keeps_the_duplicate(nix_bin: Path) -> None:
    """torch's passthru.cudaCapabilities = intersectLists config's list and torch's list, which holds
    "10.0" twice at the pin."""
    caps = value(nix_bin, f"(import ./. {{ {X86}; {CUDA}; }}).python312.pkgs.torch.cudaCapabilities")
    assert caps == ["9.0", "10.0", "10.0"]


def test_python_environments_have_no_extra_libs(nix_bin: Path) -> None:
    env = f"((import ./. {{ {X86}; }}).python312.withPackages (ps: [ ps.transformers ]))"
    assert value(nix_bin, f"{env} ? extraLibs") is False
    names = value(nix_bin, f"map (p: p.name) {env}.paths")
    # buildEnv links the Python modules the libraries propagate, recursively, and the interpreter.
    assert "python3.12-transformers-0-double" in names and "python3.12-safetensors-0-double" in names
    assert "python3-3.12.12" in names


def test_aarch64_torch_has_extra_cflags(nix_bin: Path) -> None:
    expr = "system: (import ./. {{ inherit system; }}).python312.pkgs.torch.env.NIX_CFLAGS_COMPILE"
    flags = value(nix_bin, f'map ({expr.format()}) [ "x86_64-linux" "aarch64-linux" ]')
    assert flags[0] == "-Wno-error"
    assert flags[1].startswith("-Wno-error ") and len(flags[1].split()) == 2


def test_torch_is_broken_for_cuda_13(nix_bin: Path) -> None:
    pkgs = (
        f"(import ./. {{ {X86}; config = {{ allowUnfree = true; cudaSupport = true; "
        f'cudaCapabilities = [ "9.0" ]; ALLOW }}; overlays = [ (final: prev: {{ cudaPackages = '
        f"final.cudaPackages_13_0; }}) ]; }})"
    )
    message = error(nix_bin, f"{pkgs.replace('ALLOW', '')}.python312.pkgs.torch.drvPath")
    assert "is marked as broken, refusing to evaluate" in message
    assert value(nix_bin, f"{pkgs.replace('ALLOW', 'allowBroken = true;')}.python312.pkgs.torch.meta.broken")
    # CUDA 12 is not broken.
    ok = pkgs.replace("ALLOW", "").replace("cudaPackages_13_0", "cudaPackages_12_8")
    assert value(nix_bin, f"{ok}.python312.pkgs.torch.meta.broken") is False


def test_capability_assertion(nix_bin: Path) -> None:
    """12.1 needs CUDA 12.9: with 12.8 the CUDA derivations fail when instantiated, with nixpkgs' bare
    message; their other attributes still evaluate."""
    pkgs = f'(import ./. {{ {X86}; config = {{ allowUnfree = true; cudaCapabilities = [ "12.1" ]; }}; }})'
    assert "assertion 'condition' failed" in error(nix_bin, f"{pkgs}.cudaPackages_12_8.cuda_cudart.drvPath")
    assert value(nix_bin, f"{pkgs}.cudaPackages_12_8.cuda_cudart.pname") == "cuda12.8-cuda_cudart"
    assert value(nix_bin, f"builtins.isString {pkgs}.cudaPackages_12_9.cuda_cudart.drvPath") is True


def test_cuda_needs_allow_unfree(nix_bin: Path) -> None:
    message = error(nix_bin, f"(import ./. {{ {X86}; }}).cudaPackages_12_8.libcurand.drvPath")
    assert "has an unfree license" in message and "refusing to evaluate" in message
    allowed = f"(import ./. {{ {X86}; config.allowUnfree = true; }}).cudaPackages_12_8.libcurand.drvPath"
    assert value(nix_bin, f"builtins.isString {allowed}") is True


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ('format = "wheel"; pyproject = true;', "give pyproject or format, not both"),
        ("", "set `pyproject` or `format`"),
    ],
)
def test_build_python_package_wants_exactly_one_of_format_and_pyproject(
    nix_bin: Path, args: str, message: str
) -> None:
    ps = f"(import ./. {{ {X86}; }}).python312.pkgs"
    expr = f'{ps}.buildPythonPackage {{ pname = "x"; version = "1"; {args} }}'
    assert message in error(nix_bin, f"({expr}).drvPath")


def test_fetchurl_takes_one_hash(nix_bin: Path) -> None:
    both = (
        f'(import ./. {{ {X86}; }}).fetchurl {{ url = "https://example.invalid/x"; '
        'hash = "sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="; sha256 = "0000"; }'
    )
    assert "multiple hashes passed to fetchurl" in error(nix_bin, f"({both}).drvPath")


def test_remove_deps_attribute_adds_the_relax_hook_even_when_false(nix_bin: Path) -> None:
    expr = (
        f"map (extra: map (x: x.name) ((import ./. {{ {X86}; }}).python312.pkgs.buildPythonPackage "
        '({ pname = "x"; version = "1"; format = "wheel"; } // extra)).nativeBuildInputs) '
        "[ { } { pythonRemoveDeps = false; } ]"
    )
    without, with_false = value(nix_bin, expr)
    assert "python-relax-deps-hook" not in without
    assert "python-relax-deps-hook" in with_false


def test_check_inputs_are_inputs_only_while_checks_run(nix_bin: Path) -> None:
    """torchao's nativeCheckInputs (bitsandbytes, built against torch) are build inputs while its checks
    run (the default), and drop out with doCheck = false."""
    ps = f"(import ./. {{ {X86}; }}).python312.pkgs"
    inputs = "d: { names = map (x: x.name) d.nativeBuildInputs; drv = d.drvPath; }"
    off_expr = f"{ps}.torchao.overridePythonAttrs {{ doCheck = false; }}"
    on, off = value(nix_bin, f"let f = {inputs}; in [ (f {ps}.torchao) (f ({off_expr})) ]")
    assert "python3.12-bitsandbytes-0-double" in on["names"]
    assert "python3.12-bitsandbytes-0-double" not in off["names"]
    assert on["drv"] != off["drv"]


def test_torchvision_takes_torch_from_the_package_set(nix_bin: Path) -> None:
    """packageOverrides' torch reaches nixpkgs' torchvision (python-modelled.nix cites its expression)."""
    expr = (
        f"let py = (import ./. {{ {X86}; {CUDA}; }}).python312.override {{ packageOverrides = final: prev: "
        '{ torch = prev.torch.overrideAttrs (old: { pname = "torch-mine"; }); }; }; in '
        "map (x: x.name) py.pkgs.torchvision.propagatedBuildInputs"
    )
    assert "python3.12-torch-mine-2.9.1" in value(nix_bin, expr)
