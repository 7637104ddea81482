"""Text from users and models shown on a terminal: control characters made visible, never sent raw.

A run name, a model name, a file name or an error message may hold escape sequences (`ESC[2J` clears the screen,
others retitle the window or rewrite what was printed), C1 controls that some terminals read as escapes, and
bidirectional overrides that reorder what a reader sees. `printable` writes each as a visible `\\x1b`-style escape.
"""

from __future__ import annotations

import re

# C0 and C1 controls (newline and tab included: these fields are single lines), DEL, line and paragraph
# separators, and the bidirectional embeddings, overrides and isolates.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")
_TEXT_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")
_JSON_RAW = re.compile("[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")  # json escapes C0


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object) -> str:
    """`text` as one terminal-safe line: every control or bidi character shown as an escape."""
    return _UNSAFE.sub(_escape, str(text))


def json_printable(text: str) -> str:
    """JSON text with the characters `json.dumps(ensure_ascii=False)` leaves raw (C1 controls, separators, bidi
    controls) written as \\u escapes; they can only occur inside JSON strings, so the document means the same."""
    return _JSON_RAW.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def printable_text(text: str, *, json_like: bool = False) -> str:
    """A multi-line text (a report, a table) for stdout: lines and tabs kept, every other control made visible;
    JSON stays the same document (see `json_printable`)."""
    return json_printable(text) if json_like else _TEXT_UNSAFE.sub(_escape, text)
