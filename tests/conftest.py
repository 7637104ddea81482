"""Shared fixtures. Tests read ../shared/data (beside the checkout) or small files they make."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(Path(__file__).resolve().parent))  # for `from fakes import ...`

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"test data missing: {SHARED_DATA} (shared/ must sit beside the checkout)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def smollm2():
    """The embedded model, loaded once per test session (float32 on CPU)."""
    from polysafe.models import ModelOptions, load_model

    backend = load_model("smollm2", ModelOptions(batch_size=16))
    backend.model  # load now, so the first test does not pay for it inside its own timing
    return backend


@pytest.fixture
def fake_openai():
    from fakes import FakeOpenAI

    def start(reply=None):
        server = FakeOpenAI(reply) if reply else FakeOpenAI()
        servers.append(server)
        return server.__enter__()

    servers: list = []
    yield start
    for server in servers:
        server.__exit__(None, None, None)
