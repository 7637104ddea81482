"""Reading JSONL and chat records, with errors that name the file, the line and the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from ..errors import InputError
from ..types import Conversation, Message
from .textfile import parse_json, read_text

ROLES = ("system", "user", "assistant")


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line; a missing or non-UTF-8 file, bad JSON or a non-object is
    an InputError naming the line."""
    text = read_text(path)
    for number, raw in enumerate(text.split("\n"), start=1):  # not splitlines(): JSON strings may hold U+2028
        if not raw.strip():
            continue
        row = parse_json(raw, file=str(path), line=number)
        if not isinstance(row, dict):
            raise InputError("each line must be a JSON object", file=str(path), line=number)
        yield number, row


def read_json(path: str | Path) -> Any:
    """A whole JSON document; a missing file or bad JSON is an InputError naming the line."""
    return parse_json(read_text(path), file=str(path))


def parse_messages(messages: Any, *, file: str, line: int | None) -> Conversation:
    """A chat record's `messages` list, ending with the assistant's answer."""
    if not isinstance(messages, list) or not messages:
        raise InputError("must be a non-empty list of messages", file=file, line=line, field="messages")
    out = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise InputError("must be an object with role and content", file=file, line=line, field=where)
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise InputError(f"role must be one of {', '.join(ROLES)} (got {role!r})", file=file, line=line, field=f"{where}.role")
        if not isinstance(content, str) or not content.strip():
            raise InputError("content must be non-empty text", file=file, line=line, field=f"{where}.content")
        out.append(Message(role, content))
    if out[-1].role != "assistant":
        raise InputError("the last message must be the assistant's answer", file=file, line=line, field="messages")
    return tuple(out)
