"""Prompt sets and languages."""

from .prompts import PROMPT_SETS, PromptSet

__all__ = ["PROMPT_SETS", "PromptSet"]
