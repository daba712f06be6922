"""Errors that the CLI reports as one line and exit code 2 (bad input), never as a traceback."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: reported as one line, exit code 2."""

    exit_code = 2


class SpecError(UserError):
    """A problem in the matrix spec, naming the file, the field and the value."""

    def __init__(self, file: str, field: str, value: object, problem: str) -> None:
        self.file = file
        self.field = field
        self.value = value
        self.problem = problem
        super().__init__(f"{file}: {field} = {value!r}: {problem}")
