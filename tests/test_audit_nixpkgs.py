"""The Requires-Dist check against nixpkgs' versions at the pin (`[lines.X.nixpkgs-versions]`).

A requirement that nixpkgs' version (or every version the evidence allows) cannot satisfy is a skew: a
hard finding unless the spec accepts it with a reason. Before the spec recorded nixpkgs' versions, every
nixpkgs-provided requirement passed as "version not known offline".
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from packaging.specifiers import SpecifierSet
from packaging.version import Version
from sglang_matrix.audit.findings import AuditEnv, Finding
from sglang_matrix.audit.nixpkgs import fit
from sglang_matrix.audit.requires import check_requires
from sglang_matrix.spec import NixpkgsVersion, load_spec

ROOT = Path(__file__).resolve().parent.parent


def known(version: str | None = None, bracket: str | None = None) -> NixpkgsVersion:
    return NixpkgsVersion(version=version, range=bracket, file="f", commit=None, evidence="e")


@pytest.mark.parametrize(
    ("nix", "requirement", "verdict"),
    [
        (known("4.57.1"), "==4.57.1", "fits"),
        (known("5.1.0"), "==4.57.1", "skew"),
        (known(bracket=">=4.57.6,<5.2.0"), "==4.57.1", "skew"),
        (known(bracket=">=1.0,<2"), ">=0.7.11,<0.8.0", "skew"),
        (known(bracket=">=0.8.1,<=0.8.2"), ">=0.8", "fits"),
        (known(bracket=">=1.0,<1.10"), ">=1.5", "maybe"),
        (known(bracket=">=1.0,<1.10"), "", "fits"),
        (known(), "==1.0", "unknown"),
        (None, "==1.0", "unknown"),
    ],
)
def test_fit(nix: NixpkgsVersion | None, requirement: str, verdict: str) -> None:
    assert fit(nix, SpecifierSet(requirement)).verdict == verdict


versions = st.tuples(st.integers(0, 6), st.integers(0, 12), st.integers(0, 12)).map(
    lambda t: Version(".".join(map(str, t)))
)


@given(versions, versions, versions)
def test_a_skew_is_never_reported_where_a_version_satisfies_both(
    low: Version, high: Version, pin: Version
) -> None:
    """Whatever the bounds, a skew verdict means no version in the bracket meets the requirement: the
    pinned version itself is checked whenever it lies in the bracket."""
    low, high = min(low, high), max(low, high)
    bracket = f">={low},<={high}"
    verdict = fit(known(bracket=bracket), SpecifierSet(f"=={pin}")).verdict
    if low <= pin <= high:
        assert verdict != "skew"
    else:
        assert verdict == "skew"


def _check(accepted: dict[str, str]) -> tuple[list[Finding], dict[str, str]]:
    spec = load_spec(ROOT / "matrix.toml")
    line = spec.lines["0.5.9"]
    wheel = dataclasses.replace(line.wheels["sglang"], accepted_skew=accepted)
    env = AuditEnv(line, "x86_64-linux", "3.12", ("9.0",), "sglang-sm90-avx512")
    findings: list[Finding] = []
    result = check_requires(["transformers==4.57.1", "IPython", "einops"], env, wheel, findings)
    return findings, {c.name: c.status for c in result.requirements}


def test_nixpkgs_skew_is_a_hard_finding_unless_accepted() -> None:
    findings, status = _check({})
    hard = [f.message for f in findings if f.severity == "hard"]
    assert status["transformers"] == "skew"
    assert any("transformers==4.57.1" in m and ">=4.57.6,<5.2.0" in m for m in hard), hard
    # ipython's settled version and einops' bracket both fit: information, not findings.
    assert status["ipython"] == "nixpkgs" and status["einops"] == "nixpkgs"
    findings, status = _check({"transformers": "because"})
    assert status["transformers"] == "skew-accepted"
    assert not [f for f in findings if f.severity == "hard"]


def test_the_spec_accepts_each_nixpkgs_skew_of_sglangs_pins() -> None:
    """sglang 0.5.9's exact pins (its METADATA) against the real spec: each is a skew the spec accepts
    with a reason, so none is a hard finding and no acceptance is stale."""
    spec = load_spec(ROOT / "matrix.toml")
    line = spec.lines["0.5.9"]
    env = AuditEnv(line, "x86_64-linux", "3.12", ("9.0",), "sglang-sm90-avx512")
    pins = ["transformers==4.57.1", "outlines==0.1.11", "openai==2.6.1", "torchao==0.9.0"]
    findings: list[Finding] = []
    result = check_requires(pins, env, line.wheels["sglang"], findings)
    assert {c.name: c.status for c in result.requirements} == {
        "transformers": "skew-accepted",
        "outlines": "skew-accepted",
        "openai": "skew-accepted",
        "torchao": "skew-accepted",
    }
    assert not [f for f in findings if f.severity == "hard"]
