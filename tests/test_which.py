"""sglang-matrix which: recorded hosts (tests/fixtures/which) through the CLI, and the rules on their own."""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sglang_matrix import which as which_mod
from sglang_matrix.cli import main
from sglang_matrix.errors import UserError
from sglang_matrix.host import probe
from sglang_matrix.spec import load_spec

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "matrix.toml"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "which"


def run(*args: str, spec: Path = SPEC) -> Result:
    return CliRunner().invoke(main, ["--spec", str(spec), "which", *args])


def host(smi: str, cpu: str, machine: str = "x86_64", *extra: str, spec: Path = SPEC) -> Result:
    return run(
        "--nvidia-smi-output",
        str(FIXTURES / f"{smi}.nvidia-smi"),
        "--cpuinfo",
        str(FIXTURES / f"{cpu}.cpuinfo"),
        "--machine",
        machine,
        *extra,
        spec=spec,
    )


def host_json(smi: str, cpu: str, machine: str = "x86_64", spec: Path = SPEC) -> tuple[int, dict[str, Any]]:
    result = host(smi, cpu, machine, "--json", spec=spec)
    return result.exit_code, json.loads(result.output)


def rejected(data: dict[str, Any]) -> dict[str, list[str]]:
    return {r["name"]: r["reasons"] for r in data["rejected"]}


def no_driver_probes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither NVML nor a driver on this machine answers: nvidia-smi (faked on PATH) is asked."""
    monkeypatch.setattr(probe, "_probe_nvml", lambda: None)
    monkeypatch.setattr(probe, "_probe_driver_api", lambda: None)


# ------------------------------------------------------------------------------------- fixture machines


@pytest.mark.parametrize(
    ("machine", "choice"),
    [
        ("t4", "sglang-sm75-avx512vnni"),  # Cascade Lake has avx512 and avx512_vnni, no avx512_bf16
        ("a100", "sglang-sm80-avx2"),  # EPYC 7B12 (Rome) has no avx512
        # Sapphire Rapids and Zen 4 have both avx512_bf16 and avx512_vnni: a tie in cpu-features, which goes
        # to the ISA the line lists later. Their drivers support CUDA 12.9 and 13.0, but the default CUDA
        # (12.8, the short names) comes first.
        ("h100", "sglang-sm90-avx512vnni"),
        ("rtx4090", "sglang-sm89-avx512vnni"),
    ],
)
def test_fixture_machines_choose(machine: str, choice: str) -> None:
    result = host(machine, machine)
    assert result.exit_code == 0, result.output
    assert f"choice: {choice}" in result.output
    assert f"nix build .#{choice}" in result.output
    code, data = host_json(machine, machine)
    assert code == 0
    assert data["choice"] == choice
    assert data["command"] == f"nix build .#{choice}"
    assert data["system"] == "x86_64-linux"
    assert len(data["gpus"]) == 1


def test_a100_on_rome_says_why_not_avx512() -> None:
    _, data = host_json("a100", "a100")
    avx512 = "CPU lacks avx512f, avx512dq, avx512vl, avx512bw"
    # Only the default Python and CUDA's variants: the others would repeat the same reasons.
    assert rejected(data) == {
        "sglang-sm80-avx512vnni": [f"{avx512}, avx512_vnni"],
        "sglang-sm80-avx512bf16": [f"{avx512}, avx512_bf16"],
        "sglang-sm80-avx512": [avx512],
    }
    assert data["cpu"]["isas"] == ["avx2", "avx"]
    assert data["cpu"]["missing"] == [
        "avx512f",
        "avx512dq",
        "avx512vl",
        "avx512bw",
        "avx512_bf16",
        "avx512_vnni",
    ]
    assert data["gpus"][0] == {
        "index": 0,
        "name": "NVIDIA A100-SXM4-80GB",
        "capability": "8.0",
        "driver": "570.124.06",
    }
    assert data["driver_cuda"] == "12.8"


def test_h100_human_output_names_everything() -> None:
    out = host("h100", "h100").output
    assert "GPU 0: NVIDIA H100 80GB HBM3, capability 9.0, driver 575.57.08" in out
    assert "driver CUDA: 12.9" in out
    assert "Intel(R) Xeon(R) Platinum 8488C" in out
    assert "avx512f" in out and "ISAs that fit: avx2, avx, avx512, avx512bf16, avx512vnni" in out
    assert "choice: sglang-sm90-avx512vnni (line 0.5.9, sm90: 9.0, avx512vnni, CUDA 12.8)" in out


def test_single_sm_target_preferred_over_fat() -> None:
    _, data = host_json("h100", "h100")
    assert data["choice"] == "sglang-sm90-avx512vnni"
    # Nothing nearer was rejected: the fat target ranks after the single-SM one, and the other Pythons and
    # CUDAs after the default ones, and none of them is listed.
    assert data["rejected"] == []


def test_laptop_without_gpu_picks_fat_target_by_cpu() -> None:
    result = host("laptop", "laptop")
    assert result.exit_code == 0, result.output
    assert "GPU: none detected" in result.output
    assert "no NVIDIA GPU detected" in result.output
    code, data = host_json("laptop", "laptop")
    assert code == 0
    assert data["gpus"] == [] and data["driver_cuda"] is None
    assert "couldn't communicate with the NVIDIA driver" in data["gpu_problem"]
    assert data["choice"] == "sglang-all-avx2"
    avx512 = "CPU lacks avx512f, avx512dq, avx512vl, avx512bw"
    assert rejected(data) == {
        "sglang-all-avx512vnni": [f"{avx512}, avx512_vnni"],
        "sglang-all-avx512bf16": [f"{avx512}, avx512_bf16"],
        "sglang-all-avx512": [avx512],
    }


def test_gh200_picks_sm90_armv9() -> None:
    """Grace has the features of both aarch64 ISAs (three each): the tie goes to the one listed later."""
    result = host("gh200", "gh200", "aarch64")
    assert result.exit_code == 0, result.output
    assert "nix build .#sglang-sm90-armv9" in result.output
    code, data = host_json("gh200", "gh200", "aarch64")
    assert code == 0
    assert data["choice"] == "sglang-sm90-armv9"
    assert data["system"] == "aarch64-linux"
    assert data["cpu"]["isas"] == ["armv8_2", "armv9"]
    assert data["rejected"] == []


def test_a_recorded_aarch64_host_is_aarch64_wherever_which_runs() -> None:
    """Issue 12: a GH200's recorded cpuinfo, with no --machine, on this (x86_64) machine: the recorded
    file's architecture wins."""
    result = run(
        "--json",
        "--nvidia-smi-output",
        str(FIXTURES / "gh200.nvidia-smi"),
        "--cpuinfo",
        str(FIXTURES / "gh200.cpuinfo"),
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert (data["system"], data["cpu"]["machine"]) == ("aarch64-linux", "aarch64")
    assert data["choice"] == "sglang-sm90-armv9"
    # An lscpu recording says its architecture in so many words.
    code, data = host_json("t4", "t4", "amd64")
    assert (code, data["system"]) == (0, "x86_64-linux")


@pytest.mark.parametrize(
    ("machine", "cpu", "message"),
    [
        ("", "h100", "--machine '': not a machine architecture sglang-matrix knows (x86_64, aarch64, amd64"),
        ("sparc64", "h100", "--machine 'sparc64': not a machine architecture sglang-matrix knows"),
        (" ", "h100", "--machine ' ': not a machine architecture"),
        ("x86_64", "gh200", "--machine 'x86_64' contradicts"),
        ("aarch64", "h100", "--machine 'aarch64' contradicts"),
    ],
)
def test_bad_or_contradicting_machine_is_one_line_exit_2(machine: str, cpu: str, message: str) -> None:
    result = host("h100", cpu, machine)
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"sglang-matrix: {message}")
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_machine_names_the_architecture_of_a_live_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a recording, --machine stands for this host's architecture; an unknown one is refused."""
    cpu = probe.probe_cpu(None, "arm64")
    assert (cpu.machine, cpu.system) == ("aarch64", "aarch64-linux")
    with pytest.raises(UserError, match="not a machine architecture"):
        probe.probe_cpu(None, "riscv64")
    monkeypatch.setattr(probe.platform, "machine", lambda: "AMD64")
    assert probe.probe_cpu(None, None).machine == "x86_64"


def test_the_driver_api_answers_when_nvml_does_not(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """which, smoke and preflight share host/probe.py: with no pynvml, the driver found by the launchers'
    search (here a stub at SGLANG_MATRIX_DRIVER_DIR) is asked through the driver API."""
    from host_fixtures import Stubs, make_host

    directory = make_host(tmp_path / "root", "rhel", Stubs(tmp_path / "stubs"))
    monkeypatch.setattr(probe, "_probe_nvml", lambda: None)
    monkeypatch.setenv("SGLANG_MATRIX_DRIVER_DIR", str(directory))
    monkeypatch.setenv("STUB_GPUS", "NVIDIA L4:8.9;NVIDIA L4:8.9")
    monkeypatch.setenv("STUB_CUDA_VERSION", "12090")
    found = probe.probe_gpus()
    assert found.source == f"CUDA driver API ({directory}/libcuda.so.1)"
    assert [(g.index, g.name, g.capability, g.driver) for g in found.gpus] == [
        (0, "NVIDIA L4", "8.9", "570.124.06"),
        (1, "NVIDIA L4", "8.9", "570.124.06"),
    ]
    assert found.driver_cuda == "12.9"
    cpu = probe.probe_cpu(FIXTURES / "rtx4090.cpuinfo", None)
    assert which_mod.decide(load_spec(SPEC), found, cpu).choice.name == "sglang-sm89-avx512vnni"


def without_aarch64(tmp_path: Path) -> Path:
    """A copy of the real spec with the aarch64 ISAs and system taken out."""
    text = SPEC.read_text(encoding="utf-8")
    for name in ("armv8_2", "armv9"):
        block = re.search(rf"^\[isas\.{name}\]\n(?:[^\n\[][^\n]*\n)*\n?", text, re.MULTILINE)
        assert block is not None, f"no [isas.{name}] in matrix.toml"
        text = text.replace(block.group(0), "")
    for old, new in (
        ('systems = ["x86_64-linux", "aarch64-linux"]', 'systems = ["x86_64-linux"]'),
        (', "armv8_2", "armv9"]', "]"),
    ):
        assert old in text, f"matrix.toml no longer has {old!r}"
        text = text.replace(old, new)
    assert "armv9" not in re.sub(r"#.*", "", text)
    spec = tmp_path / "matrix.toml"
    spec.write_text(text, encoding="utf-8")
    return spec


def test_no_isa_for_the_host_system(tmp_path: Path) -> None:
    spec = without_aarch64(tmp_path)
    result = host("gh200", "gh200", "aarch64", spec=spec)
    assert result.exit_code == 1
    assert "no variant fits: no ISA for aarch64-linux in the spec" in result.output
    code, data = host_json("gh200", "gh200", "aarch64", spec=spec)
    assert code == 1
    assert data["choice"] is None and data["command"] is None
    assert data["system"] == "aarch64-linux"
    assert data["reasons"] == ["no ISA for aarch64-linux in the spec"]


def test_gh200_with_an_armv9_isa_picks_sm90_armv9(tmp_path: Path) -> None:
    spec = tmp_path / "matrix.toml"
    spec.write_text(ARMV9_SPEC, encoding="utf-8")
    code, data = host_json("gh200", "gh200", "aarch64", spec=spec)
    assert code == 0, data
    assert data["choice"] == "sglang-sm90-armv9"
    assert data["cpu"]["features"] == ["sve2", "bf16", "i8mm"]
    # The same spec still serves x86_64 hosts.
    code, data = host_json("h100", "h100", spec=spec)
    assert (code, data["choice"]) == (0, "sglang-sm90-avx512")


def test_armv9_isa_rejects_a_neoverse_without_sve2(tmp_path: Path) -> None:
    spec = tmp_path / "matrix.toml"
    spec.write_text(ARMV9_SPEC, encoding="utf-8")
    cpuinfo = tmp_path / "graviton2.cpuinfo"
    cpuinfo.write_text("processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics\n")
    result = run(
        "--json",
        "--nvidia-smi-output",
        str(FIXTURES / "gh200.nvidia-smi"),
        "--cpuinfo",
        str(cpuinfo),
        "--machine",
        "arm64",
        spec=spec,
    )
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert data["system"] == "aarch64-linux"
    assert rejected(data)["sglang-sm90-armv9"] == ["CPU lacks sve2, bf16, i8mm"]


# ---------------------------------------------------------------------------------- the 0.5.23 line (no ISA)


def smi_with_driver(tmp_path: Path, base: str, release: str, cuda: str) -> Path:
    """A recorded nvidia-smi of `base` with another driver release and its CUDA version."""
    text = (FIXTURES / f"{base}.nvidia-smi").read_text()
    old = re.search(r"Driver Version: (\S+)", text).group(1)
    text = text.replace(old, release)
    text = re.sub(r"CUDA Version: \S+", f"CUDA Version: {cuda}", text)
    smi = tmp_path / f"{base}-{release}.nvidia-smi"
    smi.write_text(text)
    return smi


def test_each_line_names_its_variant_on_a_cuda_13_driver() -> None:
    """The RTX 4090 host's driver is 580.65.06 (CUDA 13.0): both lines fit, each says so."""
    result = host("rtx4090", "rtx4090")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "per release line:" in out
    assert (
        "  0.5.23: sglang-0_5_23-sm89-x86_64 (sm89: 8.9, any x86_64 CPU, CUDA 13.0): "
        "nix build .#sglang-0_5_23-sm89-x86_64"
    ) in out
    assert (
        "  0.5.9: sglang-sm89-avx512vnni (sm89: 8.9, avx512vnni, CUDA 12.8): "
        "nix build .#sglang-sm89-avx512vnni"
    ) in out
    code, data = host_json("rtx4090", "rtx4090")
    assert code == 0
    assert list(data["lines"]) == ["0.5.23", "0.5.9"]  # newest first
    assert data["lines"]["0.5.23"] == {
        "choice": "sglang-0_5_23-sm89-x86_64",
        "command": "nix build .#sglang-0_5_23-sm89-x86_64",
        "cuda": "13.0",
        "isa": None,
        "rejected": [],
        "reasons": [],
    }
    assert data["lines"]["0.5.9"]["choice"] == "sglang-sm89-avx512vnni"
    # The top choice keeps its precedence: a build for this CPU's ISA before an any-CPU one.
    assert data["choice"] == "sglang-sm89-avx512vnni"


def test_a_variant_without_an_isa_fits_any_cpu_of_its_system(tmp_path: Path) -> None:
    """A CPU with none of the spec's flags (pre-AVX x86_64): no 0.5.9 variant fits, 0.5.23's does, and its
    CPU check is skipped, not failed."""
    cpuinfo = tmp_path / "nehalem.cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: Intel Xeon X5570\nflags\t\t: fpu sse sse2 lm ssse3 sse4_1 sse4_2\n"
    )
    result = run(
        "--json",
        "--nvidia-smi-output",
        str(FIXTURES / "rtx4090.nvidia-smi"),
        "--cpuinfo",
        str(cpuinfo),
        "--machine",
        "x86_64",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["choice"] == "sglang-0_5_23-sm89-x86_64"
    assert data["cpu"]["isas"] == []
    line_9 = data["lines"]["0.5.9"]
    assert line_9["choice"] is None
    assert (
        "the CPU has no ISA of line 0.5.9 for x86_64-linux (avx, avx2, avx512, avx512bf16, avx512vnni)"
        in (line_9["reasons"])
    )
    assert data["lines"]["0.5.23"]["rejected"] == []
    text = run(
        "--nvidia-smi-output",
        str(FIXTURES / "rtx4090.nvidia-smi"),
        "--cpuinfo",
        str(cpuinfo),
        "--machine",
        "x86_64",
    ).output
    assert "choice: sglang-0_5_23-sm89-x86_64 (line 0.5.23, sm89: 8.9, any x86_64 CPU, CUDA 13.0)" in text
    assert "  0.5.9: no variant fits: the CPU has no ISA of line 0.5.9" in text


def test_a_driver_older_than_580_names_580_for_the_cuda_13_line() -> None:
    """The H100 host's 575 driver (CUDA 12.9) runs 0.5.9, not 0.5.23: that line says which driver fits."""
    result = host("h100", "h100")
    assert result.exit_code == 0
    assert (
        "  0.5.23: no variant fits: the driver supports CUDA 12.9; every variant of line 0.5.23 for "
        "x86_64-linux that fits this GPU needs >= 13.0 (update the NVIDIA driver to >= 580)"
    ) in result.output
    _, data = host_json("h100", "h100")
    need = ["needs driver CUDA >= 13.0 (NVIDIA driver >= 580), driver supports 12.9"]
    assert data["lines"]["0.5.23"]["rejected"] == [
        {"name": "sglang-0_5_23-sm90-x86_64", "reasons": need},
        {"name": "sglang-0_5_23-all-x86_64", "reasons": need},
    ]
    assert data["choice"] == data["lines"]["0.5.9"]["choice"] == "sglang-sm90-avx512vnni"


def test_a_recorded_gh200_with_a_580_driver_gets_the_aarch64_variant(tmp_path: Path) -> None:
    """A GH200 recording, no --machine, on this x86_64 machine: the recording's architecture still wins, and
    0.5.23's aarch64 variant (any aarch64 CPU) fits once the driver is a CUDA 13 one."""
    smi = smi_with_driver(tmp_path, "gh200", "580.65.06", "13.0")
    result = run("--json", "--nvidia-smi-output", str(smi), "--cpuinfo", str(FIXTURES / "gh200.cpuinfo"))
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert (data["system"], data["cpu"]["machine"]) == ("aarch64-linux", "aarch64")
    assert data["lines"]["0.5.23"]["choice"] == "sglang-0_5_23-sm90-aarch64"
    assert data["lines"]["0.5.9"]["choice"] == "sglang-sm90-armv9"


def test_no_isa_for_the_system_still_fits_a_variant_without_one(tmp_path: Path) -> None:
    """With the aarch64 ISAs taken out (0.5.9 then builds nothing for aarch64), a GH200 still gets 0.5.23's
    variant: it needs no ISA."""
    text = SPEC.read_text(encoding="utf-8")
    for name in ("armv8_2", "armv9"):
        block = re.search(rf"^\[isas\.{name}\]\n(?:[^\n\[][^\n]*\n)*\n?", text, re.MULTILINE)
        assert block is not None
        text = text.replace(block.group(0), "")
    assert ', "armv8_2", "armv9"]' in text
    spec = tmp_path / "matrix.toml"
    spec.write_text(text.replace(', "armv8_2", "armv9"]', "]"), encoding="utf-8")
    smi = smi_with_driver(tmp_path, "gh200", "580.65.06", "13.0")
    args = ("--nvidia-smi-output", str(smi), "--cpuinfo", str(FIXTURES / "gh200.cpuinfo"))
    result = run("--json", *args, spec=spec)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["choice"] == "sglang-0_5_23-sm90-aarch64"
    assert data["cpu"]["isas"] == [] and data["cpu"]["features"] == []
    assert data["lines"]["0.5.9"]["reasons"] == [
        "line 0.5.9 builds nothing for aarch64-linux (it has no ISA for it)"
    ]
    text_out = run(*args, spec=spec).output
    assert (
        "choice: sglang-0_5_23-sm90-aarch64 (line 0.5.23, sm90: 9.0, any aarch64 CPU, CUDA 13.0)" in text_out
    )
    # The recorded driver (CUDA 12.8) fits no line then.
    result = run(
        "--json",
        "--nvidia-smi-output",
        str(FIXTURES / "gh200.nvidia-smi"),
        "--cpuinfo",
        str(FIXTURES / "gh200.cpuinfo"),
        spec=spec,
    )
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert data["choice"] is None
    assert data["reasons"] == [
        "the driver supports CUDA 12.8; every variant for aarch64-linux that fits this GPU needs >= 13.0 "
        "(update the NVIDIA driver to >= 580)"
    ]


def test_driver_for_follows_the_cuda_drivers_table() -> None:
    spec = load_spec(SPEC)
    assert which_mod.driver_for(spec, "13.0") == "580"  # the oldest CUDA 13 driver (minor compatibility)
    assert which_mod.driver_for(spec, "12.8") == "570.26"  # 12.8's GA driver: the first whose CUDA is 12.8
    assert which_mod.driver_for(spec, "12.9") == "575.51.03"


# ------------------------------------------------------------------------------------- driver, mixed GPUs


def test_driver_too_old() -> None:
    result = host("h100-driver550", "h100")
    assert result.exit_code == 1
    old_12 = "needs driver CUDA >= 12.8 (NVIDIA driver >= 570.26), driver supports 12.4"
    old_13 = "needs driver CUDA >= 13.0 (NVIDIA driver >= 580), driver supports 12.4"
    assert old_12 in result.output
    _, data = host_json("h100-driver550", "h100")
    assert data["choice"] is None
    assert data["driver_cuda"] == "12.4"
    # Each line, target and ISA once, under its default Python and CUDA; 0.5.23's one variant per target
    # (no ISA) after 0.5.9's ISA builds.
    isas = ("avx512vnni", "avx512bf16", "avx512", "avx2", "avx")
    assert [r["name"] for r in data["rejected"]] == [
        name
        for t in ("sm90", "all")
        for name in (*(f"sglang-{t}-{i}" for i in isas), f"sglang-0_5_23-{t}-x86_64")
    ]
    assert all(r == [old_13 if "0_5_23" in n else old_12] for n, r in rejected(data).items())
    assert data["reasons"] == [
        "the driver supports CUDA 12.4; every variant for x86_64-linux that fits this GPU needs >= 12.8 "
        "(update the NVIDIA driver to >= 570.26)"
    ]
    # Per line: the driver each line's CUDA needs (CUDA 13: the 580 drivers).
    assert data["lines"]["0.5.23"]["reasons"] == [
        "the driver supports CUDA 12.4; every variant of line 0.5.23 for x86_64-linux that fits this GPU "
        "needs >= 13.0 (update the NVIDIA driver to >= 580)"
    ]
    assert data["lines"]["0.5.9"]["choice"] is None


def b300(tmp_path: Path, driver_cuda: str) -> Path:
    """A B300 (10.3: only CUDA 12.9 builds it) on the recorded H100 host, with a driver for `driver_cuda`."""
    text = (FIXTURES / "h100.nvidia-smi").read_text()
    text = text.replace("NVIDIA H100 80GB HBM3, 9.0,", "NVIDIA B300, 10.3,")
    text = text.replace("CUDA Version: 12.9", f"CUDA Version: {driver_cuda}")
    smi = tmp_path / f"b300-{driver_cuda}.nvidia-smi"
    smi.write_text(text)
    return smi


def test_target_only_a_newer_cuda_builds_takes_that_cuda(tmp_path: Path) -> None:
    smi = b300(tmp_path, "12.9")
    result = run("--json", "--nvidia-smi-output", str(smi), "--cpuinfo", str(FIXTURES / "h100.cpuinfo"))
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    # sm103 has no CUDA 12.8 variant; the default Python stays.
    assert data["choice"] == "sglang-python312-cuda12_9-sm103-avx512vnni"
    # 0.5.23's sm103 is its line's default CUDA (13.0), so it ranks first, and this driver cannot run it.
    assert rejected(data) == {
        "sglang-0_5_23-sm103-x86_64": [
            "needs driver CUDA >= 13.0 (NVIDIA driver >= 580), driver supports 12.9"
        ]
    }


def test_driver_for_12_8_never_gets_a_12_9_variant(tmp_path: Path) -> None:
    smi = b300(tmp_path, "12.8")
    result = run("--json", "--nvidia-smi-output", str(smi), "--cpuinfo", str(FIXTURES / "h100.cpuinfo"))
    assert result.exit_code == 1, result.output
    data = json.loads(result.output)
    assert data["choice"] is None
    assert data["reasons"] == [
        "the driver supports CUDA 12.8; every variant for x86_64-linux that fits this GPU needs >= 12.9 "
        "(update the NVIDIA driver to >= 575.51.03)"
    ]
    names = [r["name"] for r in data["rejected"]]
    assert names[0] == "sglang-0_5_23-sm103-x86_64"
    assert names[1] == "sglang-python312-cuda12_9-sm103-avx512vnni"
    assert all("-cuda12_9-sm103-" in name for name in names[1:])
    need = "needs driver CUDA >= 12.9 (NVIDIA driver >= 575.51.03), driver supports 12.8"
    assert all(r == [need] for n, r in rejected(data).items() if "0_5_23" not in n)


def test_default_cuda_first_even_where_the_driver_has_a_newer_one() -> None:
    # The H100's driver supports 12.9, the T4's 12.8 only: both get the default CUDA's short names.
    for machine in ("h100", "t4"):
        code, data = host_json(machine, machine)
        assert code == 0
        assert not data["choice"].startswith("sglang-python"), data["choice"]


def test_default_python_and_cuda_rank_before_the_isa() -> None:
    spec = load_spec(SPEC)
    gpu = probe.GpuProbe((probe.Gpu(0, "NVIDIA H100 80GB HBM3", "9.0", "x"),), "12.9", "test")
    cpu = probe.probe_cpu(FIXTURES / "h100.cpuinfo", "x86_64")
    line = spec.lines["0.5.9"]
    assert (line.python, line.cuda) == ("3.12", "12.8")
    # With 3.13 as the default Python, whose variants have avx2 and avx512 only, the host keeps the default
    # Python (the short name, now 3.13's) rather than take 3.12 for a better ISA.
    only_313 = dataclasses.replace(
        spec,
        lines={"0.5.9": dataclasses.replace(line, pythons=("3.13", "3.12"))},
    )
    assert which_mod.decide(only_313, gpu, cpu).choice.name == "sglang-sm90-avx512"
    # With 12.9 as the default CUDA and the driver at 12.8, the other CUDA is chosen.
    cuda129 = dataclasses.replace(spec, lines={"0.5.9": dataclasses.replace(line, cudas=("12.9", "12.8"))})
    old_driver = dataclasses.replace(gpu, driver_cuda="12.8")
    choice = which_mod.decide(cuda129, old_driver, cpu).choice
    assert (choice.python, choice.cuda, choice.isa) == ("3.12", "12.8", "avx512vnni")
    assert which_mod.decide(cuda129, gpu, cpu).choice.name == "sglang-sm90-avx512vnni"


def test_mixed_gpus_take_the_fat_target() -> None:
    code, data = host_json("mixed-a100-h100", "h100")
    assert code == 0
    assert [g["capability"] for g in data["gpus"]] == ["8.0", "9.0"]
    assert data["choice"] == "sglang-all-avx512vnni"
    # Every single-SM variant of either GPU ranks before the fat target: each target and ISA once.
    isas = ("avx512vnni", "avx512bf16", "avx512", "avx2", "avx")
    new_driver = "needs driver CUDA >= 13.0 (NVIDIA driver >= 580), driver supports 12.8"
    assert rejected(data) == {
        **{f"sglang-sm80-{isa}": ["GPU capability 9.0 is not a target (8.0)"] for isa in isas},
        **{f"sglang-sm90-{isa}": ["GPU capability 8.0 is not a target (9.0)"] for isa in isas},
        "sglang-0_5_23-sm80-x86_64": ["GPU capability 9.0 is not a target (8.0)", new_driver],
        "sglang-0_5_23-sm90-x86_64": ["GPU capability 8.0 is not a target (9.0)", new_driver],
    }
    # 0.5.23's fat target ranks after 0.5.9's (an ISA build before an any-CPU one): not "nearer", but its
    # line says why it does not fit.
    assert data["lines"]["0.5.23"]["choice"] is None
    assert data["lines"]["0.5.23"]["rejected"][-1] == {
        "name": "sglang-0_5_23-all-x86_64",
        "reasons": [new_driver],
    }


def test_mixed_gpus_no_target_covers_all(tmp_path: Path) -> None:
    smi = tmp_path / "p40-h100.nvidia-smi"
    text = (FIXTURES / "mixed-a100-h100.nvidia-smi").read_text()
    smi.write_text(text.replace("NVIDIA A100-SXM4-80GB, 8.0,", "Tesla P40, 6.1,"))
    result = run("--json", "--nvidia-smi-output", str(smi), "--cpuinfo", str(FIXTURES / "h100.cpuinfo"))
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert data["choice"] is None
    assert "no target covers every GPU of this mixed host (6.1, 9.0)" in data["reasons"]
    assert rejected(data)["sglang-all-avx512"] == [
        "GPU capability 6.1 is not a target (7.5, 8.0, 8.6, 8.9, 9.0, 10.0, 12.0)"
    ]


def test_capability_in_no_target(tmp_path: Path) -> None:
    smi = tmp_path / "orin.nvidia-smi"
    smi.write_text((FIXTURES / "h100.nvidia-smi").read_text().replace("HBM3, 9.0,", "HBM3, 8.7,"))
    result = run("--json", "--nvidia-smi-output", str(smi), "--cpuinfo", str(FIXTURES / "h100.cpuinfo"))
    assert result.exit_code == 1
    assert "GPU capability 8.7 is in no target for x86_64-linux" in json.loads(result.output)["reasons"]


# ------------------------------------------------------------------------------------- JSON shape


def test_json_shape() -> None:
    _, data = host_json("t4", "t4")
    assert set(data) >= {"gpus", "driver_cuda", "cpu", "system", "choice", "command", "rejected"}
    assert set(data["gpus"][0]) == {"index", "name", "capability", "driver"}
    assert set(data["cpu"]) >= {"machine", "model", "features", "missing", "isas"}
    assert isinstance(data["rejected"], list)
    assert (
        data["cpu"]["model"] == "Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz"
    )  # lscpu format is read too


# ------------------------------------------------------------------------------------- live probing


def test_no_nvidia_smi_on_path_is_no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    no_driver_probes(monkeypatch)
    monkeypatch.setattr(probe.shutil, "which", lambda name: None)
    result = run("--json", "--cpuinfo", str(FIXTURES / "laptop.cpuinfo"), "--machine", "x86_64")
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert data["gpu_problem"] == "nvidia-smi not found"
    assert data["choice"] == "sglang-all-avx2"


def test_live_nvidia_smi_is_parsed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fake nvidia-smi on PATH answers both calls the way the real one does."""
    recorded = (FIXTURES / "rtx4090.nvidia-smi").read_text()
    query, banner = recorded.split("### nvidia-smi\n")
    (tmp_path / "query.txt").write_text(query.removeprefix("### query\n"))
    (tmp_path / "banner.txt").write_text(banner)
    fake = tmp_path / "nvidia-smi"
    fake.write_text(
        f'#!/bin/sh\nif [ "$#" -gt 0 ]; then cat {tmp_path}/query.txt; else cat {tmp_path}/banner.txt; fi\n'
    )
    fake.chmod(0o755)
    no_driver_probes(monkeypatch)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    found = probe.probe_gpus()
    assert found.problem is None
    assert [(g.name, g.capability) for g in found.gpus] == [("NVIDIA GeForce RTX 4090", "8.9")]
    assert found.driver_cuda == "13.0"


def test_failing_nvidia_smi_is_no_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "nvidia-smi"
    fake.write_text('#!/bin/sh\necho "NVIDIA-SMI has failed because it couldn\'t communicate"\nexit 9\n')
    fake.chmod(0o755)
    no_driver_probes(monkeypatch)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    found = probe.probe_gpus()
    assert found.gpus == ()
    assert found.problem == "nvidia-smi failed: NVIDIA-SMI has failed because it couldn't communicate"


# ------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "### query\nNVIDIA H100 80GB HBM3, [N/A], 550.54.15\n### nvidia-smi\nCUDA Version: 12.4\n",
            "cannot read GPU line",
        ),
        ("### query\nNVIDIA H100 80GB HBM3, 9.0, 550.54.15\n", "no '### nvidia-smi' section"),
        (
            "### query\nNVIDIA H100 80GB HBM3, 9.0, 550.54.15\n### nvidia-smi\n| NVIDIA-SMI 550 |\n",
            "no 'CUDA Version",
        ),
        ("NVIDIA H100 80GB HBM3, 9.0, 550.54.15\n", "text before the first"),
        ("### banner\n", "unknown section 'banner'"),
        ("### failed\nx\n### query\n", "stands alone"),
    ],
)
def test_bad_fixture_is_one_line_exit_2(tmp_path: Path, text: str, message: str) -> None:
    bad = tmp_path / "bad.nvidia-smi"
    bad.write_text(text)
    result = run("--nvidia-smi-output", str(bad), "--cpuinfo", str(FIXTURES / "h100.cpuinfo"))
    assert result.exit_code == 2
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert result.output.startswith("sglang-matrix: ")
    assert "Traceback" not in result.output


def test_missing_fixture_file_is_exit_2(tmp_path: Path) -> None:
    result = run("--nvidia-smi-output", str(tmp_path / "absent"), "--cpuinfo", str(FIXTURES / "h100.cpuinfo"))
    assert result.exit_code == 2
    assert re.match(r"sglang-matrix: .*absent: cannot read", result.output)


def test_cpuinfo_without_flags_is_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "cpuinfo"
    bad.write_text("processor\t: 0\nmodel name\t: something\n")
    result = run("--nvidia-smi-output", str(FIXTURES / "h100.nvidia-smi"), "--cpuinfo", str(bad))
    assert result.exit_code == 2
    assert "no 'flags' or 'Features' line" in result.output
    assert len(result.output.strip().splitlines()) == 1


# ------------------------------------------------------------------------------------- units


def test_parse_cpuinfo_takes_flags_every_processor_has() -> None:
    model, flags = probe.parse_cpuinfo(
        "processor: 0\nmodel name: X\nflags: avx2 fma avx512f\n\nprocessor: 1\nflags: avx2 fma\n", "t"
    )
    assert model == "X"
    assert flags == frozenset({"avx2", "fma"})


def test_nix_system_aliases() -> None:
    assert probe.nix_system("AMD64") == "x86_64-linux"
    assert probe.nix_system("arm64") == "aarch64-linux"
    assert probe.nix_system("aarch64") == "aarch64-linux"


def test_parse_query_rejects_garbage() -> None:
    with pytest.raises(UserError):
        probe.parse_query("Field 'compute_cap' is not a valid field to query.", "q")


# A minimal spec with one aarch64 ISA (armv9) beside two x86_64 ones, independent of the real matrix.
ARMV9_SPEC = """
schema = 1

[nixpkgs]
rev = "0182a361324364ae3f436a63005877674cf45efb"
min-nix = "2.18"

[build]
max-jobs-cap = 16
default-variant = "sglang-sm90-avx512"

[isas.avx2]
systems = ["x86_64-linux"]
description = "Haswell and newer"
flags = ["-mavx2", "-mfma", "-mf16c"]
cpu-features = ["avx2", "fma", "f16c"]

[isas.avx512]
systems = ["x86_64-linux"]
description = "Skylake-SP and newer"
flags = ["-mavx512f", "-mavx512dq", "-mavx512vl", "-mavx512bw", "-mfma"]
cpu-features = ["avx512f", "avx512dq", "avx512vl", "avx512bw", "fma"]

[isas.armv9]
systems = ["aarch64-linux"]
description = "Neoverse V2 (Grace) and newer"
flags = ["-march=armv9-a+sve2+bf16+i8mm"]
cpu-features = ["sve2", "bf16", "i8mm"]

[capabilities]
"7.5" = { min-cuda = "10.0" }
"8.0" = { min-cuda = "11.2" }
"8.6" = { min-cuda = "11.2" }
"8.9" = { min-cuda = "11.8" }
"9.0" = { min-cuda = "11.8" }
"10.0" = { min-cuda = "12.7" }
"12.0" = { min-cuda = "12.8" }

[targets.sm90]
capabilities = ["9.0"]
architecture = "Hopper"
gpus = ["H100", "GH200"]

[targets.all]
capabilities = ["7.5", "8.0", "8.6", "8.9", "9.0", "10.0", "12.0"]
architecture = "Turing through Blackwell"
gpus = ["T4 through RTX 5090"]

[sonames]
"libc.so.6" = "glibc"

[lines."0.5.9"]
python = "3.12"
cuda = "12.8"
systems = ["x86_64-linux", "aarch64-linux"]
targets = ["sm90", "all"]
isas = ["avx2", "avx512", "armv9"]
short-name = "sglang-{target}-{isa}"
long-name = "sglang-python{python}-cuda{cuda}-{target}-{isa}"

[lines."0.5.9".torch]
version = "2.9.1"

[lines."0.5.9".wheels.sglang]
pname = "sglang"
version = "0.5.9"
tags = { any = "py3-none-any" }
imports = ["sglang"]
description = "SGLang"
homepage = "https://github.com/sgl-project/sglang"
license = "asl20"
"""
