"""The rehearsal's outcome: for people (rich) and for scripts (JSON)."""

from __future__ import annotations

from dataclasses import dataclass

from packaging.utils import canonicalize_name
from rich.console import Console
from rich.table import Table

from ..variants import Variant
from .checks import CheckResult
from .closure import BUILT_FROM_SOURCE, Closure
from .env import Environment

MARK = {"pass": "[green]pass[/]", "fail": "[red]FAIL[/]", "skip": "[yellow]skip[/]"}


@dataclass
class Rehearsal:
    variant: Variant
    closure: Closure
    env: Environment
    checks: list[CheckResult]
    dependency_only: dict[str, list[str]]
    seconds: float

    @property
    def dropped_present(self) -> dict[str, str]:
        """Distributions the spec drops that are in the environment anyway (through a dependency)."""
        present = {canonicalize_name(n): n for n in self.env.distributions}
        return {present[name]: reason for name, reason in self.closure.dropped.items() if name in present}

    @property
    def ok(self) -> bool:
        return all(c.status != "fail" for c in self.checks)

    def stand_ins_used(self) -> dict[str, str]:
        used: dict[str, str] = {}
        for check in self.checks:
            used.update(check.stand_ins)
        return used

    def torch_abi_stand_ins_used(self) -> dict[str, str]:
        used: dict[str, str] = {}
        for check in self.checks:
            used.update(check.torch_abi_stand_ins)
        return used

    def to_json(self) -> dict[str, object]:
        return {
            "variant": self.variant.name,
            "ok": self.ok,
            "seconds": self.seconds,
            "closure": self.closure.key,
            "environment": self.env.to_json(),
            "requirements": [
                {
                    "name": r.attr,
                    "nixpkgs": r.specifier,
                    "source": r.source,
                    "wanted_by": list(r.wanted_by),
                }
                for r in self.closure.requirements
            ],
            "wheels": [
                {"attr": w.attr, "file": w.filename, "pruned": list(w.pruned)} for w in self.closure.wheels
            ],
            "distributions": {n: d["version"] for n, d in sorted(self.env.distributions.items())},
            "dependency_only": self.dependency_only,
            "dropped_present": self.dropped_present,
            "gpu_stand_ins": self.stand_ins_used(),
            "torch_abi_stand_ins": self.torch_abi_stand_ins_used(),
            "checks": [c.to_json() for c in self.checks],
        }


def _chain(entry: dict) -> str:
    hops = [f"{c['file']}:{c['line']}" for c in entry.get("chain", [])]
    return " → ".join(hops)


def print_report(out: Console, r: Rehearsal) -> None:
    out.print(f"[bold]Rehearsal of {r.variant.name}[/] ({r.variant.long_name}), closure {r.closure.key}")
    out.print(f"environment: {r.env.root}{' (reused)' if r.env.reused else ''}")
    stand = Table(title="What stands in for what (this is a rehearsal, not the build)", show_lines=False)
    for col in ("part", "the variant has", "the rehearsal has", "why"):
        stand.add_column(col, overflow="fold")
    for s in r.env.stand_ins:
        stand.add_row(s.what, s.variant_has, s.rehearsal_has, s.why)
    for module, why in r.stand_ins_used().items():
        stand.add_row(module, "the real module, on a GPU", "a stand-in that records the skip", why)
    line_torch = r.env.torch.line_version if r.env.torch else "the line's torch"
    for module, why in r.torch_abi_stand_ins_used().items():
        real = f"the real module, loaded beside torch {line_torch}"
        stand.add_row(module, real, "a stand-in that records the skip", why)
    out.print(stand)
    for missing in r.env.missing:
        out.print(f"[yellow]not in the rehearsal:[/] {missing}")
    loose = [
        q.attr
        for q in r.closure.requirements
        if not q.specifier.startswith("==") and q.attr not in BUILT_FROM_SOURCE
    ]
    if loose:
        out.print(f"nixpkgs' version not settled (the newest release in its range taken): {', '.join(loose)}")
    if r.dependency_only:
        out.print(f"came in only as dependencies ({len(r.dependency_only)}): " + ", ".join(r.dependency_only))
    for name, reason in r.dropped_present.items():
        out.print(f"[yellow]dropped by the spec but present through a dependency:[/] {name} ({reason})")
    if r.env.pip_check:
        out.print(
            f"pip check ({len(r.env.pip_check)}; nixpkgs relaxes pins too): " + "; ".join(r.env.pip_check[:8])
        )
    table = Table(title="Checks")
    for col in ("check", "stands for", "result", "seconds"):
        table.add_column(col, overflow="fold")
    for c in r.checks:
        table.add_row(c.name, c.what, MARK[c.status], f"{c.seconds:.1f}")
    out.print(table)
    for c in r.checks:
        for note in c.notes:
            out.print(f"  {c.name}: {note}")
        for entry in c.details:
            if entry.get("ok") is False or (c.status == "fail" and "exit_code" in entry):
                what = entry.get("module", c.name)
                out.print(
                    f"  [red]{what}[/]: {entry.get('cause') or entry.get('error') or entry.get('stderr', '')}"
                )
                if entry.get("missing"):
                    name = canonicalize_name(entry["missing"].split(".")[0])
                    reason = r.closure.dropped.get(name)
                    out.print(
                        f"    missing module {entry['missing']}"
                        + (f" (dropped in the spec: {reason})" if reason else "")
                    )
                if entry.get("chain"):
                    out.print(f"    import chain: {_chain(entry)}")
    verdict = "[green]passed[/]" if r.ok else "[red]failed[/]"
    out.print(f"rehearsal {verdict} in {r.seconds:.0f} s")
