"""What part of the input a score-vcf process scores, and which run it belongs to.

A run is identified by its input's checksum, the model's sha256, the version and every option that
changes what is written; shards of one run (``--chunk i/n``) share that identity except for ``i``,
so ``caduceus merge`` can refuse a mix. A process's record range (0-based, half-open over the input's
record numbers after ``--regions``) is made of whole chunks (``inference.chunking``): a chunk's range
is its share of the input, a torchrun rank's range its share of that.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum

from caduceus_cli import __version__
from caduceus_cli.inference.chunking import Shard, chunk_ends, chunk_key, split_ranges
from caduceus_cli.inference.distributed import Ranks
from caduceus_cli.inference.planner import WindowLayout
from caduceus_cli.io.regions import Regions
from caduceus_cli.io.vcf import VariantReader

# options that change where or how fast a run goes, not what it writes
NOT_IDENTITY = {"device", "output_type", "resume", "checkpoint_every", "checkpoint_s", "chunk", "precision", "backend"}


def file_sha256(path: str) -> str:
    """sha256 of a file's bytes ('-' for standard input, which cannot be read twice)."""
    if path == "-":
        return "-"
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _plain(value):
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _file_digest(path: str | None) -> str | None:
    return None if path is None else file_sha256(path)


def run_identity(vcf: str, job, opts, shard: Shard | None, tsv: bool) -> dict:
    """What every shard and every resumed part of one run must share (plus the shard count).

    ``job`` is the run's ``score_vcf._Job``: its resolved precision and backend (not 'auto'), window,
    reference (contig names, lengths and file size) and model (backbone + head weights) count; so do the
    contents, not the paths, of the regions, probe and rename files."""
    options = {k: _plain(v) for k, v in dataclasses.asdict(opts).items() if k not in NOT_IDENTITY}
    for key in ("regions_file", "probe", "rename_chrs"):
        options[key] = _file_digest(options.get(key))
    options["cluster_window"] = job.featuriser.cluster  # resolved: the default and its value are one run
    ref = job.reference
    rt = job.rt
    return {
        "version": __version__,
        "input_sha256": file_sha256(vcf),
        "model_sha256": rt.model_sha256,
        "head_sha256": job.head_sha256,
        "reference": {"size": os.path.getsize(ref.path), "contigs": dict(ref.lengths)},
        "precision": rt.engine.precision.value,
        "backend": rt.backend_name,
        "window": job.spec.window,
        "tsv": tsv,
        "chunks": shard.total if shard else 1,
        "options": json.dumps(options, sort_keys=True),
    }


def run_hash(identity: dict) -> str:
    """A short stable hash of a run identity."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class RecordRange:
    """Records [start, end) of the input, 0-based half-open; ``end`` None: to the end of the input."""

    start: int = 0
    end: int | None = None

    @property
    def size(self) -> int | None:
        return None if self.end is None else self.end - self.start


@dataclass(frozen=True)
class Scatter:
    """This process's output range (its shard, or the whole input) and its own share of it (its rank's)."""

    output: RecordRange
    mine: RecordRange
    total: int | None  # records in the input (after --regions), when a pass has counted them


def plan_scatter(
    vcf: str, regions: Regions | None, layout: WindowLayout, chunk_sites: int, shard: Shard | None, ranks: Ranks
) -> Scatter:
    """The ranges, from one pass over the records' positions (only when there is a shard or several ranks)."""
    if shard is None and not ranks.many:
        return Scatter(RecordRange(), RecordRange(), None)
    ends = chunk_ends(_keys(vcf, regions, layout), chunk_sites)
    total = ends[-1] if ends else 0
    lo, hi = split_ranges(ends, shard.total)[shard.index - 1] if shard else (0, total)
    inner = [e - lo for e in ends if lo < e <= hi]
    a, b = split_ranges(inner, ranks.world)[ranks.rank]
    return Scatter(RecordRange(lo, hi), RecordRange(lo + a, lo + b), total)


def _keys(vcf: str, regions: Regions | None, layout: WindowLayout) -> Iterator[tuple[str, int]]:
    with VariantReader(vcf, regions) as reader:
        for v in reader.variants():
            yield chunk_key(layout, v.chrom, v.pos0)
