"""Ciphers and encodings, the pieces `encode:<cipher>` and `cipherchat:<cipher>` are made of.

A cipher is one file that registers with `CIPHERS` (`cipher_base64.py`, `cipher_morse.py`, ...); both attacks
then accept it by name, and third-party ciphers come in through the `polysafe.ciphers` entry points. A cipher
turns text into its enciphered form and back. `decode` reads a model's reply: it raises `Undecodable` when the
reply is not in the cipher, and the item is then labelled `invalid` without a judge (as CipherChat's rule-based
decrypter leaves such replies unreadable). `encode` raises `InputError` for text the cipher has no signs for.
"""

from __future__ import annotations

from ..registry import Registry
from .base import Undecodable

__all__ = ["CIPHERS", "CIPHER_SCENARIOS", "Cipher", "Undecodable", "load_cipher"]


class Cipher:
    spec: str  # canonical spec, part of the attack's spec and so of every cache key
    title: str  # how the instructions name it: "Base64", "Morse code", "a Caesar cipher with a shift of 3"
    description: str  # how it works, taught to the model by cipherchat

    def __init__(self, **_: object) -> None:
        pass

    def encode(self, text: str) -> str:
        raise NotImplementedError

    def decode(self, text: str) -> str:
        raise NotImplementedError


CIPHERS: Registry[Cipher] = Registry("cipher", package="polysafe.attacks")


def load_cipher(spec: str) -> Cipher:
    """`base64`, `caesar:5`, ... -> the cipher (SpecError names the known ones)."""
    return CIPHERS.create(spec)


# The `ciphers` benchmark: AdvBench in plain English (the baseline), then through every built-in cipher, first
# as an encoded request (`encode:`), then taught with demonstrations (`cipherchat:`). (scenario name, chain spec).
CIPHER_SCENARIOS: tuple[tuple[str, str], ...] = (
    ("plain", "none"),
    ("base64", "encode:base64"),
    ("rot13", "encode:rot13"),
    ("caesar", "encode:caesar"),
    ("morse", "encode:morse"),
    ("leetspeak", "encode:leetspeak"),
    ("cipherchat-base64", "cipherchat:base64"),
    ("cipherchat-rot13", "cipherchat:rot13"),
    ("cipherchat-caesar", "cipherchat:caesar"),
    ("cipherchat-morse", "cipherchat:morse"),
    ("cipherchat-leetspeak", "cipherchat:leetspeak"),
)
