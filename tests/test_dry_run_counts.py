"""A dry run counts every call a run makes (model, judge, translation, back-translation) and bounds its cost.

The fake endpoint plays all four parts and bills like a worst-case tokenizer: a prompt token per UTF-8 byte plus
OpenAI's chat overhead (3 per message, 3 for the reply), a completion token per byte of the answer.
"""

from __future__ import annotations

import json
import zlib

import pytest

import polysafe
from polysafe.api import RunOptions
from polysafe.engine.cost import price_for
from polysafe.models import ModelOptions
from polysafe.types import GenerationConfig

from fakes import Reply

OPTS = ModelOptions(max_retries=0, timeout=10, concurrency=4)
KINDS = ("model", "translation", "judge", "back-translation")
MERGED = set()  # English source texts translated to one and the same Swahili text
REJECTED = set()  # English source texts whose "Swahili" translation the fake answers in English


def number(text: str) -> int:
    return zlib.crc32(text.encode()) % 100_000


def kind_of(body: dict) -> str:
    user = [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
    if user.startswith("You are a professional translator."):
        return "back-translation" if "to English" in user.split("\n")[0] else "translation"
    if any("[RESPONSE " in m["content"] for m in body["messages"]):
        return "judge"
    return "model"


def make_reply(log: list):
    def reply(body: dict) -> Reply:
        kind = kind_of(body)
        user = [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
        n = number(user + str(body.get("seed")))
        if kind == "translation":
            source = user.split("\n\n", 1)[1]
            n = 7 if source in MERGED else n  # two inputs, one translation: the checks reject both as merged
            text = (f"Please explain request {n} in English." if source in REJECTED
                    else f"Tafadhali nieleze jinsi ya kufanya jambo hili namba {n} kwa usalama na kwa haraka.")
        elif kind == "back-translation":
            text = f"I am sorry, I cannot help with request number {n} because it is dangerous."
        elif kind == "judge":
            text = "The response refuses.\nLabel: safe"
        elif "Tafadhali" in user:
            text = f"Samahani, siwezi kusaidia na ombi hili namba {n} kwa sababu ni hatari sana kwa watu."
        else:
            text = f"I am sorry, I cannot help with request {n}."
        prompt = sum(len(m["content"].encode()) + 3 for m in body["messages"]) + 3
        usage = {"prompt_tokens": prompt, "completion_tokens": len(text.encode())}
        log.append((kind, body["model"], usage))
        return Reply(raw=json.dumps({"id": "x", "object": "chat.completion", "model": body["model"], "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": usage}).encode())

    return reply


def run_multijail(server, shared_data, tmp_path, *, dry: bool, samples: int = 1):
    params = {"languages": "en,sw", "limit": 3, "scenario": "unintentional", "data": str(shared_data / "multijail" / "MultiJail.csv"),
              "translator": f"llm:openai:gpt-4o-mini@{server.url}", "back_translate": True}
    gen = GenerationConfig(max_tokens=200, temperature=0.7 if samples > 1 else 0.0)
    options = RunOptions(model=OPTS, generation=gen, db=tmp_path / "r.db", samples=samples)
    call = polysafe.estimate if dry else polysafe.evaluate
    return call("multijail", model=f"openai:gpt-4o@{server.url}", judge=f"llm:openai:gpt-4o-mini@{server.url}",
                params=params, options=options)


def counted(log: list) -> dict:
    out: dict = {}
    for kind, _, _ in log:
        out[kind] = out.get(kind, 0) + 1
    return out


def real_cost(log: list) -> float:
    return sum(price_for(f"openai:{model}").cost(u["prompt_tokens"], u["completion_tokens"]) for _, model, u in log)


@pytest.mark.parametrize("samples", [1, 2])
def test_dry_run_counts_equal_the_run_and_its_cost_bounds_it(fake_openai, shared_data, tmp_path, monkeypatch, samples):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    log: list = []
    server = fake_openai(make_reply(log))
    plan = run_multijail(server, shared_data, tmp_path, dry=True, samples=samples)
    assert server.received == 0
    summary = run_multijail(server, shared_data, tmp_path, dry=False, samples=samples)
    assert summary.errors == 0, summary.first_error
    made = counted(log)
    assert made == {"model": 6 * samples, "translation": 3, "judge": 6 * samples, "back-translation": 3 * samples}
    assert {g.kind: g.calls for g in plan.plan.groups} == made
    assert plan.cost is not None and real_cost(log) <= plan.cost
    for kind in made:  # the bound holds for each kind of call, not only in total
        group = plan.plan.group(kind)
        used = [u for k, _, u in log if k == kind]
        assert sum(u["prompt_tokens"] for u in used) <= group.prompt_tokens
        assert sum(u["completion_tokens"] for u in used) <= group.completion_tokens
    again = run_multijail(server, shared_data, tmp_path, dry=True, samples=samples)
    assert [again.plan.calls(kind) for kind in KINDS] == [0, 0, 0, 0]


@pytest.mark.parametrize("why", ["wrong language", "merged"])
def test_dry_run_after_a_rejected_translation_counts_what_the_run_makes(fake_openai, shared_data, tmp_path, monkeypatch, why):
    from polysafe.data.multijail import load_multijail

    english = [p.text for p in load_multijail(str(shared_data / "multijail" / "MultiJail.csv"), ["en"])[:3]]
    if why == "merged":
        monkeypatch.setattr("test_dry_run_counts.MERGED", set(english[:2]))
    else:
        monkeypatch.setattr("test_dry_run_counts.REJECTED", {english[0]})
    log: list = []
    server = fake_openai(make_reply(log))
    run_multijail(server, shared_data, tmp_path, dry=False)
    assert counted(log)["model"] == (4 if why == "merged" else 5)  # a rejected translation is never sent
    log.clear()
    plan = run_multijail(server, shared_data, tmp_path, dry=True)
    assert [plan.plan.calls(kind) for kind in KINDS] == [0, 0, 0, 0]
    run_multijail(server, shared_data, tmp_path, dry=False)
    assert log == []
