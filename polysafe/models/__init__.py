"""Model backends behind one async protocol, chosen by a spec string.

`smollm2` (embedded default), `hf:<path or hub id>`, `openai:<model>[@base_url]`; any local spec may end
with `+lora:<adapter dir>`.
"""

from .base import MODELS, ModelBackend, ModelOptions, load_model

__all__ = ["MODELS", "ModelBackend", "ModelOptions", "load_model"]
