"""caduceus merge: join the shards of one chunked score-vcf run (``--chunk i/n``) into one output.

Each shard's header says which it is: ``##caduceus_shard=<index=i,total=n,records=K,run=HASH>``
(``# caduceus_shard=`` in TSV), where HASH covers the input's checksum, the model's sha256, the
version and every option that changes scores. Merge refuses, with one line naming the file, a
shard without that line, of another run, given twice, missing, or holding fewer records than it
says. The output's header is the first shard's with its shard line turned into
``##caduceus_merged=<shards=n,run=HASH>``; its body is the shards'
records in shard order, byte for byte, which is what a single run writes.
"""

from __future__ import annotations

import gzip
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pysam

from caduceus_cli.choices import OutputType
from caduceus_cli.errors import InputFileError, ShardError
from caduceus_cli.io.atomic import AtomicOutput
from caduceus_cli.io.writers import bgzip_vcf_to_bcf, index_output, output_format

log = logging.getLogger(__name__)

_SHARD = re.compile(r"^(?:##|# )caduceus_shard=<index=(\d+),total=(\d+),records=(\d+),run=(\w+)>$")


@dataclass(frozen=True)
class ShardInfo:
    """One shard file and what its header says about it."""

    path: str
    index: int
    total: int
    records: int
    run: str
    tsv: bool


@dataclass(frozen=True)
class MergeSummary:
    shards: int
    records: int
    output: str
    run: str

    def describe(self) -> str:
        return f"{self.shards} shards of run {self.run}, {self.records} records -> {self.output}"


def _text_lines(path: str) -> Iterator[str]:
    """The lines of a VCF/TSV (plain or gzip/bgzip) or, for BCF, of its VCF text; with their newline."""
    if path.endswith(".bcf"):
        with pysam.VariantFile(path) as vf:
            yield from str(vf.header).splitlines(keepends=True)
            for rec in vf:
                yield str(rec)
        return
    with open(path, "rb") as probe:
        gz = probe.read(2) == b"\x1f\x8b"
    with gzip.open(path, "rt") if gz else open(path) as fh:
        yield from fh


def read_shard(path: str) -> ShardInfo:
    """The shard line of ``path``'s header (clear errors for a missing, unreadable or unsharded file)."""
    if not Path(path).exists():
        raise InputFileError(f"{path}: no such shard file")
    try:
        for line in _text_lines(path):
            if not line.startswith("#") or line.startswith("#CHROM"):
                break
            m = _SHARD.match(line.rstrip("\n"))
            if m:  # '# caduceus_shard' in TSV, '##caduceus_shard' in VCF
                return ShardInfo(path, int(m[1]), int(m[2]), int(m[3]), m[4], line.startswith("# "))
    except (OSError, ValueError, EOFError) as exc:
        raise InputFileError(f"{path}: unreadable ({exc}); is it a complete score-vcf output?") from exc
    raise ShardError(f"{path}: not a shard (no caduceus_shard header line); merge takes score-vcf --chunk i/n outputs")


def check_shards(shards: list[ShardInfo]) -> None:
    """All of one run, each index once, none missing; else a ShardError naming the file."""
    first = shards[0]
    seen: dict[int, str] = {}
    for s in shards:
        if (s.run, s.total, s.tsv) != (first.run, first.total, first.tsv):
            raise ShardError(
                f"{s.path}: shard of another run (run {s.run}, {s.total} chunks, "
                f"{'TSV' if s.tsv else 'VCF'}) than {first.path} (run {first.run}, {first.total} chunks, "
                f"{'TSV' if first.tsv else 'VCF'}): input, model or options differ"
            )
        if s.index in seen:
            raise ShardError(f"{s.path}: shard {s.index}/{s.total} is also given as {seen[s.index]}")
        seen[s.index] = s.path
    missing = [i for i in range(1, first.total + 1) if i not in seen]
    if missing:
        which = ", ".join(f"{i}/{first.total}" for i in missing)
        raise ShardError(
            f"shard {which} of run {first.run} is missing: score it with --chunk {missing[0]}/{first.total}"
        )


def merge_shards(paths: list[str], out: str, output_type: OutputType | str | None = None) -> MergeSummary:
    """Check the shards at ``paths`` and write their records, in shard order, to ``out`` (VCF/BCF/TSV or '-')."""
    if not paths:
        raise ShardError("merge: give the shard files of one score-vcf --chunk run")
    shards = sorted((read_shard(p) for p in paths), key=lambda s: s.index)
    check_shards(shards)
    fmt = output_format(out, output_type)
    if (fmt == OutputType.TSV) != shards[0].tsv:
        raise ShardError(f"{out}: the shards are {'TSV' if shards[0].tsv else 'VCF'}; write the merge as the same")
    target = AtomicOutput(out)
    bcf_text = None
    if fmt == OutputType.BCF:
        fd, name = tempfile.mkstemp(suffix=".vcf.gz", dir=None if target.stdout else Path(target.tmp).parent)
        os.close(fd)
        bcf_text = Path(name)
    records = 0
    try:
        with _Sink(target, fmt, out, bcf_text) as put:
            for k, shard in enumerate(shards):
                try:
                    records += _copy(shard, put, header=k == 0)
                except ShardError:  # already names the shard and the fix (a ValueError too: not wrapped again)
                    raise
                except (OSError, EOFError, ValueError) as exc:
                    raise ShardError(
                        f"{shard.path}: unreadable or cut short ({exc}); score shard {shard.index}/{shard.total} again"
                    ) from exc
        if bcf_text is not None:
            bgzip_vcf_to_bcf(str(bcf_text), target.tmp)
    except BaseException:
        target.abort()
        raise
    finally:
        if bcf_text is not None:
            bcf_text.unlink(missing_ok=True)
    target.commit()
    if not target.stdout:
        index_output(out, fmt)
    return MergeSummary(len(shards), records, out, shards[0].run)


def _copy(shard: ShardInfo, put, header: bool) -> int:
    """Write the shard's body (and, for the first, its header less the shard line); its record count."""
    n = 0
    in_header = True
    last_key = None
    for line in _text_lines(shard.path):
        if in_header:
            # VCF: '##' lines and '#CHROM'; TSV: '# caduceus_' lines and the column names
            in_header = line.startswith("#") if not shard.tsv else line.startswith("# ") or line.startswith("chrom\t")
        if in_header:
            if header and _SHARD.match(line.rstrip("\n")):  # the shard line becomes the merge's provenance
                put(f"{line[: line.index('caduceus_shard=')]}caduceus_merged=<shards={shard.total},run={shard.run}>\n")
            elif header:
                put(line)
            continue
        if not line.endswith("\n"):
            raise ShardError(f"{shard.path}: the last line is cut short; score shard {shard.index}/{shard.total} again")
        if shard.tsv:  # one row per ALT: the rows of one record share chrom, pos, id and ref
            key = line.split("\t", 4)[:4]
            n += key != last_key
            last_key = key
        else:
            n += 1
        put(line)
    if not shard.tsv and n != shard.records:  # (TSV rows do not count records exactly: duplicates join)
        raise ShardError(
            f"{shard.path}: holds {n} records, its header says {shard.records}: it is incomplete; "
            f"score shard {shard.index}/{shard.total} again"
        )
    return n


class _Sink:
    """A context manager giving ``put(text)`` into the output (bgzip for .vcf.gz / .tsv.gz / BCF's text)."""

    def __init__(self, target: AtomicOutput, fmt: OutputType, out: str, bcf_text: Path | None) -> None:
        self.bgzip = fmt in (OutputType.VCF_GZ, OutputType.BCF) or out.endswith((".gz", ".bgz"))
        self.path = str(bcf_text) if bcf_text is not None else target.tmp
        self.stdout = target.stdout and bcf_text is None

    def __enter__(self):
        if self.bgzip:
            self.fh = pysam.BGZFile(self.path, "wb")
            return lambda text: self.fh.write(text.encode())
        self.fh = sys.stdout if self.stdout else open(self.path, "w")
        return self.fh.write

    def __exit__(self, *exc) -> None:
        if self.fh is not None and not (self.stdout and not self.bgzip):
            self.fh.close()
        elif self.stdout:
            self.fh.flush()
