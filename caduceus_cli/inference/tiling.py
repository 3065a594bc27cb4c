"""Sequences longer or shorter than the window: tiling, and pooled or per-token features of whole sequences.

Sequences are run whole when they fit the window. Longer ones are tiled: windows of
W bp start at 0, W, 2W, ...; the last window ends at the sequence end and contributes
only the positions the earlier ones did not cover, so each position's features come
from exactly one window. ``pool='mean'`` averages every position; ``pool='centre'``
runs one window centred on the sequence and averages +/- flank around its middle;
``pool='none'`` keeps every position.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from caduceus_cli.choices import Pool
from caduceus_cli.errors import InputFileError
from caduceus_cli.inference.engine import WindowEngine
from caduceus_cli.inference.spec import EmbeddingSpec
from caduceus_cli.io.embeddings import EmbeddedRows
from caduceus_cli.tokenizer import encode


def tiles(n: int, W: int) -> list[tuple[int, int, int]]:
    """(window start, keep from, keep to) covering [0, n) with windows of ``W`` (see the module docstring)."""
    if n <= W:
        return [(0, 0, n)]
    out, s = [], 0
    while s + W < n:
        out.append((s, s, s + W))
        s += W
    out.append((n - W, s, n))
    return out


class SequenceFeaturiser:
    """Pooled (or per-token) features of named sequences, for the ``spec`` (window, pool, flank, layer, RC mode)."""

    def __init__(self, engine: WindowEngine, spec: EmbeddingSpec, chunk: int = 256) -> None:
        self.engine = engine
        self.spec = spec
        self.pool = Pool(spec.pool)
        self.chunk = chunk

    def rows(
        self, named: Iterable[tuple[dict, str]], progress: Callable[[int], None] | None = None
    ) -> Iterator[EmbeddedRows]:
        """(key columns, sequence) pairs -> rows, ``chunk`` sequences at a time, in input order."""
        batch: list[tuple[dict, str]] = []
        for item in named:
            batch.append(item)
            if len(batch) >= self.chunk:
                yield self._rows(batch, progress)
                batch = []
        if batch:
            yield self._rows(batch, progress)

    def _rows(self, batch: list[tuple[dict, str]], progress) -> EmbeddedRows:
        W, F = self.spec.window, self.engine.feature_dim(self.spec.rc_mode)
        pool, flank = self.pool, self.spec.flank
        jobs = []  # (row, window start, keep from, keep to) in sequence coordinates
        for row, (_, seq) in enumerate(batch):
            n = len(seq)
            if n == 0:
                raise InputFileError(f"{batch[row][0].get('id')}: empty sequence")
            if pool == Pool.CENTRE:
                start = max(0, min(n - W, n // 2 - W // 2))
                jobs.append((row, start, start, min(n, start + W)))
            else:
                jobs += [(row, *t) for t in tiles(n, W)]
        sums = np.zeros((len(batch), F), np.float64)
        counts = np.zeros(len(batch), np.int64)
        tokens = [np.zeros((len(s), F), np.float32) for _, s in batch] if pool == Pool.NONE else []
        by_len: dict[int, list] = {}
        for job in jobs:
            by_len.setdefault(min(len(batch[job[0]][1]), W), []).append(job)
        for length, group in by_len.items():
            ids = np.stack([encode(batch[r][1][s : s + length]) for r, s, _, _ in group])  # (n, length)
            for offset, feats in self.engine.run_token_features(ids, self.spec.layer, self.spec.rc_mode):
                for k in range(feats.shape[0]):
                    r, s, lo, hi = group[offset + k]
                    f = feats[k].numpy()  # (length, F)
                    if pool == Pool.CENTRE:
                        c = len(batch[r][1]) // 2 - s
                        part = f[max(0, c - flank) : c + flank + 1]
                    else:
                        part = f[lo - s : hi - s]
                    if pool == Pool.NONE:
                        tokens[r][lo:hi] = part
                    sums[r] += part.sum(0)
                    counts[r] += len(part)
        cols: dict[str, list] = {}
        for key, seq in batch:
            for k, v in (key | {"length": len(seq)}).items():
                cols.setdefault(k, []).append(v)
        per_row = Counter(job[0] for job in jobs)
        cols["n_windows"] = [per_row[r] for r in range(len(batch))]
        if progress:
            progress(len(batch))
        return EmbeddedRows(cols, (sums / counts[:, None]).astype(np.float32), tokens)
