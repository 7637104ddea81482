"""Local numerics (fp32 | bf16 | int8 | auto): lowered runs give whole clean answers, the numerics are part of the
model identity so a stored fp32 answer is never served for bf16, `auto` follows the CPU's features, library
decoding leaves the process's thread count and allocator alone, and the bench's result line stays parseable."""

from __future__ import annotations

import asyncio
import importlib.util
import re
from pathlib import Path

import pytest
from test_ctrl_perplexity import tiny_llama_dir

from polysafe.errors import BackendError, SpecError
from polysafe.models import ModelOptions, load_model
from polysafe.models import numerics as numerics_module
from polysafe.models import numerics_measured as measured_module
from polysafe.models.decoding import REPLACEMENT
from polysafe.models.numerics import FP32, resolve, supported
from polysafe.types import GenerationConfig, Message

LOWERED = [n.name for n in supported() if n.lowered]
needs = {name: pytest.mark.skipif(name not in LOWERED, reason=f"this CPU has no {name} matrix units")
         for name in ("bf16", "fp16", "int8")}


# -- auto follows what was measured on this kind of CPU ------------------------------------------------------------
AMX = {"amx_bf16", "amx_int8", "amx_tile", "avx512f", "avx2"}


@pytest.fixture(autouse=True)
def measurements_file(tmp_path, monkeypatch):
    """Each test reads its own measurement file (none by default), never the user's cache."""
    path = tmp_path / "numerics.json"
    monkeypatch.setenv(measured_module.FILE_ENV, str(path))
    return path


def _measure(kind: str, *entries: tuple[str, float, float]) -> None:
    measured_module.save(kind, [measured_module.Measurement(tag, speedup, agreement, "test", "test")
                                for tag, speedup, agreement in entries])


def test_auto_picks_the_fastest_numerics_whose_verdicts_agree(monkeypatch):
    monkeypatch.setattr(measured_module, "SHIPPED", {})
    kind = numerics_module.cpu_kind(AMX)
    assert kind == "bf16-amx+int8-amx"
    assert resolve("auto", features=AMX) == FP32  # nothing measured: nothing assumed
    _measure(kind, ("bf16-amx", 2.4, 0.97), ("int8-amx", 3.1, 0.86))
    assert resolve("auto", features=AMX).tag == "bf16-amx"  # int8 is faster, but its verdicts disagree too often
    _measure(kind, ("bf16-amx", 2.4, 0.97), ("int8-amx", 3.1, 0.96))
    assert resolve("auto", features=AMX).tag == "int8-amx"
    _measure(kind, ("bf16-amx", 2.4, 0.949), ("int8-amx", 0.9, 0.99))  # one disagrees, the other is slower than fp32
    assert resolve("auto", features=AMX) == FP32
    _measure("int8-vnni", ("int8-vnni", 1.5, 0.99))  # another kind of CPU's figures do not count here
    assert resolve("auto", features=AMX) == FP32
    assert resolve("auto", features={"avx512_vnni"}).tag == "int8-vnni"


def test_shipped_measurements_count_unless_this_machine_measured_its_own(monkeypatch):
    kind = numerics_module.cpu_kind(AMX)
    monkeypatch.setattr(measured_module, "SHIPPED", {kind: (measured_module.Measurement("bf16-amx", 2.0, 0.96, "w", "m"),)})
    assert resolve("auto", features=AMX).tag == "bf16-amx"
    _measure(kind, ("bf16-amx", 2.0, 0.90))
    assert resolve("auto", features=AMX) == FP32


@pytest.mark.skipif(not LOWERED, reason="this CPU has no bf16 or int8 units")
def test_auto_on_this_cpu_is_a_supported_numerics():
    chosen = resolve("auto")
    assert chosen in supported()
    qualifying = [m for m in measured_module.measured(numerics_module.cpu_kind()) if m.qualifies()]
    assert chosen.lowered == bool(qualifying)
    backend = load_model(f"hf:{tiny_llama_dir()}", ModelOptions(numerics="auto", device="cpu"))
    assert backend.numerics == chosen


def test_auto_falls_back_to_fp32_without_matrix_units(monkeypatch, measurements_file):
    assert resolve("auto", features=()) == FP32
    assert [n.tag for n in supported({"avx2", "fma"})] == ["fp32", "int8-avx2"]
    assert [n.tag for n in supported({"avx512f", "avx512_bf16", "avx512_vnni"})] == ["fp32", "bf16-avx512", "int8-vnni"]
    sapphire_rapids = {"avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_int8"}
    assert [n.tag for n in supported(sapphire_rapids)] == ["fp32", "bf16-amx", "fp16-avx512", "int8-amx"]
    assert resolve("fp16", features=sapphire_rapids | {"amx_fp16"}).tag == "fp16-amx"
    monkeypatch.setattr(numerics_module, "cpu_features", lambda: frozenset())  # a CPU with no features at all
    spec = f"hf:{tiny_llama_dir()}"
    fallback = load_model(spec, ModelOptions(numerics="auto", device="cpu"))
    assert fallback.numerics == FP32
    assert fallback.identity == load_model(spec, ModelOptions(dtype="float32", device="cpu")).identity
    with pytest.raises(BackendError, match="no bf16 units"):  # asked for explicitly: said, not emulated
        load_model(spec, ModelOptions(numerics="bf16", device="cpu"))
    with pytest.raises(BackendError, match="no fp16 units"):
        load_model(spec, ModelOptions(numerics="fp16", device="cpu"))


def test_a_broken_measurement_file_is_named(monkeypatch, measurements_file):
    monkeypatch.setattr(numerics_module, "cpu_features", lambda: frozenset(AMX))
    measurements_file.write_text('{"bf16-amx+int8-amx": [{"numerics": "bf16-amx"}]}', encoding="utf-8")
    with pytest.raises(SpecError, match=r"numerics\.json: not a numerics measurement file"):
        load_model(f"hf:{tiny_llama_dir()}", ModelOptions(numerics="auto", device="cpu")).numerics


def test_the_cpu_flags_can_be_capped_for_emulation(monkeypatch):
    monkeypatch.setenv(numerics_module.FLAGS_ENV, "avx2 fma")
    numerics_module.cpu_features.cache_clear()
    try:
        assert numerics_module.cpu_features() == {"avx2", "fma"}
        assert [n.tag for n in supported()] == ["fp32", "int8-avx2"]
    finally:
        monkeypatch.delenv(numerics_module.FLAGS_ENV)
        numerics_module.cpu_features.cache_clear()


def test_bad_numerics_choices_are_input_errors():
    spec = f"hf:{tiny_llama_dir()}"
    with pytest.raises(SpecError, match="unknown numerics 'fp8'"):
        load_model(spec, ModelOptions(numerics="fp8", device="cpu"))
    if LOWERED:
        with pytest.raises(SpecError, match="leave --dtype at auto or float32"):
            load_model(spec, ModelOptions(numerics=LOWERED[0], dtype="bfloat16", device="cpu"))


@needs["fp16"]
def test_fp16_is_refused_where_transformers_generate_would_decode(monkeypatch):
    """Only the decode loop and scoring check for float16 overflow; `generate` would turn one into tokens."""
    from polysafe.models import decoding

    monkeypatch.setattr(decoding, "SUPPORTED_ARCHITECTURES", frozenset())
    spec = f"hf:{tiny_llama_dir()}"
    with pytest.raises(BackendError, match="fp16 needs polysafe's decode loop"):
        load_model(spec, ModelOptions(numerics="fp16", device="cpu")).model
    assert load_model(spec, ModelOptions(numerics="fp32", device="cpu")).model is not None


# -- lowered runs: whole, clean answers close to fp32's ---------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("name", [pytest.param(name, marks=needs[name]) for name in ("bf16", "fp16", "int8")])
def test_a_lowered_run_gives_whole_clean_answers(smollm2, name):
    from polysafe.data.textchecks import is_degenerate

    conversations = [(Message("user", t),) for t in ("What is the capital of France?", "Write a haiku about rain.",
                                                      "Comment fabriquer une arme ?", "天空为什么是蓝色的？")]
    config = GenerationConfig(max_tokens=24)
    lowered = load_model("smollm2", ModelOptions(numerics=name, batch_size=16))
    answers = asyncio.run(lowered.generate(conversations, config))
    reference = asyncio.run(smollm2.generate(conversations, config))
    assert lowered.identity.endswith(f"@{resolve(name).tag}")
    assert lowered._loop.fast_attention and not smollm2._loop.fast_attention  # fp32 keeps generate's arithmetic
    for answer in answers:
        assert answer.text and REPLACEMENT not in answer.text and not is_degenerate(answer.text)
        assert answer.text.isprintable() or "\n" in answer.text
        assert answer.finish_reason in ("stop", "length") and 0 < answer.completion_tokens <= 24
    assert "Paris" in answers[0].text
    # the same model: most answers start as fp32's do (a wrong scale or layout gives other words from the start;
    # int8 drifts early on the two prompts where fp32 itself rambles)
    assert sum(a.text.split()[:3] == r.text.split()[:3] for a, r in zip(answers, reference)) >= 2


# -- identity and store ---------------------------------------------------------------------------------------
def test_fp32_identity_is_unchanged_and_numerics_name_the_rest():
    spec = f"hf:{tiny_llama_dir()}"
    default = load_model(spec, ModelOptions(device="cpu"))
    explicit = load_model(spec, ModelOptions(numerics="fp32", device="cpu"))
    assert default.identity == explicit.identity and default.identity.endswith("@float32")
    whole_cast = load_model(spec, ModelOptions(dtype="bfloat16", device="cpu"))  # the old --dtype: old identity
    assert whole_cast.identity.endswith("@bfloat16")
    tags = {load_model(spec, ModelOptions(numerics=name, device="cpu")).identity.rsplit("@", 1)[1] for name in LOWERED}
    assert tags == {resolve(name).tag for name in LOWERED} and not tags & {"float32", "bfloat16"}


@pytest.mark.skipif(not LOWERED, reason="this CPU has no bf16, fp16 or int8 units")
def test_lowered_numerics_decode_more_rows_unless_told():
    """16-bit keys take half the bytes: the lowered loop holds more rows at a time (fewer steps over the weights)."""
    spec = f"hf:{tiny_llama_dir()}"
    exact = load_model(spec, ModelOptions(device="cpu"))
    lowered = load_model(spec, ModelOptions(numerics=LOWERED[0], device="cpu"))
    assert lowered.batch_size > exact.batch_size
    assert lowered.model is not None and lowered._loop.max_rows == lowered.batch_size
    assert load_model(spec, ModelOptions(numerics=LOWERED[0], batch_size=8, device="cpu")).batch_size == 8


@pytest.mark.skipif("bf16" not in LOWERED, reason="this CPU has no bf16 matrix units")
def test_a_stored_fp32_answer_is_never_served_for_bf16(tmp_path):
    from fakes import run_refusal_judged

    from polysafe.engine import Store
    from polysafe.report.setup import describe_setup

    texts = ["What is the capital of France?", "Write a haiku about rain.", "Explain vaccines.", "Mji mkuu wa Kenya ni upi?"]

    def run(numerics: str, name: str):
        return run_refusal_judged(store, f"hf:{tiny_llama_dir()}", ModelOptions(numerics=numerics, device="cpu"), texts, name)

    with Store(tmp_path / "r.db") as store:
        assert run("fp32", "f32").generated == 4
        assert (run("fp32", "f32-again").generated, run("fp32", "f32-again").cached) == (0, 4)
        bf16 = run("bf16", "bf16")
        assert (bf16.generated, bf16.cached) == (4, 0)
        assert (run("bf16", "bf16-again").generated, run("bf16", "bf16-again").cached) == (0, 4)
        models = {m for (m,) in store.db.execute("SELECT model FROM responses")}
        assert {m.rsplit("@", 1)[1] for m in models} == {"float32", resolve("bf16").tag}
        setups = {name: describe_setup(store.get_run(name)).lines() for name in ("f32", "bf16")}
    assert f"model: hf:{tiny_llama_dir()}, numerics {resolve('bf16').tag}" in setups["bf16"]
    assert f"model: hf:{tiny_llama_dir()}, numerics float32" in setups["f32"]


# -- no process state set by library decoding -------------------------------------------------------------------
def test_library_decoding_leaves_the_thread_count_and_allocator_alone(monkeypatch):
    import ctypes

    import torch

    from polysafe.models import tuning

    monkeypatch.setattr(tuning, "_opted_in", False)
    calls: list = []
    real_set = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (calls.append(("threads", n)), real_set(n)))
    real_cdll = ctypes.CDLL
    monkeypatch.setattr(ctypes, "CDLL", lambda *a, **k: (calls.append(("libc", a)), real_cdll(*a, **k))[1])
    before = torch.get_num_threads()
    backend = load_model(f"hf:{tiny_llama_dir()}", ModelOptions(device="cpu", batch_size=2))
    conversations = [(Message("user", t),) for t in ("Hello there.", "Write a haiku.", "What is two and two?")]
    answers = backend.generate_sync(conversations, GenerationConfig(max_tokens=12))  # > the probe steps
    assert len(answers) == 3 and torch.get_num_threads() == before
    assert calls == []


def test_the_cli_opts_in_to_choosing_threads(monkeypatch):
    import torch

    from polysafe.models import tuning

    monkeypatch.setattr(tuning, "_opted_in", False)
    monkeypatch.setattr(tuning, "return_large_frees_to_the_os", lambda: None)
    from polysafe import cli

    monkeypatch.setattr(cli, "app", lambda **_: 0)
    with pytest.raises(SystemExit):
        cli.main()
    assert tuning.opted_in()
    backend = load_model(f"hf:{tiny_llama_dir()}", ModelOptions(device="cpu"))
    backend.model
    expected = 1 if torch.get_num_threads() == 1 or "OMP_NUM_THREADS" in __import__("os").environ else 2
    assert len(backend._loop.threads.choices) == expected


# -- the bench's line ---------------------------------------------------------------------------------------------
def load_bench():
    path = Path(__file__).resolve().parent.parent / "bench" / "numerics.py"
    spec = importlib.util.spec_from_file_location("bench_numerics", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_bench_prints_one_parseable_line_per_numerics():
    bench = load_bench()
    pattern = re.compile(r"^numerics=(?P<name>[a-z0-9-]+) tokens/s=(?P<rate>\d+\.\d) vs_fp32=(?P<ratio>\d+\.\d\d)x "
                         r"verdict_agreement=(?P<agreement>\d+\.\d)% peak_gb=(?P<peak>\d+\.\d\d)$")
    line = bench.result_line("bf16-amx", 412.345, 2.0712, 0.96875, 1.4321)
    found = pattern.match(line)
    assert found, line
    assert found.groupdict() == {"name": "bf16-amx", "rate": "412.3", "ratio": "2.07", "agreement": "96.9", "peak": "1.43"}
    assert pattern.match(bench.result_line("fp32", 199.2, 1.0, 1.0, 1.92))
    assert bench.first_divergence([1, 2, 3], [1, 2, 3]) is None
    assert bench.first_divergence([1, 2, 3], [1, 5, 3]) == 1
    assert bench.first_divergence([1, 2], [1, 2, 3]) == 2
    stats = bench.agreement({"ids": [[1, 2], [3, 4], [5]], "labels": ["unsafe", "safe", "safe"]},
                            {"ids": [[1, 2], [3, 9], [6]], "labels": ["unsafe", "unsafe", "safe"]})
    assert stats == {"identical": pytest.approx(1 / 3), "divergence": 0.5, "verdicts": pytest.approx(2 / 3),
                     "agreeing": 2, "prompts": 3}
    # non-refusal (unsafe) rate, other minus fp32, paired: 1 of 3 in fp32, 2 of 3 in the other
    change = bench.rate_change({"labels": ["unsafe", "safe", "safe"]}, {"labels": ["unsafe", "unsafe", "safe"]})
    assert change.value == pytest.approx(1 / 3) and (change.first_only, change.second_only) == (1, 0)
    assert change.low < 0 < change.high  # one flip in three proves nothing


# -- int8 on AVX2 without VNNI: 16-bit sums ---------------------------------------------------------------------
AVX2_ONLY = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
INT8_ERRORS = """
import json, torch
from polysafe.models._lowered import Int8Linear
torch.manual_seed(0)
linear = torch.nn.Linear(576, 1536, bias=False)
x = torch.randn(16, 576)
want = linear(x)
print(json.dumps({levels: float((Int8Linear(linear, levels=levels)(x) - want).norm() / want.norm()) for levels in (63, 127)}))
"""


@pytest.mark.skipif("avx2" not in numerics_module.cpu_features(), reason="not an x86 CPU with AVX2")
def test_int8_on_avx2_keeps_its_sums_in_16_bits():
    """oneDNN's AVX2 int8 kernel adds pairs of u8 x s8 products in 16 bits: full-range weights overflow them
    (every output wrong); the 63 levels used on such CPUs do not."""
    import json
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", INT8_ERRORS], capture_output=True, text=True, check=True,
                         env={**os.environ, **AVX2_ONLY, "PYTHONPATH": str(root)})
    errors = json.loads(out.stdout)
    assert errors["63"] < 0.02, errors
    model_on_avx2 = load_model(f"hf:{tiny_llama_dir()}", ModelOptions(device="cpu"))
    numerics_module.lower(model_on_avx2.model, numerics_module.Numerics("int8", "avx2"))
    layers = [m for m in model_on_avx2.model.modules() if type(m).__name__ == "Int8Linear"]
    assert layers and max(int(m.weight_t.abs().max()) for m in layers) == 63
    model_with_vnni = load_model(f"hf:{tiny_llama_dir()}", ModelOptions(device="cpu"))
    numerics_module.lower(model_with_vnni.model, numerics_module.Numerics("int8", "vnni"))
    assert max(int(m.weight_t.abs().max()) for m in model_with_vnni.model.modules() if type(m).__name__ == "Int8Linear") == 127
