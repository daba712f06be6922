"""`sglang-matrix plan`: what building a set of variants costs, and how to spread it over Nix builders.

The weights come from matrix.toml's `[plan]` table (every field optional; the defaults below are the same
numbers, so a cut-down spec without the table still plans and renders). They are hours and gigabytes on a
reference builder of `reference-cores` cores; a builder with fewer cores takes proportionally longer, one
with more gains nothing for torch beyond `[build] max-jobs-cap` parallel compile jobs.

What gets built, each item once:
  cuda-libs    the CUDA libraries nixpkgs compiles for a capability set (magma, NCCL, ...): one per
               nixpkgs instance, i.e. per `Variant.nixpkgs_key` (system, CUDA, capabilities); a wheel-torch
               line's instance, one per system and CUDA for all its targets, compiles only NCCL
  torch        one source build per (system, capabilities, ISA, CUDA, Python, torch version); needs the
               `big-parallel` system feature (nixpkgs' torch sets requiredSystemFeatures) and the ISA's
               `gccarch-<march>` (its import check runs the ISA's code)
  torch-wheel  a line whose torch is a prebuilt wheel: unpacked and patched once per (system, CUDA,
               Python), no system feature; such a line has no torchvision item (its wheel is one of the
               variant's)
  torchvision  nixpkgs' torchvision built against that torch (C++ ops and CUDA kernels), once per torch;
               its import check loads torch, so it needs `gccarch-<march>` too
  variant      the variant's own derivations: sglang and the platform wheels patched against its torch
  pure-wheels  the pure-Python wheels of a release line, shared by all of its variants

Builders are read from a Nix machines file (the format of nix.conf's `builders`): each line is
URI SYSTEMS SSH-KEY MAX-JOBS SPEED-FACTOR SUPPORTED-FEATURES MANDATORY-FEATURES HOST-KEY, `-` for empty,
trailing fields optional, `#` starts a comment.
"""

from __future__ import annotations

import json
import math
import shlex
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import click

from .errors import UserError
from .machines import (  # noqa: F401  (parse_machines: the plan's machines-file reader, re-exported)
    Builder,
    NixUInt,
    parse_machines,
    read_machines,
)
from .spec import Spec
from .variants import Variant, resolve_variants
from .weights import Weights, parse_weights, spec_file_name, toml_key

BIG_PARALLEL = "big-parallel"
# GitHub Actions ends a self-hosted runner's job after 5 days whatever timeout-minutes says.
MAX_TIMEOUT_MINUTES = 5 * 24 * 60


def load_weights(spec: Spec) -> Weights:
    """The spec's [plan] table (parsed and checked with the rest of the spec by load_spec)."""
    if spec.weights is not None:
        return spec.weights
    return parse_weights(spec.raw, spec_file_name(spec.path))


# --------------------------------------------------------------------------------------------------------
# What must be built


@dataclass
class Item:
    kind: str  # cuda-libs | torch | torch-wheel | torchvision | variant | pure-wheels
    key: str
    system: str
    hours: float  # on the reference builder
    disk_gb: float
    variants: list[str] = field(default_factory=list)
    features: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "key": self.key,
            "system": self.system,
            "hours": round(self.hours, 3),
            "diskGb": round(self.disk_gb, 3),
            "variants": list(self.variants),
            "requiredSystemFeatures": list(self.features),
        }


def wheel_torch(v: Variant) -> bool:
    return v.torch_source == "wheel"


def torch_key(v: Variant) -> str:
    """One torch build serves every variant with the same key."""
    if wheel_torch(v):
        # The wheel is the same file for every target and CPU; its patched copy depends on the shared
        # instance (one per system and CUDA) and the Python.
        return f"{v.nixpkgs_key}-python{v.python}-torch{v.versions['torch']}-wheel"
    caps = "+".join(v.capabilities)
    return f"{v.system}-cuda{v.cuda}-python{v.python}-torch{v.versions['torch']}-{caps}-{v.isa}"


def gccarch_features(v: Variant) -> tuple[str, ...]:
    """nixpkgs' system feature for the variant's ISA (gccarch-<march>), which torch and every build that
    imports it require: a builder without it would run the ISA's code and die with SIGILL."""
    return (f"gccarch-{v.gcc_arch}",) if v.gcc_arch else ()


def pure_key(v: Variant) -> str:
    return f"{v.system}-line{v.line}"


def pure_wheels(spec: Spec, line: str) -> list[str]:
    return [attr for attr, wheel in spec.lines[line].wheels.items() if wheel.pure]


@dataclass
class Plan:
    spec: Spec
    weights: Weights
    variants: list[Variant]
    items: list[Item]

    def item(self, kind: str, item_key: str) -> Item:
        for it in self.items:
            if it.kind == kind and it.key == item_key:
                return it
        raise KeyError((kind, item_key))

    def chain(self, v: Variant) -> list[Item]:
        """The items a variant needs, in build order."""
        chain = [self.item("cuda-libs", v.nixpkgs_key)]
        if wheel_torch(v):
            chain.append(self.item("torch-wheel", torch_key(v)))
        else:
            chain += [self.item("torch", torch_key(v)), self.item("torchvision", torch_key(v))]
        chain.append(self.item("variant", v.name))
        if pure_wheels(self.spec, v.line):
            chain.append(self.item("pure-wheels", pure_key(v)))
        return chain

    def variant_hours(self, v: Variant) -> float:
        """Hours for this variant alone on an empty store (reference builder)."""
        return sum(it.hours for it in self.chain(v))

    @property
    def total_hours(self) -> float:
        return sum(it.hours for it in self.items)

    @property
    def total_disk_gb(self) -> float:
        return sum(it.disk_gb for it in self.items)


def make_plan(spec: Spec, names: list[str] | tuple[str, ...] = ()) -> Plan:
    weights = load_weights(spec)
    everything = resolve_variants(spec)
    if names:
        by_name = {v.name: v for v in everything} | {v.long_name: v for v in everything}
        chosen: list[Variant] = []
        for name in names:
            if name not in by_name:
                raise UserError(f"no variant named {name!r} (see `sglang-matrix list`)")
            if by_name[name] not in chosen:
                chosen.append(by_name[name])
        variants = [v for v in everything if v in chosen]
    else:
        variants = everything
    items: dict[tuple[str, str], Item] = {}

    def add(kind: str, item_key: str, v: Variant, hours: float, disk: float, feats: tuple[str, ...] = ()):
        it = items.get((kind, item_key))
        if it is None:
            it = items[(kind, item_key)] = Item(kind, item_key, v.system, hours, disk, [], feats)
        it.variants.append(v.name)

    for v in variants:
        n = len(v.capabilities)
        gccarch = gccarch_features(v)
        if wheel_torch(v):
            shared = len(v.instance_capabilities or v.capabilities)
            add(
                "cuda-libs",
                v.nixpkgs_key,
                v,
                weights.nccl_hours_per_capability * shared,
                weights.cuda_libs_disk_gb,
            )
            add("torch-wheel", torch_key(v), v, weights.torch_wheel_hours, weights.torch_wheel_disk_gb)
            add("variant", v.name, v, weights.variant_hours, weights.variant_disk_gb)
            if pure_wheels(spec, v.line):
                add("pure-wheels", pure_key(v), v, weights.pure_wheels_hours, weights.pure_wheels_disk_gb)
            continue
        add(
            "cuda-libs",
            v.nixpkgs_key,
            v,
            weights.cuda_libs_hours_per_capability * n,
            weights.cuda_libs_disk_gb,
        )
        add(
            "torch",
            torch_key(v),
            v,
            weights.torch_hours_per_capability * n,
            weights.torch_disk_gb,
            (BIG_PARALLEL, *gccarch),
        )
        add(
            "torchvision",
            torch_key(v),
            v,
            weights.torchvision_hours + weights.torchvision_hours_per_capability * n,
            weights.torchvision_disk_gb,
            gccarch,
        )
        add("variant", v.name, v, weights.variant_hours, weights.variant_disk_gb)
        if pure_wheels(spec, v.line):
            add("pure-wheels", pure_key(v), v, weights.pure_wheels_hours, weights.pure_wheels_disk_gb)
    order = {"cuda-libs": 0, "torch": 1, "torch-wheel": 1, "torchvision": 2, "variant": 3, "pure-wheels": 4}
    ordered = sorted(items.values(), key=lambda it: order[it.kind])
    return Plan(spec, weights, variants, ordered)


# --------------------------------------------------------------------------------------------------------
# One local builder of N cores


@dataclass(frozen=True)
class LocalRun:
    cores: int
    max_jobs: int  # derivations at once (--max-jobs)
    cores_per_job: int  # --cores
    factor: float  # time on this builder / time on the reference builder
    hours: float  # estimated wall-clock hours
    command: str


def effective_cores(cores: int, cap: int) -> int:
    return max(1, min(cores, cap))


def local_run(plan: Plan, cores: int) -> LocalRun:
    """`--max-jobs`/`--cores` for one builder: torch compiles with at most max-jobs-cap jobs, so a
    builder with more cores runs several derivations at once, each with max-jobs-cap cores."""
    if cores < 1:
        raise UserError(f"--cores {cores}: must be at least 1")
    cap = plan.spec.max_jobs_cap
    max_jobs = max(1, cores // cap)
    per_job = cores // max_jobs
    factor = effective_cores(plan.weights.reference_cores, cap) / effective_cores(per_job, cap)
    longest = max((plan.variant_hours(v) for v in plan.variants), default=0.0)
    hours = max(plan.total_hours / max_jobs, longest) * factor
    targets = " ".join(f".#{v.name}" for v in plan.variants)
    command = f"nix build --max-jobs {max_jobs} --cores {per_job} --print-build-logs {targets}"
    return LocalRun(cores, max_jobs, per_job, factor, hours, command)


def ci_timeout_minutes(plan: Plan, v: Variant) -> int:
    """timeout-minutes for a CI job that builds one variant on a reference builder from an empty cache."""
    minutes = plan.variant_hours(v) * plan.weights.ci_timeout_factor * 60
    if not minutes <= MAX_TIMEOUT_MINUTES:  # also NaN: the spec's bounds keep it finite, this keeps it so
        return MAX_TIMEOUT_MINUTES
    return int(min(MAX_TIMEOUT_MINUTES, max(60, math.ceil(minutes / 60) * 60)))


# --------------------------------------------------------------------------------------------------------
# Spreading the plan over remote builders


@dataclass
class Assignment:
    builder: Builder
    variants: list[Variant] = field(default_factory=list)
    items: list[Item] = field(default_factory=list)

    @property
    def hours(self) -> float:
        """Estimated wall-clock hours on this builder: reference hours over its speed factor."""
        return sum(it.hours for it in self.items) / self.builder.speed

    def command(self) -> str:
        targets = " ".join(f".#{v.name}" for v in self.variants)
        return (
            f"nix build --builders {shlex.quote(self.builder.line)} --max-jobs 0 "
            f"--option builders-use-substitutes true --print-build-logs {targets}"
        )


def needed_features(v: Variant) -> set[str]:
    """The system features a builder of the variant needs: torch's (big-parallel, the ISA's gccarch); none
    for a wheel torch."""
    return set() if wheel_torch(v) else {BIG_PARALLEL, *gccarch_features(v)}


def _reject(file: str, v: Variant, builders: list[Builder]) -> UserError:
    capable = [b for b in builders if v.system in b.systems and b.max_jobs > 0]
    if not capable:
        return UserError(
            f"{file}: variant {v.name} needs system {v.system}, which no builder lists (with max-jobs > 0)"
        )
    if not wheel_torch(v):  # a wheel torch needs no system feature
        capable = [b for b in capable if BIG_PARALLEL in b.features]
        if not capable:
            return UserError(
                f"{file}: variant {v.name} needs system feature {BIG_PARALLEL} (torch's "
                f"requiredSystemFeatures), which no {v.system} builder supports"
            )
        isa = gccarch_features(v)
        capable = [b for b in capable if set(isa) <= b.features]
        if not capable:
            return UserError(
                f"{file}: variant {v.name} needs system feature {isa[0]} (its ISA {v.isa}: torch and the "
                f"builds that import it run {v.isa} code), which no {v.system} builder with {BIG_PARALLEL} "
                f"supports; add it to the system-features of a builder whose CPU has {v.isa}"
            )
    mandatory = sorted({f for b in capable for f in b.mandatory})
    which = "" if wheel_torch(v) else f" with {BIG_PARALLEL}"
    return UserError(
        f"{file}: variant {v.name}: every {v.system} builder{which} has mandatory features "
        f"({', '.join(mandatory)}) that its other derivations do not require"
    )


def assign(plan: Plan, builders: list[Builder], file: str) -> list[Assignment]:
    """Spread the plan's variants over builders, balancing estimated hours (over speed factors).

    Variants that share a torch build stay together. Each group goes, largest first, to the builder that
    would finish it soonest, counting the CUDA libraries and pure wheels once per builder."""
    out = [Assignment(b) for b in builders]
    groups: dict[str, list[Variant]] = {}
    for v in plan.variants:
        groups.setdefault(torch_key(v), []).append(v)

    def fits(b: Builder, v: Variant) -> bool:
        needed = needed_features(v)
        return v.system in b.systems and b.max_jobs > 0 and needed <= b.features and not b.mandatory

    def own_items(group: list[Variant]) -> list[Item]:
        seen: dict[tuple[str, str], Item] = {}
        for v in group:
            for it in plan.chain(v):
                seen.setdefault((it.kind, it.key), it)
        return list(seen.values())

    sized = sorted(groups.values(), key=lambda g: -sum(it.hours for it in own_items(g)))
    for group in sized:
        candidates = [a for a in out if fits(a.builder, group[0])]
        if not candidates:
            raise _reject(file, group[0], builders)
        needed = own_items(group)

        def finish(a: Assignment, needed: list[Item] = needed) -> float:
            have = {(it.kind, it.key) for it in a.items}
            extra = sum(it.hours for it in needed if (it.kind, it.key) not in have)
            return (sum(it.hours for it in a.items) + extra) / a.builder.speed

        best = min(candidates, key=finish)
        have = {(it.kind, it.key) for it in best.items}
        best.items.extend(it for it in needed if (it.kind, it.key) not in have)
        best.variants.extend(group)
    order = {v.name: i for i, v in enumerate(plan.variants)}
    for a in out:
        a.variants.sort(key=lambda v: order[v.name])
    return out


# --------------------------------------------------------------------------------------------------------
# Output


def plan_json(plan: Plan, run: LocalRun, assignments: list[Assignment] | None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "variants": [v.name for v in plan.variants],
        "weights": {toml_key(f.name): getattr(plan.weights, f.name) for f in fields(Weights)},
        "items": [it.to_json() for it in plan.items],
        "totals": {
            "items": len(plan.items),
            "torchBuilds": sum(1 for it in plan.items if it.kind == "torch"),
            "torchWheels": sum(1 for it in plan.items if it.kind == "torch-wheel"),
            "hours": round(plan.total_hours, 3),
            "diskGb": round(plan.total_disk_gb, 3),
        },
        "perVariant": {
            v.name: {
                "hours": round(plan.variant_hours(v), 3),
                "ciTimeoutMinutes": ci_timeout_minutes(plan, v),
            }
            for v in plan.variants
        },
        "local": {
            "cores": run.cores,
            "maxJobs": run.max_jobs,
            "coresPerJob": run.cores_per_job,
            "hours": round(run.hours, 3),
            "command": run.command,
        },
    }
    if assignments is not None:
        data["builders"] = [
            {
                "uri": a.builder.uri,
                "where": a.builder.where,
                "speedFactor": a.builder.speed,
                "variants": [v.name for v in a.variants],
                "hours": round(a.hours, 3),
                "command": a.command() if a.variants else None,
            }
            for a in assignments
        ]
    return data


def _print_human(plan: Plan, run: LocalRun, assignments: list[Assignment] | None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    w = plan.weights
    table = Table(title=f"What to build (hours on a {w.reference_cores}-core builder)")
    table.add_column("kind", no_wrap=True)
    table.add_column("key", overflow="fold")
    table.add_column("variants", overflow="fold")
    table.add_column("hours", justify="right")
    table.add_column("disk GB", justify="right")
    table.add_column("builder needs", overflow="fold")
    for it in plan.items:
        shown = ", ".join(it.variants) if len(it.variants) <= 3 else f"{len(it.variants)} variants"
        table.add_row(it.kind, it.key, shown, f"{it.hours:.2f}", f"{it.disk_gb:.0f}", ", ".join(it.features))
    table.add_row(
        "total", f"{len(plan.items)} items", "", f"{plan.total_hours:.1f}", f"{plan.total_disk_gb:.0f}", ""
    )
    console.print(table)
    unpacked = sum(1 for it in plan.items if it.kind == "torch-wheel")
    wheels = f" and {unpacked} torch wheel(s) to patch" if unpacked else ""
    click.echo(
        f"{len(plan.variants)} variants, {sum(1 for it in plan.items if it.kind == 'torch')} torch builds"
        f"{wheels}; "
        f"on one {run.cores}-core builder about {run.hours:.1f} h "
        f"({run.max_jobs} build(s) at once, {run.cores_per_job} cores each):"
    )
    click.echo(f"  {run.command}")
    if assignments is None:
        return
    btable = Table(title="Builders (hours over each one's speed factor)")
    btable.add_column("builder", overflow="fold")
    btable.add_column("speed", justify="right")
    btable.add_column("variants", overflow="fold")
    btable.add_column("est. hours", justify="right")
    for a in assignments:
        btable.add_row(
            a.builder.uri,
            f"{a.builder.speed:g}",
            ", ".join(v.name for v in a.variants) or "-",
            f"{a.hours:.1f}",
        )
    console.print(btable)
    for a in assignments:
        if a.variants:
            click.echo(f"# {a.builder.uri} ({a.builder.where})")
            click.echo(a.command())


@click.command("plan")
@click.argument("variants", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON (for scripts).")
@click.option(
    "--builders",
    "builders_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Nix machines file (nix.conf `builders` format) to spread the variants over.",
)
@click.option(
    "--cores",
    type=NixUInt(),
    default=16,
    show_default=True,
    help="Cores of the local builder the time estimate and `nix build` flags are for.",
)
@click.pass_obj
def plan(obj: Any, variants: tuple[str, ...], as_json: bool, builders_file: Path | None, cores: int) -> None:
    """Estimate building VARIANTS (default: all): the distinct torch builds, the CUDA libraries per
    nixpkgs instance, per-variant derivations and shared wheels, with hours and disk from matrix.toml's
    [plan] weights, and the `nix build` command line for a builder of --cores cores.

    With --builders FILE, assign the variants to the machines listed there (balancing estimated hours
    over each machine's speed factor, keeping variants that share a torch build together, honouring its
    systems and supported features: torch needs big-parallel, and torch with torchvision the ISA's
    gccarch-<march>, e.g. gccarch-x86-64-v4 for avx512) and print one command per machine:

    \b
      nix build --builders 'LINE' --max-jobs 0 --option builders-use-substitutes true .#a .#b

    `--builders` with `--max-jobs 0` is Nix's remote-build mechanism: evaluation stays here, every
    derivation is built on that machine, which fetches what it can from your substituters
    (builders-use-substitutes) and sends the results back into the local store. It needs you to be a
    trusted user of the local Nix daemon (or the same line in nix.conf's `builders`). `--store
    ssh-ng://host` would leave the results on the remote machine instead.
    """
    try:
        spec = obj.spec
        the_plan = make_plan(spec, variants)
        run = local_run(the_plan, cores)
        assignments = None
        if builders_file is not None:
            assignments = assign(the_plan, read_machines(builders_file), str(builders_file))
    except UserError as err:
        click.echo(f"sglang-matrix: {err}", err=True)
        sys.exit(err.exit_code)
    if as_json:
        try:  # every number is finite by the bounds on the spec and machines file; JSON has no Infinity
            click.echo(json.dumps(plan_json(the_plan, run, assignments), indent=2, allow_nan=False))
        except ValueError as err:
            click.echo(f"sglang-matrix: plan: a figure is not finite ({err})", err=True)
            sys.exit(2)
    else:
        _print_human(the_plan, run, assignments)
