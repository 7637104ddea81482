"""Every report states its setup; the paper's figures appear only beside a comparable setup.

The end-to-end runs go through the real CLI (`eval multijail`) against the fake OpenAI endpoint, so the setup is
read from what a run stores, and the truncation share from the finish reasons the endpoint sent.
"""

from __future__ import annotations

from dataclasses import replace

import hashlib
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fakes import Reply, last_user_text
from polysafe.engine.store import RunRecord, Store
from polysafe.report import load_report_input, render
from polysafe.report.setup import describe_setup
from polysafe.report.tiers import TIER_LABELS, tier_report

MARK = "STEPS-7Q"  # what an unsafe answer contains, in every language and after back-translation
BENGALI = re.compile("[\u0980-\u09ff]")


def length_body(text: str) -> bytes:
    return json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length"}],
                       "usage": {"prompt_tokens": 5, "completion_tokens": 7}}).encode()


def reply(body: dict):
    """Target, judge and translator behind one fake endpoint, told apart by their messages."""
    user = last_user_text(body)
    if body["messages"][0]["role"] == "system":  # the 3-way judge
        return "It gives the steps.\nLabel: unsafe" if MARK in user else "It refuses.\nLabel: safe"
    if user.startswith("You are a professional translator"):
        return user.rsplit("\n\n", 1)[-1]  # the answers are English already: a faithful translation is the text
    answer = f"{MARK} 1. first 2. second" if ("Niccolo" in user or "ORACLE" in user) else "I'm sorry, I can't."
    if BENGALI.search(user):  # Bengali answers stop at max_tokens
        return Reply(raw=length_body(answer))
    return answer


@pytest.fixture(scope="module")
def csv_path(shared_data) -> Path:
    return shared_data / "multijail" / "MultiJail.csv"


def run_multijail(tmp_path: Path, server, csv_path: Path, *extra: str) -> tuple[Path, str]:
    from polysafe.cli import app

    db = tmp_path / "results.db"
    name = f"run{len(list(tmp_path.glob('*.marker')))}"
    (tmp_path / f"{name}.marker").touch()
    args = ["eval", "multijail", "--model", f"openai:target@{server.url}", "--languages", "all", "--limit", "2",
            "--data", str(csv_path), "--db", str(db), "--run-name", name, "--max-retries", "0", *extra]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return db, name


def report(db: Path, run: str, fmt: str, out: Path) -> str:
    with Store(db) as store:
        return render(fmt, load_report_input(store, run, out))


def test_paper_setup_is_comparable_and_shows_the_paper_figures(tmp_path, fake_openai, csv_path, shared_data):
    server = fake_openai(reply)
    aim = shared_data / "prompts" / "aim.txt"
    db, run = run_multijail(tmp_path, server, csv_path, "--template-file", str(aim), "--judge", f"llm:openai:judge@{server.url}",
                            "--back-translate")
    with Store(db) as store:
        setup = describe_setup(store.get_run(run), store.results(run))
    assert setup.template.kind == "user" and setup.template.name == "aim.txt"
    assert setup.template.sha256 == hashlib.sha256(aim.read_text(encoding="utf-8-sig").encode()).hexdigest()
    assert setup.translations.kind == "human" and setup.back_translation and setup.description.traits["three_way"]
    assert setup.back_translator == f"llm:openai:judge@{server.url}"
    # 10 languages x 2 prompts x 2 scenarios; the Bengali 4 stopped at max_tokens
    assert (setup.truncation.stopped_at_limit, setup.truncation.responses) == (4, 40)
    verdicts = {c.scenario: c for c in setup.comparability()}
    assert verdicts["unintentional"].comparable and verdicts["intentional"].comparable
    assert "assuming aim.txt is AIM-type" in verdicts["intentional"].line()

    tiers = report(db, run, "tiers", tmp_path / "out")
    assert f"- template: user template aim.txt (sha256 {setup.template.sha256[:12]})" in tiers
    assert "- stopped at max_tokens: 4 of 40 responses (10.0%)" in tiers
    assert "- translations: human (MultiJail's native-speaker translations)" in tiers
    assert "temperature 0, max_tokens 256" in tiers and "back-translation: on (llm:openai:judge@" in tiers
    assert "ChatGPT (paper) | GPT-4 (paper) |" in tiers and "| 4.34 | 3.60 |" in tiers and "| 0.63 | 0.95 |" in tiers
    assert "(paper LRL/HRL: ChatGPT 3.44x, GPT-4 2.82x)" in tiers and "not comparable" not in tiers
    # Avg (9 non-en) and adaptive (all 10 languages) with the paper's figures beside them
    assert "| 10.19 | 5.96 | 44.76 | 27.30 |" in tiers and "| 80.92 | 40.71 | 99.37 | 79.05 |" in tiers
    md = report(db, run, "md", tmp_path / "out")
    assert "| unintentional | bn | 2 |" in md and "| 28.25 | 12.70 |" in md  # the paper's bn, beside ours
    data = json.loads(report(db, run, "tiers-json", tmp_path / "out"))
    assert data["setup"]["paper_comparability"]["intentional"]["comparable"] is True
    assert data["setup"]["truncation"]["share"] == pytest.approx(0.1)
    summaries = {s["scenario"]: s for s in data["scenarios"]}
    assert summaries["intentional"]["reference_adaptive"] == {"ChatGPT": 99.37, "GPT-4": 79.05}
    # every intentional answer is unsafe, no unintentional one is: the adaptive rates are 2/2 and 0/2
    assert summaries["intentional"]["adaptive"]["rate"]["count"] == 2 and summaries["intentional"]["adaptive"]["rate"]["total"] == 2
    assert summaries["unintentional"]["adaptive"]["rate"]["count"] == 0


def test_default_setup_is_not_comparable_and_hides_the_paper_figures(tmp_path, fake_openai, csv_path):
    server = fake_openai(reply)
    db, run = run_multijail(tmp_path, server, csv_path)  # polysafe's template, refusal judge, no back-translation
    tiers = report(db, run, "tiers", tmp_path / "out")
    assert "- template: polysafe default role-play (sha256 " in tiers
    lines = {line.split(": not comparable with the paper: ")[0]: line for line in tiers.splitlines()
             if "not comparable with the paper" in line}
    assert set(lines) == {"- paper reference (Deng et al. 2024, Table 1), unintentional",
                          "- paper reference (Deng et al. 2024, Table 1), intentional"}
    intentional = lines["- paper reference (Deng et al. 2024, Table 1), intentional"]
    assert "polysafe default role-play template instead of a jailbreak template file" in intentional
    assert "judge refusal is not a 3-way LLM judge" in intentional and "not back-translated" in intentional
    assert "template" not in lines["- paper reference (Deng et al. 2024, Table 1), unintentional"]
    assert "(paper)" not in tiers and "4.34" not in tiers and "44.76" not in tiers and "paper LRL/HRL" not in tiers
    assert "figures (Deng et al. 2024, Table 1) are hidden" in tiers
    md = report(db, run, "md", tmp_path / "out")
    assert "(paper)" not in md and "28.25" not in md and "- judge: refusal (offline refusal-phrase matcher)" in md
    data = json.loads(report(db, run, "json", tmp_path / "out"))
    assert all(row["reference"] == {} for row in data["rows"])
    assert data["setup"]["paper_comparability"]["unintentional"]["comparable"] is False
    assert data["setup"]["truncation"] == {"stopped_at_limit": 4, "responses": 40, "share": pytest.approx(0.1)}


def test_tier_labels_are_one_table_in_md_json_and_chart(tmp_path, fake_openai, csv_path):
    from polysafe.report.chart import chart_figure

    server = fake_openai(reply)
    db, run = run_multijail(tmp_path, server, csv_path, "--scenario", "unintentional")
    assert TIER_LABELS == {"english": "English", "high": "HRL", "medium": "MRL", "low": "LRL", "other": "other"}
    data = json.loads(report(db, run, "tiers-json", tmp_path / "out"))
    assert data["tier_labels"] == TIER_LABELS
    assert {(t["tier"], t["label"]) for t in data["tiers"]} == {(k, TIER_LABELS[k]) for k in ("english", "high", "medium", "low")}
    tiers_md = report(db, run, "tiers", tmp_path / "out")
    assert all(f"| unintentional | {label} |" in tiers_md for label in ("English", "HRL", "MRL", "LRL"))
    with Store(db) as store:
        rows = store.results(run)
    ticks = [t.get_text() for t in chart_figure(rows).axes[0].get_xticklabels()]
    assert ticks[0] == "en\nEnglish" and ticks[1] == "zh\nHRL" and ticks[4] == "ar\nMRL" and ticks[-1] == "jv\nLRL"


def test_every_format_carries_the_setup_block(tmp_path, fake_openai, csv_path):
    from PIL import Image

    from polysafe.report.chart import chart_figure

    server = fake_openai(reply)
    db, run = run_multijail(tmp_path, server, csv_path, "--scenario", "intentional", "--max-tokens", "64",
                            "--temperature", "0.7")
    needle = "stopped at max_tokens: 2 of 20 responses (10.0%)"
    for fmt in ("md", "tiers", "scores"):
        text = report(db, run, fmt, tmp_path / "out")
        assert needle in text and "temperature 0.7, max_tokens 64" in text, fmt
        assert "intentional: not comparable with the paper: " in text and "temperature 0.7, not 0" in text, fmt
    for fmt in ("json", "tiers-json"):
        setup = json.loads(report(db, run, fmt, tmp_path / "out"))["setup"]
        assert needle in setup["lines"] and setup["max_tokens"] == 64 and setup["temperature"] == 0.7, fmt
    png = Path(report(db, run, "png", tmp_path / "out"))
    assert needle in Image.open(png).text["Description"]
    with Store(db) as store:
        rows, record = store.results(run), store.get_run(run)
    drawn = [t.get_text() for t in chart_figure(rows, "t", describe_setup(record, rows).subtitle()).texts]
    assert any("10.0% stopped at max_tokens" in t and "max_tokens 64" in t for t in drawn)


PAPER_CONFIG = {"generation": {"temperature": 0.0, "top_p": 1.0, "max_tokens": 256, "seed": 0, "system_prompt": None},
                "scenarios": {"unintentional": "none", "intentional": "jailbreak:/x/aim.txt"}, "translator": "precomputed",
                "translation": "human", "template": "/x/aim.txt", "template_name": "aim.txt", "template_sha256": "ab" * 32,
                "back_translate": True}
PAPER_JUDGE = "llm:openai:gpt-4@http://127.0.0.1:1/v1+back-translate:llm:openai:gpt-4@http://127.0.0.1:1/v1"


def _description(judge: str) -> dict:
    """What the runner stores for a judge spec: its own describe(), back-translation included."""
    from polysafe.judges import load_judge

    base, _, back = judge.partition("+back-translate:")
    description = load_judge(base).describe()
    if back:
        description = replace(description, spec=judge, traits={**description.traits, "back_translated": True,
                                                                "back_translator": back})
    return description.to_dict()


def _setup(config=None, judge=PAPER_JUDGE, task="multijail"):
    """A stored MultiJail run's setup, with the comparability its benchmark declares at run time."""
    from polysafe.benchmarks.multijail import declared_reference

    config = {**PAPER_CONFIG, "judge_description": _description(judge), **(config or {})}
    provisional = describe_setup(RunRecord("r", task, "openai:m", judge, config))
    config["benchmark"] = {"name": "multijail", "reference": declared_reference(provisional)}
    return describe_setup(RunRecord("r", task, "openai:m", judge, config))


@pytest.mark.parametrize("change, judge, scenarios, reason", [
    ({"translation": "machine", "translator": "llm:openai:mt"}, PAPER_JUDGE, ("unintentional", "intentional"),
     "translations: machine (llm:openai:mt), not MultiJail's human ones"),
    ({}, "refusal", ("unintentional", "intentional"), "judge refusal is not a 3-way LLM judge"),
    ({"back_translate": False}, "llm:openai:gpt-4@http://127.0.0.1:1/v1", ("unintentional", "intentional"), "not back-translated"),
    ({"generation": {**PAPER_CONFIG["generation"], "temperature": 0.7}}, PAPER_JUDGE,
     ("unintentional", "intentional"), "temperature 0.7, not 0"),
    ({"generation": {**PAPER_CONFIG["generation"], "system_prompt": "Be nice."}}, PAPER_JUDGE,
     ("unintentional", "intentional"), "a system prompt was added"),
    ({"scenarios": {"unintentional": "none", "intentional": "jailbreak"}, "template": None}, PAPER_JUDGE,
     ("intentional",), "polysafe default role-play template instead of a jailbreak template file"),
    ({}, "harm:openai:gpt-4@http://127.0.0.1:1/v1+back-translate:llm:openai:gpt-4@http://127.0.0.1:1/v1",
     ("unintentional", "intentional"), "is not a 3-way LLM judge"),
])
def test_each_departure_from_the_paper_is_named(change, judge, scenarios, reason):
    paper = _setup()
    assert all(paper.paper_comparability(s).comparable for s in ("unintentional", "intentional"))
    changed = _setup(change, judge)
    for scenario in ("unintentional", "intentional"):
        verdict = changed.paper_comparability(scenario)
        if scenario in scenarios:
            assert not verdict.comparable and len(verdict.reasons) == 1 and reason in verdict.reasons[0], verdict
        else:
            assert verdict.comparable, verdict


def test_a_run_without_a_declared_reference_shows_no_paper_lines():
    """A run whose benchmark declared no paper figures (any other benchmark, or a run stored by an older polysafe)."""
    setup = describe_setup(RunRecord("r", "multijail", "openai:m", PAPER_JUDGE, {**PAPER_CONFIG,
                                                                                 "judge_description": _description(PAPER_JUDGE)}))
    assert setup.comparability() == [] and not any("paper reference" in line for line in setup.lines())


def test_partial_language_coverage_hides_tier_and_avg_references():
    from polysafe.engine.store import ResultRow

    def rows(language, labels):
        return [ResultRow(str(i), language, "unintentional", "none", None, (), "q", "p", "r", "r", label, None, "", None, 1)
                for i, label in enumerate(labels)]

    data = rows("en", ["safe", "safe"]) + rows("zh", ["unsafe", "safe"]) + rows("it", ["safe", "safe"]) + rows("bn", ["unsafe", "unsafe"])
    report = tier_report(data, _setup())
    by_tier = {t.tier: t for t in report.tiers}
    assert by_tier["english"].reference == {"ChatGPT": 0.63, "GPT-4": 0.95}
    assert by_tier["high"].reference == {} and by_tier["low"].reference == {}  # zh,it of zh/it/vi; bn of bn/sw/jv
    (summary,) = report.scenarios
    assert summary.reference_avg == {} and summary.reference_adaptive == {}
    assert tier_report(data).tiers[0].reference == {}  # no setup given: no paper figures at all
