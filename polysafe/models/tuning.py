"""Process-wide settings for local decoding, applied only when a program opts in (the CLI and the benches do;
a library call never retunes the process that imported it).

- the allocator: glibc raises its mmap threshold after large frees, then serves cache-sized blocks from the heap,
  where a growing key/value cache and varying prefill activations fragment it (0.5 GB more peak memory in a
  64-prompt run). A fixed 1 MiB threshold keeps large blocks in mmap, returned to the system when freed.
- torch's thread count: the decode loop's ThreadChooser times steps at one thread and at all cores and keeps the
  faster (one thread ran 3x faster on a busy 2-core machine). It sets the count on the loop's own thread only.
"""

from __future__ import annotations

_opted_in = False


def tune_this_process() -> None:
    """Opt in: local models loaded from now on tune the allocator and choose their decode thread count."""
    global _opted_in
    _opted_in = True


def opted_in() -> bool:
    return _opted_in


def return_large_frees_to_the_os() -> None:
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").mallopt(-3, 1 << 20)  # -3: M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass  # not glibc: nothing to tune
