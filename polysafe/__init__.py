"""polysafe: measure and repair how LLM safety fails to carry over beyond English prose."""

__version__ = "0.1.0"
