"""`lock --upgrade NAME==VERSION`: change one wheel's version in matrix.toml, keeping the file's layout."""

from __future__ import annotations

import re
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from .errors import UserError
from .spec import key, load_spec, load_spec_text


def plan_upgrade(path: Path, requirement: str, line_name: str | None) -> tuple[str, str]:
    """The spec's new text with one wheel's version set, validated in memory, and the wheel's canonical
    attribute name: (name, new text). Writes nothing: `lock --upgrade` writes the spec and the lock
    together once every wheel is downloaded and hashed."""
    try:
        req = Requirement(requirement)
    except InvalidRequirement:
        raise UserError(f"--upgrade {requirement!r}: expected NAME==VERSION") from None
    specs = list(req.specifier)
    if len(specs) != 1 or specs[0].operator != "==" or "*" in specs[0].version or req.marker or req.extras:
        raise UserError(f"--upgrade {requirement!r}: expected NAME==VERSION")
    version = specs[0].version
    name = canonicalize_name(req.name)
    spec = load_spec(path)
    holders = [n for n, line in spec.lines.items() if name in line.wheels]
    if line_name is not None:
        if line_name not in holders:
            raise UserError(f"{path.name}: lines.{key(line_name)}.wheels has no {name}")
        holders = [line_name]
    if not holders:
        raise UserError(f"{path.name}: no release line has a wheel named {name}")
    if len(holders) > 1:
        raise UserError(f"{path.name}: {name} is in lines {', '.join(holders)}; pick one with --line")
    if spec.lines[holders[0]].wheels[name].url:
        raise UserError(
            f"{path.name}: lines.{key(holders[0])}.wheels.{name} is fetched by URL: change its version, url "
            "and hash together by hand, then run `sglang-matrix lock`"
        )
    text = path.read_text(encoding="utf-8")

    def quoted_or_bare(part: str) -> str:
        return r"(?:\"" + re.escape(part) + r"\"|" + re.escape(part) + ")"

    header = re.compile(
        r"^\[[ \t]*lines[ \t]*\.[ \t]*"
        + quoted_or_bare(holders[0])
        + r"[ \t]*\.[ \t]*wheels[ \t]*\.[ \t]*"
        + quoted_or_bare(name)
        + r"[ \t]*\][ \t]*(?:#[^\n]*)?$",
        re.M,
    )
    match = header.search(text)
    if match is None:
        raise UserError(f"{path.name}: cannot find the table [lines.{key(holders[0])}.wheels.{name}] to edit")
    section_end = re.compile(r"^[ \t]*\[", re.M).search(text, match.end())
    end = section_end.start() if section_end else len(text)
    version_line = re.compile(r'^([ \t]*version[ \t]*=[ \t]*)"[^"\n]*"', re.M)
    found = version_line.search(text, match.end(), end)
    if found is None:
        raise UserError(f"{path.name}: [lines.{key(holders[0])}.wheels.{name}] has no version line to edit")
    new_text = text[: found.start()] + f'{found.group(1)}"{version}"' + text[found.end() :]
    new_spec = load_spec_text(new_text, path)  # the whole spec, valid with the new version
    if new_spec.lines[holders[0]].wheels[name].version != version:
        raise UserError(f"{path.name}: [lines.{key(holders[0])}.wheels.{name}]: could not set the version")
    return name, new_text
