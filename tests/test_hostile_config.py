"""Hostile config files: each is one line naming the file (and line), exit 2, and stops in well under a second."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from polysafe.config import load_run_set, prepare_run_set
from polysafe.errors import InputError

ROOT = Path(__file__).resolve().parent.parent
HEAD = "models: [smollm2]\nbenchmarks:\n  - name: file\n"


def billion_laughs() -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    return HEAD + "\n".join(lines) + "\n"


HOSTILE = {
    "billion laughs.yaml": (billion_laughs(), "aliases counted as expanded"),
    "deep.yaml": (HEAD + "x: " + "[" * 2000 + "]" * 2000 + "\n", "nested more than"),
    "deep block.yaml": (HEAD + "".join(f"{'  ' * i}k{i}:\n" for i in range(2000)) + "  " * 2000 + "v\n", "nested more than"),
    "deep.json": ('{"models": ["smollm2"], "x": ' + "[" * 2000 + "]" * 2000 + "}", "nested more than"),
    "deep.toml": ('models = ["smollm2"]\nx = ' + "[" * 2000 + "]" * 2000 + "\n", "nested more than"),
    "deep tables.toml": ('models = ["smollm2"]\n[' + ".".join(f"t{i}" for i in range(2000)) + "]\n", "nested more than"),
    "bool max_tokens.yaml": (HEAD + "generation: {max_tokens: true}\n", "max_tokens"),
    "huge max_tokens.yaml": (HEAD + "generation: {max_tokens: 99999999999999999999999}\n", "max_tokens"),
    "bool concurrency.toml": ('models = ["smollm2"]\nconcurrency = true\n[[benchmarks]]\nname = "file"\n', "concurrency"),
    "string number.yaml": (HEAD + "concurrency: '8'\n", "concurrency"),
    "duplicate key.yaml": ("models: [smollm2]\nbenchmarks:\n  - name: file\nconcurrency: 2\nconcurrency: 64\n",
                           "key 'concurrency' given twice"),
    "duplicate nested key.yaml": (HEAD + "generation:\n  max_tokens: 5\n  max_tokens: 6\n", "key 'max_tokens' given twice"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_config_is_one_input_error_fast(tmp_path, name):
    text, reason = HOSTILE[name]
    path = tmp_path / name.replace(" ", "_")
    path.write_text(text, encoding="utf-8")
    started = time.perf_counter()
    with pytest.raises(InputError) as caught:
        load_run_set(path)
    assert time.perf_counter() - started < 0.5
    assert reason in str(caught.value) and str(caught.value).startswith(str(path))


def test_a_duplicate_key_names_the_line_of_its_second_use(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text(HOSTILE["duplicate key.yaml"][0], encoding="utf-8")
    with pytest.raises(InputError, match=r"dup.yaml:5: key 'concurrency' given twice"):
        load_run_set(path)


def test_a_bool_benchmark_parameter_is_refused_where_a_number_is_expected(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("models: [smollm2]\nbenchmarks:\n  - name: overrefusal\n    params: {limit: true}\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"p.yaml:4 field 'benchmarks.0.params.limit'"):
        prepare_run_set(path)


def test_ordinary_aliases_and_floats_still_load(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("models: [smollm2]\nbenchmarks:\n  - name: file\n    params: &p {limit: 3}\n  - name: overrefusal\n"
                    "    params: *p\ngeneration: {temperature: 0, top_p: 1, max_tokens: 64}\ntimeout: 30\n", encoding="utf-8")
    run_set, _ = load_run_set(path)
    assert run_set.generation.max_tokens == 64 and run_set.generation.temperature == 0.0 and run_set.timeout == 30
    assert run_set.benchmarks[1].params == {"limit": 3}


@pytest.mark.parametrize("name", ["billion laughs.yaml", "deep.toml", "duplicate key.yaml"])
def test_the_command_exits_2_with_one_line(tmp_path, name):
    path = tmp_path / name.replace(" ", "_")
    path.write_text(HOSTILE[name][0], encoding="utf-8")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "polysafe.cli", "eval", "--config", str(path)], capture_output=True,
                          text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=60)
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0 and "Traceback" not in done.stderr
    assert time.perf_counter() - started < 20  # the interpreter's start-up included; the parse itself is bounded above
