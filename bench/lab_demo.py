"""Time the lab: `make demo`'s job (the lab at demo size) from an empty store and output folder, then again.

The first run does everything: the base model's helpful answers, both adapters' training, and three profiles
plus over-refusal. The second run must reuse it all (0 model calls, no training) and says so. Printed per run:
wall time, the CPU time of the process (user + system; on a shared machine the steadier figure: on an idle
2-core machine wall time is about CPU time / 2 while both cores are busy), and the machine's load.

    python bench/lab_demo.py [--full] [--threads 2] [-- extra lab flags]
Target: the demo's first run under 600 s of wall time on 2 CPU cores (setup excluded).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_SECONDS = 600


def lab_command(out: Path, db: Path, full: bool, extra: list[str]) -> list[str]:
    """The command `make demo` (or `make lab`) runs, with its --out and --db pointed at a fresh folder."""
    make = subprocess.run(["make", "-n", "lab" if full else "demo", f"BIN={Path(sys.executable).parent}"],
                          cwd=ROOT, capture_output=True, text=True, check=True).stdout
    args = shlex.split(next(x for x in make.splitlines() if "lab generalization" in x))
    kept: list[str] = []
    for index, arg in enumerate(args):
        if arg in ("--out", "--db") or (index and args[index - 1] in ("--out", "--db")):
            continue
        kept.append(arg)
    return kept + ["--out", str(out), "--db", str(db), *extra]


def timed(command: list[str], threads: int | None) -> tuple[float, float, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))  # this checkout's code, whatever the venv's install points at
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode:
        sys.exit(f"lab failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return wall, cpu, done.stdout + done.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="time `make lab` instead of `make demo`")
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS for the run")
    parser.add_argument("extra", nargs="*", help="extra lab flags (after --)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="polysafe-lab-bench-"))
    try:
        command = lab_command(folder / "out", folder / "bench.db", args.full, args.extra)
        print("command:", " ".join(command[command.index("lab"):]))
        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} before the first run")
        wall, cpu, output = timed(command, args.threads)
        calls = re.search(r"model calls this run: (\d+); adapters trained this run: (\d+)", output)
        print(f"first run: {wall:.0f} s wall, {cpu:.0f} s CPU; {calls.group(0) if calls else '?'}; "
              f"load average {os.getloadavg()[0]:.1f} after")
        wall2, cpu2, output2 = timed(command, args.threads)
        calls2 = re.search(r"model calls this run: (\d+); adapters trained this run: (\d+)", output2)
        print(f"rerun: {wall2:.0f} s wall, {cpu2:.0f} s CPU; {calls2.group(0) if calls2 else '?'}")
        if not args.full:
            verdict = "met" if wall < TARGET_SECONDS else "NOT met (see the load average: a shared machine is slower)"
            print(f"target: first run under {TARGET_SECONDS} s of wall time on 2 CPU cores: {verdict}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
