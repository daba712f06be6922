"""`shared-libs`: every DT_NEEDED of the closure's shared objects resolves inside the closure."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..audit import AuditError
from ..audit.elf import ElfInfo, is_elf, parse_elf
from .model import DRIVER_SONAMES, Check, failed, passed


def is_so_name(name: str) -> bool:
    return name.endswith(".so") or ".so." in name


def system_library_dirs() -> list[Path]:
    """The dynamic loader's default directories on this host (and /etc/ld.so.conf.d entries)."""
    arch = platform.machine()
    dirs = [
        f"/lib/{arch}-linux-gnu",
        f"/usr/lib/{arch}-linux-gnu",
        "/lib64",
        "/usr/lib64",
        "/lib",
        "/usr/lib",
    ]
    conf = Path("/etc/ld.so.conf.d")
    if conf.is_dir():
        for file in sorted(conf.glob("*.conf")):
            try:
                lines = file.read_text(encoding="utf-8", errors="replace").splitlines()
            except OSError:
                continue
            dirs += [line.strip() for line in lines if line.strip().startswith("/")]
    out: list[Path] = []
    for d in dict.fromkeys(dirs):
        if Path(d).is_dir():
            out.append(Path(d))
    return out


@dataclass
class Closure:
    """The files a RESULT may load from, and the shared objects to check."""

    mode: str
    """"nix" or "approximated"."""
    description: str
    objects: list[Path] = field(default_factory=list)
    by_name: dict[str, list[Path]] = field(default_factory=dict)
    files: set[str] = field(default_factory=set)
    """Real paths of every file in the closure."""
    system_dirs: list[Path] = field(default_factory=list)
    short: str = ""
    """One phrase for a check's reason (the description has the directories)."""

    def add_file(self, path: Path, check: bool) -> None:
        real = os.path.realpath(path)
        if not os.path.isfile(real):
            return
        self.files.add(real)
        if is_so_name(path.name):
            self.by_name.setdefault(path.name, []).append(path)
            if check:
                self.objects.append(path)

    def contains(self, path: Path) -> bool:
        real = os.path.realpath(path)
        if real in self.files:
            return True
        return os.path.isfile(real) and any(path.parent == d for d in self.system_dirs)

    def walk(self, top: Path, *, follow: bool, check: bool) -> None:
        """Every file under `top` (following symlinked directories when `follow`)."""
        seen_dirs: set[str] = set()
        seen_objects: set[str] = {os.path.realpath(o) for o in self.objects}
        if top.is_file():
            self.add_file(top, check=False)
            return
        for dirpath, dirnames, filenames in os.walk(top, followlinks=follow):
            real = os.path.realpath(dirpath)
            if real in seen_dirs:
                dirnames[:] = []
                continue
            seen_dirs.add(real)
            for name in filenames:
                if not is_so_name(name):
                    continue
                path = Path(dirpath, name)
                is_object = check and (follow or not path.is_symlink())
                real_file = os.path.realpath(path)
                if is_object and real_file in seen_objects:
                    is_object = False
                if is_object:
                    seen_objects.add(real_file)
                self.add_file(path, check=is_object)


def nix_closure_paths(result: Path) -> list[Path] | None:
    """`nix-store -qR` of RESULT when it is a store path and nix-store is on PATH, else None."""
    real = Path(os.path.realpath(result))
    if not str(real).startswith("/nix/store/") or shutil.which("nix-store") is None:
        return None
    try:
        done = subprocess.run(
            ["nix-store", "-qR", str(real)], capture_output=True, text=True, timeout=300, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return [Path(line) for line in done.stdout.splitlines() if line.strip()]


def build_closure(
    result: Path,
    *,
    store_paths: list[Path] | None,
    prefix_dirs: Iterable[Path] = (),
    system_dirs: Iterable[Path] = (),
    why_approximated: str = "",
) -> Closure:
    if store_paths is not None:
        closure = Closure(
            "nix",
            f"nix: the closure of {os.path.realpath(result)} (nix-store -qR, {len(store_paths)} store paths)",
        )
        for path in store_paths:
            closure.walk(path, follow=False, check=True)
        return closure
    prefix_dirs = [d for d in prefix_dirs if d.is_dir()]
    system = list(system_dirs)
    parts = ["RESULT's tree (symlinks followed)"]
    if prefix_dirs:
        parts.append(f"the interpreter's prefix ({', '.join(str(d) for d in prefix_dirs)})")
    if system:
        parts.append(f"this host's system library directories ({', '.join(str(d) for d in system)})")
    why = why_approximated or "RESULT is not a Nix store path"
    closure = Closure(
        "approximated",
        f"closure approximated ({why}): " + ", ".join(parts),
        system_dirs=system,
        short=f"closure approximated, {why}: RESULT's tree, the interpreter's prefix and the system "
        "library directories",
    )
    closure.walk(result, follow=True, check=True)
    for d in prefix_dirs:
        for child in sorted(d.iterdir()):
            if child.is_file():
                closure.add_file(child, check=False)
    return closure


def _search_dirs(obj: Path, info: ElfInfo) -> list[Path]:
    raw = info.runpath if info.runpath is not None else info.rpath
    if not raw:
        return []
    origins = [str(obj.parent), os.path.dirname(os.path.realpath(obj))]
    out: list[Path] = []
    for entry in raw.split(":"):
        if not entry:
            continue
        if "$ORIGIN" in entry or "${ORIGIN}" in entry:
            for origin in origins:
                out.append(Path(entry.replace("${ORIGIN}", origin).replace("$ORIGIN", origin)))
        else:
            out.append(Path(entry))
    return list(dict.fromkeys(out))


def _resolves(closure: Closure, dirs: list[Path], soname: str) -> bool:
    """RUNPATH/RPATH directories first, then any closure object of that name, then system directories."""
    if "/" in soname:
        return closure.contains(Path(soname))
    if any((d / soname).exists() and closure.contains(d / soname) for d in dirs):
        return True
    if soname in closure.by_name:
        return True
    return any((d / soname).exists() for d in closure.system_dirs)


def resolve_needed(closure: Closure) -> tuple[int, dict[str, list[str]], list[str]]:
    """(objects checked, object -> unresolved SONAMEs, problems) over the closure's shared objects."""
    unresolved: dict[str, list[str]] = {}
    problems: list[str] = []
    checked = 0
    for obj in closure.objects:
        try:
            with obj.open("rb") as handle:
                head = handle.read(4)
            if not is_elf(head):
                continue
            info = parse_elf(obj.read_bytes(), str(obj))
        except OSError as err:
            problems.append(f"{obj}: cannot read: {err.strerror or err}")
            continue
        except AuditError as err:
            problems.append(str(err))
            continue
        if info.is_cuda or not info.has_dynamic or info.elf_type != "ET_DYN":
            continue
        checked += 1
        dirs = _search_dirs(obj, info)
        missing = [s for s in info.needed if s not in DRIVER_SONAMES and not _resolves(closure, dirs, s)]
        if missing:
            unresolved[str(obj)] = missing
    return checked, unresolved, problems


def check_shared_libs(closure: Closure) -> Check:
    cid, title = "shared-libs", "every DT_NEEDED resolves inside the closure (libcuda.so.1 excepted)"
    checked, unresolved, problems = resolve_needed(closure)
    details: dict[str, Any] = {"closure": closure.description, "objects": checked}
    if unresolved:
        details["unresolved"] = unresolved
    if problems:
        details["problems"] = problems
    note = f" ({closure.short})" if closure.mode == "approximated" else ""
    if unresolved:
        shown = "; ".join(f"{Path(o).name} ({', '.join(m)})" for o, m in list(unresolved.items())[:3])
        more = f"; and {len(unresolved) - 3} more" if len(unresolved) > 3 else ""
        return failed(
            cid,
            title,
            f"{len(unresolved)} of {checked} objects have unresolved DT_NEEDED: {shown}{more}{note}",
            details,
        )
    if problems:
        return failed(cid, title, f"{len(problems)} objects cannot be read: {problems[0]}{note}", details)
    if checked == 0:
        return failed(cid, title, f"no shared objects found{note}", details)
    return passed(cid, title, f"{checked} shared objects, all resolved{note}", details)
