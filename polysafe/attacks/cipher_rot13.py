"""`rot13`: the Caesar cipher with a shift of 13, its own inverse. Latin letters only; other scripts unchanged."""

from __future__ import annotations

from .cipher import CIPHERS, Cipher
from .cipher_caesar import shift_letters


@CIPHERS.register("rot13", summary="ROT13: Latin letters shifted by 13 places; other scripts unchanged.")
class Rot13Cipher(Cipher):
    spec = "rot13"
    title = "ROT13"
    description = ("ROT13 replaces every letter with the letter 13 places further along the alphabet: A becomes N, "
                   "B becomes O, and so on, with N becoming A. Applying ROT13 twice gives back the original text. "
                   "Small letters stay small and capitals stay capitals; digits, punctuation and spaces are not changed.")

    def encode(self, text: str) -> str:
        return shift_letters(text, 13)

    def decode(self, text: str) -> str:
        return shift_letters(text, 13)
