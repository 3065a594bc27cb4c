"""embed's output files: Parquet rows, per-token .npy / .safetensors arrays, and reading them back.

Parquet: key columns (id / chrom, start, end / chrom, pos, ref, alt, flag, and
any label, tissue or distance columns carried from the input) plus ``embedding``,
a fixed-size float32 list (null where a variant was not embedded). The
embedding's spec (a dict: model, sha256, window, pooling, layer, RC mode, dim; see
``inference.spec.EmbeddingSpec``) is stored as JSON in the schema metadata under
``caduceus``; ``read_embedding_file`` returns it.

Per-token (``--pool none``): ``OUT.npy`` is one float32 array (total positions, F)
written through a memory map as sequences finish, with ``OUT.index.parquet``
giving each sequence's key columns, ``offset`` and ``length`` (rows
offset..offset+length-1). ``OUT.safetensors`` holds one (length, F) tensor per
sequence named by its id, written at the end (so it must fit in memory).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from caduceus_cli.errors import InputFileError, OptionError
from caduceus_cli.io.atomic import AtomicOutput

log = logging.getLogger(__name__)

META_KEY = b"caduceus"


@dataclass
class EmbeddedRows:
    """A chunk of output rows: key/carried columns and the embedding matrix (NaN rows = not embedded)."""

    columns: dict[str, list]
    embedding: np.ndarray  # (n, dim) float32
    tokens: list[np.ndarray] = field(default_factory=list)  # pool 'none': (length, F) per row


def is_embedding_file(path: str) -> bool:
    """A Parquet file written by ``caduceus embed`` (it carries the caduceus metadata)."""
    if not path.lower().endswith((".parquet", ".pq")):
        return False
    import pyarrow.parquet as pq

    try:
        return META_KEY in (pq.read_schema(path).metadata or {})
    except OSError:
        return False


def spec_metadata(spec: dict) -> dict[bytes, bytes]:
    """The Parquet schema metadata that carries an embedding's spec."""
    return {META_KEY: json.dumps(spec).encode()}


class ParquetSink:
    """Streams ``EmbeddedRows`` chunks into one Parquet file (one row group per chunk), atomically.

    ``keys``: the key columns and their Arrow type names (``"string"``, ``"int64"``), written when no
    row comes, so that an empty result has the columns a non-empty one would have."""

    def __init__(self, path: str, spec: dict, keys: dict[str, str] | None = None) -> None:
        if path == "-":
            raise OptionError("embed writes Parquet to a file: pass -o FILE.parquet")
        if not path.lower().endswith((".parquet", ".pq")):
            raise OptionError(
                f"-o {path}: embed writes Parquet here: name it FILE.parquet (with --pool none: .npy or .safetensors)"
            )
        self.out = AtomicOutput(path)
        self.spec = spec
        self.keys = keys or {}
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
            self.schema = _nullable_schema(table.schema).with_metadata(spec_metadata(self.spec))
            self.writer = pq.ParquetWriter(self.out.tmp, self.schema)
        self.writer.write_table(table.cast(self.schema))
        self.rows += n

    def close(self, ok: bool) -> None:
        # no rows: still a Parquet file, with the key columns, the embedding and the spec
        if self.writer is None and ok:
            import pyarrow as pa
            import pyarrow.parquet as pq

            emb = pa.FixedSizeListArray.from_arrays(pa.array([], pa.float32()), int(self.spec["dim"]))
            keys = {k: pa.array([], getattr(pa, t)()) for k, t in self.keys.items()}
            table = pa.table(keys | {"embedding": emb})
            pq.write_table(table.replace_schema_metadata(spec_metadata(self.spec)), self.out.tmp)
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

    def __init__(self, path: str, spec: dict, total: int) -> None:
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
            self.array = np.lib.format.open_memmap(
                self.out.tmp, mode="w+", dtype=np.float32, shape=(total, spec["dim"])
            )  # (positions, F)

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
            pq.write_table(
                pa.table(self.index).replace_schema_metadata(spec_metadata(self.spec)), index_path(self.path)
            )
        elif ok:
            from safetensors.numpy import save_file

            save_file(self.tensors, self.path, metadata={"caduceus": json.dumps(self.spec)})


def index_path(npy_path: str) -> str:
    return str(Path(npy_path).with_suffix("")) + ".index.parquet"


def read_embedding_file(path: str) -> tuple[dict[str, list], np.ndarray, dict]:
    """(columns, embedding matrix (n, dim) with NaN rows for nulls, spec dict) of an embed Parquet file."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except OSError as exc:
        raise InputFileError(f"{path}: not a readable Parquet file ({exc})") from exc
    meta = (table.schema.metadata or {}).get(META_KEY)
    if meta is None or "embedding" not in table.column_names:
        raise InputFileError(f"{path}: not written by `caduceus embed` (no embedding column or caduceus metadata)")
    spec = json.loads(meta)
    dim = int(spec["dim"])
    emb = table.column("embedding").combine_chunks()
    X = np.full((len(table), dim), np.nan, np.float32)
    valid = ~np.asarray(emb.is_null().to_numpy(zero_copy_only=False))
    if valid.any():
        X[valid] = np.asarray(emb.filter(valid).flatten().to_numpy(), np.float32).reshape(-1, dim)  # (n_valid, dim)
    cols = {k: table.column(k).to_pylist() for k in table.column_names if k != "embedding"}
    return cols, X, spec
