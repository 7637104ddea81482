"""Prompt sets and languages."""

from ..registry import load_plugins
from .prompts import PROMPT_SETS, PromptSet

__all__ = ["PROMPT_SETS", "PromptSet"]

load_plugins(__name__)
