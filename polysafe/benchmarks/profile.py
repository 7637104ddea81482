"""`profile`: one model, every form, the same queries (a paired design).

N English seed queries (MultiJail's English by default, sampled stratified over its harm categories with a
fixed seed, or `ids` in a given order, or a prompt file) are sent in every cell, so a cell's difference from the
reference is caused by the form alone. Each cell is one scenario named `<axis>/<cell>`:

- `reference/en`: the query as it is;
- `language/<l>`: its translation (MultiJail's human ones, or `translator`'s for a prompt file);
- `jailbreak/en`, `jailbreak/<l>`: inside the English role-play jailbreak (MultiJail's intentional scenario);
- `code/<variant>`: CodeAttack's code-completion templates;
- `cipher/<name>`: enciphered (`encode:`) or taught first (`cipherchat:`); replies are deciphered before judging;
- `compose/<form>+<l>`: a code variant or a cipher applied to the translated query.

It is one EvalTask: the engine, the store, resume, `--dry-run` and the cost caps work as for any benchmark.
The task config declares the paired design under `paired` (the seed ids in order, the reference cell): that is
how reports (report/paired.py) read a profile, with no knowledge of this benchmark.
"""

from __future__ import annotations

import random
from typing import Sequence

from pydantic import Field, field_validator

from ..attacks.base import AttackContext, parse_chain
from ..attacks.cipher import CIPHER_SCENARIOS
from ..engine.runner import EvalTask, Scenario
from ..errors import InputError
from ..models.base import ModelOptions
from ..types import Prompt
from .base import BENCHMARKS, Benchmark, BenchmarkParams, resolved, split_list

AXES = ("languages", "jailbreak", "code", "ciphers", "compose")
REFERENCE = "reference/en"
HUMAN = "precomputed"
CIPHERS = {name: chain for name, chain in CIPHER_SCENARIOS if name != "plain"}
DEFAULT_CIPHERS = ["base64", "rot13", "caesar", "morse", "leetspeak"]
DEFAULT_VARIANTS = ["python_string", "python_list", "python_stack", "cpp_string", "go_string"]
DEFAULT_LANGUAGES = ["zh", "it", "vi", "ar", "ko", "th", "bn", "sw", "jv"]
LOW_RESOURCE = ("bn", "sw", "jv")
SAMPLING = "stratified over harm categories (largest remainder; seeded draw within each category)"


class ProfileParams(BenchmarkParams):
    prompts: int = Field(default=50, ge=1, description="N English seed queries, sent in every cell.")
    seed: int = Field(default=0, description="Seed of the stratified draw of the seed queries.")
    axes: list[str] = Field(default_factory=lambda: list(AXES), description=f"Any of {', '.join(AXES)}.")
    ids: list[str] | None = Field(default=None, description="Seed ids in this order (overrides the draw).")
    languages: list[str] = Field(default_factory=lambda: list(DEFAULT_LANGUAGES), description="Languages of the language, jailbreak and compose cells.")
    variants: list[str] = Field(default_factory=lambda: list(DEFAULT_VARIANTS), description="CodeAttack variants.")
    ciphers: list[str] = Field(default_factory=lambda: list(DEFAULT_CIPHERS), description=f"Cipher cells: {', '.join(CIPHERS)}.")
    compose: list[str] | None = Field(default=None, description="form+language cells (form: a variant or a cipher); "
                                                                 "default: the first variant x the low-resource languages.")
    data: str | None = Field(default=None, description="Local MultiJail CSV (default: the hub dataset).")
    prompts_file: str | None = Field(default=None, description="English seed queries from a prompt file instead of MultiJail.")
    translator: str | None = Field(default=None, description="precomputed (MultiJail's human translations, the default "
                                                             "for MultiJail) | llm:<model spec> | hf:<path>.")
    template_file: str | None = Field(default=None, description="Jailbreak text with a {prompt} slot (default: polysafe's own).")

    _split = field_validator("axes", "ids", "languages", "variants", "ciphers", "compose", mode="before")(
        classmethod(lambda cls, v: split_list(v)))


@BENCHMARKS.register("profile", example="profile",
                     summary="One model, every form (languages, jailbreak, code, ciphers, compositions), the same seed queries.")
class Profile(Benchmark):
    name = "profile"
    Params = ProfileParams
    default_judge = "refusal"
    reports = ("paired", "paired-html")

    def task(self, params: ProfileParams) -> EvalTask:  # type: ignore[override]
        unknown = [a for a in params.axes if a not in AXES]
        if unknown or not params.axes:
            raise InputError(f"unknown axis {', '.join(unknown) or '(none given)'} (known: {', '.join(AXES)})", field="axes")
        if params.prompts_file and params.data:
            raise InputError("give data (MultiJail) or prompts_file, not both", field="prompts_file")
        if params.prompts_file and params.translator == HUMAN:
            raise InputError("human translations exist only for MultiJail's prompts: choose a machine translator "
                             "(llm:<model> or hf:<path>) for a prompt file", field="translator")
        pool = self._pool(params)
        seeds = pick_ids(pool, params.ids) if params.ids else stratified_sample(pool, params.prompts, params.seed)
        seeds = seeds[: params.limit or None]  # `limit` keeps the first seeds (a quick try of the same design)
        translator = self._translator(params)
        notes = []
        languages = _languages(params.languages)
        if translator is None and languages and any(a in params.axes for a in ("languages", "jailbreak", "compose")):
            notes.append("language axis skipped: queries from a prompt file are translated only with a machine "
                         "translator (--translator llm:<model> or hf:<path>)")
            languages = []
        scenarios = build_cells(params, languages)
        template = params.template_file
        config = {
            "paired": {"seed_ids": [p.id for p in seeds], "reference": REFERENCE, "axes": list(params.axes),
                        "sampling": "ids given" if params.ids else SAMPLING, "prompts": len(seeds),
                        "seed": params.seed, "pool": len(pool)},
            "dataset": resolved(params.prompts_file) if params.prompts_file else _dataset_id(params.data),
            "translator": translator, "translation": ("human" if translator == HUMAN else "machine") if translator else None,
            "template": template, "notes": notes,
        }
        if "jailbreak" in params.axes:
            from .multijail import template_identity

            config.update(template_identity(template))
        return EvalTask(name="profile:file" if params.prompts_file else "profile:multijail", prompts=seeds,
                        scenarios=scenarios, config=config)

    def declare(self, task: EvalTask, generation, judge) -> dict:
        declared = super().declare(task, generation, judge)
        if task.config.get("translation") == "human":
            declared["translations"] = {"kind": "human", "source": "MultiJail's native-speaker translations"}
        return declared

    def attack_context(self, params: ProfileParams, options: ModelOptions) -> AttackContext:  # type: ignore[override]
        spec = self._translator(params)
        if spec is None:
            return AttackContext()
        from ..translators import load_translator

        return AttackContext(translator=load_translator(spec, options=options, data=params.data))

    @staticmethod
    def _translator(params: ProfileParams) -> str | None:
        if params.prompts_file:
            return params.translator
        return params.translator or HUMAN

    @staticmethod
    def _pool(params: ProfileParams) -> list[Prompt]:
        if params.prompts_file:
            from ..data.prompts import load_prompt_file

            pool = load_prompt_file(params.prompts_file)
            other = next((p for p in pool if p.language != "en"), None)
            if other is not None:
                raise InputError(f"profile seed queries must be English; prompt '{other.id}' is '{other.language}'",
                                 file=params.prompts_file, field="language")
            return pool
        from ..data.multijail import load_multijail

        return load_multijail(params.data, ["en"])


def build_cells(params: ProfileParams, languages: Sequence[str]) -> list[Scenario]:
    """The cells, reference first, each a Scenario named `<axis>/<cell>`."""
    from ..attacks.codeattack import get_variant

    jailbreak = f"jailbreak:{params.template_file}" if params.template_file else "jailbreak"
    variants = [get_variant(v).name for v in params.variants]
    unknown = [c for c in params.ciphers if c not in CIPHERS]
    if unknown:
        raise InputError(f"unknown cipher {', '.join(unknown)} (known: {', '.join(CIPHERS)})", field="ciphers")
    cells: list[tuple[str, str]] = [(REFERENCE, "none")]
    axes = params.axes
    if "languages" in axes:
        cells += [(f"language/{lang}", f"translate:{lang}") for lang in languages]
    if "jailbreak" in axes:
        cells += [(f"jailbreak/{lang}", "|".join(([] if lang == "en" else [f"translate:{lang}"]) + [jailbreak]))
                  for lang in ["en", *languages]]
    if "code" in axes:
        cells += [(f"code/{v}", f"codeattack:{v}") for v in variants]
    if "ciphers" in axes:
        cells += [(f"cipher/{c}", CIPHERS[c]) for c in params.ciphers]
    if "compose" in axes and languages:
        cells += [(f"compose/{form}+{lang}", f"translate:{lang}|{_form_chain(form)}")
                  for form, lang in _compositions(params, variants, languages)]
    names = [name for name, _ in cells]
    if len(set(names)) != len(names):
        raise InputError("the same cell is asked for twice", field="axes")
    return [Scenario(name, parse_chain(chain)) for name, chain in cells]


def _form_chain(form: str) -> str:
    from ..attacks.codeattack import VARIANTS

    if form in VARIANTS:
        return f"codeattack:{form}"
    if form in CIPHERS:
        return CIPHERS[form]
    raise InputError(f"unknown form '{form}' in a composition (a CodeAttack variant or a cipher)", field="compose")


def _compositions(params: ProfileParams, variants: Sequence[str], languages: Sequence[str]) -> list[tuple[str, str]]:
    if params.compose is None:
        form = "python_list" if "python_list" in variants else (variants[0] if variants else None)
        return [(form, lang) for lang in languages if lang in LOW_RESOURCE] if form else []
    out = []
    for item in params.compose:
        form, sep, lang = item.partition("+")
        if not sep or not form.strip() or not lang.strip():
            raise InputError(f"expected form+language, got '{item}'", field="compose")
        _form_chain(form.strip())
        out.append((form.strip(), _languages([lang])[0]))
    return out


def _languages(codes: Sequence[str]) -> list[str]:
    from ..languages import parse_languages

    if not codes:
        return []
    chosen = parse_languages(",".join(codes))
    return [code for code in chosen if code != "en"]


def _dataset_id(data: str | None) -> str:
    from .multijail import dataset_id

    return dataset_id(data)


def stratified_sample(pool: Sequence[Prompt], n: int, seed: int) -> list[Prompt]:
    """`n` prompts, each category's share as close to its share of the pool as integers allow.

    Categories get floor(n x share); the rest go to the largest remainders (ties in a seeded order); within a
    category the prompts are a seeded draw. The result keeps the pool's order."""
    if n >= len(pool):
        return list(pool)
    rng = random.Random(seed)
    groups: dict[str, list[int]] = {}
    for index, prompt in enumerate(pool):
        groups.setdefault(prompt.category or "", []).append(index)
    names = sorted(groups)
    quota = {c: n * len(groups[c]) / len(pool) for c in names}
    take = {c: int(quota[c]) for c in names}
    tie_order = names[:]
    rng.shuffle(tie_order)
    for c in sorted(tie_order, key=lambda c: -(quota[c] - take[c]))[: n - sum(take.values())]:
        take[c] += 1
    chosen = sorted(i for c in names for i in rng.sample(groups[c], take[c]))
    return [pool[i] for i in chosen]


def pick_ids(pool: Sequence[Prompt], ids: Sequence[str]) -> list[Prompt]:
    """The prompts with these ids, in the order given; a repeated or unknown id is refused."""
    by_id = {p.id: p for p in pool}
    seen: set[str] = set()
    out = []
    for pid in ids:
        if pid in seen:
            raise InputError(f"seed id '{pid}' is given twice", field="ids")
        if pid not in by_id:
            raise InputError(f"no seed query with id '{pid}'", field="ids")
        seen.add(pid)
        out.append(by_id[pid])
    return out
