"""What pruning leaves out of a variant, and how many bytes that saves.

The rules live in matrix.toml (a wheel's `keep-for`, its `[[prune]]` paths; `[build] prune-device-code`)
and `resolve_variants` applies them. Sizes come from the wheels themselves: the unpacked size of every
member (a wheel's root is site-packages), read from the zip's directory without extracting anything.
`sglang-matrix lock` records them in pkgs/sources.json, so `show` can answer offline; `audit` and
`bench/closure` measure the real files.
"""

from __future__ import annotations

import fnmatch
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError
from .spec import Spec, Wheel
from .variants import Variant


def member_sizes(path: Path) -> dict[str, int]:
    """Unpacked size of every file in a wheel, by its path in the install tree."""
    try:
        with zipfile.ZipFile(path) as archive:
            return {info.filename: info.file_size for info in archive.infolist() if not info.is_dir()}
    except (OSError, zipfile.BadZipFile) as err:
        raise UserError(f"{path}: cannot read the wheel: {err}") from None


def matched_bytes(sizes: dict[str, int], pattern: str) -> int | None:
    """Bytes of the members a prune path covers (the path itself, a glob, or everything below it);
    None when it covers nothing (the wheel changed under the spec)."""
    hits = [
        size
        for name, size in sizes.items()
        if fnmatch.fnmatchcase(name, pattern)
        or any(
            fnmatch.fnmatchcase("/".join(name.split("/")[:depth]), pattern)
            for depth in range(1, name.count("/") + 1)
        )
    ]
    return sum(hits) if hits else None


def lock_sizes(wheel: Wheel, sizes: dict[str, int]) -> dict[str, object]:
    """What the lock records about a wheel's size: unpacked total and each prune path's share."""
    return {
        "unpacked": sum(sizes.values()),
        "prunable": {rule.path: matched_bytes(sizes, rule.path) for rule in wheel.prune},
    }


@dataclass(frozen=True)
class Saving:
    attr: str
    what: str  # "the whole wheel" or a prune path
    reason: str
    bytes: int | None  # None: size unknown (the wheel is not at hand)

    def to_json(self) -> dict[str, object]:
        return {"wheel": self.attr, "what": self.what, "reason": self.reason, "bytes": self.bytes}


# (attr, file name) -> the wheel's sizes as the lock records them ({"unpacked", "prunable"}), or None
SizeLookup = Callable[[str, str], dict | None]


def savings(spec: Spec, variant: Variant, sizes_of: SizeLookup) -> list[Saving]:
    """Everything pruning leaves out of a variant, with its size where known."""
    line = spec.lines[variant.line]
    out: list[Saving] = []
    if not spec.prune_device_code:
        return out
    for attr, wheel in line.wheels.items():
        filename = wheel.filename(variant.system, variant.python)
        if filename is None or not wheel.available(variant.system, variant.cuda):
            continue
        sizes = sizes_of(attr, filename)
        if attr not in variant.wheels:
            reason = f"its code runs only on {', '.join(wheel.keep_for)}"
            out.append(Saving(attr, "the whole wheel", reason, sizes.get("unpacked") if sizes else None))
            continue
        rules = {rule.path: rule for rule in wheel.prune}
        for path in variant.pruned.get(attr, ()):
            known = (sizes or {}).get("prunable") or {}
            out.append(Saving(attr, path, rules[path].reason, known.get(path)))
    return out


def lock_lookup(lock_wheels: dict[str, dict]) -> SizeLookup:
    def lookup(_attr: str, filename: str) -> dict | None:
        entry = lock_wheels.get(filename)
        if entry is None or entry.get("unpacked") is None:
            return None
        return {"unpacked": entry["unpacked"], "prunable": entry.get("prunable") or {}}

    return lookup


def wheel_lookup(spec: Spec, line_name: str, files: list[Path]) -> SizeLookup:
    """Sizes measured from wheel files at hand (matched by file name), where present."""
    line = spec.lines[line_name]
    by_name = {path.name: path for path in files if path.is_file()}

    def lookup(attr: str, filename: str) -> dict | None:
        path = by_name.get(filename)
        return lock_sizes(line.wheels[attr], member_sizes(path)) if path else None

    return lookup


def summary(spec: Spec, variant: Variant, sizes_of: SizeLookup) -> dict[str, object]:
    """The pruning part of `show --json` and `audit --json`."""
    saved = savings(spec, variant, sizes_of)
    done, unknown = total(saved)
    return {
        "enabled": spec.prune_device_code,
        "left_out": [s.to_json() for s in saved],
        "saved_bytes": done,
        "unknown": unknown,
    }


def total(saved: list[Saving]) -> tuple[int, list[str]]:
    """Bytes saved, and what could not be sized."""
    return (
        sum(s.bytes for s in saved if s.bytes is not None),
        [f"{s.attr}: {s.what}" for s in saved if s.bytes is None],
    )
