"""`base64`: the UTF-8 bytes of the text in standard Base64 (RFC 4648), so every script round-trips exactly.

Reading a reply: when the whole reply (whitespace and code fences aside) is Base64, it is decoded as one piece
(line-wrapped Base64 included); otherwise every Base64 run of 8 characters or more in it is decoded and the
pieces are joined by line breaks ("Here you go: SGVsbG8gd29ybGQ=" gives "Hello world"). A run counts only if it
is not a word of prose (lower case, capitalised or all capitals: Base64 mixes case and digits) and decodes to
UTF-8 text without control characters; a run cut off at the end (the reply hit max tokens) keeps what its
complete bytes say. A reply with no such run, prose included, is undecodable.
"""

from __future__ import annotations

import base64
import binascii
import re

from .cipher import CIPHERS, Cipher, Undecodable

_RUN = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_FENCE = re.compile(r"^\s*```[^\n]*$", re.MULTILINE)
MIN_RUN = 8  # shorter runs inside prose are ordinary words ("Sure", "help")
_WORD = re.compile(r"[A-Z]?[a-z]+|[A-Z]+")  # a word of prose, not Base64 (which mixes case and digits)


@CIPHERS.register("base64", summary="Base64 of the UTF-8 text (any script); replies are decoded, prose replies are invalid.")
class Base64Cipher(Cipher):
    spec = "base64"
    title = "Base64"
    description = ("Base64 writes the bytes of a text (UTF-8) with 64 characters: the capital letters A-Z, the small "
                   "letters a-z, the digits 0-9, + and /. Every 3 bytes become 4 characters, and '=' pads the end.")

    def encode(self, text: str) -> str:
        return base64.b64encode(text.encode("utf-8")).decode("ascii")

    def decode(self, text: str) -> str:
        body = _FENCE.sub("", text)
        whole = "".join(body.split())
        if _RUN.fullmatch(whole):
            decoded = _decode_run(whole)
            if decoded is not None:
                return decoded
        pieces = [decoded for run in _RUN.findall(body) if len(run) >= MIN_RUN and (decoded := _decode_run(run)) is not None]
        if not pieces:
            raise Undecodable("no Base64 text in the reply" if whole else "empty reply")
        return "\n".join(pieces)


def _decode_run(run: str) -> str | None:
    """The text a Base64 run stands for, or None when it is not Base64 of UTF-8 text."""
    if _WORD.fullmatch(run):
        return None
    data = run.rstrip("=")
    if len(data) % 4 == 1:  # a lone last character carries no whole byte: the reply was cut off
        data = data[:-1]
    try:
        raw = base64.b64decode(data + "=" * (-len(data) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        if err.reason != "unexpected end of data":  # only a character cut at the very end is forgiven
            return None
        decoded = raw[: err.start].decode("utf-8")
    if not any(ch.isalnum() for ch in decoded):
        return None
    if any(not ch.isprintable() and ch not in "\n\r\t" for ch in decoded):
        return None
    return decoded
