"""The review's findings in the Nix code (issue 10, part 5), each checked against the nixpkgs test double
(tests/nixpkgs-double, which models nixpkgs' behaviour at the pin: see its files' citations):

- no nixpkgs package of a variant's closure runs checks whose inputs are rebuilt against the variant's
  torch (torchao's bitsandbytes, safetensors' torch), and the packages whose build imports torch require
  the ISA's builder feature, as torch does;
- the ISA reaches the builder: gccarch-<march> on torch, torchvision, the import-checking nixpkgs packages
  and the sglang wheel, for every ISA of the matrix;
- `checks` evaluate without instantiating any variant (nixpkgs with CUDA settings).

The JIT's CUDA_HOME is tests/test_nix_jit_headers.py; the store name, the capability list and
pythonRemoveDeps are in tests/test_nix.py; the double's own behaviour is tests/test_nix_double.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT
from sglang_matrix.errors import SpecError
from sglang_matrix.spec import load_spec
from sglang_matrix.variants import resolve_variants
from test_nix import nix, overrides

CLOSURE = """
p: builtins.mapAttrs (_: env:
  let
    torch = env.torch;
    closure = d: map (i: i.drv) (builtins.genericClosure {
      startSet = [ { key = d.outPath; drv = d; } ];
      operator = i: map (x: { key = x.outPath; drv = x; })
        (builtins.filter (x: x ? pythonModule) (i.drv.propagatedBuildInputs or [ ]));
    });
    dependsOnTorch = d: builtins.any (x: x.outPath == torch.outPath) (closure d);
    checkInputs = m: if m.doInstallCheck or false
      then (m.nativeInstallCheckInputs or [ ]) ++ (m.installCheckInputs or [ ]) else [ ];
    modules = builtins.filter (m: m ? pythonModule) env.pythonEnv.paths;
  in {
    offenders = builtins.concatMap (m: map (c: "${m.name} checks with ${c.name}")
      (builtins.filter (x: x ? outPath && dependsOnTorch x) (checkInputs m))) modules;
    checks = builtins.listToAttrs (map (m: { name = m.pname; value = m.doInstallCheck or false; })
      (builtins.filter (m: m ? pname) modules));
    features = builtins.listToAttrs (map (m: { name = m.pname; value = m.requiredSystemFeatures or [ ]; })
      (builtins.filter (m: m ? pname) modules));
    names = map (m: m.name) modules;
  }) { inherit (p) sglang-sm90-avx512 sglang-sm90-avx2 sglang-sm90-armv9; }
"""


@pytest.fixture(scope="module")
def closures(nix_bin: Path) -> dict[str, Any]:
    import json

    out = {}
    for system in ("x86_64-linux", "aarch64-linux"):
        expr = CLOSURE.replace(
            "{ inherit (p) sglang-sm90-avx512 sglang-sm90-avx2 sglang-sm90-armv9; }",
            "{ inherit (p) sglang-sm90-avx512 sglang-sm90-avx2; }"
            if system == "x86_64-linux"
            else "{ inherit (p) sglang-sm90-armv9; }",
        )
        proc = nix(
            nix_bin,
            "eval",
            "--json",
            *overrides(),
            f".#packages.{system}",
            "--apply",
            expr,
        )
        out.update(json.loads(proc.stdout))
    return out


def test_no_test_input_is_rebuilt_against_the_variants_torch(closures: dict[str, Any]) -> None:
    for name, facts in closures.items():
        assert facts["offenders"] == [], name
        # Checks that would run the variant's torch (their tests import it) are off.
        for pname in ("torchao", "compressed-tensors", "safetensors"):
            assert facts["checks"][pname] is False, (name, pname)
        # Nothing reaches the closure only as a test input of torchao or compressed-tensors.
        assert not any(
            n.startswith(("python3.12-bitsandbytes", "python3.12-accelerate")) for n in facts["names"]
        )


def test_builds_that_import_torch_need_the_isa(closures: dict[str, Any]) -> None:
    expected = {
        "sglang-sm90-avx512": "gccarch-x86-64-v4",
        "sglang-sm90-avx2": "gccarch-x86-64-v3",
        "sglang-sm90-armv9": "gccarch-armv9-a",
    }
    for name, feature in expected.items():
        features = closures[name]["features"]
        # torchvision's and torchao's import checks, compressed-tensors', outlines' `import outlines`, and
        # the sglang wheel's `import sglang` all load the variant's torch.
        for pname in ("torchvision", "torchao", "compressed-tensors", "outlines", "sglang"):
            assert feature in features[pname], (name, pname)
        # Packages that never load torch while they build take any builder.
        assert features["transformers"] == [] and features["ipython"] == []
        assert "big-parallel" in features[f"torch-sm90-{name.rsplit('-', 1)[1]}"]


def test_every_isa_names_a_gcc_arch_nixpkgs_knows() -> None:
    """x86 names are those nixpkgs' lib/systems/architectures.nix lists (so a NixOS builder whose gcc.arch
    is one of them, or a superior, advertises the feature itself); the aarch64 ones are -march names it
    does not list, which builders must add to their system-features by hand (README)."""
    # lib/systems/architectures.nix (stored copy near the pin): the x86-64 levels and Intel/AMD names.
    known = {
        "x86-64", "x86-64-v2", "x86-64-v3", "x86-64-v4", "sandybridge", "ivybridge", "haswell", "broadwell",
        "skylake", "skylake-avx512", "cannonlake", "icelake-client", "icelake-server", "cascadelake",
        "cooperlake", "tigerlake", "sapphirerapids", "emeraldrapids", "znver1", "znver2", "znver3",
        "znver4", "znver5", "armv8-a",
    }  # fmt: skip
    spec = load_spec(ROOT / "matrix.toml")
    for name, isa in spec.isas.items():
        assert isa.gcc_arch, name
        if "x86_64-linux" in isa.systems:
            assert isa.gcc_arch in known, (name, isa.gcc_arch)
        else:
            assert isa.gcc_arch in ("armv8.2-a", "armv9-a"), (name, isa.gcc_arch)
    for v in resolve_variants(spec):
        # A variant without an ISA (torch from its wheel) needs no gccarch feature at all.
        assert v.gcc_arch == (spec.isas[v.isa].gcc_arch if v.isa else None)


@pytest.mark.parametrize("value", ["x86 64", "X86-64-V4", ""])
def test_a_bad_gcc_arch_is_one_line(tmp_path: Path, value: str) -> None:
    text = (ROOT / "matrix.toml").read_text(encoding="utf-8")
    assert text.count('gcc-arch = "x86-64-v4"') == 1
    spec = tmp_path / "matrix.toml"
    spec.write_text(text.replace('gcc-arch = "x86-64-v4"', f'gcc-arch = "{value}"'), encoding="utf-8")
    with pytest.raises(SpecError) as err:
        load_spec(spec)
    assert "isas.avx512.gcc-arch" in str(err.value) and "\n" not in str(err.value)


def test_checks_do_not_instantiate_any_variant(nix_bin: Path, tmp_path: Path) -> None:
    """`checks` stay cheap: they evaluate against nixpkgs (both pins) that refuses any CUDA configuration."""
    # Both doubles, since the pin-B one builds on the pin-A one's make.nix (through `../`).
    for name in ("nixpkgs-double", "nixpkgs-double-0_5_23"):
        shutil.copytree(ROOT / "tests" / name, tmp_path / name)
    make = tmp_path / "nixpkgs-double" / "make.nix"
    text = make.read_text()
    marker = "builtins.seq checkedConfig (fix applyOverlays)"
    assert marker in text
    make.write_text(
        text.replace(
            marker,
            'if config.cudaSupport or false then throw "a variant was instantiated" else ' + marker,
        )
    )
    proc = nix(
        nix_bin,
        "eval",
        "--json",
        *["--override-input", "nixpkgs", f"path:{tmp_path / 'nixpkgs-double'}"],
        *["--override-input", "nixpkgs-0_5_23", f"path:{tmp_path}?dir=nixpkgs-double-0_5_23"],
        ".#checks",
        "--apply",
        "c: builtins.mapAttrs (_: s: builtins.mapAttrs (_: d: d.drvPath) s) c",
    )
    assert '"matrix"' in proc.stdout and '"render"' in proc.stdout
