"""A continuous-batching decode loop for local causal LMs, and clean decoding of the tokens it returns.

transformers' `generate` keeps a finished row in the batch until the longest row ends, and grows its key/value
cache by concatenation at every step. This loop instead:

- removes a row as soon as it ends and gives its slot to a waiting prompt, so the batch stays full;
- keeps keys and values in a preallocated cache, one slot per row, each row at its own length (no padding
  between prompt and answer, no copy per step);
- computes logits for each row's last position only;
- computes a prompt prefix that a group of new rows shares (the chat template's system prompt, a jailbreak
  template) once, keeps it for later groups, and copies it into each row's slot.

Prompts can come from several threads at once (the engine runs a few `generate` calls concurrently): they all
join one queue, so rows from the next call fill the slots that the current call leaves free.

In float32, greedy decoding picks the same tokens as `generate` (tests/test_decode_loop.py). It drives the
model's own forward pass with a 4-D attention mask and position ids per row; it is used for the architectures
listed in SUPPORTED_ARCHITECTURES, whose attention layers read and write keys and values through
`past_key_values.update` exactly as they do with transformers' own caches.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Sequence

SUPPORTED_ARCHITECTURES = frozenset({"llama"})
PREFILL_TOKENS = 2048  # prompt tokens per prefill pass: bounds the activations of long prompts
SHARED_PREFIX_MIN = 8  # shorter common prefixes are not worth a pass of their own
SHARED_PREFIXES_KEPT = 2
REPLACEMENT = "\ufffd"


@dataclass(frozen=True)
class DecodeRequest:
    prompt_ids: tuple[int, ...]
    max_new_tokens: int
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    seed: int = 0


@dataclass(frozen=True)
class DecodeResult:
    token_ids: list[int]  # generated tokens, the end-of-sequence token left out
    stopped: bool  # True: ended on an end-of-sequence token; False: reached max_new_tokens


def supports(model: Any) -> bool:
    return getattr(model.config, "model_type", None) in SUPPORTED_ARCHITECTURES


def clean_text(tokenizer: Any, token_ids: Sequence[int]) -> str:
    """Decode, leaving out the bytes of a character that the last tokens started but never finished.

    Byte-level tokenizers split one character over several tokens; a response cut between them would end in
    U+FFFD. At most 3 trailing tokens are dropped (a UTF-8 character is at most 4 bytes), and only while the
    text still ends in U+FFFD.
    """
    ids = list(token_ids)
    text = tokenizer.decode(ids, skip_special_tokens=True)
    for _ in range(3):
        if not (ids and text.endswith(REPLACEMENT)):
            break
        ids.pop()
        text = tokenizer.decode(ids, skip_special_tokens=True)
    return text


class SlotCache:
    """Keys and values per layer as [slots, kv_heads, capacity, head_dim]; slot i holds `lengths[i]` positions.

    Attention layers call `update(keys, values, layer_idx)` as they would on a transformers Cache: in a prefill
    pass the new rows' keys are written at positions 0..P-1 of their slots; in a decode pass each row's one new
    key is written at its own length, and the rows' cache up to the longest length comes back.
    """

    def __init__(self, num_layers: int, kv_heads: int, head_dim: int, dtype: Any, device: Any):
        import torch

        self.shape = (kv_heads, head_dim)
        self.dtype, self.device = dtype, device
        self.keys: list[Any] = [None] * num_layers
        self.values: list[Any] = [None] * num_layers
        self.slots = self.capacity = 0
        self.lengths = torch.zeros(0, dtype=torch.long, device=device)
        self._mode: tuple = ("decode", 0, 0, 0)

    def bytes_per_position(self) -> int:
        import torch

        return 2 * len(self.keys) * self.shape[0] * self.shape[1] * torch.empty(0, dtype=self.dtype).element_size()

    def resize(self, slots: int, capacity: int, keep: int) -> None:
        """New storage of `slots` x `capacity`, keeping the first `keep` rows; one layer at a time, so the
        peak is the cache plus one layer."""
        import torch

        for store in (self.keys, self.values):
            for layer, old in enumerate(store):
                new = torch.zeros((slots, *self.shape[:1], capacity, self.shape[1]), dtype=self.dtype, device=self.device)
                if old is not None and keep:
                    width = min(capacity, self.capacity)
                    new[:keep, :, :width] = old[:keep, :, :width]
                store[layer] = new
        lengths = torch.zeros(slots, dtype=torch.long, device=self.device)
        lengths[:keep] = self.lengths[:keep]
        self.lengths, self.slots, self.capacity = lengths, slots, capacity

    def prefill(self, first: int, count: int, offset: int = 0) -> None:
        """The next pass writes rows first..first+count-1 from position `offset` on, after a cached prefix."""
        self._mode = ("prefill", first, count, offset)

    def decode(self, rows: int, width: int) -> None:
        self._mode = ("decode", rows, width, 0)

    def move(self, source: int, target: int) -> None:
        width = int(self.lengths[source])
        for store in (self.keys, self.values):
            for layer in store:
                layer[target, :, :width] = layer[source, :, :width]
        self.lengths[target] = self.lengths[source]

    def update(self, key_states: Any, value_states: Any, layer_idx: int, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        mode, a, b, offset = self._mode
        if mode == "prefill":
            end = offset + key_states.shape[2]
            keys[a : a + b, :, offset:end] = key_states
            values[a : a + b, :, offset:end] = value_states
            if not offset:
                return key_states, value_states
            return keys[a : a + b, :, :end], values[a : a + b, :, :end]
        rows, width = a, b
        where = self.lengths[:rows].view(rows, 1, 1, 1).expand(-1, key_states.shape[1], 1, key_states.shape[3])
        keys[:rows].scatter_(2, where, key_states)
        values[:rows].scatter_(2, where, value_states)
        return keys[:rows, :, :width], values[:rows, :, :width]


@dataclass
class _Row:
    request: DecodeRequest
    future: Future
    tokens: list[int] = field(default_factory=list)
    generator: Any = None  # a torch.Generator when sampling


class DecodeLoop:
    """Runs requests from any number of threads through one batch of at most `max_rows` rows.

    `kv_budget` (bytes) caps the key/value cache: long prompts get fewer rows rather than more memory.
    """

    def __init__(self, model: Any, *, max_rows: int, eos_ids: set[int], pad_id: int, kv_budget: int):
        config = model.config
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self.model, self.max_rows, self.eos_ids, self.pad_id = model, max_rows, eos_ids, pad_id
        self.decoder, self.lm_head = model.get_decoder(), model.get_output_embeddings()
        self.cache = SlotCache(config.num_hidden_layers, config.num_key_value_heads, head_dim, model.dtype, model.device)
        self.kv_budget_positions = max(1, kv_budget // self.cache.bytes_per_position())
        self.rows: list[_Row] = []
        self.waiting: deque[_Row] = deque()
        self.threads = ThreadChooser()
        self.prefixes: dict[tuple[int, ...], tuple[list[Any], list[Any]]] = {}  # shared prompt prefix -> keys, values
        self._queue_lock = threading.Lock()
        self._driver = threading.Lock()
        _return_large_frees_to_the_os()

    # -- the public call ---------------------------------------------------------------------------------------
    def run(self, requests: Sequence[DecodeRequest]) -> list[DecodeResult]:
        """Blocks until every request is done; whichever waiting thread holds the driver lock advances the loop."""
        import torch

        rows = [_Row(r, Future()) for r in requests]
        for row in rows:
            if row.request.max_new_tokens <= 0:
                row.future.set_result(DecodeResult([], False))
            elif row.request.temperature > 0:
                row.generator = torch.Generator(device="cpu").manual_seed(_row_seed(row.request))
        with self._queue_lock:
            self.waiting.extend(row for row in rows if not row.future.done())
        while not all(row.future.done() for row in rows):
            with self._driver:
                if all(row.future.done() for row in rows):
                    break
                try:
                    with torch.inference_mode():
                        self._step()
                except BaseException as err:
                    self._fail_everything(err)
                    raise
        return [row.future.result() for row in rows]

    # -- one step: admit waiting rows, then decode one token for every row ----------------------------------------
    def _step(self) -> None:
        self._admit()
        if self.rows:
            self.threads.before_step()
            start, rows = time.perf_counter(), len(self.rows)
            self._decode()
            self.threads.after_step((time.perf_counter() - start) / rows)

    def _admit(self) -> None:
        with self._queue_lock:
            if not self.waiting:
                return
            head = self.waiting[0].request
            self._reserve(len(head.prompt_ids) + head.max_new_tokens)
            batch: list[_Row] = []
            longest = 0
            while self.waiting and len(self.rows) + len(batch) < self._row_limit():
                request = self.waiting[0].request
                need = len(request.prompt_ids) + request.max_new_tokens
                longest_next = max(longest, len(request.prompt_ids))
                if batch and (need > self.cache.capacity or longest_next * (len(batch) + 1) > PREFILL_TOKENS):
                    break
                longest = longest_next
                batch.append(self.waiting.popleft())
        if batch:
            self._prefill(batch, longest)

    def _row_limit(self) -> int:
        return max(1, min(self.max_rows, self.kv_budget_positions // max(1, self.cache.capacity)))

    def _reserve(self, positions: int) -> None:
        """Make room for a row of `positions`; the cache only grows, and shrinks its slot count to the budget."""
        if positions <= self.cache.capacity and self.cache.slots:
            return
        capacity = -(-max(positions, self.cache.capacity) // 64) * 64
        slots = max(len(self.rows), min(self.max_rows, max(1, self.kv_budget_positions // capacity)))
        self.cache.resize(slots, capacity, keep=len(self.rows))

    def _prefill(self, batch: list[_Row], longest: int) -> None:
        """Right-padded prompts after their shared prefix: each row's tokens keep positions 0..P-1, as unpadded."""
        import torch

        device, first, count = self.cache.device, len(self.rows), len(batch)
        prompts = [row.request.prompt_ids for row in batch]
        shared = self._shared_prefix(prompts, first)
        width = longest - shared
        ids = torch.full((count, width), self.pad_id, dtype=torch.long)
        for i, prompt in enumerate(prompts):
            ids[i, : len(prompt) - shared] = torch.tensor(prompt[shared:])
        lengths = torch.tensor([len(p) for p in prompts], device=device)
        sees = torch.ones((width, shared + width), dtype=torch.bool, device=device).tril(shared)  # prefix + causal
        self.cache.prefill(first, count, offset=shared)
        hidden = self.decoder(input_ids=ids.to(device), attention_mask=sees[None, None].expand(count, 1, -1, -1),
                              position_ids=(shared + torch.arange(width, device=device))[None].expand(count, -1),
                              past_key_values=self.cache, use_cache=True).last_hidden_state
        last = hidden[torch.arange(count, device=device), lengths - shared - 1]
        self.cache.lengths[first : first + count] = lengths
        self.rows.extend(batch)
        self._advance(range(first, first + count), self.lm_head(last))

    def _shared_prefix(self, prompts: list[tuple[int, ...]], first: int) -> int:
        """Write the prefix that all `prompts` share into their slots (from the kept ones, or computed once in
        slot `first`); return its length. Every row keeps at least one token of its own to predict from."""
        import torch

        room = min(len(p) for p in prompts) - 1
        length = min(len(os.path.commonprefix(prompts)), room) if len(prompts) > 1 else 0
        kept = [k for k in self.prefixes if len(k) <= room and all(tuple(p[: len(k)]) == k for p in prompts)]
        key = max(kept, key=len, default=())
        if len(key) < length - SHARED_PREFIX_MIN:  # this group shares clearly more than any kept prefix
            key = tuple(prompts[0][:length])
        if len(key) < SHARED_PREFIX_MIN:
            return 0
        length = len(key)
        if key not in self.prefixes:
            self.cache.prefill(first, 1)
            self.decoder(input_ids=torch.tensor([key], device=self.cache.device), past_key_values=self.cache,
                         attention_mask=torch.ones((length, length), dtype=torch.bool, device=self.cache.device).tril()[None, None],
                         position_ids=torch.arange(length, device=self.cache.device)[None], use_cache=True)
            self.prefixes[key] = ([k[first, :, :length].clone() for k in self.cache.keys],
                                  [v[first, :, :length].clone() for v in self.cache.values])
            while len(self.prefixes) > SHARED_PREFIXES_KEPT:
                self.prefixes.pop(next(iter(self.prefixes)))
        for store, saved in zip((self.cache.keys, self.cache.values), self.prefixes[key]):
            for layer, part in zip(store, saved):
                layer[first : first + len(prompts), :, :length] = part
        return length

    def _decode(self) -> None:
        import torch

        count, device = len(self.rows), self.cache.device
        lengths = self.cache.lengths[:count]
        width = int(lengths.max()) + 1
        mask = torch.arange(width, device=device)[None, :] <= lengths[:, None]
        ids = torch.tensor([[row.tokens[-1]] for row in self.rows], device=device)
        self.cache.decode(count, width)
        hidden = self.decoder(input_ids=ids, attention_mask=mask[:, None, None, :], position_ids=lengths[:, None],
                              past_key_values=self.cache, use_cache=True).last_hidden_state
        self.cache.lengths[:count] += 1
        self._advance(range(count), self.lm_head(hidden[:, -1]))

    # -- choosing tokens, and retiring finished rows ----------------------------------------------------------
    def _advance(self, positions: range, logits: Any) -> None:
        tokens = _choose(logits.float(), [self.rows[i] for i in positions])
        finished = []
        for i, token in zip(positions, tokens):
            row = self.rows[i]
            stopped = token in self.eos_ids
            if not stopped:
                row.tokens.append(token)
            if stopped or len(row.tokens) >= row.request.max_new_tokens:
                row.future.set_result(DecodeResult(row.tokens, stopped))
                finished.append(i)
        for i in sorted(finished, reverse=True):  # swap-remove: the last row takes the freed slot
            last = len(self.rows) - 1
            if i != last:
                self.cache.move(last, i)
                self.rows[i] = self.rows[last]
            self.rows.pop()

    def _fail_everything(self, err: BaseException) -> None:
        with self._queue_lock:
            pending = self.rows + list(self.waiting)
            self.rows, self.waiting = [], deque()
        for row in pending:
            if not row.future.done():
                row.future.set_exception(err)


class ThreadChooser:
    """Chooses torch's thread count by timing decode steps. On an idle machine all cores run a step fastest; on a
    shared one two threads that wait for each other at every op ran 3x slower than one (2 cores, load 4). Every
    `period` steps it times `probe` steps at one thread and at all cores, and keeps the faster. Left alone when
    OMP_NUM_THREADS says how many to use."""

    def __init__(self, period: int = 256, probe: int = 4):
        import torch

        most = torch.get_num_threads()
        self.choices = [most] if "OMP_NUM_THREADS" in os.environ or most == 1 else [1, most]
        self.period, self.probe, self.step = period, probe, 0
        self.best = most
        self.timings: dict[int, list[float]] = {}

    def before_step(self) -> None:
        import torch

        slot = self.step % self.period
        probing = len(self.choices) > 1 and slot < self.probe * len(self.choices)
        wanted = self.choices[slot // self.probe] if probing else self.best
        if torch.get_num_threads() != wanted:
            torch.set_num_threads(wanted)

    def after_step(self, seconds_per_row: float) -> None:
        import torch

        slot = self.step % self.period
        self.step += 1
        if len(self.choices) == 1 or slot >= self.probe * len(self.choices):
            return
        if slot % self.probe:  # the first step after a switch pays for waking the threads: not counted
            self.timings.setdefault(torch.get_num_threads(), []).append(seconds_per_row)
        if slot == self.probe * len(self.choices) - 1:
            self.best = min(self.timings, key=lambda n: sum(self.timings[n]) / len(self.timings[n]))
            self.timings = {}


def _return_large_frees_to_the_os() -> None:
    """glibc raises its mmap threshold after large frees, then serves cache-sized blocks from the heap, where a
    growing cache and varying prefill activations fragment it: 0.5 GB more peak memory in a 64-prompt run.
    A fixed 1 MiB threshold keeps large blocks in mmap, returned to the system when freed."""
    try:
        ctypes.CDLL("libc.so.6").mallopt(-3, 1 << 20)  # -3: M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass  # not glibc: nothing to tune


def _row_seed(request: DecodeRequest) -> int:
    """A row's random stream depends on its seed and prompt only, not on which rows share its batch."""
    digest = hashlib.sha256(repr((request.seed, request.prompt_ids)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _choose(logits: Any, rows: Sequence[_Row]) -> list[int]:
    """Greedy rows take the argmax; sampled rows draw from temperature- and top-p-shaped probabilities."""
    import torch

    tokens = logits.argmax(-1).tolist()
    for i, row in enumerate(rows):
        request = row.request
        if request.temperature <= 0:
            continue
        scores = logits[i] / request.temperature
        if request.top_p < 1.0:  # keep the smallest set of tokens whose probability reaches top_p
            ordered, order = scores.sort(descending=True)
            cumulative = ordered.softmax(-1).cumsum(-1)
            drop = cumulative - ordered.softmax(-1) >= request.top_p
            scores = scores.scatter(0, order[drop], float("-inf"))
        tokens[i] = int(torch.multinomial(scores.softmax(-1), 1, generator=row.generator))
    return tokens
