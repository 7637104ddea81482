"""Keep secrets out of every stored or printed text: API keys, `Bearer` tokens, passwords inside URLs.

A backend that reads a key registers its value with `remember`; `redact` then removes every registered
value, plus anything that looks like a credential whatever its origin:

- `Bearer <token>` and `Authorization: <anything>`;
- `user:password@` inside a URL;
- `api_key=...`, `token=...`, `password=...` style assignments.

The store (errors and responses) and the CLI's error line call `redact` as a last line of defence; the
backends call it where they build an error text. This module imports nothing from polysafe: every stage
may use it.
"""

from __future__ import annotations

import re

MASK = "***"
_MIN_SECRET_LENGTH = 4  # shorter values ("", "x") would mask ordinary text and protect nothing
_known: set[str] = set()

_PATTERNS = (
    (re.compile(r"(?i)\b(bearer)(\s+)[^\s\"',;]+"), rf"\1\2{MASK}"),
    (re.compile(r"(?i)\b(authorization|x-api-key|api-key)(\s*[:=]\s*)[^\r\n\"',;]+"), rf"\1\2{MASK}"),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s\"'<>]*@"), rf"\1{MASK}@"),
    (re.compile(r"(?i)\b(api[_-]?key|access[_-]?token|secret|password|passwd)(\"?\s*[:=]\s*\"?)[^\s\"'&,;}]+"), rf"\1\2{MASK}"),
)


def remember(value: str | None) -> None:
    """Register a secret value (an API key) so that `redact` removes it from any text."""
    if value and len(value) >= _MIN_SECRET_LENGTH:
        _known.add(value)


def known() -> frozenset[str]:
    return frozenset(_known)


def redact_known(text: str, secrets: tuple[str, ...] | frozenset[str] = ()) -> str:
    """Remove the registered and given secret values only: cheap enough for every stored response."""
    for secret in (*_known, *secrets):
        if secret and len(secret) >= _MIN_SECRET_LENGTH and secret in text:
            text = text.replace(secret, MASK)
    return text


def redact(text: str, secrets: tuple[str, ...] | frozenset[str] = ()) -> str:
    """`text` without any registered or given secret, bearer token, authorization value or URL password."""
    if not text:
        return text
    text = redact_known(text, secrets)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text
