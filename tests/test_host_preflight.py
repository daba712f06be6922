"""`sglang-serve --preflight` on fake hosts with the stub driver: each case of issue 11, run as a user runs
it (a fresh `python -m sglang_matrix.serve` process, the variant from the spec or from a record)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from host_fixtures import MACHINE, ROOT, Stubs, make_host, stub_env
from sglang_matrix.host import preflight
from sglang_matrix.host.record import load_record, matrix_from_spec, parse_record
from sglang_matrix.spec import load_spec

CPUINFO = ROOT / "tests" / "fixtures" / "which"
H100 = "NVIDIA H100 80GB HBM3:9.0"
SM90 = "sglang-sm90-avx512"
REFUSED = "sglang-serve: refused: "

pytestmark = pytest.mark.skipif(MACHINE != "x86_64", reason="the fake hosts use x86_64 CPU recordings")


@pytest.fixture(scope="module")
def stubs(tmp_path_factory: pytest.TempPathFactory) -> Stubs:
    return Stubs(tmp_path_factory.mktemp("stubs"))


def host(tmp_path: Path, stubs: Stubs, layout: str = "ubuntu", cpu: str = "h100", **kwargs: object) -> Path:
    root = tmp_path / "root"
    make_host(root, layout, stubs, **kwargs)  # type: ignore[arg-type]
    (root / "proc").mkdir(exist_ok=True)
    (root / "proc" / "cpuinfo").write_text((CPUINFO / f"{cpu}.cpuinfo").read_text())
    return root


def serve(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SGLANG_", "CUDA_VISIBLE", "STUB_"))}
    full = {**clean, "SGLANG_MATRIX_HOST_ROOT": str(root), **env}
    return subprocess.run(
        [sys.executable, "-m", "sglang_matrix.serve", "--preflight", *args],
        cwd=ROOT,
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
    )


def refusals(done: subprocess.CompletedProcess[str]) -> list[str]:
    lines = done.stderr.splitlines()
    assert all(line.startswith(REFUSED) for line in lines), lines
    return [line[len(REFUSED) :] for line in lines]


def test_found_and_fits(tmp_path: Path, stubs: Stubs) -> None:
    root = host(tmp_path, stubs)
    done = serve(root, "--variant", SM90, **stub_env(H100))
    assert (done.returncode, done.stderr) == (0, ""), done.stdout + done.stderr
    driver_dir = root / "usr" / "lib" / f"{MACHINE}-linux-gnu"
    assert done.stdout.splitlines() == [
        f"preflight for {SM90}",
        "ok: the CPU has every flag of avx512 (avx512f avx512dq avx512vl avx512bw fma)",
        f"ok: driver 570.124.06 found in {driver_dir} (usual directory): 9 libraries exposed (libcuda.so, "
        "libcuda.so.1, libcuda.so.570.124.06, libnvidia-ml.so.1, ...)",
        f"ok: driver 570.124.06 (CUDA 12.8) runs {SM90} (CUDA 12.8) fully",
        f"ok: GPU 0: NVIDIA H100 80GB HBM3, capability 9.0, a target of {SM90}",
    ]


def test_driver_of_an_older_major_is_refused(tmp_path: Path, stubs: Stubs) -> None:
    root = host(tmp_path, stubs, release="470.256.02")
    done = serve(root, "--variant", SM90, **stub_env(H100, cuda=11040))
    assert done.returncode == 2
    assert refusals(done) == [
        f"driver 470.256.02 (CUDA 11.4) cannot run {SM90} (CUDA 12.8): update the driver to ≥ 525.60.13 "
        "(≥ 570.26 for full 12.8 support)"
    ]


def test_driver_of_an_older_minor_warns(tmp_path: Path, stubs: Stubs) -> None:
    root = host(tmp_path, stubs, release="550.54.15")
    done = serve(root, "--variant", SM90, **stub_env(H100, cuda=12040))
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    warning = next(line for line in done.stdout.splitlines() if line.startswith("warning: "))
    assert warning.startswith(
        f"warning: driver 550.54.15 (CUDA 12.4) runs {SM90} (CUDA 12.8) only through CUDA's minor-version "
        "compatibility: what needs a CUDA 12.8 driver fails"
    )
    assert warning.endswith(
        "update the driver to ≥ 570.26 for full support, or use an older CUDA: no variant of sm90 in the "
        "matrix is built for CUDA 12.4 or older"
    )


def test_older_minor_names_the_variant_built_for_an_older_cuda(tmp_path: Path, stubs: Stubs) -> None:
    root = host(tmp_path, stubs)
    done = serve(root, "--variant", "sglang-python312-cuda12_9-sm90-avx512", **stub_env(H100, cuda=12080))
    assert done.returncode == 0
    assert "(≥ 575.51.03" not in done.stdout
    assert done.stdout.splitlines()[3].endswith(
        "update the driver to ≥ 575.51.03 for full support, or use an older CUDA: sglang-sm90-avx512 is "
        "built for CUDA 12.8"
    )


def test_gpu_capability_not_in_the_variant_names_sm86(tmp_path: Path, stubs: Stubs) -> None:
    """The issue's own example: SGLANG_MATRIX_DRIVER_DIR at a stub that reports 8.6."""
    root = host(tmp_path, stubs)
    vendor = make_host(tmp_path / "vendor", "rhel", stubs)
    done = serve(root, "--variant", SM90, SGLANG_MATRIX_DRIVER_DIR=str(vendor), **stub_env("NVIDIA A40:8.6"))
    assert done.returncode == 2
    assert refusals(done) == [
        f"GPU 0 (NVIDIA A40, capability 8.6) cannot run {SM90}, built for 9.0 only: "
        "use sglang-sm86-avx512 (8.6)"
    ]
    assert f"found in {vendor} (SGLANG_MATRIX_DRIVER_DIR)" in done.stdout


def test_two_gpus_of_different_capabilities(tmp_path: Path, stubs: Stubs) -> None:
    root = host(tmp_path, stubs)
    gpus = stub_env(f"NVIDIA A100-SXM4-80GB:8.0;{H100}")
    done = serve(root, "--variant", SM90, **gpus)
    assert done.returncode == 2
    assert refusals(done) == [
        f"GPU 0 (NVIDIA A100-SXM4-80GB, capability 8.0) cannot run {SM90}, built for 9.0 only: use "
        "sglang-all-avx512 (7.5, 8.0, 8.6, 8.9, 9.0, 10.0, 12.0), or set CUDA_VISIBLE_DEVICES=1 to use only "
        "the GPUs it fits"
    ]
    # As told: the driver then shows only the H100, as GPU 0 of CUDA_VISIBLE_DEVICES=1.
    done = serve(root, "--variant", SM90, CUDA_VISIBLE_DEVICES="1", **gpus)
    assert done.returncode == 0, done.stderr
    assert f"ok: GPU 1: NVIDIA H100 80GB HBM3, capability 9.0, a target of {SM90}" in done.stdout
    # The fat variant runs on both.
    done = serve(root, "--variant", "sglang-all-avx512", **gpus)
    assert done.returncode == 0, done.stderr


def test_no_gpu_visible(tmp_path: Path, stubs: Stubs) -> None:
    root = host(tmp_path, stubs)
    done = serve(root, "--variant", SM90, CUDA_VISIBLE_DEVICES="", **stub_env(H100))
    assert done.returncode == 2
    (line,) = refusals(done)
    assert line.endswith(
        "cannot start CUDA: cuInit failed: CUDA_ERROR_NO_DEVICE (100): no GPU visible "
        "(CUDA_VISIBLE_DEVICES='')"
    )


def test_no_driver_at_all(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "proc").mkdir(parents=True)
    (root / "proc" / "cpuinfo").write_text((CPUINFO / "h100.cpuinfo").read_text())
    done = serve(root, "--variant", SM90)
    assert done.returncode == 2
    (line,) = refusals(done)
    assert line.startswith(
        f"no NVIDIA driver found (no libcuda.so.1 for {MACHINE} in /run/opengl-driver/lib, "
    )
    assert line.endswith(
        f"install the NVIDIA driver ({SM90} needs a driver ≥ 525.60.13, ≥ 570.26 for full CUDA 12.8 "
        "support), or set SGLANG_MATRIX_DRIVER_DIR to the directory that holds its libcuda.so.1"
    )


def test_cpu_without_the_isa_names_the_isa_variant_that_fits(tmp_path: Path, stubs: Stubs) -> None:
    root = host(tmp_path, stubs, cpu="laptop")
    done = serve(root, "--variant", SM90, **stub_env(H100))
    assert done.returncode == 2
    assert refusals(done) == [
        f"this CPU lacks avx512f avx512dq avx512vl avx512bw ({root}/proc/cpuinfo), which {SM90} (avx512) "
        "needs: use sglang-sm90-avx2 (avx2)"
    ]


def test_a_variant_for_another_system(tmp_path: Path, stubs: Stubs) -> None:
    root = host(tmp_path, stubs)
    done = serve(root, "--variant", "sglang-sm90-armv9", **stub_env(H100))
    assert done.returncode == 2
    assert refusals(done) == ["sglang-sm90-armv9 is built for aarch64-linux; this host is x86_64-linux"]


def test_the_toolkit_s_stub_library_is_not_a_driver(tmp_path: Path, stubs: Stubs) -> None:
    root = host(tmp_path, stubs)
    done = serve(root, "--variant", SM90, **stub_env(H100, STUB_CUINIT="34"))
    assert done.returncode == 2
    (line,) = refusals(done)
    assert line.endswith(
        "cuInit failed: CUDA_ERROR_STUB_LIBRARY (34): this libcuda.so.1 is the CUDA "
        "toolkit's stub, not a driver"
    )


def test_wsl_release_comes_from_nvml(tmp_path: Path, stubs: Stubs) -> None:
    root = host(tmp_path, stubs, layout="wsl")
    done = serve(root, "--variant", SM90, **stub_env(H100, STUB_RELEASE="576.02"))
    assert done.returncode == 0, done.stderr
    assert f"ok: driver 576.02 found in {root}/usr/lib/wsl/lib (WSL)" in done.stdout


def test_several_refusals_are_one_line_each(tmp_path: Path, stubs: Stubs) -> None:
    root = host(tmp_path, stubs, cpu="laptop", release="470.256.02")
    done = serve(root, "--variant", SM90, **stub_env("NVIDIA A40:8.6", cuda=11040))
    assert done.returncode == 2
    lines = refusals(done)
    assert [line.split(" ")[0] for line in lines] == ["this", "driver", "GPU"]
    assert "use sglang-sm86-avx2 (8.6)" in lines[2]  # fits the GPU and this CPU


def test_without_a_variant_only_the_driver_and_gpus(tmp_path: Path, stubs: Stubs) -> None:
    root = host(tmp_path, stubs)
    done = serve(root, **stub_env("NVIDIA A40:8.6"))
    assert done.returncode == 0
    assert done.stdout.splitlines()[1].startswith("note: no variant given")
    assert "ok: GPU 0: NVIDIA A40, capability 8.6" in done.stdout


def test_the_record_gives_the_variant(tmp_path: Path, stubs: Stubs) -> None:
    root = host(tmp_path, stubs)
    record = tmp_path / "record.json"
    data = matrix_from_spec(load_spec(ROOT / "matrix.toml"), SM90).to_json()
    record.write_text(json.dumps(data))
    done = serve(root, SGLANG_MATRIX_RECORD=str(record), **stub_env("NVIDIA A40:8.6"))
    assert done.returncode == 2 and "use sglang-sm86-avx512" in done.stderr
    # --variant looks the name up in the record.
    done = serve(
        root, "--variant", "sglang-sm86-avx512", SGLANG_MATRIX_RECORD=str(record), **stub_env("X:8.6")
    )
    assert done.returncode == 0, done.stderr
    done = serve(root, "--json", SGLANG_MATRIX_RECORD=str(record), **stub_env(H100))
    report = json.loads(done.stdout)
    assert report["ok"] is True and report["variant"] == SM90
    assert {f["check"] for f in report["findings"]} == {"driver", "cuda", "gpu", "cpu"}
    assert report["host"]["gpus"] == [
        {"index": 0, "name": "NVIDIA H100 80GB HBM3", "capability": "9.0", "driver": "570.124.06"}
    ]


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (["--variant", "sglang-sm99-avx9"], {}, "--variant 'sglang-sm99-avx9': no such variant in"),
        ([], {"SGLANG_MATRIX_RECORD": "/nonexistent/record.json"}, "/nonexistent/record.json: cannot read"),
        (["--json"], {"SGLANG_MATRIX_RECORD": "{record}"}, "not a sglang-matrix record (schema 1)"),
    ],
)
def test_bad_input_is_one_line_exit_2(
    tmp_path: Path, args: list[str], env: dict[str, str], needle: str
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": 9}')
    env = {k: v.replace("{record}", str(bad)) for k, v in env.items()}
    done = serve(tmp_path, *args, **env)
    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("sglang-serve: error: ") and needle in done.stderr


def test_fast_and_without_torch(tmp_path: Path, stubs: Stubs, monkeypatch: pytest.MonkeyPatch) -> None:
    """The preflight itself takes well under a second; the process never imports torch (or numpy)."""
    root = host(tmp_path, stubs)
    for name, value in {"SGLANG_MATRIX_HOST_ROOT": str(root), **stub_env(H100)}.items():
        monkeypatch.setenv(name, value)
    matrix = matrix_from_spec(load_spec(ROOT / "matrix.toml"), SM90)
    start = time.perf_counter()
    outcome = preflight.run_preflight(matrix)
    took = time.perf_counter() - start
    assert outcome.exit_code == 0, outcome.to_json()
    assert took < 0.5, took
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "sglang_matrix.serve", "--preflight", "--variant", SM90],
        cwd=ROOT,
        env={**os.environ},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    assert not {m for m in imported if m.split(".")[0] in ("torch", "numpy")}


def test_record_round_trip_and_validation() -> None:
    matrix = matrix_from_spec(load_spec(ROOT / "matrix.toml"), SM90)
    assert parse_record(json.loads(json.dumps(matrix.to_json())), "r").to_json() == matrix.to_json()
    assert all(v.system == "x86_64-linux" for v in matrix.variants)
    assert matrix.drivers is not None and matrix.drivers.full_for("12.8") == "570.26"
    data = matrix.to_json()
    data["variants"][0]["capabilities"] = "9.0"
    with pytest.raises(Exception, match=r"variants\[0\]\.capabilities: must be a list of strings"):
        parse_record(data, "r")
    data = matrix.to_json()
    data["cudaDrivers"]["full"]["12.8"] = "570.26\n"
    with pytest.raises(Exception, match="is not a driver version"):
        parse_record(data, "r")
    assert load_record  # the file form is exercised through sglang-serve above


# ---- the 0.5.23 line: no ISA, CUDA 13 ---------------------------------------------------------------------

SM90_0523 = "sglang-0_5_23-sm90-x86_64"


def nix_shaped_record(tmp_path: Path, name: str) -> Path:
    """The record as pkgs/sglang-env.nix writes it for `name`: the variants of its line and system, `isa`
    null and `cpuFeatures` [] where the variant has no ISA (lib/'s view of the same spec)."""
    spec = load_spec(ROOT / "matrix.toml")
    matrix = matrix_from_spec(spec, name)
    data = matrix.to_json()
    path = tmp_path / "record.json"
    path.write_text(json.dumps(data))
    return path


def test_a_variant_without_an_isa_runs_on_any_cpu_with_a_580_driver(tmp_path: Path, stubs: Stubs) -> None:
    """The laptop CPU has no AVX-512 and the record says nothing of an ISA: only the driver and GPU matter."""
    root = host(tmp_path, stubs, cpu="laptop", release="580.65.06")
    record = nix_shaped_record(tmp_path, SM90_0523)
    data = json.loads(record.read_text())
    entry = next(v for v in data["variants"] if v["name"] == SM90_0523)
    assert (entry["isa"], entry["cpuFeatures"], entry["cuda"]) == (None, [], "13.0")
    assert {v["line"] for v in data["variants"]} == {"0.5.23"}
    assert {v["system"] for v in data["variants"]} == {"x86_64-linux"}
    done = serve(root, SGLANG_MATRIX_RECORD=str(record), **stub_env(H100, cuda=13000))
    assert (done.returncode, done.stderr) == (0, ""), done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"preflight for {SM90_0523}"
    assert lines[1] == f"ok: {SM90_0523} has no ISA: it runs on any x86_64-linux CPU"
    assert f"ok: driver 580.65.06 (CUDA 13.0) runs {SM90_0523} (CUDA 13.0) fully" in lines
    # The same from the spec, by name, as --json.
    done = serve(root, "--json", "--variant", SM90_0523, **stub_env(H100, cuda=13000))
    report = json.loads(done.stdout)
    assert report["ok"] is True and report["variant"] == SM90_0523
    assert [f["level"] for f in report["findings"]] == ["ok"] * 4


def test_a_driver_older_than_580_is_refused_for_a_cuda_13_variant(tmp_path: Path, stubs: Stubs) -> None:
    """575 (CUDA 12.9) cannot run CUDA 13 code at all: refused, naming 580 (and 13.0's GA driver); no
    variant of the line is built for an older CUDA, so none is offered."""
    root = host(tmp_path, stubs, release="575.57.08")
    record = nix_shaped_record(tmp_path, SM90_0523)
    for args, env in ((("--variant", SM90_0523), {}), ((), {"SGLANG_MATRIX_RECORD": str(record)})):
        done = serve(root, *args, **env, **stub_env(H100, cuda=12090))
        assert done.returncode == 2, done.stdout
        assert refusals(done) == [
            f"driver 575.57.08 (CUDA 12.9) cannot run {SM90_0523} (CUDA 13.0): update the driver to ≥ 580 "
            "(≥ 580.65.06 for full 13.0 support)"
        ]
    # With no driver at all, the message names the same driver.
    bare = tmp_path / "bare"
    (bare / "proc").mkdir(parents=True)
    (bare / "proc" / "cpuinfo").write_text((CPUINFO / "h100.cpuinfo").read_text())
    done = serve(bare, "--variant", SM90_0523)
    (line,) = refusals(done)
    assert (
        f"install the NVIDIA driver ({SM90_0523} needs a driver ≥ 580, ≥ 580.65.06 for full CUDA 13.0" in line
    )


def test_a_0_5_23_gpu_refusal_names_a_variant_of_the_same_line(tmp_path: Path, stubs: Stubs) -> None:
    root = host(tmp_path, stubs, release="580.65.06")
    done = serve(root, "--variant", SM90_0523, **stub_env("NVIDIA A40:8.6", cuda=13000))
    assert done.returncode == 2
    assert refusals(done) == [
        f"GPU 0 (NVIDIA A40, capability 8.6) cannot run {SM90_0523}, built for 9.0 only: "
        "use sglang-0_5_23-sm86-x86_64 (8.6)"
    ]
    # An aarch64 variant of the line on this x86_64 host.
    done = serve(root, "--variant", "sglang-0_5_23-sm90-aarch64", **stub_env(H100, cuda=13000))
    assert refusals(done) == [
        "sglang-0_5_23-sm90-aarch64 is built for aarch64-linux; this host is x86_64-linux"
    ]


def test_the_record_lists_only_its_own_line_and_takes_null_isa() -> None:
    spec = load_spec(ROOT / "matrix.toml")
    old, new = matrix_from_spec(spec, SM90), matrix_from_spec(spec, SM90_0523)
    assert {v.line for v in old.variants} == {"0.5.9"} and {v.line for v in new.variants} == {"0.5.23"}
    assert parse_record(json.loads(json.dumps(new.to_json())), "r").to_json() == new.to_json()
    assert new.current.isa is None and new.current.cpu_features == ()
    data = new.to_json()
    data["variants"][0]["isa"] = ""
    with pytest.raises(Exception, match=r"variants\[0\]\.isa: must be a non-empty string or null"):
        parse_record(data, "r")
    data["variants"][0]["isa"] = None
    data["variants"][0]["python"] = None
    with pytest.raises(Exception, match=r"variants\[0\]\.python: must be a non-empty string$"):
        parse_record(data, "r")
