"""Nix in three honest layers: (1) every .nix file parses; (2) the nixpkgs-free layer, evaluated by real
Nix 2.26, agrees with `sglang-matrix show --json`; (3) the flake evaluates against the nixpkgs test double
(tests/nixpkgs-double, NOT nixpkgs: its functions take only the argument names nixpkgs takes at the pin).
A last test evaluates against the real pinned nixpkgs where GitHub is reachable, and skips elsewhere."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, nix_env
from sglang_matrix.lockfile import read_lock
from sglang_matrix.spec import load_spec
from sglang_matrix.variants import resolve_variants

DOUBLE = ROOT / "tests" / "nixpkgs-double"
# The 0.5.23 line's pin (tests/nixpkgs-double-0_5_23). It shares code with the first double through `../`,
# which a `path:` flake of its own directory cannot reach: the flake is the tests/ tree, `dir=` its part.
DOUBLE_B = f"path:{ROOT / 'tests'}?dir=nixpkgs-double-0_5_23"


def overrides(prefix: str = "") -> list[str]:
    """--override-input for both nixpkgs inputs: the test doubles in place of nixpkgs at each pin."""
    return [
        *["--override-input", f"{prefix}nixpkgs", f"path:{DOUBLE}"],
        *["--override-input", f"{prefix}nixpkgs-0_5_23", DOUBLE_B],
    ]


SYSTEM = "x86_64-linux"
FAKE_HASH = "sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="


def nix(nix_bin: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        ["nix", *args], cwd=ROOT, env=nix_env(nix_bin), capture_output=True, text=True, check=False
    )
    if check and proc.returncode != 0:
        pytest.fail(f"nix {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return proc


def eval_flake(nix_bin: Path, attr: str, apply: str) -> Any:
    proc = nix(
        nix_bin,
        "eval",
        "--json",
        *overrides(),
        f".#{attr}",
        "--apply",
        apply,
    )
    return json.loads(proc.stdout)


def tracked_nix_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "*.nix"], cwd=ROOT, capture_output=True, text=True, check=True)
    files = [ROOT / line for line in out.stdout.split()]
    # Files not committed yet count too (a new file must parse before it lands).
    untracked = subprocess.run(
        ["git", "ls-files", "--others", "--exclude-standard", "*.nix"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    return sorted(set(files) | {ROOT / line for line in untracked.stdout.split()})


# ---- layer 1 ------------------------------------------------------------------------------------------


def test_nix_is_2_18_or_newer(nix_bin: Path) -> None:
    version = nix(nix_bin, "--version").stdout.split()[-1]
    assert tuple(int(p) for p in version.split(".")[:2]) >= (2, 18), version


def test_every_nix_file_parses(nix_bin: Path) -> None:
    files = tracked_nix_files()
    assert len(files) > 30
    for path in files:
        proc = subprocess.run(
            ["nix-instantiate", "--parse", str(path)], env=nix_env(nix_bin), capture_output=True, text=True
        )
        assert proc.returncode == 0, f"{path.relative_to(ROOT)}: {proc.stderr}"
        assert proc.stdout.strip(), path


def test_no_fetchers_or_search_path_at_evaluation_time() -> None:
    for path in tracked_nix_files():
        text = path.read_text()
        code = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
        assert not re.search(r"builtins\.fetch\w+|\bfetchTarball\b|<nixpkgs>", code), path


# ---- layer 2 ------------------------------------------------------------------------------------------


def test_nixpkgs_free_layer_agrees_with_python(nix_bin: Path, cli) -> None:
    proc = nix(nix_bin, "eval", "--json", "--file", str(ROOT / "lib" / "default.nix"), "variants")
    from_nix = json.loads(proc.stdout)
    listed = json.loads(cli("list", "--json").stdout)
    # The same variants, in the same order, field by field.
    assert [v["longName"] for v in from_nix] == [v["longName"] for v in listed]
    assert from_nix == listed
    # `show --json` is the same record as `list --json`'s (checked on a spread of variants).
    by_name = {v["name"]: v for v in from_nix}
    for name in (
        "sglang-sm90-avx512",
        "sglang-sm61-avx2",
        "sglang-all-avx512bf16",
        "sglang-sm100-armv9",
        "sglang-python313-cuda12_9-sm103-avx2",
        "sglang-python312-cuda12_9-sm103-armv9",
    ):
        shown = json.loads(cli("show", name, "--json").stdout)
        shown.pop("pruning")  # sizes from the lock: the Python tool's addition
        assert shown == by_name[name], name


def test_flake_exposes_the_matrix_as_data(nix_bin: Path) -> None:
    data = eval_flake(nix_bin, "lib", "l: { n = builtins.length l.variants; rev = l.matrix.nixpkgs.rev; }")
    spec = load_spec(ROOT / "matrix.toml")
    assert data == {"n": len(resolve_variants(spec)), "rev": spec.nixpkgs_rev}


def test_flake_lock_pins_the_spec_revision() -> None:
    lock = json.loads((ROOT / "flake.lock").read_text())
    locked = lock["nodes"]["nixpkgs"]["locked"]
    assert locked["rev"] == load_spec(ROOT / "matrix.toml").nixpkgs_rev
    assert locked["narHash"] == "sha256-0NBlEBKkN3lufyvFegY4TYv5mCNHbi5OmBDrzihbBMQ="
    assert locked["lastModified"] == 1771369470
    assert f"github:NixOS/nixpkgs/{locked['rev']}" in (ROOT / "flake.nix").read_text()


# ---- layer 3: the flake against the test double ----------------------------------------------------------

FACTS = """
p: builtins.mapAttrs (name: env:
  let
    py = env.python.pkgs;
    t = env.torch;
    wheel = w: { src = w.src.outputHash; url = w.src.url; drv = w.drvPath;
                 inputs = map (x: x.name) (w.buildInputs or [ ]);
                 ignore = w.autoPatchelfIgnoreMissingDeps or [ ]; strip = w.dontStrip or false;
                 ninja = w.dontUseNinjaBuild or false; cmake = w.dontUseCmakeConfigure or false;
                 remove = w.pythonRemoveDeps or null; imports = w.pythonImportsCheck or [ ];
                 relax = builtins.any (x: x.name == "python-relax-deps-hook") (w.nativeBuildInputs or [ ]);
                 features = w.requiredSystemFeatures or [ ];
                 preFixup = w.preFixup or ""; license = w.meta.license.shortName or null;
                 postInstall = w.postInstall or "";
                 propagated = map (x: x.name) (w.propagatedBuildInputs or [ ]); };
  in {
    drv = env.drvPath;
    name = env.name;
    mainProgram = env.meta.mainProgram;
    postBuild = env.postBuild;
    envPaths = map (x: x.name) env.pythonEnv.paths;
    home = map (x: x.name) env.cudaHome.paths;
    launcher = env.launchers.sglang-serve.text;
    # nixpkgs' torch built from source (0.5.9), or the line's torch wheel (0.5.23: its facts are a wheel's).
    torch = if env.variant.torchSource or "nixpkgs" == "wheel" then
              { pname = t.pname; name = t.name; caps = t.cudaCapabilities; tag = t.sglangMatrix;
                drv = t.drvPath; cuda = t.cudaPackages.cudaMajorMinorVersion; wheel = wheel t;
                cudaSupport = t.cudaSupport; nccl = t.cudaPackages.nccl.drvPath; }
            else
              { pname = t.pname; name = t.name;
              pre = t.preConfigure; build = t.preBuild; cudnn = t.USE_CUDNN or null;
              cusparselt = t.USE_CUSPARSELT or null; nvccFlags = t.TORCH_NVCC_FLAGS or null;
              features = t.requiredSystemFeatures; caps = t.cudaCapabilities; tag = t.sglangMatrix;
              drv = t.drvPath; cuda = t.cudaPackages.cudaMajorMinorVersion;
              cflags = t.env.NIX_CFLAGS_COMPILE; };
    torchvision = { arch = py.torchvision.TORCH_CUDA_ARCH_LIST or null; drv = py.torchvision.drvPath;
                    features = py.torchvision.requiredSystemFeatures or [ ]; };
    wheels = builtins.mapAttrs (_: wheel) (builtins.intersectAttrs env.variant.wheels py);
    runtime = (builtins.head (builtins.filter (x: x.pname or "" == "sglang-matrix-runtime")
      env.pythonEnv.paths)).drvPath;
  }) (removeAttrs p ([ "sglang-matrix" ]
    ++ builtins.filter (n: builtins.match ".*-image" n != null) (builtins.attrNames p)))
"""
# Every system's packages at once: { system = { name = facts; }; }.
ALL_FACTS = f"ps: builtins.mapAttrs (_: {FACTS.strip()}) ps"


@pytest.fixture(scope="module")
def by_system(nix_bin: Path) -> dict[str, dict[str, Any]]:
    return eval_flake(nix_bin, "packages", ALL_FACTS)


@pytest.fixture(scope="module")
def facts(by_system: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Every variant's facts by short and long name (and `default`), whichever system it is for."""
    merged: dict[str, Any] = {}
    for packages in by_system.values():
        merged.update(packages)
    return merged


@pytest.fixture(scope="module")
def variants() -> dict[str, Any]:
    return {v.long_name: v for v in resolve_variants(load_spec(ROOT / "matrix.toml"))}


def test_packages_list_every_variant_under_both_names(
    by_system: dict[str, dict[str, Any]], variants: dict[str, Any]
) -> None:
    for system, packages in by_system.items():
        mine = [v for v in variants.values() if v.system == system]
        expected = {v.name for v in mine} | {v.long_name for v in mine}
        if system == SYSTEM:
            expected.add("default")
            assert packages["default"]["drv"] == packages["sglang-sm90-avx512"]["drv"]
        assert set(packages) == expected, system
        for v in mine:
            assert packages[v.name]["drv"] == packages[v.long_name]["drv"]
            assert packages[v.name]["name"] == v.long_name
        assert len({packages[v.name]["drv"] for v in mine}) == len(mine)
    # The seed's 18 names are all there, unchanged.
    seed_targets = ("sm61", "sm75", "sm80", "sm86", "sm89", "sm90", "sm100", "sm120", "all")
    assert {f"sglang-{t}-{i}" for t in seed_targets for i in ("avx2", "avx512")} <= set(by_system[SYSTEM])
    # 0.5.9: 139 long names, 47 short names (default Python and CUDA); 0.5.23: 22 and 11; and `default`.
    assert sum(len(packages) for packages in by_system.values()) == 139 + 47 + 22 + 11 + 1


def test_sm90_avx512(facts: dict[str, Any]) -> None:
    torch = facts["sglang-sm90-avx512"]["torch"]
    assert 'export TORCH_CUDA_ARCH_LIST="9.0"' in torch["pre"]  # gpuTargets = [ "9.0" ]
    assert torch["caps"] == ["9.0"]  # config.cudaCapabilities of its nixpkgs instance
    assert torch["cuda"] == "12.8"
    assert re.search(r'export CFLAGS=".*-mavx512f', torch["pre"])
    assert re.search(r'export CXXFLAGS=".*-mavx512f', torch["pre"])
    assert torch["pname"] == "torch-sm90-avx512"
    # The double derives name from the final pname as mk-python-derivation does: the tag appears once.
    assert torch["name"] == "python3.12-torch-sm90-avx512-2.9.1"
    assert torch["tag"] == {
        "target": "sm90",
        "isa": "avx512",
        "capabilities": ["9.0"],
        "cflags": ["-mavx512f", "-mavx512dq", "-mavx512vl", "-mavx512bw", "-mfma"],
        "systemFeatures": ["gccarch-x86-64-v4"],
    }
    # A builder must advertise the ISA (nixpkgs' gccarch-<march> convention) as well as big-parallel.
    assert torch["features"] == ["big-parallel", "gccarch-x86-64-v4"]
    # nixpkgs' own NIX_CFLAGS_COMPILE survives the override.
    assert torch["cflags"] == "-Wno-error"
    # [build] torch-cuda-libraries and torch-nvcc-flags reach torch's build environment (bench/closure
    # measures what they save); where the spec leaves them out, nixpkgs' defaults stand.
    build = tomllib.loads((ROOT / "matrix.toml").read_text())["build"]
    libraries = build.get("torch-cuda-libraries", {})
    assert torch["cudnn"] == (None if libraries.get("cudnn", True) else "0")
    assert torch["cusparselt"] == (None if libraries.get("cusparselt", True) else "0")
    flags = build.get("torch-nvcc-flags", [])
    assert torch["nvccFlags"] == (" ".join(flags) if flags else None)


def test_max_jobs_cap_comes_after_torchs_own_line(facts: dict[str, Any]) -> None:
    build = facts["sglang-sm90-avx2"]["torch"]["build"]
    assert build.index("export MAX_JOBS=$NIX_BUILD_CORES") < build.index("cores < 16 ? cores : 16")


def test_sm61_has_no_cudnn_and_avx2_no_avx512(facts: dict[str, Any]) -> None:
    torch = facts["sglang-sm61-avx2"]["torch"]
    assert torch["cudnn"] == "0"
    assert "-mavx2" in torch["pre"] and "-mavx512f" not in torch["pre"]
    # sm75 follows [build] torch-cuda-libraries; sm61's own `cudnn = false` holds whatever that says.
    libraries = tomllib.loads((ROOT / "matrix.toml").read_text())["build"].get("torch-cuda-libraries", {})
    assert facts["sglang-sm75-avx2"]["torch"]["cudnn"] == (None if libraries.get("cudnn", True) else "0")


def test_all_target_has_seven_capabilities(facts: dict[str, Any]) -> None:
    caps = ["7.5", "8.0", "8.6", "8.9", "9.0", "10.0", "12.0"]
    torch = facts["sglang-all-avx2"]["torch"]
    # passthru.cudaCapabilities is nixpkgs' intersection with its own list, which holds "10.0" twice at
    # the pin: eight entries for seven capabilities. Nothing of ours reads it; torch's own tag and
    # TORCH_CUDA_ARCH_LIST (gpuTargets) have the seven, and torchvision gets the seven too.
    assert torch["caps"] == ["7.5", "8.0", "8.6", "8.9", "9.0", "10.0", "10.0", "12.0"]
    assert torch["tag"]["capabilities"] == caps
    assert f'TORCH_CUDA_ARCH_LIST="{";".join(caps)}"' in torch["pre"]
    assert facts["sglang-all-avx2"]["torchvision"]["arch"] == ";".join(caps)


def test_wheels(facts: dict[str, Any], root: Path) -> None:
    wheels = facts["sglang-sm90-avx512"]["wheels"]
    lock = read_lock(root)["wheels"]
    locked_hashes = {entry["hash"] for entry in lock.values()}
    for name, wheel in wheels.items():
        assert wheel["src"] != FAKE_HASH and wheel["src"] in locked_hashes, name
        assert wheel["strip"] is True and wheel["ninja"] is True and wheel["cmake"] is True, name
        assert wheel["license"] == "asl20"
    kernel = wheels["sgl-kernel"]
    assert any("cuda_nvrtc" in i for i in kernel["inputs"]) and any("numactl" in i for i in kernel["inputs"])
    assert any("cuda_cudart" in i for i in kernel["inputs"]) and any(
        "libcublas" in i for i in kernel["inputs"]
    )
    assert kernel["ignore"] == ["libcuda.so.1"]
    assert "site-packages/torch/lib" in kernel["preFixup"]
    assert kernel["imports"] == []
    sglang_imports = list(load_spec(root / "matrix.toml").lines["0.5.9"].wheels["sglang"].imports)
    assert wheels["sglang"]["remove"] is True and wheels["sglang"]["imports"] == sglang_imports
    assert sglang_imports[0] == "sglang"
    # pythonRemoveDeps only where the spec sets remove-deps: mk-python-derivation adds the relax-deps hook
    # (which unpacks and repacks the wheel) whenever the attribute exists, even when it is false.
    spec_line = load_spec(root / "matrix.toml").lines["0.5.9"]
    asked = {attr for attr, w in spec_line.wheels.items() if w.remove_deps}
    assert asked == {"sglang", "flashinfer-python", "xgrammar"}
    for name, wheel in wheels.items():
        assert wheel["relax"] is (name in asked), name
        assert wheel["remove"] is (True if name in asked else None), name
    line = load_spec(root / "matrix.toml").lines["0.5.9"]
    provided = set(line.wheels["sglang"].requires.values())
    # flashinfer-cubin is pruned from an sm90 variant (its cubins are all for 10.0/10.3).
    assert len(wheels["sglang"]["propagated"]) == len(provided - {"flashinfer-cubin"})
    assert wheels["flashinfer-jit-cache"]["url"].startswith("https://github.com/flashinfer-ai/flashinfer/")
    assert wheels["xgrammar"]["inputs"] == ["gcc-14.3.0"]


def test_the_full_matrix_evaluates_with_its_rules(facts: dict[str, Any], root: Path) -> None:
    lock = read_lock(root)["wheels"]
    gb300 = facts["sglang-python312-cuda12_9-sm103-armv9"]
    # gpuTargets reaches TORCH_CUDA_ARCH_LIST as given (passthru.cudaCapabilities is filtered by torch's
    # own supported list in nixpkgs, which the double does not model, so it is not asserted for 10.3).
    assert gb300["torch"]["cuda"] == "12.9" and 'TORCH_CUDA_ARCH_LIST="10.3"' in gb300["torch"]["pre"]
    assert "-march=armv9-a+sve2+bf16+i8mm" in gb300["torch"]["pre"]
    kernel = lock["sgl_kernel-0.3.21-cp310-abi3-manylinux2014_aarch64.whl"]
    assert gb300["wheels"]["sgl-kernel"]["src"] == kernel["hash"]
    # No jit-cache wheel for CUDA 12.9 or aarch64: flashinfer-python goes without it (runtime JIT).
    for name in ("sglang-python312-cuda12_9-sm103-armv9", "sglang-python312-cuda12_9-sm90-avx512"):
        assert "flashinfer-jit-cache" not in facts[name]["wheels"]
        assert not any("jit-cache" in p for p in facts[name]["wheels"]["flashinfer-python"]["propagated"])
    assert any(
        "jit-cache" in p for p in facts["sglang-sm90-avx512"]["wheels"]["flashinfer-python"]["propagated"]
    )
    py313 = facts["sglang-python313-cuda12_8-sm90-avx2"]
    assert any(p.startswith("python3.13-sglang-0.5.9") for p in py313["envPaths"])
    assert (
        py313["wheels"]["xgrammar"]["src"]
        == (lock["xgrammar-0.1.27-cp313-cp313-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"]["hash"])
    )


def test_pruning_drops_dead_device_code(facts: dict[str, Any]) -> None:
    def pruned(name: str) -> list[str]:
        script = facts[name]["wheels"]["sgl-kernel"]["postInstall"]
        return re.findall(r'matches=\( "\$out/lib/python3\.1\d/site-packages"/(\S+) \)', script)

    # sgl-kernel's loader takes sm90/common_ops on 9.0 only, sm100/common_ops everywhere else.
    assert pruned("sglang-sm90-avx512") == ["sgl_kernel/sm100", "lib", "_mscclpp.cpython-310-*.so"]
    assert pruned("sglang-sm100-avx2") == ["sgl_kernel/sm90", "lib", "_mscclpp.cpython-310-*.so"]
    assert pruned("sglang-all-avx2") == ["lib", "_mscclpp.cpython-310-*.so"]
    # flashinfer-cubin's cubins are all for 10.0 and 10.3.
    assert "flashinfer-cubin" not in facts["sglang-sm90-avx512"]["wheels"]
    for name in ("sglang-sm100-avx2", "sglang-python312-cuda12_9-sm103-armv9", "sglang-all-avx512"):
        assert "flashinfer-cubin" in facts[name]["wheels"], name


def test_variant_environment(facts: dict[str, Any]) -> None:
    env = facts["sglang-sm90-avx512"]
    assert env["mainProgram"] == "sglang-serve"
    for entry in ("python3", "sglang-serve", "sglang-resolve-model"):
        assert f"$out/bin/{entry}" in env["postBuild"]
    assert "nix-support/sglang-matrix-variant.json" in env["postBuild"]
    # nixpkgs' python.withPackages links the Python modules the extra libraries propagate, recursively.
    paths = env["envPaths"]
    for wanted in ("python3.12-sglang-0.5.9", "python3.12-sglang-matrix-runtime-0.1.0", "python3.12-ipython"):
        assert any(p.startswith(wanted) for p in paths), wanted
    assert any(p.startswith("python3.12-torchvision") for p in paths)
    launcher = env["launcher"]
    # What FlashInfer's and sgl-kernel's runtime JIT need, from the closure: nvcc and headers under
    # CUDA_HOME, ninja and a host compiler on PATH, a per-variant writable cache.
    assert re.search(r"export CUDA_HOME=/nix/store/\S+-sglang-matrix-cuda-home-12\.8\n", launcher)
    assert re.search(
        r'export PATH="\$CUDA_HOME/bin:/nix/store/\S+-ninja-[^/]+/bin:/nix/store/\S+-gcc-wrapper', launcher
    )
    assert "CXX:=/nix/store/" in launcher and "export CC CXX" in launcher
    assert (
        ': "${FLASHINFER_WORKSPACE_BASE:=${XDG_CACHE_HOME:-$HOME/.cache}/sglang-matrix/'
        'sglang-python312-cuda12_8-sm90-avx512}"' in launcher
    )
    assert "unset PYTHONHOME" in launcher
    assert re.search(r"exec /nix/store/\S+-env/bin/python3\.12 -m sglang_matrix\.serve", launcher)


def test_shared_derivations_are_shared(facts: dict[str, Any], variants: dict[str, Any]) -> None:
    """What depends on neither torch nor the SM evaluates to one derivation for every variant of the same
    Python and system, whatever its GPU targets, ISA or CUDA."""
    groups: dict[tuple[str, str], list[str]] = {}
    for v in variants.values():
        if v.line == "0.5.9":
            groups.setdefault((v.python, v.system), []).append(v.long_name)
    for (python, system), names in groups.items():
        for wheel in ("flashinfer-cubin", "apache-tvm-ffi"):
            having = [n for n in names if wheel in facts[n]["wheels"]]
            assert having and len({facts[n]["wheels"][wheel]["drv"] for n in having}) == 1, (
                python,
                system,
                wheel,
            )
        assert len({facts[n]["runtime"] for n in names}) == 1, (python, system)
    # torch is per variant; the ISA is the only difference between these two.
    assert facts["sglang-sm90-avx2"]["torch"]["drv"] != facts["sglang-sm90-avx512"]["torch"]["drv"]
    old = [n for n, v in variants.items() if v.line == "0.5.9"]
    assert len({facts[n]["wheels"]["sgl-kernel"]["drv"] for n in old}) == len(old)


def test_the_launcher_names_the_driver_for_pips_triton_only_where_triton_is_a_wheel(
    facts: dict[str, Any], nix_bin: Path, tmp_path: Path
) -> None:
    """pip's triton (0.5.23) finds libcuda through TRITON_LIBCUDA_PATH, else `/sbin/ldconfig -p`, which NixOS
    lacks: the launcher sets it to the driver directory it found. nixpkgs' triton (0.5.9) is patched
    instead, and those launchers stay as they were."""
    new = facts["sglang-0_5_23-sm90-x86_64"]["launcher"]
    old = facts["sglang-sm90-avx512"]["launcher"]
    exposed = 'export LD_LIBRARY_PATH="$_sglang_matrix_driver${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"'
    assert f"{exposed}\n" in old and "TRITON_LIBCUDA_PATH" not in old
    block = new[new.index(exposed) :].split("\n  fi\n")[0]
    assert block.rstrip().endswith('export TRITON_LIBCUDA_PATH="$_sglang_matrix_driver"'), block
    script = tmp_path / "launcher.bash"
    script.write_text(new)
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0


def test_gh200_on_the_0_5_23_line_defaults_to_flashinfer_attention(
    facts: dict[str, Any], tmp_path: Path
) -> None:
    """sglang's Hopper default is fa3, which sglang-kernel 0.4.10's aarch64 wheel lacks: the GH200 variants'
    launchers default SGLANG_ATTENTION_BACKEND (matrix.toml serve-defaults) and keep a value the user set;
    x86_64 Hopper and 0.5.9 launchers set nothing."""
    gh200 = facts["sglang-0_5_23-sm90-aarch64"]["launcher"]
    for name in ("sglang-0_5_23-sm90-x86_64", "sglang-sm90-armv9", "sglang-sm90-avx512"):
        assert "SGLANG_ATTENTION_BACKEND" not in facts[name]["launcher"], name
    # The launcher as users run it, but printing its environment instead of starting the server.
    lines = gh200.splitlines()
    assert lines[-1].startswith("exec ") and lines[-1].endswith(' -m sglang_matrix.serve "$@"')
    script = tmp_path / "launcher.bash"
    script.write_text("\n".join([*lines[:-1], 'echo "backend=${SGLANG_ATTENTION_BACKEND-}"']) + "\n")
    for given, expected in ((None, "flashinfer"), ("", "flashinfer"), ("triton", "triton")):
        env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "SGLANG_MATRIX_DRIVER_SEARCH": "0"}
        if given is not None:
            env["SGLANG_ATTENTION_BACKEND"] = given
        proc = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, check=True)
        assert proc.stdout.strip().splitlines()[-1] == f"backend={expected}", (given, proc.stdout)


def test_a_wheel_torch_line_shares_torch_and_nccl_across_targets(
    facts: dict[str, Any], variants: dict[str, Any]
) -> None:
    """The 0.5.23 line: one nixpkgs instance per system and CUDA, so torch (the wheel), NCCL (built from
    source for the union of the line's capabilities) and every unpruned wheel are one derivation for all
    targets of a Python and system; sglang-kernel differs exactly where its pruning differs."""
    new = [v for v in variants.values() if v.line == "0.5.23"]
    groups: dict[tuple[str, str], list[Any]] = {}
    for v in new:
        groups.setdefault((v.python, v.system), []).append(v)
    assert len(groups) == 4
    for (python, system), members in groups.items():
        names = [v.long_name for v in members]
        for part in ("drv", "nccl"):
            assert len({facts[n]["torch"][part] for n in names}) == 1, (python, system, part)
        for wheel in ("apache-tvm-ffi", "triton", "torchvision", "transformers"):
            assert len({facts[n]["wheels"][wheel]["drv"] for n in names}) == 1, (python, system, wheel)
        prunings = {v.long_name: tuple(v.pruned.get("sglang-kernel", ())) for v in members}
        kernels = {n: facts[n]["wheels"]["sglang-kernel"]["drv"] for n in names}
        assert len(set(kernels.values())) == len(set(prunings.values())) > 1, (python, system)
        for a in names:
            for b in names:
                assert (kernels[a] == kernels[b]) == (prunings[a] == prunings[b])
    # The wheel torch: autoPatchelf'd, not stripped, libcuda left to the driver, its own torch/lib searched,
    # the CUDA 13.0 set, and a name without the target (it is not per target).
    t = facts["sglang-0_5_23-sm90-x86_64"]["torch"]
    assert t["name"] == "python3.12-torch-2.14.1" and t["cuda"] == "13.0" and t["cudaSupport"]
    assert t["wheel"]["strip"] and t["wheel"]["ignore"] == ["libcuda.so.1"] and t["wheel"]["remove"]
    assert t["wheel"]["preFixup"].endswith('site-packages/torch/lib"\n')
    assert t["wheel"]["imports"] == ["torch"]
    assert any("libnvshmem" in x for x in t["wheel"]["inputs"]) and any(
        "nccl" in x for x in t["wheel"]["inputs"]
    )
    assert {"python3.12-triton-3.8.0", "python3.12-cuda-bindings"} & set(t["wheel"]["propagated"])


def test_variant_file_works_on_its_own(nix_bin: Path, facts: dict[str, Any]) -> None:
    path = ROOT / "pkgs" / "variants" / "sglang-python312-cuda12_8-sm61-avx2.nix"
    proc = subprocess.run(
        ["nix-instantiate", str(path), "--arg", "nixpkgs", str(DOUBLE)],
        env=nix_env(nix_bin),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("-sglang-python312-cuda12_8-sm61-avx2.drv")


def test_flake_check_evaluates_every_output_but_no_variant(nix_bin: Path) -> None:
    """`nix flake check` evaluates every entry of a `hydraJobs` output, each a CUDA nixpkgs instance with a
    torch build: the jobs live in the jobset flake hydra/ instead, so the default check stays cheap."""
    proc = nix(nix_bin, "flake", "check", "--no-build", *overrides())
    for output in ("checks", "apps", "devShells", "overlays"):
        assert f"checking flake output '{output}'" in proc.stderr, output
    assert "checking flake output 'hydraJobs'" not in proc.stderr
    assert "error" not in proc.stderr.lower()


def test_hydra_jobset_has_every_variant(nix_bin: Path) -> None:
    proc = nix(
        nix_bin,
        "eval",
        "--json",
        *overrides("sglang-matrix/"),
        "./hydra#hydraJobs",
        "--apply",
        "j: builtins.mapAttrs (_: s: builtins.mapAttrs (_: d: d.drvPath) s) j",
    )
    jobs = json.loads(proc.stdout)
    assert len(jobs) == 161
    assert list(jobs["sglang-sm90-avx512"]) == [SYSTEM] and list(jobs["sglang-sm90-armv9"]) == [
        "aarch64-linux"
    ]
    assert jobs["sglang-sm90-avx512"][SYSTEM].endswith("-sglang-python312-cuda12_8-sm90-avx512.drv")


def test_hydra_jobset_locks_the_same_nixpkgs() -> None:
    main = json.loads((ROOT / "flake.lock").read_text())["nodes"]["nixpkgs"]["locked"]
    hydra = json.loads((ROOT / "hydra" / "flake.lock").read_text())["nodes"]
    assert hydra["nixpkgs"]["locked"] == main
    assert hydra["sglang-matrix"]["locked"] == {"path": "..", "type": "path"}


# ---- the double is strict where nixpkgs is strict, and stricter where nixpkgs is lax ----------------------

STRICT = [
    pytest.param(
        '(pkgs.python312.pkgs.torch.override { cudaSupport = true; gpuTarget = [ "9.0" ]; }).drvPath',
        "unexpected argument 'gpuTarget'",
        id="torch-override-typo",
    ),
    pytest.param(
        '(pkgs.fetchPypi { pname = "x"; version = "1"; format = "wheel"; platfrom = "any"; }).drvPath',
        "unexpected argument 'platfrom'",
        id="fetchPypi-typo",
    ),
    pytest.param(
        "(pkgs.python312.pkgs.buildPythonPackage "
        '{ pname = "x"; version = "1"; pythonRemoveDep = true; }).drvPath',
        "unknown attribute(s) pythonRemoveDep",
        id="buildPythonPackage-typo",
    ),
    pytest.param(
        '(pkgs.writeShellApplication { name = "x"; text = ""; runtimeInput = [ ]; }).drvPath',
        "unexpected argument 'runtimeInput'",
        id="writeShellApplication-typo",
    ),
    pytest.param(
        '(import ./. { system = "x86_64-linux"; config.cudaCapabilites = [ ]; }).cudaPackages',
        "unknown config option(s) cudaCapabilites",
        id="config-typo",
    ),
]


@pytest.mark.parametrize(("expr", "error"), STRICT)
def test_the_double_rejects_misspelt_names(nix_bin: Path, expr: str, error: str) -> None:
    full = f'let pkgs = import ./. {{ system = "x86_64-linux"; }}; in {expr}'
    proc = subprocess.run(
        ["nix-instantiate", "--eval", "--expr", full],
        cwd=DOUBLE,
        env=nix_env(nix_bin),
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert error in proc.stderr, proc.stderr[-2000:]


def test_a_missing_hash_becomes_fake_hash_as_in_nixpkgs(nix_bin: Path) -> None:
    expr = (
        '(import ./. { system = "x86_64-linux"; }).fetchPypi '
        '{ pname = "x"; version = "1"; format = "wheel"; }'
    )
    proc = subprocess.run(
        ["nix-instantiate", "--eval", "--strict", "--expr", f"({expr}).outputHash"],
        cwd=DOUBLE,
        env=nix_env(nix_bin),
        capture_output=True,
        text=True,
    )
    assert proc.stdout.strip() == f'"{FAKE_HASH}"'


# ---- the real nixpkgs ------------------------------------------------------------------------------------


def github_reachable() -> bool:
    try:
        with socket.create_connection(("github.com", 443), timeout=5):
            return True
    except OSError:
        return False


def test_against_the_real_pinned_nixpkgs(nix_bin: Path) -> None:
    version = nix(nix_bin, "--version").stdout.split()[-1]
    missing = []
    if tuple(int(p) for p in version.split(".")[:2]) < (2, 18):
        missing.append(f"Nix {version} is older than 2.18, the pin's minimum")
    if not github_reachable():
        missing.append("GitHub is not reachable, so the pinned nixpkgs cannot be fetched")
    if missing:
        pytest.skip("; ".join(missing))
    proc = nix(nix_bin, "eval", "--raw", f".#packages.{SYSTEM}.sglang-sm90-avx512.drvPath")
    assert proc.stdout.endswith("-sglang-python312-cuda12_8-sm90-avx512.drv")
