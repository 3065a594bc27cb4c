"""Durable progress of a run that writes to a file: parts in a folder beside the output, then one output.

``OUT.caduceus-parts/`` holds:

- ``run.json``: what run this is (input checksum, model, options, record range, format); a resumed
  run or another torchrun rank must match it key for key;
- ``header.txt``: the output's header, as the first invocation wrote it (a resumed run reuses it);
- ``part-FIRST-END.bgz``: the output text of records [FIRST, END) (0-based record numbers, half-open),
  bgzip-compressed, with ``part-FIRST-END.json`` (what was scored). A part is written under a
  temporary name, fsynced, then renamed: a part that exists is complete.

When the parts cover the run's range, ``assemble`` writes the output (atomically: a killed run never
leaves a complete-looking one) and the folder is removed. Part boundaries are chunk cuts
(``inference.chunking``), so a run resumed from any part end scores the rest exactly as an
uninterrupted run does.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pysam

from caduceus_cli.choices import OutputType
from caduceus_cli.errors import InputFileError
from caduceus_cli.io.atomic import AtomicOutput, fsync_dir, fsync_file
from caduceus_cli.io.writers import bgzip_vcf_to_bcf, index_output

log = logging.getLogger(__name__)

SUFFIX = ".caduceus-parts"
BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")
_PART = re.compile(r"^part-(\d{12})-(\d{12})\.bgz$")


@dataclass
class PartStats:
    """What the records of one or more parts hold (summed over parts by ``+``)."""

    records: int = 0
    alts: int = 0
    scored: int = 0
    flags: Counter = field(default_factory=Counter)

    def __add__(self, other: PartStats) -> PartStats:
        return PartStats(
            self.records + other.records, self.alts + other.alts, self.scored + other.scored, self.flags + other.flags
        )

    def to_dict(self) -> dict:
        return {"records": self.records, "alts": self.alts, "scored": self.scored, "flags": dict(self.flags)}

    @classmethod
    def from_dict(cls, d: dict) -> PartStats:
        return cls(d["records"], d["alts"], d["scored"], Counter(d["flags"]))


def _write_durably(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    fsync_file(tmp)
    os.replace(tmp, path)


class PartWriter:
    """Output text of consecutive records from record ``first``; ``close(end)`` makes it a durable part."""

    def __init__(self, folder: Path, first: int) -> None:
        self.folder = folder
        self.first = first
        self.tmp = folder / f".part-{first:012d}.tmp"
        self.fh = pysam.BGZFile(str(self.tmp), "wb")
        self.stats = PartStats()

    def write(self, text: str) -> None:
        self.fh.write(text.encode())

    def close(self, end: int) -> Path:
        self.fh.close()
        fsync_file(self.tmp)
        name = f"part-{self.first:012d}-{end:012d}"
        _write_durably(self.folder / f"{name}.json", json.dumps(self.stats.to_dict()))
        final = self.folder / f"{name}.bgz"
        os.replace(self.tmp, final)
        fsync_dir(self.folder)
        return final

    def abort(self) -> None:
        self.fh.close()
        self.tmp.unlink(missing_ok=True)


class Checkpoint:
    """The parts folder of output ``out`` (see the module docstring)."""

    def __init__(self, out: str) -> None:
        self.out = out
        self.dir = Path(out + SUFFIX)

    def exists(self) -> bool:
        return (self.dir / "run.json").exists()

    def start(self, run: dict, header: str, resume: bool) -> bool:
        """Create the folder for ``run``, or (``resume``) check an existing one is the same run; True if resumed."""
        if self.exists() and not self.parts():  # nothing was finished: start again
            shutil.rmtree(self.dir)
        if self.exists():
            if not resume:
                raise InputFileError(
                    f"{self.out}: {self.dir} holds the parts of an unfinished run; "
                    f"add --resume to continue it, or delete {self.dir} to start again"
                )
            self.check(run)
            return True
        if self.dir.exists():  # a folder without run.json: killed while it was being made
            shutil.rmtree(self.dir)
        if not self.dir.parent.exists():
            raise InputFileError(f"{self.out}: output folder {self.dir.parent} does not exist")
        try:
            self.dir.mkdir(parents=False)
        except OSError as exc:
            raise InputFileError(f"{self.out}: cannot write in {self.dir.parent} ({exc.strerror})") from exc
        _write_durably(self.dir / "header.txt", header)
        _write_durably(self.dir / "run.json", json.dumps(run, indent=1, sort_keys=True))
        fsync_dir(self.dir.parent)
        return False

    def check(self, run: dict) -> None:
        """Refuse to add to parts of another run, naming what differs."""
        try:
            have = json.loads((self.dir / "run.json").read_text())
        except (OSError, ValueError) as exc:
            raise InputFileError(
                f"{self.dir}/run.json is unreadable ({exc}); delete {self.dir} to start again"
            ) from exc
        for key in sorted(set(have) | set(run)):
            old, new = have.get(key), run.get(key)
            if old != new:
                if key == "options":  # name the option that differs
                    a, b = json.loads(old or "{}"), json.loads(new or "{}")
                    key = next(k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k))
                    old, new = a.get(key), b.get(key)
                raise InputFileError(
                    f"{self.out}: the unfinished run in {self.dir} had {key} = {old!r}, this one "
                    f"{new!r}; run it as before, or delete {self.dir} to start again"
                )

    def discard_if_empty(self) -> None:
        """Remove the folder if no part was finished (a run that failed early leaves nothing to resume)."""
        if self.dir.exists() and not self.parts():
            shutil.rmtree(self.dir, ignore_errors=True)

    def header(self) -> str:
        return (self.dir / "header.txt").read_text()

    def parts(self) -> list[tuple[int, int, Path]]:
        """Complete parts as (first, end, path), sorted by first record."""
        found = []
        for p in self.dir.iterdir():
            m = _PART.match(p.name)
            if m:
                found.append((int(m[1]), int(m[2]), p))
        return sorted(found)

    def todo(self, lo: int, hi: int | None) -> list[tuple[int, int | None]]:
        """The record ranges of [lo, hi) no part covers yet (``hi`` None: to the end of the input)."""
        out: list[tuple[int, int | None]] = []
        at = lo
        for first, end, _ in self.parts():
            if end <= at or (hi is not None and first >= hi):
                continue
            if first > at:
                out.append((at, first))
            at = max(at, end)
        if hi is None or at < hi:
            out.append((at, hi))
        return out

    def writer(self, first: int) -> PartWriter:
        return PartWriter(self.dir, first)

    @staticmethod
    def stats(paths: list[Path]) -> PartStats:
        total = PartStats()
        for p in paths:
            total = total + PartStats.from_dict(json.loads(p.with_suffix(".json").read_text()))
        return total

    def assemble(self, lo: int, hi: int, fmt: OutputType) -> PartStats:
        """Write the output from the header and the parts covering exactly [lo, hi); then remove the folder."""
        parts = [p for p in self.parts() if p[1] > lo and p[0] < hi]
        at = lo
        for first, end, _ in parts:
            if first != at:
                raise InputFileError(f"{self.dir}: records {at}-{first} have no part; rerun with --resume")
            at = end
        if at != hi:
            raise InputFileError(f"{self.dir}: records {at}-{hi} have no part; rerun with --resume")
        paths = [p for _, _, p in parts]
        stats = self.stats(paths)
        out = AtomicOutput(self.out)
        try:
            if fmt == OutputType.BCF:
                self._bcf(out.tmp, paths)
            elif fmt == OutputType.VCF_GZ or self.out.endswith((".gz", ".bgz")):
                self._bgzip(out.tmp, paths)
            else:
                with open(out.tmp, "w") as fh:
                    fh.write(self.header())
                    for p in paths:
                        with gzip.open(p, "rt") as part:
                            shutil.copyfileobj(part, fh)
        except BaseException:
            out.abort()
            raise
        out.commit()
        index_output(self.out, fmt)
        shutil.rmtree(self.dir)
        return stats

    def _bgzip(self, dest: str, parts: list[Path]) -> None:
        """bgzip output: the header's BGZF blocks, then each part's blocks as they are (no recompression)."""
        head = self.dir / ".header.bgz"
        with pysam.BGZFile(str(head), "wb") as fh:
            fh.write(self.header().encode())
        with open(dest, "wb") as out:
            for p in [head, *parts]:
                data = p.read_bytes()
                out.write(data[: -len(BGZF_EOF)] if data.endswith(BGZF_EOF) else data)
            out.write(BGZF_EOF)
        head.unlink()

    def _bcf(self, dest: str, parts: list[Path]) -> None:
        text = self.dir / ".all.vcf.gz"
        self._bgzip(str(text), parts)
        bgzip_vcf_to_bcf(str(text), dest)
        text.unlink()
