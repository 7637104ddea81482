"""What bench/numerics.py measured, which `--numerics auto` chooses from.

For each lowered numerics on a kind of CPU: its tokens/s against float32's, side by side in one run, and the share
of prompts where the offline refusal judge gives its answer the same verdict as float32's answer. `auto` takes the
fastest numerics that agrees often enough (AGREEMENT_NEEDED) and is faster than float32; with no such measurement
for this CPU it stays float32. A kind of CPU is named by the numerics it has units for (`bf16-amx+int8-amx`).

A machine's own measurement (`python bench/numerics.py --save`) is kept in the user's cache and takes precedence.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

AGREEMENT_NEEDED = 0.95
FILE_ENV = "POLYSAFE_NUMERICS_MEASURED"


@dataclass(frozen=True)
class Measurement:
    numerics: str  # the tag: bf16-amx, int8-avx2
    speedup: float  # tokens/s against float32's
    agreement: float  # share of refusal verdicts equal to float32's
    workload: str  # what was generated
    where: str  # the machine

    def qualifies(self) -> bool:
        return self.agreement >= AGREEMENT_NEEDED and self.speedup > 1.0


# bench/numerics.py on the machines named, verdicts by refusal/v3; see README "Numerics on the CPU".
_XEON_AMX = ("2-core Xeon VM (avx512_bf16, avx512_fp16, amx_bf16, amx_int8), idle, 2 threads, best of 2 rounds, "
             "each numerics at its default rows, 2026-12-05")
SHIPPED: dict[str, tuple[Measurement, ...]] = {
    "bf16-amx+fp16-avx512+int8-amx": (
        Measurement("bf16-amx", 2.22, 0.930, "128 prompts x 256 tokens", _XEON_AMX),
        Measurement("fp16-avx512", 2.20, 0.984, "128 prompts x 256 tokens", _XEON_AMX),
        Measurement("int8-amx", 1.55, 0.766, "128 prompts x 256 tokens", _XEON_AMX),
    ),
    "int8-avx2": (
        Measurement("int8-avx2", 1.43, 0.516, "64 prompts x 128 tokens",
                    "emulated: the same VM with oneDNN, ATen and MKL capped at AVX2, idle, 2 threads, 96 rows, "
                    "2026-12-05"),
    ),
}


def user_file() -> Path:
    if os.environ.get(FILE_ENV):
        return Path(os.environ[FILE_ENV])
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "polysafe" / "numerics.json"


def measured(cpu: str) -> tuple[Measurement, ...]:
    """This kind of CPU's measurements: the user's own when their file has them, else the shipped ones.
    ValueError naming the file when it is not what `save` writes."""
    path = user_file()
    if path.is_file():
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
            if cpu in saved:
                return tuple(Measurement(**entry) for entry in saved[cpu])
        except (ValueError, TypeError, UnicodeDecodeError) as err:
            raise ValueError(f"{path}: not a numerics measurement file ({type(err).__name__}); delete it or "
                             f"re-run bench/numerics.py --save") from None
    return SHIPPED.get(cpu, ())


def save(cpu: str, measurements: list[Measurement]) -> Path:
    """Record this machine's measurements for `cpu`, keeping other kinds of CPU already in the file."""
    path = user_file()
    saved = {}
    if path.is_file():
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            saved = {}
    saved[cpu] = [asdict(m) for m in measurements]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(saved, indent=2) + "\n", encoding="utf-8")
    return path
