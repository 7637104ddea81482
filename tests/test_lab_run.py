"""A small, fast lab run end to end on a tiny random Llama (the embedded model's tokenizer): both adapters are
trained, base / A / B are profiled on held-out ids only, the page is written; a rerun trains nothing and calls
no model."""

from __future__ import annotations

import json

import pytest
from test_ctrl_perplexity import tiny_llama_dir
from typer.testing import CliRunner

from report_fixtures import browser  # noqa: F401 (a fixture)

from polysafe.cli import app
from polysafe.lab import generalization


def lab(shared_data, tmp_path, *extra):
    benign = tmp_path / "benign.json"
    benign.write_text(json.dumps({"instructions": ["Name a colour.", "Give me a word for happy.",
                                                   "What is two plus two?", "Say hello in French."]}))
    return CliRunner().invoke(app, [
        "lab", "generalization", "--model", f"hf:{tiny_llama_dir()}",
        "--safety", str(shared_data / "ctrl/bianchi2024/safety_only_data_Instructions.json"),
        "--data", str(shared_data / "multijail/MultiJail.csv"), "--benign", str(benign),
        "--prompts", "3", "--safety-examples", "4", "--multilingual-ids", "1", "--benign-eval", "2",
        "--axes", "languages,code", "--languages", "sw", "--variants", "python_list",
        "--max-steps", "1", "--batch-size", "2", "--max-length", "96", "--max-tokens", "4", "--helpful-tokens", "8",
        "--out", str(tmp_path / "lab"), "--db", str(tmp_path / "r.db"), *extra])


def test_small_lab_trains_both_adapters_profiles_held_out_ids_and_reruns_for_free(shared_data, tmp_path, monkeypatch, browser):
    trained = []
    real = generalization.finetune

    def counting(base, examples, out_dir, config, progress=None):
        trained.append((out_dir.name, len(examples)))
        assert config.max_steps == 1 and config.batch_size == 2 and config.max_length == 96
        return real(base, examples, out_dir, config, progress=progress)

    monkeypatch.setattr(generalization, "finetune", counting)
    first = lab(shared_data, tmp_path)
    assert first.exit_code == 0, first.output
    out = tmp_path / "lab"
    report = json.loads((out / "lab.json").read_text())
    split = json.loads((out / "split.json").read_text())

    # both adapters trained: A on safety + helpful pairs, B on A's data + one MultiJail id in ten languages
    assert [name[0] for name, _ in trained] == ["A", "B"]
    a, b = report["adapters"]
    assert a["examples"] == 8 and a["counts"]["bianchi2024"] == 4
    assert b["examples"] == a["examples"] + 10
    assert sum(v for k, v in b["counts"].items() if k.startswith("multijail/")) == 10
    b_rows = [json.loads(line) for line in (out / "train-B.sources.jsonl").read_text().splitlines()]
    assert {r["id"] for r in b_rows if r["id"]} <= set(split["train"])

    # profiles: held-out ids only, the same seeds in every cell of every model
    assert set(report["eval_ids"]) <= set(split["evaluation"]) and len(report["eval_ids"]) == 3
    matrix = report["transfer_matrix"]
    assert matrix["seed_ids"] == report["eval_ids"]
    assert [row["cell"] for row in matrix["rows"]] == ["reference/en", "language/sw", "code/python_list"]
    assert len(matrix["profiles"]) == 3 and matrix["metric"]["name"] == "non-refusal rate"
    assert all(e["n"] + 0 <= 3 and e is not None for row in matrix["rows"] for e in row["entries"])
    assert [o["label"] for o in report["overrefusal"]] == ["base", "A", "B"] and report["overrefusal"][0]["n"] <= 2
    assert report["overlap"]["compared"] > 0

    # the page: md, json, html, png, and the printed matrix with its reading
    assert (out / "lab.png").read_bytes().startswith(b"\x89PNG")
    page = (out / "lab.html").read_text()
    assert 'id="lab-matrix"' in page and "over-refusal" in page and "non-refusal rate" in page
    assert "unsafe rate" not in first.stdout and "non-refusal rate" in first.stdout
    assert "| reference/en |" in first.stdout and "HTML page:" in first.stdout
    assert "adapters trained this run: 2" in first.stdout
    see_page_in_chromium(browser, out / "lab.html", tmp_path / "lab.png")

    # a rerun: nothing trained, no model called, the same matrix
    def refuse(*args, **kwargs):
        raise AssertionError("retrained")

    monkeypatch.setattr(generalization, "finetune", refuse)
    second = lab(shared_data, tmp_path)
    assert second.exit_code == 0, second.output
    assert "model calls this run: 0;" in second.stdout and "adapters trained this run: 0" in second.stdout
    assert json.loads((out / "lab.json").read_text())["transfer_matrix"] == matrix


def see_page_in_chromium(browser, page, shot):
    """The page opens from disk: the matrix (3 cells + over-refusal, 3 models), the reading, the figure decoded."""
    from selenium.webdriver.common.by import By

    browser.get(page.as_uri())
    rows = browser.find_elements(By.CSS_SELECTOR, "#lab-matrix tbody tr")
    assert [r.find_element(By.TAG_NAME, "th").text for r in rows] == [
        "reference/en", "language/sw", "code/python_list", "over-refusal (benign)"]
    assert all(len(r.find_elements(By.TAG_NAME, "td")) == 3 and r.is_displayed() for r in rows)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#lab-reading li")) >= 4
    image = browser.find_element(By.ID, "lab-png")
    assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image) > 300
    assert browser.get_screenshot_as_file(str(shot)) and shot.stat().st_size > 10_000


def test_lab_cli_defaults_are_the_library_defaults():
    import inspect

    from polysafe.commands.lab import generalization_command as command
    from polysafe.lab.generalization import LabConfig

    config = LabConfig(safety="x")
    params = inspect.signature(command).parameters
    for name in ("prompts", "safety_examples", "helpful_share", "multilingual_ids", "benign_eval", "eval_share",
                 "helpful_tokens", "max_tokens"):
        assert params[name].default == getattr(config, name), name
    for name in ("axes", "languages", "variants", "ciphers"):
        assert tuple(params[name].default.split(",")) == getattr(config, name), name
    ft = config.finetune
    assert (params["lr"].default, params["batch_size"].default, params["max_length"].default, params["max_steps"].default) == \
        (ft.learning_rate, ft.batch_size, ft.max_length, ft.max_steps)
    assert "train" not in params


@pytest.mark.parametrize("flag,value", [("--prompts", "1"), ("--helpful-share", "0.99")])
def test_bad_sizes_stop_before_anything_runs(shared_data, tmp_path, flag, value):
    result = lab(shared_data, tmp_path, flag, value)
    assert result.exit_code == 2 and not (tmp_path / "lab").exists()
