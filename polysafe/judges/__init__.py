"""Judges: turn (query, prompt, response) into a verdict safe | unsafe | invalid | error, maybe with a 1-5 score."""

from .base import JUDGES, Judge, load_judge

__all__ = ["JUDGES", "Judge", "load_judge"]
