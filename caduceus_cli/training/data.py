"""Training data: FASTA -> token arrays, deterministic chunk sampling, validation chunks.

Intervals (``Interval0``) are 0-based half-open. Sampling is a pure function of
(seed, step, micro-batch, rank), so ``--resume`` needs only the step to continue
the exact data stream, and each DDP rank draws its own shard.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from caduceus_cli.errors import InputFileError
from caduceus_cli.io.coords import Interval0
from caduceus_cli.io.reference import iter_fasta
from caduceus_cli.tokenizer import N, encode_u8

log = logging.getLogger(__name__)


def read_fasta_tokens(paths: list[str], contigs: set[str] | None = None) -> dict[str, np.ndarray]:
    """Every record of the FASTA files (plain, gzip or bgzip) as uint8 token ids."""
    out: dict[str, np.ndarray] = {}
    for path in paths:
        if not Path(path).exists():
            raise InputFileError(f"{path}: FASTA not found")
        for name, seq in iter_fasta(path):
            if contigs is not None and name not in contigs:
                continue
            out[name] = encode_u8(seq)
            log.info("read %s from %s: %s bp", name, Path(path).name, f"{len(seq):,}")
    if not out:
        raise InputFileError(
            f"{', '.join(paths)}: no sequences read" + (f" for contigs {sorted(contigs)}" if contigs else "")
        )
    return out


@dataclass(frozen=True)
class ChunkSampler:
    """Random fixed-length chunks from intervals of token arrays; N-heavy chunks are redrawn."""

    tokens: dict[str, np.ndarray]
    intervals: tuple[Interval0, ...]
    seq_len: int
    max_n_frac: float = 0.5
    seed: int = 0

    @classmethod
    def build(
        cls,
        tokens: dict[str, np.ndarray],
        seq_len: int,
        bed: list[Interval0] | None = None,
        max_n_frac: float = 0.5,
        seed: int = 0,
    ) -> "ChunkSampler":
        ivs = bed or [Interval0(k, 0, len(v)) for k, v in tokens.items()]
        ivs = tuple(iv for iv in ivs if iv.chrom in tokens and iv.end - iv.start >= seq_len)
        if not ivs:
            raise InputFileError(f"no training interval is at least --seq-len {seq_len} bp long")
        return cls(tokens, ivs, seq_len, max_n_frac, seed)

    def batch(self, batch_size: int, step: int, micro: int, rank: int) -> np.ndarray:
        """(batch_size, seq_len) int64 ids for this (step, micro-batch, rank)."""
        rng = np.random.default_rng([self.seed, step, micro, rank])
        lengths = np.array([iv.end - iv.start - self.seq_len + 1 for iv in self.intervals], dtype=np.float64)
        p = lengths / lengths.sum()
        out = np.empty((batch_size, self.seq_len), dtype=np.int64)
        for b in range(batch_size):
            for _ in range(20):
                iv = self.intervals[rng.choice(len(self.intervals), p=p)]
                s = iv.start + int(rng.integers(0, iv.end - iv.start - self.seq_len + 1))
                chunk = self.tokens[iv.chrom][s : s + self.seq_len]
                if np.count_nonzero(chunk == N) <= self.max_n_frac * self.seq_len:
                    break
            out[b] = chunk
        return out


def tile_chunks(
    tokens: dict[str, np.ndarray], seq_len: int, max_n_frac: float = 0.5, limit: int | None = None
) -> np.ndarray:
    """Non-overlapping chunks of every sequence, N-heavy ones skipped: (n, seq_len) int64."""
    chunks = []
    for arr in tokens.values():
        for s in range(0, len(arr) - seq_len + 1, seq_len):
            c = arr[s : s + seq_len]
            if np.count_nonzero(c == N) <= max_n_frac * seq_len:
                chunks.append(c.astype(np.int64))
            if limit and len(chunks) >= limit:
                return np.stack(chunks)
    return np.stack(chunks) if chunks else np.zeros((0, seq_len), np.int64)
