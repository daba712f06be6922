"""pkgs/sglang-env.nix's launchers and record, evaluated by Nix 2.26 against the nixpkgs test double (as in
tests/test_nix.py, but on a scratch copy of the working tree, so new files count before they are committed):
the launcher text is exactly pkgs/launcher.bash with every placeholder filled (the script the launcher tests
run), and the record preflight reads is the one Python computes from the spec."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, eval_packages_of_copy
from host_fixtures import LAUNCHER, PLACEHOLDER_RE
from sglang_matrix.host.record import matrix_from_spec
from sglang_matrix.spec import load_spec

DOUBLE = ROOT / "tests" / "nixpkgs-double"
NAMES = (
    "sglang-sm90-avx512",
    "sglang-python313-cuda12_9-all-avx2",
    "sglang-sm100-armv9",
    "sglang-0_5_23-sm90-x86_64",
    "sglang-0_5_23-sm100-aarch64",
    "sglang-0_5_23-sm90-aarch64",
)

FACTS = """
ps: builtins.mapAttrs (_: env: {
  launchers = builtins.mapAttrs (_: l: l.text) env.launchers;
  record = env.record.text;
  cudaHome = "${env.cudaHome}";
  interpreter = env.python.interpreter;
}) {
  inherit (ps.x86_64-linux) sglang-sm90-avx512 sglang-python313-cuda12_9-all-avx2 sglang-0_5_23-sm90-x86_64;
  inherit (ps.aarch64-linux) sglang-sm100-armv9 sglang-0_5_23-sm100-aarch64 sglang-0_5_23-sm90-aarch64;
}
"""


@pytest.fixture(scope="module")
def evaluated(nix_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return eval_packages_of_copy(nix_bin, tmp_path_factory.mktemp("host-nix") / "project", FACTS)


def template_regex() -> re.Pattern[str]:
    """pkgs/launcher.bash as a regex: each placeholder a group (the same value wherever it recurs)."""
    text = LAUNCHER.read_text()
    out, seen, at = [], set(), 0
    for match in PLACEHOLDER_RE.finditer(text):
        out.append(re.escape(text[at : match.start()]))
        name = match.group(1)
        # driverExports and serveDefaults are blocks of lines that each start with a newline (empty without
        # a wheel triton, or without launch defaults); every other value is one line.
        value = "(?:\\n.*?)?" if name in ("driverExports", "serveDefaults") else "[^\\n]*?"
        out.append(f"(?P={name})" if name in seen else f"(?P<{name}>{value})")
        seen.add(name)
        at = match.end()
    out.append(re.escape(text[at:]))
    return re.compile("".join(out), re.DOTALL)


def test_launchers_are_the_template_filled(evaluated: dict[str, Any]) -> None:
    pattern = template_regex()
    for name, env in evaluated.items():
        for entry, text in env["launchers"].items():
            assert not PLACEHOLDER_RE.search(text), (name, entry)
            match = pattern.fullmatch(text)
            assert match, (name, entry, text)
            values = match.groupdict()
            assert values["cudaHome"] == env["cudaHome"]
            assert values["python"] == env["interpreter"]
            search = r"/nix/store/[a-z0-9]{32}-sglang-matrix-driver-search"
            assert re.fullmatch(search, values["driverSearch"]), values
            record = r"/nix/store/[a-z0-9]{32}-sglang-(0_5_23-)?python3\d+-cuda\d+_\d+-\S+-record\.json"
            assert re.fullmatch(record, values["record"]), values
            assert values["variant"] == name
            # Launch defaults only where the spec has them (GH200: no FA3 in the aarch64 sglang-kernel).
            if name == "sglang-0_5_23-sm90-aarch64":
                assert "SGLANG_ATTENTION_BACKEND='flashinfer'" in values["serveDefaults"], values
            else:
                assert values["serveDefaults"] == "", (name, values["serveDefaults"])
            if entry == "sglang-serve":
                assert values["exec"].endswith(" -m sglang_matrix.serve")
            elif entry == "sglang-resolve-model":
                assert values["exec"].endswith(" -m sglang_matrix.resolve_model")
            else:
                assert re.fullmatch(r"/nix/store/\S+-env/bin/python3\.1\d", values["exec"]), values


def test_records_match_the_spec(evaluated: dict[str, Any]) -> None:
    spec = load_spec(ROOT / "matrix.toml")
    assert set(evaluated) == set(NAMES)
    for name, env in evaluated.items():
        assert json.loads(env["record"]) == matrix_from_spec(spec, name).to_json(), name
    # A variant without an ISA: null, no CPU flags; the record holds its own line only.
    record = json.loads(evaluated["sglang-0_5_23-sm90-x86_64"]["record"])
    mine = next(v for v in record["variants"] if v["name"] == "sglang-0_5_23-sm90-x86_64")
    assert (mine["isa"], mine["cpuFeatures"]) == (None, [])
    assert {v["line"] for v in record["variants"]} == {"0.5.23"}
    assert record["cudaDrivers"]["minimum"]["13"] == "580"
