"""What `smoke` reports: checks with a status and a reason, the variant under test, the host as the checks
see it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["passed", "failed", "skipped"]

VARIANT_JSON = "nix-support/sglang-matrix-variant.json"
IMPORTS = ("sglang", "torch", "xgrammar", "flashinfer", "sgl_kernel")
DRIVER_SONAMES = frozenset({"libcuda.so.1"})
IMPORT_TIMEOUT_S = 300
PROBE_TIMEOUT_S = 120
NEEDS_DRIVER = "needs the NVIDIA driver (libcuda.so.1), not present"
GPU_CHECKS = (
    ("gpu:matmul", "torch matmul on CUDA vs CPU"),
    ("gpu:flashinfer", "FlashInfer rmsnorm vs torch"),
    ("gpu:sgl-kernel", "sgl-kernel silu_and_mul vs torch"),
    ("gpu:server", "sglang-serve end to end (tiny random Llama)"),
)


@dataclass
class Check:
    id: str
    title: str
    status: Status
    reason: str
    details: Any = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "title": self.title,
            "status": self.status,
            "reason": self.reason,
        }
        if self.details is not None:
            out["details"] = self.details
        return out


def passed(id: str, title: str, reason: str, details: Any = None) -> Check:
    return Check(id, title, "passed", reason, details)


def failed(id: str, title: str, reason: str, details: Any = None) -> Check:
    return Check(id, title, "failed", reason, details)


def skipped(id: str, title: str, reason: str, details: Any = None) -> Check:
    return Check(id, title, "skipped", reason, details)


@dataclass(frozen=True)
class SmokeVariant:
    """What the checks need to know about the variant under test."""

    name: str
    capabilities: tuple[str, ...]
    python: str
    # None: a variant without an ISA (its torch is a prebuilt wheel), for any CPU of its system.
    isa: str | None
    cpu_features: tuple[str, ...]
    source: str
    data: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    # GPU-check id -> {capability: reason}: GPU code the spec accepts a wheel does not have
    # (`gpu-code-gaps`), so that check is skipped on such a GPU rather than failed.
    gaps: dict[str, dict[str, str]] = field(default_factory=dict, compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "capabilities": list(self.capabilities),
            "python": self.python,
            "isa": self.isa,
            "cpuFeatures": list(self.cpu_features),
            "source": self.source,
        }


@dataclass
class Report:
    result: str
    variant: SmokeVariant
    closure: str
    checks: list[Check] = field(default_factory=list)

    def count(self, status: Status) -> int:
        return sum(1 for c in self.checks if c.status == status)

    @property
    def ok(self) -> bool:
        return not any(c.status == "failed" for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {
            "result": self.result,
            "variant": self.variant.to_json(),
            "closure": self.closure,
            "ok": self.ok,
            "counts": {s: self.count(s) for s in ("passed", "failed", "skipped")},
            "checks": [c.to_json() for c in self.checks],
        }


@dataclass(frozen=True)
class Host:
    """This host as the gating rules see it."""

    gpus: tuple[tuple[int, str, str], ...]
    """(index, name, capability) from the driver (NVML/nvidia-smi) or a recording."""
    gpu_problem: str | None
    cpu_flags: frozenset[str] | None
    cpu_source: str
    driver_present: bool
