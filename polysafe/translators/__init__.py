"""Translators: precomputed (human), llm:<model>, hf:<seq2seq>; checked and cached in the result store."""

from .base import (DEFAULT_TRANSLATOR, TRANSLATORS, Translation, TranslationFailed, TranslationRequest, Translator,
                   load_translator, translate_cached, translate_checked, translation_key)

__all__ = ["DEFAULT_TRANSLATOR", "TRANSLATORS", "Translation", "TranslationFailed", "TranslationRequest", "Translator",
           "load_translator", "translate_cached", "translate_checked", "translation_key"]
