"""Mutation testing with mutmut, one module group at a time, each with the fast in-process tests that cover it.

    python tools/mutate.py                 # every group (slow: hours on 2 cores)
    python tools/mutate.py keys stats      # some groups

Each group runs in a fresh copy of the tracked files (mutmut writes `mutants/` and reads `[tool.mutmut]` from
pyproject.toml, so the copy gets its own section). A mutant counts as caught when a test fails or times out; it
survives when every test passes or no test reaches it. Prints one line per group and the total, and exits 1 when
more than `--max-survival` percent survive.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# group: (files to mutate, in-process tests that cover them; tests that start `python -m polysafe.cli` cannot
# see a mutant and are left out, and so are `slow` ones)
GROUPS = {
    "keys": (["polysafe/keys.py"], ["tests/test_weak_spots.py", "tests/test_mutation_kills.py"]),
    "stats": (["polysafe/report/stats.py"], ["tests/test_compare.py", "tests/test_mutation_kills.py"] + [
        f"tests/test_profile.py::{name}" for name in (  # the paired statistics; the rest of the file runs a profile
            "test_exact_mcnemar_by_hand", "test_paired_interval_matches_newcombe_1998",
            "test_paired_interval_by_hand_when_phi_is_zero", "test_paired_interval_by_hand_with_correlated_pairs",
            "test_paired_difference_counts_discordant_pairs",
            "test_paired_interval_by_hand_when_the_correlation_shrinks_to_zero",
            "test_the_paired_interval_at_another_confidence_by_hand",
            "test_paired_interval_by_hand_with_a_correlation_just_above_the_shrink")]),
    "http": (["polysafe/models/http.py"], ["tests/test_http_client.py", "tests/test_http_framing.py",
                                            "tests/test_hostile_server.py", "tests/test_weak_spots.py"]),
    "judges": (["polysafe/judges/_model_judge.py", "polysafe/judges/llm.py", "polysafe/judges/harm.py",
                "polysafe/judges/helpfulness.py", "polysafe/judges/refusal.py"],
               ["tests/test_verdict_reading.py", "tests/test_llm_judge.py", "tests/test_harm_judge.py",
                "tests/test_helpfulness_judge.py", "tests/test_refusal_judge.py", "tests/test_judge_declarations.py",
                "tests/test_weak_spots.py", "tests/test_mutation_kills.py"]),
    "engine": (["polysafe/engine/store.py", "polysafe/engine/claims.py", "polysafe/engine/dispatch.py",
                "polysafe/engine/runner.py", "polysafe/engine/cost.py"],
               ["tests/test_engine_store.py", "tests/test_engine_parts.py", "tests/test_engine_runner.py",
                "tests/test_weak_spots.py", "tests/test_store_trust.py", "tests/test_mutation_kills.py"]),
    "attacks": (["polysafe/attacks/*"], ["tests/test_codeattack.py", "tests/test_ciphers.py", "tests/test_extraction.py",
                                         "tests/test_attack_prompts_stable.py", "tests/test_attack_details.py",
                                         "tests/test_weak_spots.py"]),
}
CAUGHT = {"killed", "timeout"}
# Tests that start a subprocess, by name. `-k` also reads parametrized ids: keep these words out of them.
SKIP_SUBPROCESS = "not cli and not command and not exits and not two_processes and not export_works"


def run_group(name: str, keep: bool) -> Counter:
    files, tests = GROUPS[name]
    work = Path(tempfile.mkdtemp(prefix=f"mutate-{name}-"))
    tracked = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.split()
    for rel in tracked:
        if (ROOT / rel).is_file():
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, work / rel)
    shared = ROOT.parent / "shared"
    if shared.is_dir():  # tests read ../shared/data beside the checkout; mutmut runs them from work/mutants
        (work / "shared").symlink_to(shared)
    quoted = ", ".join(f'"{f}"' for f in files)
    selection = ", ".join(f'"{t}"' for t in tests)
    with open(work / "pyproject.toml", "a", encoding="utf-8") as handle:
        handle.write(f'\n[tool.mutmut]\nsource_paths = ["polysafe"]\nonly_mutate = [{quoted}]\n'
                     f'pytest_add_cli_args_test_selection = [{selection}]\n'
                     f'pytest_add_cli_args = ["-p", "no:cacheprovider", "-q", "-m", "not slow", "-k", "{SKIP_SUBPROCESS}"]\n')
    mutmut = str(Path(sys.executable).with_name("mutmut"))
    env = {**os.environ, "PYTHONPATH": str(work)}
    with open(work / "mutmut.log", "w", encoding="utf-8") as log:
        for _ in range(2):  # a run stopped before any mutant (a flaky clean test run) resumes from its stats
            subprocess.run([mutmut, "run"], cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
            listing = subprocess.run([mutmut, "results", "--all", "true"], cwd=work, env=env, capture_output=True,
                                     text=True)
            if "not checked" not in listing.stdout:
                break
    counts = Counter()
    survivors = []
    for line in listing.stdout.splitlines():
        mutant, _, status = line.strip().rpartition(": ")
        if not mutant:
            continue
        counts[status] += 1
        if status not in CAUGHT:
            survivors.append(f"{mutant}: {status}")
    (ROOT / "mutants-survivors").mkdir(exist_ok=True)
    (ROOT / "mutants-survivors" / f"{name}.txt").write_text("\n".join(survivors) + "\n", encoding="utf-8")
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"  kept {work}")
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("groups", nargs="*", default=list(GROUPS), choices=list(GROUPS))
    parser.add_argument("--max-survival", type=float, default=10.0)
    parser.add_argument("--keep", action="store_true", help="keep each group's copy (to `mutmut show` survivors)")
    args = parser.parse_args()
    total = Counter()
    for name in args.groups:
        counts = run_group(name, args.keep)
        total += counts
        print(_line(name, counts), flush=True)
    print(_line("total", total))
    done = sum(total.values())
    survived = done - sum(total[s] for s in CAUGHT)
    sys.exit(1 if done and 100 * survived / done > args.max_survival else 0)


def _line(name: str, counts: Counter) -> str:
    done = sum(counts.values())
    survived = done - sum(counts[s] for s in CAUGHT)
    share = f"{100 * survived / done:.1f}%" if done else "n/a"
    detail = ", ".join(f"{status} {n}" for status, n in sorted(counts.items()))
    return f"{name}: {done} mutants, {survived} survive ({share}): {detail}"


if __name__ == "__main__":
    main()
