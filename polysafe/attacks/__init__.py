"""Attacks: composable prompt transforms, chained with `|` (e.g. `translate:bn|codeattack:python_list`)."""

from .base import ATTACKS, Attack, AttackChain, AttackContext, AttackedPrompt, parse_chain

__all__ = ["ATTACKS", "Attack", "AttackChain", "AttackContext", "AttackedPrompt", "parse_chain"]
