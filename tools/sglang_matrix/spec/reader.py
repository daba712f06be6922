"""Typed reading of the parsed TOML (every problem a SpecError naming file, field and value), and the
checks that apply to text anywhere in the spec."""

from __future__ import annotations

import re
import tomllib
from typing import Any

from ..errors import SpecError
from .schema import PROVIDER_SPECIALS, SYSTEMS, key


class Reader:
    """Typed access to the parsed TOML that turns every problem into a SpecError."""

    def __init__(self, file: str) -> None:
        self.file = file

    def fail(self, path: str, value: object, problem: str) -> SpecError:
        return SpecError(self.file, path, value, problem)

    def table(self, data: dict[str, Any], name: str, path: str, required: bool = True) -> dict[str, Any]:
        here = f"{path}.{key(name)}" if path else key(name)
        if name not in data:
            if required:
                raise self.fail(here, "<missing>", "required table is missing")
            return {}
        value = data[name]
        if not isinstance(value, dict):
            raise self.fail(here, value, "must be a table")
        return value

    def string(
        self, data: dict[str, Any], name: str, path: str, default: str | None = None, required: bool = True
    ) -> str:
        here = f"{path}.{key(name)}"
        if name not in data:
            if default is not None or not required:
                return default if default is not None else ""
            raise self.fail(here, "<missing>", "required field is missing")
        value = data[name]
        if not isinstance(value, str) or not value:
            raise self.fail(here, value, "must be a non-empty string")
        return value

    def strings(self, data: dict[str, Any], name: str, path: str, required: bool = True) -> tuple[str, ...]:
        here = f"{path}.{key(name)}"
        if name not in data:
            if required:
                raise self.fail(here, "<missing>", "required list is missing")
            return ()
        value = data[name]
        if not isinstance(value, list):
            raise self.fail(here, value, "must be a list of strings")
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item:
                raise self.fail(f"{here}[{i}]", item, "must be a non-empty string")
        return tuple(value)

    def systems(self, data: dict[str, Any], name: str, path: str, required: bool = True) -> tuple[str, ...]:
        """A list of Nix systems this project knows (`systems` of an ISA, a line or a prune rule)."""
        systems = self.strings(data, name, path, required)
        for i, system in enumerate(systems):
            if system not in SYSTEMS:
                raise self.fail(
                    f"{path}.{name}[{i}]", system, f"unknown system (known: {', '.join(SYSTEMS)})"
                )
        return systems

    def tables(self, data: dict[str, Any], name: str, path: str) -> list[dict[str, Any]]:
        """An optional array of tables ([[path.name]])."""
        raw = data.get(name, [])
        if not isinstance(raw, list) or not all(isinstance(e, dict) for e in raw):
            raise self.fail(f"{path}.{key(name)}", raw, f"must be an array of tables ([[...{name}]])")
        return raw

    def only(self, data: dict[str, Any], path: str, allowed: tuple[str, ...]) -> None:
        """Reject keys this table does not have: a misspelt key must not be ignored silently."""
        for name in data:
            if name not in allowed:
                here = f"{path}.{key(name)}" if path else key(name)
                raise self.fail(here, data[name], f"unknown field (known: {', '.join(allowed)})")

    def one_or_more(self, data: dict[str, Any], name: str, path: str) -> tuple[str, ...]:
        """A field that is one string or a non-empty list of strings."""
        if isinstance(data.get(name), str):
            return (self.string(data, name, path),)
        values = self.strings(data, name, path)
        if not values:
            raise self.fail(f"{path}.{key(name)}", [], "must not be empty")
        return values

    @staticmethod
    def item(path: str, name: str, index: int, values: tuple[str, ...]) -> str:
        """The field path of one value of a one_or_more field: `x.python` or `x.python[1]`."""
        return f"{path}.{key(name)}" if len(values) == 1 else f"{path}.{key(name)}[{index}]"

    def string_map(self, data: dict[str, Any], name: str, path: str) -> dict[str, str]:
        value = self.table(data, name, path, required=False)
        here = f"{path}.{key(name)}"
        for k, v in value.items():
            if not isinstance(v, str) or not v:
                raise self.fail(f"{here}.{key(k)}", v, "must be a non-empty string")
        return dict(value)

    def boolean(self, data: dict[str, Any], name: str, path: str, default: bool) -> bool:
        value = data.get(name, default)
        if not isinstance(value, bool):
            raise self.fail(f"{path}.{key(name)}", value, "must be true or false")
        return value


def toml_excerpt(text: str, err: tomllib.TOMLDecodeError) -> str:
    lineno = getattr(err, "lineno", None)
    if lineno and 0 < lineno <= len(text.splitlines()):
        return text.splitlines()[lineno - 1].strip()
    return ""


def check_text(r: Reader, value: object, path: str) -> None:
    """Every key and string of the spec is printable text on one line: no control characters (newline,
    tab, escape, NUL), line or paragraph separators, format characters, or spaces other than ' '. Such
    characters would reach file names, Nix strings and comments, the README and the workflow."""
    stack: list[tuple[str, object]] = [(path, value)]
    while stack:
        here, item = stack.pop()
        if isinstance(item, dict):
            for name, child in reversed(item.items()):
                where = f"{here}.{key(name)}" if here else key(name)
                if not name.isprintable():
                    raise r.fail(where, name, "a key must be printable text on one line (no controls)")
                stack.append((where, child))
        elif isinstance(item, list):
            stack.extend((f"{here}[{i}]", child) for i, child in reversed(list(enumerate(item))))
        elif isinstance(item, str) and not item.isprintable():
            raise r.fail(here, item, "must be printable text on one line (no control characters)")


def check_provider(r: Reader, path: str, value: str) -> None:
    if value in PROVIDER_SPECIALS:
        return
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_'-]*(\.[A-Za-z_][A-Za-z0-9_'-]*)*", value):
        raise r.fail(path, value, 'must be a nixpkgs attribute path, "glibc" or "driver"')
