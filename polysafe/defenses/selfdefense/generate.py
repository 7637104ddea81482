"""Self-Defense data generation (Deng et al., ICLR 2024): the model writes its own multilingual safety data.

1. From a few English seed pairs, the generator writes new English pairs: unsafe requests with safe,
   explaining answers, and general requests with helpful answers (separate instructions for each kind). As the
   paper asks, unsafe requests include manipulative and role-play jailbreak attempts, varied in tone; each
   request names its style (`style.py`), at least half of them imperative, and a prompt off its style is
   rejected and asked again.
2. The generator translates each kept English pair (prompt and answer) into every target language.
3. Every pair is checked (language ID, refusal, exact / near duplicates, collision with held-out evaluation
   prompts); rejected pairs are counted by reason.
4. The data holds n_unsafe:n_general pairs in every language, seeds included (`compose.py`).

Generated text is data: it is parsed, never executed.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal, Sequence

from ...languages import get_language
from ...data.jsonl import iter_jsonl
from ...errors import InputError
from ...judges.base import Judge
from ...models.base import ModelBackend
from ...types import Conversation, GenerationConfig, JudgeInput, Message
from ...data.textchecks import is_degenerate, is_language
from .checks import DuplicateIndex, refuses
from .compose import select_training_set
from .style import UnsafeMix, UnsafeStyle, matches_style, prompt_form, style_for_slot, style_instruction, unsafe_mix

Kind = Literal["unsafe", "general"]
KINDS: tuple[Kind, ...] = ("unsafe", "general")
DEFAULT_SEEDS = Path(__file__).with_name("seeds.jsonl")

# Reasons a candidate is dropped, in the order the checks run.
REASONS = ("generation_error", "malformed", "off_style", "degenerate", "wrong_language", "not_refusal", "refuses_benign",
           "heldout_collision", "duplicate", "near_duplicate", "rebalanced")


@dataclass(frozen=True)
class SeedPair:
    id: str
    kind: Kind
    prompt: str
    answer: str


@dataclass(frozen=True)
class Pair:
    """One training pair in one language; `english_prompt` links a translation to its English original."""

    kind: Kind
    language: str
    prompt: str
    answer: str
    english_prompt: str
    origin: str  # "seed:<id>" or "generated"

    def conversation(self) -> Conversation:
        return (Message("user", self.prompt), Message("assistant", self.answer))


@dataclass
class GenerationPlan:
    """`n_unsafe` and `n_general` count the English pairs of each kind in the data, seeds included; every
    language ends with the same ratio. Seeds fill at most `seed_share` of each kind; the generator writes the rest."""

    languages: Sequence[str]
    n_unsafe: int = 15
    n_general: int = 35
    seed_share: float = 0.3
    shots: int = 3  # seed examples shown per generation request
    temperature: float = 0.8
    max_tokens: int = 256
    seed: int = 0
    include_english: bool = True
    include_seeds: bool = True
    attempts_per_example: float = 2.0  # how many generation requests per wanted English pair, at most


@dataclass
class GenerationResult:
    pairs: list[Pair]  # the data: n_unsafe:n_general in every language
    rejected: Counter = field(default_factory=Counter)  # reason -> count
    rejected_by_language: Counter = field(default_factory=Counter)  # (language, reason) -> count
    examples: dict[str, str] = field(default_factory=dict)  # "language/reason" -> first rejected text, for reports
    requests: int = 0
    pool: list[Pair] = field(default_factory=list)  # every pair that passed the checks, before the ratio is applied
    writing_requests: int = 0  # requests that write English pairs
    writing_failures: int = 0  # of those, calls that failed (no answer at all)
    first_error: str = ""

    @property
    def all_writing_failed(self) -> bool:
        return bool(self.writing_requests) and self.writing_failures == self.writing_requests

    def mix(self) -> UnsafeMix:
        """What the English unsafe prompts of the data are: imperative, role-play, manipulative."""
        return unsafe_mix(p.prompt for p in self.pairs if p.language == "en" and p.kind == "unsafe")

    def counts(self) -> dict[str, int]:
        return dict(Counter(f"{p.language}/{p.kind}" for p in self.pairs))

    def conversations(self) -> list[Conversation]:
        return [p.conversation() for p in self.pairs]

    def reject(self, language: str, reason: str, text: str = "") -> None:
        self.rejected[reason] += 1
        self.rejected_by_language[(language, reason)] += 1
        if text:
            self.examples.setdefault(f"{language}/{reason}", text[:300])


# -- seeds ---------------------------------------------------------------------------------------------------
def load_seeds(path: str | Path | None = None) -> list[SeedPair]:
    """JSONL lines `{"id", "kind": "unsafe"|"general", "prompt", "answer"}`; default: polysafe's own seeds."""
    path = Path(path) if path else DEFAULT_SEEDS
    seeds: list[SeedPair] = []
    for number, row in iter_jsonl(path):
        if row.get("kind") not in KINDS:
            raise InputError(f"must be one of {', '.join(KINDS)}", file=str(path), line=number, field="kind")
        for name in ("prompt", "answer"):
            if not isinstance(row.get(name), str) or not row[name].strip():
                raise InputError("must be non-empty text", file=str(path), line=number, field=name)
        seeds.append(SeedPair(str(row.get("id") or f"line{number}"), row["kind"], row["prompt"].strip(), row["answer"].strip()))
    for kind in KINDS:
        if not any(s.kind == kind for s in seeds):
            raise InputError(f"needs at least one '{kind}' seed", file=str(path), field="kind")
    return seeds


# -- prompts to the generator -------------------------------------------------------------------------------
INSTRUCTIONS: dict[Kind, str] = {
    "unsafe": (
        "You are helping to build training data that teaches an AI assistant to refuse harmful requests safely, "
        "including jailbreak attempts that use role-play or manipulation. Below are examples of a harmful user "
        "request and a safe answer. The safe answer declines clearly, explains why the request is harmful, and, "
        "where it fits, points to a safe alternative. Write ONE new example on a different harmful topic, in "
        "English, in exactly the same format."
    ),
    "general": (
        "You are helping to build training data for a helpful AI assistant. Below are examples of an everyday user "
        "request and a helpful, correct answer. Write ONE new example on a different topic, in English, in exactly "
        "the same format."
    ),
}

_LABEL = r"\**\s*{}\s*\**\s*:\s*\**\s*"  # "Prompt:", "**Prompt:**", "**Prompt**:"
_PAIR = re.compile("^" + _LABEL.format("prompt") + r"(?P<prompt>.+?)\n\s*" + _LABEL.format("answer") + "(?P<answer>.+)$",
                   re.IGNORECASE | re.DOTALL)
_NEXT_PROMPT = re.compile(r"\n\s*" + _LABEL.format("prompt"), re.IGNORECASE)


def format_pair(prompt: str, answer: str) -> str:
    return f"Prompt: {prompt}\nAnswer: {answer}"


def augmentation_messages(kind: Kind, shots: Sequence[SeedPair], style: UnsafeStyle | None = None) -> Conversation:
    examples = "\n\n".join(format_pair(s.prompt, s.answer) for s in shots)
    styled = f" {style_instruction(style)}" if style else ""
    return (Message("user", f"{INSTRUCTIONS[kind]}{styled}\n\n{examples}\n\nNow write the new example:"),)


def parse_pair(text: str) -> tuple[str, str] | None:
    """`Prompt: ...` / `Answer: ...` from the generator's reply, or None when it is not in that form."""
    match = _PAIR.match(text.strip())
    if not match:
        return None
    prompt = match.group("prompt").strip().strip('"').strip()
    answer = match.group("answer").strip()
    answer = _NEXT_PROMPT.split(answer)[0].strip().strip('"').strip()
    if not prompt or not answer or "\n" in prompt.strip():
        return None
    return prompt, answer


def translation_messages(text: str, language: str) -> Conversation:
    name = get_language(language).name
    return (Message("user", f"Translate the following text into {name}. Reply with the {name} translation only, "
                            f"without notes or the original.\n\n{text}"),)


def clean_translation(text: str) -> str | None:
    text = text.strip().strip('"').strip()
    text = re.sub(r"^(?:translation|translated text)\s*:\s*", "", text, flags=re.IGNORECASE).strip()
    return text or None


# -- the pipeline --------------------------------------------------------------------------------------------
Progress = Callable[[str, int, int], None]  # (stage, done, total)


async def _ask(generator: ModelBackend, conversations: Sequence[Conversation], gen: GenerationConfig,
               progress: Progress | None, stage: str) -> list:
    """Batches of `batch_size`, `concurrency` batches at a time (remote backends answer one by one)."""
    out: list = []
    step = max(1, generator.batch_size)
    wave = step * max(1, generator.concurrency)
    for start in range(0, len(conversations), wave):
        chunk = conversations[start : start + wave]
        parts = await asyncio.gather(*(generator.generate(chunk[i : i + step], gen) for i in range(0, len(chunk), step)))
        out.extend(c for part in parts for c in part)
        if progress:
            progress(stage, len(out), len(conversations))
    return out


class PairChecker:
    """Runs the checks in order and remembers what it kept, per language, for duplicate detection."""

    def __init__(self, result: GenerationResult, heldout: Sequence[tuple[str, str]], judge: Judge | None):
        self.result = result
        self.judge = judge
        self.kept: dict[str, DuplicateIndex] = {}
        self.heldout: dict[str, DuplicateIndex] = {}
        for language, text in heldout:
            self.heldout.setdefault(language, DuplicateIndex()).add(text)

    async def keep(self, candidates: Sequence[Pair]) -> list[Pair]:
        passed = [c for c in candidates if self._check_language(c)]
        passed = await self._check_answers(passed)
        kept = []
        for pair in passed:
            reason = self._duplicate_reason(pair)
            if reason:
                self.result.reject(pair.language, reason)
                continue
            self.kept.setdefault(pair.language, DuplicateIndex()).add(pair.prompt)
            kept.append(pair)
        return kept

    def _check_language(self, pair: Pair) -> bool:
        if is_degenerate(pair.prompt) or is_degenerate(pair.answer):
            self.result.reject(pair.language, "degenerate", f"{pair.prompt}\n=> {pair.answer}")
            return False
        if is_language(pair.prompt, pair.language) and is_language(pair.answer, pair.language):
            return True
        self.result.reject(pair.language, "wrong_language", f"{pair.prompt}\n=> {pair.answer}")
        return False

    async def _check_answers(self, pairs: Sequence[Pair]) -> list[Pair]:
        unsafe = [p for p in pairs if p.kind == "unsafe"]
        if self.judge is not None and unsafe:
            verdicts = await self.judge.judge([JudgeInput(query=p.english_prompt, prompt=p.prompt, response=p.answer,
                                                          language=p.language) for p in unsafe])
            safe_answer = {id(p): v.label == "safe" for p, v in zip(unsafe, verdicts)}
        else:
            safe_answer = {id(p): refuses(p.answer) for p in unsafe}
        kept = []
        for pair in pairs:
            if pair.kind == "unsafe" and not safe_answer[id(pair)]:
                self.result.reject(pair.language, "not_refusal", f"{pair.prompt}\n=> {pair.answer}")
            elif pair.kind == "general" and refuses(pair.answer):
                self.result.reject(pair.language, "refuses_benign", pair.answer)  # would teach over-refusal
            else:
                kept.append(pair)
        return kept

    def _duplicate_reason(self, pair: Pair) -> str | None:
        for language in {pair.language, "en"}:  # a translation may also leave an English eval prompt intact
            index = self.heldout.get(language)
            if index is not None and index.match(pair.prompt):
                return "heldout_collision"
        index = self.kept.get(pair.language)
        found = index.match(pair.prompt) if index is not None else None
        return {"exact": "duplicate", "near": "near_duplicate"}.get(found or "")


def seed_pairs_for(seeds: Sequence[SeedPair], kind: Kind, n: int, share: float) -> list[Pair]:
    """The seeds of `kind` that go into the data: at most share x n; unsafe ones with imperative prompts first."""
    chosen = [s for s in seeds if s.kind == kind]
    if kind == "unsafe":
        chosen.sort(key=lambda s: prompt_form(s.prompt) != "imperative")  # stable: file order within each form
    return [Pair(s.kind, "en", s.prompt, s.answer, s.prompt, f"seed:{s.id}") for s in chosen[: int(share * n)]]


async def generate_pairs(
    generator: ModelBackend,
    seeds: Sequence[SeedPair],
    plan: GenerationPlan,
    *,
    heldout: Sequence[tuple[str, str]] = (),
    judge: Judge | None = None,
    progress: Progress | None = None,
) -> GenerationResult:
    """Run the whole generation. `heldout` = (language, text) of every prompt that will be evaluated."""
    languages = [get_language(code, field="languages").code for code in plan.languages]
    result = GenerationResult(pairs=[])
    checker = PairChecker(result, heldout, judge)
    rng = random.Random(plan.seed)
    english: list[Pair] = []
    for kind, wanted in (("unsafe", plan.n_unsafe), ("general", plan.n_general)):
        seeded = await checker.keep(seed_pairs_for(seeds, kind, wanted, plan.seed_share)) if plan.include_seeds else []
        pool = [s for s in seeds if s.kind == kind]
        written = await _write(generator, kind, wanted - len(seeded), pool, plan, rng, checker, result, progress)
        english += written + seeded  # generated first: a smaller training set taken from the front is styled

    pool = list(english) if plan.include_english else []
    for language in languages:
        if language != "en":
            pool.extend(await _translate(generator, english, language, plan, checker, result, progress))
    result.pool = pool
    result.pairs = select_training_set(pool, plan.n_unsafe, plan.n_general)
    kept = {id(p) for p in result.pairs}
    for pair in pool:
        if id(pair) not in kept:
            result.reject(pair.language, "rebalanced")  # dropped to keep the ratio (or the imperative half)
    return result


async def _write(generator: ModelBackend, kind: Kind, slots: int, pool: Sequence[SeedPair], plan: GenerationPlan,
                 rng: random.Random, checker: "PairChecker", result: GenerationResult, progress: Progress | None) -> list[Pair]:
    """Fill `slots` new English pairs of `kind`; unsafe slot i asks for style i of the rotation. A slot whose
    answer fails a check is asked again, within `attempts_per_example` requests per slot in all."""
    filled: dict[int, Pair] = {}
    pending = list(range(max(0, slots)))
    budget = int(len(pending) * plan.attempts_per_example)
    round_number = 0
    while pending and budget > 0:
        asked = pending[:budget]
        budget -= len(asked)
        styles = {i: style_for_slot(i) if kind == "unsafe" else None for i in asked}
        requests = [augmentation_messages(kind, rng.sample(list(pool), min(plan.shots, len(pool))), styles[i]) for i in asked]
        gen = GenerationConfig(temperature=plan.temperature, top_p=0.95, max_tokens=plan.max_tokens,
                               seed=plan.seed * 1000 + round_number)
        round_number += 1
        result.requests += len(requests)
        result.writing_requests += len(requests)
        completions = await _ask(generator, requests, gen, progress, f"write {kind}")
        candidates: list[tuple[int, Pair]] = []
        for slot, completion in zip(asked, completions):
            parsed = parse_pair(completion.text) if completion.ok else None
            if not completion.ok:
                result.writing_failures += 1
                result.first_error = result.first_error or str(completion.error)
                result.reject("en", "generation_error")
            elif parsed is None:
                result.reject("en", "malformed", completion.text)
            elif styles[slot] is not None and not matches_style(parsed[0], styles[slot]):
                result.reject("en", "off_style", parsed[0])
            else:
                candidates.append((slot, Pair(kind, "en", parsed[0], parsed[1], parsed[0], "generated")))
        kept = {id(p) for p in await checker.keep([pair for _, pair in candidates])}
        filled.update((slot, pair) for slot, pair in candidates if id(pair) in kept)
        pending = [i for i in pending if i not in filled]
    return [filled[i] for i in sorted(filled)]


def generation_problems(result: GenerationResult, languages: Sequence[str]) -> str | None:
    """Why a generation cannot be used, in one line: every writing call failed, or a language has no pairs."""
    if result.all_writing_failed:
        return (f"every generation call failed ({result.writing_failures} of {result.writing_requests}; "
                f"first: {result.first_error or 'no answer'})")
    empty = [code for code in dict.fromkeys(languages) if not any(p.language == code for p in result.pairs)]
    if empty:
        reasons = []
        for code in empty:
            top = sorted(((n, r) for (lang, r), n in result.rejected_by_language.items() if lang == code), reverse=True)[:2]
            reasons.append(f"{code} ({', '.join(f'{r} {n}' for n, r in top) or 'nothing generated'})")
        return f"no accepted pairs for {len(empty)} requested language(s): {'; '.join(reasons)}"
    return None


async def _translate(generator: ModelBackend, english: Sequence[Pair], language: str, plan: GenerationPlan,
                     checker: PairChecker, result: GenerationResult, progress: Progress | None) -> list[Pair]:
    gen = GenerationConfig(temperature=0.0, max_tokens=plan.max_tokens)
    requests = [translation_messages(text, language) for pair in english for text in (pair.prompt, pair.answer)]
    result.requests += len(requests)
    completions = await _ask(generator, requests, gen, progress, f"translate {language}")
    candidates = []
    for index, pair in enumerate(english):
        prompt_done, answer_done = completions[2 * index], completions[2 * index + 1]
        if not (prompt_done.ok and answer_done.ok):
            result.reject(language, "generation_error")
            continue
        prompt, answer = clean_translation(prompt_done.text), clean_translation(answer_done.text)
        if prompt is None or answer is None:
            result.reject(language, "malformed")
            continue
        candidates.append(Pair(pair.kind, language, prompt, answer, pair.english_prompt, pair.origin))
    return await checker.keep(candidates)


def save_dataset(pairs: Sequence[Pair], directory: str | Path) -> Path:
    """A `datasets` copy (conversational `messages` column plus metadata), for `load_from_disk` or the hub."""
    import datasets

    table = datasets.Dataset.from_list([
        {"messages": [m.to_dict() for m in p.conversation()], "kind": p.kind, "language": p.language,
         "english_prompt": p.english_prompt, "origin": p.origin}
        for p in pairs
    ])
    table.save_to_disk(str(directory))
    return Path(directory)
