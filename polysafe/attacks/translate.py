"""`translate:<lang>`: put the query into another language with the context's translator (batched, cached, checked)."""

from __future__ import annotations

from typing import Any, Sequence

from ..languages import get_language
from ..translators import TranslationRequest, translate_checked
from ..translators.base import lookup_checked
from ..errors import InputError
from .base import ATTACKS, Attack, AttackContext, AttackedPrompt


@ATTACKS.register("translate", takes_argument=True, example="translate:bn",
                  summary="Translate the prompt into a language (translator: precomputed | llm:<model> | hf:<path>).")
class TranslateAttack(Attack):
    def __init__(self, language: str, **options: Any):
        self.target = get_language(language, field="attack").code
        self.spec = f"translate:{self.target}"

    def transform(self, item: AttackedPrompt) -> AttackedPrompt:
        raise InputError("translate works on batches: use it through a chain", field="attack")

    async def apply(self, items: Sequence[AttackedPrompt], ctx: AttackContext) -> list[AttackedPrompt]:
        if ctx.translator is None:
            raise InputError(f"'{self.spec}' needs a translator (--translator precomputed | llm:<model> | hf:<path>)", field="attack")
        requests = [TranslationRequest(text=it.text, source=it.language, target=self.target, prompt_id=it.prompt.id)
                    for it in items]
        if ctx.dry_run:  # only what is stored; the rest is counted, and stands as a text that was never answered
            found = lookup_checked(ctx.translator, requests, ctx.store)
            if getattr(ctx.translator, "makes_calls", True):  # human translations are looked up, not asked
                unique = {r.text: r for r, t in zip(requests, found) if t is None and r.source != r.target}
                ctx.pending_calls += len(unique)
                ctx.pending_texts.extend(unique)
            return [it.evolve(self.spec, text=t.text if t else f"[to be translated into {self.target}] {it.text}",
                              language=self.target,
                              error=it.error or (None if t is None or t.ok else f"{self.spec} rejected: {t.problem}"))
                    for it, t in zip(items, found)]
        translations = await translate_checked(ctx.translator, requests, ctx.store)
        # A rejected translation (refused, wrong language, looping, merged) is never sent: the item is an error.
        return [it.evolve(self.spec, text=t.text, language=self.target,
                          error=it.error or (None if t.ok else f"{self.spec} rejected: {t.problem}"))
                for it, t in zip(items, translations)]
