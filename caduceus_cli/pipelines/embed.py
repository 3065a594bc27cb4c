"""embed: Caduceus embeddings of sequences (FASTA), regions (BED + reference) or variants (VCF or table).

Variants get the paper's feature: the hidden state mean-pooled over +/- ``flank``
positions around the variant, for the reference and for the alternate window (built
exactly as in score-vcf), concatenated: (2F,). Sequences and regions are tiled as
``inference.tiling`` says. Outputs: Parquet rows in input order (every input column
carried), or per-token ``.npy`` / ``.safetensors`` with ``--pool none`` (``io.embeddings``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from caduceus_cli.choices import Pool, choice
from caduceus_cli.errors import InputFileError, OptionError, TableError
from caduceus_cli.inference.featurise import Featuriser, SiteScores, scored_chunks
from caduceus_cli.inference.planner import SitePlan, SitePlanner, WindowLayout
from caduceus_cli.inference.runtime import InferenceOptions, Runtime
from caduceus_cli.inference.spec import EmbeddingSpec, spec_for
from caduceus_cli.inference.tiling import SequenceFeaturiser
from caduceus_cli.io.coords import Interval0, read_bed
from caduceus_cli.io.embeddings import EmbeddedRows, ParquetSink, TokenSink, read_embedding_file
from caduceus_cli.io.reference import Reference, iter_fasta
from caduceus_cli.io.tables import VariantTable, parse_column_map, read_variant_table, table_format

log = logging.getLogger(__name__)

_FATAL_FOR_TABLES = {
    "REF_MISMATCH": "REF does not match the reference (wrong genome build?)",
    "CONTIG_MISSING": "chromosome is not in the reference (use --rename-chrs)",
    "SYMBOLIC": "ALT is symbolic or not A/C/G/T/N",
    "TOO_LONG": "allele longer than half the window",
}


@dataclass(frozen=True)
class EmbedOptions(InferenceOptions):
    """Options of ``embed`` (runtime and feature options are ``InferenceOptions``'s)."""

    pool: Pool | str | None = None  # default: centre for variants, mean for sequences and regions
    columns: str | None = None  # table column mapping, e.g. "label=is_causal"
    label_field: str = "label"  # VCF INFO field holding the label (labelled VCF tables)


@dataclass(frozen=True)
class EmbedResult:
    """What an embed run wrote."""

    rows: int
    kind: str  # variant-vcf | variant-table | region | sequence
    pool: str
    dim: int
    window: int
    windows_run: int
    output: str


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


def read_embeddings(path: str) -> tuple[dict[str, list], np.ndarray, EmbeddingSpec]:
    """(columns, embedding matrix (n, dim) with NaN rows where a variant was not embedded, spec) of embed's Parquet."""
    cols, X, meta = read_embedding_file(path)
    return cols, X, EmbeddingSpec.from_dict(meta)


def load_table(path: str, opts: EmbedOptions, need_label: bool) -> VariantTable:
    return read_variant_table(path, parse_column_map(opts.columns), opts.label_field, need_label)


# the key columns of each input kind's rows (Arrow type names), for an output without rows; a variant
# table's are its own
KEY_COLUMNS = {
    "variant-vcf": {"chrom": "string", "pos": "int64", "id": "string", "ref": "string", "alt": "string", "flag": "string"},
    "sequence": {"id": "string", "length": "int64", "n_windows": "int64"},
    "region": {
        "id": "string", "chrom": "string", "start": "int64", "end": "int64", "length": "int64", "n_windows": "int64"
    },
}  # fmt: skip


def embed(
    input_path: str,
    out: str,
    model: str | None = None,
    ref: str | None = None,
    opts: EmbedOptions = EmbedOptions(),
    bed: bool = False,
    progress: Callable[[int], None] | None = None,
) -> EmbedResult:
    """Embed a FASTA, a BED (with ``ref``), a VCF or a variant table (with ``ref``) into ``out``."""
    if input_path != "-" and not Path(input_path).exists():
        raise InputFileError(f"{input_path}: no such input file")
    kind = input_kind(input_path, bed)
    is_variant = kind.startswith("variant")
    pool = choice(Pool, opts.pool or (Pool.CENTRE if is_variant else Pool.MEAN), "--pool")
    if is_variant and pool == Pool.NONE:
        raise OptionError("--pool none is for sequences and regions; variants are pooled around the variant")
    with Runtime(model, opts, ref) as rt:
        spec = spec_for(
            rt.model,
            rt.model_sha256,
            "variant" if is_variant else kind,
            window=opts.window,
            flank=opts.flank,
            pool=pool,
            layer=opts.layer,
            rc_mode=opts.rc_mode,
        )
        if kind == "variant-table":
            table = load_table(input_path, opts, need_label=False)
            chunks: Iterator[EmbeddedRows] = iter([embed_table(rt, table, spec, opts, progress)])
        elif kind == "variant-vcf":
            chunks = _embed_vcf(rt, input_path, spec, opts, progress)
        else:
            items = (
                (lambda: bed_items(input_path, rt.need_reference("BED regions")))
                if kind == "region"
                else (lambda: fasta_items(input_path))
            )
            chunks = SequenceFeaturiser(rt.engine, spec, opts.chunk_sites).rows(items(), progress)
        if pool == Pool.NONE:
            total = sum(len(s) for _, s in items())  # a first pass for the array's size
            sink: ParquetSink | TokenSink = TokenSink(out, spec.to_dict(), total)
        else:
            sink = ParquetSink(out, spec.to_dict(), KEY_COLUMNS.get(kind))
        ok = False
        rows = 0
        try:
            for chunk in chunks:
                sink.write(chunk)
                rows += len(chunk.embedding)
            ok = True
        finally:
            sink.close(ok)
    log.info("embedded %d rows from %s into %s", rows, input_path, out)
    return EmbedResult(rows, kind, spec.pool, spec.dim, spec.window, rt.engine.windows_run, out)


def _variant_pipeline(rt: Runtime, spec: EmbeddingSpec, strict: bool) -> tuple[SitePlanner, Featuriser]:
    reference = rt.need_reference("variants")
    return SitePlanner(reference, WindowLayout(spec.window, strict=strict)), Featuriser(rt.engine, spec, llr=False)


def embed_table(
    rt: Runtime,
    table: VariantTable,
    spec: EmbeddingSpec,
    opts: InferenceOptions,
    progress: Callable[[int], None] | None = None,
) -> EmbeddedRows:
    """Features of every row of a labelled table, (n, 2F); a row that cannot be embedded is an error."""
    planner, featuriser = _variant_pipeline(rt, spec, strict=False)

    def refuse_unusable(plans: list[SitePlan]) -> None:
        for p in plans:
            bad = [f for f in p.flags if f in _FATAL_FOR_TABLES]
            if bad:
                raise TableError(f"{table.where(p.key)}: {_FATAL_FOR_TABLES[bad[0]]}; fix or remove the row")

    X = np.full((len(table), spec.dim), np.nan, np.float32)
    flags: list[str | None] = []
    items = ((v, None) for v in table.variants)
    for chunk in scored_chunks(items, planner, featuriser, opts.chunk_sites, refuse_unusable):
        for s, _ in chunk:
            X[len(flags)] = s.variant_features(0)
            flags.append(_flag_text(s))
        if progress:
            progress(len(chunk))
    vs = table.variants
    cols = {
        "chrom": [v.chrom for v in vs],
        "pos": [v.pos1 for v in vs],
        "id": [v.id for v in vs],
        "ref": [v.ref for v in vs],
        "alt": [v.alts[0] for v in vs],
        "flag": flags,
    }
    cols.update({k: v for k, v in table.columns.items() if k not in cols})
    return EmbeddedRows(cols, X)


def _embed_vcf(
    rt: Runtime, path: str, spec: EmbeddingSpec, opts: InferenceOptions, progress: Callable[[int], None] | None
) -> Iterator[EmbeddedRows]:
    """One row per ALT of every record, in order; unscored ALTs get a NaN embedding and their flags."""
    from caduceus_cli.io.vcf import VariantReader  # pysam: only for VCF input

    planner, featuriser = _variant_pipeline(rt, spec, opts.strict)
    with VariantReader(path) as reader:
        for chunk in scored_chunks(reader, planner, featuriser, opts.chunk_sites):
            yield _vcf_rows([s for s, _ in chunk], spec.dim)
            if progress:
                progress(len(chunk))


def _vcf_rows(sites: list[SiteScores], dim: int) -> EmbeddedRows:
    cols: dict[str, list] = {k: [] for k in KEY_COLUMNS["variant-vcf"]}
    feats = []
    missing = np.full(dim, np.nan, np.float32)
    for s in sites:
        v = s.plan.variant
        for i, alt in enumerate(v.alts or (None,)):
            flags = s.plan.alt_flags(i) if alt is not None else s.flags
            for k, x in zip(cols, (v.chrom, v.pos1, v.id, v.ref, alt, ",".join(flags) or None), strict=True):
                cols[k].append(x)
            f = s.variant_features(i) if alt is not None else None
            feats.append(missing if f is None else f)
    return EmbeddedRows(cols, np.stack(feats).astype(np.float32))


def _flag_text(s: SiteScores) -> str | None:
    return ",".join(s.flags) or None


def fasta_items(path: str) -> Iterator[tuple[dict, str]]:
    for name, seq in iter_fasta(path):
        yield {"id": name}, seq.upper()


def bed_items(path: str, reference: Reference) -> Iterator[tuple[dict, str]]:
    for iv in read_bed(path):
        yield _region_key(iv), reference.region(iv, path)


def _region_key(iv: Interval0) -> dict:
    return {"id": iv.label(), "chrom": iv.chrom, "start": iv.start, "end": iv.end}
