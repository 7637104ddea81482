"""The evaluation loop and the SQLite result store."""

from .runner import EvalTask, Scenario, run_eval
from .store import Store

__all__ = ["EvalTask", "Scenario", "Store", "run_eval"]
