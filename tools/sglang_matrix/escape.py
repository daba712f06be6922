"""One escaping function per target language of the generated files: Nix (strings, attribute names,
comments), Markdown (text and code spans, in table cells or not) and YAML (scalars).

Each returns an `Escaped` string, and the template environment (render.environment) refuses to print
anything else: a value that reaches a generated file without passing through one of these is an error at
render time, not a file that fails to parse. The spec package already rejects control characters, so
the escapes below for them are a second line of defence, not the first.
"""

from __future__ import annotations

import re


class Escaped(str):
    """Text already escaped for the file it is printed into."""


def _visible(ch: str) -> str:
    """A non-printable character as a visible escape (\\x1b, \\u2028, \\U0001f600)."""
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def one_line(text: str) -> str:
    """Printable characters kept, every other one (newlines, controls, separators) as a visible escape."""
    return "".join(ch if ch.isprintable() else _visible(ch) for ch in text)


# ------------------------------------------------------------------------------------------------ Nix

# Nix's lexer (src/libexpr/lexer.l): an identifier is [a-zA-Z_][a-zA-Z0-9_'-]*, less the keywords.
_NIX_ID = re.compile(r"\A[A-Za-z_][A-Za-z0-9_'-]*\Z")
_NIX_KEYWORDS = frozenset(("if", "then", "else", "assert", "with", "let", "in", "rec", "inherit", "or"))
_NIX_STRING_ESCAPES = {"\\": "\\\\", '"': '\\"', "$": "\\$", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
# A path literal's characters (lexer.l PATH_CHAR).
_NIX_PATH_PART = re.compile(r"\A[A-Za-z0-9._+-]+\Z")


def nix_string(value: str) -> Escaped:
    """A Nix double-quoted string literal that evaluates to `value`.

    Every `$` is escaped (`\\$`), so no `${` can start an interpolation whatever follows it. Nix strings
    cannot hold NUL (they are C strings underneath): that is an error."""
    text = str(value)
    if "\0" in text:
        raise ValueError(f"{text!r}: a Nix string cannot hold a NUL character")
    return Escaped('"' + "".join(_NIX_STRING_ESCAPES.get(ch, ch) for ch in text) + '"')


def nix_attr(value: str) -> Escaped:
    """A Nix attribute name: bare where the lexer reads it as one identifier, else a quoted string."""
    text = str(value)
    if _NIX_ID.match(text) and text not in _NIX_KEYWORDS:
        return Escaped(text)
    return nix_string(text)


def nix_path_part(value: str) -> Escaped:
    """One component of a Nix path literal (`./NAME.nix`). A path literal has no escapes: a name outside
    its characters is an error (the spec's names never are)."""
    text = str(value)
    if not _NIX_PATH_PART.match(text) or text in (".", ".."):
        raise ValueError(f"{text!r}: not usable in a Nix path literal")
    return Escaped(text)


def nix_comment(value: str) -> Escaped:
    """Text inside a `#` comment: a comment ends at the line's end (\\n or \\r), so the text stays on one
    line; every printable character is safe there."""
    return Escaped(one_line(str(value)))


# ------------------------------------------------------------------------------------------- Markdown

# Characters that start inline syntax (emphasis, code, links, HTML, tables, strikethrough, entities).
_MD_ESCAPES = {
    "\\": "\\\\",
    "`": "\\`",
    "*": "\\*",
    "[": "\\[",
    "]": "\\]",
    "|": "\\|",
    "~": "\\~",
    "<": "&lt;",
    ">": "&gt;",
    "&": "&amp;",
}


def md_text(value: str) -> Escaped:
    """Markdown inline text (GFM) that renders as `value`, also inside a table cell: one line, no markup,
    no raw HTML (so no marker comment can appear in it), pipes escaped.

    `_` is escaped unless it sits between two letters or digits: an intraword underscore cannot open or
    close emphasis (CommonMark's flanking rules), and names like armv8_2 stay as they are written."""
    text = one_line(str(value))
    out = []
    for i, ch in enumerate(text):
        if ch == "_":
            inner = 0 < i < len(text) - 1 and text[i - 1].isalnum() and text[i + 1].isalnum()
            out.append("_" if inner else "\\_")
        elif ch == "#" and i == 0:
            out.append("\\#")
        else:
            out.append(_MD_ESCAPES.get(ch, ch))
    return Escaped("".join(out))


def md_code(value: str) -> Escaped:
    """A Markdown code span showing `value` literally: a fence of more backticks than any run inside, and
    `|` escaped (GFM splits table cells on it even inside code spans and drops the backslash)."""
    text = one_line(str(value)).replace("|", "\\|")
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith(("`", " ")) or text.endswith(("`", " ")) else ""
    return Escaped(f"{fence}{pad}{text}{pad}{fence}")


# ----------------------------------------------------------------------------------------------- YAML

# A plain scalar that every YAML 1.1 and 1.2 reader takes as this very string (not a bool, null or number).
_YAML_PLAIN = re.compile(r"\A[A-Za-z_][A-Za-z0-9_.-]*\Z")
_YAML_SPECIAL = frozenset(
    ["y", "yes", "n", "no", "on", "off", "true", "false", "null", "nan", "inf"]
)  # YAML 1.1's booleans and null, compared lower-cased
_YAML_ESCAPES = {"\\": "\\\\", '"': '\\"'}


def yaml_scalar(value: str) -> Escaped:
    """A YAML scalar that reads back as the string `value`: plain where that is unambiguous, else
    double-quoted with every non-printable character escaped (\\x, \\u, \\U are YAML escapes too)."""
    text = str(value)
    if _YAML_PLAIN.match(text) and text.lower() not in _YAML_SPECIAL:
        return Escaped(text)
    body = "".join(_YAML_ESCAPES.get(ch, ch) if ch.isprintable() else _visible(ch) for ch in text)
    return Escaped(f'"{body}"')


FILTERS = {
    "nix_string": nix_string,
    "nix_attr": nix_attr,
    "nix_path_part": nix_path_part,
    "nix_comment": nix_comment,
    "md_text": md_text,
    "md_code": md_code,
    "yaml_scalar": yaml_scalar,
}
