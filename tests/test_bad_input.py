"""Bad input files never give a traceback: exit 2, one line naming the file, the line and the field, and no
run is stored. Each case goes through the real command line (`python -m polysafe.cli`)."""

from __future__ import annotations

import codecs
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def cli(*args, cwd=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENAI_API_KEY": "sk-test"}
    return subprocess.run([sys.executable, "-m", "polysafe.cli", *args], capture_output=True, text=True, timeout=300,
                          env=env, cwd=cwd)


# Nothing listens there: if a bad file slipped through, the run would fail fast instead of loading a model.
NO_MODEL = ("--model", "openai:none@http://127.0.0.1:9/v1", "--max-retries", "0")


def one_error_line(out) -> str:
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert "Traceback" not in out.stderr, out.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    return lines[0]


def runs_stored(db: Path) -> int:
    if not db.exists():
        return 0
    return sqlite3.connect(db).execute("SELECT COUNT(*) FROM runs").fetchone()[0]


# name, bytes, what the one line must say (besides the file name)
PROMPT_FILES = [
    ("latin1.csv", "id,text\n1,hello\n2,caf\xe9 cr\xe8me\n".encode("latin-1"), [":3:", "not UTF-8", "0xe9", "column 6"]),
    ("utf16.csv", codecs.BOM_UTF16_LE + "id,text\n1,hello\n".encode("utf-16-le"), ["UTF-16"]),
    ("utf16_nobom.jsonl", '{"id": 1, "text": "hi"}\n'.encode("utf-16-le"), [":1:", "NUL byte"]),
    ("binary.csv", bytes(range(256)) * 4, [":1:", "NUL byte"]),
    ("big.csv", b"id,text\n1,short\n2," + b"x" * 5_000_000 + b"\n", [":3 field 'text'", "5000000 characters"]),
    ("big.jsonl", b'{"id": 1, "text": "' + b"y" * 200_000 + b'"}\n', [":1 field 'text'", "200000 characters"]),
    ("deep.jsonl", b'{"id": 1, "text": "ok"}\n' + b"[" * 100_000 + b"\n", [":2:", "nested too deeply"]),
    ("surrogate.jsonl", b'{"id": 1, "text": "ok"}\n{"id": 2, "text": "bad \\ud800 half"}\n', [":2 field 'text'", "surrogate"]),
    ("surrogate_key.jsonl", b'{"id": 1, "text": "ok", "\\udfff": 1}\n', [":1", "surrogate"]),
    ("unterminated.csv", b'id,text\n1,fine\n2,"this quote never closes\n3,swallowed\n', [":3:", "unterminated quoted field"]),
    ("after_quote.csv", b'id,text\n1,"quoted"trailing\n', [":2:", "malformed CSV"]),
    ("huge_int.jsonl", b'{"id": ' + b"9" * 5000 + b', "text": "x"}\n', [":1:", "invalid JSON"]),
    ("escaped_nul.jsonl", b'{"id": 1, "text": "ok"}\n{"id": 2, "text": "bad \\u0000 nul"}\n', [":2 field 'text'", "NUL"]),
    ("escaped_nul_key.jsonl", b'{"id": 1, "text": "ok", "a\\u0000": 1}\n', [":1", "NUL"]),
    ("numeric_text.jsonl", b'{"id": 1, "text": "ok"}\n{"id": 2, "text": 123}\n', [":2 field 'text'", "string, not int"]),
    ("bool_id.jsonl", b'{"id": true, "text": "ok"}\n', [":1 field 'id'", "non-text"]),
]


@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_a_directory_or_fifo_as_prompts_says_what_it_is(tmp_path, kind):
    path = tmp_path / "prompts.csv"
    path.mkdir() if kind == "directory" else os.mkfifo(path)
    out = cli("eval", "file", "-p", str(path), "--db", str(tmp_path / "r.db"), *NO_MODEL)
    line = one_error_line(out)
    assert out.returncode == 2 and str(path) in line and "no such file" not in line
    assert ("is a directory" if kind == "directory" else "is a FIFO") in line


@pytest.mark.parametrize("name, content, needles", PROMPT_FILES, ids=[case[0] for case in PROMPT_FILES])
def test_bad_prompt_file_exits_2_with_one_line_and_stores_nothing(tmp_path, name, content, needles):
    path = tmp_path / name
    path.write_bytes(content)
    db = tmp_path / "results" / "polysafe.db"
    out = cli("eval", "file", "-p", str(path), "--db", str(db), *NO_MODEL)
    line = one_error_line(out)
    assert out.returncode == 2, out.stderr
    assert str(path) in line and all(needle in line for needle in needles), line
    assert runs_stored(db) == 0


def test_every_reader_rejects_the_same_bad_bytes(tmp_path, shared_data):
    """MultiJail --data, AdvBench --data and judge-agreement --labels share the strict readers."""
    latin = tmp_path / "multijail.csv"
    header = (shared_data / "multijail" / "MultiJail.csv").read_text(encoding="utf-8-sig").splitlines()[0]
    latin.write_bytes((header + "\n0,x,['a'],caf\xe9,,,,,,,,,\n").encode("latin-1"))
    out = cli("eval", "multijail", "--data", str(latin), "--languages", "en", "--db", str(tmp_path / "r.db"), *NO_MODEL)
    assert out.returncode == 2 and f"{latin}:2" in one_error_line(out)

    binary = tmp_path / "advbench.csv"
    binary.write_bytes(b"goal,target\n\x00\x01\x02\n")
    out = cli("eval", "codeattack", "--data", str(binary), "--variants", "python_list", "--db", str(tmp_path / "r.db"), *NO_MODEL)
    assert out.returncode == 2 and f"{binary}:2" in one_error_line(out)

    labels = tmp_path / "labels.csv"
    labels.write_text('prompt,response,label\nq,"never closed,safe\n', encoding="utf-8")
    out = cli("judge-agreement", "--labels", str(labels))
    assert out.returncode == 2 and f"{labels}:2" in one_error_line(out) and "unterminated" in one_error_line(out)
    assert runs_stored(tmp_path / "r.db") == 0


def test_the_unterminated_quote_was_accepted_silently_before(tmp_path):
    """What the strict reader prevents: Python's lenient csv reads the rest of the file into one cell."""
    import csv
    import io

    text = 'id,text\n1,"this quote never closes\n2,swallowed\n'
    assert list(csv.reader(io.StringIO(text))) == [["id", "text"], ["1", "this quote never closes\n2,swallowed\n"]]
    from polysafe.data.prompts import load_prompt_file
    from polysafe.errors import InputError

    path = tmp_path / "p.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=r"p.csv:2: unterminated"):
        load_prompt_file(path)


def test_a_good_file_with_odd_but_valid_text_still_loads(tmp_path):
    """The strict readers reject only what is broken: BOM, CRLF, quoted newlines, U+2028 in JSON, long cells."""
    from polysafe.data.prompts import load_prompt_file

    csv_file = tmp_path / "ok.csv"
    csv_file.write_bytes(codecs.BOM_UTF8 + b'id,text\r\n1,"two\r\nlines"\r\n2,' + b"z" * 131_072 + b"\r\n")
    assert [len(p.text) for p in load_prompt_file(csv_file)] == [len("two\r\nlines"), 131_072]
    jsonl = tmp_path / "ok.jsonl"
    jsonl.write_text('{"id": 1, "text": "line\u2028separator \\ud83d\\ude00"}\n', encoding="utf-8")
    assert load_prompt_file(jsonl)[0].text == "line\u2028separator \U0001F600"


# arguments, and what the one line must name
USAGE_ERRORS = [
    (("--bogus",), ["No such option: --bogus", "'polysafe --help'"]),
    (("eval", "multijail", "--bogus"), ["polysafe eval multijail:", "No such option: --bogus"]),
    (("eval", "multijail", "--limit", "many"), ["'--limit'", "valid integer"]),
    (("eval", "file"), ["polysafe eval file:", "Missing option '--prompts'"]),
    (("runs", "extra"), ["unexpected extra argument", "extra"]),
    # the same bound as a config file's generation.max_tokens
    (("eval", "multijail", "--max-tokens", "1000001"), ["'--max-tokens'", "less than or equal to 1000000"]),
    (("eval", "file", "--max-tokens", "99999999999999999999999"), ["'--max-tokens'", "1000000"]),
    (("defend", "ctrl", "run", "--max-tokens", "1000001"), ["'--max-tokens'", "1000000"]),
    (("defend", "self-defense", "run", "--gen-max-tokens", "1000001"), ["'--gen-max-tokens'", "1000000"]),
    (("lab", "generalization", "--safety", "s.json", "--max-tokens", "1000001"), ["'--max-tokens'", "1000000"]),
]


@pytest.mark.parametrize("args, needles", USAGE_ERRORS, ids=[" ".join(case[0]) for case in USAGE_ERRORS])
def test_a_usage_error_is_one_line_naming_the_option_and_exit_2(tmp_path, args, needles):
    out = cli(*args, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    line = one_error_line(out)
    for needle in needles:
        assert needle in line, line
    assert not out.stdout


def test_a_group_named_without_a_command_shows_its_help():
    """Its help, laid out as `--help` lays it out: not an error squeezed into one line."""
    out = cli("eval")
    assert out.stderr.startswith("Usage: polysafe eval") and "\nCommands:\n" in out.stderr and "error:" not in out.stderr
