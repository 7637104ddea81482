"""The judge protocol and its registry."""

from __future__ import annotations

from typing import Sequence

from ..models.base import ModelOptions
from ..registry import Registry
from ..types import UNSAFE_RATE, JudgeDescription, JudgeInput, Verdict


class Judge:
    """`identity` goes into verdict cache keys: change it whenever the judge's behaviour changes."""

    spec: str
    identity: str
    batch_size: int = 256
    concurrency: int = 1

    async def judge(self, items: Sequence[JudgeInput]) -> list[Verdict]:
        raise NotImplementedError

    def describe(self) -> JudgeDescription:
        """What reports show of this judge: its kind, its score scale and the metrics it declares.
        Override it; reports read this, never the judge's name."""
        return JudgeDescription(spec=self.spec, kind="custom judge", metrics=(UNSAFE_RATE,))

    def attach_store(self, store) -> None:
        """The runner hands over its result store before judging; judges that cache (back-translation) keep it."""

    async def aclose(self) -> None:
        return None


JUDGES: Registry[Judge] = Registry("judge", package="polysafe.judges")


def load_judge(spec: str, options: ModelOptions | None = None, **extra) -> Judge:
    """Judges that call a model get the model options (base URL, retries, ...)."""
    return JUDGES.create(spec, options=options or ModelOptions(), **extra)
