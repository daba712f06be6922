"""Bad spec input: one line naming file, field and value, exit code 2, no traceback, nothing written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from sglang_matrix.spec import load_spec
from sglang_matrix.variants import resolve_variants


def snapshot(tree: Path) -> dict[str, tuple[int, bytes]]:
    return {
        str(p.relative_to(tree)): (p.stat().st_mtime_ns, p.read_bytes())
        for p in tree.rglob("*")
        if p.is_file()
    }


def edit(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text()
    assert old in text, f"fixture edit: {old!r} not in {path.name}"
    path.write_text(text.replace(old, new, count))


BAD_SPECS = [
    pytest.param(
        'isas = ["avx", "avx2", "avx512",',
        'isas = ["avx", "avx3", "avx512",',
        r'matrix\.toml: lines\."0\.5\.9"\.isas\[1\] = \'avx3\': unknown ISA',
        id="unknown-isa",
    ),
    pytest.param(
        'short-name = "sglang-{target}-{isa}"',
        'short-name = "sglang-{target}"',
        r"matrix\.toml: lines\.\"0\.5\.9\"\.short-name = 'sglang-sm61': duplicate variant name",
        id="duplicate-name",
    ),
    pytest.param(
        'capabilities = ["9.0"]',
        'capabilities = ["sm_90"]',
        r"matrix\.toml: targets\.sm90\.capabilities\[0\] = 'sm_90': a capability must look like \"9\.0\"",
        id="capability-form",
    ),
    pytest.param(
        'pname = "sgl_kernel"\nversion = "0.3.21"\n',
        'pname = "sgl_kernel"\n',
        r"matrix\.toml: lines\.\"0\.5\.9\"\.wheels\.sgl-kernel\.version = '<missing>': required field",
        id="missing-version",
    ),
    pytest.param(
        'systems = ["x86_64-linux", "aarch64-linux"]\ntargets =',
        'systems = ["aarch64-linux"]\ntargets =',
        r"matrix\.toml: lines\.\"0\.5\.9\"\.isas\[0\] = 'avx': fits x86_64-linux, "
        r"not this line's systems \(aarch64-linux\)",
        id="isa-platform",
    ),
    pytest.param(
        "max-jobs-cap = 16",
        "max-jobs-cap = 16\nmax-jobs-cap = [",
        r"matrix\.toml: \(syntax\) = .*TOML syntax error",
        id="toml-syntax",
    ),
    pytest.param(
        '\ncuda = ["12.8", "12.9"]',
        '\ncuda = "12.6"',
        r"matrix\.toml: lines\.\"0\.5\.9\"\.targets\[6\] = 'sm100': capability 10\.0 needs CUDA >= 12\.7",
        id="capability-needs-newer-cuda",
    ),
    pytest.param(
        'default-variant = "sglang-sm90-avx512"',
        'default-variant = "sglang-sm91-avx512"',
        r"matrix\.toml: build\.default-variant = 'sglang-sm91-avx512': names no variant",
        id="default-variant",
    ),
    pytest.param(
        'reason = "xgrammar 0.1.27 has no cp313 aarch64 wheel (sdist only)"',
        'reason = "xgrammar 0.1.27 has no cp313 aarch64 wheel (sdist only)"\nplatform = "x"',
        r"matrix\.toml: lines\.\"0\.5\.9\"\.exclude\[2\]\.platform = 'x': unknown field",
        id="exclude-unknown-field",
    ),
    pytest.param(
        'optional = "FlashInfer JIT-compiles',
        '# optional = "FlashInfer JIT-compiles',
        r"flashinfer-jit-cache\.tags = \['x86_64-linux'\]: has no wheel for the line's system aarch64-linux",
        id="missing-wheel-not-optional",
    ),
    pytest.param(
        'path = "sgl_kernel/sm90"',
        'path = "../sgl_kernel/sm90"',
        r"wheels\.sgl-kernel\.prune\[0\]\.path = '\.\./sgl_kernel/sm90': must be a relative path",
        id="prune-path-escapes",
    ),
    pytest.param(
        'keep-for = ["9.0"]\nreason',
        'keep-for = ["9.0"]\nkeep-but = ["8.0"]\nreason',
        r"wheels\.sgl-kernel\.prune\[0\]\.keep-but = \['8\.0'\]: give keep-for or keep-but, not both",
        id="prune-both",
    ),
    pytest.param(
        'keep-for = ["10.0", "10.3"]\noptional',
        'keep-for = ["10.0", "10.3"]\n# optional',
        r"wheels\.flashinfer-cubin\.keep-for = \['10\.0', '10\.3'\]: a wheel pruning may leave out",
        id="keep-for-not-optional",
    ),
    pytest.param(
        'remove-deps = true\ndescription = "xgrammar',
        'remove-dep = true\ndescription = "xgrammar',
        r"wheels\.xgrammar\.remove-dep = True: unknown field \(known: pname, version",
        id="misspelt-wheel-key",
    ),
    pytest.param(
        'torch-nvcc-flags = ["-Xfatbin", "-compress-all"]',
        'torch-nvcc-flags = ["-Xfatbin -compress-all"]',
        r"matrix\.toml: build\.torch-nvcc-flags\[0\] = '-Xfatbin -compress-all': must be one word",
        id="nvcc-flag-with-space",
    ),
    pytest.param(
        'torch-nvcc-flags = ["-Xfatbin", "-compress-all"]',
        'torch-nvcc-flags = ["-Xfatbin", "-compress-all\\n"]',
        r"matrix\.toml: build\.torch-nvcc-flags\[1\] = '-compress-all\\n': must be",
        id="nvcc-flag-with-newline",
    ),
    pytest.param(
        "torch-cuda-libraries = { cudnn = true, cusparselt = false }",
        "torch-cuda-libraries = { cudnn = true, cusparselt = false, cublas = false }",
        r"matrix\.toml: build\.torch-cuda-libraries\.cublas = False: unknown field "
        r"\(known: cudnn, cusparselt\)",
        id="unknown-torch-library",
    ),
    pytest.param(
        "torch-cuda-libraries = { cudnn = true, cusparselt = false }",
        'torch-cuda-libraries = { cudnn = "no", cusparselt = false }',
        r"matrix\.toml: build\.torch-cuda-libraries\.cudnn = 'no': must be true or false",
        id="torch-library-not-bool",
    ),
    pytest.param(
        "\ncudnn = false",
        "\ncudnnn = false",
        r"matrix\.toml: targets\.sm61\.cudnnn = False: unknown field",
        id="misspelt-target-key",
    ),
    pytest.param(
        'isa = ["avx512bf16", "avx512vnni"]',
        'isa = ["avx512-bf16", "avx512vnni"]',
        r"lines\.\"0\.5\.9\"\.exclude\[0\]\.isa = 'avx512-bf16': not a known isa",
        id="exclude-matches-nothing",
    ),
    pytest.param(
        'cuda = ["12.8"]\noptional',
        'cuda = ["12.x"]\noptional',
        r"wheels\.flashinfer-jit-cache\.cuda = '12\.x': not one of the line's CUDA releases",
        id="wheel-cuda-unknown",
    ),
    pytest.param(
        'license = "asl20"',
        'license = "apache2"',
        r"wheels\.sglang\.license = 'apache2': not a nixpkgs lib\.licenses name known here",
        id="license-unknown",
    ),
    # The 0.5.23 line: torch from its wheel, no ISAs, its own nixpkgs pin.
    pytest.param(
        'cuda = ["13.0"]\n',
        'cuda = ["13.0"]\nisas = ["avx2"]\n',
        r"lines\.\"0\.5\.23\"\.isas = \['avx2'\]: a line whose torch is a wheel has no ISAs",
        id="wheel-torch-with-isas",
    ),
    pytest.param(
        'short-name = "sglang-{line}-{target}-{arch}"',
        'short-name = "sglang-{line}-{target}-{isa}"',
        r"lines\.\"0\.5\.23\"\.short-name = .*: \{isa\} in a line without ISAs",
        id="isa-placeholder-without-isas",
    ),
    pytest.param(
        'short-name = "sglang-{line}-{target}-{arch}"',
        'short-name = "sglang-{line}-{target}"',
        r"lines\.\"0\.5\.23\"\.short-name = 'sglang-0_5_23-sm90': duplicate variant name",
        id="names-collide-across-systems",
    ),
    pytest.param(
        'source = "wheel"',
        'source = "pip"',
        r"lines\.\"0\.5\.23\"\.torch\.source = 'pip': must be one of nixpkgs, wheel",
        id="torch-source-unknown",
    ),
    pytest.param(
        'pname = "torch"\nversion = "2.14.1"',
        'pname = "torch"\nversion = "2.14.0"',
        r"lines\.\"0\.5\.23\"\.wheels\.torch\.version = '2\.14\.0': must be lines",
        id="torch-wheel-version-differs",
    ),
    pytest.param(
        'input = "nixpkgs-0_5_23"',
        'input = "nixpkgs"',
        r"lines\.\"0\.5\.23\"\.nixpkgs\.input = 'nixpkgs': a flake input name of its own",
        id="line-input-not-its-own",
    ),
    pytest.param(
        'variables = { SGLANG_ATTENTION_BACKEND = "flashinfer" }',
        'variables = { ATTENTION_BACKEND = "flashinfer" }',
        r"serve-defaults\[0\]\.variables = 'ATTENTION_BACKEND': not an SGLANG_\* variable",
        id="serve-default-not-sglang",
    ),
    pytest.param(
        'rev = "494ce7fd23ff6a5dff39e1fb11e9b6f2ac74bf25"',
        'rev = "494ce7fd"',
        r"lines\.\"0\.5\.23\"\.nixpkgs\.rev = '494ce7fd': must be a 40-digit",
        id="line-rev-short",
    ),
]


@pytest.mark.parametrize(("old", "new", "message"), BAD_SPECS)
def test_bad_spec_is_one_line_exit_2_and_writes_nothing(
    project: Path, cli, old: str, new: str, message: str
) -> None:
    edit(project / "matrix.toml", old, new)
    # Make render want to write something, so "nothing written" is a real check.
    (project / "pkgs" / "variants" / "sglang-python312-cuda12_8-sm90-avx512.nix").unlink()
    before = snapshot(project)
    for args in (["render"], ["list", "--json"], ["show", "sglang-sm90-avx512"], ["lock", "--check"]):
        proc = cli("--root", str(project), *args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert re.search(message, lines[0]), lines[0]
        assert "Traceback" not in proc.stderr
        assert snapshot(project) == before


def test_the_spec_yields_the_seed_matrix_and_the_full_one(root: Path) -> None:
    variants = resolve_variants(load_spec(root / "matrix.toml"))
    by_name = {v.name: v for v in variants}
    seed_targets = ["sm61", "sm75", "sm80", "sm86", "sm89", "sm90", "sm100", "sm120", "all"]
    seed = {f"sglang-{t}-{i}" for t in seed_targets for i in ("avx2", "avx512")}
    assert seed <= set(by_name)  # the seed's 18, names unchanged
    for name in seed:
        v = by_name[name]
        assert (v.python, v.cuda, v.system) == ("3.12", "12.8", "x86_64-linux")
        assert v.long_name == name.replace("sglang-", "sglang-python312-cuda12_8-")
    variants = [v for v in variants if v.line == "0.5.9"]
    assert len(variants) == 139 >= 88  # at least the peer vLLM matrix
    assert len({v.long_name for v in variants}) == 139
    # Short names only for the default Python and CUDA; the rest go by their long name.
    assert sum(v.name != v.long_name for v in variants) == 47
    # Rules as data: SM103 only with CUDA 12.9; Grace hosts; no cp313 xgrammar on aarch64.
    assert {v.cuda for v in variants if v.target == "sm103"} == {"12.9"}
    assert {v.target for v in variants if v.system == "aarch64-linux"} == {"sm90", "sm100", "sm103"}
    assert {v.isa for v in variants if v.system == "aarch64-linux"} == {"armv8_2", "armv9"}
    assert not [v for v in variants if v.system == "aarch64-linux" and v.python == "3.13"]
    assert {v.isa for v in variants if v.target == "sm61"} == {"avx", "avx2", "avx512"}
    assert by_name["sglang-sm90-armv9"].cflags == ("-march=armv9-a+sve2+bf16+i8mm",)
    assert by_name["sglang-all-avx2"].capabilities == ("7.5", "8.0", "8.6", "8.9", "9.0", "10.0", "12.0")
    # cuDNN: off for Pascal by its target, and for every variant while [build] torch-cuda-libraries says so.
    libraries = load_spec(root / "matrix.toml").torch_cuda_libraries
    assert not by_name["sglang-sm61-avx2"].cudnn
    assert by_name["sglang-sm75-avx2"].cudnn == libraries.get("cudnn", True)
    assert "-mavx512f" in by_name["sglang-sm90-avx512"].cflags
    assert "-mavx512f" not in by_name["sglang-sm90-avx2"].cflags
    # The jit-cache wheel is built for CUDA 12.8 on x86_64 only: other variants go without it.
    assert "flashinfer-jit-cache" in by_name["sglang-sm90-avx512"].wheels
    assert "flashinfer-jit-cache" not in by_name["sglang-python312-cuda12_9-sm90-avx512"].wheels
    assert "flashinfer-jit-cache" not in by_name["sglang-sm90-armv9"].wheels
    assert by_name["sglang-sm90-armv9"].wheels["sgl-kernel"].endswith("manylinux2014_aarch64.whl")
    assert (
        by_name["sglang-python313-cuda12_8-sm90-avx2"].wheels["xgrammar"].startswith("xgrammar-0.1.27-cp313")
    )


def test_the_0_5_23_line_is_one_variant_per_system_and_target(root: Path) -> None:
    """torch from its wheel: no ISA axis, names with {arch}, one nixpkgs instance per system and CUDA whose
    capabilities cover every target, and per-target pruning as before."""
    spec = load_spec(root / "matrix.toml")
    everything = resolve_variants(spec)
    variants = [v for v in everything if v.line == "0.5.23"]
    by_name = {v.name: v for v in variants}
    # x86_64: 8 targets, aarch64 (Grace): 3; Python 3.12 (short names) and 3.13.
    assert len(variants) == 22 and len(everything) == 161
    assert {v.isa for v in variants} == {None} and {v.cuda for v in variants} == {"13.0"}
    assert not [v for v in variants if v.target in ("sm61", "sm75")]
    sm90 = by_name["sglang-0_5_23-sm90-x86_64"]
    assert by_name["sglang-0_5_23-sm90-aarch64"].system == "aarch64-linux"
    assert sm90.long_name == "sglang-0_5_23-python312-cuda13_0-sm90-x86_64"
    assert sm90.cflags == () and sm90.gcc_arch is None and sm90.torch_nvcc_flags == ()
    assert sm90.versions["torch"] == "2.14.1" and sm90.wheels["torch"].startswith("torch-2.14.1-cp312-cp312")
    # One instance per (input, system, CUDA): torch and NCCL are one store path for all its targets.
    x86 = {v.nixpkgs_key for v in variants if v.system == "x86_64-linux" and v.python == "3.12"}
    assert x86 == {"nixpkgs-0_5_23-x86_64-linux-cuda13.0"}
    assert sm90.instance_capabilities == ("7.5", "8.0", "8.6", "8.9", "9.0", "10.0", "10.3", "12.0")
    assert by_name["sglang-0_5_23-sm90-aarch64"].instance_capabilities == ("9.0", "10.0", "10.3")
    # Pruning per target: FA3 (x86_64 only) for 8.x/9.0, FlashMLA for 9.0/10.x, sgl-flash-mla's wheel too.
    assert "sgl_kernel/flash_ops.abi3.so" not in sm90.pruned["sglang-kernel"]
    assert "sgl_kernel/flash_ops.abi3.so" in by_name["sglang-0_5_23-sm100-x86_64"].pruned["sglang-kernel"]
    # GH200 (and only it) gets flashinfer attention by default: no FA3 in the aarch64 wheel.
    defaulted = {v.name for v in variants if v.serve_defaults}
    assert defaulted == {"sglang-0_5_23-sm90-aarch64", "sglang-0_5_23-python313-cuda13_0-sm90-aarch64"}
    assert by_name["sglang-0_5_23-sm90-aarch64"].serve_defaults == {"SGLANG_ATTENTION_BACKEND": "flashinfer"}
    # The aarch64 wheel has no FA3 object: the rule is scoped to x86_64, else its build would stop at it.
    assert not [v for v in variants if v.system == "aarch64-linux" and "flash_ops" in str(v.pruned)]
    assert (
        "sgl-flash-mla" in sm90.wheels and "sgl-flash-mla" not in by_name["sglang-0_5_23-sm120-x86_64"].wheels
    )
    # The 0.5.9 line keeps its default, its names and its Nix record shape (no new keys).
    assert spec.default_variant == "sglang-sm90-avx512"
    old = next(v for v in everything if v.name == "sglang-sm90-avx512")
    assert not {"nixpkgsInput", "torchSource", "instanceCapabilities"} & set(old.to_json())
    assert sm90.to_json()["nixpkgsInput"] == "nixpkgs-0_5_23" and sm90.to_json()["torchSource"] == "wheel"


def test_show_json_resolves_everything(cli) -> None:
    import json

    proc = cli("show", "sglang-python312-cuda12_8-sm90-avx512", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["name"] == "sglang-sm90-avx512"
    assert data["capabilities"] == ["9.0"]
    assert data["versions"]["sglang"] == "0.5.9" and data["versions"]["torch"] == "2.9.1"
    assert data["wheels"]["sgl-kernel"] == "sgl_kernel-0.3.21-cp310-abi3-manylinux2014_x86_64.whl"


def test_show_reports_what_pruning_saves(cli, project: Path) -> None:
    import json

    data = json.loads(cli("--root", str(project), "show", "sglang-sm90-avx512", "--json").stdout)
    assert data["pruned"] == {"sgl-kernel": ["sgl_kernel/sm100", "lib", "_mscclpp.cpython-310-*.so"]}
    assert "flashinfer-cubin" not in data["wheels"]
    pruning = data["pruning"]
    left_out = {(i["wheel"], i["what"]): i["bytes"] for i in pruning["left_out"]}
    # Sizes recorded by `lock` from the real wheels.
    assert left_out == {
        ("sgl-kernel", "sgl_kernel/sm100"): 373_739_544,
        ("sgl-kernel", "lib"): 38_181_948,
        ("sgl-kernel", "_mscclpp.cpython-310-*.so"): 3_840_312,
        ("flashinfer-cubin", "the whole wheel"): 1_057_882_147,
    }
    assert pruning["saved_bytes"] == sum(left_out.values()) and pruning["unknown"] == []
    human = cli("--root", str(project), "show", "sglang-sm90-avx512").stdout
    assert "pruning saves 1,474 MB:" in human

    # The spec switch turns it off: every wheel and path stays.
    spec = project / "matrix.toml"
    spec.write_text(spec.read_text().replace("prune-device-code = true", "prune-device-code = false"))
    data = json.loads(cli("--root", str(project), "show", "sglang-sm90-avx512", "--json").stdout)
    assert data["pruned"] == {} and "flashinfer-cubin" in data["wheels"]
    assert data["pruning"] == {"enabled": False, "left_out": [], "saved_bytes": 0, "unknown": []}


def test_unknown_variant_is_a_one_line_error(cli) -> None:
    proc = cli("show", "sglang-sm91-avx512")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "sglang-sm91-avx512" in proc.stderr


@pytest.mark.parametrize("first", ["variants", "weights", "jit_headers", "spec.model", "spec.schema", "spec"])
def test_the_spec_package_imports_after_any_of_its_users(first: str, root: Path) -> None:
    """spec/load.py binds variants, weights and jit_headers as modules: importing one of them first runs
    the spec package's __init__ (and so spec.load) while that module is half-initialised, and a
    `from ..variants import resolve_variants` there would break `import sglang_matrix.variants`."""
    code = (
        f"import sglang_matrix.{first}\n"
        "from sglang_matrix.spec import load_spec\n"
        "from sglang_matrix.variants import resolve_variants\n"
        f"assert resolve_variants(load_spec({str(root / 'matrix.toml')!r}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
