"""Local transformers causal LMs: batched, left-padded generation with the model's own chat template.

torch and transformers are imported on first use so that the CLI starts fast.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from pathlib import Path
from typing import Any, Sequence

from ..errors import BackendError
from ..types import Completion, Conversation, GenerationConfig
from .base import MODELS, ModelBackend, ModelOptions

DEFAULT_BATCH_SIZE = 64  # on CPU, batch 64 runs ~2x the tokens/s of 32 (bench/local_throughput.py)


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
    """`auto`: bf16 on GPUs; on CPUs bf16 only with native bf16 matmul (AMX / AVX512-BF16), else float32.

    Measured on a 2-core AVX-512 Xeon without bf16 units: float32 generation ran 1.4x the tokens/s of bf16.
    """
    import torch

    if dtype != "auto":
        try:
            return getattr(torch, dtype)
        except AttributeError:
            raise BackendError(f"unknown dtype '{dtype}'") from None
    if device.startswith("cuda"):
        return torch.bfloat16
    if device == "cpu" and _cpu_has_bf16():
        return torch.bfloat16
    return torch.float32


def _cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


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
    """A transformers causal LM on this machine. Also exposes `.model` and `.tokenizer` for scoring and training."""

    concurrency = 1

    def __init__(self, source: str, *, spec: str, options: ModelOptions, adapters: tuple[str, ...] = (), identity: str | None = None):
        self.source = source
        self.adapters = tuple(adapters)
        self.options = options
        self.spec = spec + "".join(f"+lora:{a}" for a in self.adapters)
        base_identity = identity or (f"hf:{Path(source).resolve()}#{fingerprint_dir(source)}" if Path(source).is_dir() else spec)
        self.identity = base_identity + "".join(f"+lora#{fingerprint_adapter(a)}" for a in self.adapters)
        self.batch_size = options.batch_size or DEFAULT_BATCH_SIZE
        self._model: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()

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
            device = pick_device(self.options.device)
            dtype = pick_dtype(self.options.dtype, device)
            model, tokenizer = self.load_weights(dtype)
            for adapter in self.adapters:  # stacked adapters (e.g. defense then attack) merge in order
                from peft import PeftModel

                model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
            model.to(device=device, dtype=dtype).eval()
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            tokenizer.padding_side = "left"
            self._model, self._tokenizer, self.device = model, tokenizer, device

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

    def generate_sync(self, conversations: Sequence[Conversation], config: GenerationConfig) -> list[Completion]:
        self._ensure_loaded()
        texts = [self.render(c) for c in conversations]
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths pad less
        results: list[Completion | None] = [None] * len(texts)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            for index, completion in zip(chunk, self._generate_batch([texts[i] for i in chunk], config)):
                results[index] = completion
        return [r for r in results if r is not None]

    def _generate_batch(self, texts: list[str], config: GenerationConfig) -> list[Completion]:
        import torch

        tok = self._tokenizer
        encoded = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        sampling: dict[str, Any] = {"do_sample": False}
        if config.temperature > 0:
            sampling = {"do_sample": True, "temperature": config.temperature, "top_p": config.top_p}
            torch.manual_seed(config.seed)
        with torch.inference_mode():
            output = self._model.generate(
                **encoded, max_new_tokens=config.max_tokens, pad_token_id=tok.pad_token_id, **sampling
            )
        new_tokens = output[:, encoded["input_ids"].shape[1] :]
        eos_ids = self._eos_ids()
        completions = []
        for row, mask in zip(new_tokens, encoded["attention_mask"]):
            ids = row.tolist()
            end = next((i for i, t in enumerate(ids) if t in eos_ids), None)
            kept = ids if end is None else ids[:end]
            completions.append(
                Completion(
                    text=tok.decode(kept, skip_special_tokens=True).strip(),
                    prompt_tokens=int(mask.sum()),
                    completion_tokens=len(kept) + (0 if end is None else 1),
                    finish_reason="length" if end is None else "stop",
                )
            )
        return completions

    def _eos_ids(self) -> set[int]:
        ids = {self._tokenizer.eos_token_id}
        configured = getattr(self._model.generation_config, "eos_token_id", None)
        if isinstance(configured, int):
            ids.add(configured)
        elif configured:
            ids.update(configured)
        return {i for i in ids if i is not None}


@MODELS.register("hf", takes_argument=True, summary="Any transformers causal LM: a local path or a hub id.", example="hf:HuggingFaceTB/SmolLM2-135M-Instruct")
def _hf(arg: str, *, options: ModelOptions, adapters: tuple[str, ...] = ()) -> LocalCausalLM:
    return LocalCausalLM(arg, spec=f"hf:{arg}", options=options, adapters=adapters)
