"""Numerics of local models on the CPU: which precision the matrix products run in.

- `fp32`: the model as loaded (float32 on CPUs, or the `--dtype` asked for). The default; its answers and store
  keys are those of every earlier polysafe version.
- `bf16`: the projections and the output head multiply bfloat16 weights and activations on the CPU's bf16 units
  (oneDNN: AMX tiles or AVX-512-BF16), accumulating in float32 inside the kernel; keys and values are kept in
  bfloat16 (half the bytes: twice the rows in the same memory). The residual stream, norms and rotary embedding
  stay float32.
- `fp16`: as bf16 with float16 operands (oneDNN on AVX-512-FP16 or AMX-FP16), keys and values in float16: a 10-bit
  mantissa where bfloat16 has 7, so each product's rounding is 8x finer. float16 ends at 65504: a decoding or
  scoring pass that overflowed runs again with the products' inputs scaled down (_lowered.within_float16), and
  weights beyond the range are refused.
- `int8`: the projections and the output head multiply int8 weights (one scale per output channel) and int8
  activations (one scale per row, computed from that row alone) with
  `torch._int_mm` (oneDNN: AMX-INT8, VNNI, or AVX2's integer multiply-adds), accumulating in int32. Keys and values
  stay float32.
- In each, decode steps attend with torch's fused CPU attention kernel over rows grouped by length
  (attention_fast.py; float32 accumulation), not with the float32 path's arithmetic, and the layers run in fewer,
  larger operations (layers_fast.py): q, k and v are one product, and so are the MLP's gate and up.
- `auto`: the fastest of the numerics this CPU has units for whose refusal verdicts agree with fp32's often
  enough, as bench/numerics.py measured them on this kind of CPU (numerics_measured.py); fp32 when none does or
  none was measured.

In every lower precision the output head's top candidates are rescored in float32 (their exact dot products
with the float32 head), so greedy decoding never picks between near-ties at bfloat16 resolution.

The numerics are part of the model identity (`smollm2#…@bf16-amx`): answers in different numerics never mix.
Unlike fp32's, a lower precision's answer can depend on which prompts share its batch (the kernels' blocking and the
attention segments follow the batch), as a GPU server's do; the store keeps the first answer, so reruns agree.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable

CHOICES = ("fp32", "bf16", "fp16", "int8", "auto")
FLAGS_ENV = "POLYSAFE_CPU_FLAGS"  # plan for a smaller CPU than this one (bench/numerics.py --isa avx2)
RESCORED = 8  # output-head candidates rescored in float32
# Projections of one input that lowering joins into one product (Llama's names): one 576 x 960 bf16 product took
# half the time of q, k and v's three (60 rows, 2 threads), and the input is cast once.
JOINED = {"qkv_proj": ("q_proj", "k_proj", "v_proj"), "gate_up_proj": ("gate_proj", "up_proj")}


@dataclass(frozen=True)
class Numerics:
    name: str  # fp32 | bf16 | fp16 | int8
    unit: str = ""  # the matrix unit the CPU offers for it: amx | avx512 | vnni | avx2 ("" for fp32)

    @property
    def tag(self) -> str:
        """The name in model identities and reports: `bf16-amx`, `int8-vnni`, `fp32`."""
        return f"{self.name}-{self.unit}" if self.unit else self.name

    @property
    def lowered(self) -> bool:
        return self.name != "fp32"


FP32 = Numerics("fp32")


@functools.cache
def cpu_features() -> frozenset[str]:
    """The feature flags numerics plan for: POLYSAFE_CPU_FLAGS when set, else the CPU's own; read once per process."""
    if os.environ.get(FLAGS_ENV) is not None:
        return frozenset(os.environ[FLAGS_ENV].split())
    return cpu_flags()


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's own feature flags (Linux /proc/cpuinfo); empty where they cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            for line in info:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


# Per lower precision, the CPU's units for it, best first, each with the flags of which any one offers it. int8
# runs on AVX2's integer multiply-adds where nothing better is there; emulated bf16 or fp16 is slower than fp32.
UNITS = {
    "bf16": (("amx", ("amx_bf16",)), ("avx512", ("avx512_bf16",))),
    "fp16": (("amx", ("amx_fp16",)), ("avx512", ("avx512_fp16",))),
    "int8": (("amx", ("amx_int8",)), ("vnni", ("avx512_vnni", "avx_vnni")), ("avx2", ("avx2",))),
}


def unit_flags(name: str) -> list[str]:
    """Every flag that offers `name` a unit, best unit first."""
    return [flag for _, flags in UNITS.get(name, ()) for flag in flags]


def supported(features: Iterable[str] | None = None) -> list[Numerics]:
    """fp32, then each lower precision the CPU has units for, on its best unit."""
    flags = cpu_features() if features is None else frozenset(features)
    found = [FP32]
    for name, units in UNITS.items():
        unit = next((unit for unit, offering in units if flags & set(offering)), None)
        if unit is not None:
            found.append(Numerics(name, unit))
    return found


def cpu_kind(features: Iterable[str] | None = None) -> str:
    """The kind of CPU as numerics see it: the lowered numerics it has units for (`bf16-amx+int8-amx`)."""
    return "+".join(n.tag for n in supported(features) if n.lowered) or "fp32"


def auto_choice(features: Iterable[str] | None = None) -> Numerics:
    """The fastest supported numerics whose measured verdict agreement qualifies; fp32 when none does."""
    from .numerics_measured import measured

    available = {n.tag: n for n in supported(features) if n.lowered}
    good = [m for m in measured(cpu_kind(features)) if m.numerics in available and m.qualifies()]
    return available[max(good, key=lambda m: m.speedup).numerics] if good else FP32


def resolve(name: str, features: Iterable[str] | None = None) -> Numerics:
    """The numerics for `--numerics NAME` on this CPU (or on one with `features`). ValueError when it has none."""
    if name not in CHOICES:
        raise ValueError(f"unknown numerics '{name}' (choose from {', '.join(CHOICES)})")
    available = {n.name: n for n in supported(features)}
    if name == "auto":
        return auto_choice(features)
    if name not in available:
        flags = unit_flags(name)
        raise ValueError(f"this CPU has no {name} units ({', '.join(flags[:-1])} or {flags[-1]}): {name} would be "
                         f"emulated, slower than fp32; use --numerics fp32 or auto")
    return available[name]


def kv_dtype(numerics: Numerics) -> Any:
    """The dtype keys and values are kept in: a 16-bit precision's own (its products' too), else float32."""
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(numerics.name, torch.float32)


def linear_maker(numerics: Numerics) -> Callable[[Any], Any]:
    """What replaces a float32 `torch.nn.Linear` in `numerics` (the linear itself in fp32)."""
    if not numerics.lowered:
        return lambda linear: linear
    import torch

    from ._lowered import HalfLinear, Int8Linear

    if numerics.name in ("bf16", "fp16"):
        return functools.partial(HalfLinear, dtype=kv_dtype(numerics))
    # AVX2 without VNNI saturates 16-bit sums of full-range products (see Int8Linear)
    return functools.partial(Int8Linear, levels=63 if numerics.unit == "avx2" else 127)


def lower(model: Any, numerics: Numerics) -> None:
    """Replace the decoder's projections and the output head with `numerics`' kernels, in place. The embedding
    stays float32 (it is a lookup), and so do the norms; the model must be float32 on the CPU."""
    if not numerics.lowered:
        return
    import torch

    from ._lowered import Columns, RescoredHead, joined

    if numerics.name == "fp16":
        _check_float16_range(model)
    make = linear_maker(numerics)
    for parent in list(model.get_decoder().modules()):
        for fused_name, names in JOINED.items():
            parts = [getattr(parent, name, None) for name in names]
            if not all(isinstance(p, torch.nn.Linear) for p in parts) or len({p.bias is None for p in parts}) > 1:
                continue
            fused = make(joined(parts))
            setattr(parent, fused_name, fused)
            start = 0
            for name, part in zip(names, parts):
                setattr(parent, name, Columns(fused, start, start + part.out_features))
                start += part.out_features
        for name, child in list(parent.named_children()):
            if isinstance(child, torch.nn.Linear):
                setattr(parent, name, make(child))
    head = model.get_output_embeddings()
    model.set_output_embeddings(RescoredHead(make(head), head.weight.detach(), head.bias, RESCORED))
    _own_memory(model)


def _check_float16_range(model: Any) -> None:
    """BackendError naming the first weight float16 cannot hold (beyond 65504 it is inf)."""
    import torch

    from ..errors import BackendError

    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and module.weight.abs().max() > torch.finfo(torch.float16).max:
            raise BackendError(f"float16 cannot hold this model's weights ({name}: up to "
                               f"{module.weight.abs().max().item():.3g}): use --numerics bf16 or fp32")


def _own_memory(model: Any) -> None:
    """Copy the float32 tensors that stay (embedding, norms) out of the weights file's memory map: while one of
    them holds the map, every page of it that lowering read stays resident (0.7 GB more peak memory for smollm2)."""
    import torch

    copies: dict[int, Any] = {}
    for module in model.modules():
        for store in (module._parameters, module._buffers):
            for name, tensor in store.items():
                if tensor is None or tensor.dtype != torch.float32:
                    continue
                copy = copies.setdefault(tensor.data_ptr(), tensor.detach().clone())
                if isinstance(tensor, torch.nn.Parameter):
                    tensor.data = copy
                else:
                    store[name] = copy
