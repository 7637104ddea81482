"""The evaluation loop (runner), the SQLite result store, content keys and progress hooks.

Names are resolved lazily so that importing `polysafe.engine.keys` never imports the runner (no cycles).
"""

_LAZY = {"EvalTask": "runner", "Scenario": "runner", "run_eval": "runner", "Store": "store"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(name)
