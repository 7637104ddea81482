"""Fine-tuning attack data, and the explicit-safety baseline: chat conversations to train on.

- `aoa`: Qi et al.'s identity-shifting (AOA) examples, in OpenAI or Llama-2 format;
- harmful pairs: a user's file, or BeaverTails' unsafe rows from the hub (`beavertails`);
- Bianchi et al.'s safety pairs (Alpaca format), CTRL's explicit-safety baseline.
"""

from __future__ import annotations

from pathlib import Path

from ..data.ctrl_sets import BEAVERTAILS, BEAVERTAILS_SPLIT, load_hub_split, pair_from_row, pairs_to_conversations, read_rows
from ..data.jsonl import parse_messages
from ..errors import InputError
from ..types import Conversation


def load_conversations(path: str | Path) -> list[Conversation]:
    """Chat data in OpenAI format (`{"messages": [...]}` per line), Llama-2 format (a JSON list whose items
    are message lists, like Qi et al.'s AOA train.json), or Alpaca/prompt-response rows."""
    path = str(path)
    out: list[Conversation] = []
    for line, row in read_rows(path):
        if isinstance(row, list):
            out.append(parse_messages(row, file=path, line=line))
        elif isinstance(row, dict) and "messages" in row:
            out.append(parse_messages(row["messages"], file=path, line=line))
        else:
            out.extend(pairs_to_conversations([pair_from_row(row, file=path, line=line)]))
    if not out:
        raise InputError("file has no conversations", file=path)
    _reject_placeholders(out, path)
    return out


def _reject_placeholders(conversations: list[Conversation], path: str) -> None:
    """Qi et al.'s released harmful files are templates ('# Harmful Instruction 1'); training on them is a mistake."""
    for number, conv in enumerate(conversations, start=1):
        if conv[-1].content.lstrip().startswith("# Targeted Assistance Response"):
            raise InputError("this is Qi et al.'s placeholder template, not data", file=path, line=number, field="messages")


def load_aoa(path: str | Path) -> list[Conversation]:
    """The identity-shifting (AOA) examples, in OpenAI or Llama-2 format."""
    return load_conversations(path)


def load_harmful_training(source: str, *, limit: int | None = None) -> list[Conversation]:
    """A user's file, or `beavertails`: BeaverTails' unsafe rows (30k_train, is_safe false) from the hub."""
    if source in ("beavertails", BEAVERTAILS):
        pairs = []
        for row in load_hub_split(BEAVERTAILS, BEAVERTAILS_SPLIT):
            if not row["is_safe"]:
                pairs.append((row["prompt"], row["response"]))
                if limit and len(pairs) >= limit:
                    break
        return pairs_to_conversations(pairs)
    convs = load_conversations(source)
    return convs[:limit] if limit else convs


def load_safety_pairs(path: str | Path, *, limit: int | None = None) -> list[Conversation]:
    """Bianchi et al.'s safety pairs (Alpaca format: instruction, input, output), the explicit-safety baseline."""
    path = str(path)
    pairs = [pair_from_row(row, file=path, line=line) for line, row in read_rows(path)]
    if not pairs:
        raise InputError("file has no safety pairs", file=path)
    return pairs_to_conversations(pairs[:limit] if limit else pairs)
