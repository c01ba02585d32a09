"""Helpers of the hostile-input tests: a memory cap and the number of fuzz cases."""

from __future__ import annotations

import contextlib
import os
import resource

#: Memory a test may add to the process while capped.
CAP_BYTES = 1 << 30


def fuzz_examples(default: int) -> int:
    """Cases of one property-based test: ``default`` times ``SAEMI_FUZZ_SCALE`` (default 1)."""
    return max(1, int(default * float(os.environ.get("SAEMI_FUZZ_SCALE", "1"))))


def _address_space_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[0]) * resource.getpagesize()


@contextlib.contextmanager
def memory_cap(extra_bytes: int = CAP_BYTES):
    """Limit the process's address space to its current size plus ``extra_bytes`` (1 GiB) while inside.

    An allocation beyond it raises MemoryError, which fails a test expecting a sentence.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = _address_space_bytes() + extra_bytes
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield cap
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
