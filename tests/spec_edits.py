"""Helpers for tests that write cut-down copies of matrix.toml."""

from __future__ import annotations

import json
import re


def set_line_fields(text: str, **fields: object) -> str:
    """matrix.toml's text with fields of the release line's own table ([lines."0.5.9"]) set to JSON values."""
    start = text.index('[lines."0.5.9"]\n')
    end = text.index("\n[", start + 1)
    table = text[start:end]
    for name, value in fields.items():
        table, n = re.subn(rf"(?m)^{name} = .*$", f"{name} = {json.dumps(value)}", table)
        assert n == 1, f'matrix.toml: no {name} in [lines."0.5.9"]'
    return text[:start] + table + text[end:]
