"""The Requires-Dist check: each requirement the wheel declares for the variant's environment, against
the spec's `requires`, `dropped` and `accepted-skew`."""

from __future__ import annotations

import email.parser
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from packaging.markers import InvalidMarker, Marker, UndefinedComparison, UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from sglang_matrix.audit import AuditError
from sglang_matrix.audit.findings import AuditEnv, Finding
from sglang_matrix.audit.nixpkgs import fit
from sglang_matrix.audit.wheelzip import WheelReader
from sglang_matrix.spec import Line, Wheel

# METADATA is read into memory: a few kB in real wheels.
MAX_METADATA_SIZE = 16 << 20

RequirementStatus = Literal["provided", "nixpkgs", "skew", "skew-accepted", "dropped", "missing"]


@dataclass
class RequirementCheck:
    name: str  # canonical
    requirement: str  # as the wheel declares it (several applicable declarations joined by " , ")
    status: RequirementStatus
    attr: str | None = None
    version: str | None = None  # the provided version, where the spec knows it
    reason: str | None = None  # dropped / accepted-skew reason

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "requirement": self.requirement,
            "status": self.status,
            "attr": self.attr,
            "version": self.version,
            "reason": self.reason,
        }


@dataclass
class RequiresCheck:
    declared: int  # Requires-Dist lines
    not_applicable: int  # lines whose markers are false here (extras, other platforms)
    requirements: list[RequirementCheck]
    extra: list[tuple[str, str]]  # `requires` entries the wheel does not declare: (name, attr)

    def to_json(self) -> dict[str, Any]:
        return {
            "declared": self.declared,
            "not_applicable": self.not_applicable,
            "requirements": [r.to_json() for r in self.requirements],
            "extra": [{"name": n, "attr": a} for n, a in self.extra],
        }


def read_metadata(path: Path) -> list[str]:
    """The Requires-Dist lines of a wheel's `*.dist-info/METADATA`. Raises AuditError."""
    with WheelReader(path) as reader:
        for member in reader.members():
            parts = member.name.split("/")
            if len(parts) == 2 and parts[0].endswith(".dist-info") and parts[1] == "METADATA":
                if member.size > MAX_METADATA_SIZE:
                    raise AuditError(member.label, f"METADATA is {member.size} bytes: too large to read")
                data = member.read()
                break
        else:
            raise AuditError(path.name, "no *.dist-info/METADATA in the wheel")
    message = email.parser.BytesHeaderParser().parsebytes(data)
    return [str(v) for v in message.get_all("Requires-Dist") or []]


def provided_version(line: Line, attr: str) -> str | None:
    """The version of a Python-set attribute where the spec knows it: the line's wheels and torch."""
    if attr in line.wheels:
        return line.wheels[attr].version
    if attr == "torch":
        return line.torch_version
    return None


def check_requires(
    lines: list[str], env: AuditEnv, wheel: Wheel | None, findings: list[Finding]
) -> RequiresCheck:
    marker_env = env.markers()
    applicable: dict[str, list[Requirement]] = {}
    declared_names: set[str] = set()
    skipped = 0
    for text in lines:
        try:
            req = Requirement(text)
        except InvalidRequirement as e:
            findings.append(Finding("hard", "requires", f"cannot parse Requires-Dist {text!r}: {e}"))
            continue
        name = canonicalize_name(req.name)
        declared_names.add(name)
        if req.marker is not None and not _evaluate(req.marker, marker_env, text, findings):
            skipped += 1
            continue
        applicable.setdefault(name, []).append(req)
    if wheel is None:
        return RequiresCheck(len(lines), skipped, [], [])
    requires = {canonicalize_name(k): (k, v) for k, v in wheel.requires.items()}
    dropped = {canonicalize_name(k): v for k, v in wheel.dropped.items()}
    accepted = {canonicalize_name(k): v for k, v in wheel.accepted_skew.items()}
    checks: list[RequirementCheck] = []
    for name, reqs in sorted(applicable.items()):
        shown = " , ".join(_requirement_text(r) for r in reqs)
        if name in requires:
            attr = requires[name][1]
            version = provided_version(env.line, attr)
            specifier = SpecifierSet()
            for r in reqs:
                specifier &= r.specifier
            if version is None:
                # From nixpkgs: what the spec records of nixpkgs' version at the pin decides.
                known = fit(env.line.nixpkgs_versions.get(attr), specifier)
                # An unsettled version confirms no skew (an acceptance of one is then reported stale);
                # a range that only partly meets the requirement is a skew only where the spec says so.
                maybe_unaccepted = known.verdict == "maybe" and name not in accepted
                if known.verdict in ("fits", "unknown") or maybe_unaccepted:
                    checks.append(RequirementCheck(name, shown, "nixpkgs", attr, known.shown))
                    why = {
                        "fits": "which the requirement allows",
                        "maybe": "which the requirement allows only in part",
                        "unknown": "its version at the pin is not settled in the spec",
                    }[known.verdict]
                    findings.append(
                        Finding("info", "requires", f"{shown}: nixpkgs provides {attr} {known.shown}, {why}")
                    )
                    continue
                version = known.shown
            if version == provided_version(env.line, attr) and _contains(specifier, version):
                checks.append(RequirementCheck(name, shown, "provided", attr, version))
            elif name in accepted:
                checks.append(RequirementCheck(name, shown, "skew-accepted", attr, version, accepted[name]))
                findings.append(
                    Finding(
                        "info",
                        "requires",
                        f"{shown}: the matrix provides {attr} {version} (accepted: {accepted[name]})",
                    )
                )
            else:
                checks.append(RequirementCheck(name, shown, "skew", attr, version))
                findings.append(
                    Finding(
                        "hard",
                        "requires",
                        f"{shown}: the matrix provides {attr} {version}, which the requirement excludes "
                        "(fix the version, or say why in `accepted-skew`)",
                    )
                )
        elif name in dropped:
            checks.append(RequirementCheck(name, shown, "dropped", reason=dropped[name]))
        else:
            checks.append(RequirementCheck(name, shown, "missing"))
            findings.append(
                Finding(
                    "hard",
                    "requires",
                    f"{shown}: neither in `requires` nor in `dropped` of wheels.{wheel.attr}",
                )
            )
    extra = [(original, attr) for name, (original, attr) in requires.items() if name not in declared_names]
    for original, attr in extra:
        findings.append(
            Finding("info", "requires", f"requires.{original} = {attr}: extra, not declared by the wheel")
        )
    for name, reason in dropped.items():
        if name not in declared_names:
            findings.append(
                Finding(
                    "warning",
                    "requires",
                    f"dropped.{name} ({reason}): the wheel declares no such requirement",
                )
            )
    for name in accepted:
        status = next((c.status for c in checks if c.name == name), None)
        if status != "skew-accepted":
            findings.append(
                Finding("warning", "requires", f"accepted-skew.{name}: there is no such skew (any more)")
            )
    return RequiresCheck(len(lines), skipped, checks, extra)


def _evaluate(marker: Marker, environment: dict[str, str], text: str, findings: list[Finding]) -> bool:
    try:
        return marker.evaluate(environment)
    except (InvalidMarker, UndefinedComparison, UndefinedEnvironmentName) as e:
        findings.append(Finding("hard", "requires", f"cannot evaluate the marker of {text!r}: {e}"))
        return False


def _contains(specifier: SpecifierSet, version: str) -> bool:
    try:
        return specifier.contains(Version(version), prereleases=True)
    except InvalidVersion:
        return False


def _requirement_text(req: Requirement) -> str:
    extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
    return f"{req.name}{extras}{req.specifier}"
