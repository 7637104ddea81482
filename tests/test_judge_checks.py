"""Judge checks inside the loop: Cohen's kappa and agreement against hand-computed values, the seeded sample,
and a run with `judge_check` and `labels` whose figures reach the md, json and html reports and compare."""

from __future__ import annotations

import json
import re

import pytest
from fakes import last_user_text

import polysafe
from polysafe.api import RunOptions
from polysafe.engine.judge_check import compare_labels, sample_rows
from polysafe.engine.store import ResultRow, Store
from polysafe.errors import InputError
from polysafe.judges.agreement import cohen_kappa
from polysafe.models import ModelOptions
from polysafe.report.base import load_report_input, render
from polysafe.report.compare import compare, comparison_markdown

FAST = ModelOptions(max_retries=1, backoff_base=0.01, backoff_max=0.02, timeout=5, concurrency=4)


def row(position: int, label: str) -> ResultRow:
    return ResultRow(prompt_id=str(position), language="en", scenario="plain", chain="none", category=None, tags=(),
                     query="q", prompt="q", response="r", extracted="r", label=label, score=None, rationale="",
                     error=None, completion_tokens=1, position=position)


def test_kappa_and_agreement_match_hand_computed_values():
    # run:   U U U U S S S U U S   (6 unsafe, 4 safe)
    # other: U U U U S S S S S U   (5 unsafe, 5 safe); 7 of 10 agree
    # p_o = 0.7; p_e = (6*5 + 4*5) / 100 = 0.5; kappa = (0.7 - 0.5) / (1 - 0.5) = 0.4
    run = "U U U U S S S U U S".split()
    other = "U U U U S S S S S U".split()
    name = {"U": "unsafe", "S": "safe"}
    pairs = [(row(i, name[a]), name[b]) for i, (a, b) in enumerate(zip(run, other))]
    pairs += [(row(10, "error"), "safe"), (row(11, "unsafe"), "error")]  # left out, counted apart
    result = compare_labels("judge", "llm:x", 12, pairs)
    assert result.compared == 10 and result.left_out == 2
    assert result.agreement == pytest.approx(0.7) and result.kappa == pytest.approx(0.4)
    assert [(d.position, d.run_label, d.other_label) for d in result.disagreements] == [
        (7, "unsafe", "safe"), (8, "unsafe", "safe"), (9, "safe", "unsafe")]


def test_three_class_kappa_by_hand():
    # 3x3 table (rows first rater, columns second): safe [2,1,0], unsafe [0,3,1], invalid [1,0,2]; n = 10
    # p_o = 7/10; marginals first (3,4,3), second (3,4,3); p_e = (9+16+9)/100 = 0.34; kappa = 0.36/0.66
    cells = {("safe", "safe"): 2, ("safe", "unsafe"): 1, ("unsafe", "unsafe"): 3, ("unsafe", "invalid"): 1,
             ("invalid", "safe"): 1, ("invalid", "invalid"): 2}
    pairs = [pair for pair, count in cells.items() for _ in range(count)]
    assert cohen_kappa(pairs) == pytest.approx(0.36 / 0.66)
    assert compare_labels("labels", "f", 10, [(row(i, a), b) for i, (a, b) in enumerate(pairs)]).kappa == pytest.approx(0.36 / 0.66)


def test_the_sample_is_seeded_and_skips_unjudged_answers():
    rows = [row(i, "error" if i % 5 == 0 else "safe") for i in range(40)]
    first, again, other = sample_rows(rows, 6, 0), sample_rows(rows, 6, 0), sample_rows(rows, 6, 1)
    assert [r.position for r in first] == [r.position for r in again] != [r.position for r in other]
    assert len(first) == 6 and all(r.label == "safe" for r in first)
    assert [r.position for r in first] == sorted(r.position for r in first)
    assert len(sample_rows(rows, 100, 0)) == 32  # all judged answers when there are fewer than n


def target_reply(body: dict) -> str:
    number = int(re.search(r"question number (\d+)", last_user_text(body)).group(1))
    return (f"Sure, here is how to do question number {number}: step 1, step 2." if number % 2 == 0
            else f"I'm sorry, I can't help with question number {number}.")


def check_judge_reply(body: dict) -> str:
    text = last_user_text(body)
    number = int(re.search(r"question number (\d+)", text.split("[RESPONSE")[-1]).group(1))
    unsafe = ("Sure" in text.split("[RESPONSE")[-1]) != (number in (1, 2))  # it disagrees on items 1 and 2
    return f"The response {'complies' if unsafe else 'refuses'}.\nLabel: {'unsafe' if unsafe else 'safe'}"


def labels_file(tmp_path, rows: list[tuple[int, str]], extra: str = "") -> str:
    path = tmp_path / "labels.csv"
    lines = ["prompt,response,label"]
    for number, label in rows:
        response = target_reply({"messages": [{"role": "user", "content": f"question number {number}"}]})
        lines.append(f'question number {number},"{response}",{label}')
    path.write_text("\n".join(lines) + "\n" + extra, encoding="utf-8")
    return str(path)


def test_checks_run_in_the_loop_are_stored_and_reach_every_report(fake_openai, tmp_path):
    target, judge = fake_openai(target_reply), fake_openai(check_judge_reply)
    prompts = tmp_path / "p.csv"
    prompts.write_text("id,text\n" + "".join(f"q{i},question number {i}\n" for i in range(10)), encoding="utf-8")
    labels = labels_file(tmp_path, [(0, "unsafe"), (1, "safe"), (2, "safe"), (3, "safe")],
                         extra="question number 99,nobody said this,unsafe\n")
    db = tmp_path / "r.db"
    options = RunOptions(model=FAST, db=db, judge_check=f"llm:openai:judge@{judge.url}", judge_check_n=10, labels=labels)
    model = f"openai:target@{target.url}"
    summary = polysafe.evaluate("file", model=model, judge="refusal", params={"prompts": str(prompts)}, options=options)
    by_judge, by_labels = summary.extra["judge_checks"]
    # run (refusal judge): even items unsafe, odd safe. Second judge flips items 1 and 2: 8 of 10 agree,
    # marginals 5/5 on both sides, p_e = 0.5, kappa = (0.8 - 0.5) / 0.5 = 0.6
    assert (by_judge["compared"], by_judge["agreement"], by_judge["kappa"]) == (10, 0.8, pytest.approx(0.6))
    assert [(d["position"], d["run_label"], d["other_label"]) for d in by_judge["disagreements"]] == [
        (1, "safe", "unsafe"), (2, "unsafe", "safe")]
    # labels on items 0-3 (run U S U S, human U S S S): 3 of 4 agree, p_e = (2*1 + 2*3) / 16 = 0.5, kappa = 0.5
    assert (by_labels["compared"], by_labels["left_out"], by_labels["kappa"]) == (4, 1, pytest.approx(0.5))
    assert judge.received == 10

    again = polysafe.evaluate("file", model=model, judge="refusal", params={"prompts": str(prompts)}, options=options)
    assert judge.received == 10 and again.generated == 0  # the check's verdicts are stored: a rerun asks nothing
    assert again.extra["judge_checks"][0]["kappa"] == pytest.approx(0.6)

    with Store(db) as store:
        data = load_report_input(store, summary.run, tmp_path / "reports")
        md, js = render("md", data), json.loads(render("json", data))
        html_path = render("html", data)
    assert f"judge check vs judge llm:openai:judge@{judge.url}: Cohen's kappa 0.60, agreement 80.0% over 10 answers" in md
    assert "judge check vs human labels labels.csv: Cohen's kappa 0.50, agreement 75.0% over 4 answers" in md
    assert "## Judge checks" in md and "| 2 | q1 | en | none | safe | unsafe |" in md
    assert "1 of 5 labelled rows match no item" in md
    assert [c["kappa"] for c in js["judge_checks"]] == [pytest.approx(0.6), pytest.approx(0.5)]
    assert any("Cohen's kappa 0.60" in line for line in js["setup"]["lines"])
    page = open(html_path, encoding="utf-8").read()
    assert 'id="judge-checks"' in page and page.count('data-judgecheck="disagrees"') == 2
    assert page.count('data-labelcheck="disagrees"') == 1 and "#responses?judgecheck=disagrees" in page

    plain = polysafe.evaluate("file", model=model, judge="refusal", params={"prompts": str(prompts)},
                              options=RunOptions(model=FAST, db=db, run_name="plain"))
    with Store(db) as store:
        inputs = [load_report_input(store, name, tmp_path) for name in (summary.run, plain.run)]
    text = comparison_markdown(compare(inputs))
    from polysafe.report.html import render_comparison_html

    compared = render_comparison_html(compare(inputs), inputs)
    assert compared.count('data-judgecheck="disagrees"') == 2 and "Cohen&#x27;s kappa 0.60" in compared
    assert f"judge check κ 0.60 vs llm:openai:judge@{judge.url} (n=10); κ 0.50 vs labels.csv (n=4)" in text
    assert text.count("judge check") == 1  # the run without checks shows none


def test_a_bad_labels_file_or_check_judge_stops_before_anything_is_stored(fake_openai, tmp_path):
    target = fake_openai(target_reply)
    prompts = tmp_path / "p.csv"
    prompts.write_text("id,text\nq0,question number 0\n", encoding="utf-8")
    bad = tmp_path / "bad.csv"
    bad.write_text("prompt,response,label\nquestion number 0,x,maybe\n", encoding="utf-8")
    db = tmp_path / "r.db"
    for options in (RunOptions(model=FAST, db=db, labels=str(bad)),
                    RunOptions(model=FAST, db=db, judge_check="no-such-judge")):
        with pytest.raises(InputError):
            polysafe.evaluate("file", model=f"openai:t@{target.url}", params={"prompts": str(prompts)}, options=options)
    assert target.received == 0 and not db.exists()


def test_cli_flags_run_the_check_and_print_kappa(fake_openai, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    target, judge = fake_openai(target_reply), fake_openai(check_judge_reply)
    prompts = tmp_path / "p.csv"
    prompts.write_text("id,text\n" + "".join(f"q{i},question number {i}\n" for i in range(4)), encoding="utf-8")
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-m", "polysafe.cli", "eval", "file", "--prompts", str(prompts),
                          "--model", f"openai:t@{target.url}", "--judge", "refusal", "--db", str(tmp_path / "r.db"),
                          "--judge-check", f"llm:openai:judge@{judge.url}", "--judge-check-n", "3"],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(root), "OPENAI_API_KEY": "sk-test"})
    assert out.returncode == 0, out.stderr
    assert "Cohen's kappa" in out.stderr + out.stdout and "over 3 answers" in out.stderr + out.stdout
    assert judge.received == 3


def test_declared_categories_are_counted_from_verdict_parts():
    from types import SimpleNamespace

    from polysafe.engine.store import RunRecord
    from polysafe.judges.llamaguard import CATEGORIES
    from polysafe.report.judge_checks import categories_markdown, category_counts

    def answer(label, codes):
        return SimpleNamespace(label=label, parts={"categories": codes} if codes is not None else None)

    rows = [answer("unsafe", ["S1", "S10"]), answer("unsafe", ["S1"]), answer("safe", []), answer("error", None)]
    declared = RunRecord("r", "file", "m", "llamaguard:x", {"judge_description": {"traits": {"categories": CATEGORIES}}})
    counts = {c["category"]: c["count"] for c in category_counts(declared, rows)}
    assert counts["S1"] == 2 and counts["S10"] == 1 and counts["S14"] == 0 and len(counts) == 14
    assert "| S1 | Violent Crimes | 2 |" in categories_markdown(declared, rows)
    undeclared = RunRecord("r", "file", "m", "llamaguard:x", {"judge_description": {"traits": {}}})
    assert category_counts(undeclared, rows) == [] and categories_markdown(undeclared, rows) == ""  # never by name


def test_a_config_file_asks_for_the_check(tmp_path):
    from polysafe.config import prepare_run_set

    prompts = tmp_path / "p.csv"
    prompts.write_text("id,text\nq0,question number 0\n", encoding="utf-8")
    config = tmp_path / "run.yaml"
    config.write_text(f"models: [openai:m@http://127.0.0.1:9/v1]\njudge: refusal\njudge_check: llm:openai:j@http://127.0.0.1:9/v1\n"
                      f"judge_check_n: 7\nbenchmarks:\n  - name: file\n    params: {{prompts: {prompts}}}\n", encoding="utf-8")
    options, [prepared] = prepare_run_set(config, db=tmp_path / "r.db")
    assert options.judge_check_n == 7 and prepared.check.n == 7
    assert prepared.check.judge.spec == "llm:openai:j@http://127.0.0.1:9/v1"


def test_the_dry_run_counts_the_judge_check_calls(fake_openai, tmp_path):
    target, judge = fake_openai(target_reply), fake_openai(check_judge_reply)
    prompts = tmp_path / "p.csv"
    prompts.write_text("id,text\n" + "".join(f"q{i},question number {i}\n" for i in range(6)), encoding="utf-8")
    options = RunOptions(model=FAST, db=tmp_path / "r.db", judge_check=f"llm:openai:judge@{judge.url}", judge_check_n=4)
    kwargs = dict(model=f"openai:target@{target.url}", judge="refusal", params={"prompts": str(prompts)})
    estimate = polysafe.estimate("file", options=options, **kwargs)
    group = estimate.plan.group("judge check")
    assert group.calls == 4 and group.spec == f"openai:judge@{judge.url}" and group.prompt_tokens > 0
    assert any(line.startswith(f"judge check calls (openai:judge@{judge.url}): 4 to make") for line in estimate.lines())
    polysafe.evaluate("file", options=options, **kwargs)
    assert judge.received == group.calls and target.received == estimate.plan.model_calls  # the counts were exact
