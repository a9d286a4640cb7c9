"""Errors a user can act on: printed by `sde` as one line, without a traceback."""
from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """Bad input from the user (a file, a flag, a record)."""


class RecordError(UserError):
    """A bad record: names the file, the 1-based line and the field, so it can be fixed by hand."""

    def __init__(self, path: str | Path, line: int, field: str, message: str):
        self.path, self.line, self.field = str(path), line, field
        super().__init__(f"{path}:{line}: field '{field}': {message}")


def line_of(raw: bytes, offset: int) -> int:
    """The 1-based line holding byte `offset`: people fix files by line, not by byte."""
    return raw.count(b"\n", 0, offset) + 1


def read_user_text(path: Path, what: str, folder_hint: str) -> str:
    """A user's file as UTF-8 text; a missing file, a folder or bad bytes is a UserError naming the path (and line)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder; {folder_hint}") from None
    except OSError as err:
        raise UserError(f"{path}: cannot read the {what} ({err.strerror})") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"{path}:{line_of(raw, err.start)}: not UTF-8 text") from None
