"""What every check of the audit reports into: a `Finding`, and the environment a wheel is audited for."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from sglang_matrix.spec import Line

Severity = Literal["hard", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = ("hard", "warning", "info")
MACHINES = {"x86_64-linux": "x86_64", "aarch64-linux": "aarch64"}


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
    # The variant's pruned paths per wheel attribute (`Variant.pruned`); None for a whole release line.
    pruned: Mapping[str, tuple[str, ...]] | None = field(default=None, compare=False)

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
            "pruned": None if self.pruned is None else {k: list(v) for k, v in sorted(self.pruned.items())},
        }


def size_text(n: int) -> str:
    for unit, size in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"
