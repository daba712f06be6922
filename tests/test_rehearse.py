"""`sglang-matrix rehearse`: the variant's Python closure, installed and exercised here.

The unit tests run the harness on small packages in a scratch venv. The `network` tests rehearse the
default variant for real (its locked wheels through pip, nixpkgs' versions, torch's local CPU build) and
check what a user's build and start-up would hit: the same test fails when ipython or torchvision is
missing, naming the module and the import chain.
"""

from __future__ import annotations

import importlib.machinery
import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from sglang_matrix.rehearse import checks
from sglang_matrix.rehearse import env as rehearse_env
from sglang_matrix.rehearse.closure import line_nixpkgs_date, nixpkgs_date, plan_closure
from sglang_matrix.rehearse.env import Environment, torchvision_for
from sglang_matrix.rehearse.torchplan import torch_abi_config, torch_plan
from sglang_matrix.spec import load_spec
from sglang_matrix.variants import find_variant, resolve_variants

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = "sglang-sm90-avx512"
DEFAULT_0523 = "sglang-0_5_23-sm90-x86_64"


# --- the closure plan ------------------------------------------------------------------------------------
def test_the_default_variants_closure() -> None:
    spec = load_spec(ROOT / "matrix.toml")
    variant = find_variant(spec, DEFAULT)
    assert variant is not None
    closure = plan_closure(spec, variant)
    wheels = {w.attr: w for w in closure.wheels}
    # flashinfer-cubin holds Blackwell code only: sm90 goes without it, as the Nix build does.
    assert "flashinfer-cubin" not in wheels
    assert {"sglang", "sgl-kernel", "flashinfer-python", "xgrammar", "apache-tvm-ffi"} <= set(wheels)
    assert "sgl_kernel/sm100" in wheels["sgl-kernel"].pruned
    assert "sgl_kernel/sm90" not in wheels["sgl-kernel"].pruned
    attrs = {r.attr for r in closure.requirements}
    # The two the first round dropped, which a real build and start-up need.
    assert {"ipython", "torchvision", "transformers", "torch", "click"} <= attrs
    assert "ipython" not in closure.dropped and "torchvision" not in closure.dropped
    assert "sglang.launch_server" in closure.build_imports
    assert "sglang.srt.managers.scheduler" in closure.server_modules
    transformers = closure.requirement("transformers")
    assert transformers is not None and transformers.specifier and transformers.source
    assert "sglang" in transformers.wanted_by


def test_nixpkgs_date_comes_from_the_flake_lock(tmp_path: Path) -> None:
    spec = load_spec(ROOT / "matrix.toml")
    assert nixpkgs_date(ROOT / "flake.lock", spec.nixpkgs_rev) == "2026-02-17T23:04:30Z"
    assert nixpkgs_date(ROOT / "flake.lock", "0" * 40) is None
    (tmp_path / "broken.lock").write_text("{")
    assert nixpkgs_date(tmp_path / "broken.lock", spec.nixpkgs_rev) is None


def test_the_0_5_23_default_variants_closure_and_torch() -> None:
    spec = load_spec(ROOT / "matrix.toml")
    variant = find_variant(spec, DEFAULT_0523)
    assert variant is not None
    # The line's own nixpkgs pin decides the dated installs, not the top-level one.
    date = line_nixpkgs_date(spec, variant.line, ROOT / "flake.lock")
    assert date == "2026-10-05T05:43:54Z" != line_nixpkgs_date(spec, "0.5.9", ROOT / "flake.lock")
    closure = plan_closure(spec, variant, date)
    wheels = {w.attr: w for w in closure.wheels}
    assert {"torch", "torchvision", "triton", "sglang", "sglang-kernel", "sgl-deep-gemm"} <= set(wheels)
    assert "torch" not in {r.attr for r in closure.requirements}  # a wheel of the line, not nixpkgs'
    assert "sgl_kernel/sm100" in wheels["sglang-kernel"].pruned
    line = spec.lines[variant.line]
    # CI's default: the CPU stand-in, which replaces the line's torch and torchvision wheels.
    stand_in = torch_plan(line, "2.13.0")
    assert not stand_in.real and stand_in.skip_wheels == {"torch", "torchvision"}
    assert stand_in.torchvision == "0.28.0" and stand_in.declare_torchvision_ops
    # The line's own release: its torchvision wheel, nothing replaced, no operators declared.
    real = torch_plan(line, "2.14.1")
    assert real.real and real.skip_wheels == frozenset() and real.torchvision == "0.29.1"
    assert not real.declare_torchvision_ops
    # The torch-ABI stand-in covers exactly the wheels that link the line's torch, beside a stand-in.
    top = {
        "sglang": ["sglang"],
        "sglang-kernel": ["sgl_kernel", "triton_kernels"],
        "sgl-deep-gemm": ["deep_gemm"],
    }
    top |= {"sgl-flash-mla": ["flash_mla"], "xgrammar": ["xgrammar"], "torchvision": ["torchvision"]}
    config = torch_abi_config(stand_in, line, list(wheels), top)
    assert config is not None
    assert config["packages"] == ["deep_gemm", "flash_mla", "sgl_kernel", "sglang", "triton_kernels"]
    assert torch_abi_config(real, line, list(wheels), top) is None
    assert torch_abi_config(torch_plan(spec.lines["0.5.9"], "2.13.0"), spec.lines["0.5.9"], [], top) is None


def test_a_complete_environment_is_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A complete environment with the same install plan is reused, not rebuilt: the plan is compared as
    saved (JSON), and tuples in it (pruned paths, wanted_by) once made every comparison fail."""
    spec = load_spec(ROOT / "matrix.toml")
    variant = find_variant(spec, DEFAULT_0523)
    assert variant is not None
    closure = plan_closure(spec, variant, "2026-10-05T05:43:54Z")
    torch = torch_plan(spec.lines[variant.line], "2.13.0")
    root = tmp_path / "rehearse" / closure.key
    root.mkdir(parents=True)
    ready = {"plan": rehearse_env.install_plan(closure, torch), "site": str(root / "site"), "missing": []}
    (root / rehearse_env.READY).write_text(json.dumps(ready))
    monkeypatch.setattr(rehearse_env, "_distributions", lambda python: {})

    def no_build(*args: object, **kwargs: object) -> None:
        raise AssertionError("the environment was rebuilt")

    monkeypatch.setattr(rehearse_env.subprocess, "run", no_build)
    env = rehearse_env.build_environment(spec, closure, tmp_path, "2.13.0", False, lambda text: None)
    assert env.reused and env.torch == torch and env.root == root


def test_torchvision_pairs_with_torch() -> None:
    assert torchvision_for("2.9.1") == "0.24.1"
    assert torchvision_for("2.13.0") == "0.28.0"


@pytest.mark.parametrize(
    ("entry", "needle"),
    [
        ('{ version = "1.0", range = ">=1", file = "f", evidence = "e" }', "not both"),
        ('{ range = ">=>1", file = "f", evidence = "e" }', "not a version range"),
        ('{ version = "1.0", file = "f", commit = "abc", evidence = "e" }', "40-digit"),
        ('{ version = "1.0", file = "f" }', "evidence"),
    ],
)
def test_bad_nixpkgs_versions_are_one_line(cli, project: Path, entry: str, needle: str) -> None:
    spec = project / "matrix.toml"
    text = spec.read_text()
    head = '[lines."0.5.9".nixpkgs-versions]\n'
    spec.write_text(text.replace(head, head + f"zzz-broken = {entry}\n", 1))
    proc = cli("--root", str(project), "list")
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "nixpkgs-versions.zzz-broken" in proc.stderr and needle in proc.stderr


# --- the harness, on small packages ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_env(tmp_path_factory: pytest.TempPathFactory) -> Environment:
    root = tmp_path_factory.mktemp("small-env")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], check=True)
    python = root / "venv" / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    files = {
        # Fails for want of a GPU: the stand-in takes its place and records why.
        "gpukit/__init__.py": 'raise ImportError("libcuda.so.1: cannot open shared object file")\n',
        # Listed as GPU-only too, but fails for a reason a GPU would not fix: a real failure.
        "gpubroken/__init__.py": "import not_installed_anywhere\n",
        "app/__init__.py": "from gpukit import fused_op\n\n\n@fused_op\ndef kernel():\n    return 1\n",
        "app2/__init__.py": "from . import utils\n",
        "app2/utils.py": "import os\n\nimport IPython_not_here\n",
        # A library that re-raises an import error as its own (as transformers does).
        "wrapper.py": textwrap.dedent(
            """\
            try:
                import torchvision_not_here
            except ModuleNotFoundError as err:
                raise RuntimeError("Could not import module 'AutoProcessor'") from err
            """
        ),
        "app3.py": "import wrapper\n",
        "uses_broken.py": "import gpubroken\n",
        # Packages that link the line's torch (a wheel-torch line beside a stand-in torch).
        "abikit/__init__.py": 'raise OSError("_C.so: undefined symbol: _ZN3c1013MessageLoggerC1EPKc")\n',
        "abicuda/__init__.py": 'raise OSError("libcudart.so.13: cannot open shared object file")\n',
        "abibroken/__init__.py": 'raise OSError("libfoo.so.2: cannot open shared object file")\n',
        "abiapp.py": "import abikit\nimport abicuda\nfrom abiext import op\n",
    }
    for name, text in files.items():
        path = site / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    # An extension module that references a c10 symbol nothing defines: CPython's loader fails in
    # create_module (dlopen), not in exec_module, as sglang's mem_cache extension does beside torch 2.13.
    src = root / "abiext.c"
    src.write_text(
        "extern void _ZN3c1010fake_thingEv(void);\nvoid PyInit_abiext(void) { _ZN3c1010fake_thingEv(); }\n"
    )
    so = site / f"abiext{importlib.machinery.EXTENSION_SUFFIXES[0]}"
    if shutil.which("gcc"):
        subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(so), str(src)], check=True)
    else:  # without a compiler, a module that fails the same way at exec time
        (site / "abiext.py").write_text(
            'raise ImportError("abiext.so: undefined symbol: _ZN3c1010fake_thingEv")\n'
        )
    return Environment(root=root, python=python, site=site)


GPU_ONLY = {"gpukit": "needs a GPU", "gpubroken": "needs a GPU"}


def _import(
    env: Environment,
    modules: list[str],
    gpu_only: dict[str, str] | None = None,
    torch_abi: dict[str, Any] | None = None,
) -> dict[str, Any]:
    config = {"mode": "import", "modules": modules, "gpu_only": gpu_only or {}, "torch_abi": torch_abi}
    return checks.run_harness(env, config, "tmp")


TORCH_ABI = {"packages": ["abikit", "abicuda", "abiext", "abibroken"], "reason": "links torch 2.14.1"}


def test_what_links_the_lines_torch_is_stood_in_for_only_for_that_reason(small_env: Environment) -> None:
    data = _import(small_env, ["abiapp"], torch_abi=TORCH_ABI)
    assert data["results"][0]["ok"] is True, data["results"]
    stood = data["torch_abi_stand_ins"]
    assert set(stood) == {"abikit", "abicuda", "abiext"} and data["stand_ins"] == {}
    assert "_ZN3c1013MessageLogger" in stood["abikit"] and "links torch 2.14.1" in stood["abikit"]
    assert "libcudart.so.13" in stood["abicuda"] and "_ZN3c1010fake_thing" in stood["abiext"]
    # Without the rule (the line's own torch, or a source-torch line) the same import fails.
    data = _import(small_env, ["abiapp"])
    assert data["results"][0]["ok"] is False and data["torch_abi_stand_ins"] == {}
    # A package that links torch but fails for another reason is a real failure.
    data = _import(small_env, ["abibroken"], torch_abi=TORCH_ABI)
    assert data["results"][0]["ok"] is False and "libfoo.so.2" in data["results"][0]["error"]
    assert data["torch_abi_stand_ins"] == {}
    # A GPU-only module's failure for want of a GPU is not taken for a torch-ABI one, and vice versa.
    data = _import(small_env, ["app"], GPU_ONLY, TORCH_ABI)
    assert data["results"][0]["ok"] is True and set(data["stand_ins"]) == {"gpukit"}


def test_a_gpu_only_module_is_stood_in_for_only_for_want_of_a_gpu(
    small_env: Environment,
) -> None:
    data = _import(small_env, ["app"], GPU_ONLY)
    assert data["results"][0]["ok"] is True
    assert "gpukit" in data["stand_ins"] and "libcuda.so.1" in data["stand_ins"]["gpukit"]
    # Without the stand-in the same import fails: the rehearsal does not hide it.
    data = _import(small_env, ["app"])
    assert data["results"][0]["ok"] is False and data["stand_ins"] == {}
    # A GPU-only module that fails for another reason is a real failure, with its missing module.
    data = _import(small_env, ["uses_broken"], GPU_ONLY)
    result = data["results"][0]
    assert result["ok"] is False and result["missing"] == "not_installed_anywhere"
    assert data["stand_ins"] == {}


def test_a_missing_module_is_named_with_its_import_chain(small_env: Environment) -> None:
    result = _import(small_env, ["app2"])["results"][0]
    assert result["ok"] is False
    assert result["missing"] == "IPython_not_here"
    assert [(c["file"], c["line"]) for c in result["chain"]] == [
        ("app2/__init__.py", 1),
        ("app2/utils.py", 3),
    ]


def test_the_root_cause_of_a_reraised_import_error_is_reported(small_env: Environment) -> None:
    result = _import(small_env, ["app3"])["results"][0]
    assert result["ok"] is False
    assert "AutoProcessor" in result["error"]
    assert result["missing"] == "torchvision_not_here"
    assert ("wrapper.py", 2) in [(c["file"], c["line"]) for c in result["chain"]]


def test_bad_variant_is_one_line_exit_2(cli) -> None:
    proc = cli("rehearse", "sglang-sm999-avx512")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "sglang-sm999-avx512" in proc.stderr


# --- the real rehearsal (network) ------------------------------------------------------------------------
def _rehearse(variant: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "sglang_matrix", "rehearse", variant, "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=2400,
        check=False,
    )
    if not proc.stdout.strip():
        tail = proc.stderr.strip().splitlines()[-3:]
        if "pip could not" in proc.stderr and "network" in proc.stderr.lower():
            pytest.skip(f"the package index is not reachable: {tail}")
        pytest.fail(f"rehearse printed no JSON (exit {proc.returncode}): {tail}")
    data = json.loads(proc.stdout)
    data["exit_code"] = proc.returncode
    return data


@pytest.fixture(scope="session")
def rehearsal() -> dict[str, Any]:
    return _rehearse(DEFAULT)


@pytest.fixture(scope="session")
def rehearsal_0523() -> dict[str, Any]:
    """The 0.5.23 line's default variant, with CI's torch stand-in (2.13.0+cpu): the line's torch 2.14.1
    wheel and its CUDA libraries are GBs (`--torch 2.14.1` rehearses with them where they are at hand)."""
    return _rehearse(DEFAULT_0523)


@pytest.mark.network
def test_the_default_variant_rehearses(rehearsal: dict[str, Any]) -> None:
    failed = [c["name"] for c in rehearsal["checks"] if c["status"] != "pass"]
    assert failed == [], json.dumps([c for c in rehearsal["checks"] if c["status"] != "pass"], indent=1)[
        :4000
    ]
    assert rehearsal["ok"] is True and rehearsal["exit_code"] == 0
    names = [c["name"] for c in rehearsal["checks"]]
    assert names[:1] == ["imports: sglang"]
    assert {"launch_server --help", "server modules", "sglang-serve --dry-run"} <= set(names)
    server = next(c for c in rehearsal["checks"] if c["name"] == "server modules")
    assert {r["module"] for r in server["details"]} >= {
        "sglang.srt.managers.scheduler",
        "sglang.srt.managers.tokenizer_manager",
        "sglang.srt.managers.detokenizer_manager",
        "sglang.srt.model_executor.model_runner",
        "sglang.srt.constrained.xgrammar_backend",
    }


@pytest.mark.network
def test_the_rehearsal_says_what_stands_in_for_what(rehearsal: dict[str, Any]) -> None:
    stand_ins = {s["what"]: s for s in rehearsal["environment"]["stand_ins"]}
    assert {"python", "torch", "torchvision"} <= set(stand_ins)
    assert "2.9.1" in stand_ins["torch"]["variant_has"]
    # The build's import check runs with no stand-in for a GPU; the server's modules say which they used.
    build = next(c for c in rehearsal["checks"] if c["name"] == "imports: sglang")
    assert build["stand_ins"] == {}
    assert "sgl_kernel" in rehearsal["gpu_stand_ins"]


@pytest.mark.network
def test_the_environment_holds_the_closure_and_nothing_dropped(rehearsal: dict[str, Any]) -> None:
    installed = {canonicalize_name(n): v for n, v in rehearsal["distributions"].items()}
    spec = load_spec(ROOT / "matrix.toml")
    for req in rehearsal["requirements"]:
        name = canonicalize_name(req["name"])
        if name in ("torch", "torchvision"):
            continue
        assert name in installed, name
        if req["nixpkgs"]:
            assert installed[name] in SpecifierSet(req["nixpkgs"]), (name, installed[name], req["nixpkgs"])
    missing = " ".join(rehearsal["environment"]["missing"])  # GitHub-only wheels, unreachable here
    for wheel in spec.lines["0.5.9"].wheels.values():
        if wheel.attr in {w["attr"] for w in rehearsal["wheels"]} and wheel.attr not in missing:
            assert installed[canonicalize_name(wheel.pname)] == wheel.version
    assert rehearsal["dropped_present"] == {}
    assert "flashinfer-cubin" not in installed  # pruned for sm90
    assert rehearsal["dependency_only"], "dependencies of nixpkgs' packages are listed"


def _shadowed(tmp_path: Path, rehearsal: dict[str, Any], module: str) -> Environment:
    """The rehearsal's environment without one distribution: a venv whose site-packages links every entry
    of the rehearsal's but that distribution's package and metadata, so it is absent as it would be had
    the spec dropped it (importlib finds neither the module nor its distribution)."""
    base = Path(rehearsal["environment"]["root"]) / "venv" / "bin" / "python"

    def purelib(python: Path) -> Path:
        code = "import sysconfig; print(sysconfig.get_path('purelib'))"
        out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
        return Path(out.stdout.strip())

    site = purelib(base)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv")], check=True)
    python = tmp_path / "venv" / "bin" / "python"
    own = purelib(python)
    gone = canonicalize_name(module)
    for entry in site.iterdir():
        stem = entry.name.split("-")[0] if entry.name.endswith(".dist-info") else entry.name
        if canonicalize_name(stem.removesuffix(".py")) == gone:
            continue
        (own / entry.name).symlink_to(entry)
    return Environment(root=tmp_path, python=python, site=own)


@pytest.mark.network
def test_without_ipython_the_builds_import_check_fails_with_its_chain(
    rehearsal: dict[str, Any], tmp_path: Path
) -> None:
    env = _shadowed(tmp_path, rehearsal, "IPython")
    [check] = checks.build_imports(env, {"sglang": ("sglang",)})
    assert check.status == "fail"
    [result] = check.details
    assert result["missing"] == "IPython"
    chain = [(c["file"], c["line"]) for c in result["chain"]]
    # The order Python runs: sglang/__init__.py imports sglang.lang first, which reaches sglang.utils.
    assert chain[0][0] == "sglang/__init__.py" and chain[-1] == ("sglang/utils.py", 26)


@pytest.mark.network
def test_without_torchvision_the_server_does_not_start(rehearsal: dict[str, Any], tmp_path: Path) -> None:
    spec = load_spec(ROOT / "matrix.toml")
    closure = plan_closure(spec, find_variant(spec, DEFAULT))  # type: ignore[arg-type]
    env = _shadowed(tmp_path, rehearsal, "torchvision")
    check, _ = checks.launch_server_help(closure, env)
    assert check.status == "fail"
    [result] = check.details
    assert result["missing"] == "torchvision"
    chain = [(c["file"], c["line"]) for c in result["chain"]]
    assert chain[0] == ("sglang/launch_server.py", 7)
    assert chain[-1] == ("sglang/srt/multimodal/internvl_utils.py", 3)


@pytest.mark.network
def test_the_import_audit_finds_no_hard_miss_in_any_variant(
    rehearsal: dict[str, Any], rehearsal_0523: dict[str, Any]
) -> None:
    """`audit --imports --all` against each line's rehearsal environment (the closest stand-in for each
    variant's Python set; without --env the audit takes each line's from the cache): every module
    sglang's start-up imports is provided, for every variant of both lines."""
    proc = subprocess.run(
        [sys.executable, "-m", "sglang_matrix", "audit", "--imports", "--all", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:] + proc.stdout[-2000:]
    data = json.loads(proc.stdout)
    assert data["ok"] is True
    for line, rehearsed in (("0.5.9", rehearsal), ("0.5.23", rehearsal_0523)):
        assert data["envs"][line]["path"] == str(Path(rehearsed["environment"]["root"]) / "venv")
    spec = load_spec(ROOT / "matrix.toml")
    assert len(data["variants"]) == len(resolve_variants(spec))
    hard = [f for r in data["results"] for f in r["findings"] if f["severity"] == "hard"]
    assert hard == [], hard[:3]


@pytest.mark.network
def test_the_0_5_23_default_variant_rehearses(rehearsal_0523: dict[str, Any]) -> None:
    r = rehearsal_0523
    failed = [c for c in r["checks"] if c["status"] != "pass"]
    assert failed == [], json.dumps(failed, indent=1)[:4000]
    assert r["ok"] is True and r["exit_code"] == 0
    names = [c["name"] for c in r["checks"]]
    assert {"imports: sglang", "imports: sgl-deep-gemm", "launch_server --help", "server modules"} <= set(
        names
    )
    assert "sglang-serve --dry-run" in names
    server = next(c for c in r["checks"] if c["name"] == "server modules")
    spec = load_spec(ROOT / "matrix.toml")
    assert {e["module"] for e in server["details"]} == set(spec.lines["0.5.23"].server_modules)
    assert all(e["ok"] for e in server["details"])
    # The line's wheels, installed at their locked versions (the CPython 3.11 file of each platform wheel).
    installed = {canonicalize_name(n): v for n, v in r["distributions"].items()}
    for attr in ("sglang", "sglang-kernel", "sgl-deep-gemm", "triton", "xgrammar", "transformers"):
        wheel = spec.lines["0.5.23"].wheels[attr]
        assert installed[canonicalize_name(wheel.pname)] == wheel.version, attr
    assert r["dropped_present"] == {}


@pytest.mark.network
def test_the_0_5_23_rehearsal_says_what_stands_in_for_what(rehearsal_0523: dict[str, Any]) -> None:
    r = rehearsal_0523
    stand_ins = {s["what"]: s for s in r["environment"]["stand_ins"]}
    assert "2.14.1" in stand_ins["torch"]["variant_has"] and "2.13.0" in stand_ins["torch"]["rehearsal_has"]
    assert "0.29.1" in stand_ins["torchvision"]["variant_has"]
    # sglang is a platform wheel: its CPython 3.11 file stands in for the variant's 3.12 one, by name.
    assert stand_ins["sglang"]["variant_has"].startswith("sglang-0.5.23-cp312-cp312-")
    assert stand_ins["sglang"]["rehearsal_has"].startswith("sglang-0.5.23-cp311-cp311-")
    assert r["environment"]["torch"] == {"torch": "2.13.0", "torchvision": "0.28.0", "real": False}
    assert canonicalize_name("torch") in {canonicalize_name(n) for n in r["distributions"]}
    assert r["distributions"]["torch"].startswith("2.13.0")
    # Every torch-ABI stand-in is a module of a wheel that links the line's torch, stood in for exactly
    # that reason (an undefined torch/c10 symbol or a CUDA 13 library the CPU torch lacks).
    abi = r["environment"]["torch_abi"]
    assert abi is not None and {"sglang", "deep_gemm", "sgl_kernel", "flash_mla"} <= set(abi["packages"])
    for module, why in r["torch_abi_stand_ins"].items():
        assert module.split(".")[0] in abi["packages"], module
        assert re.search(r"undefined symbol: _Z|\.so\.13: cannot open|lib(torch|c10)_cuda\.so", why), why
    # deep_gemm's import check (the build's) cannot load _C.so beside the CPU torch: stood in, and said.
    deep_gemm = next(c for c in r["checks"] if c["name"] == "imports: sgl-deep-gemm")
    assert set(deep_gemm["torch_abi_stand_ins"]) == {"deep_gemm"} and deep_gemm["stand_ins"] == {}
    # No check stands in for a GPU but the server's; the build's import check of sglang stands in for nothing.
    build = next(c for c in r["checks"] if c["name"] == "imports: sglang")
    assert build["stand_ins"] == {} and build["torch_abi_stand_ins"] == {}
    assert set(r["gpu_stand_ins"]) <= set(spec_gpu_only("0.5.23"))


def spec_gpu_only(line: str) -> dict[str, str]:
    return load_spec(ROOT / "matrix.toml").lines[line].gpu_only_modules


@pytest.mark.network
def test_gh200s_launch_default_is_an_attention_backend_sglang_has(rehearsal_0523: dict[str, Any]) -> None:
    """The 0.5.23 GH200 variants' launchers default SGLANG_ATTENTION_BACKEND=flashinfer (serve-defaults:
    no FA3 in sglang-kernel's aarch64 wheel). sglang-serve passes it on, and launch_server --help offers
    it; a value sglang does not have fails the dry-run check."""
    spec = load_spec(ROOT / "matrix.toml")
    gh200 = find_variant(spec, "sglang-0_5_23-sm90-aarch64")
    assert gh200 is not None and gh200.serve_defaults == {"SGLANG_ATTENTION_BACKEND": "flashinfer"}
    root = Path(rehearsal_0523["environment"]["root"])
    python = root / "venv" / "bin" / "python"
    out = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    )
    env = Environment(
        root, python, Path(out.stdout.strip()), torch_abi=rehearsal_0523["environment"]["torch_abi"]
    )
    closure = plan_closure(spec, find_variant(spec, DEFAULT_0523))  # type: ignore[arg-type]
    help_check, help_text = checks.launch_server_help(closure, env)
    assert help_check.status == "pass", help_check.notes
    check = checks.serve_dry_run(env, help_text, gh200.serve_defaults)
    assert check.status == "pass", check.notes
    assert "--attention-backend flashinfer" in check.details[0]["argv"]
    assert any("SGLANG_ATTENTION_BACKEND=flashinfer" in note for note in check.notes)
    wrong = checks.serve_dry_run(env, help_text, {"SGLANG_ATTENTION_BACKEND": "fa9"})
    assert wrong.status == "fail"
