"""Prompt files: good ones load; bad ones give one line naming file, line and field, exit 2, and store nothing."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest

from polysafe.data.prompts import load_prompt_file
from polysafe.errors import InputError


def cli(*args):
    return subprocess.run([sys.executable, "-m", "polysafe.cli", *args], capture_output=True, text=True, timeout=120)


def test_csv_and_jsonl_load_with_optional_columns(tmp_path):
    csv_file = tmp_path / "p.csv"
    csv_file.write_text("\ufeffid,text,language,category\n1, Hello ,en,greeting\n2,你好,zh,\n", encoding="utf-8")
    prompts = load_prompt_file(csv_file)
    assert [(p.id, p.text, p.language, p.category) for p in prompts] == [("1", "Hello", "en", "greeting"), ("2", "你好", "zh", None)]
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text('{"id": 7, "text": "Habari", "language": "sw"}\n\n{"id": "8", "text": "x"}\n')
    assert [(p.id, p.language) for p in load_prompt_file(jsonl)] == [("7", "sw"), ("8", "en")]


@pytest.mark.parametrize(
    "name, content, where",
    [
        ("extra.csv", "id,text\n1,ok\n2,too,many\n", ":3"),
        ("nocol.csv", "id,prompt\n1,hi\n", "field 'text'"),
        ("empty.csv", "", "field 'id'"),
        ("header_only.csv", "id,text\n", "no prompts"),
        ("lang.csv", "id,text,language\n1,hi,en\n2,hi,xx\n", ":3 field 'language'"),
        ("blank.csv", "id,text\n1,\n", ":2 field 'text'"),
        ("dup.csv", "id,text\n1,a\n1,b\n", ":3 field 'id'"),
        ("bad.jsonl", '{"id": 1, "text": "a"}\n{"id": 2, "text": \n', ":2"),
        ("notobj.jsonl", '[1, 2]\n', ":1"),
        ("prompts.txt", "hello", "must be .csv or .jsonl"),
    ],
)
def test_bad_files_name_the_place(tmp_path, name, content, where):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(InputError) as caught:
        load_prompt_file(path)
    message = str(caught.value)
    assert str(path) in message and where in message and "\n" not in message


def test_cli_bad_input_exits_2_with_one_line_and_stores_nothing(tmp_path):
    good = tmp_path / "good.csv"
    good.write_text("id,text\n1,hello\n")
    bad = tmp_path / "bad.csv"
    bad.write_text("id,text,language\n1,hello,en\n2,hola,klingon\n")
    db = tmp_path / "s.db"
    out = cli("eval", "file", "-p", str(bad), "--db", str(db))
    assert out.returncode == 2
    lines = [l for l in out.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and f"{bad}:3 field 'language'" in lines[0] and "klingon" in lines[0]
    assert not db.exists() or sqlite3.connect(db).execute("SELECT COUNT(*) FROM items").fetchone()[0] == 0


@pytest.mark.parametrize("args, needle", [
    (["--model", "nosuch:thing"], "unknown model 'nosuch'"),
    (["--judge", "oracle"], "unknown judge 'oracle'"),
    (["--attack", "none|"], "empty step"),
    (["--model", "openai"], "needs an argument"),
])
def test_cli_bad_specs_exit_2(tmp_path, args, needle):
    good = tmp_path / "good.csv"
    good.write_text("id,text\n1,hello\n")
    out = cli("eval", "file", "-p", str(good), "--db", str(tmp_path / "s.db"), *args)
    assert out.returncode == 2 and needle in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_cli_unknown_option_and_unknown_run(tmp_path):
    out = cli("eval", "file", "--prompts", "x.csv", "--no-such-flag")
    assert out.returncode == 2 and "no-such-flag" in out.stderr
    db = tmp_path / "s.db"
    good = tmp_path / "good.csv"
    good.write_text("id,text\n1,hello\n")
    report = cli("report", "nope", "--db", str(db))
    assert report.returncode != 0 and "no result store" in report.stderr
