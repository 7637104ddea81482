"""Training: LoRA fine-tuning (`lora.py`, loss on assistant tokens only) and the fine-tuning attack data."""
