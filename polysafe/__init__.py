"""polysafe: measure and repair how LLM safety fails to carry over beyond English prose.

The library API (`evaluate`, `estimate`, `load_model`, `load_judge`, `results`, `RunOptions`) is imported on first use,
so that `import polysafe` and the CLI start fast.
"""

__version__ = "0.1.0"

_API = ("evaluate", "estimate", "load_model", "load_judge", "results", "RunOptions", "DEFAULT_DB")


def __getattr__(name: str):
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'polysafe' has no attribute '{name}'")


__all__ = [*_API, "__version__"]
