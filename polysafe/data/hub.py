"""Hugging Face hub datasets, with a quick answer when the hub can't be reached.

`datasets.load_dataset` retries an unreachable hub with backoff (about 23 s of retry logs) before it falls back to
its local cache. A 2-second probe of the hub's host decides first: unreachable (or `HF_HUB_OFFLINE=1`) loads in
offline mode, straight from the cache, and a dataset that is not cached fails at once with one line.
"""

from __future__ import annotations

import contextlib
import os
import socket
from typing import Any, Iterator
from urllib.parse import urlparse

from ..errors import InputError

PROBE_SECONDS = 2.0


def hub_reachable(timeout: float = PROBE_SECONDS) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def offline_mode() -> Iterator[None]:
    """Offline for datasets and huggingface_hub, which read the setting once at import: set where they keep it."""
    import datasets.config
    import huggingface_hub.constants as hub_constants

    saved = (datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE, os.environ.get("HF_HUB_OFFLINE"))
    datasets.config.HF_HUB_OFFLINE = hub_constants.HF_HUB_OFFLINE = True
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE = saved[0], saved[1]
        if saved[2] is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = saved[2]


def load_hub_dataset(name: str, split: str = "train", *, file: str | None = None, field: str | None = None) -> Any:
    """`datasets.load_dataset(name, split=split)`, from the local cache at once when the hub is unreachable."""
    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets is a dependency
        raise InputError("the 'datasets' package is needed to load datasets from the hub") from None
    online = hub_reachable()
    try:
        with contextlib.nullcontext() if online else offline_mode():
            return datasets.load_dataset(name, split=split)
    except Exception as err:  # unknown dataset, gated, not cached offline: one line, with the way out
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        where = "" if online else "the hub is unreachable and it is not in the local cache; "
        raise InputError(f"cannot load '{name}' ({split}) from the Hugging Face hub: {where}{first}; "
                         "pass a local copy with --data PATH", file=file, field=field) from None
