"""`sglang-matrix which`: detect this host and name the variant to build.

The host is read from the NVIDIA driver (NVML through `pynvml` when importable, else the CUDA driver API,
else `nvidia-smi`) and from /proc/cpuinfo; recorded outputs can be given instead (`--nvidia-smi-output`,
`--cpuinfo`, `--machine`) so that tests and bug reports need no GPU. Every rule comes from the spec's data:

* a variant fits when its system is the host's, the CPU has every `cpu-features` flag of its ISA (a
  variant without an ISA, of a line whose torch is a prebuilt wheel, runs on any CPU of its system: no
  flag is checked), every GPU's compute capability is one of its target's capabilities, and the driver's
  CUDA version is at least the variant's CUDA (the reasons name the driver that has it, from
  [cuda-drivers]: for X.0 the oldest driver of major X, 580 for CUDA 13.0; else that release's GA driver);
* among fitting variants, in this order of precedence:
  1. a target with fewer capabilities first (a single-SM build is smaller and faster to build than a fat
     one);
  2. the line's default Python (its first `python`), then the newest other Python: the default set is the
     main one (the short names), and a host's choice should not switch Python for a faster ISA;
  3. the line's default CUDA (its first `cuda`), then the highest other CUDA the driver supports: the
     default needs the least new driver, and another CUDA is chosen only where the default has no variant
     that fits (a target only a newer CUDA builds, such as sm103 on CUDA 12.9; a default the driver is
     too old for). A variant whose CUDA is newer than the driver's never fits;
  4. the ISA with the most cpu-features (avx512 over avx2); on a tie the one the line lists later in its
     `isas` (lines list them from the broadest to the most specific: avx512vnni over avx512bf16, armv9
     over armv8_2); a variant without an ISA has none;
  5. the newest line (each line's default Python and CUDA rank alike, so across lines a build for this
     CPU's ISA comes before a prebuilt any-CPU one);
* with no GPU detected only multi-capability (fat) targets are candidates, fattest first, and the driver's
  CUDA is not checked.

Each release line also gets its own answer (`lines` in --json, "per release line" in the text): the
line's fitting variant by the same rules, or why none of its variants fits (a CUDA 13 line on a 575
driver: "update the NVIDIA driver to >= 580").

Variants that rank before the choice but do not fit are listed with the reasons: those that share a GPU
capability with the host (fat targets when there is no GPU), and of each line, target and ISA only the
first-ranked Python and CUDA (the others would mostly repeat its reasons).

The probing (NVML, the CUDA driver API, nvidia-smi; /proc/cpuinfo) and the recorded formats live in
`host/probe.py`, shared with `smoke` and `sglang-serve --preflight`. A recorded cpuinfo's architecture wins
over this machine's (a GH200's cpuinfo is an aarch64 host, wherever `which` runs); `--machine` must name a
known architecture and agree with the recorded file.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from packaging.version import InvalidVersion, Version
from rich.console import Console

from .errors import UserError
from .host.probe import Cpu, GpuProbe, probe_cpu, probe_gpus, read_recorded
from .variants import Variant, resolve_variants

if TYPE_CHECKING:
    from .spec import Spec


@dataclass
class LineOutcome:
    """One release line's answer: its fitting variant, or why none fits."""

    line: str
    choice: Variant | None
    rejected: list[tuple[Variant, list[str]]] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    @property
    def command(self) -> str | None:
        return f"nix build .#{self.choice.name}" if self.choice else None

    def to_json(self) -> dict[str, Any]:
        return {
            "choice": self.choice.name if self.choice else None,
            "command": self.command,
            "cuda": self.choice.cuda if self.choice else None,
            "isa": self.choice.isa if self.choice else None,
            "rejected": [{"name": v.name, "reasons": list(r)} for v, r in self.rejected],
            "reasons": list(self.reasons),
        }


@dataclass
class Outcome:
    gpu: GpuProbe
    cpu: Cpu
    choice: Variant | None
    rejected: list[tuple[Variant, list[str]]] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    relevant_features: tuple[str, ...] = ()
    fitting_isas: tuple[str, ...] = ()
    # Each release line's own answer, newest line first.
    lines: list[LineOutcome] = field(default_factory=list)

    @property
    def command(self) -> str | None:
        return f"nix build .#{self.choice.name}" if self.choice else None

    def to_json(self) -> dict[str, Any]:
        return {
            "gpus": [g.to_json() for g in self.gpu.gpus],
            "driver_cuda": self.gpu.driver_cuda,
            "gpu_source": self.gpu.source,
            "gpu_problem": self.gpu.problem,
            "cpu": {
                "machine": self.cpu.machine,
                "model": self.cpu.model,
                "source": self.cpu.source,
                "features": [f for f in self.relevant_features if f in self.cpu.flags],
                "missing": [f for f in self.relevant_features if f not in self.cpu.flags],
                "isas": list(self.fitting_isas),
            },
            "system": self.cpu.system,
            "choice": self.choice.name if self.choice else None,
            "command": self.command,
            "rejected": [{"name": v.name, "reasons": list(r)} for v, r in self.rejected],
            "reasons": list(self.reasons),
            "notes": list(self.notes),
            "lines": {lo.line: lo.to_json() for lo in self.lines},
        }


# ------------------------------------------------------------------------------------------------ rules


def _version(text: str) -> Version:
    try:
        return Version(text)
    except InvalidVersion:
        return Version("0")


def _line_key(name: str) -> Version:
    return _version(name)


def _newest_first(values: tuple[str, ...], value: str) -> tuple[int, tuple[int, ...]]:
    """Rank of `value` among a line's Pythons or CUDAs: the default (first) one, then the newest. Every
    line's default ranks alike, whatever its version: across lines the later rules decide."""
    if value == values[0]:
        return (0, ())
    return (1, tuple(-p for p in _version(value).release))


def driver_for(spec: Spec, cuda: str) -> str | None:
    """The oldest NVIDIA driver whose CUDA version is at least `cuda` ([cuda-drivers]): for X.0 the oldest
    driver of major X (13.0: 580), else the GA driver of that release (12.8: 570.26)."""
    drivers = spec.cuda_drivers
    if drivers is None:
        return None
    major, _, minor = cuda.partition(".")
    if minor in ("", "0") and major in drivers.minimum:
        return drivers.minimum[major]
    return drivers.full.get(cuda) or drivers.minimum.get(major)


def _update(spec: Spec, cuda: str) -> str:
    need = driver_for(spec, cuda)
    return f"update the NVIDIA driver to >= {need}" if need else "update the NVIDIA driver"


def cpu_features(spec: Spec, v: Variant) -> tuple[str, ...]:
    """The CPU flags the variant needs: its ISA's; none for a variant without an ISA (a prebuilt torch runs
    on any CPU of its system)."""
    return spec.isas[v.isa].cpu_features if v.isa is not None else ()


def isa_text(v: Variant) -> str:
    return v.isa if v.isa is not None else f"any {v.arch} CPU"


def _variant_reasons(spec: Spec, v: Variant, gpu: GpuProbe, flags: frozenset[str]) -> list[str]:
    reasons = []
    lacking = [f for f in cpu_features(spec, v) if f not in flags]
    if lacking:
        reasons.append(f"CPU lacks {', '.join(lacking)}")
    if gpu.gpus:
        missing = sorted({g.capability for g in gpu.gpus} - set(v.capabilities), key=_version)
        if missing:
            noun = "capability" if len(missing) == 1 else "capabilities"
            verb = "is not a target" if len(missing) == 1 else "are not targets"
            reasons.append(f"GPU {noun} {', '.join(missing)} {verb} ({', '.join(v.capabilities)})")
        if gpu.driver_cuda and _version(gpu.driver_cuda) < _version(v.cuda):
            need = driver_for(spec, v.cuda)
            driver = f" (NVIDIA driver >= {need})" if need else ""
            reasons.append(f"needs driver CUDA >= {v.cuda}{driver}, driver supports {gpu.driver_cuda}")
    elif len(v.capabilities) < 2:
        reasons.append("no GPU detected to match a single-capability target")
    return reasons


def _rank(spec: Spec, gpu: GpuProbe) -> Callable[[Variant], tuple[Any, ...]]:
    def key(v: Variant) -> tuple[Any, ...]:
        line = spec.lines[v.line]
        features = len(cpu_features(spec, v))
        order = line.isas.index(v.isa) if v.isa in line.isas else -1
        size = len(v.capabilities) if gpu.gpus else -len(v.capabilities)
        return (
            size,
            _newest_first(line.pythons, v.python),
            _newest_first(line.cudas, v.cuda),
            (-features, -order),
            [-p for p in _line_key(v.line).release],
            v.name,
        )

    return key


def _judge(
    spec: Spec, gpu: GpuProbe, cpu: Cpu, here: list[Variant], of: str
) -> tuple[Variant | None, list[tuple[Variant, list[str]]], list[str]]:
    """(choice, nearer variants that do not fit, reasons) among `here`, the variants of the host's system
    (of one line, or of all: `of` says which in the reasons)."""
    key = _rank(spec, gpu)
    checked = sorted(((v, _variant_reasons(spec, v, gpu, cpu.flags)) for v in here), key=lambda p: key(p[0]))
    fitting = [v for v, reasons in checked if not reasons]
    choice = fitting[0] if fitting else None
    caps = {g.capability for g in gpu.gpus}

    def near(v: Variant) -> bool:
        if gpu.gpus:
            return bool(caps & set(v.capabilities))
        return len(v.capabilities) > 1

    rejected: list[tuple[Variant, list[str]]] = []
    listed: set[tuple[str, str, str | None]] = set()
    for v, reasons in checked:
        if (v.line, v.target, v.isa) in listed or not near(v):
            continue
        if choice is not None and key(v) >= key(choice):
            continue
        listed.add((v.line, v.target, v.isa))
        if reasons:
            rejected.append((v, reasons))

    reasons: list[str] = []
    if not gpu.gpus:
        if choice is None and not any(len(v.capabilities) > 1 for v in here):
            targets = dict.fromkeys(f"{v.target} ({', '.join(v.capabilities)})" for v in here)
            reasons.append(
                "no GPU detected and no target covers several capabilities; targets: " + ", ".join(targets)
            )
    else:
        covered = {c for v in here for c in v.capabilities}
        for cap in sorted(caps - covered, key=_version):
            reasons.append(f"GPU capability {cap} is in no target {of}")
        # The CUDA the driver must support: the oldest among the variants whose target covers the GPUs
        # (a target only a newer CUDA builds needs that one), or among all when none does.
        covering = [v for v in here if caps <= set(v.capabilities)]
        oldest = min((v.cuda for v in covering or here), key=_version)
        if gpu.driver_cuda and _version(gpu.driver_cuda) < _version(oldest):
            gpus = "this GPU" if len(gpu.gpus) == 1 else "these GPUs"
            which_ones = f"{of} that fits {gpus}" if covering else of
            reasons.append(
                f"the driver supports CUDA {gpu.driver_cuda}; every variant {which_ones} needs "
                f">= {oldest} ({_update(spec, oldest)})"
            )
        if len(caps) > 1 and not covering:
            reasons.append(
                f"no target covers every GPU of this mixed host ({', '.join(sorted(caps, key=_version))})"
            )
    # ISAs matter only where every variant has one: a variant without an ISA runs on any CPU of its system.
    isas = dict.fromkeys(v.isa for v in here)
    if None not in isas and not any(
        all(f in cpu.flags for f in spec.isas[str(i)].cpu_features) for i in isas
    ):
        reasons.append(f"the CPU has no ISA {of} ({', '.join(str(i) for i in isas)})")
    if choice is None and not reasons:
        reasons.append("every near variant was rejected (see the reasons below)")
    return choice, rejected, reasons


def decide(spec: Spec, gpu: GpuProbe, cpu: Cpu) -> Outcome:
    variants = resolve_variants(spec)
    outcome = Outcome(gpu=gpu, cpu=cpu, choice=None)
    isas_here = [name for name, isa in spec.isas.items() if cpu.system in isa.systems]
    outcome.relevant_features = tuple(
        dict.fromkeys(f for name in isas_here for f in spec.isas[name].cpu_features)
    )
    outcome.fitting_isas = tuple(
        name for name in isas_here if all(f in cpu.flags for f in spec.isas[name].cpu_features)
    )
    if not gpu.gpus:
        outcome.notes.append(
            f"no NVIDIA GPU detected ({gpu.problem or 'none listed'}): chose by CPU only; "
            "the driver's CUDA version was not checked"
        )
    here = [v for v in variants if v.system == cpu.system]
    for name in sorted(spec.lines, key=_line_key, reverse=True):
        mine = [v for v in here if v.line == name]
        line = LineOutcome(name, None)
        outcome.lines.append(line)
        if not mine:
            isas = [i for i in spec.lines[name].isas if cpu.system in spec.isas[i].systems]
            no_isa = " (it has no ISA for it)" if spec.lines[name].isas and not isas else ""
            line.reasons.append(f"line {name} builds nothing for {cpu.system}{no_isa}")
            continue
        line.choice, line.rejected, line.reasons = _judge(
            spec, gpu, cpu, mine, f"of line {name} for {cpu.system}"
        )
    if not here:
        if not isas_here:
            outcome.reasons.append(f"no ISA for {cpu.system} in the spec")
        else:
            outcome.reasons.append(
                f"no release line builds {cpu.system} (ISAs for it: {', '.join(isas_here)})"
            )
        return outcome
    outcome.choice, outcome.rejected, outcome.reasons = _judge(spec, gpu, cpu, here, f"for {cpu.system}")
    return outcome


# ------------------------------------------------------------------------------------------------ output


def render_human(outcome: Outcome, console: Console) -> None:
    def say(text: str, style: str | None = None) -> None:
        console.print(text, style=style, markup=False, highlight=False, soft_wrap=True)

    gpu, cpu = outcome.gpu, outcome.cpu
    if gpu.gpus:
        for g in gpu.gpus:
            say(f"GPU {g.index}: {g.name}, capability {g.capability}, driver {g.driver}")
        say(f"driver CUDA: {gpu.driver_cuda} ({gpu.source})")
    else:
        say(f"GPU: none detected ({gpu.problem or 'none listed'})", "yellow")
    say(f"CPU: {cpu.model or 'unknown model'} ({cpu.machine}, Nix system {cpu.system})")
    have = [f for f in outcome.relevant_features if f in cpu.flags]
    lack = [f for f in outcome.relevant_features if f not in cpu.flags]
    features = f"CPU features: {' '.join(have) or '(none the spec asks for)'}"
    if lack:
        features += f"; lacks {' '.join(lack)}"
    say(features)
    say(f"ISAs that fit: {', '.join(outcome.fitting_isas) or 'none'}")
    for note in outcome.notes:
        say(f"note: {note}", "yellow")
    if outcome.choice is not None:
        v = outcome.choice
        say(
            f"choice: {v.name} (line {v.line}, {v.target}: {', '.join(v.capabilities)}, {isa_text(v)}, "
            f"CUDA {v.cuda})",
            "bold green",
        )
        say(f"  {outcome.command}", "bold")
    else:
        for reason in outcome.reasons:
            say(f"no variant fits: {reason}", "bold red")
    if outcome.rejected:
        say("nearer variants that do not fit:" if outcome.choice else "rejected:")
        for v, reasons in outcome.rejected:
            say(f"  {v.name}: {'; '.join(reasons)}")
    if outcome.lines:
        say("per release line:")
    for line in outcome.lines:
        if line.choice is not None:
            v = line.choice
            say(
                f"  {line.line}: {v.name} ({v.target}: {', '.join(v.capabilities)}, {isa_text(v)}, "
                f"CUDA {v.cuda}): {line.command}"
            )
            continue
        why = line.reasons
        if why == ["every near variant was rejected (see the reasons below)"] and line.rejected:
            first, reasons = line.rejected[0]
            why = [f"{first.name}: {'; '.join(reasons)}"]
        say(f"  {line.line}: no variant fits: {'; '.join(why)}")


def run_which(
    spec: Spec,
    as_json: bool,
    nvidia_smi_output: Path | None,
    cpuinfo: Path | None,
    machine: str | None,
) -> int:
    gpu = read_recorded(nvidia_smi_output) if nvidia_smi_output else probe_gpus()
    cpu = probe_cpu(cpuinfo, machine)
    outcome = decide(spec, gpu, cpu)
    if as_json:
        click.echo(json.dumps(outcome.to_json(), indent=2))
    else:
        render_human(outcome, Console())
    return 0 if outcome.choice is not None else 1


def recorded_host_options(func: Any) -> Any:
    """--nvidia-smi-output and --cpuinfo: recorded host data instead of this host's (which, smoke)."""
    func = click.option(
        "--cpuinfo",
        type=click.Path(dir_okay=False, path_type=Path),
        metavar="FILE",
        help="A recorded /proc/cpuinfo (or lscpu output) instead of this host's.",
    )(func)
    return click.option(
        "--nvidia-smi-output",
        type=click.Path(dir_okay=False, path_type=Path),
        metavar="FILE",
        help="Recorded nvidia-smi output ('### query' and '### nvidia-smi' sections) instead of the driver.",
    )(func)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the detection and the decision as JSON.")
@recorded_host_options
@click.option(
    "--machine",
    metavar="ARCH",
    help="Machine architecture (x86_64, aarch64) instead of this host's [default: a recorded --cpuinfo's "
    "own, else this host's].",
)
@click.pass_obj
def which(
    obj: Any, as_json: bool, nvidia_smi_output: Path | None, cpuinfo: Path | None, machine: str | None
) -> None:
    """Detect this host's GPUs and CPU and print the variant to build, with `nix build .#NAME`.

    Exit 0 when a variant fits, 1 when none does (with the reasons), 2 on bad input.
    """
    try:
        code = run_which(obj.spec, as_json, nvidia_smi_output, cpuinfo, machine)
    except UserError as err:
        click.echo(f"sglang-matrix: {err}", err=True)
        sys.exit(err.exit_code)
    sys.exit(code)
