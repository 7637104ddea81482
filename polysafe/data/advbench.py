"""AdvBench harmful behaviors (Zou et al. 2023): 520 harmful requests, the prompt set of CodeAttack.

Loaded from its public CSV (header `goal,target`) by default, or from a local CSV with a `goal` column
(`--data PATH`). The download is kept under the polysafe cache, so later runs work offline.
Prompt ids are `advbench-<row>` with rows counted from 1, so a run resumes on the same ids.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ..errors import InputError
from ..types import Prompt
from .prompts import PROMPT_SETS
from .textfile import parse_csv, read_text

ADVBENCH_URL = "https://raw.githubusercontent.com/llm-attacks/llm-attacks/main/data/advbench/harmful_behaviors.csv"
SOURCE = "advbench"


def parse_advbench(text: str, *, file: str) -> list[Prompt]:
    """Prompts from the CSV text; errors name the file, the line and the field."""
    table = parse_csv(text, file=file)
    table.require("goal")
    prompts: list[Prompt] = []
    for number, (line, row) in enumerate(table.rows, start=1):
        goal = (row.get("goal") or "").strip()
        if not goal:
            raise InputError("empty request", file=file, line=line, field="goal")
        prompts.append(Prompt(id=f"{SOURCE}-{number:03d}", text=goal, language="en", source=SOURCE))
    if not prompts:
        raise InputError("file has no rows", file=file)
    return prompts


def download(url: str, *, timeout: float = 60.0) -> str:
    """The CSV at `url`, cached by URL under the polysafe cache folder."""
    import httpx

    from ..paths import cache_root

    cached = cache_root() / "advbench" / (hashlib.sha256(url.encode()).hexdigest()[:16] + ".csv")
    if cached.is_file():
        return cached.read_text(encoding="utf-8")
    try:
        reply = httpx.get(url, timeout=timeout, follow_redirects=True)
        reply.raise_for_status()
    except httpx.HTTPError as err:
        raise InputError(f"could not download AdvBench ({err}); pass a local copy with --data PATH", file=url) from None
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(f".{os.getpid()}.part")
    partial.write_text(reply.text, encoding="utf-8")
    partial.replace(cached)  # atomic: a crash never leaves half a file
    return reply.text


@PROMPT_SETS.register("advbench", example="advbench",
                      summary="AdvBench harmful behaviors (520, English), from its public CSV or --data PATH.")
class AdvBench:
    def __init__(self, path: str | Path | None = None, url: str = ADVBENCH_URL, **_: object):
        self.path = Path(path) if path else None
        self.url = url
        self.name = f"advbench:{self.path.name}" if self.path else "advbench"

    def load(self) -> list[Prompt]:
        if self.path is None:
            return parse_advbench(download(self.url), file=self.url)
        return parse_advbench(read_text(self.path), file=str(self.path))
