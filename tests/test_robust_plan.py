"""Issue 12 part 2 for `plan`: numbers in the machines file and on the command line are read as Nix reads
them, and nothing that is not finite reaches JSON or a command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from sglang_matrix.cli import main
from sglang_matrix.errors import UserError
from sglang_matrix.machines import nix_float, nix_uint
from sglang_matrix.plan import parse_machines
from test_plan import ISA_FEATURES, cut_spec


def strict_json(text: str) -> object:
    def refuse(constant: str) -> object:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def plan(spec: Path, *args: str):
    return CliRunner().invoke(main, ["--spec", str(spec), "plan", *args])


@pytest.mark.parametrize("speed", ["1e-320", "1e-46", "inf", "nan", "-inf", "1e39", "1_0", "١٢", "0x10", "0"])
def test_a_speed_factor_nix_would_not_hold_is_an_error(tmp_path: Path, speed: str) -> None:
    machines = tmp_path / "machines"
    machines.write_text(f"ssh://a x86_64-linux - 1 {speed} big-parallel,{ISA_FEATURES}\n", encoding="utf-8")
    result = plan(cut_spec(tmp_path, ["sm90"]), "--json", "--builders", str(machines))
    assert result.exit_code == 2, result.output
    (line,) = result.output.splitlines()
    assert line.startswith(
        f"sglang-matrix: {machines}:1: speed factor {speed!r} (field 5) must be a positive"
    )
    assert "Infinity" not in result.output and "NaN" not in result.output


def test_tiny_but_real_speed_factors_give_finite_json(tmp_path: Path) -> None:
    machines = tmp_path / "machines"
    machines.write_text(f"ssh://a x86_64-linux - 1 1e-40 big-parallel,{ISA_FEATURES}\n", encoding="utf-8")
    result = plan(cut_spec(tmp_path, ["sm90"]), "--json", "--builders", str(machines))
    assert result.exit_code == 0, result.output
    data = strict_json(result.output)
    assert data["builders"][0]["hours"] > 1e30


@pytest.mark.parametrize(
    "max_jobs",
    ["١٢", "1_0", "10" + "0" * 25, "4294967296", "-1", "-0", "auto", "1.0", "1e3", "+", "0x4", "²"],
)
def test_a_max_jobs_nix_rejects_is_an_error(tmp_path: Path, max_jobs: str) -> None:
    machines = tmp_path / "machines"
    machines.write_text(
        f"ssh://a x86_64-linux - {max_jobs} 1 big-parallel,{ISA_FEATURES}\n", encoding="utf-8"
    )
    result = plan(cut_spec(tmp_path, ["sm90"]), "--builders", str(machines))
    assert result.exit_code == 2, result.output
    (line,) = result.output.splitlines()
    assert line.startswith(
        f"sglang-matrix: {machines}:1: max-jobs {max_jobs!r} (field 4) must be a non-negative"
    )
    assert "nix build" not in result.output


@pytest.mark.parametrize(
    ("max_jobs", "value"), [("0", 0), ("4", 4), ("+4", 4), ("0004", 4), ("4294967295", 2**32 - 1)]
)
def test_max_jobs_nix_accepts(max_jobs: str, value: int) -> None:
    (machine,) = parse_machines(f"a x86_64-linux - {max_jobs}\n", "m")
    assert machine.max_jobs == value


def test_nix_number_readers() -> None:
    assert [nix_uint(t) for t in ("7", "+7", "007", "4294967295")] == [7, 7, 7, 4294967295]
    assert [nix_uint(t) for t in ("4294967296", "-7", " 7", "7 ", "٧", "7_0", "", "+", "9" * 5000)] == [
        None
    ] * 9
    assert [nix_float(t) for t in ("2.5", "+.5", "1.", "1e3", "-1")] == [2.5, 0.5, 1.0, 1000.0, -1.0]
    assert [nix_float(t) for t in ("inf", "nan", "1e39", "1_0", "١", " 1", "0x1p3", "")] == [None] * 8


def test_machines_split_as_nix_splits_them() -> None:
    """Nix cuts `#` comments per `;`-separated machine, and splits fields at space, tab and CR only."""
    text = "a x86_64-linux # first; b x86_64-linux - 2\nc\tx86_64-linux\r\nd x86_64-linux\x0b - 1\n"
    with pytest.raises(UserError, match=r"m:3: 'd x86_64-linux\\x0b - 1': control characters"):
        parse_machines(text, "m")
    a, b, c = parse_machines(text.rsplit("d ", 1)[0], "m")
    assert (a.uri, b.uri, b.max_jobs, c.uri, c.systems) == ("a", "b", 2, "c", ("x86_64-linux",))
    assert (a.where, b.where, c.where) == ("m:1", "m:1", "m:2")


@pytest.mark.parametrize("cores", ["١٢", "1_0", "0", "-4", "4294967296", "1e3"])
def test_cores_are_read_as_nix_reads_them(tmp_path: Path, cores: str) -> None:
    result = plan(cut_spec(tmp_path, ["sm90"]), "--cores", cores)
    assert result.exit_code == 2, result.output
    assert "nix build" not in result.output
    assert f"Invalid value for '--cores': {cores!r}: a positive integer of ASCII digits" in result.output


def test_a_broken_plan_table_is_refused_by_list_as_by_plan(tmp_path: Path) -> None:
    """[plan] is validated with the rest of the spec, so every command refuses it alike."""
    spec = cut_spec(tmp_path, ["sm90"], plan="\n[plan]\nci-timeout-factor = nan\n")
    for args in (["list"], ["plan"], ["show", "sglang-sm90-avx2"], ["render", "--check"]):
        result = CliRunner().invoke(main, ["--spec", str(spec), *args])
        assert result.exit_code == 2, (args, result.output)
        (line,) = result.output.splitlines()
        problem = "must be at least 1, at most 100 (and finite)"
        assert line == f"sglang-matrix: {spec}: plan.ci-timeout-factor = nan: {problem}"
