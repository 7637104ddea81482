"""The Self-Defense trade-off study end to end on a tiny random Llama: one adapter per unsafe share, one table
and one chart, and a second sweep that adds a share trains only that share and generates nothing again."""

from __future__ import annotations

import json

from test_ctrl_perplexity import tiny_llama_dir
from test_selfdefense import StyledGenerator
from typer.testing import CliRunner

from polysafe.cli import app
from polysafe.training.lora import load_chat_jsonl
from polysafe.defenses.selfdefense import pipeline
from polysafe.defenses.selfdefense.checks import refuses


def sweep(server, shared_data, tmp_path, ratios):
    return CliRunner().invoke(app, [
        "defend", "self-defense", "run", "--model", f"hf:{tiny_llama_dir()}", "--generator", f"openai:fake@{server.url}",
        "--languages", "en,zh", "--limit", "2", "--data", str(shared_data / "multijail" / "MultiJail.csv"),
        "--scenario", "unintentional", "--benign", str(shared_data / "ctrl/bianchi2024/evaluation/I-Alpaca.json"),
        "--benign-limit", "2", "--n-unsafe", "2", "--n-general", "2", "--unsafe-ratios", ratios,
        "--max-steps", "1", "--batch-size", "2", "--max-length", "64", "--lr", "1e-3", "--max-tokens", "4",
        "--out", str(tmp_path / "sd"), "--db", str(tmp_path / "r.db")])


def test_sweep_trains_one_adapter_per_share_and_reuses_everything_stored(fake_openai, shared_data, tmp_path, monkeypatch):
    trained: list[int] = []
    real_finetune = pipeline.finetune

    def counting_finetune(base, examples, out_dir, config, progress=None):
        trained.append(len(examples))
        assert config.max_steps == 1 and config.batch_size == 2 and config.max_length == 64 and config.lora_alpha == 16
        return real_finetune(base, examples, out_dir, config, progress=progress)

    monkeypatch.setattr(pipeline, "finetune", counting_finetune)
    generator = StyledGenerator()
    server = fake_openai(generator)

    first = sweep(server, shared_data, tmp_path, "0,1")
    assert first.exit_code == 0, first.output
    assert trained == [8, 8]  # 4 pairs per language (en, zh), one adapter per share
    out = tmp_path / "sd"
    for tag, unsafe in (("unsafe000", 0), ("unsafe100", 8)):
        rows = load_chat_jsonl(out / f"train-{tag}.jsonl")
        refusals = [c for c in rows if refuses(c[1].content)]
        assert len(rows) == 8 and len(refusals) == unsafe
    table = first.stdout
    assert "| scenario | language | n | unsafe % base | unsafe % unsafe 0% | unsafe % unsafe 100% |" in table
    assert "| unintentional | en | 2 |" in table and "| unintentional | zh | 2 |" in table
    assert "| usefulness | benign requests refused % | 2 |" in table and "| usefulness | perplexity" in table
    assert (out / "tradeoff.png").read_bytes().startswith(b"\x89PNG")
    report = json.loads((out / "report.json").read_text())
    assert [m["share"] for m in report["models"]] == [None, 0.0, 1.0]
    assert all(m["usefulness"]["perplexity"] > 1 for m in report["models"])
    generated = server.received

    second = sweep(server, shared_data, tmp_path, "0,0.5,1")
    assert second.exit_code == 0, second.output
    assert trained == [8, 8, 8]  # only the new share trained
    assert server.received == generated  # the pool was reused: no generation call
    assert "reusing the generated pool" in second.output and second.output.count("reusing adapter") == 2
    half = load_chat_jsonl(out / "train-unsafe050.jsonl")
    assert sum(refuses(c[1].content) for c in half) == 4
    assert "unsafe % unsafe 50% |" in second.stdout
    report = json.loads((out / "report.json").read_text())
    assert [m["share"] for m in report["models"]] == [None, 0.0, 0.5, 1.0]
    # The before/after table is polysafe compare's: every adapter's run against the base run, Holm-corrected.
    markdown = (out / "report.md").read_text()
    compared = markdown[markdown.index("## Comparison by language"):]
    assert "Holm" in compared and all(f"`{m['run']}`" in compared for m in report["models"])
    assert [m["steps"] for m in report["models"]] == [0, 0, 1, 0]
