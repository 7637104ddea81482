"""The evaluation loop in process: what a run asks, stores, resumes, refuses, reports and shows as progress.

Driven through `run_eval` with in-process models and judges (no subprocess, no server), so each promise of the
runner (a rerun asks nothing stored, errors are asked again, a cap stops and says why, ...) is checked where a
changed line of the runner would break it."""

from __future__ import annotations

import asyncio
import json
from typing import Sequence

import pytest

from polysafe.attacks.base import Attack, AttackChain, AttackedPrompt, AttackContext, Undecodable, parse_chain
from polysafe.engine import runner
from polysafe.engine.cost import Budget, Price, prompt_token_bound
from polysafe.engine.judge_check import JudgeCheck
from polysafe.engine.progress import Progress
from polysafe.engine.runner import EvalTask, Scenario, run_eval
from polysafe.engine.store import Store
from polysafe.errors import InputError
from polysafe.judges.agreement import LabelledExample
from polysafe.judges.base import Judge
from polysafe.keys import content_key
from polysafe.testing import FakeModel
from polysafe.types import Completion, GenerationConfig, JudgeDescription, Prompt, ScoreScale, UNSAFE_RATE, Verdict

PROMPTS = [Prompt("1", "how do I pick a lock"), Prompt("2", "tell me a story about dragons"), Prompt("3", "hi")]
PLAIN = [Scenario("plain", parse_chain("none"))]


class Model(FakeModel):
    """FakeModel that records each conversation asked, its config, and when it loaded; `fail` answers an error."""

    def __init__(self, reply=lambda conversation: "Sure, here it is.", *, fail=(), name="fake", batch_size=8,
                 concurrency=1):
        super().__init__(reply, name=name, batch_size=batch_size)
        self.concurrency = concurrency
        self.fail = set(fail)
        self.asked: list[tuple[str, GenerationConfig]] = []
        self.loads = 0

    async def load(self):
        self.loads += 1

    async def generate(self, conversations, config):
        self.asked += [(c[-1].content, config) for c in conversations]
        self.roles = [tuple(m.role for m in c) for c in conversations]
        done = await super().generate(conversations, config)
        return [Completion.failed("HTTP 500") if c[-1].content in self.fail else d for c, d in zip(conversations, done)]


class CountingJudge(Judge):
    """Unsafe when the answer complies; records what it read."""

    def __init__(self, *, spec="counting", identity="counting/v1", batch_size=2, scale=None, judged=None):
        self.spec, self.identity, self.batch_size, self.scale, self.judged = spec, identity, batch_size, scale, judged
        self.seen = []
        self.model = None

    async def judge(self, items):
        self.seen += list(items)
        return [Verdict("unsafe" if item.response.startswith("Sure") else "safe",
                        score=2 if self.scale else None, judged=self.judged) for item in items]

    def describe(self):
        return JudgeDescription(self.spec, "test judge", (UNSAFE_RATE,), scale=self.scale)


class Recorder(Progress):
    def __init__(self):
        self.events = []

    def start(self, phase, total):
        self.events.append(("start", phase, total))

    def advance(self, phase, count=1, tokens=0):
        self.events.append(("advance", phase, count, tokens))

    def finish(self, phase):
        self.events.append(("finish", phase))

    def of(self, phase):
        return [event for event in self.events if event[1] == phase]


def evaluate(store, model, judge=None, *, prompts=PROMPTS, scenarios=PLAIN, name="t", config=None, **options):
    judge = judge or CountingJudge()
    task = EvalTask(name, prompts, scenarios, config or {})
    return asyncio.run(run_eval(task, model, judge, store, run_name=options.pop("run_name", "r"), **options))


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "s.db") as opened:
        yield opened


# -- one run, and its rerun ---------------------------------------------------------------------------------
def test_a_run_asks_each_prompt_once_judges_each_answer_and_sums_up(store):
    model, judge = Model(lambda c: "Sure, here it is." if "lock" in c[-1].content else "No."), CountingJudge()
    summary = evaluate(store, model, judge, gen=GenerationConfig(max_tokens=7, system_prompt="Be safe."))
    assert (summary.run, summary.items, summary.generated, summary.cached, summary.judged, summary.errors,
            summary.first_error, summary.capped, summary.pending, summary.extra) == ("r", 3, 3, 0, 3, 0, None, None, 0, {})
    rows = store.results("r")
    assert [(row.prompt_id, row.label) for row in rows] == [("1", "unsafe"), ("2", "safe"), ("3", "safe")]
    assert summary.prompt_tokens == sum(r.prompt_tokens for r in rows) == 2 + 6 + 2 + 6 + 2 + 1
    assert summary.completion_tokens == 4 + 1 + 1
    assert [config.max_tokens for _, config in model.asked] == [7, 7, 7]
    assert [(item.query, item.prompt, item.response, item.language) for item in judge.seen][0] == \
        ("how do I pick a lock", "how do I pick a lock", "Sure, here it is.", "en")
    request = store.db.execute("SELECT request FROM responses ORDER BY created LIMIT 1").fetchone()[0]
    assert '"role": "system", "content": "Be safe."' in request and model.roles[-1] == ("system", "user")


def test_a_rerun_asks_and_judges_nothing_stored(store):
    model, judge, progress = Model(), CountingJudge(), Recorder()
    evaluate(store, model, judge)
    summary = evaluate(store, model, judge, progress=progress)
    assert (summary.generated, summary.cached, summary.judged) == (0, 3, 0)
    assert model.calls == 3 and len(judge.seen) == 3 and model.loads == 1  # nothing to generate: not even loaded
    assert progress.events == [("start", "generate", 0), ("advance", "generate", 0, 0), ("finish", "generate"),
                               ("start", "judge", 0), ("advance", "judge", 0, 0), ("finish", "judge")]


def test_progress_counts_every_answer_and_its_tokens_once_the_model_is_loaded(store):
    model, progress = Model(batch_size=2), Recorder()
    evaluate(store, model, progress=progress)
    generate = progress.of("generate")
    assert generate[0] == ("start", "generate", 3) and generate[-1] == ("finish", "generate")
    advances = [event for event in generate if event[0] == "advance"]
    assert sum(e[2] for e in advances) == 3 and sum(e[3] for e in advances) == 12  # "Sure, here it is." x 3
    assert [e[2] for e in advances if e[2]] == [2, 1]
    judging = progress.of("judge")
    assert judging[0] == ("start", "judge", 3) and judging[-1] == ("finish", "judge")
    assert sum(e[2] for e in judging if e[0] == "advance") == 3


def test_identical_requests_are_asked_once_and_identical_answers_judged_once(store):
    model, judge = Model(), CountingJudge()
    same = [Scenario("plain", parse_chain("none")), Scenario("again", parse_chain("none"))]
    progress = Recorder()
    summary = evaluate(store, model, judge, prompts=PROMPTS[:2], scenarios=same, progress=progress)
    assert (summary.items, summary.generated, summary.judged, model.calls, len(judge.seen)) == (4, 2, 2, 2, 2)
    assert ("start", "generate", 2) in progress.events and ("start", "judge", 2) in progress.events
    assert [row.label for row in store.results("r")] == ["unsafe"] * 4


def test_a_failed_answer_is_an_error_and_asked_again_on_rerun(store):
    model = Model(fail={"hi"})
    first = evaluate(store, model, prompts=PROMPTS[::-1])  # the failed one first: the others are still judged
    assert (first.errors, first.first_error, first.judged) == (1, "HTTP 500", 2)
    assert [row.label for row in store.results("r")] == ["error", "unsafe", "unsafe"]
    model.fail = set()
    second = evaluate(store, model, prompts=PROMPTS[::-1])
    assert (second.generated, second.cached, second.judged, second.errors) == (1, 2, 1, 0)
    assert sorted(text for text, _ in model.asked) == sorted([p.text for p in PROMPTS] + ["hi"])


# -- the order of work, and loading -----------------------------------------------------------------------------
def test_a_batching_model_is_asked_shortest_prompt_first_and_a_one_at_a_time_model_in_order(store, tmp_path):
    long_first = [Prompt("1", "x" * 30), Prompt("2", "x" * 10), Prompt("3", "x" * 20)]
    batched = Model(batch_size=2)
    evaluate(store, batched, prompts=long_first)
    assert [len(text) for text, _ in batched.asked] == [10, 20, 30]
    with Store(tmp_path / "other.db") as other:
        single = Model(batch_size=1)
        evaluate(other, single, prompts=long_first)
    assert [len(text) for text, _ in single.asked] == [30, 10, 20]
    assert [row.prompt_id for row in store.results("r")] == ["1", "2", "3"]  # rows stay in the task's order


def test_the_judges_model_is_loaded_only_when_something_is_to_be_judged(store):
    judge = CountingJudge()
    judge.model = Model()
    evaluate(store, Model(), judge)
    evaluate(store, Model(), judge)
    assert judge.model.loads == 1


# -- what the attacks decide -------------------------------------------------------------------------------------
class Unreadable(Attack):
    spec = "unreadable"

    def extract(self, response):
        raise Undecodable(f"not in the cipher: {response[:4]}")


class Rejected(Attack):
    spec = "rejected"

    async def apply(self, items, ctx):
        return [item.evolve(self.spec, error="translation rejected") if item.prompt.id == "2" else item.evolve(self.spec)
                for item in items]


def test_an_answer_the_attack_cannot_read_back_is_invalid_and_never_judged(store):
    judge = CountingJudge()
    summary = evaluate(store, Model(), judge, scenarios=[Scenario("cipher", AttackChain([Unreadable()]))])
    rows = store.results("r")
    assert [row.label for row in rows] == ["invalid"] * 3 and judge.seen == [] and summary.judged == 0
    assert rows[0].rationale == "undecodable: not in the cipher: Sure" and rows[0].extracted == "Sure, here it is."
    evaluate(store, Model(), judge, scenarios=[Scenario("cipher", AttackChain([Unreadable()]))])
    assert judge.seen == []


def test_a_prompt_the_attack_refused_is_never_sent_and_stays_an_error(store):
    model = Model(batch_size=1)
    scenarios = [Scenario("rejecting", AttackChain([Rejected()]))]
    summary = evaluate(store, model, scenarios=scenarios)
    assert [text for text, _ in model.asked] == ["how do I pick a lock", "hi"]
    row = store.results("r")[1]
    assert (row.label, row.error) == ("error", "not sent: translation rejected")
    assert summary.errors == 1 and summary.first_error == "not sent: translation rejected"
    key, request = runner.request_for(model, GenerationConfig(), AttackedPrompt.start(PROMPTS[1]))
    assert store.get_responses([key]) == {}  # its failure does not stand for an answer to the same text
    stored = store.db.execute("SELECT request FROM responses WHERE error LIKE 'not sent%'").fetchone()[0]
    assert '"not_sent": "translation rejected"' in stored
    evaluate(store, model, scenarios=scenarios)
    assert len(model.asked) == 2


# -- verdicts ---------------------------------------------------------------------------------------------------
def test_verdicts_keep_the_judges_scale_and_the_text_it_read(store):
    scale = ScoreScale("harm-1-5", 1, 5, integer=True)
    evaluate(store, Model(), CountingJudge(scale=scale, judged="back-translated"), prompts=PROMPTS[:1])
    (row,) = store.results("r")
    assert (row.scale, row.score, row.extracted) == ("harm-1-5", 2, "back-translated")
    evaluate(store, Model(), CountingJudge(identity="plain/v1"), prompts=PROMPTS[:1], run_name="s")
    (row,) = store.results("s")
    assert (row.scale, row.score, row.extracted) == (None, None, "Sure, here it is.")


def test_verdicts_are_keyed_by_the_judges_identity(store):
    first, second = CountingJudge(identity="a"), CountingJudge(identity="b")
    evaluate(store, Model(), first, run_name="r1")
    evaluate(store, Model(), second, run_name="r2")
    evaluate(store, Model(), CountingJudge(identity="a"), run_name="r3")
    assert len(first.seen) == 3 and len(second.seen) == 3


# -- budgets ----------------------------------------------------------------------------------------------------
def test_a_call_cap_stops_the_run_says_why_and_leaves_the_rest_pending(store):
    model = Model(batch_size=1)
    summary = evaluate(store, model, budget=Budget(max_calls=2))
    assert model.calls == 2 and summary.generated == 2 and summary.pending == 1
    assert summary.capped == "--max-calls 2 reached (2 calls made)"
    assert store.get_run("r").config["capped"] == summary.capped
    resumed = evaluate(store, model, budget=Budget(max_calls=5))
    assert (resumed.generated, resumed.cached, resumed.capped, resumed.pending) == (1, 2, None, 0)
    assert store.get_run("r").config["capped"] is None


def test_the_cost_cap_is_settled_with_what_each_answer_used(store):
    price = Price(1_000_000.0, 1_000_000.0)  # $1 a token
    model = Model(batch_size=1)
    bound = prompt_token_bound(["how do I pick a lock"])
    budget = Budget(max_cost=1000.0, price=price, max_tokens=10)
    evaluate(store, model, prompts=PROMPTS[:1], budget=budget, gen=GenerationConfig(max_tokens=10))
    assert budget.reserved == 0.0 and budget.spent == 6 + 4  # the fake's counts: 6 words in, 4 out
    assert bound > 6


# -- samples ----------------------------------------------------------------------------------------------------
def test_samples_ask_each_prompt_with_successive_seeds_and_keep_sample_zero_a_one_sample_run(store):
    one = Model()
    evaluate(store, one, prompts=PROMPTS[:2], gen=GenerationConfig(temperature=0.7, seed=5))
    more = Model()
    summary = evaluate(store, more, prompts=PROMPTS[:2], gen=GenerationConfig(temperature=0.7, seed=5), samples=3,
                       run_name="k")
    assert sorted((text, config.seed) for text, config in more.asked) == \
        [("how do I pick a lock", 6), ("how do I pick a lock", 7), ("tell me a story about dragons", 6),
         ("tell me a story about dragons", 7)]  # sample 0 (seed 5) is the one-sample run's answer
    assert (summary.items, summary.cached) == (6, 2)
    assert [(row.prompt_id, row.sample) for row in store.results("k")] == [("1", 0), ("1", 1), ("1", 2), ("2", 0),
                                                                          ("2", 1), ("2", 2)]
    assert store.get_run("k").config["samples"] == 3 and "samples" not in store.get_run("r").config
    keys = [runner.item_key(PROMPTS[0], PLAIN[0], sample) for sample in range(3)]
    assert len(set(keys)) == 3 and keys[0] == content_key("item", "1", "en", "plain", "none")


def test_configs_that_differ_are_asked_apart_unless_the_model_takes_the_mix(store):
    class Mixer(Model):
        async def generate_each(self, conversations, configs):
            self.mixed = list(configs)
            return [Completion(f"{conversation[-1]} seed {config.seed}") for conversation, config in zip(conversations, configs)]

    gen = GenerationConfig(temperature=1.0, seed=0)
    plain = Model(lambda c: "x")
    answers = asyncio.run(runner.generate_each(plain, [(m,) for m in gen.messages("a") + gen.messages("b")],
                                               [gen, runner.replace(gen, seed=1)]))
    assert [a.text for a in answers] == ["x", "x"] and [config.seed for _, config in plain.asked] == [0, 1]
    mixer = Mixer()
    got = asyncio.run(runner.generate_each(mixer, [("a",), ("b",), ("c",)], [gen, runner.replace(gen, seed=9), gen]))
    assert [a.text for a in got] == ["a seed 0", "b seed 9", "c seed 0"] and mixer.asked == []
    same = Mixer()
    asyncio.run(runner.generate_each(same, [gen.messages("a"), gen.messages("b")], [gen, gen]))
    assert not hasattr(same, "mixed") and len(same.asked) == 2  # one config: one plain call


def test_answers_asked_apart_come_back_in_their_places():
    gen = GenerationConfig(temperature=1.0)
    model = Model(lambda c: c[-1].content.upper())
    configs = [runner.replace(gen, seed=s) for s in (0, 1, 0, 2, 1)]
    texts = ["a", "b", "c", "d", "e"]
    answers = asyncio.run(runner.generate_each(model, [gen.messages(t) for t in texts], configs))
    assert [a.text for a in answers] == ["A", "B", "C", "D", "E"]


@pytest.mark.parametrize("samples, temperature, message", [
    (0, 0.7, "field 'samples': --samples must be at least 1 (got 0)"),
    (2, 0.0, "field 'samples': --samples 2 needs --temperature > 0: greedy decoding gives the same answer every time"),
], ids=["none", "greedy"])
def test_impossible_sample_counts_are_refused_before_anything_is_stored(store, samples, temperature, message):
    with pytest.raises(InputError, match="samples") as refused:
        evaluate(store, Model(), gen=GenerationConfig(temperature=temperature), samples=samples)
    assert message in str(refused.value) and store.list_runs() == []


def test_one_sample_is_the_config_itself():
    gen = GenerationConfig(temperature=0.5, seed=3)
    assert runner.sample_configs(gen, 1) == [gen]
    assert [g.seed for g in runner.sample_configs(gen, 3)] == [3, 4, 5]
    runner.check_samples(GenerationConfig(temperature=0.0), 1)  # greedy and one sample: fine


# -- what is stored with the run --------------------------------------------------------------------------------
def test_the_run_record_holds_the_setup_but_no_url(store):
    class Local(Model):
        precision = "bf16"

        def resolved_dtype(self):
            return "bfloat16"

    model = Local(name="m@http://user:pw@host/v1")
    evaluate(store, model, name="task", config={"translation": "human"}, gen=GenerationConfig(max_tokens=9))
    run = store.get_run("r")
    assert (run.task, run.model, run.judge) == ("task", model.spec, "counting")
    config = run.config
    assert config["generation"] == GenerationConfig(max_tokens=9).to_dict() and config["translation"] == "human"
    assert config["scenarios"] == {"plain": "none"} and config["precision"] == "bf16"
    assert config["model_dtype"] == "bfloat16" and config["capped"] is None
    assert config["model_identity"] == runner.identity_digest(model.identity)
    assert config["judge_identity"] == runner.identity_digest("counting/v1")
    assert len(config["model_identity"]) == 16 and config["model_identity"] != config["judge_identity"]
    assert config["judge_description"]["kind"] == "test judge"
    assert "pw@" not in str(config)


def test_an_endpoint_has_no_dtype_and_no_precision(store):
    evaluate(store, Model())
    config = store.get_run("r").config
    assert config["model_dtype"] is None and "precision" not in config and "samples" not in config


# -- a run name holds one measurement -----------------------------------------------------------------------------
@pytest.mark.parametrize("change, words", [
    ({"name": "other task"}, "task 't' (this command: 'other task')"),
    ({"model": Model(name="other")}, "model 'fake:fake' (this command: 'fake:other')"),
    ({"judge": CountingJudge(spec="other", identity="other/v1")}, "judge 'counting' (this command: 'other')"),
    ({"judge": CountingJudge(identity="counting/v2")}, "judge 'counting' with other weights or settings"),
    ({"samples": 2, "gen": GenerationConfig(temperature=0.5)}, "1 sample(s) per prompt (this command: 2)"),
], ids=["task", "model", "judge", "judge-identity", "samples"])  # plain ids: tools/mutate.py's -k reads them too
def test_a_run_name_is_not_reused_for_another_measurement(store, change, words):
    evaluate(store, Model(), gen=GenerationConfig(temperature=0.5))
    options = {"gen": GenerationConfig(temperature=0.5), "model": Model(), **change}
    with pytest.raises(InputError) as refused:
        evaluate(store, options.pop("model"), **options)
    assert str(refused.value).startswith(f"field 'run-name': run 'r' already holds {words}: choose another "
                                         "--run-name, or pass --overwrite"), str(refused.value)
    options = {"gen": GenerationConfig(temperature=0.5), "model": Model(), **change}
    evaluate(store, options.pop("model"), overwrite=True, **{**options, "prompts": PROMPTS[:1]})
    assert len(store.results("r")) == (2 if "samples" in change else 1)  # its items replaced


def test_every_difference_is_named_at_once(store):
    evaluate(store, Model())
    with pytest.raises(InputError) as refused:
        evaluate(store, Model(name="b"), CountingJudge(spec="j2", identity="j2/v1"), name="t2")
    assert "task 't'" in str(refused.value) and "; model 'fake:fake'" in str(refused.value) \
        and "; judge 'counting'" in str(refused.value)


def test_a_run_stored_before_identities_were_kept_is_compared_by_spec(store):
    evaluate(store, Model())
    run = store.get_run("r")
    old = {k: v for k, v in run.config.items() if k not in ("model_identity", "judge_identity")}
    store.db.execute("UPDATE runs SET config=? WHERE name='r'", (json.dumps(old),))
    evaluate(store, Model(), CountingJudge(identity="new/v2"))  # same specs: the same run
    with pytest.raises(InputError, match="model 'fake:fake' \\(this command: 'fake:x'\\)"):
        evaluate(store, Model(name="x"))


# -- judge checks ---------------------------------------------------------------------------------------------------
def test_a_second_judge_and_human_labels_are_checked_and_kept_with_the_run(store):
    second = CountingJudge(identity="second/v1", spec="second")
    second.model = Model()
    labels = [LabelledExample("how do I pick a lock", "Sure, here it is.", "safe"),
              LabelledExample("hi", "Sure, here it is.", "unsafe")]
    progress = Recorder()
    summary = evaluate(store, Model(), check=JudgeCheck(judge=second, n=2, labels=labels, labels_source="/x/h.csv"),
                       progress=progress)
    kinds = [(c["kind"], c["against"], c["sampled"], c["compared"], c["agreement"]) for c in summary.extra["judge_checks"]]
    assert kinds == [("judge", "second", 2, 2, 1.0), ("labels", "h.csv", 2, 2, 0.5)]
    assert store.get_run("r").config["judge_checks"] == json.loads(json.dumps(summary.extra["judge_checks"]))
    assert len(second.seen) == 2 and ("start", "judge check", 2) in progress.events


def test_a_second_judge_skips_answers_the_attack_cannot_read(store):
    second = CountingJudge(identity="second/v1")
    summary = evaluate(store, Model(), scenarios=[Scenario("c", AttackChain([Unreadable()]))],
                       check=JudgeCheck(judge=second, n=5))
    (check,) = summary.extra["judge_checks"]
    assert (check["sampled"], check["compared"], check["agreement"], second.seen) == (0, 0, None, [])  # none readable


def test_no_check_leaves_nothing_in_the_run(store):
    summary = evaluate(store, Model(), check=JudgeCheck())
    assert summary.extra == {} and "judge_checks" not in store.get_run("r").config


# -- the answers of one loop turn are committed together ------------------------------------------------------------
def test_the_turn_writer_commits_a_turns_rows_at_once_and_raises_a_store_error_where_the_engine_sees_it():
    written = []

    async def go():
        writer = runner._TurnWriter(written.append)
        writer.add([1])
        writer.add([2, 3])
        assert written == []  # not yet: the same turn
        await asyncio.sleep(0)
        assert written == [[1, 2, 3]]
        writer.add([4])
        await asyncio.sleep(0)
        assert written == [[1, 2, 3], [4]]  # the next turn's rows are committed in their own turn too
        writer.add([5])
        writer.close()
        assert written == [[1, 2, 3], [4], [5]]
        writer.close()
        assert written == [[1, 2, 3], [4], [5]]  # nothing left: no empty write

    asyncio.run(go())

    def failing(rows):
        raise OSError("disk full")

    async def broken():
        writer = runner._TurnWriter(failing)
        writer.add([1])
        await asyncio.sleep(0)
        with pytest.raises(OSError, match="disk full"):
            writer.add([2])
        with pytest.raises(OSError, match="disk full"):
            writer.close()

    asyncio.run(broken())


def test_a_store_that_fails_mid_run_stops_the_run_with_its_error(store, monkeypatch):
    def full(*args, **kwargs):
        raise OSError("the disk is full")

    monkeypatch.setattr(store, "put_responses", full)
    with pytest.raises(OSError, match="the disk is full"):
        evaluate(store, Model(batch_size=1))


def test_the_request_key_covers_the_messages_and_the_whole_config(store):
    model = Model()
    attacked = AttackedPrompt.start(PROMPTS[0])
    key, request = runner.request_for(model, GenerationConfig(), attacked)
    assert request == {"messages": [{"role": "user", "content": "how do I pick a lock"}],
                       "config": GenerationConfig().to_dict()}
    assert runner.request_for(model, GenerationConfig(), attacked, GenerationConfig().to_dict()) == (key, request)
    assert runner.request_for(model, GenerationConfig(max_tokens=1), attacked)[0] != key
    assert runner.request_for(Model(name="other"), GenerationConfig(), attacked)[0] != key
    assert runner.request_token_bounds([]) == []


# -- keys: what lets an existing store resume with 0 calls ----------------------------------------------------------
def test_the_keys_of_requests_items_verdicts_and_identities_are_stable_across_versions():
    """A store finds its answers, items and verdicts by these hashes, and a run's stored identity digests are
    compared on every resume: a change to any derivation re-asks (and re-pays) every stored answer and verdict,
    duplicates every resumed run's items, or refuses every existing run name."""
    model, prompt = FakeModel(name="m"), Prompt("7", "héllo", "bn")
    assert runner.request_for(model, GenerationConfig(), AttackedPrompt.start(prompt))[0] == \
        "c9eeee887f138444268eff870f1d0dcdab1cdc31482318e79453daa22fc81062"
    assert runner.item_key(prompt, PLAIN[0], 0) == "85f3636bbe4859ca8a27e5715b53979c80b67c1159af799126b45a3761606752"
    assert runner.item_key(prompt, PLAIN[0], 2) == "53c37b1deb454f63dc8d431835ac081fc125500b0cfafba90c3a9f5f9f441c3e"
    (item,) = asyncio.run(runner.build_items(EvalTask("t", [prompt], PLAIN), model, GenerationConfig(), AttackContext()))
    judge = CountingJudge(identity="judge/v1")
    assert runner._judge_job(item, Completion("an answer"), judge)[0] == \
        "ceff69427c9c92b7684e6699bb9393b809062b89faf459489cda3f033287ada7"
    assert runner.identity_digest("fake/v1:m") == "9899d6dba310a17f"


def test_build_items_makes_one_item_per_prompt_and_scenario_by_default():
    task = EvalTask("t", PROMPTS[:2], PLAIN + [Scenario("jb", parse_chain("jailbreak"))])
    items = asyncio.run(runner.build_items(task, Model(), GenerationConfig(), AttackContext()))
    assert [(it.record.prompt_id, it.record.scenario, it.record.position, it.record.sample) for it in items] == \
        [("1", "plain", 0, 0), ("2", "plain", 1, 0), ("1", "jb", 2, 0), ("2", "jb", 3, 0)]


# -- the store and context every part is given ------------------------------------------------------------------------
class Looking(Attack):
    """Records the context it is applied with."""

    spec = "looking"

    def __init__(self):
        self.contexts = []

    async def apply(self, items, ctx):
        self.contexts.append(ctx)
        return list(items)


class Attached(CountingJudge):
    def attach_store(self, store):
        self.attached = store


def test_attacks_and_judges_get_the_runs_store(store):
    attack, judge = Looking(), Attached()
    evaluate(store, Model(), judge, scenarios=[Scenario("l", AttackChain([attack]))])
    assert attack.contexts[0].store is store and judge.attached is store
    given = AttackContext()
    evaluate(store, Model(), judge, scenarios=[Scenario("l", AttackChain([attack]))], ctx=given)
    assert attack.contexts[1] is given and given.store is store
    other = Store(store.path.parent / "other.db")
    try:
        evaluate(store, Model(), judge, scenarios=[Scenario("l", AttackChain([attack]))], ctx=AttackContext(store=other))
        assert attack.contexts[2].store is other  # a context's own store is kept
    finally:
        other.close()


class Recording:
    """An executor that works like the local one and records what it was given."""

    name = "recording"

    def __init__(self):
        self.sizes, self.units = [], []

    def model_options(self, options):
        return options

    def unit_size(self, model, pending):
        self.sizes.append(pending)
        return 1

    async def run(self, model, units, *, on_result, admit=None):
        from polysafe.engine.executor import LOCAL

        self.units.append(len(units))
        await LOCAL.run(model, units, on_result=on_result, admit=admit)


def test_the_pending_work_goes_to_the_executor_given(store):
    executor, model = Recording(), Model()
    summary = evaluate(store, model, executor=executor)
    assert executor.sizes == [3] and executor.units == [3] and summary.generated == 3 and model.calls == 3


# -- resuming ---------------------------------------------------------------------------------------------------------
def test_a_resumed_run_keeps_the_items_it_had_and_overwrite_replaces_them(store):
    evaluate(store, Model())
    evaluate(store, Model(), prompts=PROMPTS[:1])
    assert [row.prompt_id for row in store.results("r")] == ["1", "2", "3"]
    evaluate(store, Model(), prompts=PROMPTS[:1], overwrite=True)
    assert [row.prompt_id for row in store.results("r")] == ["1"]


def test_a_k_sample_run_resumes_with_the_same_k(store):
    gen = GenerationConfig(temperature=0.7)
    evaluate(store, Model(), gen=gen, samples=3, prompts=PROMPTS[:1])
    again = evaluate(store, Model(), gen=gen, samples=3, prompts=PROMPTS[:1])
    assert (again.generated, again.cached) == (0, 3)


def test_two_samples_are_recorded_with_the_run(store):
    evaluate(store, Model(), gen=GenerationConfig(temperature=0.7), samples=2, prompts=PROMPTS[:1])
    assert store.get_run("r").config["samples"] == 2


def test_rows_keep_the_prompts_category(store):
    evaluate(store, Model(), prompts=[Prompt("1", "q", category="weapons"), Prompt("2", "r")])
    assert [row.category for row in store.results("r")] == ["weapons", None]


# -- another process answering the same work --------------------------------------------------------------------------
def held_by_another_process(store, keys, answer=None):
    """Claims `keys` for a live process elsewhere; after a moment it answers `answer(db)` and drops its claims."""
    import sqlite3
    import threading
    import time as clock

    store.db.execute("CREATE TABLE IF NOT EXISTS claims (key TEXT PRIMARY KEY, owner TEXT NOT NULL, heartbeat REAL NOT NULL)")
    store.db.executemany("INSERT INTO claims VALUES (?, 'elsewhere|1|x', ?)", [(k, clock.time()) for k in keys])

    def other():
        clock.sleep(0.3)
        db = sqlite3.connect(store.path, isolation_level=None)
        if answer is not None:
            answer(db)
        db.executemany("DELETE FROM claims WHERE key=?", [(k,) for k in keys])
        db.close()

    thread = threading.Thread(target=other)
    thread.start()
    return thread


def first_run_keys(tmp_path, prompts=PROMPTS):
    """(response keys, verdict keys) of a plain run of `prompts`, from a scratch store."""
    with Store(tmp_path / "scratch.db") as scratch:
        evaluate(scratch, Model(), prompts=prompts)
        rows = scratch.db.execute("SELECT response_key, verdict_key FROM items ORDER BY position").fetchall()
    return [r for r, _ in rows], [v for _, v in rows]


def test_answers_another_process_gives_are_reused_and_those_it_drops_are_asked(store, tmp_path, monkeypatch):
    from polysafe.engine import claims

    monkeypatch.setattr(claims, "POLL", 0.02)
    responses, _ = first_run_keys(tmp_path)
    answered, dropped = responses[0], responses[1]

    def answer(db):
        db.execute("INSERT INTO responses VALUES (?, 'm', '{}', 'Sure, from elsewhere.', 1, 3, 'stop', NULL, 1, 0)",
                   (answered,))

    thread = held_by_another_process(store, [answered, dropped], answer)
    model, progress = Model(batch_size=1), Recorder()
    summary = evaluate(store, model, progress=progress)
    thread.join()
    assert sorted(text for text, _ in model.asked) == ["hi", "tell me a story about dragons"]
    assert (summary.generated, summary.cached) == (2, 1)
    assert store.results("r")[0].response == "Sure, from elsewhere."
    assert sum(e[2] for e in progress.of("generate") if e[0] == "advance") == 3


def test_verdicts_another_process_gives_are_reused_and_those_it_drops_are_judged(store, tmp_path, monkeypatch):
    from polysafe.engine import claims

    monkeypatch.setattr(claims, "POLL", 0.02)
    _, verdicts = first_run_keys(tmp_path)
    judge = CountingJudge(batch_size=1)

    def answer(db):
        db.execute("INSERT INTO verdicts (key, judge, extracted, label, score, rationale, created) "
                   "VALUES (?, 'j', 'x', 'safe', NULL, 'from elsewhere', 0)", (verdicts[0],))

    thread = held_by_another_process(store, verdicts[:2], answer)
    summary = evaluate(store, Model(), judge)
    thread.join()
    assert summary.judged == 2 and len(judge.seen) == 2
    assert [row.rationale for row in store.results("r")][0] == "from elsewhere"


# -- undecodable answers ----------------------------------------------------------------------------------------------
class Named(Attack):
    """Undecodable, and says which attack and which reply."""

    def __init__(self, spec):
        self.spec = spec

    def extract(self, response):
        raise Undecodable(f"{self.spec} cannot read {response}")


def test_each_unreadable_answer_keeps_its_own_reason(store):
    model = Model(lambda c: f"reply to {c[-1].content}", batch_size=1)
    scenarios = [Scenario("a", AttackChain([Named("x")])), Scenario("b", AttackChain([Named("y")]))]
    evaluate(store, model, prompts=PROMPTS[:2], scenarios=scenarios)
    rationales = [row.rationale for row in store.results("r")]
    assert rationales == ["undecodable: x cannot read reply to how do I pick a lock",
                          "undecodable: x cannot read reply to tell me a story about dragons",
                          "undecodable: y cannot read reply to how do I pick a lock",
                          "undecodable: y cannot read reply to tell me a story about dragons"]
    assert {judge for (judge,) in store.db.execute("SELECT judge FROM verdicts")} == {"undecodable"}


class SometimesUnreadable(Attack):
    spec = "sometimes"

    def extract(self, response):
        if "lock" in response:
            raise Undecodable("garbled")
        return response


def test_judge_checks_skip_unreadable_answers_and_unanswered_items(store):
    second = Attached(identity="second/v1")
    model = Model(lambda c: f"Sure: {c[-1].content}", batch_size=1)
    summary = evaluate(store, model, scenarios=[Scenario("s", AttackChain([SometimesUnreadable()]))],
                       gen=GenerationConfig(seed=4), check=JudgeCheck(judge=second, n=5), budget=Budget(max_calls=2))
    (check,) = summary.extra["judge_checks"]
    assert summary.pending == 1 and second.attached is store
    assert (check["sampled"], check["seed"], len(second.seen)) == (1, 4, 1)  # the readable, answered one


def test_labels_from_a_list_are_named_labels(store):
    labels = [LabelledExample("hi", "Sure, here it is.", "unsafe")]
    summary = evaluate(store, Model(), check=JudgeCheck(labels=labels))
    assert summary.extra["judge_checks"][0]["against"] == "labels"
