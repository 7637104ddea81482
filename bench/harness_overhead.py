"""Harness overhead: polysafe's whole path against a bare asyncio client, same requests, same loopback server.

A minimal asyncio HTTP/1.1 keep-alive server (its own process) plays an OpenAI-compatible endpoint that
answers at once. Two clients send the same chat-completion requests at the same concurrency:

- bare: raw HTTP/1.1 over asyncio streams, one keep-alive connection per slot, the JSON answer parsed, nothing
  stored (the least any client must do);
- polysafe: attacks -> openai backend -> SQLite store -> refusal judge -> store, into a fresh database.

Each repeat times both (alternating, so a noisy neighbour hurts both alike). The closing lines give the ratio
of the best times, the spread of the per-repeat ratios, and the CPU time each client's process used (the
server runs apart): on a shared machine the CPU figures are the steadier ones. A second polysafe run of the
same task is timed too: it must make zero calls.

Start-up is measured apart: the imports (`python -X importtime`, top-level modules summed, best of 5) of
`polysafe --help` and of a 20-prompt `polysafe eval file` run against the same server.

    python bench/harness_overhead.py [--prompts 2000] [--concurrency 64] [--repeat 3]
Targets: polysafe <= 1.25x the bare client's time; under 0.3 s of imports for each start-up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import tempfile
import time
from pathlib import Path

TARGET_RATIO = 1.25
TARGET_IMPORT_SECONDS = 0.3
ANSWER = "I'm sorry, I can't help with that."
BODY = json.dumps({
    "id": "x", "object": "chat.completion", "model": "bench",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER}, "finish_reason": "stop"}],
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


def prompt_texts(n: int) -> list[str]:
    return [f"Benchmark prompt number {i}: how would one do thing {i}?" for i in range(n)]


async def bare_client(port: int, texts: list[str], concurrency: int) -> float:
    """The reference: the same POSTs polysafe sends, over raw keep-alive HTTP/1.1, answers parsed."""
    queue: asyncio.Queue = asyncio.Queue()
    for text in texts:
        queue.put_nowait(text)
    answers: list[str] = []

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while not queue.empty():
            text = queue.get_nowait()
            body = json.dumps({"model": "bench", "messages": [{"role": "user", "content": text}], "temperature": 0.0,
                               "top_p": 1.0, "max_tokens": 256, "seed": 0}, ensure_ascii=False).encode()
            writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer EMPTY\r\n"
                         b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            answers.append(json.loads(await reader.readexactly(length))["choices"][0]["message"]["content"])
        writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    assert len(answers) == len(texts) and answers[0] == ANSWER
    return elapsed


async def polysafe_run(url: str, texts: list[str], db: Path, concurrency: int):
    from polysafe.attacks import parse_chain
    from polysafe.engine.runner import EvalTask, Scenario, run_eval
    from polysafe.engine.store import Store
    from polysafe.judges import load_judge
    from polysafe.models import ModelOptions, load_model
    from polysafe.types import Prompt

    model = load_model(f"openai:bench@{url}", ModelOptions(concurrency=concurrency))
    judge = load_judge("refusal")
    task = EvalTask("bench", [Prompt(id=str(i), text=t) for i, t in enumerate(texts)], [Scenario("none", parse_chain("none"))])
    with Store(db) as store:
        start = time.perf_counter()
        summary = await run_eval(task, model, judge, store, run_name="bench")
        elapsed = time.perf_counter() - start
    await model.aclose()
    return summary, elapsed


def import_seconds(*argv: str, repeat: int = 5) -> float:
    """Best of `repeat`: seconds of imports when `polysafe *argv` runs (top-level modules, nested ones inside)."""
    import os
    import subprocess
    import sys

    best = float("inf")
    for _ in range(repeat):
        done = subprocess.run([sys.executable, "-X", "importtime", "-m", "polysafe.cli", *argv], capture_output=True,
                              text=True, env={**os.environ, "OPENAI_API_KEY": "bench"}, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        total = 0
        for line in done.stderr.splitlines():
            fields = line.split("|")
            if line.startswith("import time:") and len(fields) == 3 and fields[1].strip().isdigit() and not fields[2].startswith("  "):
                total += int(fields[1])
        best = min(best, total / 1e6)
    return best


def startup(url: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        prompts = Path(tmp) / "prompts.csv"
        prompts.write_text("id,text\n" + "".join(f"{i},{text}\n" for i, text in enumerate(prompt_texts(20))), encoding="utf-8")
        figures = {"polysafe --help": import_seconds("--help"),
                   "20-prompt remote run": import_seconds("eval", "file", "-p", str(prompts), "-m", f"openai:bench@{url}",
                                                          "--db", str(Path(tmp) / "startup.db"))}
    for what, seconds in figures.items():
        verdict = "PASS" if seconds < TARGET_IMPORT_SECONDS else "ABOVE TARGET"
        print(f"  start-up imports, {what}: {seconds * 1000:.0f} ms ({verdict}, target < {TARGET_IMPORT_SECONDS * 1000:.0f} ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    ports = multiprocessing.Queue()
    server = multiprocessing.Process(target=serve, args=(ports,), daemon=True)
    server.start()
    port = ports.get(timeout=10)
    url = f"http://127.0.0.1:{port}/v1"
    texts = prompt_texts(args.prompts)
    walls: dict[str, list[float]] = {"bare": [], "polysafe": []}
    cpus: dict[str, list[float]] = {"bare": [], "polysafe": []}
    ratios = []
    print(f"harness_overhead: {args.prompts} prompts, concurrency {args.concurrency}, {args.repeat} repeats")
    try:
        asyncio.run(bare_client(port, texts[:200], args.concurrency))  # warm the server and the imports
        asyncio.run(polysafe_run(url, texts[:200], Path(tempfile.mkdtemp()) / "warm.db", args.concurrency))
        for repeat in range(args.repeat):
            cpu = time.process_time()
            bare = asyncio.run(bare_client(port, texts, args.concurrency))
            cpus["bare"].append(time.process_time() - cpu)
            with tempfile.TemporaryDirectory() as tmp:
                db = Path(tmp) / "bench.db"
                cpu = time.process_time()
                first, cold = asyncio.run(polysafe_run(url, texts, db, args.concurrency))
                cpus["polysafe"].append(time.process_time() - cpu)
                second, warm = asyncio.run(polysafe_run(url, texts, db, args.concurrency))
            assert first.generated == args.prompts and first.errors == 0 and first.judged == args.prompts, first
            assert second.generated == 0, second
            walls["bare"].append(bare)
            walls["polysafe"].append(cold)
            ratios.append(cold / bare)
            print(f"  repeat {repeat + 1}: bare {bare:5.2f} s ({args.prompts / bare:5.0f} req/s, cpu {cpus['bare'][-1]:.2f} s)   "
                  f"polysafe {cold:5.2f} s ({args.prompts / cold:5.0f} req/s, cpu {cpus['polysafe'][-1]:.2f} s, store + judge)   "
                  f"ratio {cold / bare:5.2f}x   rerun {warm:4.2f} s, {second.generated} calls")
        startup(url)
    finally:
        server.terminate()
    best = min(walls["polysafe"]) / min(walls["bare"])
    cpu_ratio = min(cpus["polysafe"]) / min(cpus["bare"])
    per_request = (min(cpus["polysafe"]) - min(cpus["bare"])) / args.prompts * 1e6
    print(f"  best times: bare {min(walls['bare']):.2f} s, polysafe {min(walls['polysafe']):.2f} s -> {best:.2f}x "
          f"(per-repeat ratios {min(ratios):.2f}-{max(ratios):.2f}x)")
    print(f"  client cpu: bare {min(cpus['bare']):.2f} s, polysafe {min(cpus['polysafe']):.2f} s -> {cpu_ratio:.2f}x "
          f"({per_request:.0f} us of extra cpu per request)")
    print(f"  verdict: {'PASS' if best <= TARGET_RATIO else 'ABOVE TARGET'} (target <= {TARGET_RATIO}x, best times)")


if __name__ == "__main__":
    main()
