"""The shared-library check: each DT_NEEDED SONAME mapped to its provider, against the spec's `libraries`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from sglang_matrix.audit.elf import ElfInfo
from sglang_matrix.audit.findings import AuditEnv, Finding
from sglang_matrix.audit.sharedlibs import SharedLibReport
from sglang_matrix.spec import PROVIDER_SPECIALS, Spec, Wheel


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
    elf_objects: list[ElfInfo] = field(default_factory=list)  # in archive order

    def to_json(self) -> dict[str, Any]:
        return {
            "objects": self.objects,
            "elf_objects": [_elf_json(obj) for obj in self.elf_objects],
            "needed": [u.to_json() for u in self.needed],
            "declared": self.declared,
            "providers": self.providers,
            "missing": self.missing,
            "surplus": self.surplus,
            "unmapped": self.unmapped,
            "cannot_load": [{"object": o, "reason": r} for o, r in self.cannot_load],
        }


def _elf_json(obj: ElfInfo) -> dict[str, Any]:
    """One host ELF object as `--json` shows it: DT_NEEDED in the object's own order."""
    return {
        "path": obj.name,
        "size": obj.size,
        "machine": obj.machine,
        "class": obj.elf_class,
        "type": obj.elf_type,
        "soname": obj.soname,
        "needed": list(obj.needed),
        "rpath": obj.rpath,
        "runpath": obj.runpath,
        "cpython": None if obj.cpython is None else str(obj.cpython),
        "fatbin_bytes": obj.fatbin_size,
    }


def check_libraries(
    libs: SharedLibReport, spec: Spec, env: AuditEnv, wheel: Wheel | None, findings: list[Finding]
) -> LibraryCheck:
    # Bundled means a member whose *file name* is the needed name: autoPatchelf (nixpkgs' auto-patchelf.py,
    # populate_cache) indexes libraries by file name, not DT_SONAME. An auditwheel-renamed copy
    # (torchvision.libs/libcudart.faf08d9a.so.13, DT_SONAME libcudart.so.13) does not satisfy an object
    # that needs plain libcudart.so.13 (torchvision/_C_stable.so): that one must come from `libraries`.
    own = {PurePosixPath(obj.name).name for obj in libs.objects}
    renamed = {obj.soname: obj.name for obj in libs.objects if obj.soname and obj.soname not in own}
    uses: list[SonameUse] = []
    providers: set[str] = set()
    unmapped: list[str] = []
    for soname, objects in libs.needed_by().items():
        if soname in own:
            uses.append(SonameUse(soname, None, True, objects))
            continue
        if soname in renamed:
            findings.append(
                Finding(
                    "info",
                    "libraries",
                    f"{soname} (needed by {_objects(objects)}) is in the wheel only as {renamed[soname]}, "
                    "a file of another name, which autoPatchelf does not look up: it comes from outside",
                )
            )
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
        elf_objects=list(libs.objects),
    )


def _objects(paths: list[str], limit: int = 3) -> str:
    names = [PurePosixPath(p).name for p in paths]
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"
