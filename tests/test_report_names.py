"""Reports know plugins only through what they declare: no registered benchmark or judge name appears in report/.

Distinctive names (multijail, codeattack, ...) may not appear anywhere in report/*.py, prose included, nor in a
module's file name. Names that are everyday words (file, harm, refusal, ...) may appear in prose, but never as
code: not as a string equal to the name, not as a spec prefix (`harm:`), not as a part of an identifier.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import polysafe
from polysafe.benchmarks import BENCHMARKS
from polysafe.judges import JUDGES

REPORT = Path(polysafe.__file__).parent / "report"
EVERYDAY = {"file", "harm", "refusal", "helpfulness", "llm"}  # words a report may use in prose


def names() -> set[str]:
    return {n.lower() for n in [*BENCHMARKS.names(), *JUDGES.names()]}


def identifiers(tree: ast.AST) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            out.add(node.id)
        elif isinstance(node, ast.Attribute):
            out.add(node.attr)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, ast.arg):
            out.add(node.arg)
        elif isinstance(node, ast.alias):
            out.update(node.name.split("."))
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.update(node.module.split("."))
    return out


def strings(tree: ast.AST) -> list[str]:
    return [node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)]


def violations(path: Path, plugin_names: set[str]) -> list[str]:
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source)
    parts = {p.lower() for ident in identifiers(tree) for p in re.split(r"_|(?<=[a-z])(?=[A-Z])", ident) if p}
    found = []
    for name in sorted(plugin_names):
        if name in re.split(r"[_.]", path.stem.lower()):
            found.append(f"{path.name}: the module is named after '{name}'")
        if name not in EVERYDAY and re.search(rf"\b{re.escape(name)}\b", source, re.I):
            found.append(f"{path.name}: mentions '{name}'")
        if name not in EVERYDAY and name in parts:
            found.append(f"{path.name}: an identifier contains '{name}'")
        for text in strings(tree):
            if text.strip().lower() == name or re.search(rf"(?<![\w-]){re.escape(name)}:", text, re.I):
                found.append(f"{path.name}: the string {text[:60]!r} names '{name}'")
    return found


def test_report_holds_no_benchmark_or_judge_names():
    plugin_names = names()
    assert {"multijail", "codeattack", "refusal", "llm", "harm"} <= plugin_names
    found = [v for path in sorted(REPORT.glob("*.py")) for v in violations(path, plugin_names)]
    assert not found, "\n".join(found)


def test_the_check_sees_names_in_code(tmp_path):
    """The checker itself: each way a name can hide in code is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text('from .x import y\nJUDGE_KINDS = {"llm": 1}\n\ndef f(task):\n    return task.split(":")[0] == "multijail"\n'
                   'CODEATTACK_TABLE = 1\nnote = "use harm:<model>"\n', encoding="utf-8")
    found = "\n".join(violations(bad, {"llm", "multijail", "codeattack", "harm", "file"}))
    assert "names 'llm'" in found and "mentions 'multijail'" in found and "identifier contains 'codeattack'" in found
    assert "names 'harm'" in found and "'file'" not in found
