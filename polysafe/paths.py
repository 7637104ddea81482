"""Where polysafe keeps files between runs: the cache folder (converted weights, downloaded data sets)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """`$POLYSAFE_CACHE`, else `$XDG_CACHE_HOME/polysafe`, else `~/.cache/polysafe`."""
    root = os.environ.get("POLYSAFE_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"), "polysafe")
    return Path(root)
