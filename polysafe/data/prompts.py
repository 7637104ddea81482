"""Prompt sets: the protocol, and loading a user's CSV or JSONL file.

A file has the columns `id` and `text`, and optionally `language` and `category`. Every problem is reported
with the file, the line and the field, before anything is stored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Protocol

from ..errors import InputError
from ..registry import Registry
from ..types import Prompt
from .jsonl import iter_jsonl
from ..languages import get_language
from .textfile import MAX_FIELD_CHARS, read_csv, require_file

REQUIRED = ("id", "text")
OPTIONAL = ("language", "category")


class PromptSet(Protocol):
    """Anything that yields prompts. `name` is stored with the run."""

    name: str

    def load(self) -> list[Prompt]: ...


PROMPT_SETS: Registry[PromptSet] = Registry("prompt set", package="polysafe.data")


def _row_to_prompt(row: dict, *, file: str, line: int, default_language: str) -> Prompt:
    for column in REQUIRED:
        value = row.get(column)
        if value is None:
            raise InputError("missing column", file=file, line=line, field=column)
        if column == "text" and not isinstance(value, str):
            raise InputError(f"text must be a string, not {type(value).__name__}", file=file, line=line, field=column)
        if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
            raise InputError("empty or non-text value", file=file, line=line, field=column)
        if len(str(value)) > MAX_FIELD_CHARS:
            raise InputError(f"{len(str(value))} characters, more than the {MAX_FIELD_CHARS} a field may hold",
                             file=file, line=line, field=column)
    language = row.get("language") or default_language
    if not isinstance(language, str):
        raise InputError("language must be a string code", file=file, line=line, field="language")
    code = get_language(language, file=file, line=line, field="language").code
    category = row.get("category")
    if category is not None and not isinstance(category, str):
        raise InputError("category must be text", file=file, line=line, field="category")
    return Prompt(id=str(row["id"]).strip(), text=str(row["text"]).strip(), language=code, category=category or None)


def _read_csv(path: Path) -> Iterable[tuple[int, dict]]:
    table = read_csv(path)
    table.require(*REQUIRED)
    return table.rows


def load_prompt_file(path: str | Path, *, default_language: str = "en") -> list[Prompt]:
    path = require_file(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        rows = _read_csv(path)
    elif suffix in (".jsonl", ".ndjson"):
        rows = iter_jsonl(path)
    else:
        raise InputError("prompt files must be .csv or .jsonl", file=str(path))
    prompts: list[Prompt] = []
    seen: dict[tuple[str, str], int] = {}
    for line, row in rows:
        prompt = _row_to_prompt(row, file=str(path), line=line, default_language=default_language)
        key = (prompt.id, prompt.language)
        if key in seen:
            raise InputError(f"duplicate id '{prompt.id}' (first on line {seen[key]})", file=str(path), line=line, field="id")
        seen[key] = line
        prompts.append(prompt)
    if not prompts:
        raise InputError("file has no prompts", file=str(path))
    return prompts


@PROMPT_SETS.register("file", takes_argument=True, example="file:prompts.csv")
class FilePromptSet:
    """`file`: a user's CSV or JSONL of prompts."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.name = f"file:{self.path.name}"

    def load(self) -> list[Prompt]:
        return load_prompt_file(self.path)
