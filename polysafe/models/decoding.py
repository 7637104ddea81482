"""A continuous-batching decode loop for local causal LMs, and clean decoding of the tokens it returns.

transformers' `generate` keeps a finished row in the batch until the longest row ends, and grows its key/value
cache by concatenation at every step. This loop instead:

- removes a row as soon as it ends and gives its slot to a waiting prompt, so the batch stays full;
- admits waiting prompts shortest first (the cache only grows, so short rows fit many to a batch);
- keeps each row's own keys and values in a preallocated cache, one slot per row, each row at its own length
  (no padding between prompt and answer, no copy per step);
- keeps a prompt prefix that rows share (the chat template's system prompt, a jailbreak template) once, and
  attends to it for all its rows in one matrix product per layer: rows take less memory, so more of them fit,
  and the prefix is read once per step instead of once per row;
- computes logits for each row's last position only.

Prompts can come from several threads at once (the engine runs a few `generate` calls concurrently): they all
join one queue, so rows from the next call fill the slots that the current call leaves free. One thread of the
loop's own runs the model.

The loop runs the model's own modules (norms, projections, rotary embedding, MLP) in transformers' order and
does attention itself, for the architectures listed in SUPPORTED_ARCHITECTURES. In float32, greedy decoding
picks the same tokens as `generate` (tests/test_decode_loop.py, tests/test_smollm2.py).
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Sequence

from . import attention_fast, layers_fast

SUPPORTED_ARCHITECTURES = frozenset({"llama"})
# Prompt tokens per prefill pass. Small passes keep each activation (at most [256 x 1536] floats) in the heap and
# in cache; at 2048 every one is a fresh mmap whose pages fault in: 128 MultiJail prompts prefilled in 16-28 s
# at 2048 tokens a pass, 10.5 s at 256 (2 cores; 128 and 512 were slower).
PREFILL_TOKENS = 256
SHARED_PREFIX_MIN = 16  # tokens a new prefix must add to what its rows already share
SHARED_PREFIX_ROWS = 4  # rows that must share a new prefix (all candidates, when fewer wait)
SHARED_PREFIX_MAX = 1024  # its one pass holds [length x length] scores per head
SHARED_PREFIXES_KEPT = 4
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
    decoder = model.get_decoder()
    return getattr(model.config, "model_type", None) in SUPPORTED_ARCHITECTURES and hasattr(decoder, "rotary_emb")


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


@dataclass(frozen=True)
class Prefix:
    """Keys and values of a prompt prefix that several rows share, per layer as [kv_heads, length, head_dim]:
    kept once, and attended by all its rows in one matrix product per layer."""

    tokens: tuple[int, ...]
    keys: list[Any]
    values: list[Any]

    @property
    def length(self) -> int:
        return len(self.tokens)


class SlotCache:
    """Each row's own keys and values (after its shared prefix), per layer as [slots, kv_heads, capacity,
    head_dim]; slot i holds `lengths[i]` positions."""

    def __init__(self, num_layers: int, kv_heads: int, head_dim: int, dtype: Any, device: Any):
        import torch

        self.shape = (kv_heads, head_dim)
        self.dtype, self.device = dtype, device
        self.keys: list[Any] = [None] * num_layers
        self.values: list[Any] = [None] * num_layers
        self.slots = self.capacity = 0
        self.lengths = torch.zeros(0, dtype=torch.long, device=device)

    def bytes_per_position(self) -> int:
        import torch

        return 2 * len(self.keys) * self.shape[0] * self.shape[1] * torch.empty(0, dtype=self.dtype).element_size()

    def resize(self, slots: int, capacity: int, keep: int) -> None:
        """New storage of `slots` x `capacity`, keeping the first `keep` rows; one layer at a time, so the
        peak is the cache plus one layer."""
        import torch

        for store in (self.keys, self.values):
            for layer, old in enumerate(store):
                new = torch.zeros((slots, self.shape[0], capacity, self.shape[1]), dtype=self.dtype, device=self.device)
                if old is not None and keep:
                    width = min(capacity, self.capacity)
                    new[:keep, :, :width] = old[:keep, :, :width]
                store[layer] = new
        lengths = torch.zeros(slots, dtype=torch.long, device=self.device)
        lengths[:keep] = self.lengths[:keep]
        self.lengths, self.slots, self.capacity = lengths, slots, capacity

    def move(self, source: int, target: int) -> None:
        width = int(self.lengths[source])
        for store in (self.keys, self.values):
            for layer in store:
                layer[target, :, :width] = layer[source, :, :width]
        self.lengths[target] = self.lengths[source]


@dataclass
class _Row:
    request: DecodeRequest
    future: Future
    tokens: list[int] = field(default_factory=list)
    generator: Any = None  # a torch.Generator when sampling
    prefix: Prefix | None = None

    @property
    def offset(self) -> int:
        return self.prefix.length if self.prefix else 0

    def need(self) -> int:
        """Cache positions this row takes: its own prompt tokens and its answer."""
        return len(self.request.prompt_ids) - self.offset + self.request.max_new_tokens


# (a mask of the pass's rows that do not share the prefix, or None when all do; the prefix)
Groups = list[tuple[Any, Prefix]]


class DecodeLoop:
    """Runs requests from any number of threads through one batch of at most `max_rows` rows.

    `kv_budget` (bytes) caps the key/value cache: long prompts get fewer rows rather than more memory.
    `kv_dtype` (default: the model's) is the precision keys and values are kept and attended in.
    `adapt_threads` opts in to the ThreadChooser, which sets torch's thread count on the loop's own thread; off,
    the loop never changes it (a library call must not retune the process: the CLI opts in).
    `fast_attention` (lowered numerics only) attends with torch's fused CPU kernel over rows grouped by length
    (attention_fast.py) and runs the layers as layers_fast.py does, instead of the float32 path that reproduces
    `generate` token for token.
    """

    def __init__(self, model: Any, *, max_rows: int, eos_ids: set[int], pad_id: int, kv_budget: int,
                 kv_dtype: Any = None, adapt_threads: bool = False, fast_attention: bool = False):
        config = model.config
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self.heads = config.num_attention_heads
        self.model, self.max_rows, self.eos_ids, self.pad_id = model, max_rows, eos_ids, pad_id
        self.decoder, self.lm_head = model.get_decoder(), model.get_output_embeddings()
        self.scale = self.head_dim**-0.5
        self.kv_dtype = kv_dtype or model.dtype
        self.fast_attention = fast_attention
        self.prefix_min = attention_fast.SHARED_PREFIX_MIN if fast_attention else SHARED_PREFIX_MIN
        self.cache = SlotCache(config.num_hidden_layers, config.num_key_value_heads, self.head_dim, self.kv_dtype, model.device)
        self.kv_budget_positions = max(1, kv_budget // self.cache.bytes_per_position())
        self.rows: list[_Row] = []
        self.waiting: list[_Row] = []  # by need, shortest first: the cache only grows, so small rows go first
        self._admitting: list[_Row] = []
        self.threads = ThreadChooser() if adapt_threads else ThreadChooser.fixed()
        self.prefixes: dict[tuple[int, ...], Prefix] = {}
        self._queue_lock = threading.Lock()
        self._work = threading.Condition(self._queue_lock)
        self._driver: threading.Thread | None = None

    # -- the public call ---------------------------------------------------------------------------------------
    def run(self, requests: Sequence[DecodeRequest]) -> list[DecodeResult]:
        """Blocks until every request is done. One thread of the loop's own drives the model: OpenMP keeps a team
        of worker threads per calling thread, and two teams taking turns on the same cores spin against each
        other (a third slower on 2 cores)."""
        import torch

        rows = [_Row(r, Future()) for r in requests]
        for row in rows:
            if row.request.max_new_tokens <= 0:
                row.future.set_result(DecodeResult([], False))
            elif row.request.temperature > 0:
                row.generator = torch.Generator(device="cpu").manual_seed(_row_seed(row.request))
        with self._queue_lock:
            self.waiting.extend(row for row in rows if not row.future.done())
            self.waiting.sort(key=_Row.need)  # stable: equal needs keep their order
            if self._driver is None:
                self._driver = threading.Thread(target=self._drive, name="polysafe-decode", daemon=True)
                self._driver.start()
            self._work.notify()
        return [row.future.result() for row in rows]

    def _drive(self) -> None:
        import torch

        while True:
            with self._queue_lock:
                while not self.waiting and not self.rows:
                    self._work.wait()
            try:
                with torch.inference_mode():
                    self._step()
            except BaseException as err:  # every caller waiting on a row gets the error; the loop goes on
                self._fail_everything(err)

    # -- one step: admit waiting rows, then decode one token for every row ----------------------------------------
    def _step(self) -> None:
        self.threads.for_prefill()
        while self._admit():
            pass
        if self.rows:
            self.threads.before_step()
            start, rows = time.perf_counter(), len(self.rows)
            self._decode()
            self.threads.after_step((time.perf_counter() - start) / rows)

    def _admit(self) -> bool:
        """Prefill one batch of waiting rows; False when none could be admitted."""
        with self._queue_lock:
            candidates = self.waiting[: max(0, self._row_limit() - len(self.rows))]
        if not candidates:
            return False
        self._share_prefixes(candidates)
        for row in candidates:
            row.prefix = self._longest_prefix(row.request.prompt_ids)
        head = candidates[0]
        self._reserve(head.need())
        batch: list[_Row] = []
        longest = 0
        for row in candidates:  # one prefill pass: rows of the head's prefix
            own = len(row.request.prompt_ids) - row.offset
            if len(self.rows) + len(batch) >= self._row_limit():
                break
            if batch and (row.need() > self.cache.capacity or max(longest, own) * (len(batch) + 1) > PREFILL_TOKENS):
                break
            if row.prefix is head.prefix:
                longest = max(longest, own)
                batch.append(row)
        if batch:  # none when the cache just grew and the rows already running fill its new slot count
            chosen = {id(row) for row in batch}
            with self._queue_lock:
                self.waiting = [row for row in self.waiting if id(row) not in chosen]
                self._admitting = batch  # out of the queue, not yet rows: failed too if the pass fails
            self._prefill(batch)
            self._admitting = []
        return bool(batch)

    def _row_limit(self) -> int:
        return max(1, min(self.max_rows, self.kv_budget_positions // max(1, self.cache.capacity)))

    def _reserve(self, positions: int) -> None:
        """Make room for a row of `positions`; the cache only grows, and shrinks its slot count to the budget."""
        if positions <= self.cache.capacity and self.cache.slots:
            return
        capacity = -(-max(positions, self.cache.capacity) // 64) * 64
        slots = max(len(self.rows), min(self.max_rows, max(1, self.kv_budget_positions // capacity)))
        self.cache.resize(slots, capacity, keep=len(self.rows))

    # -- shared prompt prefixes ------------------------------------------------------------------------------------
    def _share_prefixes(self, candidates: list[_Row]) -> None:
        """Compute and keep the longest prefix that SHARED_PREFIX_ROWS candidates share beyond what they already
        share with a kept prefix (a chat template's system prompt, a jailbreak template). Every row keeps one token
        of its own. With fast_attention, the prefix that saves the most positions instead (_most_saving_prefix)."""
        prompts = sorted(row.request.prompt_ids for row in candidates)
        together = min(SHARED_PREFIX_ROWS, len(prompts))
        if self.fast_attention:
            best = self._most_saving_prefix(prompts, together)
        else:
            best = ()
            for a, b in zip(prompts, prompts[together - 1 :] if together > 1 else ()):  # sorted: a window's prefix is its ends'
                length = min(len(os.path.commonprefix([a, b])), len(a) - 1, len(b) - 1, SHARED_PREFIX_MAX)
                kept = self._longest_prefix(a)
                if length > len(best) and length - (kept.length if kept else 0) > self.prefix_min:
                    best = a[:length]
        if len(best) >= self.prefix_min and best not in self.prefixes:
            self.prefixes[best] = self._compute_prefix(best)
            while len(self.prefixes) > SHARED_PREFIXES_KEPT:
                self.prefixes.pop(next(iter(self.prefixes)))

    def _most_saving_prefix(self, prompts: list[tuple[int, ...]], together: int) -> tuple[int, ...]:
        """Of the prefixes that at least `together` of the sorted `prompts` share, the one that saves the most
        positions (rows x tokens beyond the kept prefix they share). Each prefix costs the fast path a kernel call
        a layer: the longest prefix that any 4 rows share is a jailbreak template plus its next words, a different
        one for each few rows, where the template alone serves them all."""
        adjacent = [len(os.path.commonprefix([a, b])) for a, b in zip(prompts, prompts[1:])]
        best: tuple[int, ...] = ()
        saving = 0
        for first, prompt in enumerate(prompts):
            kept = self._longest_prefix(prompt)
            kept_length = kept.length if kept else 0
            length = min(len(prompt) - 1, SHARED_PREFIX_MAX)
            for last in range(first + 1, len(prompts)):  # sorted: a range's shared prefix is its least neighbour's
                length = min(length, adjacent[last - 1], len(prompts[last]) - 1)
                if length - kept_length <= self.prefix_min:
                    break
                rows = last - first + 1
                if rows >= together and rows * (length - kept_length) > saving:
                    best, saving = prompt[:length], rows * (length - kept_length)
        return best

    def _longest_prefix(self, prompt: tuple[int, ...]) -> Prefix | None:
        fits = [p for key, p in self.prefixes.items() if len(key) < len(prompt) and prompt[: len(key)] == key]
        return max(fits, key=lambda p: p.length, default=None)

    def _compute_prefix(self, tokens: tuple[int, ...]) -> Prefix:
        import torch

        device, length = self.cache.device, len(tokens)
        keys: list[Any] = [None] * len(self.decoder.layers)
        values: list[Any] = [None] * len(self.decoder.layers)
        causal = torch.ones((length, length), dtype=torch.bool, device=device).tril()[None, None]

        def attend(layer: int, q: Any, k: Any, v: Any) -> Any:  # by index: a pass may run again (layers_fast)
            keys[layer] = k[0].contiguous()
            values[layer] = v[0].contiguous()
            return self._prompt_attention(layer, q, k, v, causal, None)

        self._forward(torch.tensor([tokens], device=device), torch.arange(length, device=device)[None], attend)
        return Prefix(tokens, keys, values)

    # -- the model pass ----------------------------------------------------------------------------------------------
    def _prefill(self, batch: list[_Row]) -> None:
        """Each row's own prompt tokens (after its prefix), right-padded, in slots first..first+count-1; long
        prompts in chunks, each attending to the chunks before it through the cache."""
        import torch

        device, first, count = self.cache.device, len(self.rows), len(batch)
        own = [row.request.prompt_ids[row.offset :] for row in batch]
        width = max(len(o) for o in own)
        ids = torch.full((count, width), self.pad_id, dtype=torch.long)
        for i, tokens in enumerate(own):
            ids[i, : len(tokens)] = torch.tensor(tokens)
        ids = ids.to(device)
        last = torch.tensor([len(o) - 1 for o in own], device=device)
        prefix = batch[0].prefix  # one for the whole batch (see _admit)
        offset = batch[0].offset
        chunk = max(1, min(width, PREFILL_TOKENS // count))  # below width only for one prompt longer than that
        picked = None
        for start in range(0, width, chunk):
            end = min(width, start + chunk)
            sees = torch.arange(end, device=device)[None, :] <= torch.arange(start, end, device=device)[:, None]

            def attend(layer: int, q: Any, k: Any, v: Any) -> Any:
                keys, values = self.cache.keys[layer], self.cache.values[layer]
                keys[first : first + count, :, start:end] = k
                values[first : first + count, :, start:end] = v
                return self._prompt_attention(layer, q, keys[first : first + count, :, :end],
                                              values[first : first + count, :, :end], sees[None, None], prefix)

            positions = (offset + torch.arange(start, end, device=device))[None, :].expand(count, -1)
            hidden = self._forward(ids[:, start:end], positions, attend)
            here = ((last >= start) & (last < end)).nonzero().flatten()
            if picked is None:
                picked = hidden.new_empty((count, hidden.shape[-1]))
            picked[here] = hidden[here, last[here] - start]
        self.cache.lengths[first : first + count] = last + 1
        self.rows.extend(batch)
        self._advance(range(first, first + count), self.lm_head(self.decoder.norm(picked)))

    def _decode(self) -> None:
        import torch

        count, device = len(self.rows), self.cache.device
        lengths = self.cache.lengths[:count]
        slots = torch.arange(count, device=device)
        if self.fast_attention:
            plan = attention_fast.plan(self.rows, lengths, self.kv_dtype)
        else:
            width = int(lengths.max()) + 1
            hides = (torch.arange(width, device=device)[None, :] > lengths[:, None])[:, None, None, :]
            groups = _groups(self.rows, device)

        def attend(layer: int, q: Any, k: Any, v: Any) -> Any:
            keys, values = self.cache.keys[layer][:count], self.cache.values[layer][:count]
            keys[slots, :, lengths] = k[:, :, 0]  # scatter_ copies the whole bf16 cache: 4.5 ms a call, not 10 us
            values[slots, :, lengths] = v[:, :, 0]
            if self.fast_attention:
                return attention_fast.attend(plan, layer, q, keys, values, self.scale)
            return self._attention(layer, q, keys[:, :, :width], values[:, :, :width], hides, groups)

        ids = torch.tensor([[row.tokens[-1]] for row in self.rows], device=device)
        offsets = torch.tensor([row.offset for row in self.rows], device=device)
        hidden = self._forward(ids, (offsets + lengths)[:, None], attend)
        self.cache.lengths[:count] += 1
        self._advance(range(count), self.lm_head(self.decoder.norm(hidden[:, -1])))

    def _forward(self, ids: Any, positions: Any, attend: Any) -> Any:
        """The decoder's layers, their own modules called in transformers' order, with `attend` for attention
        (with fast_attention: layers_fast.py's fewer, larger operations). Returns the last layer's hidden states,
        before the final norm."""
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

        if self.fast_attention:
            return layers_fast.forward(self.decoder, ids, positions, attend, self.kv_dtype, self.head_dim)

        rows, width = ids.shape
        hidden = self.decoder.embed_tokens(ids)
        cos, sin = self.decoder.rotary_emb(hidden, positions)
        for index, layer in enumerate(self.decoder.layers):
            attention = layer.self_attn
            normed = layer.input_layernorm(hidden)
            q = attention.q_proj(normed).view(rows, width, -1, self.head_dim).transpose(1, 2)
            k = attention.k_proj(normed).view(rows, width, -1, self.head_dim).transpose(1, 2)
            v = attention.v_proj(normed).view(rows, width, -1, self.head_dim).transpose(1, 2)
            q, k = apply_rotary_pos_emb(q, k, cos, sin)
            q, k, v = q.to(self.kv_dtype), k.to(self.kv_dtype), v.to(self.kv_dtype)  # no-ops in float32
            hidden = hidden + attention.o_proj(attend(index, q, k, v))
            hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden))
        return hidden

    def _prompt_attention(self, layer: int, q: Any, keys: Any, values: Any, sees: Any, prefix: Prefix | None) -> Any:
        """Prompt tokens q [rows, heads, T, d] over their shared prefix and their own `keys` [rows, kv_heads, W, d],
        where `sees` [1, 1, T, W] is true: transformers' own SDPA path, with the prefix's keys put in front."""
        import torch

        rows, heads, width, dim = q.shape
        if prefix is not None:
            keys = torch.cat([prefix.keys[layer].expand(rows, -1, -1, -1), keys], dim=2)
            values = torch.cat([prefix.values[layer].expand(rows, -1, -1, -1), values], dim=2)
            sees = torch.cat([sees.new_ones((*sees.shape[:-1], prefix.length)), sees], dim=-1)
        group = heads // keys.shape[1]
        out = torch.nn.functional.scaled_dot_product_attention(
            q, keys.repeat_interleave(group, dim=1), values.repeat_interleave(group, dim=1), attn_mask=sees, scale=self.scale)
        return out.transpose(1, 2).reshape(rows, width, heads * dim)

    def _attention(self, layer: int, q: Any, keys: Any, values: Any, hides: Any, groups: Groups) -> Any:
        """One new token per row, q [rows, heads, 1, d], over each row's prefix and its own `keys` [rows, kv_heads,
        W, d] (except where `hides` [rows, 1, 1, W] is true). Query heads are grouped by their key/value head, so keys are
        never repeated, and a prefix is one product for all its rows. Returns [rows, 1, heads x d]."""
        import torch

        rows, heads, _, dim = q.shape
        kv_heads, width = keys.shape[1], keys.shape[2]
        group = heads // kv_heads
        q = q.reshape(rows, kv_heads, group, dim)
        segments = []
        for outsiders, prefix in groups:  # every row scores every prefix (cheap); outsiders get no weight on it
            part = _prefix_scores(q, prefix, layer)
            segments.append(part if outsiders is None else part.masked_fill_(outsiders, float("-inf")))
        segments.append(_scores(q, keys).masked_fill_(hides, float("-inf")))
        scores = torch.cat(segments, dim=-1) if groups else segments[0]
        probs = scores.mul_(self.scale).softmax(-1, dtype=torch.float32).to(q.dtype)
        reach = scores.shape[-1] - width
        out = torch.matmul(probs[..., reach:], values)
        start = 0
        for _, prefix in groups:
            out += _prefix_output(probs[..., start : start + prefix.length], prefix, layer)
            start += prefix.length
        return out.reshape(rows, 1, heads * dim)

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
            pending = self.rows + self.waiting + self._admitting
            self.rows, self.waiting, self._admitting = [], [], []
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

    @classmethod
    def fixed(cls) -> "ThreadChooser":
        """Leaves torch's thread count as the loop's thread finds it: never calls torch.set_num_threads."""
        chooser = cls()
        chooser.choices = []
        return chooser

    def for_prefill(self) -> None:
        """Prefill runs at the count that decodes fastest, never at a probe's."""
        import torch

        if self.choices and torch.get_num_threads() != self.best:
            torch.set_num_threads(self.best)

    def before_step(self) -> None:
        import torch

        if not self.choices:
            return
        slot = self.step % self.period
        probing = len(self.choices) > 1 and slot < self.probe * len(self.choices)
        wanted = self.choices[slot // self.probe] if probing else self.best
        if torch.get_num_threads() != wanted:
            torch.set_num_threads(wanted)

    def after_step(self, seconds_per_row: float) -> None:
        import torch

        slot = self.step % self.period
        self.step += 1
        if len(self.choices) <= 1 or slot >= self.probe * len(self.choices):
            return
        if slot % self.probe:  # the first step after a switch pays for waking the threads: not counted
            self.timings.setdefault(torch.get_num_threads(), []).append(seconds_per_row)
        if slot == self.probe * len(self.choices) - 1:
            self.best = min(self.timings, key=lambda n: sum(self.timings[n]) / len(self.timings[n]))
            self.timings = {}


def _row_seed(request: DecodeRequest) -> int:
    """A row's random stream depends on its seed and prompt only, not on which rows share its batch."""
    digest = hashlib.sha256(repr((request.seed, request.prompt_ids)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _choose(logits: Any, rows: Sequence[_Row]) -> list[int]:
    """Greedy rows take the argmax; sampled rows draw from temperature- and top-p-shaped probabilities."""
    import torch

    tokens = logits.max(-1).indices.tolist()  # argmax's first maximum too, at 2.5x its speed on CPU
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


def _groups(rows: Sequence[_Row], device: Any) -> Groups:
    """The prefixes of a pass's rows, each with a [rows, 1, 1, 1] mask of the rows that do not share it (None when
    all do)."""
    import torch

    prefixes = {id(row.prefix): row.prefix for row in rows if row.prefix is not None}
    groups: Groups = []
    for key, prefix in prefixes.items():
        outsiders = [id(row.prefix) != key for row in rows]
        groups.append((torch.tensor(outsiders, device=device).view(-1, 1, 1, 1) if any(outsiders) else None, prefix))
    return groups


def _prefix_scores(q: Any, prefix: Prefix, layer: int) -> Any:
    """q [n, kv_heads, G, d] against the prefix's keys: one product per key/value head for all n rows."""
    import torch

    n, kv_heads, group, dim = q.shape
    scores = _scores(q.transpose(0, 1).reshape(kv_heads, n * group, dim), prefix.keys[layer])
    return scores.view(kv_heads, n, group, -1).transpose(0, 1)


def _scores(q: Any, keys: Any) -> Any:
    """q @ keys^T. In bfloat16 as (keys @ q^T)^T: oneDNN copies a transposed bf16 operand first, the whole used
    cache at every step (1.25 ms against 0.52 ms for 32 rows of 300 positions, 1 thread)."""
    import torch

    if keys.dtype == torch.float32:
        return torch.matmul(q, keys.transpose(-1, -2))
    return torch.matmul(keys, q.transpose(-1, -2)).transpose(-1, -2)


def _prefix_output(probs: Any, prefix: Prefix, layer: int) -> Any:
    import torch

    n, kv_heads, group, length = probs.shape
    out = torch.matmul(probs.transpose(0, 1).reshape(kv_heads, n * group, length), prefix.values[layer])
    return out.view(kv_heads, n, group, -1).transpose(0, 1)
