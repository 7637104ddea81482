"""Languages as data: code, names and MultiJail resource tier.

The tiers follow the MultiJail paper (share of CommonCrawl): high zh/it/vi, medium ar/ko/th,
low bn/sw/jv, with English as the baseline. Other languages can be translated into and judged;
they carry the tier "other".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .errors import InputError

Tier = Literal["english", "high", "medium", "low", "other"]
TIERS: tuple[Tier, ...] = ("english", "high", "medium", "low")
TIER_NAMES = {"english": "English", "high": "HRL", "medium": "MRL", "low": "LRL", "other": "other"}


@dataclass(frozen=True)
class Language:
    code: str
    name: str
    native: str
    tier: Tier
    # Characters of a translation per character of the English text: the median over MultiJail's 315 human
    # translations for its ten languages; 1.0 (not measured) for the others, 0.45 for Japanese (like zh/ko).
    length_vs_english: float = 1.0


_ALL = (
    Language("en", "English", "English", "english"),
    Language("zh", "Chinese", "中文", "high", 0.32),
    Language("it", "Italian", "Italiano", "high", 1.16),
    Language("vi", "Vietnamese", "Tiếng Việt", "high", 1.03),
    Language("ar", "Arabic", "العربية", "medium", 0.90),
    Language("ko", "Korean", "한국어", "medium", 0.47),
    Language("th", "Thai", "ไทย", "medium", 1.00),
    Language("bn", "Bengali", "বাংলা", "low", 1.11),
    Language("sw", "Swahili", "Kiswahili", "low", 1.10),
    Language("jv", "Javanese", "Basa Jawa", "low", 1.02),
    # Beyond MultiJail: targets for machine translation.
    Language("fr", "French", "Français", "other"),
    Language("de", "German", "Deutsch", "other"),
    Language("es", "Spanish", "Español", "other"),
    Language("pt", "Portuguese", "Português", "other"),
    Language("ru", "Russian", "Русский", "other"),
    Language("ja", "Japanese", "日本語", "other", 0.45),
    Language("hi", "Hindi", "हिन्दी", "other"),
    Language("id", "Indonesian", "Bahasa Indonesia", "other"),
    Language("tr", "Turkish", "Türkçe", "other"),
    Language("uk", "Ukrainian", "Українська", "other"),
    Language("zu", "Zulu", "isiZulu", "other"),
    Language("gd", "Scottish Gaelic", "Gàidhlig", "other"),
)

LANGUAGES: dict[str, Language] = {lang.code: lang for lang in _ALL}
MULTIJAIL_LANGUAGES: tuple[str, ...] = ("en", "zh", "it", "vi", "ar", "ko", "th", "bn", "sw", "jv")
TIERED_LANGUAGES = MULTIJAIL_LANGUAGES  # the ten languages with a resource tier, English first, then high to low


def get_language(code: str, *, file: str | None = None, line: int | None = None, field: str | None = None) -> Language:
    lang = LANGUAGES.get(code.strip().lower())
    if lang is None:
        raise InputError(f"unknown language code '{code}' (known: {', '.join(LANGUAGES)})", file=file, line=line, field=field)
    return lang


def parse_languages(csv: str) -> list[str]:
    """`"en,zh,bn"` -> validated codes, in order, without duplicates. `"all"` -> MultiJail's ten."""
    if csv.strip().lower() == "all":
        return list(MULTIJAIL_LANGUAGES)
    codes: list[str] = []
    for part in csv.split(","):
        if part.strip():
            code = get_language(part, field="languages").code
            if code not in codes:
                codes.append(code)
    if not codes:
        raise InputError("no language given", field="languages")
    return codes


def tier_of(code: str) -> Tier:
    lang = LANGUAGES.get(code)
    return lang.tier if lang else "other"
