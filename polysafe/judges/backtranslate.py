"""Back-translation: translate each non-English response to English, then ask the wrapped judge (MultiJail's
pipeline for English-only judges).

Each back-translation is checked (`polysafe.translators.checks`) and stored with its checks; a
translation that fails a check, or a failed translation call, makes the verdict an `error`, never a label.
The English text is the verdict's `judged` text, so the store keeps what the judge actually read.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Sequence

from ..types import JudgeDescription, JudgeInput, Verdict
from .base import Judge

if TYPE_CHECKING:  # pragma: no cover
    from ..translators import Translator
    from ..engine.store import Store


def needs_translation(item: JudgeInput) -> bool:
    """A non-empty answer to a non-English prompt, unless the model already answered in English (models often
    do): translating English "from" the prompt's language would garble it, and the checks would reject it."""
    from ..data.textchecks import is_language

    return item.language != "en" and bool(item.response.strip()) and not is_language(item.response, "en")


class BackTranslatingJudge(Judge):
    version = "v2"  # v2: back-translations are checked, and the English text is kept with the verdict

    def __init__(self, inner: Judge, translator: "Translator", *, store: "Store | None" = None):
        self.inner, self.translator, self.store = inner, translator, store
        self.spec = f"{inner.spec}+back-translate:{translator.spec}"
        self.identity = f"{inner.identity}|back-translate/{self.version}:{translator.identity}"
        self.batch_size, self.concurrency = inner.batch_size, inner.concurrency

    def attach_store(self, store: "Store") -> None:
        self.store = self.store or store
        self.inner.attach_store(store)

    def describe(self) -> JudgeDescription:
        """The inner judge's declaration, for answers back-translated by `translator`."""
        inner = self.inner.describe()
        return replace(inner, spec=self.spec, kind=f"{inner.kind}, on answers back-translated into English",
                       traits={**inner.traits, "back_translated": True, "back_translator": self.translator.spec},
                       notes=(*inner.notes, f"back-translation: {self.translator.spec}"))

    async def judge(self, items: Sequence[JudgeInput]) -> list[Verdict]:
        from ..translators import TranslationRequest, translate_checked

        needs = [needs_translation(i) for i in items]
        requests = [TranslationRequest(text=i.response, source=i.language, target="en") for i, n in zip(items, needs) if n]
        try:
            translations = iter(await translate_checked(self.translator, requests, self.store))
        except Exception as err:  # a failed translation must not become a verdict of any kind but error
            return [Verdict.error(f"back-translation failed: {' '.join(str(err).split())}") for _ in items]
        verdicts: list[Verdict | None] = [None] * len(items)
        to_judge: list[tuple[int, JudgeInput, str | None]] = []  # (position, input, English text when translated)
        for index, (item, need) in enumerate(zip(items, needs)):
            if not need:
                to_judge.append((index, item, None))
                continue
            translation = next(translations)
            if translation.ok:
                to_judge.append((index, replace(item, response=translation.text, language="en"), translation.text))
            else:
                verdicts[index] = Verdict("error", rationale=f"back-translation rejected: {translation.problem}",
                                          judged=translation.text)
        judged = await self.inner.judge([inp for _, inp, _ in to_judge]) if to_judge else []
        for (index, _, english), verdict in zip(to_judge, judged):
            verdicts[index] = verdict if english is None else replace(verdict, judged=english)
        return [v for v in verdicts if v is not None]

    async def aclose(self) -> None:
        await self.inner.aclose()
        close = getattr(self.translator, "aclose", None)
        if close is not None:
            await close()
