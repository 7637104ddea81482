"""`leetspeak`: a, e, i, o, s and t (either case) written as the digits 4, 3, 1, 0, 5 and 7.

Decoding reads those six digits back as the small letters, everywhere, so the mapping is a round trip on
letters: for any text without digits, `decode(encode(t))` is `t` with those six letters in lower case. Digits of
the original text (and of a reply, "step 1") come back as letters: that loss is leetspeak's own ambiguity.
Other characters and scripts pass through unchanged; no reply is undecodable.
"""

from __future__ import annotations

from .cipher import CIPHERS, Cipher

LEET = {"a": "4", "e": "3", "i": "1", "o": "0", "s": "5", "t": "7"}
_ENCODE = str.maketrans({**LEET, **{letter.upper(): digit for letter, digit in LEET.items()}})
_DECODE = str.maketrans({digit: letter for letter, digit in LEET.items()})


@CIPHERS.register("leetspeak", summary="Leetspeak: a e i o s t written as 4 3 1 0 5 7 (decoding is lossy on digits).")
class LeetspeakCipher(Cipher):
    spec = "leetspeak"
    title = "leetspeak"
    description = ("Leetspeak writes some letters as digits that look like them: a as 4, e as 3, i as 1, o as 0, s as 5 "
                   "and t as 7, in small letters and capitals alike. Every other character is written as usual.")

    def encode(self, text: str) -> str:
        return text.translate(_ENCODE)

    def decode(self, text: str) -> str:
        return text.translate(_DECODE)
