"""MultiJail (Deng et al., ICLR 2024): 315 unsafe prompts, each in English and nine human translations.

Loaded from the Hugging Face hub (`DAMO-NLP-SG/MultiJail`) by default, or from a local CSV with the same
columns (`id, source, tags, en, zh, ..., jv`). The published file has a byte-order mark, cells that span
lines, stray closing quotes, PDF ligatures and zero-width spaces; `clean_text` undoes those.
"""

from __future__ import annotations

import ast
import re
import unicodedata
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import InputError
from ..types import Prompt
from ..languages import MULTIJAIL_LANGUAGES, get_language
from .prompts import PROMPT_SETS
from .textfile import read_csv

HUB_DATASET = "DAMO-NLP-SG/MultiJail"
META_COLUMNS = ("id", "source", "tags")
COLUMNS = META_COLUMNS + MULTIJAIL_LANGUAGES

_LIGATURES = re.compile("[\ufb00-\ufb06]")  # ﬀ ﬁ ﬂ ﬃ ﬄ ﬅ ﬆ: PDF copy-paste residue
# Zero-width space, word joiner and stray BOMs carry nothing. ZWJ/ZWNJ are left alone: Indic scripts need them.
_INVISIBLE = re.compile("[\u200b\u2060\ufeff]")


def clean_text(text: str) -> str:
    text = _LIGATURES.sub(lambda m: unicodedata.normalize("NFKC", m.group()), text)
    text = _INVISIBLE.sub("", text).replace("\r\n", "\n").replace('""', '"').strip()
    if text.endswith('"') and text.count('"') % 2 == 1:  # rows 306/307: a closing quote with no opening one
        text = text[:-1].rstrip()
    return text


def _parse_tags(raw: str, *, file: str, line: int | None) -> tuple[str, ...]:
    raw = (raw or "").strip()
    if not raw:
        return ()
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        raise InputError(f"tags must be a Python-style list, got {raw[:60]!r}", file=file, line=line, field="tags") from None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(t, str) for t in value):
        raise InputError("tags must be a list of strings", file=file, line=line, field="tags")
    return tuple(t.strip() for t in value)


def _check_columns(header: Iterable[str], languages: Sequence[str], *, file: str) -> None:
    present = {h.lstrip("\ufeff").strip() for h in header if h is not None}
    for column in (*META_COLUMNS, "en", *languages):
        if column not in present:
            raise InputError(f"missing column (header has: {', '.join(sorted(present)) or 'nothing'})",
                             file=file, line=1, field=column)


def _csv_rows(path: Path, languages: Sequence[str]) -> Iterable[tuple[int, dict]]:
    table = read_csv(path)
    _check_columns(table.header, languages, file=str(path))
    return table.rows


def _hub_rows(dataset: str, languages: Sequence[str]) -> Iterable[tuple[int | None, dict]]:
    from .hub import load_hub_dataset

    table = load_hub_dataset(dataset, "train", file=f"hf:{dataset}")
    _check_columns(table.column_names, languages, file=f"hf:{dataset}")
    for index, row in enumerate(table):
        yield index + 2, {k.lstrip("\ufeff").strip(): ("" if v is None else str(v)) for k, v in row.items()}


def load_multijail(source: str | Path | None = None, languages: Sequence[str] | None = None) -> list[Prompt]:
    """One Prompt per (row, language), ordered by language then row.

    `source`: None or "hub" for the hub dataset, "hf:<dataset id>" for another hub copy, else a CSV path.
    """
    codes = [get_language(code, field="languages").code for code in (languages or MULTIJAIL_LANGUAGES)]
    for code in codes:
        if code not in MULTIJAIL_LANGUAGES:
            raise InputError(f"MultiJail has no '{code}' column (it has {', '.join(MULTIJAIL_LANGUAGES)})", field="languages")
    if source is None or str(source) == "hub" or str(source).startswith("hf:"):
        dataset = HUB_DATASET if source in (None, "hub") else str(source)[3:]
        rows, file = _hub_rows(dataset, codes), f"hf:{dataset}"
    else:
        path = Path(source)
        if not path.is_file():
            raise InputError("no such file", file=str(path))
        rows, file = _csv_rows(path, codes), str(path)
    per_language: dict[str, list[Prompt]] = {code: [] for code in codes}
    seen: dict[str, int | None] = {}
    for line, row in rows:
        row_id = (row.get("id") or "").strip()
        if not row_id:
            raise InputError("empty id", file=file, line=line, field="id")
        if row_id in seen:
            raise InputError(f"duplicate id '{row_id}' (first on line {seen[row_id]})", file=file, line=line, field="id")
        seen[row_id] = line
        english = clean_text(row.get("en") or "")
        if not english:
            raise InputError("empty English prompt", file=file, line=line, field="en")
        tags = _parse_tags(row.get("tags", ""), file=file, line=line)
        source_name = (row.get("source") or "").strip() or None
        for code in codes:
            text = clean_text(row.get(code) or "")
            if not text:
                raise InputError("empty prompt", file=file, line=line, field=code)
            per_language[code].append(Prompt(id=row_id, text=text, language=code, category=tags[0] if tags else None,
                                             source=source_name, english=english, tags=tags))
    if not seen:
        raise InputError("no rows", file=file)
    return [prompt for code in codes for prompt in per_language[code]]


def limit_per_language(prompts: Sequence[Prompt], limit: int | None) -> list[Prompt]:
    """The first `limit` prompts of each language (the same rows in every language)."""
    if not limit:
        return list(prompts)
    taken: dict[str, int] = {}
    out = []
    for prompt in prompts:
        if taken.get(prompt.language, 0) < limit:
            taken[prompt.language] = taken.get(prompt.language, 0) + 1
            out.append(prompt)
    return out


@PROMPT_SETS.register("multijail", summary="MultiJail: 315 unsafe prompts x 10 languages (hub, or a local CSV).",
                      example="multijail")
class MultiJailSet:
    def __init__(self, source: str | Path | None = None, languages: Sequence[str] | None = None, **_: object):
        self.source, self.languages = source, languages
        self.name = "multijail"

    def load(self) -> list[Prompt]:
        return load_multijail(self.source, self.languages)
