"""Attacks: composable prompt transforms, chained with `|` (e.g. `translate:bn|codeattack:python_list`)."""

from ..registry import load_plugins
from .base import ATTACKS, Attack, AttackChain, AttackContext, AttackedPrompt, parse_chain

__all__ = ["ATTACKS", "Attack", "AttackChain", "AttackContext", "AttackedPrompt", "parse_chain"]

load_plugins(__name__)
