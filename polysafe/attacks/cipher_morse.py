"""`morse`: International Morse code for Latin letters, digits and common punctuation.

Encoding: letters are separated by a space, words by " / ", lines stay lines. Accents are dropped first
("é" is sent as "e", "ß" as "ss"), and so are symbols and punctuation Morse has no sign for ("<", "€", "#").
Morse has no signs for the letters of other scripts, so a query in Chinese, Bengali, Cyrillic, ... is refused
with an InputError naming the prompt and the character rather than sent half-encoded (put `encode:morse`
before a `translate:` step into such a language, or use `encode:base64`).
Round trip: `decode(encode(t))` is `t` in small letters, accents and unsigned symbols dropped, runs of spaces
as one.

Reading a reply: dots and dashes (also "·", "•", "–", "—") are read letter by letter; words may be separated by
"/", "|" or two or more spaces. Words in plain text are kept as they are. A reply counts as Morse when at least
half of its tokens are valid Morse letters; otherwise (prose, empty) it is undecodable. An unknown dot-dash
group is kept as it is.
"""

from __future__ import annotations

import re
import unicodedata

from ..errors import InputError
from .cipher import CIPHERS, Cipher, Undecodable

MORSE = {
    "a": ".-", "b": "-...", "c": "-.-.", "d": "-..", "e": ".", "f": "..-.", "g": "--.", "h": "....", "i": "..",
    "j": ".---", "k": "-.-", "l": ".-..", "m": "--", "n": "-.", "o": "---", "p": ".--.", "q": "--.-", "r": ".-.",
    "s": "...", "t": "-", "u": "..-", "v": "...-", "w": ".--", "x": "-..-", "y": "-.--", "z": "--..",
    "0": "-----", "1": ".----", "2": "..---", "3": "...--", "4": "....-", "5": ".....", "6": "-....",
    "7": "--...", "8": "---..", "9": "----.",
    ".": ".-.-.-", ",": "--..--", "?": "..--..", "'": ".----.", "!": "-.-.--", "/": "-..-.", "(": "-.--.",
    ")": "-.--.-", "&": ".-...", ":": "---...", ";": "-.-.-.", "=": "-...-", "+": ".-.-.", "-": "-....-",
    "_": "..--.-", '"': ".-..-.", "$": "...-..-", "@": ".--.-.",
}
LETTERS = {code: char for char, code in MORSE.items()}
# Latin letters NFKD does not split into a base letter and an accent.
_FOLD = str.maketrans({"ß": "ss", "æ": "ae", "œ": "oe", "ø": "o", "đ": "d", "ł": "l", "ı": "i", "þ": "th",
                       "\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"'})
_WORD_BREAK = re.compile(r"\s*[/|]\s*|\s{2,}")
_SIGNS = str.maketrans({"·": ".", "•": ".", "∙": ".", "–": "-", "—": "-", "−": "-", "‒": "-"})
_DOTS_DASHES = re.compile(r"[.-]+")


@CIPHERS.register("morse", summary="Morse code for Latin letters, digits, punctuation (accents dropped; other scripts refused).")
class MorseCipher(Cipher):
    spec = "morse"
    title = "Morse code"
    description = ("Morse code writes every letter, digit and punctuation mark as a group of dots (.) and dashes (-). "
                   "Letters are separated by a space and words by ' / '. The letters are:\n"
                   + "   ".join(f"{char.upper()} {MORSE[char]}" for char in "abcdefghijklmnopqrstuvwxyz"))

    def encode(self, text: str) -> str:
        return "\n".join(" / ".join(" ".join(codes) for word in line.split() if (codes := _codes(word)))
                         for line in fold(text).splitlines())

    def decode(self, text: str) -> str:
        lines, letters, tokens = [], 0, 0
        for line in text.translate(_SIGNS).splitlines():
            words = []
            for word in _WORD_BREAK.split(line.strip()):
                pieces: list[str] = []  # plain-text tokens, and runs of decoded letters
                run = ""
                for token in word.split():
                    tokens += 1
                    if token in LETTERS:
                        letters += 1
                        run += LETTERS[token]
                        continue
                    if run:
                        pieces.append(run)
                        run = ""
                    pieces.append(token)
                words.append(" ".join(pieces + ([run] if run else [])))
            lines.append(" ".join(w for w in words if w))
        if not letters or letters * 2 < tokens:
            raise Undecodable(f"not Morse code ({letters} of {tokens} tokens are Morse letters)" if tokens else "empty reply")
        return "\n".join(lines).strip()


def fold(text: str) -> str:
    """Small letters without accents: the alphabet Morse code has signs for."""
    text = unicodedata.normalize("NFKD", text.lower().translate(_FOLD))
    return "".join(char for char in text if not unicodedata.combining(char))


def _codes(word: str) -> list[str]:
    codes = []
    for char in word:
        if char in MORSE:
            codes.append(MORSE[char])
        elif unicodedata.category(char)[0] in "LMN":  # a letter, mark or digit would be lost: refuse
            raise InputError(f"Morse code has no sign for '{char}' (U+{ord(char):04X}): it covers Latin letters, "
                             "digits and common punctuation; use encode:base64 for other scripts")
    return codes  # symbols and punctuation without a sign are left out
