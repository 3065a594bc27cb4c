"""Scoring into durable parts: one pass over the input handed out as record ranges, and the loop that
scores a range into ``io.checkpoint`` parts (closed every ``checkpoint_every`` records or
``checkpoint_s`` seconds, and at a stop request), with the progress hooks the CLI offers."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

from caduceus_cli.errors import StoppedError
from caduceus_cli.inference.distributed import Ranks
from caduceus_cli.io.checkpoint import Checkpoint, PartStats
from caduceus_cli.io.variant import Variant
from caduceus_cli.io.vcf import VariantReader
from caduceus_cli.pipelines.scatter import RecordRange

log = logging.getLogger(__name__)


class Progress:
    """What the CLI's progress display offers: ``advance(n)``; ``set_total(n)`` when the range is known."""

    def __init__(self, advance: Callable[[int], None] | None = None) -> None:
        self._advance = advance

    def __call__(self, n: int) -> None:
        if self._advance is not None:
            self._advance(n)

    def skip(self, n: int) -> None:
        """Count ``n`` records an earlier run scored (shown as done, not in the rate)."""
        skip = getattr(self._advance, "skip", None)
        if skip is not None:
            skip(n)
        else:
            self(n)

    def set_total(self, n: int) -> None:
        set_total = getattr(self._advance, "set_total", None)
        if set_total is not None:
            set_total(n)


def score_parts(
    job, ck: Checkpoint, cursor: Cursor, mine: RecordRange, text, progress: Progress, stop, ranks: Ranks
) -> tuple[PartStats, int]:
    """Score the records of ``mine`` that no part covers yet into durable parts.

    Returns what this call scored and how many records of ``mine`` earlier runs had scored."""
    todo = ck.todo(mine.start, mine.end)
    hi = mine.end if mine.end is not None else float("inf")
    done_before = sum(max(0, min(e, hi) - max(f, mine.start)) for f, e, _ in ck.parts())
    if done_before:
        log.warning("%sresuming: %d records are already scored in %s", ranks.label(), done_before, ck.dir)
        progress.skip(done_before)
    opts = job.opts
    scored = PartStats()
    for a, b in todo:
        writer, at, since = ck.writer(a), a, time.monotonic()
        try:
            for pairs, stats in job.annotated(cursor.take(RecordRange(a, b))):
                writer.write("".join(text.record(rec, ann) for rec, ann in pairs))
                writer.stats = writer.stats + stats
                scored = scored + stats
                at += stats.records
                progress(stats.records)
                stopping = stop is not None and stop()
                full = writer.stats.records >= opts.checkpoint_every or time.monotonic() - since >= opts.checkpoint_s
                if full or stopping:
                    writer.close(at)
                    writer, since = ck.writer(at), time.monotonic()
                if stopping:
                    raise StoppedError(
                        f"{ranks.label()}stopped after record {at}: what is scored is kept in {ck.dir}; "
                        "run the same command with --resume to continue"
                    )
            if writer.stats.records:
                writer.close(at)
            else:
                writer.abort()
        except BaseException:
            writer.abort()
            raise
    return scored, int(done_before)


class Cursor:
    """One pass over the reader, handed out as consecutive record ranges (records before a range are skipped)."""

    def __init__(self, reader: VariantReader) -> None:
        self._it = iter(reader)
        self._next: tuple[Variant, object] | None = None
        self.seen = 0  # records read so far (the input's record count once drained)

    def _pull(self) -> tuple[Variant, object] | None:
        if self._next is None:
            self._next = next(self._it, None)
            if self._next is not None:
                self.seen = self._next[0].index + 1
        return self._next

    def take(self, rng: RecordRange) -> Iterator[tuple[Variant, object]]:
        while (item := self._pull()) is not None:
            i = item[0].index
            if rng.end is not None and i >= rng.end:
                return
            self._next = None
            if i >= rng.start:
                yield item
