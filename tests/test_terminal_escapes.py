"""Terminal output never carries raw control characters from user or model text: run, model and file names are
shown with their escapes made visible, in `runs`, the eval summary, reports and error lines."""

from __future__ import annotations

import json

from report_fixtures import counted, store_run
from test_store_env import cli

from polysafe.engine.store import Store
from polysafe.terminal import json_printable, printable

HOSTILE = "evil\x1b[2J\x1b]0;owned\x07\x9b31m\u202egnp.exe\r\n"
RAW = ("\x1b", "\x07", "\x9b", "\u202e", "\r")


def clean(text: str) -> bool:
    return not any(ch in text for ch in RAW)


def test_printable_makes_every_control_visible():
    assert printable(HOSTILE) == "evil\\x1b[2J\\x1b]0;owned\\x07\\x9b31m\\u202egnp.exe\\x0d\\x0a"
    assert printable("Łódź 北京 naïve") == "Łódź 北京 naïve"
    assert json.loads(json_printable(json.dumps({"k": HOSTILE}, ensure_ascii=False))) == {"k": HOSTILE}


def test_runs_table_and_json_show_escapes_not_controls(tmp_path):
    db = tmp_path / "r.db"
    with Store(db) as store:
        store_run(store, "run" + HOSTILE, counted("en", 1, 2), model="openai:m" + HOSTILE, judge="refusal" + HOSTILE,
                  task="file:" + HOSTILE)
    table = cli("runs", "--db", str(db))
    assert table.returncode == 0 and clean(table.stdout + table.stderr) and "\\x1b[2J" in table.stdout
    listed = cli("runs", "--db", str(db), "--json")
    assert listed.returncode == 0 and clean(listed.stdout) and json.loads(listed.stdout)[0]["name"] == "run" + HOSTILE
    report = cli("report", "run" + HOSTILE, "--db", str(db))
    assert report.returncode == 0 and clean(report.stdout + report.stderr)


def test_eval_summary_and_errors_show_escapes_not_controls(tmp_path, fake_openai):
    server = fake_openai(lambda body: "Sure" + HOSTILE)
    prompts = tmp_path / ("p" + HOSTILE.replace("\r\n", "").replace("/", "") + ".csv")
    prompts.write_text("id,text\n1,hello\n", encoding="utf-8")
    folder = tmp_path / ("db" + HOSTILE.replace("\r\n", ""))
    done = cli("eval", "file", "-p", str(prompts), "--model", f"openai:m{HOSTILE.strip()}@{server.url}",
               "--db", str(folder / "r.db"), "--run-name", "r" + HOSTILE)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert clean(out) and "r" + printable(HOSTILE) in out
    missing = cli("eval", "file", "-p", str(tmp_path / ("missing" + HOSTILE.strip() + ".csv")), "--model", "smollm2")
    assert missing.returncode == 2 and clean(missing.stdout + missing.stderr) and "\\x1b" in missing.stderr
