"""Reading user files as text: UTF-8 only, with one-line errors that name the file, the line and the field.

A Latin-1 or UTF-16 file, a binary file, a lone surrogate from a JSON escape, JSON nested too deeply, an
unterminated CSV quote and a field too large to be a prompt each stop here, before anything is stored.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..errors import InputError

# csv's own default limit. A larger cell is a pasted file or a broken quote, not a prompt.
MAX_FIELD_CHARS = 131_072


def require_file(path: str | Path) -> Path:
    """`path` as a regular file, or an InputError saying what it is instead (never a blocking read of a FIFO)."""
    path = Path(path)
    if path.is_dir():
        raise InputError("is a directory, not a file", file=str(path))
    if path.is_fifo():
        raise InputError("is a FIFO (named pipe), not a file; save the prompts to a file", file=str(path))
    if path.exists() and not path.is_file():
        raise InputError("is a device or socket, not a regular file", file=str(path))
    if not path.is_file():
        raise InputError("no such file", file=str(path))
    return path


def read_text(path: str | Path) -> str:
    """The whole file, decoded as UTF-8 (a leading BOM is dropped)."""
    path = require_file(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise InputError(f"cannot read the file ({err.strerror})", file=str(path)) from None
    return decode_utf8(data, file=str(path))


def decode_utf8(data: bytes, *, file: str) -> str:
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise InputError("UTF-16 text; save the file as UTF-8", file=file)
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    nul = data.find(b"\0")
    if nul >= 0:
        raise InputError("a NUL byte: binary data or UTF-16, not UTF-8 text", file=file, line=_line_at(data, nul))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        column = err.start - data.rfind(b"\n", 0, err.start)
        raise InputError(f"not UTF-8 text (byte 0x{data[err.start]:02x} at column {column}, perhaps Latin-1); "
                         "save the file as UTF-8", file=file, line=_line_at(data, err.start)) from None


def _line_at(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


# -- JSON --------------------------------------------------------------------------------------------------------


def parse_json(text: str, *, file: str, line: int | None = None) -> Any:
    """One JSON document; a syntax error, deep nesting or a lone surrogate is an InputError naming the place."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(f"invalid JSON ({err.msg})", file=file, line=line if line is not None else err.lineno) from None
    except RecursionError:
        raise InputError("invalid JSON (nested too deeply)", file=file, line=line) from None
    except ValueError as err:  # e.g. an integer literal longer than Python converts
        raise InputError(f"invalid JSON ({str(err).splitlines()[0][:120]})", file=file, line=line) from None
    where = find_lone_surrogate(value)
    if where is not None:
        raise InputError("a lone surrogate escape (\\ud800-\\udfff): not valid Unicode text", file=file, line=line,
                         field=where or None)
    where = find_string(value, lambda text: "\0" in text)
    if where is not None:  # refused like a raw NUL byte
        raise InputError("a NUL character (\\u0000): binary data, not text", file=file, line=line, field=where or None)
    return value


def find_lone_surrogate(value: Any) -> str | None:
    """The path ('messages[0].content', '' for the top) of the first string holding a lone surrogate, or None."""
    return find_string(value, has_surrogate)


def find_string(value: Any, bad) -> str | None:
    """The path of the first string (value or key) for which `bad(text)` holds, or None."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            if bad(item):
                return path
        elif isinstance(item, dict):
            for key, child in item.items():
                if bad(key):
                    return path
                stack.append((f"{path}.{key}" if path else key, child))
        elif isinstance(item, list):
            stack.extend((f"{path}[{index}]", child) for index, child in enumerate(item))
    return None


def has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


# -- CSV ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CsvTable:
    file: str
    header: list[str]  # column names, stripped
    rows: list[tuple[int, dict[str, str | None]]]  # (first line of the record, cells by column; None = missing)

    def require(self, *columns: str) -> None:
        for column in columns:
            if column not in self.header:
                raise InputError(f"missing column (header has: {', '.join(self.header) or 'nothing'})",
                                 file=self.file, line=1, field=column)


def read_csv(path: str | Path) -> CsvTable:
    return parse_csv(read_text(path), file=str(path))


def parse_csv(text: str, *, file: str) -> CsvTable:
    """Strict parsing: an unterminated quote, text after a closing quote, more cells than the header or a cell
    over MAX_FIELD_CHARS is an InputError naming the line (and the column where one applies)."""
    text = text.lstrip("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] = []
    rows: list[tuple[int, dict[str, str | None]]] = []
    start = 1  # first physical line of the record being read
    with _field_limit(len(text) + 1):  # our own, smaller limit below names the column
        try:
            for cells in reader:
                if not header:
                    header = [cell.strip() for cell in cells]
                elif cells:  # a blank line is no record
                    rows.append((start, _record(cells, header, file=file, line=start)))
                start = reader.line_num + 1
        except csv.Error as err:
            if "unexpected end of data" in str(err):
                raise InputError("unterminated quoted field: a '\"' opened here is never closed", file=file, line=start) from None
            raise InputError(f"malformed CSV ({err})", file=file, line=reader.line_num) from None
    return CsvTable(file, header, rows)


def _record(cells: list[str], header: list[str], *, file: str, line: int) -> dict[str, str | None]:
    if len(cells) > len(header):
        raise InputError("row has more cells than the header", file=file, line=line)
    for name, cell in zip(header, cells):
        if len(cell) > MAX_FIELD_CHARS:
            raise InputError(f"{len(cell)} characters, more than the {MAX_FIELD_CHARS} a field may hold",
                             file=file, line=line, field=name)
    return {name: (cells[i] if i < len(cells) else None) for i, name in enumerate(header)}


@contextlib.contextmanager
def _field_limit(limit: int) -> Iterator[None]:
    """csv's field limit is process-wide: raise it while one file is parsed, then restore it."""
    previous = csv.field_size_limit()
    csv.field_size_limit(max(previous, limit))
    try:
        yield
    finally:
        csv.field_size_limit(previous)
