"""`lock --upgrade NAME==VERSION`: change one wheel's version in matrix.toml, keeping the file's layout."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from .errors import UserError
from .fsutil import write_atomic
from .spec import key, load_spec


def upgrade_spec(path: Path, requirement: str, line_name: str | None) -> str:
    """Set the version of one wheel; return its (canonical) attribute name. The spec is validated first."""
    try:
        req = Requirement(requirement)
    except InvalidRequirement:
        raise UserError(f"--upgrade {requirement!r}: expected NAME==VERSION") from None
    specs = list(req.specifier)
    if len(specs) != 1 or specs[0].operator != "==" or "*" in specs[0].version:
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
    header = re.compile(
        r"^\[lines\.(?:\""
        + re.escape(holders[0])
        + r"\"|"
        + re.escape(holders[0])
        + r")\.wheels\."
        + re.escape(name)
        + r"\]\s*$",
        re.M,
    )
    match = header.search(text)
    if match is None:
        raise UserError(f"{path.name}: cannot find the table [lines.{key(holders[0])}.wheels.{name}] to edit")
    section_end = re.compile(r"^\[", re.M).search(text, match.end())
    end = section_end.start() if section_end else len(text)
    version_line = re.compile(r'^version\s*=\s*"[^"]*"', re.M)
    found = version_line.search(text, match.end(), end)
    if found is None:
        raise UserError(f"{path.name}: [lines.{key(holders[0])}.wheels.{name}] has no version line to edit")
    new_text = text[: found.start()] + f'version = "{version}"' + text[found.end() :]
    tomllib.loads(new_text)  # still valid TOML
    write_atomic(path, new_text)
    try:
        load_spec(path)
    except UserError:
        write_atomic(path, text)
        raise
    return name
