"""Benign requests for over-refusal checks: Bianchi et al.'s I-Alpaca (50 Alpaca instructions, CC BY-NC 4.0)."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import BackendError
from .ctrl_sets import load_instruction_set, parse_instruction_set

I_ALPACA_URL = "https://raw.githubusercontent.com/vinid/safety-tuned-llamas/main/data/evaluation/I-Alpaca.json"


def load_benign_prompts(source: str | Path | None = None, *, timeout: float = 30.0) -> list[str]:
    """I-Alpaca from its public GitHub URL (source=None or an http(s) URL), or a local file of the same shape."""
    if source is None or str(source).startswith(("http://", "https://")):
        import httpx

        url = str(source or I_ALPACA_URL)
        try:
            response = httpx.get(url, timeout=timeout, follow_redirects=True)
            response.raise_for_status()
            data = response.json()
        except (httpx.HTTPError, json.JSONDecodeError) as err:
            raise BackendError(f"cannot load benign prompts from {url}: {err}") from None
        return [p.text for p in parse_instruction_set(data, file=url)]
    return [p.text for p in load_instruction_set(source)]
