"""Host buffers for the CPU kernels: reused scratch, and fresh arrays that fault in cheaply.

A fresh ``torch.empty`` of tens of MB costs a page fault per 4 KiB page on first touch: in the CPU
mixer that was ~10 ms per 33 MB buffer, as much as the conv kernel writing it. ``scratch`` keeps one
buffer per name and thread for intermediates that never leave a call (up to ``MAX_CACHED_BYTES``
each; larger ones are allocated per call). ``fresh`` is for results handed back to the caller: a
numpy allocation (numpy asks for transparent huge pages on large arrays) wrapped as a tensor.
"""

from __future__ import annotations

import threading

import numpy as np
import torch

MAX_CACHED_BYTES = 64 << 20

_local = threading.local()


def scratch(name: str, shape: tuple[int, ...]) -> torch.Tensor:
    """A float32 tensor of ``shape`` (uninitialised) in this thread's buffer ``name``, reused across calls.

    The contents are only valid until the next ``scratch(name, ...)`` call in the same thread.
    """
    n = int(np.prod(shape))
    if n * 4 > MAX_CACHED_BYTES:
        return fresh(shape)
    pool: dict[str, np.ndarray] = getattr(_local, "pool", None) or {}
    _local.pool = pool
    buf = pool.get(name)
    if buf is None or buf.size < n:
        buf = pool[name] = np.empty(n, np.float32)
    return torch.from_numpy(buf[:n]).view(shape)


def fresh(shape: tuple[int, ...]) -> torch.Tensor:
    """A new float32 tensor of ``shape`` (uninitialised), allocated by numpy."""
    return torch.from_numpy(np.empty(shape, np.float32))


def as_numpy(t: torch.Tensor) -> np.ndarray:
    """A float32 parameter or tensor as a C-contiguous numpy view (a copy only if it is not one already)."""
    return t.detach().float().contiguous().numpy()
