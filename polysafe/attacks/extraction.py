"""Pull the filled-in output out of a model's code answer, by static parsing only.

Model-generated code is data: it is parsed (Python's `ast` when it parses, text rules when it does not), never
executed, compiled to run, or handed to a shell. The order of preference follows the CodeAttack paper:

1. the items put into the output list: `output_list.append("...")`, `output_list = [...]`, `.extend([...])`,
   C++ `outputList.push_back("...")`, Go `outputList = append(outputList, "...")` and `[]string{...}` literals;
2. otherwise what the code prints, and the comments the model wrote (comments echoed from our template are
   skipped);
3. otherwise the whole response (prose answers, refusals).

Model output is hostile data for the parser too, so extraction is bounded and never raises:
- a response longer than `MAX_EXTRACT_CHARS` (100,000 characters, some 25,000 tokens: far beyond any run's
  max tokens, so only degenerate output gets there) is returned whole, unparsed;
- at most `MAX_BLOCKS` code blocks are read, at most `MAX_CALLS` output calls and prints per block, and one call's
  arguments are looked for within `MAX_CALL_CHARS` characters; identifiers in text rules are bounded in length,
  so no rule backtracks without bound;
- string concatenations (`"a" + "b" + ...`, thousands of terms) are read without recursion;
- any failure at all (RecursionError, MemoryError, anything else) falls back to the whole response.
"""

from __future__ import annotations

import ast
import functools
import io
import re
import tokenize
from itertools import islice

from .codeattack_templates import template_comments

MAX_EXTRACT_CHARS = 100_000
MAX_BLOCKS = 20
MAX_CALLS = 200
MAX_CALL_CHARS = 10_000
_MAX_PLACEHOLDER_CHARS = 40  # longer text is never a placeholder

_FENCE = re.compile(r"```[^\n`]*\n(.*?)(?:```|\Z)", re.DOTALL)
_OUTPUT_NAME = re.compile(r"output", re.IGNORECASE)
_ADDERS = {"append", "extend", "insert", "appendleft", "push_back", "emplace_back", "add"}
_PLACEHOLDER = re.compile(r"^(?:\.\.\.|…|step ?\d* ?:? ?(?:\.\.\.)?|todo|<[^>]*>)?$", re.IGNORECASE)  # on collapsed spaces

# String literals of Python (with prefixes and triple quotes), C++ and Go (double quotes, Go raw backticks).
_PY_LITERAL = (r"(?:[rRuUbBfF]{0,2})(?:\"\"\"(?:[^\\]|\\.)*?\"\"\"|'''(?:[^\\]|\\.)*?'''"
               r"|\"(?:[^\"\\\n]|\\.)*\"|'(?:[^'\\\n]|\\.)*')")
_C_LITERAL = r"(?:\"(?:[^\"\\\n]|\\.)*\"|`[^`]*`)"
_ANY_LITERAL = re.compile(f"{_PY_LITERAL}|{_C_LITERAL}", re.DOTALL)
_UNTERMINATED = re.compile(r"""(?:output\w{0,60}\s*\.\s*(?:append|push_back|emplace_back)\(|append\(\s*output\w{0,60}\s*,)\s*"""
                           r"""[rRuUbBfF]{0,2}(["'`])((?:(?!\1)[^\\\n]|\\.)*)\Z""", re.IGNORECASE | re.DOTALL)


def extract_output(response: str) -> str:
    """The steps the model filled in, one per line; the whole response when there is no code output, when the
    response is too long to parse, or when parsing fails in any way."""
    if not response or not response.strip() or len(response) > MAX_EXTRACT_CHARS:
        return response
    try:
        return _extract(response)
    except Exception:  # RecursionError, MemoryError, anything: the judge then reads the whole response
        return response


def _extract(response: str) -> str:
    blocks = code_blocks(response)
    items: list[str] = []
    for block in blocks:
        items += _output_items(block)
    items = [i for i in (x.strip() for x in items) if i and not _is_placeholder(i)]
    if items:
        return "\n".join(items)
    extras: list[str] = []
    for block in blocks:
        if block is not response or _parse_python(block) is not None:  # markdown '# headings' are not comments
            extras += _prints_and_comments(block)
    extras = [e for e in (x.strip() for x in extras) if e and not _is_placeholder(e)]
    return "\n".join(extras) if extras else response


def _is_placeholder(text: str) -> bool:
    return len(text) <= _MAX_PLACEHOLDER_CHARS and bool(_PLACEHOLDER.match(" ".join(text.split())))


def code_blocks(response: str) -> list[str]:
    """Fenced code blocks, the first `MAX_BLOCKS` (an unclosed last fence runs to the end: answers get cut at max
    tokens), else the text."""
    blocks = [m.group(1) for m in islice(_FENCE.finditer(response), MAX_BLOCKS)]
    return blocks or [response]


def _output_items(code: str) -> list[str]:
    tree = _parse_python(code)
    if tree is not None:
        found = _ast_output_items(tree)
        if found:
            return found
    return _text_output_items(code)


def _parse_python(code: str) -> ast.Module | None:
    try:
        return ast.parse(code)  # builds a syntax tree; nothing is compiled to bytecode or run
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


# --- Python, via ast -------------------------------------------------------------------------------------------

def _is_output_target(node: ast.AST) -> bool:
    if isinstance(node, ast.Name):
        return bool(_OUTPUT_NAME.search(node.id))
    if isinstance(node, ast.Attribute):
        return bool(_OUTPUT_NAME.search(node.attr))
    return False


def _strings(node: ast.AST) -> list[str]:
    """The text of string-valued expressions: constants, f-strings (holes kept as `{expr}`), lists, concatenation."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts.append(str(value.value))
            elif isinstance(value, ast.FormattedValue):
                parts.append("{" + ast.unparse(value.value) + "}")
        return ["".join(parts)]
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        return [s for elt in node.elts for s in _strings(elt)]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _concatenation(node)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
        return _strings(node.func.value)
    return []


def _concatenation(node: ast.BinOp) -> list[str]:
    """`a + b + c` is ((a + b) + c): walk the left spine in a loop (thousands of terms must not recurse), then fold
    left to right: two single strings join, anything else is kept side by side."""
    operands = []
    while isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        operands.append(node.right)
        node = node.left
    operands.append(node)
    result = _strings(operands.pop())
    for operand in reversed(operands):
        right = _strings(operand)
        result = [result[0] + right[0]] if len(result) == 1 and len(right) == 1 else result + right
    return result


def _ast_output_items(tree: ast.Module) -> list[str]:
    found: list[tuple[int, int, list[str]]] = []
    for node in ast.walk(tree):
        strings: list[str] = []
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _ADDERS:
            if _is_output_target(node.func.value):
                args = node.args[1:] if node.func.attr == "insert" else node.args
                strings = [s for arg in args for s in _strings(arg)]
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(_is_output_target(t) for t in targets) and node.value is not None:
                if isinstance(node.value, (ast.List, ast.Tuple)) or isinstance(node, ast.AugAssign):
                    strings = _strings(node.value)
        if strings:
            found.append((node.lineno, node.col_offset, strings))
    return [s for _, _, strings in sorted(found, key=lambda f: (f[0], f[1])) for s in strings]


# --- other languages and broken Python, via text rules ---------------------------------------------------------

_CALL_START = re.compile(
    r"\b\w{0,60}output\w{0,60}\s*\.\s*(?:append|extend|push_back|emplace_back|appendleft|add)\s*\("  # Python, C++
    r"|\bappend\s*\(\s*\w{0,60}output\w{0,60}\s*,"  # Go
    r"|\b\w{0,60}output\w{0,60}\s*(?::=|\+?=)\s*(?:\[\]string\s*|std::vector<std::string>\s*)?[\[{]"  # list literals
    r"|\b(?:std::)?vector<(?:std::)?string>\s+\w{0,60}output\w{0,60}\s*(?:=\s*)?\{",  # C++ initializer
    re.IGNORECASE,
)


def _text_output_items(code: str) -> list[str]:
    items: list[str] = []
    for match in islice(_CALL_START.finditer(code), MAX_CALLS):
        body = _balanced_tail(code, match.end())
        items += [_literal_text(lit.group(0)) for lit in _ANY_LITERAL.finditer(body)]
    last_line = code[-MAX_CALL_CHARS:].rpartition("\n")[2]  # an unterminated step runs to the end of the text
    cut = _UNTERMINATED.search(last_line)
    if cut:  # the answer stopped inside the last step: keep what was written
        items.append(_unescape_loose(cut.group(2)))
    return items


_LITERAL_OR_BRACKET = re.compile(f"{_PY_LITERAL}|{_C_LITERAL}|[][(){{}}]", re.DOTALL)


def _balanced_tail(code: str, start: int) -> str:
    """Text from `start` up to the bracket closing the one just opened (within `MAX_CALL_CHARS`), skipping
    brackets inside literals."""
    depth = 1
    for token in _LITERAL_OR_BRACKET.finditer(code, start, start + MAX_CALL_CHARS):
        char = token.group(0)
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
            if depth == 0:
                return code[start:token.start()]
    return ""  # unbalanced (cut off): the unterminated rule handles the tail


def _literal_text(literal: str) -> str:
    if literal.startswith("`"):
        return literal[1:-1]  # Go raw string
    try:
        value = ast.literal_eval(literal)  # reads one literal; never runs anything
        if isinstance(value, bytes):
            return value.decode("utf-8", "replace")
        return str(value)
    except (SyntaxError, ValueError):
        body = re.sub(r"^[rRuUbBfF]{0,2}", "", literal)
        quote = 3 if body[:3] in ('"""', "'''") else 1
        return _unescape_loose(body[quote:-quote])


def _unescape_loose(text: str) -> str:
    return re.sub(r"\\([\"'\\nt])", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), text)


# --- prints and comments ---------------------------------------------------------------------------------------

@functools.cache
def _template_comments() -> frozenset[str]:  # made at first use, not on import
    return template_comments()
_PRINT_START = re.compile(r"\b(?:print|fmt\.Print(?:ln|f)?|printf|puts|console\.log)\s*\(|std::cout\s*<<|cout\s*<<")
_OUTPUT_WORD = re.compile(r"\boutput_?list", re.IGNORECASE)  # output_list, outputList, output_list_initialization
_COMMENT = re.compile(r"(?:^|\s)(?:#(?!include)|//)\s?(.*)$", re.MULTILINE)


def _prints_and_comments(code: str) -> list[str]:
    found: list[tuple[int, str]] = []
    for match in islice(_PRINT_START.finditer(code), MAX_CALLS):
        stream = code[match.end():match.end() + MAX_CALL_CHARS].split(";")[0].split("\n")[0]  # cout << ... ;
        body = _balanced_tail(code, match.end()) if match.group(0).endswith("(") else stream
        found += [(match.start(), _literal_text(lit.group(0))) for lit in _ANY_LITERAL.finditer(body)]
    found += [(pos, text) for pos, text in _comments(code) if not _is_template_comment(text)]
    # Only the output part counts: a comment inside the model's decode() describes decoding, not the task.
    # Without an output part at all, nothing here is the answer: the caller falls back to the whole response.
    output_part = _OUTPUT_WORD.search(code)
    if output_part is None:
        return []
    return [text for pos, text in sorted(found) if pos >= output_part.start()]


def _comments(code: str) -> list[tuple[int, str]]:
    """Comments with their offsets: Python's tokenizer when the code parses as Python, a line rule otherwise."""
    if _parse_python(code) is not None:
        starts = [0]
        for line in code.splitlines(keepends=True):
            starts.append(starts[-1] + len(line))
        return [(starts[tok.start[0] - 1] + tok.start[1], tok.string.lstrip("#").strip())
                for tok in tokenize.generate_tokens(io.StringIO(code).readline) if tok.type == tokenize.COMMENT]
    blanked = _ANY_LITERAL.sub(lambda m: " " * len(m.group(0)), code)  # no '#' or '//' inside strings
    return [(m.start(1), code[m.start(1):m.end(1)].strip()) for m in _COMMENT.finditer(blanked)]


def _is_template_comment(text: str) -> bool:
    """Echoed from the prompt: equal to a template comment, or the start of one (the answer was cut off)."""
    text = text.strip().lower()
    comments = _template_comments()
    return text in comments or (len(text) >= 12 and any(c.startswith(text) for c in comments))
