"""An in-process model backend for tests: answers every conversation with `reply(conversation)`, counts calls."""

from __future__ import annotations

from typing import Callable, Sequence

from ..models.base import ModelBackend
from ..types import Completion, Conversation, GenerationConfig


class FakeModel(ModelBackend):
    """`FakeModel(lambda conversation: "I'm sorry")`; `calls` counts the conversations it was asked."""

    def __init__(self, reply: Callable[[Conversation], str] = lambda conversation: "I'm sorry, I can't help with that.",
                 *, name: str = "fake", batch_size: int = 8):
        self.reply = reply
        self.spec = f"fake:{name}"
        self.identity = f"fake/v1:{name}"
        self.batch_size = batch_size
        self.calls = 0

    async def generate(self, conversations: Sequence[Conversation], config: GenerationConfig) -> list[Completion]:
        self.calls += len(conversations)
        out = []
        for conversation in conversations:
            text = self.reply(conversation)
            out.append(Completion(text, prompt_tokens=sum(len(m.content.split()) for m in conversation),
                                  completion_tokens=max(1, len(text.split()))))
        return out
