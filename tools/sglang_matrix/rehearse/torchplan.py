"""Which torch the rehearsal installs, and what stands in for what because of it.

A line whose torch nixpkgs builds from source (0.5.9) always gets a stand-in: pip's torch of `--torch`
(its local CPU build where there is one) and the matching torchvision's Python code. A line whose torch is
a wheel of the line (0.5.23, `[lines.X.torch] source = "wheel"`) gets the same stand-in by default, to keep
CI's downloads small; `--torch <the line's version>` installs the line's own torch release instead (for
this CPython, with pip's nvidia-* wheels in place of the CUDA libraries the Nix build links), and the
line's torchvision wheel with it.
"""

from __future__ import annotations

from dataclasses import dataclass

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from ..errors import UserError
from ..spec import Line

# The wheels of a wheel-torch line that the stand-in torch replaces.
REPLACED = frozenset({"torch", "torchvision"})
# What links torch's C++ API: a wheel whose `libraries` name the line's torch.
LINKS_TORCH = "python.pkgs.torch"


def torchvision_for(torch_version: str) -> str:
    """torchvision's release for a torch release: 0.(minor + 15).patch since torch 2.0 / torchvision 0.15."""
    try:
        v = Version(torch_version)
    except InvalidVersion:
        raise UserError(f"--torch: {torch_version!r} is not a version") from None
    if v.major != 2:
        raise UserError(f"--torch: {torch_version!r}: only torch 2.x stand-ins are known")
    return f"0.{v.minor + 15}.{v.micro}"


@dataclass(frozen=True)
class TorchPlan:
    version: str  # the torch release the environment gets
    torchvision: str
    # The line's own torch release (its wheel, for this CPython): no stand-in for torch or torchvision.
    real: bool
    wheel_line: bool  # the line's torch is a wheel of the line (its torch, torchvision, triton wheels)
    line_version: str

    @property
    def skip_wheels(self) -> frozenset[str]:
        """The line's wheels the environment goes without (the stand-in replaces them)."""
        return REPLACED if self.wheel_line and not self.real else frozenset()

    @property
    def declare_torchvision_ops(self) -> bool:
        """A stand-in torchvision's compiled operators cannot load: the harness declares them by name."""
        return not self.real

    def to_json(self) -> dict[str, object]:
        return {"torch": self.version, "torchvision": self.torchvision, "real": self.real}


def torch_plan(line: Line, torch_version: str) -> TorchPlan:
    wheel_line = line.torch_source == "wheel"
    real = wheel_line and torch_version == line.torch_version
    tv = torchvision_for(torch_version)
    if real and "torchvision" in line.wheels:
        tv = line.wheels["torchvision"].version
    return TorchPlan(torch_version, tv, real, wheel_line, line.torch_version)


def stand_ins(plan: TorchPlan, line: Line, python: str) -> list[tuple[str, str, str, str]]:
    """(part, the variant has, the rehearsal has, why) for torch and torchvision."""
    version = line.torch_version
    if not plan.wheel_line:
        return [
            (
                "torch",
                f"nixpkgs' torch {version}, built for the variant's SMs and ISA",
                f"torch {plan.version} (pip's local build; CPU-only where it is +cpu)",
                "no CUDA torch is built or downloaded here",
            ),
            (
                "torchvision",
                "nixpkgs' torchvision, built against the variant's torch",
                f"torchvision {plan.torchvision}'s Python code, its compiled operators declared by name only",
                "PyPI's torchvision is built against PyPI's CUDA torch: its operators cannot load here",
            ),
        ]
    tv_line = line.wheels["torchvision"].version if "torchvision" in line.wheels else "the line's"
    if plan.real:
        return [
            (
                "CUDA libraries",
                "the line's cudaPackages libraries, linked into torch's wheel by autoPatchelf",
                f"pip's nvidia-* wheels that torch {version}'s Requires-Dist names",
                "no nixpkgs here; they are the same CUDA 13.0 releases",
            ),
        ]
    return [
        (
            "torch",
            f"the line's torch {version} wheel (CUDA 13.0 build) for CPython {python}, patched against the "
            "line's CUDA libraries",
            f"torch {plan.version} (pip's local build; CPU-only where it is +cpu)",
            f"torch {version}'s wheel and its CUDA libraries are GBs, kept out of CI; `--torch {version}` "
            "rehearses with the real one",
        ),
        (
            "torchvision",
            f"the line's torchvision {tv_line} wheel, built against torch {version}",
            f"torchvision {plan.torchvision}'s Python code, its compiled operators declared by name only",
            f"torchvision {tv_line}'s operators link torch {version}: they cannot load beside the stand-in",
        ),
    ]


def torch_abi_config(
    plan: TorchPlan, line: Line, wheel_attrs: list[str], top_level: dict[str, list[str]]
) -> dict[str, object] | None:
    """`top_level`: canonical distribution name -> its top-level modules, as installed.

    The harness's torch-ABI stand-in, only where the line's torch is a wheel and a stand-in is
    installed: the top-level packages of the wheels that link the line's torch (their `libraries`), whose
    native objects cannot load beside another torch. The harness stands in for one of their modules only
    when it fails with an undefined torch/c10 C++ symbol or a missing CUDA 13 library."""
    if not plan.wheel_line or plan.real:
        return None
    packages: set[str] = set()
    for attr in wheel_attrs:
        wheel = line.wheels[attr]
        if attr in REPLACED or LINKS_TORCH not in wheel.libraries:
            continue
        packages.update(top_level.get(canonicalize_name(wheel.pname), []))
    reason = (
        f"links torch {line.torch_version}'s C++ ABI (its libraries name python.pkgs.torch); "
        f"the rehearsal's torch is the stand-in {plan.version}"
    )
    return {"packages": sorted(packages), "reason": reason} if packages else None
