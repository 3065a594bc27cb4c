"""embed: Caduceus embeddings of sequences (FASTA), regions (BED + reference) or variants.

Variants (VCF, or a labelled table) get the paper's feature: the hidden state
mean-pooled over +/- ``flank`` positions around the variant, for the reference and
for the alternate window (built exactly as in score-vcf), concatenated: (2F,).

Sequences and regions are run whole when they fit the window. Longer ones are
tiled: windows of W bp start at 0, W, 2W, ...; the last window ends at the
sequence end and contributes only the positions the earlier ones did not cover,
so each position's features come from exactly one window. ``pool='mean'``
averages every position; ``pool='centre'`` runs one window centred on the
sequence and averages +/- flank around its middle; ``pool='none'`` keeps every
position (streamed to a .npy array, see ``embed_io``).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field

import numpy as np

from caduceus_cli import __version__
from caduceus_cli.coords import Interval0, read_bed
from caduceus_cli.errors import InputFileError, OptionError, ProbeError
from caduceus_cli.model.loading import load_model, weights_sha256
from caduceus_cli.reference import Reference, iter_fasta, read_rename_table
from caduceus_cli.scoring import ScoreOptions, VariantScorer, default_window
from caduceus_cli.tables import TableVariant, VariantTable, read_variant_table, table_format
from caduceus_cli.tokenizer import encode
from caduceus_cli.windows import WindowModel, pick_device

log = logging.getLogger(__name__)

POOLS = ("mean", "centre", "none")
_FATAL_FOR_TABLES = {"REF_MISMATCH": "REF does not match the reference (wrong genome build?)",
                     "CONTIG_MISSING": "chromosome is not in the reference (use --rename-chrs)",
                     "SYMBOLIC": "ALT is symbolic or not A/C/G/T/N", "TOO_LONG": "allele longer than half the window"}


@dataclass(frozen=True)
class EmbedOptions:
    window: int | None = None  # default: the model's training length
    pool: str | None = None  # mean | centre | none; default centre for variants, mean for sequences
    flank: int = 768
    layer: int = -1
    rc_mode: str = "avg"
    batch_size: int = 8
    device: str = "auto"
    backend: str = "auto"
    precision: str = "auto"
    rename_chrs: str | None = None
    strict: bool = False  # VCF input: fail on REF mismatch / missing contig (tables always fail)
    columns: str | None = None  # table column mapping, e.g. "label=is_causal"
    label_field: str = "label"  # VCF INFO field holding the label
    chunk: int = 256


@dataclass(frozen=True)
class EmbeddingSpec:
    """What an embedding is: enough to refuse mixing features of different models or settings."""

    kind: str  # variant | sequence | region
    model: str
    model_sha256: str
    window: int
    flank: int
    pool: str
    layer: int
    rc_mode: str
    dim: int
    version: str = __version__

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> EmbeddingSpec:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    def mismatch(self, other: EmbeddingSpec) -> list[str]:
        """Differences that change the features (empty when compatible)."""
        keys = ("model_sha256", "window", "flank", "pool", "layer", "rc_mode", "dim")
        return [f"{k} {getattr(self, k)} vs {getattr(other, k)}" for k in keys if getattr(self, k) != getattr(other, k)]


@dataclass
class EmbeddedRows:
    """A chunk of output rows: key/carried columns and the embedding matrix (NaN rows = not embedded)."""

    columns: dict[str, list]
    embedding: np.ndarray  # (n, dim) float32
    tokens: list[np.ndarray] = field(default_factory=list)  # pool 'none': (length, F) per row


class Embedder:
    """The model, reference and options, shared by embed, finetune and score-vcf --probe."""

    def __init__(self, model_source: str | None, opts: EmbedOptions, ref: str | None = None, model=None) -> None:
        self.opts = opts
        self.device = pick_device(opts.device)
        self.model = model or load_model(model_source, device=self.device, backend=opts.backend)
        self.W = opts.window or default_window(self.model)
        self.reference = None
        if ref is not None:
            renames = read_rename_table(opts.rename_chrs) if opts.rename_chrs else None
            self.reference = Reference(ref, renames)
        self.engine = WindowModel(self.model, self.device, opts.batch_size, opts.precision)
        self.engine.check(opts.layer, opts.rc_mode)

    def close(self) -> None:
        if self.reference is not None:
            self.reference.close()

    @property
    def variant_dim(self) -> int:
        """Width of a variant feature: [ref pooled, alt pooled]."""
        return 2 * self.engine.feature_dim(self.opts.rc_mode)

    def spec(self, kind: str, pool: str) -> EmbeddingSpec:
        dim = self.variant_dim if kind == "variant" else self.engine.feature_dim(self.opts.rc_mode)
        return EmbeddingSpec(kind, self.model.source, weights_sha256(self.model.source_dir), self.W, self.opts.flank,
                             pool, self.opts.layer, self.opts.rc_mode, dim)

    # ---- variants ----
    def variant_scorer(self, strict: bool) -> VariantScorer:
        if self.reference is None:
            raise InputFileError("variants need the reference genome: pass --ref FASTA")
        so = ScoreOptions(window=self.W, flank=self.opts.flank, batch_size=self.opts.batch_size,
                          chunk_sites=self.opts.chunk, strict=strict, device=self.opts.device,
                          backend=self.opts.backend, precision=self.opts.precision, layer=self.opts.layer,
                          rc_mode=self.opts.rc_mode, llr=False)
        return VariantScorer(self.model, self.reference, so, self.device, engine=self.engine)

    def embed_table(self, table: VariantTable, progress: Callable[[int], None] | None = None) -> EmbeddedRows:
        """Features of every row of a labelled table, (n, 2F); a row that cannot be embedded is an error."""

        def refuse_unusable(plans: list, offset: int) -> None:
            for j, p in enumerate(plans):
                bad = [f for f in p.flags if f in _FATAL_FOR_TABLES]
                if bad:
                    raise ProbeError(f"{table.where(offset + j)}: {_FATAL_FOR_TABLES[bad[0]]}; fix or remove the row")

        X = np.full((len(table), self.variant_dim), np.nan, np.float32)
        flags: list[str | None] = []
        for plans in self.variant_scorer(strict=False).scored_chunks(table.variants, refuse_unusable):
            for p in plans:
                X[len(flags)] = p.variant_features(0)
                flags.append(_flag_text(p))
            if progress:
                progress(len(plans))
        cols = {"chrom": [v.chrom for v in table.variants], "pos": [v.pos for v in table.variants],
                "id": [v.id for v in table.variants], "ref": [v.ref for v in table.variants],
                "alt": [v.alts[0] for v in table.variants], "flag": flags}
        cols.update({k: v for k, v in table.columns.items() if k not in cols})
        return EmbeddedRows(cols, X)

    def embed_vcf(self, path: str, progress: Callable[[int], None] | None = None) -> Iterator[EmbeddedRows]:
        """One row per ALT of every record, in order; unscored ALTs get a NaN embedding and their flags."""
        from caduceus_cli.variants import VariantReader

        scorer = self.variant_scorer(self.opts.strict)
        reader = VariantReader(path)
        try:
            for plans in scorer.scored_chunks(reader.records()):
                yield self._vcf_rows(plans)
                if progress:
                    progress(len(plans))
        finally:
            reader.close()

    def _vcf_rows(self, plans: list) -> EmbeddedRows:
        cols: dict[str, list] = {k: [] for k in ("chrom", "pos", "id", "ref", "alt", "flag")}
        feats = []
        missing = np.full(self.variant_dim, np.nan, np.float32)
        for p in plans:
            for i, alt in enumerate(p.rec.alts or (None,)):
                for k, v in zip(cols, (p.rec.chrom, p.rec.pos, p.rec.id, p.rec.ref, alt, _flag_text(p)), strict=True):
                    cols[k].append(v)
                f = p.variant_features(i) if alt is not None else None
                feats.append(missing if f is None else f)
        return EmbeddedRows(cols, np.stack(feats).astype(np.float32))

    # ---- sequences and regions ----
    def embed_sequences(self, named: Iterable[tuple[dict, str]], pool: str,
                        progress: Callable[[int], None] | None = None) -> Iterator[EmbeddedRows]:
        """(key columns, sequence) pairs -> rows pooled as ``pool`` (tiled as the module docstring says)."""
        if pool not in POOLS:
            raise OptionError(f"--pool {pool}: expected one of {', '.join(POOLS)}")
        batch: list[tuple[dict, str]] = []
        for item in named:
            batch.append(item)
            if len(batch) >= self.opts.chunk:
                yield self._sequence_rows(batch, pool, progress)
                batch = []
        if batch:
            yield self._sequence_rows(batch, pool, progress)

    def _sequence_rows(self, batch: list[tuple[dict, str]], pool: str, progress) -> EmbeddedRows:
        W, F = self.W, self.engine.feature_dim(self.opts.rc_mode)
        jobs = []  # (row, window start, keep from, keep to) in sequence coordinates
        for row, (_, seq) in enumerate(batch):
            n = len(seq)
            if n == 0:
                raise InputFileError(f"{batch[row][0].get('id')}: empty sequence")
            if pool == "centre":
                start = max(0, min(n - W, n // 2 - W // 2))
                jobs.append((row, start, start, min(n, start + W)))
            else:
                jobs += [(row, *t) for t in tiles(n, W)]
        sums = np.zeros((len(batch), F), np.float64)
        counts = np.zeros(len(batch), np.int64)
        tokens = [np.zeros((len(s), F), np.float32) for _, s in batch] if pool == "none" else []
        by_len: dict[int, list] = {}
        for job in jobs:
            by_len.setdefault(min(len(batch[job[0]][1]), W), []).append(job)
        for length, group in by_len.items():
            ids = np.stack([encode(batch[r][1][s : s + length]) for r, s, _, _ in group])  # (n, length)
            for offset, feats in self.engine.run_token_features(ids, self.opts.layer, self.opts.rc_mode):
                for k in range(feats.shape[0]):
                    r, s, lo, hi = group[offset + k]
                    f = feats[k].numpy()  # (length, F)
                    if pool == "centre":
                        c = len(batch[r][1]) // 2 - s
                        part = f[max(0, c - self.opts.flank) : c + self.opts.flank + 1]
                    else:
                        part = f[lo - s : hi - s]
                    if pool == "none":
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

    def fasta_items(self, path: str) -> Iterator[tuple[dict, str]]:
        for name, seq in iter_fasta(path):
            yield {"id": name}, seq.upper()

    def bed_items(self, path: str) -> Iterator[tuple[dict, str]]:
        if self.reference is None:
            raise InputFileError(f"{path}: BED regions need the reference genome: pass --ref FASTA")
        for iv in read_bed(path):
            chrom = self.reference.resolve(iv.chrom)
            if chrom is None:
                raise InputFileError(f"{path}: region {iv.label()}: contig {iv.chrom} is not in "
                                     f"{self.reference.path.name} (use --rename-chrs)")
            if iv.end > self.reference.lengths[chrom]:
                raise InputFileError(f"{path}: region {iv.label()} runs past the end of {chrom} "
                                     f"({self.reference.lengths[chrom]:,} bp)")
            yield _region_key(iv), self.reference.fetch(chrom, iv.start, iv.end)


def _flag_text(plan) -> str | None:
    return ",".join(plan.flags) or None


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


def _region_key(iv: Interval0) -> dict:
    return {"id": iv.label(), "chrom": iv.chrom, "start": iv.start, "end": iv.end}


def input_kind(path: str, bed: bool = False) -> str:
    """'variant-vcf', 'variant-table', 'region' or 'sequence' from the file name."""
    if bed or path.lower().removesuffix(".gz").endswith(".bed"):
        return "region"
    low = path.lower().removesuffix(".gz").removesuffix(".bgz")
    if low.endswith((".fa", ".fasta", ".fna", ".fas")):
        return "sequence"
    if low.endswith((".vcf", ".bcf")) or path == "-":
        return "variant-vcf"
    table_format(path)  # raises with the accepted types
    return "variant-table"


def load_table(path: str, opts: EmbedOptions, need_label: bool) -> VariantTable:
    from caduceus_cli.tables import parse_column_map

    return read_variant_table(path, parse_column_map(opts.columns), opts.label_field, need_label)


__all__ = ["EmbedOptions", "Embedder", "EmbeddingSpec", "EmbeddedRows", "TableVariant", "input_kind", "load_table",
           "tiles"]
