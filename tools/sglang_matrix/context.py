"""What every `sglang-matrix` subcommand shares: the project context and one-line errors.

Its own module so that subcommand modules import it, and `cli` imports them, without a circle.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from .errors import UserError
from .fsutil import SPEC_NAME, find_root
from .spec import Spec, load_spec

F = TypeVar("F", bound=Callable[..., Any])
err_console = Console(stderr=True)


def one_line_errors(func: F) -> F:
    """Bad input becomes one line on stderr and exit code 2, never a traceback."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except UserError as err:
            click.echo(f"sglang-matrix: {err}", err=True)
            sys.exit(err.exit_code)

    return wrapper  # type: ignore[return-value]


class Context:
    def __init__(self, root: Path | None, spec_path: Path | None) -> None:
        self._root = root
        self._spec_path = spec_path
        self._spec: Spec | None = None

    @property
    def root(self) -> Path:
        if self._root is None:
            self._root = self._spec_path.resolve().parent if self._spec_path else find_root()
        return self._root

    def reload(self) -> None:
        self._spec = None

    @property
    def spec(self) -> Spec:
        if self._spec is None:
            self._spec = load_spec(self._spec_path or self.root / SPEC_NAME)
        return self._spec


pass_ctx = click.make_pass_decorator(Context)


def progress_bar(quiet: bool) -> Progress:
    """The bar long commands show on stderr: off for --json and when stderr is not a terminal."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=err_console,
        transient=True,
        disable=quiet or not err_console.is_terminal,
    )
