"""The translation stage: one protocol, a registry, and checked translations cached in the result store.

Backends, one file each: `precomputed` (MultiJail's human translations), `llm:<model spec>`, `hf:<path>` (a local
seq2seq model). Every translation is checked (`checks.py`: language ID, refusal, looping, length ratio, merged
inputs) and stored with its checks; the same layer translates responses back to English for English-only judges.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, Sequence

from ..errors import BackendError
from ..keys import content_key
from ..registry import Registry
from .checks import TranslationChecks, check_translation, find_merged

if TYPE_CHECKING:  # pragma: no cover
    from ..engine.store import Store
    from ..models.base import ModelOptions

MEMO_NAMESPACE = "translation/checked-v1"  # value: JSON {source, text, languages, checks}
LEGACY_NAMESPACE = "translation"  # value: the bare text (before checks were stored); reused, never paid twice


@dataclass(frozen=True)
class TranslationRequest:
    text: str
    source: str  # language code
    target: str  # language code
    prompt_id: str | None = None  # lets `precomputed` find the human translation


@dataclass(frozen=True)
class TranslationFailed:
    """A translator's answer for one request whose call failed (retried by the next run, never stored)."""

    reason: str


@dataclass(frozen=True)
class Translation:
    request: TranslationRequest
    text: str
    checks: TranslationChecks | None = None  # None when nothing was translated (same language)
    problem: str | None = None  # why the translation must not be used; None = usable

    @property
    def ok(self) -> bool:
        return self.problem is None


class Translator(Protocol):
    spec: str
    identity: str  # part of the cache key: changes when the translations would

    async def translate(self, requests: Sequence[TranslationRequest]) -> list["str | TranslationFailed"]: ...


TRANSLATORS: Registry[Translator] = Registry("translator", package="polysafe.translators")


def translation_key(translator: Translator, request: TranslationRequest) -> str:
    return content_key("translation", translator.identity, request.source, request.target, request.text)


async def translate_checked(translator: Translator, requests: Sequence[TranslationRequest], store: "Store | None") -> list[Translation]:
    """Translate and check each text (`translation_checks`), reusing and filling the store's memo table.

    Same-language requests pass through unchanged. A translation that fails a check comes back with its
    `problem` (and is stored with its checks: asking again gives the same answer). Calls that failed raise
    BackendError after the others are stored, so the next run asks only for those."""
    keys = [translation_key(translator, r) for r in requests]
    wanted = {key: r for key, r in zip(keys, requests) if r.source != r.target}
    failures: list[str] = []

    async def compute(missing: list[str]) -> dict[str, str]:
        texts = store.memo_get_many(LEGACY_NAMESPACE, missing) if store is not None else {}
        ask = [key for key in missing if key not in texts]
        if ask:
            answers = await translator.translate([wanted[key] for key in ask])
            if len(answers) != len(ask):
                raise BackendError(f"translator {translator.spec} returned {len(answers)} texts for {len(ask)}")
            for key, answer in zip(ask, answers):
                if isinstance(answer, TranslationFailed):
                    failures.append(answer.reason)
                else:
                    texts[key] = answer
        return {key: _record(wanted[key], text) for key, text in texts.items()}

    if store is not None:
        records = await store.amemoize(MEMO_NAMESPACE, wanted, compute)
    else:
        records = await compute(list(wanted))
    if failures:
        raise BackendError(f"{len(failures)} of {len(wanted)} translations with {translator.spec} failed "
                           f"(first: {failures[0]}); the others are stored, run again to retry")
    out = [_translation(r, records[k]) if k in wanted else Translation(r, r.text) for k, r in zip(keys, requests)]
    merged = find_merged([t.request.text for t in out], [t.text if t.checks else "" for t in out])
    return [replace(t, problem=t.problem or why) if why else t for t, why in zip(out, merged)]


def _record(request: TranslationRequest, text: str) -> str:
    checks = check_translation(request.text, text, request.source, request.target)
    return json.dumps({"source": request.text, "source_language": request.source, "target_language": request.target,
                       "text": text, "checks": checks.to_dict()}, ensure_ascii=False)


def _translation(request: TranslationRequest, record: str) -> Translation:
    data = json.loads(record)
    checks = TranslationChecks.from_dict(data["checks"])
    return Translation(request, data["text"], checks, checks.problem)


def lookup_checked(translator: Translator, requests: Sequence[TranslationRequest],
                   store: "Store | None") -> list[Translation | None]:
    """The stored translations, None where a call would be needed: no call is made and nothing is written."""
    keys = [translation_key(translator, r) for r in requests]
    stored = store.memo_get_many(MEMO_NAMESPACE, keys) if store is not None else {}
    legacy = store.memo_get_many(LEGACY_NAMESPACE, [k for k in keys if k not in stored]) if store is not None else {}
    out: list[Translation | None] = []
    for key, request in zip(keys, requests):
        if request.source == request.target:
            out.append(Translation(request, request.text))
        elif key in stored:
            out.append(_translation(request, stored[key]))
        elif key in legacy:
            out.append(_translation(request, _record(request, legacy[key])))
        else:
            out.append(None)
    # The same merged-inputs check as `translate_checked`, so a dry run sees the rejections a run would make.
    merged = find_merged([r.text for r in requests], [t.text if t is not None and t.checks else "" for t in out])
    return [replace(t, problem=t.problem or why) if why and t is not None else t for t, why in zip(out, merged)]


async def translate_cached(translator: Translator, requests: Sequence[TranslationRequest], store: "Store | None") -> list[str]:
    """The texts of `translate_checked`; a translation that failed a check raises BackendError."""
    out = await translate_checked(translator, requests, store)
    for translation in out:
        if not translation.ok:
            raise BackendError(f"translation with {translator.spec} rejected: {translation.problem}")
    return [t.text for t in out]


DEFAULT_TRANSLATOR = "precomputed"


def load_translator(spec: str, *, options: "ModelOptions | None" = None, data: str | Path | None = None) -> Translator:
    return TRANSLATORS.create(spec, options=options, data=data)
