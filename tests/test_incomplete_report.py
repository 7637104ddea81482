"""A run interrupted before its answers came says it is incomplete, with its pending count, in every report format."""

from __future__ import annotations

import json

import pytest
from report_fixtures import counted, store_run

from polysafe.engine.store import ItemRecord, Store
from polysafe.report.base import RENDERERS, load_report_input, render

FORMATS = ("md", "json", "tiers", "tiers-json", "scores", "html", "png")


@pytest.fixture
def interrupted(tmp_path):
    path = tmp_path / "r.db"
    with Store(path) as store:
        store_run(store, "cut", counted("en", 1, 2), config={"generation": {"max_tokens": 16}})
        store.add_items("cut", [ItemRecord(f"late-{i}", 2 + i, f"p{i}", "zh", "unintentional", "none", None, (),
                                           f"q {i}", f"q {i}", f"never-{i}") for i in range(30)])
        store_run(store, "none-yet", [], config={"generation": {"max_tokens": 16}})
        store.add_items("none-yet", [ItemRecord(f"k{i}", i, f"p{i}", "en", "unintentional", "none", None, (),
                                                f"q {i}", f"q {i}", f"never-{i}") for i in range(30)])
    return path


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("run, pending, items", [("cut", 30, 32), ("none-yet", 30, 30)])
def test_every_format_says_incomplete_with_the_pending_count(interrupted, tmp_path, fmt, run, pending, items):
    assert fmt in RENDERERS.names()
    with Store(interrupted, readonly=True) as store:
        data = load_report_input(store, run, tmp_path / "out")
    out = render(fmt, data)
    if fmt in ("html", "png"):  # written to a file; render returns its path
        from pathlib import Path

        content = Path(out).read_bytes()
        text = content.decode("utf-8", "replace")
    else:
        text = out
    assert f"INCOMPLETE: {pending} of {items} items pending" in text, text[:3000]
    if fmt.endswith("json"):
        assert any(f"INCOMPLETE: {pending} of {items}" in line for line in json.loads(out)["setup"]["lines"])


def test_a_finished_run_says_nothing_of_the_kind(tmp_path):
    path = tmp_path / "r.db"
    with Store(path) as store:
        store_run(store, "done", counted("en", 1, 3))
        data = load_report_input(store, "done", tmp_path)
    assert "INCOMPLETE" not in render("md", data) and "INCOMPLETE" not in render("json", data)
