"""`--samples K`: K answers per prompt, each with its own seed; per-sample, any-of-K and spread in the reports."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import polysafe
from polysafe.api import RunOptions
from polysafe.engine.store import Store
from polysafe.errors import InputError
from polysafe.keys import content_key
from polysafe.models import ModelOptions
from polysafe.report import load_report_input, render
from polysafe.types import GenerationConfig, Message

from fakes import last_user_text

ROOT = Path(__file__).resolve().parent.parent
OPTS = ModelOptions(max_retries=0, timeout=5, concurrency=4)
REFUSAL = "I'm sorry, I can't help with that."
# prompt -> the seeds whose answer complies (not a refusal): 0/3, 1/3, 3/3 and 1/3 unsafe answers
COMPLIES = {"alpha": set(), "bravo": {1}, "charlie": {0, 1, 2}, "delta": {0}}


def answer(body: dict) -> str:
    text = last_user_text(body)
    return f"Sure, here is how to do {text} (seed {body['seed']})." if body["seed"] in COMPLIES[text] else REFUSAL


def prompt_file(tmp_path: Path) -> str:
    path = tmp_path / "p.csv"
    path.write_text("id,text\n" + "".join(f"{i},{name}\n" for i, name in enumerate(COMPLIES)), encoding="utf-8")
    return str(path)


def options(tmp_path: Path, samples: int, temperature: float = 0.7) -> RunOptions:
    return RunOptions(model=OPTS, generation=GenerationConfig(temperature=temperature, max_tokens=16),
                      db=tmp_path / "r.db", samples=samples)


def test_three_samples_give_per_sample_any_of_k_and_spread(fake_openai, tmp_path):
    server = fake_openai(answer)
    summary = polysafe.evaluate("file", model=f"openai:m@{server.url}", params={"prompts": prompt_file(tmp_path)},
                                options=options(tmp_path, 3))
    assert summary.items == 12 and summary.generated == 12
    seeds = sorted((last_user_text(b), b["seed"]) for b in server.requests)  # each sample asked with its own seed
    assert seeds == sorted((name, s) for name in COMPLIES for s in (0, 1, 2))
    with Store(tmp_path / "r.db") as store:
        data = load_report_input(store, summary.run, tmp_path)
    assert sorted((r.prompt_id, r.sample) for r in data.rows) == sorted((str(i), s) for i in range(4) for s in range(3))
    report = json.loads(render("json", data))["sampling"][0]
    # By hand: 5 unsafe of 12 answers; any-of-3: alpha is the only prompt never unsafe, 3 of 4;
    # per sample index: seed 0 -> charlie, delta (2/4); seed 1 -> bravo, charlie (2/4); seed 2 -> charlie (1/4).
    assert report["per_sample"]["value"] == pytest.approx(5 / 12)
    assert (report["any_of_k"]["count"], report["any_of_k"]["total"]) == (3, 4)
    assert [r["value"] for r in report["by_sample"]] == [0.5, 0.5, 0.25]
    assert report["spread"]["lowest"] == 0.25 and report["spread"]["highest"] == 0.5
    assert report["spread"]["sd"] == pytest.approx(0.144338, abs=1e-6)
    # Clustered by prompt: e_j = y_j - 5/12 * 3 = -1.25, -0.25, 1.75, -1.25 (alpha, bravo, charlie, delta);
    # Var = 4/3 * (1.5625 + 0.0625 + 3.0625 + 0.0625) / 144; n_eff = p(1-p) / Var = 5.5263
    # (bravo and delta both have one unsafe answer: e = 1 - 1.25 = -0.25)
    assert report["per_sample"]["effective_n"] == pytest.approx((5 / 12) * (7 / 12) / (4 / 3 * 4.75 / 144), rel=1e-6)
    assert report["per_sample"]["low"] < 5 / 12 < report["per_sample"]["high"]
    md = render("md", data)
    assert "Sampling: 3 answers per prompt, seeds 0..2" in md and "| 75.0 [" in md
    assert "- sampling: 3 answers per prompt, seeds 0..2" in md  # the setup block says so too
    page = Path(render("html", data)).read_text(encoding="utf-8")
    assert '<table id="samples"' in page and "any-of-3 %" in page and ">75.0<" in page


def test_k1_keeps_its_keys_and_an_old_store_resumes_with_no_call(fake_openai, tmp_path):
    server = fake_openai(answer)
    params = {"prompts": prompt_file(tmp_path)}
    first = polysafe.evaluate("file", model=f"openai:m@{server.url}", params=params, options=options(tmp_path, 1))
    gen = GenerationConfig(temperature=0.7, max_tokens=16)
    with Store(tmp_path / "r.db") as store:
        keys = dict(store.db.execute("SELECT prompt_id, key FROM items WHERE run=?", (first.run,)).fetchall())
        responses = {r for (r,) in store.db.execute("SELECT response_key FROM items WHERE run=?", (first.run,))}
    # the keys of a store made before sampling existed
    assert keys == {str(i): content_key("item", str(i), "en", "none", "none") for i in range(4)}
    model = polysafe.load_model(f"openai:m@{server.url}", OPTS)
    assert responses == {content_key("response", model.identity, {
        "messages": [{"role": "user", "content": name}], "config": gen.to_dict()}) for name in COMPLIES}
    # a store of schema version 1, from before sampling: no sample column
    db = sqlite3.connect(tmp_path / "r.db")
    db.execute("ALTER TABLE items DROP COLUMN sample")
    db.execute("PRAGMA user_version=1")
    db.commit()
    db.close()
    with Store(tmp_path / "r.db", readonly=True) as store:
        assert [r.sample for r in store.results(first.run)] == [0, 0, 0, 0]
    again = polysafe.evaluate("file", model=f"openai:m@{server.url}", params=params, options=options(tmp_path, 1))
    assert (again.run, again.generated, again.cached, server.received) == (first.run, 0, 4, 4)
    # three samples reuse the one-sample answers as sample 0 and ask only for samples 1 and 2
    three = polysafe.evaluate("file", model=f"openai:m@{server.url}", params=params, options=options(tmp_path, 3))
    assert three.run != first.run and (three.generated, three.cached, server.received) == (8, 4, 12)


def test_samples_need_a_temperature(fake_openai, tmp_path):
    with pytest.raises(InputError, match="--temperature > 0"):
        polysafe.evaluate("file", model="openai:m@http://127.0.0.1:9/v1", params={"prompts": prompt_file(tmp_path)},
                          options=options(tmp_path, 3, temperature=0.0))
    done = subprocess.run([sys.executable, "-m", "polysafe.cli", "eval", "file", "-p", prompt_file(tmp_path),
                           "-m", "openai:m@http://127.0.0.1:9/v1", "--db", str(tmp_path / "r.db"), "--samples", "3"],
                          capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=60)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and "--temperature > 0" in done.stderr
    assert not (tmp_path / "r.db").exists()


def test_local_decoding_draws_each_sample_with_its_own_seed(smollm2):
    conversation = (Message("user", "Write one sentence about rivers."),)
    gens = [GenerationConfig(temperature=1.0, max_tokens=12, seed=s) for s in (0, 1)]

    async def go():
        mixed = await smollm2.generate_each([conversation, conversation], gens)
        alone = [(await smollm2.generate([conversation], g))[0] for g in gens]
        return mixed, alone

    mixed, alone = asyncio.run(go())
    assert [c.text for c in mixed] == [c.text for c in alone]  # a row's draw does not depend on its batch
    assert mixed[0].text != mixed[1].text


def test_compare_understands_samples(fake_openai, tmp_path):
    from polysafe.report.compare import compare, comparison_markdown

    server = fake_openai(answer)
    params = {"prompts": prompt_file(tmp_path)}
    one = polysafe.evaluate("file", model=f"openai:m@{server.url}", params=params, options=options(tmp_path, 1))
    three = polysafe.evaluate("file", model=f"openai:m@{server.url}", params=params, options=options(tmp_path, 3))
    with Store(tmp_path / "r.db") as store:
        inputs = [load_report_input(store, run, tmp_path) for run in (one.run, three.run)]
    by_sample = compare(inputs, by="sample")
    assert [row.group for row in by_sample.rows] == ["0", "1", "2"]
    # sample 0 of both runs is the same answer: seed 0 -> charlie and delta unsafe, 2 of 4
    first = by_sample.rows[0].cells
    assert (first[0].rate.count, first[0].rate.total, first[1].rate.count, first[1].rate.total) == (2, 4, 2, 4)
    assert by_sample.rows[2].cells[0].rate is None and by_sample.rows[2].cells[1].rate.count == 1
    pooled = compare(inputs, by="language")
    assert f"{three.run} (3)" in pooled.note and "too narrow" in comparison_markdown(pooled)
