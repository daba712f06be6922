"""bench/closure's arithmetic and sources table, without downloads: hand-made sizes for the arithmetic,
then the recorded bench/closure-sizes.json with the real spec and lock, then the script itself."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import closure_parts as cp  # noqa: E402

M = 1_000_000
VIEW = cp.VariantView(
    name="sglang-sm90-avx512",
    system="x86_64-linux",
    python="3.12",
    cuda="12.8",
    target="sm90",
    capabilities=("9.0",),
    wheels={"sgl-kernel": "sk.whl", "sglang": "sg.whl", "flashinfer-jit-cache": "jit.whl"},
    pruned={"sgl-kernel": ("sgl_kernel/sm100", "lib")},
)
LOCK = {
    "sk.whl": {"unpacked": 1000 * M, "prunable": {"sgl_kernel/sm100": 300 * M, "lib": 40 * M}},
    "sg.whl": {"unpacked": 20 * M, "prunable": {}},
    "jit.whl": {"url": "https://example.invalid/jit.whl", "unpacked": None},
}


def sizes() -> dict[str, Any]:
    wheels: dict[str, Any] = {lib.key: {"file": f"{lib.key}.whl", "unpacked": 10 * M} for lib in cp.CUDA_LIBS}
    wheels["cudnn"]["unpacked"] = 1000 * M
    wheels["cusparselt"]["unpacked"] = 400 * M
    wheels["torch"] = {
        "file": "torch.whl",
        "unpacked": 1700 * M,
        # stored (LZ4) and uncompressed bytes of cubins per SM; 89 is a stub next to 86's full build
        "device": {"all_stored": 1000 * M, "by_sm": {"80": [150 * M, 800 * M], "86": [140 * M, 700 * M],
                                                      "89": [5 * M, 20 * M], "90": [150 * M, 800 * M]}},
    }  # fmt: skip
    wheels["nccl"] = {"file": "nccl.whl", "unpacked": 300 * M,
                      "device": {"all_stored": 250 * M, "by_sm": {"90": [20 * M, 90 * M]}}}  # fmt: skip
    wheels["triton"] = {
        "file": "triton.whl",
        "unpacked": 500 * M,
        "bundled_cuda": {"bin": 90 * M, "include": 5 * M},
    }
    wheels["nvcc"] = {"file": "nvcc.whl", "unpacked": 98 * M}
    wheels["cccl"] = {"file": "cccl.whl", "unpacked": 12 * M}
    return {
        "wheels": wheels,
        "fatbin_default": {"cubin_default": "none", "tool": "test"},
        "toolchain": {"source": "test packages", "packages": {"gcc": 200 * M, "binutils": 30 * M}},
        "cpython": {"source": "test python", "interpreter": 150 * M, "libraries": {"libc6": 10 * M}},
        "python_deps": {
            "versions": "test",
            "inputs": ["numpy", "datasets", "nvidia-ml-py"],
            "distributions": {
                "numpy": {"version": "2", "file": "n.whl", "unpacked": 40 * M, "requires": []},
                "datasets": {
                    "version": "4",
                    "file": "d.whl",
                    "unpacked": 10 * M,
                    "requires": ["pyarrow", "numpy"],
                },
                "pyarrow": {"version": "2", "file": "p.whl", "unpacked": 100 * M, "requires": ["numpy"]},
                "torch": {"version": "2.9.1", "file": "t.whl", "unpacked": 1700 * M, "requires": ["numpy"]},
                "nvidia-cublas-cu12": {"version": "1", "file": "c.whl", "unpacked": 870 * M, "requires": []},
                "nvidia-ml-py": {"version": "1", "file": "m.whl", "unpacked": 1 * M, "requires": []},
                "sglang": {"version": "0.5.9", "file": "s.whl", "unpacked": 20 * M, "requires": []},
            },
        },
        "baseline": {"unpacked": 10_000 * M},
    }


def by_name(parts: list[cp.Part]) -> dict[str, cp.Part]:
    return {p.name: p for p in parts}


def test_parts_add_up_with_their_sources() -> None:
    parts = cp.closure(sizes(), VIEW, LOCK, cp.Switches())
    p = by_name(parts)
    assert p["sgl-kernel"].bytes == 660 * M and "less sgl_kernel/sm100, lib" in p["sgl-kernel"].source
    assert p["sgl-kernel"].kind == "measured"
    assert p["flashinfer-jit-cache"].bytes is None and p["flashinfer-jit-cache"].kind == "unknown"
    assert "GitHub-only" in p["flashinfer-jit-cache"].source
    assert p["host code"].bytes == 700 * M
    assert p["device code (9.0)"].bytes == 800 * M  # uncompressed: nixpkgs' default
    assert "uncompressed" in p["device code (9.0)"].source
    assert p["NCCL (static in libtorch_cuda)"].bytes == 50 * M + 20 * M
    assert p["cuDNN"].bytes == 1000 * M and p["cuDNN"].kind == "proxy"
    assert "cudnn.whl" in p["cuDNN"].source and "874 MB" in p["cuDNN"].source  # the manifest's archive
    assert p["triton"].bytes == 405 * M
    assert p["nvcc"].kind == "lower bound"
    assert p["host compiler (gcc 14, binutils, libc headers)"].bytes == 230 * M
    deps = next(x for x in parts if x.name.startswith("dependencies"))
    # torch, the CUDA wheels and the line's wheels are parts of their own; nvidia-ml-py is a Python package.
    assert deps.bytes == 151 * M and deps.name == "dependencies (4 distributions)"
    assert p["CPython and the C libraries it links"].bytes == 160 * M
    assert {p[n].kind for n in cp.NOT_LINKED} == {"not counted"}
    assert all(x.source for x in parts)
    expected = (660 + 20 + 700 + 800 + 70 + 1000 + 400 + 9 * 10 + 405 + 98 + 12 + 230 + 151 + 160) * M
    tot = cp.total(parts)
    assert tot.bytes == expected
    assert tot.is_bound and any("flashinfer-jit-cache" in s for s in tot.incomplete)
    assert any(s.startswith("nvcc") for s in tot.incomplete)


def test_levers_are_measured_differences() -> None:
    data = sizes()
    base = cp.total(cp.closure(data, VIEW, LOCK, cp.Switches())).bytes
    levers = {lever.name: lever for lever in cp.levers(data, VIEW, LOCK, cp.Switches())}
    assert levers["compress torch's device code as pip's builds do"].saves == 650 * M
    assert levers["build torch without cuDNN"].saves == 1000 * M
    assert levers["build torch without cuSPARSELt"].saves == 400 * M
    # Dropping datasets drops what only it pulls in (pyarrow), not what others need too (numpy).
    assert levers["leave out `datasets` (and what only it pulls in: pyarrow, pandas, ...)"].saves == 110 * M
    assert levers["leave out `llguidance`"].saves == 0  # not among these inputs
    every = cp.total(cp.closure(data, VIEW, LOCK, cp.EVERY_LEVER))
    assert every.bytes == base - 2160 * M
    off = by_name(cp.closure(data, VIEW, LOCK, cp.Switches(cudnn=False)))["cuDNN"]
    assert off.kind == "not counted" and "switched off" in off.source
    assert all(lever.costs and lever.switch.startswith(("[build]", "[lines.")) for lever in levers.values())


def test_device_code_of_a_stub_capability_takes_the_same_majors_largest() -> None:
    view = cp.VariantView(**{**vars(VIEW), "capabilities": ("8.9",), "wheels": {}})
    part = by_name(cp.torch_parts(sizes(), view, cp.Switches(compress=True)))["device code (8.9)"]
    assert part.bytes == 150 * M and "same-major 150 MB used" in part.source
    view = cp.VariantView(**{**vars(VIEW), "capabilities": ("8.0", "9.0"), "wheels": {}})
    part = by_name(cp.torch_parts(sizes(), view, cp.Switches()))["device code (8.0, 9.0)"]
    assert part.bytes == 1600 * M


def test_a_bound_never_meets_the_target() -> None:
    bound = cp.Total(1000 * M, ("flashinfer-jit-cache (unknown)",))
    text = cp.verdict(bound, 10_000 * M, 0.6)
    assert "meets" not in text and "lower bound" in text and "cannot be told" in text
    assert "missed" in cp.verdict(cp.Total(7000 * M, ("x (unknown)",)), 10_000 * M, 0.6)
    assert "meets" in cp.verdict(cp.Total(5000 * M, ()), 10_000 * M, 0.6)
    assert "misses" in cp.verdict(cp.Total(7000 * M, ()), 10_000 * M, 0.6)


def test_switches_read_before_and_after_the_levers_patch() -> None:
    assert cp.switches_from({"build": {"max-jobs-cap": 16}}, "sm90") == cp.Switches()
    raw = {
        "build": {
            "torch-cuda-libraries": {"cudnn": False},
            "torch-nvcc-flags": ["-Xfatbin", "-compress-all"],
        },
        "targets": {"sm61": {"cudnn": False}},
    }
    assert cp.switches_from(raw, "sm90") == cp.Switches(cudnn=False, cusparselt=True, compress=True)
    assert cp.switches_from({"targets": {"sm61": {"cudnn": False}}}, "sm61").cudnn is False


def test_parts_refuse_sizes_that_are_not_there() -> None:
    with pytest.raises(ValueError):
        cp.Part("g", "n", None, "proxy", "s")
    with pytest.raises(ValueError):
        cp.Part("g", "n", 1, "guessed", "s")
    data = sizes()
    del data["wheels"]["nccl"]
    with pytest.raises(KeyError, match="--measure"):
        cp.closure(data, VIEW, LOCK, cp.Switches())


def test_python_dependencies_leave_out_the_parts_of_their_own() -> None:
    assert cp.is_separate("nvidia_cudnn_cu12", [])
    assert cp.is_separate("Triton", [])
    assert cp.is_separate("sgl_kernel", ["sgl-kernel"])
    assert not cp.is_separate("nvidia-ml-py", [])


# The recorded sizes with the real spec and lock.
DATA = ROOT / "bench" / "closure-sizes.json"


@pytest.fixture(scope="module")
def recorded() -> dict[str, Any]:
    if not DATA.is_file():
        pytest.skip("bench/closure-sizes.json not recorded")
    return json.loads(DATA.read_text())


def test_recorded_sizes_are_whole_and_consistent(recorded: dict[str, Any]) -> None:
    base = recorded["baseline"]
    assert base["unpacked"] == sum(d["unpacked"] or 0 for d in base["distributions"].values())
    assert len(base["distributions"]) > 100
    for lib in cp.CUDA_LIBS:
        name, _, version = lib.requirement.partition("==")
        entry = recorded["wheels"][lib.key]
        assert entry["file"].startswith(f"{name.replace('-', '_')}-{version}-"), entry["file"]
        assert entry["unpacked"] > 0
    torch = recorded["wheels"]["torch"]
    assert torch["file"].startswith("torch-2.9.1-cp312-")
    stored, unpacked = torch["device"]["by_sm"]["90"]
    assert 0 < stored < unpacked  # pip's build compresses; the experiment below says nixpkgs' does not
    exp = recorded["fatbin_default"]
    assert (exp["cubin_default"], exp["cubin_compress_all"], exp["ptx_default"]) == ("none", "lz4", "lz4")


def test_the_real_variant_is_counted_whole(recorded: dict[str, Any]) -> None:
    sys.path.insert(0, str(ROOT / "tools"))
    from sglang_matrix.lockfile import read_lock
    from sglang_matrix.spec import load_spec
    from sglang_matrix.variants import resolve_variants

    spec = load_spec(ROOT / "matrix.toml")
    v = next(v for v in resolve_variants(spec) if v.name == cp.TARGET[0])
    view = cp.VariantView(v.name, v.system, v.python, v.cuda, v.target, v.capabilities, v.wheels, v.pruned)
    parts = cp.closure(recorded, view, read_lock(ROOT)["wheels"], cp.Switches())
    names = {p.name for p in parts}
    for needed in (
        "host code",
        "device code (9.0)",
        "NCCL (static in libtorch_cuda)",
        "triton",
        "nvcc",
        "CCCL",
    ):
        assert needed in names
    assert {lib.label for lib in cp.CUDA_LIBS} <= names
    assert any(n.startswith("dependencies (") for n in names) and any(n.startswith("CPython") for n in names)
    jit = next(p for p in parts if p.name == "flashinfer-jit-cache")
    assert jit.kind == "unknown" and jit.bytes is None  # GitHub-only: never guessed
    tot = cp.total(parts)
    assert tot.is_bound and "meets" not in cp.verdict(tot, recorded["baseline"]["unpacked"], cp.TARGET[1])


def test_the_script_prints_every_part_and_no_verdict_on_a_bound(recorded: dict[str, Any]) -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "closure")], capture_output=True, text=True, check=True
    ).stdout
    assert "flashinfer-jit-cache" in out and "unknown" in out and "cuDNN" in out and "NCCL" in out
    assert "meets" not in out
    js = json.loads(
        subprocess.run(
            [sys.executable, str(ROOT / "bench" / "closure"), "--json", cp.TARGET[0]],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    (variant,) = js["variants"]
    assert (
        variant["defaults"]["lower_bound"] and variant["every_lever"]["bytes"] < variant["defaults"]["bytes"]
    )
    saved = sum(lever["saves"] for lever in variant["levers"])
    assert variant["defaults"]["bytes"] - variant["every_lever"]["bytes"] == saved


def test_the_script_rejects_an_unknown_variant() -> None:
    r = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "closure"), "no-such-variant"], capture_output=True, text=True
    )
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "no-such-variant" in r.stderr


def test_sizes_file_missing_is_a_clean_error(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "closure"), "--data", str(tmp_path / "none.json")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "--measure" in r.stderr and "Traceback" not in r.stderr


def test_sizes_are_not_shared_between_calls() -> None:
    data = sizes()
    before = copy.deepcopy(data)
    cp.levers(data, VIEW, LOCK, cp.Switches())
    assert data == before


def test_an_extras_edges_count_only_where_a_requirement_asks_for_it() -> None:
    graph = {
        "transformers": {"requires": {"": ["numpy"], "torch": ["datasets", "torch"]}},
        "datasets": {"requires": {"": ["pyarrow"]}},
        "pyarrow": {"requires": {}},
        "numpy": {"requires": {}},
        "torch": {"requires": {}},
        "outlines": {"requires": {"": ["transformers[torch]"]}},
    }
    assert cp.reachable(graph, ["transformers"]) == {"transformers", "numpy"}
    assert cp.reachable(graph, ["outlines"]) == {
        "outlines",
        "transformers",
        "numpy",
        "datasets",
        "pyarrow",
        "torch",
    }
    assert cp.reachable(graph, ["Transformers", "missing"]) == {"transformers", "numpy"}


def test_sizes_that_lack_a_part_are_a_clean_error(recorded: dict[str, Any], tmp_path: Path) -> None:
    for path_to in (("wheels", "nccl"), ("baseline",)):
        data = copy.deepcopy(recorded)
        parent = data
        for k in path_to[:-1]:
            parent = parent[k]
        del parent[path_to[-1]]
        sizes = tmp_path / "sizes.json"
        sizes.write_text(json.dumps(data))
        r = subprocess.run(
            [sys.executable, str(ROOT / "bench" / "closure"), "--data", str(sizes)],
            capture_output=True,
            text=True,
        )
        assert r.returncode == 2 and "--measure" in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert r.stderr.strip().count("\n") == 0
