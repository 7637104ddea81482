"""`hf:<path>`: a local transformers seq2seq model (Marian for one pair, NLLB / M2M100 for many)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ..errors import InputError
from .base import TRANSLATORS, TranslationRequest

if TYPE_CHECKING:  # pragma: no cover
    from ..models.base import ModelOptions


# FLORES-200 codes used by NLLB; M2M100 uses the plain ISO code.
NLLB_CODES = {
    "en": "eng_Latn", "zh": "zho_Hans", "it": "ita_Latn", "vi": "vie_Latn", "ar": "arb_Arab", "ko": "kor_Hang",
    "th": "tha_Thai", "bn": "ben_Beng", "sw": "swh_Latn", "jv": "jav_Latn", "fr": "fra_Latn", "de": "deu_Latn",
    "es": "spa_Latn", "pt": "por_Latn", "ru": "rus_Cyrl", "ja": "jpn_Jpan", "hi": "hin_Deva", "id": "ind_Latn",
    "tr": "tur_Latn", "uk": "ukr_Cyrl", "zu": "zul_Latn", "gd": "gla_Latn",
}


@TRANSLATORS.register("hf", takes_argument=True, summary="A local transformers seq2seq model (Marian, NLLB, M2M100).",
                      example="hf:facebook/nllb-200-distilled-600M")
class Seq2SeqTranslator:
    def __init__(self, path: str, *, options: "ModelOptions | None" = None, **_: Any):
        from ..models.local import fingerprint_dir

        self.path = path
        self.spec = f"hf:{path}"
        self.identity = f"hf:{fingerprint_dir(path) if Path(path).is_dir() else path}"
        self.batch_size = (options.batch_size if options and options.batch_size else 16)
        self.max_new_tokens = 512
        self._model = self._tokenizer = None

    def _load(self):
        if self._model is None:
            from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

            try:
                self._tokenizer = AutoTokenizer.from_pretrained(self.path)
                self._model = AutoModelForSeq2SeqLM.from_pretrained(self.path).eval()
            except (OSError, ValueError) as err:
                raise InputError(f"cannot load a seq2seq model ({str(err).splitlines()[0]})", file=self.path, field="translator") from None
        return self._model, self._tokenizer

    def _language_token(self, code: str) -> tuple[str | None, int | None]:
        """(tokenizer src_lang value, forced BOS id) for multilingual models; (None, None) for one-pair models."""
        _, tok = self._load()
        for candidate in (NLLB_CODES.get(code), f"__{code}__"):
            if candidate:
                ids = tok.convert_tokens_to_ids(candidate)
                if isinstance(ids, int) and ids != tok.unk_token_id:
                    return (candidate if candidate.count("_") == 1 else code), ids
        return None, None

    def translate_sync(self, requests: Sequence[TranslationRequest]) -> list[str]:
        import torch

        model, tok = self._load()
        out: list[str] = [""] * len(requests)
        groups: dict[tuple[str, str], list[int]] = {}
        for index, r in enumerate(requests):
            groups.setdefault((r.source, r.target), []).append(index)
        for (source, target), indices in groups.items():
            src_lang, _ = self._language_token(source)
            _, forced_bos = self._language_token(target)
            if src_lang is not None and hasattr(tok, "src_lang"):
                tok.src_lang = src_lang
            extra = {"forced_bos_token_id": forced_bos} if forced_bos is not None else {}
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                inputs = tok([requests[i].text for i in chunk], return_tensors="pt", padding=True, truncation=True)
                with torch.inference_mode():
                    generated = model.generate(**inputs, max_new_tokens=self.max_new_tokens, num_beams=1, do_sample=False, **extra)
                for i, text in zip(chunk, tok.batch_decode(generated, skip_special_tokens=True)):
                    out[i] = text.strip()
        return out

    async def translate(self, requests: Sequence[TranslationRequest]) -> list[str]:
        return await asyncio.to_thread(self.translate_sync, requests)
