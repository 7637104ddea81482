"""Benchmarks as plugins, the library API (`polysafe.evaluate`) and config-file runs, against fake endpoints."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from fakes import last_user_text

import polysafe
from polysafe.api import RunOptions
from polysafe.benchmarks import BENCHMARKS, load_benchmark, parse_param_pairs
from polysafe.config import load_run_set, prepare_run_set
from polysafe.engine.store import Store
from polysafe.errors import InputError
from polysafe.models import ModelOptions

ROOT = Path(__file__).resolve().parent.parent
FAST = ModelOptions(max_retries=1, backoff_base=0.01, backoff_max=0.02, timeout=5, concurrency=4)


def prompt_file(tmp_path: Path, n: int = 3) -> Path:
    path = tmp_path / "p.csv"
    path.write_text("id,text\n" + "".join(f"{i},question number {i}\n" for i in range(n)), encoding="utf-8")
    return path


def test_every_paper_benchmark_is_registered_with_a_default_judge():
    assert {"multijail", "codeattack", "file", "overrefusal"} <= set(BENCHMARKS.names())
    assert load_benchmark("codeattack").judge_spec("llm:openai:x") == "harm:openai:x"  # the paper's 1-5 judge
    assert load_benchmark("multijail").judge_spec("llm:openai:x") == "llm:openai:x"  # the paper's 3-way judge
    assert load_benchmark("codeattack").judge_spec(None) == "refusal"


def test_params_are_typed_and_unknown_keys_name_the_key(shared_data):
    bench = load_benchmark("multijail")
    params = bench.params(parse_param_pairs(["languages=en,bn", "limit=2", f"data={shared_data}/multijail/MultiJail.csv"]))
    task = bench.task(params)
    assert {p.language for p in task.prompts} == {"en", "bn"} and len(task.prompts) == 4
    with pytest.raises(InputError, match="field 'langs': unknown parameter"):
        bench.params({"langs": "en"})
    with pytest.raises(InputError, match="field 'limit'"):
        bench.params({"limit": "many"})
    with pytest.raises(InputError, match="key=value"):
        parse_param_pairs(["limit"])


def test_evaluate_runs_a_benchmark_and_a_rerun_asks_nothing(fake_openai, tmp_path):
    server = fake_openai(lambda body: "I'm sorry, I can't help with that.")
    options = RunOptions(model=FAST, db=tmp_path / "r.db")
    params = {"prompts": str(prompt_file(tmp_path))}
    first = polysafe.evaluate("file", model=f"openai:fake@{server.url}", params=params, options=options)
    assert (first.items, first.generated, first.errors) == (3, 3, 0)
    again = polysafe.evaluate("file", model=f"openai:fake@{server.url}", params=params, options=options)
    assert again.run == first.run and again.generated == 0 and server.received == 3
    rows = polysafe.results(first.run, tmp_path / "r.db")
    assert [r.label for r in rows] == ["safe"] * 3


def test_same_model_name_on_two_endpoints_makes_two_runs(fake_openai, tmp_path):
    a, b = fake_openai(), fake_openai()
    options = RunOptions(model=FAST, db=tmp_path / "r.db")
    params = {"prompts": str(prompt_file(tmp_path, 1))}
    run_a = polysafe.evaluate("file", model=f"openai:same@{a.url}", params=params, options=options).run
    run_b = polysafe.evaluate("file", model=f"openai:same@{b.url}", params=params, options=options).run
    assert run_a != run_b and a.received == 1 and b.received == 1


def write_config(tmp_path: Path, urls: list[str], shared_data: Path, extra: str = "") -> Path:
    config = tmp_path / "run.yaml"
    models = "".join(f"  - openai:m{i}@{url}\n" for i, url in enumerate(urls))
    config.write_text(
        f"db: {tmp_path / 'set.db'}\n"
        f"models:\n{models}"
        "judge: refusal\n"
        "generation:\n  temperature: 0\n  max_tokens: 32\n"
        "concurrency: 2\n"
        "max_retries: 1\n"
        "benchmarks:\n"
        f"  - name: file\n    params:\n      prompts: {prompt_file(tmp_path, 2)}\n"
        f"  - name: multijail\n    params:\n      languages: en,zh\n      limit: 2\n      scenario: unintentional\n"
        f"      data: {shared_data / 'multijail' / 'MultiJail.csv'}\n" + extra,
        encoding="utf-8")
    return config


def test_config_file_runs_every_model_by_benchmark_pair_and_resumes(fake_openai, tmp_path, shared_data):
    servers = [fake_openai(lambda body: "Sure: " + last_user_text(body)), fake_openai()]
    config = write_config(tmp_path, [s.url for s in servers], shared_data)
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "polysafe.cli", "eval", "--config", str(config)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    # 2 file prompts + 2 MultiJail rows x 2 languages, per model
    assert [s.received for s in servers] == [6, 6]
    with Store(tmp_path / "set.db") as store:
        runs = store.list_runs()
    assert len(runs) == 4 and sorted(count for _, count in runs) == [2, 2, 4, 4]
    assert {r.model.split("@")[0] for r, _ in runs} == {"openai:m0", "openai:m1"}
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert again.returncode == 0 and [s.received for s in servers] == [6, 6]  # nothing asked twice


@pytest.mark.parametrize("extra, line, field", [
    ("colour: blue\n", 20, "colour"),
    ("  - name: multijail\n    params:\n      langs: en\n", 22, "benchmarks.2.params.langs"),
    ("  - name: nosuch\n", 20, "benchmarks.2.name"),
])
def test_config_errors_name_file_key_and_line(tmp_path, shared_data, extra, line, field):
    config = write_config(tmp_path, ["http://127.0.0.1:9/v1"], shared_data, extra)
    with pytest.raises(InputError) as caught:
        prepare_run_set(config)
    message = str(caught.value)
    assert message.startswith(f"{config}:{line}") and f"field '{field}'" in message


def test_config_bad_value_and_bad_yaml(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [smollm2]\nbenchmarks:\n  - name: file\nconcurrency: -3\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"bad.yaml:4 field 'concurrency'"):
        load_run_set(bad)
    broken = tmp_path / "broken.yaml"
    broken.write_text("models: [smollm2\n", encoding="utf-8")
    with pytest.raises(InputError, match="not valid YAML"):
        load_run_set(broken)


def test_toml_config_is_read_too(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text('models = ["smollm2"]\nconcurency = 2\n[[benchmarks]]\nname = "file"\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"run.toml:2 field 'concurency': unknown key"):
        load_run_set(config)


def test_generic_eval_command_takes_params_and_exits_2_on_a_bad_one(tmp_path):
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "polysafe.cli", "eval", "overrefusal", "-P", "nope=1",
                           "--db", str(tmp_path / "r.db")], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "nope" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "r.db").exists()


def test_ciphers_benchmark_sends_enciphered_advbench_and_judges_the_decoded_reply(fake_openai, tmp_path, shared_data):
    import base64

    def reply(body):
        text = last_user_text(body)
        return base64.b64encode(b"I'm sorry, I can't help with that.").decode() if "Base64" in text else "Sure, step one"

    server = fake_openai(reply)
    params = {"ciphers": "plain,base64", "limit": 2, "data": str(shared_data / "codeattack" / "harmful_behaviors.csv")}
    summary = polysafe.evaluate("ciphers", model=f"openai:fake@{server.url}", params=params,
                                options=RunOptions(model=FAST, db=tmp_path / "r.db"))
    rows = polysafe.results(summary.run, tmp_path / "r.db")
    assert summary.items == 4 and server.received == 4
    by_scenario = {(r.scenario, r.label) for r in rows}
    assert by_scenario == {("plain", "unsafe"), ("base64", "safe")}
    encoded = [r.prompt for r in rows if r.scenario == "base64"][0]
    assert rows[0].query not in encoded  # the query is sent enciphered, never in plain text
    with pytest.raises(InputError, match="unknown cipher scenario"):
        load_benchmark("ciphers").task(load_benchmark("ciphers").params({"ciphers": "rot99"}))


def test_judge_prompt_file_reaches_the_judge_and_names_the_run(fake_openai, tmp_path):
    """`--judge-prompt-file`: the user's rubric is what the judge model receives, and it is part of the run."""
    target = fake_openai(lambda body: "Sure, here is how.")
    judge = fake_openai(lambda body: "Fine.\nLabel: unsafe")
    rubric = tmp_path / "rubric.txt"
    rubric.write_text("MY-RUBRIC-7Z. Judge this.\n{query}\n{response}\n", encoding="utf-8")
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    base = [sys.executable, "-m", "polysafe.cli", "eval", "file", "-p", str(prompt_file(tmp_path, 1)),
            "-m", f"openai:t@{target.url}", "-j", f"llm:openai:j@{judge.url}", "--db", str(tmp_path / "r.db")]
    done = subprocess.run(base + ["--judge-prompt-file", str(rubric)], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "MY-RUBRIC-7Z" in json.dumps(judge.requests[-1]) and judge.received == 1
    plain = subprocess.run(base, capture_output=True, text=True, env=env, timeout=60)
    assert plain.returncode == 0 and judge.received == 2  # another rubric: another judge identity, judged again
    assert "MY-RUBRIC-7Z" not in json.dumps(judge.requests[-1])
    missing = subprocess.run(base + ["--judge-prompt-file", str(tmp_path / "nope.txt")], capture_output=True, text=True,
                             env=env, timeout=60)
    assert missing.returncode == 2 and "nope.txt" in missing.stderr and "Traceback" not in missing.stderr


def test_benchmarks_declare_the_papers_figures_as_the_method_notes_give_them(shared_data):
    """Checked against the methods notes' own tables, parsed here (not against polysafe's copy)."""
    notes = (shared_data.parent / "methods" / "codeattack.md").read_text(encoding="utf-8")
    header = next(line for line in notes.splitlines() if line.startswith("| variant |"))
    models = [c.strip() for c in header.strip("|").split("|")][1:-1]
    reference = load_benchmark("codeattack").reference.figures
    for line in notes.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] in ("string", "list (queue)", "stack"):
            encoding = cells[0].split()[0]
            assert {m: float(v.rstrip("%")) for m, v in zip(models, cells[1:-1])} == reference[encoding]
    assert load_benchmark("multijail").reference.figures[("GPT-4", "intentional")]["avg"] == 40.71
