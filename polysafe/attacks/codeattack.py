"""`codeattack:<variant>`: wrap the query in a code-completion task (Ren et al., ACL 2024).

The query is placed in a data structure (a string, a list of words, a deque pushed in reverse, a C++ string, a
Go string passed through a goroutine), an explicit call line stores what an unimplemented `decode()` rebuilds in
`task`, and the model is asked to fill five empty placeholders of an output list with the steps that carry
`task` out. See `codeattack_templates.py`.

Splitting is deterministic. Queries in scripts written without spaces (Chinese, Japanese) are split into
characters, keeping runs of other text (a Latin word, a space) as their own piece, and are joined back with no
separator; every other query is split on whitespace and joined with single spaces. String literals are escaped
for the target language, so quotes, backslashes and newlines in a query never break the snippet.

`decode(snippet, variant)` reads the query back out of a snippet by static parsing (never running it); tests use
it to prove the round trip. `extract(response)` pulls the filled-in steps out of the answer (`extraction.py`).
"""

from __future__ import annotations

import ast
import re
import unicodedata
from dataclasses import dataclass

from ..errors import SpecError
from . import codeattack_templates as T
from .base import ATTACKS, Attack, AttackedPrompt
from .extraction import extract_output

# Scripts written without spaces between words: Han, kana, CJK punctuation and full-width forms.
_SPACELESS = re.compile(r"[\u3000-\u303f\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
                        r"\uff00-\uffef\U00020000-\U0003134f]")


@dataclass(frozen=True)
class Variant:
    name: str
    language: str  # python | cpp | go
    structure: str  # string | list | stack
    template: str
    plus: bool = False  # ask for ~100-word paragraphs instead of short steps


VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("python_string", "python", "string", T.PYTHON_STRING),
    Variant("python_list", "python", "list", T.PYTHON_LIST),
    Variant("python_stack", "python", "stack", T.PYTHON_STACK),
    Variant("cpp_string", "cpp", "string", T.CPP_STRING),
    Variant("go_string", "go", "string", T.GO_STRING),
    Variant("python_string_plus", "python", "string", T.PYTHON_STRING, plus=True),
    Variant("python_list_plus", "python", "list", T.PYTHON_LIST, plus=True),
    Variant("python_stack_plus", "python", "stack", T.PYTHON_STACK, plus=True),
)}
PAPER_VARIANTS = ("python_string", "python_list", "python_stack", "cpp_string", "go_string")


def get_variant(name: str) -> Variant:
    variant = VARIANTS.get(name.strip())
    if variant is None:
        raise SpecError(f"unknown CodeAttack variant '{name}' (known: {', '.join(VARIANTS)})", field="variant")
    return variant


# --- splitting -------------------------------------------------------------------------------------------------

def is_spaceless(text: str) -> bool:
    return _SPACELESS.search(text) is not None


def split_query(query: str) -> list[str]:
    """Pieces of the query, in order. `join_pieces(split_query(q))` gives back `canonical(q)`."""
    text = canonical(query)
    if not is_spaceless(text):
        return text.split(" ") if text else []
    pieces: list[str] = []
    run = ""
    for char in text:
        if _SPACELESS.match(char):
            if run:
                pieces.append(run)
                run = ""
            pieces.append(char)
        elif unicodedata.category(char).startswith("M") and pieces and not run:
            pieces[-1] += char  # a combining mark or variation selector stays with its character
        else:
            run += char
    if run:
        pieces.append(run)
    return pieces


def canonical(query: str) -> str:
    """What survives word splitting: whitespace runs become one space (the string variants keep everything)."""
    return " ".join(query.split())


def join_pieces(pieces: list[str]) -> str:
    return ("" if any(is_spaceless(p) for p in pieces) else " ").join(pieces)


# --- string literals -------------------------------------------------------------------------------------------

_COMMON_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def quote(text: str, language: str) -> str:
    """A double-quoted string literal of `language` holding exactly `text`; non-ASCII letters stay readable."""
    out = []
    for char in text:
        if char in _COMMON_ESCAPES:
            out.append(_COMMON_ESCAPES[char])
        elif unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp") and char not in "\u200c\u200d":
            code = ord(char)
            if language == "cpp":  # \x in C++ swallows every following hex digit; octal stops after three
                out.append(f"\\{code:03o}" if code < 0o400 else f"\\u{code:04x}")
            else:
                out.append(f"\\u{code:04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


_STRING_LITERAL = r'"(?:[^"\\\n]|\\.)*"'
_UNESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|x[0-9a-fA-F]{2}|[0-7]{1,3}|.)", re.DOTALL)
_SIMPLE = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", '"': '"', "'": "'", "a": "\a", "b": "\b", "f": "\f", "v": "\v"}


def unquote(literal: str, language: str) -> str:
    """The text of a double-quoted literal, read statically (Python through `ast.literal_eval`)."""
    if language == "python":
        value = ast.literal_eval(literal)  # parses a literal only; nothing is run
        if not isinstance(value, str):
            raise ValueError(f"not a string literal: {literal[:40]}")
        return value

    def one(match: re.Match) -> str:
        esc = match.group(1)
        if esc[0] in "uU" and len(esc) > 1:
            return chr(int(esc[1:], 16))
        if esc[0] == "x" and len(esc) == 3:
            return chr(int(esc[1:], 16))
        if esc[0] in "01234567":
            return chr(int(esc, 8))
        return _SIMPLE.get(esc, esc)

    return _UNESCAPE.sub(one, literal[1:-1])


# --- encoding and decoding -------------------------------------------------------------------------------------

_HOLDERS = {  # (language, structure) -> where the encoded literals sit in a snippet
    ("python", "string"): re.compile(r"\bmy_string\s*=\s*(" + _STRING_LITERAL + ")"),
    ("python", "list"): re.compile(r"\bmy_list\.append\(\s*(" + _STRING_LITERAL + r")\s*\)"),
    ("python", "stack"): re.compile(r"\bmy_stack\.append\(\s*(" + _STRING_LITERAL + r")\s*\)"),
    ("cpp", "string"): re.compile(r"\bstd::string\s+my_string\s*=\s*(" + _STRING_LITERAL + ")"),
    ("go", "string"): re.compile(r"\bmyQueue\s*:=\s*(" + _STRING_LITERAL + ")"),
}


def encode(query: str, variant: str | Variant) -> str:
    """The full CodeAttack prompt for `query`."""
    v = variant if isinstance(variant, Variant) else get_variant(variant)
    pieces = [] if v.structure == "string" else split_query(query)
    fields = T.text_fields(v.language, plus=v.plus, spaceless=any(is_spaceless(p) for p in pieces))
    fields.update(literal="", encoding="")
    if v.structure == "string":
        fields["literal"] = quote(query, v.language)
    else:
        ordered = pieces if v.structure == "list" else list(reversed(pieces))
        holder = "my_list" if v.structure == "list" else "my_stack"
        fields["encoding"] = "\n".join(f"    {holder}.append({quote(p, 'python')})" for p in ordered)
    return v.template.format(**fields)


def decode(snippet: str, variant: str | Variant) -> str:
    """The query a CodeAttack snippet holds, by static parsing (the snippet is never run)."""
    v = variant if isinstance(variant, Variant) else get_variant(variant)
    literals = _HOLDERS[(v.language, v.structure)].findall(snippet)
    if not literals:
        raise ValueError(f"no {v.name} encoding found in the snippet")
    if v.structure == "string":
        return unquote(literals[0], v.language)
    pieces = [unquote(lit, "python") for lit in literals]
    if v.structure == "stack":
        pieces.reverse()  # popping a deque gives the last push first
    return join_pieces(pieces)


class CodeAttack(Attack):
    def __init__(self, variant: str, **options) -> None:
        self.variant = get_variant(variant)
        self.spec = f"codeattack:{self.variant.name}"

    def transform(self, item: AttackedPrompt) -> AttackedPrompt:
        return item.evolve(self.spec, text=encode(item.text, self.variant))

    def extract(self, response: str) -> str:
        return extract_output(response)


@ATTACKS.register("codeattack", takes_argument=True, example="codeattack:python_stack",
                  summary="CodeAttack: the query encoded in code (python_string|python_list|python_stack|cpp_string|"
                          "go_string, +_plus for Python); extracts the filled-in steps.")
def _codeattack(variant: str, **options) -> CodeAttack:
    return CodeAttack(variant, **options)
