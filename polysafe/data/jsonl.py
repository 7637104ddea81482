"""Reading JSONL and chat records, with errors that name the file, the line and the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from ..errors import InputError
from ..types import Conversation, Message

ROLES = ("system", "user", "assistant")


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line; a missing file, bad JSON or a non-object is an InputError."""
    path = Path(path)
    if not path.is_file():
        raise InputError("no such file", file=str(path))
    with path.open(encoding="utf-8-sig") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except json.JSONDecodeError as err:
                raise InputError(f"invalid JSON ({err.msg})", file=str(path), line=number) from None
            if not isinstance(row, dict):
                raise InputError("each line must be a JSON object", file=str(path), line=number)
            yield number, row


def read_json(path: str | Path) -> Any:
    """A whole JSON document; a missing file or bad JSON is an InputError naming the line."""
    path = Path(path)
    if not path.is_file():
        raise InputError("no such file", file=str(path))
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as err:
        raise InputError(f"invalid JSON ({err.msg})", file=str(path), line=err.lineno) from None


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
