"""`compare` states every setup difference between its runs: a warning on stderr, a note in every format, and an
error with --strict. Each run's share of answers stopped at max_tokens is shown."""

from __future__ import annotations

import csv
import io
import json

import pytest
from report_fixtures import Item, counted, store_run
from test_store_env import cli, error_line

from polysafe.engine.store import ItemRecord, Store
from polysafe.report.base import load_report_input
from polysafe.report.compare import comparison_csv, comparison_json, comparison_markdown
from polysafe.report.compare import compare as build

BASE = {"generation": {"temperature": 0.0, "top_p": 1.0, "max_tokens": 16, "seed": 0}, "translation": "human",
        "model_identity": "m1", "judge_identity": "j1", "scenarios": {"unintentional": "none"}}
ITEMS = counted("en", 3, 10)

# kind of difference: (what the second run changes, the words the statement must hold)
CASES = {
    "generation": ({"config": {**BASE, "generation": {**BASE["generation"], "max_tokens": 1}}}, "max_tokens differs"),
    "temperature": ({"config": {**BASE, "generation": {**BASE["generation"], "temperature": 0.7}}}, "temperature differs"),
    "judge": ({"judge": "llm:openai:gpt-4o"}, "judge differs"),
    "judge identity": ({"config": {**BASE, "judge_identity": "j2"}}, "judge identity"),
    "prompt set": ({"items": counted("en", 3, 10, scenario="unintentional")[:9] + [Item("en", "safe", query="other")]},
                   "prompt set differs"),
    "template": ({"config": {**BASE, "scenarios": {"intentional": "jailbreak:aim.txt"}, "template": "aim.txt",
                             "template_sha256": "ab" * 32}}, "template differs"),
    "translations": ({"config": {**BASE, "translation": "machine", "translator": "llm:openai:x"}}, "translations differs"),
    "dtype": ({"config": {**BASE, "model_identity": "m2"}, "model": "smollm2"}, "differs in weights, dtype or endpoint"),
    "capped": ({"config": {**BASE, "capped": "--max-calls 5 reached"}}, "is CAPPED"),
    "incomplete": ({"items": ITEMS[:6], "pending": 4}, "incomplete: 4 of 10 items pending"),
    "empty": ({"items": [Item("en", "error", query=f"en request {i}") for i in range(10)]}, "empty: no judged answer"),
}


def make_db(tmp_path, change: dict):
    path = tmp_path / "r.db"
    with Store(path) as store:
        store_run(store, "A", ITEMS, model="smollm2" if "model" in change else "openai:m", config=BASE)
        store_run(store, "B", change.get("items", ITEMS), model=change.get("model", "openai:m"),
                  judge=change.get("judge", "refusal"), config=change.get("config", BASE))
        pending = change.get("pending", 0)
        store.add_items("B", [ItemRecord(f"late-{i}", i, str(i), "en", "unintentional", "none", None, (),
                                         f"en request {i}", f"en request {i}", f"never-answered-{i}")
                              for i in range(10 - pending, 10)])  # the same prompts, not answered yet
    return path


def comparison(path):
    with Store(path, readonly=True) as store:
        return build([load_report_input(store, name, path.parent) for name in ("A", "B")])


def test_like_for_like_runs_have_no_difference(tmp_path):
    assert comparison(make_db(tmp_path, {})).differences == ()


@pytest.mark.parametrize("kind", sorted(CASES))
def test_each_kind_of_difference_is_stated_in_every_format(tmp_path, kind):
    change, words = CASES[kind]
    path = make_db(tmp_path, change)
    result = comparison(path)
    assert len(result.differences) == 1 and words in result.differences[0], result.differences
    assert words in comparison_markdown(result) and "Not like for like" in comparison_markdown(result)
    assert words in json.loads(comparison_json(result))["setup_differences"][0]
    assert all(words in row["setup_differences"] for row in csv.DictReader(io.StringIO(comparison_csv(result))))
    from polysafe.report.html import render_comparison_html

    with Store(path, readonly=True) as store:
        inputs = [load_report_input(store, name, path.parent) for name in ("A", "B")]
    assert 'id="setup-differences"' in render_comparison_html(result, inputs)
    assert words in png_note(result) and "Not like for like" in png_note(result)


def png_note(result) -> str:
    """The note a compare PNG carries as text (its `Description`), beside the same note drawn under the figure."""
    from PIL import Image

    from polysafe.report.heatmap import heatmap_png

    return Image.open(io.BytesIO(heatmap_png(result))).text.get("Description", "")


def test_the_png_note_of_like_for_like_runs_names_only_the_truncation(tmp_path):
    note = png_note(comparison(make_db(tmp_path, {})))
    assert note.startswith("Stopped at max_tokens: A: 0 of 10 responses (0.0%); B: 0 of 10") and "like for like" not in note


def test_the_cli_warns_on_stderr_and_strict_refuses(tmp_path):
    path = make_db(tmp_path, CASES["generation"][0])
    loose = cli("compare", "A", "B", "--db", str(path))
    assert loose.returncode == 0 and "warning: not like for like: max_tokens differs: A: 16, B: 1" in loose.stderr
    assert "max_tokens differs" in loose.stdout
    strict = cli("compare", "A", "B", "--db", str(path), "--strict")
    assert strict.returncode == 2 and "not like for like" in error_line(strict) and strict.stdout == ""
    (tmp_path / "same").mkdir()
    same = cli("compare", "A", "B", "--db", str(make_db(tmp_path / "same", {})), "--strict")
    assert same.returncode == 0 and same.stderr == ""


def test_each_runs_truncation_share_is_shown(tmp_path):
    path = tmp_path / "r.db"
    with Store(path) as store:
        store_run(store, "A", ITEMS, config=BASE)
        store_run(store, "B", ITEMS, config=BASE)
        store.db.execute("UPDATE responses SET finish_reason='length' WHERE key IN ('B/response-0', 'B/response-1')")
    result = comparison(path)
    assert [r.truncation for r in result.runs] == ["0 of 10 responses (0.0%)", "2 of 10 responses (20.0%)"]
    assert "stopped at max_tokens: 2 of 10 responses (20.0%)" in comparison_markdown(result)
    assert [row["stopped_at_max_tokens"] for row in csv.DictReader(io.StringIO(comparison_csv(result)))][-1] \
        == "2 of 10 responses (20.0%)"
    assert json.loads(comparison_json(result))["runs"][1]["truncation"] == "2 of 10 responses (20.0%)"
