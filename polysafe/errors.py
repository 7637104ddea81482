"""Errors that reach the user as one line, with the place (file, line, field) they concern."""

from __future__ import annotations


class PolysafeError(Exception):
    """Base class. `str(err)` is the one-line message the CLI prints."""

    exit_code = 1


class InputError(PolysafeError):
    """Bad user input: a file, a row, a field, a spec or an option. The CLI exits with status 2."""

    exit_code = 2

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None, field: str | None = None):
        self.file, self.line, self.field, self.reason = file, line, field, message
        where = ""
        if file:
            where = f"{file}:{line}" if line is not None else str(file)
        if field:
            where = f"{where} field '{field}'" if where else f"field '{field}'"
        super().__init__(f"{where}: {message}" if where else message)


class SpecError(InputError):
    """An unknown or malformed plugin spec (model, judge, attack, translator)."""


class BackendError(PolysafeError):
    """A model backend failed in a way that retrying will not fix (bad key, unknown model, ...)."""
