"""Shared machinery for judges that are fine-tuned classifiers (Llama Guard 3, the HarmBench classifier).

Such a classifier was trained on one raw prompt format and answers in a closed, tiny output format, so it gets
that format and nothing else: no nonce-tagged markers and no system notice, which would put it off its training
distribution and change its verdicts. Forgery resistance comes from elsewhere instead:

- **Closed answers.** The answer must end in the verdict, alone on its lines (`yes`/`no`; `safe`, or `unsafe`
  and one line of category codes), read like every model judge's final part (`_model_judge`). A reply that ends
  in anything else (an explanation, a quote, a JSON object) is an `error`, never `safe`. Generation is capped at
  a few tokens, the size of the verdict, so a classifier cannot echo planted text before it.
- **No markup from the texts.** The request and the response reach the prompt with the chat-format markers of
  these models defanged (`<|eot_id|>` becomes `< |eot_id|>`, `[/INST]` becomes `[/ INST]`, ...): a server that
  parses special tokens in message text cannot be made to end the user turn early and start a forged answer.

What this cannot do is stop a general-purpose model, used in a classifier's place, from obeying instructions
inside the response: use `strongreject:` (fenced, final-line reading; see `_model_judge`) for such models.
"""

from __future__ import annotations

from ..types import Conversation, JudgeInput, Message
from ._model_judge import ModelJudge
from .rubrics import Rubric

# Chat-format markers of Llama 2 and Llama 3 that a server may read as special tokens or turn boundaries.
_MARKERS = {"<|": "< |", "[INST]": "[ INST]", "[/INST]": "[/ INST]", "<<SYS>>": "<< SYS>>", "<</SYS>>": "<</ SYS>>",
            "<s>": "< s>", "</s>": "</ s>"}


def defang(text: str) -> str:
    for marker, safe in _MARKERS.items():
        text = text.replace(marker, safe)
    return text


LLAMA2_OPEN, LLAMA2_SYS_END, LLAMA2_CLOSE = "[INST] <<SYS>>\n", "\n<</SYS>>\n\n", " [/INST]"


def split_llama2(rubric: Rubric) -> tuple[str | None, Rubric]:
    """A raw Llama-2 prompt `[INST] <<SYS>>\\n S \\n<</SYS>>\\n\\n U [/INST]` as (system S, user rubric U).

    Sent as a system and a user message, Llama 2's chat template renders the raw prompt again. Split before the
    slots are filled, so nothing in the texts can move the split. Any other rubric is one user message."""
    text = rubric.text
    if text.startswith(LLAMA2_OPEN) and LLAMA2_SYS_END in text and text.rstrip().endswith(LLAMA2_CLOSE.strip()):
        system, user = text[len(LLAMA2_OPEN):].split(LLAMA2_SYS_END, 1)
        user = user.rstrip()[: -len(LLAMA2_CLOSE.strip())].rstrip()
        if "{response}" in user:
            return system, Rubric(rubric.name, user)
    return None, rubric


class ClassifierJudge(ModelJudge):
    """Sends the classifier's own prompt (no fences) and reads an answer that must be the verdict alone."""

    abstract = True  # a base for concrete classifier judges, which name themselves
    fenced = False  # the texts reach the classifier in its trained format, without nonce-tagged markers

    def __init__(self, model_spec: str, **kwargs):
        super().__init__(model_spec, **kwargs)
        self.system_text, self.user_rubric = split_llama2(self.rubric)

    def build_messages(self, item: JudgeInput) -> Conversation:
        user = self.user_rubric.fill(query=defang(item.query), response=defang(item.response))
        head = (Message("system", self.system_text),) if self.system_text else ()
        return head + (Message("user", user),)
