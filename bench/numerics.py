"""Local numerics side by side in one run: the same workload in fp32 and in each lower precision this CPU has
matrix units for (`--numerics`), with how far their answers agree with fp32's.

    python bench/numerics.py                                  # 128 prompts x 256 tokens, as bench/local_throughput.py
    python bench/numerics.py --prompts 16 --max-tokens 64     # quick mode (a few minutes on 2 cores)
    python bench/numerics.py --rounds 2                       # alternate the numerics twice, keep each one's best time
    python bench/numerics.py --save                           # and keep the figures for `--numerics auto`
    python bench/numerics.py --isa avx2                       # as on an AVX2-only CPU (emulated, see below)

Workload: bench/local_throughput.py's (MultiJail-like prompts in 10 languages, half inside the role-play
jailbreak), greedy, through the embedded smollm2's decode loop as the engine drives it (all prompts queued at
once). Each numerics runs in its own process (its own peak memory, threads and allocator), one after the other,
fp32 first; with --rounds N they alternate N times and each keeps its best time (a shared machine slows every
figure; alternating keeps the ratios fair).

Per numerics, against fp32's answers to the same prompts:
- identical: the share of answers that are token-for-token the same;
- first divergence: over the answers that differ, the mean position (in generated tokens) of the first token
  that differs;
- verdict agreement: the share of prompts where the offline refusal judge gives the same label to both answers,
  with its Wilson 95% interval in the table (at 128 prompts, 94% agreement is [88%, 97%]);
- the non-refusal rate (the share the refusal judge labels unsafe) and its change from fp32's, paired on the
  prompts: flipped verdicts that cancel out leave the figure a report shows unchanged.

Then one line per numerics, exactly (scripts read it; tests/test_numerics.py parses it):
    numerics=<name> tokens/s=<x> vs_fp32=<r>x verdict_agreement=<p>% peak_gb=<m>

The ceiling of each numerics: one decode step's projections and output head (every layer's own weights) through
that numerics' own modules (models/_lowered.py: casts and int8 quantization of the activations included) at the
batch size, best of several; tokens/s = its GEMM rate / the FLOPs per token (as in bench/local_throughput.py).

`--save` records each lowered numerics' speed-up and verdict agreement in the user's cache
(polysafe/models/numerics_measured.py), where `--numerics auto` reads them on this kind of CPU.

`--isa avx2` runs every process with oneDNN, ATen and MKL capped at AVX2 (ONEDNN_MAX_CPU_ISA, ATEN_CPU_CAPABILITY,
MKL_ENABLE_INSTRUCTIONS) and POLYSAFE_CPU_FLAGS="avx2 fma": the kernels an AVX2-only CPU would run (int8 through
AVX2's integer multiply-adds), on this machine's cores, caches and memory, which are not an AVX2-only CPU's.

Targets (on a CPU with bf16 matrix units): the best numerics >= 2x fp32 tokens/s, with >= 95% verdict agreement
and <= 2 GB peak; on an AVX2-only CPU, int8 >= 1.3x fp32 with the same agreement.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from local_throughput import BUILTIN, SHARED_CSV, model_shapes  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
LINE = "numerics={name} tokens/s={rate:.1f} vs_fp32={ratio:.2f}x verdict_agreement={agreement:.1f}% peak_gb={peak:.2f}"


def result_line(name: str, rate: float, ratio: float, agreement: float, peak: float) -> str:
    """The one line per numerics that scripts read: `agreement` is a share (0..1), printed in percent."""
    return LINE.format(name=name, rate=rate, ratio=ratio, agreement=100 * agreement, peak=peak)


# -- the workload: bench/local_throughput.py's, with each prompt's language for the judge ------------------------
def workload(count: int, data: Path | None) -> list[tuple[str, str, str]]:
    """(what is sent, the request, its language) per prompt."""
    from polysafe.attacks.jailbreak import POLYSAFE_TEMPLATE, fill

    if data and data.is_file():
        from polysafe.data.multijail import load_multijail

        prompts = load_multijail(data)
        per_language = len(prompts) // 10
        # prompt i: language i mod 10, id (37 (i div 10) + 11 (i mod 10)) mod n: all distinct while i < 10 n
        # (37 is prime to 315), and the languages do not ask the same ids
        picked = [prompts[(i % 10) * per_language + (i // 10 * 37 + i % 10 * 11) % per_language] for i in range(count)]
        requests = [(p.text, p.reference, p.language) for p in picked]
    else:
        requests = [(BUILTIN[i % len(BUILTIN)],) * 2 + ("",) for i in range(count)]
    return [(fill(POLYSAFE_TEMPLATE, t) if i % 2 else t, reference, language) for i, (t, reference, language) in enumerate(requests)]


# -- one numerics per process ------------------------------------------------------------------------------------
def measure_run(args, numerics: str) -> dict:
    import resource

    from polysafe.judges.refusal import RefusalJudge
    from polysafe.models import ModelOptions, load_model
    from polysafe.models.decoding import DecodeRequest, clean_text
    from polysafe.models.tuning import tune_this_process
    from polysafe.types import JudgeInput, Message

    tune_this_process()  # as the CLI does: the allocator setting and the decode loop's thread chooser
    backend = load_model("smollm2", ModelOptions(numerics=numerics, batch_size=args.batch))
    tok, loop = backend.tokenizer, backend._loop
    work = workload(args.prompts, args.data)
    prompts = [tuple(tok(backend.render((Message("user", sent),)), add_special_tokens=False)["input_ids"])
               for sent, _, _ in work]
    loop.run([DecodeRequest(prompts[0], 4)])  # warm-up
    start = time.perf_counter()
    results = loop.run([DecodeRequest(p, args.max_tokens) for p in prompts])
    seconds = time.perf_counter() - start
    judge = RefusalJudge()
    answers = [clean_text(tok, r.token_ids).strip() for r in results]
    return {
        "identity": backend.identity, "tag": backend.numerics.tag, "seconds": seconds, "batch": backend.batch_size,
        "tokens": sum(len(r.token_ids) + int(r.stopped) for r in results),
        "ids": [r.token_ids for r in results], "labels": [judge.verdict(JudgeInput(request, sent, answer, language)).label
                                                     for (sent, request, language), answer in zip(work, answers)],
        "mean_prompt": sum(map(len, prompts)) / len(prompts), "threads": loop.threads.best,
        "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def measure_gemm(args, numerics: str) -> dict:
    """Seconds of one decode step's matrix products in `numerics`' own modules, best of `--ceiling-repeats`."""
    import torch

    from polysafe.models.local import default_batch_size
    from polysafe.models.numerics import kv_dtype, linear_maker, resolve
    from polysafe.models.tuning import tune_this_process

    tune_this_process()
    shapes = model_shapes()
    chosen = resolve(numerics)
    make = linear_maker(chosen)
    sizes = [(k, n) for _ in range(shapes["layers"]) for k, n in shapes["per_layer"]] + [shapes["head"]]
    modules = []
    for k, n in sizes:
        linear = torch.nn.Linear(k, n, bias=False)
        modules.append(make(linear))
        del linear
    dtype = kv_dtype(chosen)
    rows = args.batch or default_batch_size(chosen)
    inputs = {k: torch.randn(rows, k, dtype=dtype) for k, _ in sizes}

    def step() -> float:
        start = time.perf_counter()
        for (k, _), module in zip(sizes, modules):
            module(inputs[k])
        return time.perf_counter() - start

    with torch.inference_mode():
        step()
        best = min(step() for _ in range(args.ceiling_repeats))
    flops = 2 * rows * sum(k * n for k, n in sizes)
    return {"gflops": flops / best / 1e9, "threads": torch.get_num_threads()}


ISA_CAPS = {"avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
                     "POLYSAFE_CPU_FLAGS": "avx2 fma"}}


def child_env(isa: str | None) -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), **ISA_CAPS.get(isa or "", {})}


def in_child(kind: str, numerics: str, argv: list[str], isa: str | None) -> dict:
    out = subprocess.run([sys.executable, __file__, "--only", f"{kind}:{numerics}", *argv], capture_output=True,
                         text=True, env=child_env(isa))
    if out.returncode:
        sys.exit(f"{kind} {numerics} failed (exit {out.returncode}): {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- agreement with fp32 -----------------------------------------------------------------------------------------
def first_divergence(a: list[int], b: list[int]) -> int | None:
    """The first generated position where two answers differ (the shorter one's length when one is the other's
    prefix); None when they are identical."""
    if a == b:
        return None
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def agreement(base: dict, other: dict) -> dict:
    splits = [first_divergence(a, b) for a, b in zip(base["ids"], other["ids"])]
    diverged = [s for s in splits if s is not None]
    same = sum(x == y for x, y in zip(base["labels"], other["labels"]))
    return {"identical": 1 - len(diverged) / len(splits), "divergence": sum(diverged) / len(diverged) if diverged else None,
            "verdicts": same / len(splits), "agreeing": same, "prompts": len(splits)}


def rate_change(base: dict, other: dict, label: str = "unsafe"):
    """The change in the share of answers judged `label` (the refusal judge's `unsafe`: answered without refusing),
    other minus fp32, paired on the prompts: a report.stats.PairedDifference (Newcombe interval, exact McNemar)."""
    from polysafe.report.stats import paired_difference

    return paired_difference([(b == label, a == label) for a, b in zip(base["labels"], other["labels"])])


# -- the report ---------------------------------------------------------------------------------------------------
def report(runs: dict[str, dict], gemms: dict[str, dict], args) -> None:
    from polysafe.judges.refusal import RefusalJudge
    from polysafe.report.metrics import wilson

    shapes = model_shapes()
    base = runs["fp32"]
    mean_answer = base["tokens"] / args.prompts
    matmul = 2 * (shapes["layers"] * sum(k * n for k, n in shapes["per_layer"]) + shapes["head"][0] * shapes["head"][1])
    attention = 4 * shapes["layers"] * shapes["heads"] * shapes["head_dim"] * (base["mean_prompt"] + mean_answer / 2)
    fp32_rate = base["tokens"] / base["seconds"]
    flags = ", ".join(matrix_flags()) or "none"
    emulated = f" (emulated: kernels capped at {args.isa.upper()} on a CPU with {flags})" if args.isa else ""
    print(f"numerics: {args.prompts} MultiJail-like prompts (half in the role-play jailbreak), greedy, max "
          f"{args.max_tokens} new tokens, best of {args.rounds} round(s); verdicts by {RefusalJudge.identity}; "
          f"CPU flags: {flags}{emulated}")
    print(f"{'numerics':<11} {'identity':<34} {'rows':>4} {'thr':>3} {'tokens':>7} {'seconds':>8} {'identical':>9} "
          f"{'1st diff':>8} {'verdicts agree [95% CI]':>23} {'GEMM GF/s':>9} {'ceiling t/s':>11}")
    for name, run in runs.items():
        stats = agreement(base, run)
        ceiling = gemms[name]["gflops"] * 1e9 / (matmul + attention)
        divergence = f"{stats['divergence']:.1f}" if stats["divergence"] is not None else "-"
        low, high = wilson(stats["agreeing"], stats["prompts"])
        verdicts = f"{stats['verdicts']:.1%} [{low:.1%}, {high:.1%}]"
        print(f"{run['tag']:<11} {run['identity'].split('#')[0] + '@' + run['identity'].rsplit('@', 1)[1]:<34} "
              f"{run['batch']:>4} {run['threads']:>3} {run['tokens']:>7} {run['seconds']:>8.1f} {stats['identical']:>9.1%} "
              f"{divergence:>8} {verdicts:>23} {gemms[name]['gflops']:>9.0f} {ceiling:>11.0f}")
    print("\nnon-refusal rate (answers the refusal judge labels unsafe), and its change from fp32's, paired on the prompts "
          "(Newcombe 95% CI, exact McNemar p):")
    for name, run in runs.items():
        share = sum(label == "unsafe" for label in run["labels"]) / len(run["labels"])
        change = rate_change(base, run)
        detail = "" if name == "fp32" else (f"  change {100 * change.value:+.1f} pp [{100 * change.low:+.1f}, "
                                            f"{100 * change.high:+.1f}], p={change.p:.2f}")
        print(f"  {run['tag']:<11} {share:6.1%}{detail}")
    print()
    for name, run in runs.items():
        rate = run["tokens"] / run["seconds"]
        print(result_line(run["tag"], rate, rate / fp32_rate, agreement(base, run)["verdicts"], run["peak_gb"]))
    if args.save:
        saved = save_measurements(runs, args)
        print(f"saved for --numerics auto on this kind of CPU ({saved[0]}): {saved[1]}")


def save_measurements(runs: dict[str, dict], args) -> tuple[str, Path]:
    import platform

    from polysafe.models.numerics import cpu_kind
    from polysafe.models.numerics_measured import Measurement, save

    base = runs["fp32"]
    fp32_rate = base["tokens"] / base["seconds"]
    where = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, flags {', '.join(matrix_flags())}"
    measurements = [Measurement(run["tag"], round(run["tokens"] / run["seconds"] / fp32_rate, 3),
                                round(agreement(base, run)["verdicts"], 4),
                                f"{args.prompts} prompts x {args.max_tokens} tokens", where)
                    for name, run in runs.items() if name != "fp32"]
    kind = cpu_kind()
    return kind, save(kind, measurements)

def matrix_flags() -> list[str]:
    """This CPU's own flags that numerics use (whatever --isa caps the processes to)."""
    from polysafe.models.numerics import UNITS, cpu_flags, unit_flags

    wanted = {"avx512f", "amx_tile", *(flag for name in UNITS for flag in unit_flags(name))}
    return sorted(wanted & cpu_flags())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=128)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--numerics", default=None, help="comma-separated (default: fp32 and every one this CPU supports)")
    parser.add_argument("--batch", type=int, default=None, help="rows decoded together (default: the backend's for each numerics)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--ceiling-repeats", type=int, default=5)
    parser.add_argument("--data", type=Path, default=SHARED_CSV)
    parser.add_argument("--isa", choices=sorted(ISA_CAPS), help="run as on a CPU with only this instruction set (emulated)")
    parser.add_argument("--save", action="store_true", help="keep the figures for --numerics auto on this kind of CPU")
    parser.add_argument("--only", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.only:
        kind, numerics = args.only.split(":")
        print(json.dumps((measure_run if kind == "run" else measure_gemm)(args, numerics)))
        return
    if args.isa and args.save:
        sys.exit("--save keeps this machine's own figures: not with --isa (emulated)")
    if args.isa:
        os.environ.update(ISA_CAPS[args.isa])  # this process plans the numerics as the children run them
    from polysafe.models.numerics import supported

    names = ["fp32", *[n.name for n in supported() if n.lowered]] if args.numerics is None else args.numerics.split(",")
    if names[0] != "fp32":
        names.insert(0, "fp32")
    argv = sys.argv[1:]
    runs: dict[str, dict] = {}
    for _ in range(args.rounds):
        for name in names:
            run = in_child("run", name, argv, args.isa)
            if name not in runs or run["seconds"] < runs[name]["seconds"]:
                runs[name] = {**run, "ids": runs.get(name, run)["ids"], "labels": runs.get(name, run)["labels"]}
    gemms = {name: in_child("gemm", name, argv, args.isa) for name in names}
    report(runs, gemms, args)


if __name__ == "__main__":
    main()
