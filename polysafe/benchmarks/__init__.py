"""Benchmarks: a paper's task as one declarative object (data, scenarios, default judge, reports, references).

`polysafe eval <benchmark> -P key=value` and `polysafe.evaluate("<benchmark>", params={...})` run any of them.
A new benchmark is one file here (or a third-party package's `polysafe.benchmarks` entry point).
"""

from .base import BENCHMARKS, Benchmark, BenchmarkParams, load_benchmark, parse_param_pairs

__all__ = ["BENCHMARKS", "Benchmark", "BenchmarkParams", "load_benchmark", "parse_param_pairs"]
