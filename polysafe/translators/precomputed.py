"""`precomputed`: MultiJail's human translations, looked up by prompt id (the source text must match the row)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..errors import InputError
from .base import TRANSLATORS, TranslationRequest


@TRANSLATORS.register("precomputed", summary="MultiJail's human translations, by prompt id (--data for a local CSV).")
class PrecomputedTranslator:
    makes_calls = False  # a lookup in the human translations: dry runs count no call for it
    def __init__(self, *, data: str | Path | None = None, **_: Any):
        self.data = data
        self.spec = "precomputed"
        self.identity = "precomputed:multijail"
        self._table: dict[tuple[str, str], str] | None = None

    def _lookup(self) -> dict[tuple[str, str], str]:
        if self._table is None:
            from ..data.multijail import load_multijail

            self._table = {(p.id, p.language): p.text for p in load_multijail(self.data)}
        return self._table

    async def translate(self, requests: Sequence[TranslationRequest]) -> list[str]:
        table = self._lookup()
        out = []
        for r in requests:
            known_source = table.get((r.prompt_id or "", r.source))
            if r.prompt_id is None or known_source is None or _squash(known_source) != _squash(r.text):
                raise InputError(f"prompt '{r.prompt_id}' has no human translation in MultiJail; "
                                 "choose a machine translator (--translator llm:<model> or hf:<path>)", field="translator")
            text = table.get((r.prompt_id, r.target))
            if text is None:
                raise InputError(f"MultiJail has no '{r.target}' translation", field="translator")
            out.append(text)
        return out


def _squash(text: str) -> str:
    from ..data.multijail import clean_text

    return " ".join(clean_text(text).split())
