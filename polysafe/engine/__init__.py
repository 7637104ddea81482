"""The evaluation loop (runner), its executors (local, ray), the SQLite result store and progress hooks.

Names are resolved lazily so that importing `polysafe.engine.store` never imports the runner.
"""

_LAZY = {"EvalTask": "runner", "Scenario": "runner", "run_eval": "runner", "Store": "store"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(name)
