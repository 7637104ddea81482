"""Defenses: LoRA fine-tuning (shared), usefulness checks, Self-Defense data generation."""
