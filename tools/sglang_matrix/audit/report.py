"""Audit one wheel against the matrix spec: shared libraries, GPU code and Requires-Dist.

`audit_file(path, spec, env, wheel)` reads the wheel once (`gpucode.audit_wheel`) plus its METADATA, and
returns a `WheelReport`: the raw facts, what the spec says about them, and a list of `Finding`s.

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

import email.parser
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from packaging.markers import InvalidMarker, Marker, UndefinedComparison, UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from sglang_matrix.audit import AuditError
from sglang_matrix.audit.gpucode import GpuCodeReport, audit_wheel, format_target
from sglang_matrix.audit.sharedlibs import SharedLibReport
from sglang_matrix.audit.wheelzip import WheelReader
from sglang_matrix.spec import PROVIDER_SPECIALS, Line, Spec, Wheel

Severity = Literal["hard", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = ("hard", "warning", "info")
MACHINES = {"x86_64-linux": "x86_64", "aarch64-linux": "aarch64"}
# Cubins are many small files (flashinfer-cubin has 9,262): reports group them by directory, this deep.
CUBIN_GROUP_DEPTH = 3


@dataclass(frozen=True)
class Finding:
    severity: Severity
    check: str  # "file", "libraries", "load", "gpu", "requires"
    message: str

    def to_json(self) -> dict[str, str]:
        return {"severity": self.severity, "check": self.check, "message": self.message}


@dataclass(frozen=True)
class AuditEnv:
    """What a wheel is audited for: a variant, or a release line's Python and every target's capability."""

    line: Line
    system: str
    python: str
    capabilities: tuple[str, ...]
    variant: str | None = None

    @property
    def machine(self) -> str:
        return MACHINES.get(self.system, self.system.split("-")[0])

    def markers(self) -> dict[str, str]:
        """The PEP 508 marker environment of the variant's CPython on Linux, without extras."""
        # The line gives major.minor only; the patch level is nixpkgs' and unknown offline.
        full = f"{self.python}.0"
        return {
            "implementation_name": "cpython",
            "implementation_version": full,
            "os_name": "posix",
            "platform_machine": self.machine,
            "platform_python_implementation": "CPython",
            "platform_release": "",
            "platform_system": "Linux",
            "platform_version": "",
            "python_full_version": full,
            "python_version": self.python,
            "sys_platform": "linux",
            "extra": "",
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "line": self.line.name,
            "system": self.system,
            "python": self.python,
            "capabilities": list(self.capabilities),
        }


# --- shared libraries --------------------------------------------------------------------------------


@dataclass
class SonameUse:
    soname: str
    provider: str | None  # None: unmapped (or bundled)
    bundled: bool  # provided by an object inside the same wheel
    objects: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "soname": self.soname,
            "provider": self.provider,
            "bundled": self.bundled,
            "objects": self.objects,
        }


@dataclass
class LibraryCheck:
    objects: int
    needed: list[SonameUse]
    declared: list[str] | None  # None: the wheel is not in the spec
    providers: list[str]  # nixpkgs attribute paths needed (glibc and driver left out)
    missing: list[str]
    surplus: list[str]
    unmapped: list[str]
    cannot_load: list[tuple[str, str]]

    def to_json(self) -> dict[str, Any]:
        return {
            "objects": self.objects,
            "needed": [u.to_json() for u in self.needed],
            "declared": self.declared,
            "providers": self.providers,
            "missing": self.missing,
            "surplus": self.surplus,
            "unmapped": self.unmapped,
            "cannot_load": [{"object": o, "reason": r} for o, r in self.cannot_load],
        }


def check_libraries(
    libs: SharedLibReport, spec: Spec, env: AuditEnv, wheel: Wheel | None, findings: list[Finding]
) -> LibraryCheck:
    own = {obj.soname for obj in libs.objects if obj.soname} | {
        PurePosixPath(obj.name).name for obj in libs.objects
    }
    uses: list[SonameUse] = []
    providers: set[str] = set()
    unmapped: list[str] = []
    for soname, objects in libs.needed_by().items():
        if soname in own:
            uses.append(SonameUse(soname, None, True, objects))
            continue
        provider = spec.provider(soname)
        uses.append(SonameUse(soname, provider, False, objects))
        if provider is None:
            unmapped.append(soname)
            findings.append(
                Finding(
                    "hard",
                    "libraries",
                    f"{soname} (needed by {_objects(objects)}) matches no [sonames] entry: "
                    "say what provides it",
                )
            )
        elif provider not in PROVIDER_SPECIALS:
            providers.add(provider)
    declared = list(wheel.libraries) if wheel is not None else None
    missing: list[str] = []
    surplus: list[str] = []
    if wheel is not None:
        missing = sorted(providers - set(wheel.libraries))
        surplus = [lib for lib in wheel.libraries if lib not in providers]
        by_provider: dict[str, list[str]] = {}
        for use in uses:
            if use.provider in missing:
                by_provider.setdefault(use.provider, []).append(use.soname)
        for lib in missing:
            findings.append(
                Finding(
                    "hard",
                    "libraries",
                    f"needs {lib} ({', '.join(by_provider[lib])}), which `libraries` does not declare",
                )
            )
        for lib in surplus:
            findings.append(
                Finding("warning", "libraries", f"`libraries` declares {lib}, which no object needs")
            )
    cannot = [(p.path, p.reason) for p in libs.cannot_load(env.python, env.machine)]
    for path, reason in cannot:
        findings.append(Finding("warning", "load", f"{path} cannot load on CPython {env.python}: {reason}"))
    return LibraryCheck(
        objects=len(libs.objects),
        needed=uses,
        declared=declared,
        providers=sorted(providers),
        missing=missing,
        surplus=surplus,
        unmapped=unmapped,
        cannot_load=cannot,
    )


def _objects(paths: list[str], limit: int = 3) -> str:
    names = [PurePosixPath(p).name for p in paths]
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"


# --- GPU code ----------------------------------------------------------------------------------------


@dataclass
class GpuObjectRow:
    path: str  # a member, or a directory of cubins ("dir/ (N cubins)")
    source: str  # "fatbin" or "cubin"
    count: int  # 1 for a fatbin object, the number of cubin files for a group
    targets: dict[str, int]
    runnable_bytes: int
    dead_bytes: int

    @property
    def total_bytes(self) -> int:
        return sum(self.targets.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "source": self.source,
            "count": self.count,
            "total_bytes": self.total_bytes,
            "runnable_bytes": self.runnable_bytes,
            "dead_bytes": self.dead_bytes,
            "targets": self.targets,
        }


@dataclass
class CapabilityCode:
    capability: str
    runnable_bytes: int
    acknowledged: str | None  # the gpu-code-gaps reason when runnable_bytes == 0 and the spec says why

    def to_json(self) -> dict[str, Any]:
        return {
            "capability": self.capability,
            "runnable_bytes": self.runnable_bytes,
            "gap": self.runnable_bytes == 0,
            "acknowledged": self.acknowledged,
        }


@dataclass
class GpuCheck:
    total_bytes: int
    by_target: dict[str, int]
    objects: list[GpuObjectRow]
    runnable_bytes: int
    dead_bytes: int
    capabilities: list[CapabilityCode]

    def to_json(self) -> dict[str, Any]:
        return {
            "total_bytes": self.total_bytes,
            "by_target": self.by_target,
            "runnable_bytes": self.runnable_bytes,
            "dead_bytes": self.dead_bytes,
            "capabilities": [c.to_json() for c in self.capabilities],
            "objects": [o.to_json() for o in self.objects],
        }


def check_gpu(gpu: GpuCodeReport, env: AuditEnv, wheel: Wheel | None, findings: list[Finding]) -> GpuCheck:
    caps = env.capabilities
    overall = gpu.classify(caps) if caps else None
    rows: list[GpuObjectRow] = []
    groups: dict[str, GpuObjectRow] = {}
    for obj in gpu.objects:
        targets = {format_target(k): v for k, v in obj.bytes_by_target().items()}
        ok, bad = overall.per_object.get(obj.path, (0, 0)) if overall else (0, obj.total_bytes)
        if obj.source == "fatbin":
            rows.append(GpuObjectRow(obj.path, "fatbin", 1, targets, ok, bad))
            continue
        parts = PurePosixPath(obj.path).parent.parts[:CUBIN_GROUP_DEPTH]
        group = "/".join(parts) + "/" if parts else "./"
        row = groups.get(group)
        if row is None:
            row = groups[group] = GpuObjectRow(group, "cubin", 0, {}, 0, 0)
            rows.append(row)
        row.count += 1
        row.runnable_bytes += ok
        row.dead_bytes += bad
        for t, n in targets.items():
            row.targets[t] = row.targets.get(t, 0) + n
    for row in groups.values():
        row.targets = dict(sorted(row.targets.items(), key=lambda kv: _target_order(kv[0])))
    gaps = wheel.gpu_code_gaps if wheel is not None else {}
    per_cap: list[CapabilityCode] = []
    if gpu.total_bytes:
        for cap in caps:
            runnable = gpu.classify([cap]).runnable_bytes
            reason = gaps.get(cap, gaps.get("*")) if runnable == 0 else None
            per_cap.append(CapabilityCode(cap, runnable, reason))
            if runnable == 0 and reason is None:
                findings.append(
                    Finding(
                        "hard",
                        "gpu",
                        f"no GPU code runs on capability {cap} ({_bytes(gpu.total_bytes)} for other GPUs); "
                        "acknowledge it in `gpu-code-gaps` if that is intended",
                    )
                )
            elif runnable == 0:
                findings.append(Finding("info", "gpu", f"no GPU code for capability {cap}: {reason}"))
            elif cap in gaps:
                findings.append(
                    Finding(
                        "warning",
                        "gpu",
                        f"`gpu-code-gaps` lists {cap}, but {_bytes(runnable)} of code runs on it",
                    )
                )
    return GpuCheck(
        total_bytes=gpu.total_bytes,
        by_target={format_target(k): v for k, v in gpu.bytes_by_target().items()},
        objects=rows,
        runnable_bytes=overall.runnable_bytes if overall else 0,
        dead_bytes=overall.dead_bytes if overall else gpu.total_bytes,
        capabilities=per_cap,
    )


def _target_order(target: str) -> tuple[int, str]:
    digits = "".join(ch for ch in target.split("_", 1)[-1] if ch.isdigit())
    return (int(digits) if digits else 0, target)


def _bytes(n: int) -> str:
    for unit, size in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


# --- Requires-Dist -----------------------------------------------------------------------------------

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
            if version is None:
                checks.append(RequirementCheck(name, shown, "nixpkgs", attr))
                findings.append(
                    Finding(
                        "info",
                        "requires",
                        f"{shown}: provided by {attr} from nixpkgs (version not known offline)",
                    )
                )
                continue
            specifier = SpecifierSet()
            for r in reqs:
                specifier &= r.specifier
            if _contains(specifier, version):
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


# --- one wheel ---------------------------------------------------------------------------------------

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
    report.gpu = check_gpu(audit.gpu, env, wheel, report.findings)
    report.requires = check_requires(metadata, env, wheel, report.findings)
    check_prune_rules(path, wheel, report.findings)
    order = {s: i for i, s in enumerate(SEVERITIES)}
    report.findings.sort(key=lambda f: order[f.severity])
    return report


def check_prune_rules(path: Path, wheel: Wheel | None, findings: list[Finding]) -> None:
    """Each prune rule of the wheel must still cover something in it (else the wheel changed under the
    spec, and the Nix build would stop at the rule)."""
    from ..pruning import matched_bytes, member_sizes

    if wheel is None or not wheel.prune:
        return
    sizes = member_sizes(path)
    for rule in wheel.prune:
        if matched_bytes(sizes, rule.path) is None:
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


def match_wheel(spec: Spec, filename: str, line: Line | None = None) -> Match | None:
    """The spec's wheel for a file: by exact file name, else by project name (first match wins).

    `line` restricts the search to one release line.
    """
    lines = [line] if line is not None else [spec.lines[n] for n in sorted(spec.lines)]
    by_name: Match | None = None
    project = canonicalize_name(filename.split("-", 1)[0])
    for candidate in lines:
        for wheel in candidate.wheels.values():
            for system in candidate.systems:
                expected = wheel.filename(system, candidate.python)
                if expected is None:
                    continue
                if expected == filename:
                    return Match(candidate, system, wheel, expected)
                if by_name is None and canonicalize_name(wheel.pname) == project:
                    by_name = Match(candidate, system, wheel, expected)
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
