"""`twolang`: a small two-language benchmark read from one file: each row holds a request in English and in
another language, and both are sent.

The file is CSV with columns `id`, `en` and the other language's code (e.g. `zh`), like MultiJail's CSV.
Parameters: `path` (the file), `language` (the second column, default zh). The default judge is the offline
refusal matcher; a model judge family maps to nothing special here."""

from __future__ import annotations

import csv
from pathlib import Path

from pydantic import Field

from polysafe.attacks import parse_chain
from polysafe.benchmarks import BENCHMARKS, Benchmark, BenchmarkParams
from polysafe.engine.runner import EvalTask, Scenario
from polysafe.errors import InputError
from polysafe.types import Prompt


class TwoLangParams(BenchmarkParams):
    path: str = Field(description="CSV with columns id, en and the second language's code.")
    language: str = Field(default="zh", description="The second language's column (an ISO code).")


@BENCHMARKS.register("twolang", example="twolang", summary="Example plugin: one file, each request in English and one other language.")
class TwoLanguages(Benchmark):
    name = "twolang"
    Params = TwoLangParams
    reports = ("md", "scores")

    def task(self, params: TwoLangParams) -> EvalTask:  # type: ignore[override]
        path = Path(params.path)
        try:
            with open(path, encoding="utf-8-sig", newline="") as handle:
                rows = list(csv.DictReader(handle))
        except (OSError, UnicodeDecodeError, csv.Error) as err:
            raise InputError(f"cannot read the file: {err}", file=str(path)) from None
        missing = {"id", "en", params.language} - set(rows[0] if rows else ())
        if missing:
            raise InputError(f"missing column(s) {', '.join(sorted(missing))}", file=str(path), line=1)
        rows = [r for r in rows if r["en"].strip() and r[params.language].strip()][: params.limit or None]
        prompts = [Prompt(r["id"], r[code].strip(), code, english=r["en"].strip(), source=path.name)
                   for code in ("en", params.language) for r in rows]
        return EvalTask(name=f"twolang:{path.name}", prompts=prompts, scenarios=[Scenario("plain", parse_chain("none"))],
                        config={"path": str(path.resolve()), "language": params.language, "limit": params.limit})
