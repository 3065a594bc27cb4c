"""Where the record stream is cut: into scoring chunks, and at those cuts into shards and per-rank ranges.

What a site scores depends on what it is scored with: with shared windows every SNV of a tile is
masked in the same forward, and windows are batched with their chunk's. So a chunked run
(``--chunk i/n``), a resumed run and a torchrun rank must cut the stream exactly where a single
uninterrupted run cuts it. The rule is therefore a pure function of each record's *chunk key*
(contig and position, or contig and shared tile), never of the reference or of timing:

- records are buffered until there are ``chunk_sites`` of them; then everything but the trailing
  run of records with the last record's key is one chunk (the trailing run waits for the next);
- a run longer than ``4 x chunk_sites`` records is cut where it stands (memory stays bounded).

For sorted input this keeps every tile's sites (shared windows) and every position's records
(centred windows) in one chunk. Any cut of this rule is a safe place to start or stop: a run that
starts at a cut cuts the rest of the stream exactly as a run from the start does. Shards and ranks
are made of whole chunks (``split_ranges``), balanced by record count. Record ranges are 0-based
half-open over the input's record numbers (``Variant.index``).
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable
from dataclasses import dataclass

from caduceus_cli.errors import OptionError
from caduceus_cli.inference.planner import WindowLayout

RUN_LIMIT = 4  # a run of one key longer than RUN_LIMIT x chunk_sites records is cut


def chunk_key(layout: WindowLayout, chrom: str, pos0: int) -> tuple[str, int]:
    """The key the cut rule compares: (contig, 0-based position) for centred windows, (contig, tile start)
    for shared ones (from the record's POS as written)."""
    if layout.core is None:
        return (chrom, pos0)
    return (chrom, layout.place(pos0)[0])


class Chunker:
    """The cut rule, one record at a time: ``push(key)`` returns how many buffered records form a chunk now
    (0: none yet), ``flush()`` the rest at the end of the stream."""

    def __init__(self, chunk_sites: int) -> None:
        if chunk_sites < 1:
            raise OptionError(f"--chunk-sites {chunk_sites}: must be at least 1")
        self.chunk_sites = chunk_sites
        self.buffered = 0
        self._run = 0  # records at the end of the buffer with the same key as the last one
        self._last: Hashable = object()

    def push(self, key: Hashable) -> int:
        self.buffered += 1
        self._run = self._run + 1 if key == self._last else 1
        self._last = key
        if self.buffered < self.chunk_sites:
            return 0
        cut = self.buffered - self._run
        if cut == 0:
            if self.buffered < RUN_LIMIT * self.chunk_sites:
                return 0
            cut, self._run, self._last = self.buffered, 0, object()
        self.buffered -= cut
        return cut

    def flush(self) -> int:
        cut, self.buffered, self._run, self._last = self.buffered, 0, 0, object()
        return cut


def chunk_ends(keys: Iterable[Hashable], chunk_sites: int) -> list[int]:
    """The end (exclusive record number) of every chunk of the stream, in order; the last is the record count."""
    chunker = Chunker(chunk_sites)
    ends, done = [], 0
    for key in keys:
        cut = chunker.push(key)
        if cut:
            done += cut
            ends.append(done)
    if cut := chunker.flush():
        ends.append(done + cut)
    return ends


def split_ranges(ends: list[int], parts: int) -> list[tuple[int, int]]:
    """``parts`` consecutive record ranges [start, end) made of whole chunks, each boundary the chunk end
    nearest to an even share of the records (the earlier on a tie); some may be empty."""
    total = ends[-1] if ends else 0
    bounds = [0]
    for k in range(1, parts):
        target = total * k / parts
        best = min((e for e in ends if e >= bounds[-1]), key=lambda e: (abs(e - target), e), default=bounds[-1])
        bounds.append(best)
    bounds.append(total)
    return list(zip(bounds[:-1], bounds[1:], strict=True))


@dataclass(frozen=True)
class Shard:
    """Part ``index`` of ``total`` (1-based, as ``--chunk i/n`` writes it)."""

    index: int
    total: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if not m or not 1 <= int(m[1]) <= int(m[2]):
            raise OptionError(f"--chunk {text!r}: expected i/n with 1 <= i <= n, e.g. --chunk 2/8")
        return cls(int(m[1]), int(m[2]))

    def __str__(self) -> str:
        return f"{self.index}/{self.total}"
