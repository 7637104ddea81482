"""The same local-model evaluation through `--executor local` and `--executor ray` (1 and 2 actors of 1 CPU each,
on a local Ray instance), side by side in one run.

    python bench/ray_scaling.py [--prompts 16] [--max-tokens 32] [--batch 64] [--rounds 2]

Workload: MultiJail-like prompts (bench/local_throughput.py's: 10 languages, half inside the role-play jailbreak),
greedy, the embedded SmolLM2-135M in float32. Each configuration runs the whole engine (items, keys, store,
refusal judge) into a fresh store; only the generation phase is timed (Progress hooks), with the model already
loaded (local) or the actors already up and loaded (a warm-up run first), so start-up costs are not counted.
The configurations run in turn, `--rounds` times, and each one's best run counts: on a shared machine other
work slows every figure, the more so for several threads that meet at barriers.

Printed per configuration: generations/s and generated tokens/s. Then:
- Ray's overhead per unit: shipping one unit and its answers through Ray without the model, an empty actor call,
  and end to end: (time of 1 actor x 1 CPU - time of the local executor at 1 torch thread) / units;
- the scaling ratio: 2 actors over 1 (ideal 2.0 when the machine has 2 idle cores);
- whether every configuration stored byte-identical answers.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from local_throughput import workload  # noqa: E402

import polysafe  # noqa: E402
from polysafe.engine.executor import ExecutorChoice, LOCAL  # noqa: E402
from polysafe.engine.progress import Progress  # noqa: E402
from polysafe.engine.runner import EvalTask, Scenario, run_eval  # noqa: E402
from polysafe.engine.store import Store  # noqa: E402
from polysafe.attacks import parse_chain  # noqa: E402
from polysafe.judges.base import load_judge  # noqa: E402
from polysafe.models import ModelOptions, load_model  # noqa: E402
from polysafe.types import GenerationConfig, Prompt  # noqa: E402


class Timer(Progress):
    def __init__(self):
        self.start_at = self.end_at = 0.0
        self.tokens = 0

    def start(self, phase: str, total: int) -> None:
        if phase == "generate":
            self.start_at = time.perf_counter()

    def advance(self, phase: str, count: int = 1, tokens: int = 0) -> None:
        if phase == "generate":
            self.tokens += tokens

    def finish(self, phase: str) -> None:
        if phase == "generate":
            self.end_at = time.perf_counter()


def task_of(texts: list[str]) -> EvalTask:
    return EvalTask("bench:ray", [Prompt(str(i), t) for i, t in enumerate(texts)], [Scenario("plain", parse_chain("none"))])


def measure(label: str, texts: list[str], backend, executor, gen: GenerationConfig, folder: Path) -> dict:
    db = folder / f"{len(list(folder.glob('*.db')))}.db"  # a fresh store each time: every generation is pending
    timer = Timer()
    units = len(list(range(0, len(texts), max(1, executor.unit_size(backend, len(texts))))))
    with Store(db) as store:
        summary = asyncio.run(run_eval(task_of(texts), backend, load_judge("refusal"), store, gen=gen, run_name="bench",
                                       progress=timer, executor=executor))
    with sqlite3.connect(db) as con:
        answers = dict(con.execute("SELECT key, text FROM responses"))
    seconds = timer.end_at - timer.start_at
    return {"label": label, "seconds": seconds, "generated": summary.generated, "tokens": timer.tokens,
            "units": units, "answers": answers}


def echo_unit(conversations, config):
    """A unit's trip through Ray without the model: its conversations in, as many answer-sized results out."""
    from polysafe.types import Completion

    return [Completion("x" * 4 * config.max_tokens, 30, config.max_tokens, "length") for _ in conversations]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2, help="Each configuration this many times, interleaved; the best counts.")
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "multijail" / "MultiJail.csv")
    args = parser.parse_args()

    import os

    import ray
    import torch

    from polysafe.engine import executor_ray
    from polysafe.types import Message

    texts = workload(args.prompts, args.data)
    gen = GenerationConfig(max_tokens=args.max_tokens)
    backend = load_model("smollm2", ModelOptions(batch_size=args.batch, device="cpu"))
    backend.model  # loaded outside the timing
    default_threads = torch.get_num_threads()
    print(f"setup: smollm2 float32 on CPU, {len(texts)} prompts, max_tokens {args.max_tokens}, batch {args.batch}, "
          f"best of {args.rounds} interleaved rounds; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} "
          "at the start (the machine is shared with other work)", flush=True)
    best: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="ray-bench-") as tmp:
        folder = Path(tmp)
        warm, tiny = texts[:2], GenerationConfig(max_tokens=4)
        executors = {n: ExecutorChoice("ray", ray_actors=n).load() for n in (1, 2)}
        measure("warm-up", warm, backend, LOCAL, tiny, folder)
        configs = [(f"local ({default_threads} threads)", LOCAL, default_threads), ("local (1 thread)", LOCAL, 1),
                   ("ray 1 actor x 1 CPU", executors[1], None), ("ray 2 actors x 1 CPU", executors[2], None)]
        for round_ in range(args.rounds):
            for label, executor, threads in configs:
                if threads:
                    torch.set_num_threads(threads)
                if executor is not LOCAL:
                    for other in executors.values():  # one pool up at a time: the cores are the actors'
                        if other is not executor:
                            other.close()
                    measure("warm-up", warm, backend, executor, tiny, folder)
                result = measure(label, texts, backend, executor, gen, folder)
                torch.set_num_threads(default_threads)
                print(f"  round {round_ + 1}: {label:<24} {result['seconds']:7.2f} s", flush=True)
                if label not in best or result["seconds"] < best[label]["seconds"]:
                    best[label] = result
        actor = executors[2].pool.actors[0]
        ray.get(actor.pid.remote())
        started = time.perf_counter()
        for _ in range(20):
            ray.get(actor.pid.remote())
        round_trip = (time.perf_counter() - started) / 20
        unit = [(Message("user", t),) for t in texts[: max(1, len(texts) // 4)]]
        echo = ray.remote(num_cpus=0)(echo_unit)
        ray.get(echo.remote(unit, gen))
        started = time.perf_counter()
        for _ in range(10):
            ray.get(echo.remote(unit, gen))
        transport = (time.perf_counter() - started) / 10
        executor_ray.shutdown()

    results = [best[label] for label, _, _ in configs]
    print(f"{'executor':<26}{'units':>6}{'seconds':>9}{'gen/s':>8}{'tokens/s':>10}")
    for r in results:
        print(f"{r['label']:<26}{r['units']:>6}{r['seconds']:>9.2f}{r['generated'] / r['seconds']:>8.2f}"
              f"{r['tokens'] / r['seconds']:>10.1f}")
    local1, ray1, ray2 = results[1], results[2], results[3]
    overhead = (ray1["seconds"] - local1["seconds"]) / max(1, ray1["units"])
    print(f"Ray overhead per unit: {transport * 1000:.1f} ms to ship a {len(unit)}-conversation unit and its answers "
          f"through Ray (a task, no model), {round_trip * 1000:.1f} ms for an empty actor call; end to end, 1 actor x 1 CPU "
          f"vs local at 1 thread: {overhead * 1000:+.0f} ms per unit over {ray1['units']} units")
    print(f"scaling, 2 actors over 1: {ray2['tokens'] / ray2['seconds'] / (ray1['tokens'] / ray1['seconds']):.2f}x (ideal 2.00)")
    identical = all(r["answers"] == results[0]["answers"] for r in results)
    print(f"answers byte-identical across executors: {'yes' if identical else 'NO'}; load average at the end "
          f"{os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
