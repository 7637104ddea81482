"""Self-Defense (Deng et al., ICLR 2024): generate multilingual safety data with the model itself, then tune it."""

from .generate import GenerationPlan, GenerationResult, Pair, SeedPair, generate_pairs, load_seeds, save_dataset

__all__ = ["GenerationPlan", "GenerationResult", "Pair", "SeedPair", "generate_pairs", "load_seeds", "save_dataset"]
