"""The model-backend protocol and its registry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..errors import SpecError
from ..registry import Registry
from ..types import Completion, Conversation, GenerationConfig


DEFAULT_MAX_RESPONSE_BYTES = 8 * 2**20


@dataclass(frozen=True)
class ModelOptions:
    """Settings a backend may use; each takes what applies to it."""

    base_url: str | None = None  # OpenAI-compatible endpoints (a comma-separated list names replicas)
    base_urls: tuple[str, ...] = ()  # replicas of one model, requests spread over them (--base-url, repeated)
    api_key_env: str = "OPENAI_API_KEY"  # the key is read from this variable, never stored
    concurrency: int = 16  # requests in flight (remote backends)
    timeout: float = 120.0  # seconds per request (remote backends)
    max_retries: int = 6
    backoff_base: float = 1.0  # seconds; doubled per retry, with jitter
    backoff_max: float = 60.0
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES  # remote backends: a bigger answer is an error (--max-response-bytes)
    batch_size: int | None = None  # conversations per forward pass (local backends)
    dtype: str = "auto"  # local backends: auto | float32 | bfloat16 | float16 (the whole model cast)
    numerics: str = "fp32"  # local backends on the CPU: fp32 | bf16 | fp16 | int8 | auto (models/numerics.py)
    device: str = "auto"  # local backends: auto | cpu | cuda | mps
    require_key: bool = True  # remote backends: refuse up front an endpoint that needs a key and has none


class ModelBackend:
    """Generate completions for a batch of conversations.

    `identity` names the model in cache keys: same identity + same config + same messages = same answer,
    so it must change when the weights change and must never contain a secret.
    """

    spec: str
    identity: str
    batch_size: int = 1  # conversations per `generate` call the engine should send
    concurrency: int = 1  # `generate` calls the engine may run at once

    async def generate(self, conversations: Sequence[Conversation], config: GenerationConfig) -> list[Completion]:
        raise NotImplementedError

    async def load(self) -> None:
        """Get ready to answer (a local model loads its weights), so that timing generation leaves loading out."""
        return None

    async def aclose(self) -> None:
        return None


MODELS: Registry[ModelBackend] = Registry("model", package="polysafe.models")


def split_adapters(spec: str) -> tuple[str, tuple[str, ...]]:
    """`smollm2+lora:a+lora:b` -> ("smollm2", ("a", "b")): adapters are merged in order."""
    base, *adapters = spec.split("+lora:")
    if any(not a.strip() for a in adapters):
        raise SpecError(f"'+lora:' needs an adapter directory in model spec '{spec}'", field="model")
    return base.strip(), tuple(a.strip() for a in adapters)


def load_model(spec: str, options: ModelOptions | None = None) -> ModelBackend:
    options = options or ModelOptions()
    base, adapters = split_adapters(spec)
    name, _ = MODELS.split(base)
    if adapters and name == "openai":
        raise SpecError("LoRA adapters apply to local models only (smollm2, hf:...)", field="model")
    extra = {"adapters": adapters} if adapters else {}
    return MODELS.create(base, options=options, **extra)
