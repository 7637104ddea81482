"""Experiments that compose training, defenses and benchmarks: `generalization` trains English and multilingual
safety adapters on the embedded model and profiles them on held-out prompts (the generalization gap)."""
