"""Audit one wheel against the matrix spec: shared libraries, GPU code and Requires-Dist.

`audit_file(path, spec, env, wheel)` reads the wheel once (`gpucode.audit_wheel`) plus its METADATA, and
returns a `WheelReport`: the raw facts, what the spec says about them, and a list of `Finding`s.

The checks live in `libraries`, `coverage` (GPU code, on what the variant keeps after pruning) and
`requires`; `findings` holds `Finding` and `AuditEnv`.

Severities:
  hard     -- the variant is wrong as specified: an unmapped SONAME, a provider the wheel needs but the spec
              does not declare in `libraries`, a capability of the variant with no runnable GPU code (unless
              `gpu-code-gaps` acknowledges it), a Requires-Dist neither in `requires` nor in `dropped`, a
              provided version the requirement excludes (unless `accepted-skew` acknowledges it), a wheel or
              member that cannot be read;
  warning  -- worth a look: a declared library nothing needs, an object that cannot load on the variant's
              Python, an entry of the spec that no longer matches the wheel;
  info     -- facts the spec acknowledges or that cannot be checked offline (nixpkgs versions).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from packaging.utils import canonicalize_name

from sglang_matrix.audit import AuditError
from sglang_matrix.audit.coverage import GpuCheck, check_gpu
from sglang_matrix.audit.findings import SEVERITIES, AuditEnv, Finding, Severity
from sglang_matrix.audit.gpucode import audit_wheel
from sglang_matrix.audit.libraries import LibraryCheck, check_libraries
from sglang_matrix.audit.requires import RequiresCheck, check_requires, read_metadata
from sglang_matrix.pruning import matched_bytes, member_sizes
from sglang_matrix.spec import Line, Spec, Wheel

__all__ = ["AuditEnv", "AuditResult", "Finding", "WheelReport", "audit_file", "match_wheel"]

WheelStatus = Literal["ok", "fail", "skipped", "error"]


@dataclass
class WheelReport:
    file: str
    path: str | None
    attr: str | None  # the spec's wheel, or None when the file matches none
    env: AuditEnv
    findings: list[Finding] = field(default_factory=list)
    libraries: LibraryCheck | None = None
    gpu: GpuCheck | None = None
    requires: RequiresCheck | None = None
    error: str | None = None  # the whole file could not be audited
    skipped: str | None = None  # why it was not audited

    @property
    def status(self) -> WheelStatus:
        if self.error is not None:
            return "error"
        if self.skipped is not None:
            return "skipped"
        return "fail" if self.count("hard") else "ok"

    def count(self, severity: Severity) -> int:
        return sum(1 for f in self.findings if f.severity == severity)

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "path": self.path,
            "attr": self.attr,
            "environment": self.env.to_json(),
            "status": self.status,
            "error": self.error,
            "skipped": self.skipped,
            "counts": {s: self.count(s) for s in SEVERITIES},
            "findings": [f.to_json() for f in self.findings],
            "libraries": self.libraries.to_json() if self.libraries else None,
            "gpu": self.gpu.to_json() if self.gpu else None,
            "requires": self.requires.to_json() if self.requires else None,
        }


def audit_file(
    path: Path, spec: Spec, env: AuditEnv, wheel: Wheel | None, expected: str | None = None
) -> WheelReport:
    """Audit one wheel file; a file that cannot be read at all gives a report with `error` set.

    `expected` is the spec's file name for `wheel` where it differs from the file's.
    """
    report = WheelReport(path.name, str(path), wheel.attr if wheel else None, env)
    if wheel is not None and expected is not None and expected != path.name:
        report.findings.append(
            Finding("warning", "file", f"the spec's wheels.{wheel.attr} is {expected}: audited against it")
        )
    if wheel is None:
        report.findings.append(
            Finding(
                "warning",
                "file",
                f"matches no wheel of line {env.line.name} in the spec: libraries, requires and "
                "gpu-code-gaps are not checked",
            )
        )
    try:
        audit = audit_wheel(path)
        metadata = read_metadata(path)
    except AuditError as e:
        report.error = str(e)
        report.findings.append(Finding("hard", "file", str(e)))
        return report
    for problem in _unique(audit.libs.problems + audit.gpu.problems):
        report.findings.append(Finding("hard", "file", str(problem)))
    report.libraries = check_libraries(audit.libs, spec, env, wheel, report.findings)
    report.gpu = check_gpu(audit.gpu, env, wheel, report.findings, prune=spec.prune_device_code)
    report.requires = check_requires(metadata, env, wheel, report.findings)
    check_prune_rules(path, wheel, report.findings)
    order = {s: i for i, s in enumerate(SEVERITIES)}
    report.findings.sort(key=lambda f: order[f.severity])
    return report


def check_prune_rules(path: Path, wheel: Wheel | None, findings: list[Finding]) -> None:
    """Each prune rule of the wheel must still cover something in it (else the wheel changed under the
    spec, and the Nix build would stop at the rule)."""
    if wheel is None or not wheel.prune:
        return
    sizes = member_sizes(path)
    # A rule scoped to other systems (`systems`) is not about this file.
    platform = path.name.removesuffix(".whl").rsplit("-", 1)[-1]
    system = next((f"{arch}-linux" for arch in ("x86_64", "aarch64") if arch in platform), None)
    for rule in wheel.prune:
        if rule.applies(system) and matched_bytes(sizes, rule.path) is None:
            findings.append(
                Finding("hard", "prune", f"prune path {rule.path!r} matches nothing in this wheel")
            )


def skipped_report(file: str, attr: str | None, env: AuditEnv, reason: str) -> WheelReport:
    return WheelReport(file, None, attr, env, skipped=reason)


def error_report(file: str, attr: str | None, env: AuditEnv, message: str) -> WheelReport:
    return WheelReport(file, None, attr, env, [Finding("hard", "file", message)], error=message)


def _unique(errors: Iterable[AuditError]) -> list[AuditError]:
    seen: set[str] = set()
    out = []
    for e in errors:
        if str(e) not in seen:
            seen.add(str(e))
            out.append(e)
    return out


# --- matching files to the spec ----------------------------------------------------------------------


@dataclass(frozen=True)
class Match:
    line: Line
    system: str
    wheel: Wheel
    expected: str  # the spec's file name (differs from the file's when matched by project name)
    python: str  # the line's Python whose file name this is (`cp313` tags match 3.13)


def match_wheel(
    spec: Spec,
    filename: str,
    line: Line | None = None,
    python: str | None = None,
    system: str | None = None,
) -> Match | None:
    """The spec's wheel for a file: by exact file name for any of the line's Pythons and systems, else
    by project name (first match wins: the line's default Python and first system).

    `line`, `python` and `system` restrict the search (to a variant's, when auditing for one).
    """
    lines = [line] if line is not None else [spec.lines[n] for n in sorted(spec.lines)]
    by_name: Match | None = None
    project = canonicalize_name(filename.split("-", 1)[0])
    for candidate in lines:
        pythons = [python] if python is not None else [candidate.python, *candidate.pythons]
        systems = [system] if system is not None else candidate.systems
        for wheel in candidate.wheels.values():
            for py in dict.fromkeys(pythons):
                for sys_name in systems:
                    expected = wheel.filename(sys_name, py)
                    if expected is None:
                        continue
                    if expected == filename:
                        return Match(candidate, sys_name, wheel, expected, py)
                    if by_name is None and canonicalize_name(wheel.pname) == project:
                        by_name = Match(candidate, sys_name, wheel, expected, py)
    return by_name


def line_capabilities(spec: Spec, line: Line) -> tuple[str, ...]:
    """Every capability of the line's targets, in ascending order."""
    caps = {c for t in line.targets for c in spec.targets[t].capabilities}
    return tuple(sorted(caps, key=lambda c: tuple(int(p) for p in c.split("."))))


@dataclass
class AuditResult:
    env: AuditEnv | None  # None when the files span several environments (no --variant)
    wheels: list[WheelReport]
    # With --variant: what pruning leaves out and the bytes it saves (pruning.summary).
    pruning: dict[str, Any] | None = None

    def count(self, severity: Severity) -> int:
        return sum(w.count(severity) for w in self.wheels)

    @property
    def ok(self) -> bool:
        return self.count("hard") == 0

    @property
    def complete(self) -> bool:
        """Whether every wheel was audited (none skipped: a skipped wheel is no pass)."""
        return all(w.status != "skipped" for w in self.wheels)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "complete": self.complete,
            "environment": self.env.to_json() if self.env else None,
            "counts": {s: self.count(s) for s in SEVERITIES},
            "skipped": sum(1 for w in self.wheels if w.status == "skipped"),
            "errors": sum(1 for w in self.wheels if w.status == "error"),
            "wheels": [w.to_json() for w in self.wheels],
            "pruning": self.pruning,
        }
