"""CTRL's data: clean commonsense texts, fine-tuning attack sets, safety pairs, and evaluation queries.

Local files are read with line-exact errors; hub sets (Alpaca, Dolly, BeaverTails) are loaded at run time with
`datasets` and never copied into the repository. Conversations are `polysafe.types.Conversation` tuples, the
format the LoRA pipeline trains on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from ..errors import InputError
from .jsonl import iter_jsonl, parse_messages, read_json
from ..types import Conversation, Message, Prompt

HUB_CLEAN = ("tatsu-lab/alpaca", "databricks/databricks-dolly-15k", "PKU-Alignment/BeaverTails")
BEAVERTAILS = "PKU-Alignment/BeaverTails"
BEAVERTAILS_SPLIT = "30k_train"


@dataclass(frozen=True)
class CleanText:
    """One commonsense question/answer pair to curate."""

    id: str
    query: str
    answer: str
    source: str = ""


# -- reading rows -------------------------------------------------------------------------------------------
def read_rows(path: str | Path) -> list[tuple[int, Any]]:
    """(line, row) from a JSON list (line = index + 1) or a JSONL file (line = file line)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("no such file", file=str(path))
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        return list(iter_jsonl(path))
    data = read_json(path)
    if not isinstance(data, list):
        raise InputError("expected a JSON list (or a .jsonl file)", file=str(path))
    return [(i + 1, row) for i, row in enumerate(data)]


def _text(row: dict, name: str, *, file: str, line: int, required: bool = True) -> str:
    value = row.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise InputError("missing or empty", file=file, line=line, field=name)
        return ""
    if not isinstance(value, str):
        raise InputError("must be text", file=file, line=line, field=name)
    return value.strip()


def pair_from_row(row: Any, *, file: str, line: int) -> tuple[str, str]:
    """(query, answer) from Alpaca (instruction/input/output), Dolly (instruction/context/response),
    BeaverTails / generic (prompt/response), or chat (`messages`, last user turn and answer)."""
    if not isinstance(row, dict):
        raise InputError("each row must be a JSON object", file=file, line=line)
    if "messages" in row:
        conv = parse_messages(row["messages"], file=file, line=line)
        users = [m for m in conv if m.role == "user"]
        if not users:
            raise InputError("needs a user message", file=file, line=line, field="messages")
        return users[-1].content, conv[-1].content
    if "instruction" in row:
        query = _text(row, "instruction", file=file, line=line)
        extra = _text(row, "input", file=file, line=line, required=False) or _text(row, "context", file=file, line=line, required=False)
        answer_field = "output" if "output" in row else "response"
        answer = _text(row, answer_field, file=file, line=line)
        return (f"{query}\n\n{extra}" if extra else query), answer
    if "prompt" in row:
        return _text(row, "prompt", file=file, line=line), _text(row, "response", file=file, line=line)
    raise InputError("row needs 'messages', 'instruction'+'output' or 'prompt'+'response'", file=file, line=line)


def pairs_to_conversations(pairs: Iterable[tuple[str, str]], system: str | None = None) -> list[Conversation]:
    head = (Message("system", system),) if system else ()
    return [head + (Message("user", q), Message("assistant", a)) for q, a in pairs]


# -- clean texts --------------------------------------------------------------------------------------------
def load_clean_texts(source: str, *, limit: int | None = None) -> list[CleanText]:
    """A local JSON/JSONL file, or a hub dataset: tatsu-lab/alpaca, databricks/databricks-dolly-15k,
    PKU-Alignment/BeaverTails (split 30k_train, is_safe rows only)."""
    if Path(source).exists():
        texts = [CleanText(f"{Path(source).stem}-{line}", *pair_from_row(row, file=source, line=line), source=source)
                 for line, row in read_rows(source)]
    elif source in HUB_CLEAN:
        texts = _hub_clean(source, limit)
    else:
        raise InputError(f"not a file, nor one of the hub sets {', '.join(HUB_CLEAN)}", field="texts")
    if not texts:
        raise InputError("no texts", file=source)
    return texts[:limit] if limit else texts


def load_hub_split(name: str, split: str):
    from .hub import load_hub_dataset

    return load_hub_dataset(name, split, field="texts")


def _hub_clean(name: str, limit: int | None) -> list[CleanText]:
    texts: list[CleanText] = []
    if name == BEAVERTAILS:
        rows = (r for r in load_hub_split(name, BEAVERTAILS_SPLIT) if r["is_safe"])
    else:
        rows = iter(load_hub_split(name, "train"))
    for index, row in enumerate(rows):
        if name == "tatsu-lab/alpaca" and row.get("input"):
            continue  # keep self-contained questions
        query, answer = pair_from_row(dict(row), file=name, line=index + 1)
        texts.append(CleanText(f"{name.split('/')[-1]}-{index}", query, answer, source=name))
        if limit and len(texts) >= limit:
            break
    return texts


# -- evaluation queries -------------------------------------------------------------------------------------
def parse_instruction_set(data: Any, *, file: str, category: str | None = None) -> list[Prompt]:
    """Bianchi et al.'s evaluation format: `{"instructions": [...], "inputs": [...], "tags": [...]}`
    (I-MaliciousInstructions, I-Alpaca, ...). A non-empty input is appended to its instruction."""
    if not isinstance(data, dict) or not isinstance(data.get("instructions"), list):
        raise InputError("expected an object with an 'instructions' list", file=file, field="instructions")
    inputs, tags = data.get("inputs") or [], data.get("tags") or []
    if not isinstance(inputs, list):
        raise InputError("must be a list", file=file, field="inputs")
    stem = Path(file).stem
    prompts = []
    for index, text in enumerate(data["instructions"]):
        if not isinstance(text, str) or not text.strip():
            raise InputError("must be non-empty text", file=file, field=f"instructions[{index}]")
        extra = inputs[index] if index < len(inputs) else ""
        if not isinstance(extra, str):
            raise InputError("must be text", file=file, field=f"inputs[{index}]")
        tag = tags[index] if index < len(tags) and isinstance(tags[index], str) else None
        full = f"{text.strip()}\n\n{extra.strip()}" if extra.strip() else text.strip()
        prompts.append(Prompt(id=f"{stem}-{index}", text=full, category=tag or category, source=Path(file).name,
                              tags=(tag,) if tag else ()))
    if not prompts:
        raise InputError("no instructions", file=file, field="instructions")
    return prompts


def load_instruction_set(path: str | Path, *, category: str | None = None, limit: int | None = None) -> list[Prompt]:
    prompts = parse_instruction_set(read_json(path), file=str(path), category=category)
    return prompts[:limit] if limit else prompts


def load_harmful_queries(source: str, *, limit: int | None = None) -> list[Prompt]:
    """`advbench` (the registered prompt set), AdvBench's CSV, a Bianchi-style JSON, or a CSV/JSONL prompt file."""
    from .prompts import PROMPT_SETS, load_prompt_file

    if not Path(source).exists():
        if source.split(":")[0] not in PROMPT_SETS.names():
            raise InputError(f"not a file, nor a registered prompt set ({', '.join(PROMPT_SETS.names())})", field="harmful")
        prompts = PROMPT_SETS.create(source).load()
    elif source.endswith(".json"):
        prompts = load_instruction_set(source)
    elif source.endswith(".csv") and "goal" in Path(source).read_text(encoding="utf-8-sig").splitlines()[0]:
        prompts = PROMPT_SETS.create("advbench", path=source).load()  # AdvBench's own CSV (goal, target)
    else:
        prompts = load_prompt_file(source)
    return prompts[:limit] if limit else prompts
