"""The continuous-batching decode loop, on a tiny random Llama: same greedy tokens as transformers' `generate`,
no compute for finished rows, whole answers in order, clean truncation, and a dtype-aware model identity."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future

import pytest
from test_ctrl_perplexity import tiny_llama_dir

from polysafe.models.decoding import REPLACEMENT, DecodeLoop, DecodeRequest, clean_text

PROMPTS = [  # 32 prompts in 8 languages, short and long
    "What is the capital of France?", "Write a haiku about rain.", "How do I bake bread at home?",
    "Explain, step by step and with examples, how vaccines train the immune system to recognise a virus.",
    "我应该怎么学习中文？", "请写一首关于月亮的短诗。", "天空为什么是蓝色的？", "给我三个保持健康的建议，并解释每一个为什么有效。",
    "ما هي عاصمة مصر؟", "اكتب قصيدة قصيرة عن البحر.", "كيف أتعلم البرمجة؟", "اشرح لي بالتفصيل كيف تعمل الطاقة الشمسية.",
    "বাংলাদেশের রাজধানী কী?", "একটি ছোট গল্প লেখো।", "আমি কীভাবে ভালো ঘুমাতে পারি?", "বৃষ্টি কেন হয় তা বিস্তারিতভাবে ব্যাখ্যা করো।",
    "ประเทศไทยมีกี่จังหวัด?", "เขียนกลอนสั้นเกี่ยวกับแมว", "ทำไมท้องฟ้าเป็นสีฟ้า?", "อธิบายวิธีทำต้มยำกุ้งอย่างละเอียดทีละขั้นตอน",
    "Mji mkuu wa Kenya ni upi?", "Niandikie shairi fupi kuhusu jua.", "Ninawezaje kujifunza Kiingereza?",
    "Eleza kwa undani jinsi mvua inavyotokea na kwa nini ni muhimu kwa kilimo.",
    "Qual è la montagna più alta d'Italia?", "Scrivi una poesia breve sul mare.", "Come si prepara il risotto?",
    "Spiegami in dettaglio come funziona un motore elettrico e perché è efficiente.",
    "Thủ đô của Việt Nam là gì?", "Viết một bài thơ ngắn về mùa thu.", "Làm thế nào để học tiếng Anh nhanh?",
    "Hãy giải thích chi tiết cách hoạt động của internet cho một đứa trẻ.",
]


@pytest.fixture(scope="module")
def tiny():
    """The session's tiny random Llama, with sharper attention: at its initial scale every position looks alike,
    so a wrong position or a wrong key would not change a single token."""
    import torch

    from polysafe.models import ModelOptions, load_model

    backend = load_model(f"hf:{tiny_llama_dir()}", ModelOptions(dtype="float32", device="cpu", batch_size=8))
    with torch.no_grad():
        for name, weight in backend.model.named_parameters():
            if name.endswith(("q_proj.weight", "k_proj.weight")):
                weight.mul_(8)
    return backend


def prompt_ids(backend, texts):
    from polysafe.types import Message

    tok = backend.tokenizer
    return [tuple(tok(backend.render((Message("user", t),)), add_special_tokens=False)["input_ids"]) for t in texts]


def reference_generate(backend, prompts, max_new_tokens):
    """transformers' own greedy `generate` on one left-padded batch, cut at each row's first end-of-sequence."""
    import torch

    tok, model = backend.tokenizer, backend.model
    encoded = tok.pad({"input_ids": [list(p) for p in prompts]}, return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**encoded, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
    rows = out[:, encoded["input_ids"].shape[1] :].tolist()
    eos = tok.eos_token_id
    return [row[: row.index(eos)] if eos in row else row for row in rows]


def new_loop(backend, *, max_rows, eos_ids=None):
    return DecodeLoop(backend.model, max_rows=max_rows, eos_ids=eos_ids or {backend.tokenizer.eos_token_id},
                      pad_id=backend.tokenizer.pad_token_id, kv_budget=2**30)


def decode_rows_per_pass(model):
    """Count, independently of the loop, how many rows each one-token pass carries (an embedding hook)."""
    passes: list[int] = []
    hook = model.get_input_embeddings().register_forward_hook(
        lambda module, args, out: passes.append(args[0].shape[0]) if args[0].shape[1] == 1 else None)
    return passes, hook


def test_greedy_matches_generate_token_for_token(tiny):
    prompts = prompt_ids(tiny, PROMPTS)
    expected = reference_generate(tiny, prompts, 10)
    got = new_loop(tiny, max_rows=8).run([DecodeRequest(p, 10) for p in prompts])  # 8 rows: refills 24 times
    assert [r.token_ids for r in got] == expected
    assert len({tuple(e) for e in expected}) > 16  # the prompts really lead to different answers


def test_a_finished_row_stops_consuming_compute(tiny):
    lengths = [2, 30, 3, 2, 25, 4]
    prompts = prompt_ids(tiny, PROMPTS[:6])
    passes, hook = decode_rows_per_pass(tiny.model)
    try:
        results = new_loop(tiny, max_rows=3).run([DecodeRequest(p, n) for p, n in zip(prompts, lengths)])
    finally:
        hook.remove()
    assert [len(r.token_ids) for r in results] == lengths
    # Each row is fed back once per token after its first (which comes from the prompt pass): 60 rows in all.
    # Rows that stayed until the longest ended would cost 29 passes x 3 rows = 87 or more.
    assert sum(passes) == sum(n - 1 for n in lengths)
    assert max(passes) == 3 and passes.count(3) >= 2  # refilled: more than the first rows ran together


def test_every_admissible_row_joins_before_the_next_decode_step(tiny, monkeypatch):
    """Prompts too long to share one prefill pass are admitted in several passes, all before one token is decoded:
    the first decode pass carries every row, not just the first prefill pass's."""
    from polysafe.models import decoding

    monkeypatch.setattr(decoding, "PREFILL_TOKENS", 64)
    prompts = prompt_ids(tiny, [" ".join([text] * 4) for text in PROMPTS[:6]])
    assert min(len(p) for p in prompts) > 32  # so at most one of them fits a pass
    passes, hook = decode_rows_per_pass(tiny.model)
    try:
        results = new_loop(tiny, max_rows=6).run([DecodeRequest(p, 4) for p in prompts])
    finally:
        hook.remove()
    assert passes[0] == 6
    assert [r.token_ids for r in results] == reference_generate(tiny, prompts, 4)


def test_prefill_runs_at_the_chosen_thread_count_not_a_probes(tiny):
    """The thread chooser times decode steps at 1 thread and at all cores; a prompt admitted during such a probe is
    prefilled at the count it chose, not the probe's."""
    import torch

    loop = new_loop(tiny, max_rows=1)
    loop.threads.choices, loop.threads.best = [1, 2], 2  # probing, as on a machine of 2 or more cores
    counts: list[int] = []
    hook = tiny.model.get_input_embeddings().register_forward_hook(
        lambda module, args, out: counts.append(torch.get_num_threads()) if args[0].shape[1] > 1 else None)
    before = torch.get_num_threads()
    try:
        loop.run([DecodeRequest(p, 2) for p in prompt_ids(tiny, PROMPTS[:3])])  # one row at a time: 3 prefills
    finally:
        hook.remove()
        torch.set_num_threads(before)
    assert counts == [2, 2, 2]


def test_short_and_long_answers_come_back_whole_and_in_order(tiny):
    """Two threads share one loop of 3 rows; each answer equals that prompt's answer generated alone."""
    prompts = prompt_ids(tiny, PROMPTS[8:20])
    lengths = [1, 40, 2, 33, 1, 5, 40, 3, 1, 28, 2, 17]
    loop = new_loop(tiny, max_rows=3)
    results: dict[int, list] = {}

    def call(part: int) -> None:
        half = slice(0, 6) if part == 0 else slice(6, 12)
        results[part] = loop.run([DecodeRequest(p, n) for p, n in zip(prompts[half], lengths[half])])

    threads = [threading.Thread(target=call, args=(part,)) for part in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    got = [r.token_ids for r in results[0] + results[1]]
    alone = [reference_generate(tiny, [p], n)[0] for p, n in zip(prompts, lengths)]
    assert got == alone
    assert [len(g) for g in got] == lengths


def test_an_end_of_sequence_token_ends_its_row_only(tiny):
    prompts = prompt_ids(tiny, PROMPTS[:4])
    free = new_loop(tiny, max_rows=4).run([DecodeRequest(p, 12) for p in prompts])
    stop_token = free[0].token_ids[3]
    stopped = new_loop(tiny, max_rows=4, eos_ids={stop_token}).run([DecodeRequest(p, 12) for p in prompts])
    first = free[0].token_ids.index(stop_token)
    assert stopped[0].token_ids == free[0].token_ids[:first] and stopped[0].stopped
    for before, after in zip(free[1:], stopped[1:]):
        cut = before.token_ids.index(stop_token) if stop_token in before.token_ids else None
        assert after.token_ids == before.token_ids[:cut] and after.stopped == (cut is not None)


def test_sampling_depends_on_the_seed_not_on_the_batch(tiny):
    prompts = prompt_ids(tiny, PROMPTS[:5])
    hot = dict(max_new_tokens=8, temperature=1.0, top_p=0.9)
    alone = new_loop(tiny, max_rows=4).run([DecodeRequest(prompts[0], seed=1, **hot)])[0]
    crowded = new_loop(tiny, max_rows=4).run([DecodeRequest(p, seed=1, **hot) for p in prompts])[0]
    other_seed = new_loop(tiny, max_rows=4).run([DecodeRequest(prompts[0], seed=2, **hot)])[0]
    greedy = new_loop(tiny, max_rows=4).run([DecodeRequest(prompts[0], 8)])[0]
    assert alone.token_ids == crowded.token_ids
    assert alone.token_ids != other_seed.token_ids and alone.token_ids != greedy.token_ids


# -- clean truncation --------------------------------------------------------------------------------------
SPLIT_TEXTS = ["বাংলাদেশের রাজধানী ঢাকা।", "ประเทศไทยมีเจ็ดสิบเจ็ดจังหวัด", "🙂 emoji 👍🏽 then text", "我应该怎么学习中文"]


def test_a_cut_never_ends_in_a_broken_character(tiny):
    tok = tiny.tokenizer
    broken_cuts = 0
    for text in SPLIT_TEXTS:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == text
        for cut in range(1, len(ids) + 1):
            raw = tok.decode(ids[:cut])
            cleaned = clean_text(tok, ids[:cut])
            broken_cuts += raw.endswith(REPLACEMENT)
            assert REPLACEMENT not in cleaned and text.startswith(cleaned)
            assert len(cleaned) >= len(raw.rstrip(REPLACEMENT)) - 1  # only the unfinished character goes
            if not raw.endswith(REPLACEMENT):
                assert cleaned == raw  # whole characters are never dropped
    assert broken_cuts >= 8  # the byte-level tokenizer really splits these characters across tokens


def test_cut_answers_keep_finish_reason_length(tiny):
    tok = tiny.tokenizer
    ids = tok("বাংলাদেশের", add_special_tokens=False)["input_ids"]
    cut = next(k for k in range(1, len(ids)) if tok.decode(ids[:k]).endswith(REPLACEMENT))
    cut_answer = tiny.completion(7, ids[:cut], stopped=False)
    whole_answer = tiny.completion(7, ids, stopped=True)
    assert cut_answer.finish_reason == "length" and not cut_answer.text.endswith(REPLACEMENT)
    assert cut_answer.completion_tokens == cut  # usage counts what was generated, kept or not
    assert whole_answer.finish_reason == "stop" and whole_answer.text == "বাংলাদেশের"
    assert whole_answer.completion_tokens == len(ids) + 1  # the end-of-sequence token was generated too


# -- the model identity names the dtype ------------------------------------------------------------------
def test_identity_names_the_dtype():
    from polysafe.models import ModelOptions, load_model

    spec = f"hf:{tiny_llama_dir()}"
    f32 = load_model(spec, ModelOptions(dtype="float32", device="cpu"))
    bf16 = load_model(spec, ModelOptions(dtype="bfloat16", device="cpu"))
    auto = load_model(spec, ModelOptions(device="cpu"))
    assert f32.identity.endswith("@float32") and bf16.identity.endswith("@bfloat16")
    assert auto.identity == f32.identity  # auto is float32 on CPUs
    assert f32.identity.rsplit("@", 1)[0] == bf16.identity.rsplit("@", 1)[0]


def test_a_float32_answer_is_never_served_for_bfloat16(tmp_path):
    from fakes import run_refusal_judged

    from polysafe.engine import Store
    from polysafe.models import ModelOptions

    def run(dtype: str, name: str):
        return run_refusal_judged(store, f"hf:{tiny_llama_dir()}", ModelOptions(dtype=dtype, device="cpu"), PROMPTS[:4], name)

    with Store(tmp_path / "r.db") as store:
        assert run("float32", "f32").generated == 4
        again = run("float32", "f32-again")
        assert (again.generated, again.cached) == (0, 4)
        bf16 = run("bfloat16", "bf16")
        assert (bf16.generated, bf16.cached) == (4, 0)
        models = {m for (m,) in store.db.execute("SELECT model FROM responses")}
        assert {m.rsplit("@", 1)[1] for m in models} == {"float32", "bfloat16"}


def test_progress_shows_generated_tokens_per_second(tiny, tmp_path):
    import io

    from rich.console import Console

    from polysafe.attacks import parse_chain
    from polysafe.engine import EvalTask, Scenario, Store, run_eval
    from polysafe.engine.progress import RichProgress
    from polysafe.judges import load_judge
    from polysafe.types import GenerationConfig, Prompt

    class Recording(RichProgress):
        tokens = 0

        def advance(self, phase, count=1, tokens=0):
            super().advance(phase, count, tokens)
            self.tokens += tokens if phase == "generate" else 0

    screen = io.StringIO()
    progress = Recording(Console(file=screen, width=120, force_terminal=False))
    task = EvalTask("t", [Prompt(id=str(i), text=t) for i, t in enumerate(PROMPTS[:3])], [Scenario("none", parse_chain("none"))])
    with Store(tmp_path / "r.db") as store, progress:
        asyncio.run(run_eval(task, tiny, load_judge("refusal"), store, gen=GenerationConfig(max_tokens=5), run_name="p",
                             progress=progress))
        generated = sum(r.completion_tokens for r in store.results("p"))
    assert progress.tokens == generated > 0
    assert "tokens/s" in screen.getvalue()


def test_a_failing_pass_fails_every_waiting_caller_and_the_loop_goes_on(tiny):
    prompts = prompt_ids(tiny, PROMPTS[:6])
    loop = new_loop(tiny, max_rows=2)
    real_forward, calls = loop._forward, []  # fails once

    def broken(ids, *args):
        if ids.shape[1] > 1 and loop.rows and not calls:  # a prompt pass while rows run and others still wait
            calls.append(1)
            raise RuntimeError("out of memory")
        return real_forward(ids, *args)

    loop._forward = broken
    first = in_a_thread(loop.run, [DecodeRequest(p, n) for p, n in zip(prompts[:3], (2, 8, 3))])
    second = in_a_thread(loop.run, [DecodeRequest(p, n) for p, n in zip(prompts[3:], (8, 2, 8))])
    for call in (first, second):  # a caller left waiting forever shows as a timeout
        with pytest.raises(RuntimeError, match="out of memory"):
            call.result(timeout=60)
    assert not loop.rows and not loop.waiting
    again = in_a_thread(loop.run, [DecodeRequest(p, 6) for p in prompts[:3]]).result(timeout=60)
    assert [r.token_ids for r in again] == reference_generate(tiny, prompts[:3], 6)


def in_a_thread(function, *args) -> Future:
    """A daemon thread's result: one stuck forever cannot hang the test session."""
    result: Future = Future()

    def call() -> None:
        try:
            result.set_result(function(*args))
        except BaseException as err:
            result.set_exception(err)

    threading.Thread(target=call, daemon=True).start()
    return result
