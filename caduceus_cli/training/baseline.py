"""The quality bar of the shipped model: a bidirectional k-mer baseline.

Predicts a base from the k bases on each side (4^(2k) contexts, add-one smoothing),
counted on the training sequences; cross-entropy in nats per base on held-out
positions whose base and context are all A/C/G/T.
"""

from __future__ import annotations

import numpy as np

from caduceus_cli.tokenizer import A


def _contexts(arr: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(context index, centre base) of every valid position of one token array."""
    b = arr.astype(np.int64) - A  # A,C,G,T -> 0..3, others outside
    ok = (b >= 0) & (b <= 3)
    n = len(b)
    if n < 2 * k + 1:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    centre = np.arange(k, n - k)
    valid = ok[centre].copy()
    ctx = np.zeros(len(centre), np.int64)
    for j, off in enumerate([o for o in range(-k, k + 1) if o != 0]):
        valid &= ok[centre + off]
        ctx += np.clip(b[centre + off], 0, 3) * (4**j)
    return ctx[valid], b[centre][valid]


def kmer_counts(train: list[np.ndarray], k: int = 3) -> np.ndarray:
    counts = np.zeros((4 ** (2 * k), 4), np.int64)
    for arr in train:
        ctx, c = _contexts(arr, k)
        counts += np.bincount(ctx * 4 + c, minlength=counts.size).reshape(counts.shape)
    return counts


def kmer_cross_entropy(counts: np.ndarray, heldout: list[np.ndarray], k: int = 3) -> float:
    probs = (counts + 1.0) / (counts.sum(1, keepdims=True) + 4.0)
    total, n = 0.0, 0
    for arr in heldout:
        ctx, c = _contexts(arr, k)
        total += float(-np.log(probs[ctx, c]).sum())
        n += len(c)
    return total / max(1, n)
