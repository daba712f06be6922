"""Small file helpers: atomic writes, the repository root, the cache directory."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import UserError

SPEC_NAME = "matrix.toml"


def write_atomic(path: Path, text: str) -> bool:
    """Write text to path through a temp file and a rename; return False when it was already so."""
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def find_root(start: Path | None = None) -> Path:
    """The nearest directory at or above `start` that holds matrix.toml."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / SPEC_NAME).is_file():
            return candidate
    raise UserError(f"{SPEC_NAME}: not found in {here} or any parent directory (use --root)")


def cache_dir(*parts: str) -> Path:
    base = os.environ.get("SGLANG_MATRIX_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "sglang-matrix"
    )
    return Path(base, *parts)
