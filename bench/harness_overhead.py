"""Harness overhead: requests/s through the whole engine against a loopback endpoint that answers at once.

A minimal asyncio HTTP/1.1 server (its own process) plays an OpenAI-compatible endpoint; polysafe sends 5,000
prompts through attacks -> openai backend (httpx) -> SQLite store -> refusal judge -> store, into a fresh
database. A second run of the same command is timed too: it must make zero calls.

    python bench/harness_overhead.py [--prompts 5000] [--concurrency 64]
Target: >= 1,000 requests/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import tempfile
import time
from pathlib import Path

BODY = json.dumps({
    "id": "x", "object": "chat.completion", "model": "bench",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "I'm sorry, I can't help with that."}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 9},
}).encode()
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY)


def serve(port_queue) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                writer.write(RESPONSE)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port_queue.put(server.sockets[0].getsockname()[1])
        async with server:
            await server.serve_forever()

    asyncio.run(main())


async def one_run(url: str, prompts, db: Path, concurrency: int):
    from polysafe.attacks import parse_chain
    from polysafe.engine.runner import EvalTask, Scenario, run_eval
    from polysafe.engine.store import Store
    from polysafe.judges import load_judge
    from polysafe.models import ModelOptions, load_model

    model = load_model(f"openai:bench@{url}", ModelOptions(concurrency=concurrency))
    task = EvalTask("bench", prompts, [Scenario("none", parse_chain("none"))])
    with Store(db) as store:
        start = time.perf_counter()
        summary = await run_eval(task, model, load_judge("refusal"), store, run_name="bench")
        elapsed = time.perf_counter() - start
    await model.aclose()
    return summary, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()

    from polysafe.types import Prompt

    ports = multiprocessing.Queue()
    server = multiprocessing.Process(target=serve, args=(ports,), daemon=True)
    server.start()
    url = f"http://127.0.0.1:{ports.get(timeout=10)}/v1"
    prompts = [Prompt(id=str(i), text=f"Benchmark prompt number {i}: how would one do thing {i}?") for i in range(args.prompts)]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            db = Path(tmp) / "bench.db"
            first, cold = asyncio.run(one_run(url, prompts, db, args.concurrency))
            second, warm = asyncio.run(one_run(url, prompts, db, args.concurrency))
    finally:
        server.terminate()
    assert first.generated == args.prompts and first.errors == 0, first
    assert second.generated == 0, second
    rate = args.prompts / cold
    print(f"harness_overhead: {args.prompts} prompts, concurrency {args.concurrency}")
    print(f"  first run : {cold:6.2f} s  {rate:8.0f} requests/s (store + refusal judge; target >= 1000)")
    print(f"  second run: {warm:6.2f} s  {args.prompts / warm:8.0f} items/s, {second.generated} model calls (all from the store)")
    print(f"  verdict   : {'PASS' if rate >= 1000 else 'BELOW TARGET'}")


if __name__ == "__main__":
    main()
