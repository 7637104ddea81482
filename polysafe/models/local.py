"""Local transformers causal LMs: batched generation with the model's own chat template.

Generation runs through polysafe's continuous-batching decode loop (decoding.py) for the architectures it
supports, and through transformers' `generate` otherwise. torch and transformers are imported on first use so
that the CLI starts fast.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from pathlib import Path
from typing import Any, Sequence

from ..errors import BackendError, SpecError
from ..types import Completion, Conversation, GenerationConfig
from .base import MODELS, ModelBackend, ModelOptions
from .decoding import DecodeLoop, DecodeRequest, clean_text, supports
from .numerics import UNITS, Numerics, kv_dtype, lower, resolve
from .tuning import opted_in, return_large_frees_to_the_os

DEFAULT_BATCH_SIZE = 64  # rows decoded together (bench/local_throughput.py)
KV_CACHE_BUDGET = 880 * 2**20  # bytes of keys and values: long prompts get fewer rows, not more memory
# Lowered numerics keep 16-bit keys, so the same bytes hold twice the rows: fewer steps, each reading the weights
# once for more tokens. bench/numerics.py's fp16 run, 128 prompts: 69.1 s at 64 rows and 600 MiB (peak 1.71 GB),
# 61.3 s at 96 rows and 800 MiB (peak 1.77 GB, about 81 rows at a time), 60.6 s at 128 and 880 (peak 1.91 GB).
# Their weights take more resident memory than float32's memory-mapped ones, hence a budget under 880.
LOWERED_BATCH_SIZE = 96
LOWERED_KV_CACHE_BUDGET = 800 * 2**20


def default_batch_size(numerics: Numerics) -> int:
    return LOWERED_BATCH_SIZE if numerics.lowered else DEFAULT_BATCH_SIZE


def pick_device(device: str) -> str:
    import torch

    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(dtype: str, device: str):
    """`auto`: bf16 on GPUs, float32 elsewhere. On CPUs bf16 changes the answers (it is opt-in: --dtype bfloat16)."""
    import torch

    if dtype != "auto":
        resolved = getattr(torch, dtype, None)
        if not isinstance(resolved, torch.dtype):
            raise BackendError(f"unknown dtype '{dtype}'")
        return resolved
    return torch.bfloat16 if device.startswith("cuda") else torch.float32


def quiet_transformers() -> None:
    """polysafe shows its own progress; transformers' loading bars and advisory warnings would bury it."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def fingerprint_dir(path: str | Path) -> str:
    """A cheap identity for local weights: names, sizes and mtimes of the files in a directory."""
    path = Path(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        stat = file.stat()
        digest.update(f"{file.relative_to(path)}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest()[:16]


def fingerprint_adapter(path: str | Path) -> str:
    """Adapters are small: hash their bytes, so a retrained adapter never reuses stale answers."""
    path = Path(path)
    if not path.is_dir():
        raise BackendError(f"LoRA adapter directory not found: {path}")
    digest = hashlib.sha256()
    for file in sorted(p for p in path.iterdir() if p.is_file() and p.name.startswith("adapter_")):
        digest.update(file.name.encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


class LocalCausalLM(ModelBackend):
    """A transformers causal LM on this machine. Also exposes `.model` and `.tokenizer` for scoring and training.

    The engine may run a few `generate` calls at once: they share one decode loop, so the next call's prompts
    take the rows that the current call's finished answers leave free.
    """

    concurrency = 3

    def __init__(self, source: str, *, spec: str, options: ModelOptions, adapters: tuple[str, ...] = (), identity: str | None = None):
        self.source = source
        self.adapters = tuple(adapters)
        self.options = options
        self.spec = spec + "".join(f"+lora:{a}" for a in self.adapters)
        base_identity = identity or (f"hf:{Path(source).resolve()}#{fingerprint_dir(source)}" if Path(source).is_dir() else spec)
        self._weights_identity = base_identity + "".join(f"+lora#{fingerprint_adapter(a)}" for a in self.adapters)
        self.numerics = self._choose_numerics()
        self.batch_size = options.batch_size or default_batch_size(self.numerics)
        self._model: Any = None
        self._tokenizer: Any = None
        self._loop: DecodeLoop | None = None
        self._lock = threading.Lock()

    @property
    def identity(self) -> str:
        """The weights and the numerics (`@bf16-amx`), or in fp32 the resolved dtype (`@float32`, `@bfloat16`, as
        stored before numerics existed): answers that differ in precision are never shared."""
        tag = self.numerics.tag if self.numerics.lowered else self.resolved_dtype()
        return f"{self._weights_identity}@{tag}"

    @property
    def precision(self) -> str:
        """The numerics as named in the identity and in every report's setup block: `float32`, `bf16-amx`, ..."""
        return self.identity.rsplit("@", 1)[1]

    def _choose_numerics(self) -> Numerics:
        """`--numerics` resolved on this CPU; bf16 / int8 lower a float32 model on the CPU, so `--dtype` must be
        auto or float32 with them. `auto` off the CPU is fp32 (the GPU path keeps `--dtype`)."""
        name = self.options.numerics
        if name == "fp32":
            return resolve(name)
        if name == "auto" and pick_device(self.options.device) != "cpu":
            return resolve("fp32")
        try:
            numerics = resolve(name)
        except ValueError as err:
            if name not in UNITS:  # not a precision this CPU lacks: a bad name, or a bad measurement file
                raise SpecError(str(err), field="numerics") from None
            raise BackendError(str(err)) from None
        if numerics.lowered and self.options.dtype not in ("auto", "float32"):
            raise SpecError(f"--numerics {name} lowers a float32 model: leave --dtype at auto or float32 "
                            f"(not {self.options.dtype})", field="numerics")
        if numerics.lowered and pick_device(self.options.device) != "cpu":
            raise SpecError(f"--numerics {name} is for the CPU; on {pick_device(self.options.device)} use --dtype",
                            field="numerics")
        return numerics

    def resolved_dtype(self) -> str:
        if self.numerics.lowered:
            return "float32"  # the model's own dtype: norms, residuals and the embedding
        if self._model is not None:
            return str(self._model.dtype).removeprefix("torch.")
        return str(pick_dtype(self.options.dtype, pick_device(self.options.device))).removeprefix("torch.")

    # -- loading -------------------------------------------------------------------------------------------
    def load_weights(self, dtype) -> tuple[Any, Any]:
        """Return (model, tokenizer). Subclasses override to load from elsewhere (e.g. a GGUF file)."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(self.source)
            model = AutoModelForCausalLM.from_pretrained(self.source, dtype=dtype)
        except OSError as err:
            raise BackendError(f"cannot load model '{self.source}': {str(err).splitlines()[0]}") from None
        return model, tokenizer

    def _ensure_loaded(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            quiet_transformers()
            if opted_in():
                return_large_frees_to_the_os()
            device = pick_device(self.options.device)
            dtype = pick_dtype("float32" if self.numerics.lowered else self.options.dtype, device)
            model, tokenizer = self.load_weights(dtype)
            for adapter in self.adapters:  # stacked adapters (e.g. defense then attack) merge in order
                from peft import PeftModel

                model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
            model.to(device=device, dtype=dtype).eval()
            if self.numerics.name == "fp16" and not supports(model):
                raise BackendError(f"--numerics fp16 needs polysafe's decode loop, which checks each pass for float16 "
                                   f"overflow; '{self.spec}' runs through transformers' generate: use bf16 or fp32")
            lower(model, self.numerics)
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            tokenizer.padding_side = "left"
            self._tokenizer, self.device = tokenizer, device
            if supports(model):
                self._loop = DecodeLoop(model, max_rows=self.batch_size, eos_ids=eos_ids(model, tokenizer),
                                        pad_id=tokenizer.pad_token_id,
                                        kv_budget=LOWERED_KV_CACHE_BUDGET if self.numerics.lowered else KV_CACHE_BUDGET,
                                        kv_dtype=kv_dtype(self.numerics) if self.numerics.lowered else None,
                                        fast_attention=self.numerics.lowered,
                                        adapt_threads=opted_in())
            self._model = model

    @property
    def model(self):
        self._ensure_loaded()
        return self._model

    @property
    def tokenizer(self):
        self._ensure_loaded()
        return self._tokenizer

    # -- generation ----------------------------------------------------------------------------------------
    def render(self, conversation: Conversation) -> str:
        messages = [m.to_dict() for m in conversation]
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant: "

    async def generate(self, conversations: Sequence[Conversation], config: GenerationConfig) -> list[Completion]:
        return await asyncio.to_thread(self.generate_sync, conversations, config)

    async def load(self) -> None:
        await asyncio.to_thread(self._ensure_loaded)

    async def generate_each(self, conversations: Sequence[Conversation], configs: Sequence[GenerationConfig]) -> list[Completion]:
        """Each conversation with its own settings (samples of one prompt differ in seed), in one continuous batch."""
        await asyncio.to_thread(self._ensure_loaded)
        if self._loop is None:  # transformers' generate takes one config per call
            out = []
            for conversation, config in zip(conversations, configs):
                out.extend(await self.generate([conversation], config))
            return out
        return await asyncio.to_thread(self._generate_rows, conversations, configs)

    def generate_sync(self, conversations: Sequence[Conversation], config: GenerationConfig) -> list[Completion]:
        self._ensure_loaded()
        if self._loop is not None:
            return self._generate_rows(conversations, [config] * len(conversations))
        prompts = self._prompt_ids(conversations)
        with self._lock:
            results = self._generate_with_transformers(prompts, config)
        return [self.completion(len(p), ids, stopped) for p, (ids, stopped) in zip(prompts, results)]

    def _prompt_ids(self, conversations: Sequence[Conversation]) -> list[tuple[int, ...]]:
        return [tuple(self._tokenizer(self.render(c), add_special_tokens=False)["input_ids"]) for c in conversations]

    def _generate_rows(self, conversations: Sequence[Conversation], configs: Sequence[GenerationConfig]) -> list[Completion]:
        prompts = self._prompt_ids(conversations)
        requests = [DecodeRequest(p, c.max_tokens, c.temperature, c.top_p, c.seed) for p, c in zip(prompts, configs)]
        results = [(r.token_ids, r.stopped) for r in self._loop.run(requests)]
        return [self.completion(len(p), ids, stopped) for p, (ids, stopped) in zip(prompts, results)]

    def completion(self, prompt_tokens: int, token_ids: list[int], stopped: bool) -> Completion:
        return Completion(text=clean_text(self._tokenizer, token_ids).strip(), prompt_tokens=prompt_tokens,
                          completion_tokens=len(token_ids) + int(stopped), finish_reason="stop" if stopped else "length")

    def _generate_with_transformers(self, prompts: list[tuple[int, ...]], config: GenerationConfig) -> list[tuple[list[int], bool]]:
        """Architectures the decode loop does not cover: `generate` on left-padded batches of similar lengths."""
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        results: list[tuple[list[int], bool]] = [([], False)] * len(prompts)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            for index, result in zip(chunk, self._generate_batch([prompts[i] for i in chunk], config)):
                results[index] = result
        return results

    def _generate_batch(self, prompts: list[tuple[int, ...]], config: GenerationConfig) -> list[tuple[list[int], bool]]:
        import torch

        tok = self._tokenizer
        encoded = tok.pad({"input_ids": [list(p) for p in prompts]}, return_tensors="pt").to(self.device)
        sampling: dict[str, Any] = {"do_sample": False}
        if config.temperature > 0:
            sampling = {"do_sample": True, "temperature": config.temperature, "top_p": config.top_p}
            torch.manual_seed(config.seed)
        with torch.inference_mode():
            output = self._model.generate(**encoded, max_new_tokens=config.max_tokens, pad_token_id=tok.pad_token_id, **sampling)
        eos = eos_ids(self._model, tok)
        results = []
        for row in output[:, encoded["input_ids"].shape[1] :].tolist():
            end = next((i for i, t in enumerate(row) if t in eos), None)
            results.append((row, False) if end is None else (row[:end], True))
        return results


def eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids = {tokenizer.eos_token_id}
    configured = getattr(model.generation_config, "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(configured)
    return {i for i in ids if i is not None}


@MODELS.register("hf", takes_argument=True, summary="Any transformers causal LM: a local path or a hub id.", example="hf:HuggingFaceTB/SmolLM2-135M-Instruct")
def _hf(arg: str, *, options: ModelOptions, adapters: tuple[str, ...] = ()) -> LocalCausalLM:
    return LocalCausalLM(arg, spec=f"hf:{arg}", options=options, adapters=adapters)
