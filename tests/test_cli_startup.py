"""Start-up: `polysafe --help` imports no stage it does not show, and the generic benchmark commands that are
added on first use are still all there (the import times themselves are measured by bench/harness_overhead.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Modules that `--help` does not need; each costs 10-140 ms of imports.
HEAVY = ("torch", "transformers", "pydantic", "rich", "asyncio", "importlib.metadata",
         "polysafe.benchmarks", "polysafe.engine.store", "polysafe.engine.runner", "polysafe.report.base", "typer.rich_utils")


def imported_after(*argv: str) -> set[str]:
    script = ("import json, sys\n"
              f"sys.argv = ['polysafe', *{list(argv)!r}]\n"
              "from polysafe.cli import main\n"
              "try:\n    main()\nexcept SystemExit:\n    pass\n"
              "print(json.dumps(sorted(sys.modules)))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_help_imports_no_stage_and_no_rich():
    loaded = imported_after("--help")
    assert "polysafe.cli" in loaded
    assert not [name for name in HEAVY if name in loaded]


def test_generic_benchmark_commands_appear_once_the_eval_group_is_used():
    done = subprocess.run([sys.executable, "-m", "polysafe.cli", "eval", "--help"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}, timeout=120)
    assert done.returncode == 0, done.stderr
    commands = done.stdout.split("Commands:")[1].split()
    from polysafe.benchmarks import BENCHMARKS

    assert set(BENCHMARKS.names()) <= set(commands)
    assert "polysafe.benchmarks" in imported_after("eval", "ciphers", "--help")
