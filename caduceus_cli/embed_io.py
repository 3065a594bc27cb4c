"""embed's outputs and driver: Parquet rows, per-token .npy / .safetensors arrays.

Parquet: key columns (id / chrom, start, end / chrom, pos, ref, alt, flag, and
any label, tissue or distance columns carried from the input) plus ``embedding``,
a fixed-size float32 list (null where a variant was not embedded). The
``EmbeddingSpec`` (model, sha256, window, pooling, layer, RC mode) is stored as
JSON in the schema metadata under ``caduceus``; ``read_embeddings`` returns it.

Per-token (``--pool none``): ``OUT.npy`` is one float32 array (total positions, F)
written through a memory map as sequences finish, with ``OUT.index.parquet``
giving each sequence's key columns, ``offset`` and ``length`` (rows
offset..offset+length-1). ``OUT.safetensors`` holds one (length, F) tensor per
sequence named by its id, written at the end (so it must fit in memory).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from caduceus_cli.embedding import EmbeddedRows, Embedder, EmbeddingSpec, EmbedOptions, input_kind, load_table
from caduceus_cli.errors import InputFileError, OptionError
from caduceus_cli.reference import iter_fasta
from caduceus_cli.variants import AtomicOutput

log = logging.getLogger(__name__)

META_KEY = b"caduceus"


class ParquetSink:
    """Streams ``EmbeddedRows`` chunks into one Parquet file (one row group per chunk), atomically."""

    def __init__(self, path: str, spec: EmbeddingSpec) -> None:
        if path == "-":
            raise OptionError("embed writes Parquet to a file: pass -o FILE.parquet")
        self.out = AtomicOutput(path)
        self.spec = spec
        self.writer = None
        self.schema = None
        self.rows = 0

    def write(self, rows: EmbeddedRows) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        n, dim = rows.embedding.shape
        arrays = {k: pa.array(v) for k, v in rows.columns.items()}
        flat = pa.array(rows.embedding.reshape(-1), type=pa.float32())  # (n * dim,)
        valid = ~np.isnan(rows.embedding).any(axis=1) if n else np.zeros(0, bool)
        emb = pa.FixedSizeListArray.from_arrays(flat, dim, mask=pa.array(~valid))
        table = pa.table(arrays | {"embedding": emb})
        if self.writer is None:
            meta = {META_KEY: json.dumps(self.spec.to_dict()).encode()}
            self.schema = _nullable_schema(table.schema).with_metadata(meta)
            self.writer = pq.ParquetWriter(self.out.tmp, self.schema)
        self.writer.write_table(table.cast(self.schema))
        self.rows += n

    def close(self, ok: bool) -> None:
        if self.writer is not None:
            self.writer.close()
        if ok:
            self.out.commit()
        else:
            self.out.abort()


def _nullable_schema(schema):
    """Column types from the first chunk; all-null columns become strings so later chunks can fill them."""
    import pyarrow as pa

    return pa.schema([pa.field(f.name, pa.string() if pa.types.is_null(f.type) else f.type) for f in schema])


class TokenSink:
    """Per-token arrays: a memory-mapped .npy plus an index Parquet, or a .safetensors file."""

    def __init__(self, path: str, spec: EmbeddingSpec, total: int) -> None:
        self.path = path
        self.spec = spec
        self.kind = "npy" if path.endswith(".npy") else "safetensors" if path.endswith(".safetensors") else None
        if self.kind is None:
            raise OptionError(f"-o {path}: --pool none writes .npy (streamed) or .safetensors")
        self.offset = 0
        self.index: dict[str, list] = {}
        self.tensors: dict[str, np.ndarray] = {}
        if self.kind == "npy":
            self.out = AtomicOutput(path)
            self.array = np.lib.format.open_memmap(self.out.tmp, mode="w+", dtype=np.float32,
                                                   shape=(total, spec.dim))  # (positions, F)

    def write(self, rows: EmbeddedRows) -> None:
        ids = rows.columns["id"]
        for i, tok in enumerate(rows.tokens):
            if self.kind == "npy":
                self.array[self.offset : self.offset + len(tok)] = tok
            else:
                if ids[i] in self.tensors:
                    raise InputFileError(f"sequence id {ids[i]} appears twice; .safetensors needs unique ids")
                self.tensors[ids[i]] = tok
            for k, v in rows.columns.items():
                self.index.setdefault(k, []).append(v[i])
            self.index.setdefault("offset", []).append(self.offset)
            self.offset += len(tok)

    def close(self, ok: bool) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.kind == "npy":
            self.array.flush()
            del self.array
            if not ok:
                self.out.abort()
                return
            self.out.commit()
            meta = {META_KEY: json.dumps(self.spec.to_dict()).encode()}
            pq.write_table(pa.table(self.index).replace_schema_metadata(meta), index_path(self.path))
        elif ok:
            from safetensors.numpy import save_file

            save_file(self.tensors, self.path, metadata={"caduceus": json.dumps(self.spec.to_dict())})


def index_path(npy_path: str) -> str:
    return str(Path(npy_path).with_suffix("")) + ".index.parquet"


def read_embeddings(path: str) -> tuple[dict[str, list], np.ndarray, EmbeddingSpec]:
    """(columns, embedding matrix (n, dim) with NaN rows for nulls, spec) of an embed Parquet file."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except OSError as exc:
        raise InputFileError(f"{path}: not a readable Parquet file ({exc})") from exc
    meta = (table.schema.metadata or {}).get(META_KEY)
    if meta is None or "embedding" not in table.column_names:
        raise InputFileError(f"{path}: not written by `caduceus embed` (no embedding column or caduceus metadata)")
    spec = EmbeddingSpec.from_dict(json.loads(meta))
    emb = table.column("embedding").combine_chunks()
    X = np.full((len(table), spec.dim), np.nan, np.float32)
    valid = ~np.asarray(emb.is_null().to_numpy(zero_copy_only=False))
    if valid.any():
        X[valid] = np.asarray(emb.filter(valid).flatten().to_numpy(), np.float32).reshape(-1, spec.dim)  # (n_valid, dim)
    cols = {k: table.column(k).to_pylist() for k in table.column_names if k != "embedding"}
    return cols, X, spec


def embed(input_path: str, out: str, model_source: str | None = None, ref: str | None = None,
          opts: EmbedOptions = EmbedOptions(), bed: bool = False,
          progress: Callable[[int], None] | None = None) -> dict:
    """Embed a FASTA, a BED (with ``ref``), a VCF or a variant table (with ``ref``); returns a summary."""
    if input_path != "-" and not Path(input_path).exists():
        raise InputFileError(f"{input_path}: no such input file")
    kind = input_kind(input_path, bed)
    is_variant = kind.startswith("variant")
    pool = opts.pool or ("centre" if is_variant else "mean")
    if is_variant and pool == "none":
        raise OptionError("--pool none is for sequences and regions; variants are pooled around the variant")
    embedder = Embedder(model_source, opts, ref)
    spec = embedder.spec("variant" if is_variant else kind, pool)
    if is_variant and pool == "mean":  # the whole window around the variant
        embedder.opts = opts = replace(opts, flank=embedder.W)
        spec = embedder.spec("variant", pool)
    if kind == "variant-table":
        chunks = iter([embedder.embed_table(load_table(input_path, opts, need_label=False), progress)])
    elif kind == "variant-vcf":
        chunks = embedder.embed_vcf(input_path, progress)
    else:
        items = embedder.bed_items(input_path) if kind == "region" else embedder.fasta_items(input_path)
        chunks = embedder.embed_sequences(items, pool, progress)
    if pool == "none":
        total = sum(len(s) for _, s in (embedder.bed_items(input_path) if kind == "region" else iter_fasta(input_path)))
        sink: ParquetSink | TokenSink = TokenSink(out, spec, total)
    else:
        sink = ParquetSink(out, spec)
    ok = False
    rows = 0
    try:
        for chunk in chunks:
            sink.write(chunk)
            rows += len(chunk.embedding)
        ok = True
    finally:
        sink.close(ok)
        embedder.close()
    log.info("embedded %d rows from %s into %s", rows, input_path, out)
    return {"rows": rows, "kind": kind, "pool": pool, "dim": spec.dim, "window": spec.window,
            "windows_run": embedder.engine.windows_run, "output": out}
