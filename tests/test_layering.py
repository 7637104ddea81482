"""The stages stack in one direction: a lower stage never imports an upper one, and nothing imports the CLI.

Read from the source with `ast` (imports inside functions count too), so a lazy import can't hide a cycle.
Imports under `if TYPE_CHECKING:` are type hints only and are left out.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import polysafe

PACKAGE = Path(polysafe.__file__).parent

# Lower number = lower stage. A module may import its own rank or lower ones.
RANKS = {
    "errors": 0, "types": 0, "registry": 0, "secrets": 0, "keys": 0, "paths": 0, "languages": 0, "terminal": 0,
    "data": 1,
    "models": 2,
    "translators": 3, "judges": 3,
    "attacks": 4,
    "engine": 5,
    "report": 6, "training": 6,
    "benchmarks": 7,
    "defenses": 8,
    "api": 9, "config": 9, "lab": 9,
    "testing": 9,
    "commands": 10, "cli": 11,
}


def stage_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imported_modules(path: Path, module: str) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    hints = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
             for n in ast.walk(block)}
    for node in ast.walk(tree):
        if id(node) in hints:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("polysafe"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("polysafe"):
                found.add(target)
    return found


def all_modules():
    for info in pkgutil.walk_packages([str(PACKAGE)], prefix="polysafe."):
        spec = importlib.util.find_spec(info.name)
        yield info.name, Path(spec.origin)


def test_every_stage_has_a_rank():
    stages = {stage_of(name) for name, _ in all_modules()} - {"__init__", "__main__"}
    assert stages <= set(RANKS), f"give these a rank: {sorted(stages - set(RANKS))}"


def test_no_lower_stage_imports_an_upper_one():
    offences = []
    for name, path in all_modules():
        own = RANKS.get(stage_of(name))
        if own is None:
            continue
        for target in imported_modules(path, name):
            other = RANKS.get(stage_of(target))
            if other is not None and other > own:
                offences.append(f"{name} -> {target}")
    assert not offences, "lower stage imports an upper one:\n" + "\n".join(sorted(offences))
