"""What the spec knows of a nixpkgs-provided requirement's version, against a wheel's Requires-Dist.

nixpkgs' version at the line's pin is data (`[lines.X.nixpkgs-versions]`): a settled version, or a range
where the evidence only brackets it, or nothing. A requirement the version (or every version of the
range) cannot satisfy is a skew; a range that overlaps the requirement may or may not be one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from ..spec import NixpkgsVersion

Verdict = Literal["fits", "skew", "maybe", "unknown"]


@dataclass(frozen=True)
class NixpkgsFit:
    verdict: Verdict
    shown: str  # "4.57.1", "the range >=5.0,<5.2", "not settled"


def _candidates(*specifiers: SpecifierSet) -> list[Version]:
    """Versions that probe where specifier sets may overlap: each bound, and the nearest releases above
    and below it at every position (1.2.3 -> 1.2.4, 1.3.0, 2.0.0, 1.2.2, 1.1.9999, 0.9999.9999)."""
    out: set[Version] = set()
    for spec in specifiers:
        for item in spec:
            try:
                v = Version(item.version.removesuffix(".*"))
            except InvalidVersion:
                continue
            a, b, c = ([*v.release, 0, 0])[:3]
            out |= {v, Version(f"{a}.{b}.{c + 1}"), Version(f"{a}.{b + 1}.0"), Version(f"{a + 1}.0.0")}
            for lower in ((a, b, c - 1), (a, b - 1, 9999), (a - 1, 9999, 9999)):
                if min(lower) >= 0:
                    out.add(Version(".".join(map(str, lower))))
    return sorted(out)


def fit(known: NixpkgsVersion | None, requirement: SpecifierSet) -> NixpkgsFit:
    """How nixpkgs' version at the pin sits with a requirement's specifier."""
    if known is None or (known.version is None and not known.range):
        return NixpkgsFit("unknown", "not settled")
    if known.version is not None:
        ok = requirement.contains(known.version, prereleases=True)
        return NixpkgsFit("fits" if ok else "skew", known.version)
    try:
        bracket = SpecifierSet(known.range or "")
    except InvalidSpecifier:
        return NixpkgsFit("unknown", f"the range {known.range}")
    shown = f"the range {known.range}"
    probes = _candidates(bracket, requirement)
    inside = [v for v in probes if bracket.contains(v, prereleases=True)]
    if not inside:
        return NixpkgsFit("unknown", shown)
    both = [v for v in inside if requirement.contains(v, prereleases=True)]
    if not both:
        return NixpkgsFit("skew", shown)
    return NixpkgsFit("fits" if len(both) == len(inside) else "maybe", shown)
