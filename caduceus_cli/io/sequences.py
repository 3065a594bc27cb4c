"""Labelled (or unlabelled) sequences for fine-tuning and prediction: (name, sequence, label, split) records.

Inputs, by file name:

- a table (``.csv``, ``.tsv``/``.txt``/``.tab``, ``.parquet``; optionally ``.gz``) with a ``sequence``
  column, the label column(s) (default ``label``), optionally ``split`` and ``name`` (or ``id``);
- a BED file (with a reference FASTA): ``chrom start end [name] [label...] [split]``, 0-based half-open;
  one label column per label name, then an optional split column;
- a FASTA whose record names carry the label: ``>NAME|LABEL`` or ``>NAME|LABEL|SPLIT`` (several
  regression targets: ``>NAME|1.5,0.2``). Unlabelled FASTA records (prediction) keep their whole name.

Labels are kept as text here; the fine-tuning pipeline turns them into classes or numbers.
Splits are ``train``, ``validation`` or ``test`` (``val``, ``valid``, ``dev``, ``testing``,
``training`` accepted); ``make_splits`` draws them (stratified, seeded) when the input has none.
"""

from __future__ import annotations

import gzip
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from caduceus_cli.errors import InputFileError, TableError
from caduceus_cli.io.coords import Interval0
from caduceus_cli.io.reference import Reference, iter_fasta

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
_SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "validation": "validation",
    "val": "validation",
    "valid": "validation",
    "dev": "validation",
    "test": "test",
    "testing": "test",
}
_SEQ_COLUMNS = ("sequence", "seq", "Sequence", "SEQUENCE")
_NAME_COLUMNS = ("name", "id", "ID", "Name", "seq_id")


@dataclass(frozen=True)
class SeqRecord:
    """One input sequence: ``label`` holds one text value per label column (None when unlabelled)."""

    name: str
    seq: str
    label: tuple[str, ...] | None = None
    split: str | None = None


def sequence_input_kind(path: str, bed: bool = False) -> str:
    """'bed', 'fasta' or 'table' from the file name (``bed`` forces BED)."""
    low = path.lower().removesuffix(".gz").removesuffix(".bgz")
    if bed or low.endswith(".bed"):
        return "bed"
    if low.endswith((".fa", ".fasta", ".fna", ".fas")):
        return "fasta"
    if low.endswith((".csv", ".tsv", ".txt", ".tab", ".parquet", ".pq")):
        return "table"
    raise InputFileError(
        f"{path}: unknown input type; use a table (.csv/.tsv/.parquet with a sequence column), "
        "a BED file (with --ref) or a FASTA"
    )


def normalise_split(where: str, value) -> str | None:
    if value is None or str(value).strip() in ("", ".", "NA", "nan", "None"):
        return None
    s = _SPLIT_ALIASES.get(str(value).strip().lower())
    if s is None:
        raise TableError(f"{where}: split {value!r} is not one of train, validation, test")
    return s


def read_sequences(
    path: str,
    ref: str | None = None,
    label_columns: Sequence[str] = ("label",),
    need_label: bool = True,
    bed: bool = False,
    renames: dict[str, str] | None = None,
) -> list[SeqRecord]:
    """Records of a table, BED (+ ``ref``) or FASTA, in file order; errors name the file and row."""
    if not Path(path).exists():
        raise InputFileError(f"{path}: no such input file")
    kind = sequence_input_kind(path, bed)
    if kind == "table":
        records = _read_table(path, tuple(label_columns), need_label)
    elif kind == "bed":
        if ref is None:
            raise InputFileError(f"{path}: BED regions need the reference genome: pass --ref FASTA")
        records = _read_bed(path, ref, len(label_columns), need_label, renames)
    else:
        records = _read_fasta(path, need_label)
    if not records:
        raise TableError(f"{path}: no sequences")
    log.info("%s: %d sequences (%s)", path, len(records), kind)
    return records


def _read_table(path: str, label_columns: tuple[str, ...], need_label: bool) -> list[SeqRecord]:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    low = path.lower().removesuffix(".gz")
    try:
        if low.endswith((".parquet", ".pq")):
            table = pq.read_table(path)
        else:
            table = pacsv.read_csv(
                path,
                parse_options=pacsv.ParseOptions(delimiter="," if low.endswith(".csv") else "\t"),
                convert_options=pacsv.ConvertOptions(strings_can_be_null=True),
            )
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputFileError(f"{path}: cannot read the table ({str(exc).splitlines()[0]})") from exc
    cols = {name: table.column(name).to_pylist() for name in table.column_names}
    seq_col = next((c for c in _SEQ_COLUMNS if c in cols), None)
    if seq_col is None:
        raise TableError(f"{path}: no sequence column (found: {', '.join(cols) or 'none'}); name it 'sequence'")
    missing = [c for c in label_columns if c not in cols]
    if need_label and missing:
        raise TableError(
            f"{path}: missing label column(s) {', '.join(missing)} (found: {', '.join(cols)}); "
            "name them with --labels COL[,COL...]"
        )
    has_label = not missing
    name_col = next((c for c in _NAME_COLUMNS if c in cols), None)
    out = []
    for i, seq in enumerate(cols[seq_col]):
        where = f"{path}: row {i + 1}"
        if not seq:
            raise TableError(f"{where}: empty sequence")
        label = None
        if has_label:
            label = tuple("" if cols[c][i] is None else str(cols[c][i]).strip() for c in label_columns)
            if need_label and any(x == "" for x in label):
                raise TableError(f"{where}: empty label")
        split = normalise_split(where, cols["split"][i]) if "split" in cols else None
        name = str(cols[name_col][i]) if name_col and cols[name_col][i] is not None else f"row{i + 1}"
        out.append(SeqRecord(name, str(seq).strip().upper(), label, split))
    return out


def _read_bed(path: str, ref: str, n_labels: int, need_label: bool, renames: dict[str, str] | None) -> list[SeqRecord]:
    reference = Reference(ref, renames)
    opener = gzip.open if path.endswith(".gz") else open
    out = []
    try:
        with opener(path, "rt") as fh:
            for i, line in enumerate(fh, 1):
                if not line.strip() or line.startswith(("#", "track", "browser")):
                    continue
                f = line.rstrip("\n").split("\t")
                where = f"{path}:{i}"
                try:
                    iv = Interval0(f[0], int(f[1]), int(f[2]), f[3] if len(f) > 3 and f[3] not in ("", ".") else None)
                except (IndexError, ValueError) as exc:
                    raise InputFileError(f"{where}: expected tab-separated chrom, start, end (0-based BED)") from exc
                if iv.start < 0 or iv.end <= iv.start:
                    raise InputFileError(f"{where}: interval {f[0]}:{f[1]}-{f[2]} is empty or negative")
                rest = f[4:]
                label = tuple(x.strip() for x in rest[:n_labels]) if len(rest) >= n_labels else None
                if need_label and (label is None or any(x == "" for x in label)):
                    raise TableError(f"{where}: expected {n_labels} label column(s) after chrom, start, end, name")
                split = normalise_split(where, rest[n_labels]) if len(rest) > n_labels else None
                out.append(SeqRecord(iv.label(), reference.region(iv, where), label, split))
    finally:
        reference.close()
    return out


def _read_fasta(path: str, need_label: bool) -> list[SeqRecord]:
    out = []
    for i, (name, seq) in enumerate(iter_fasta(path), 1):
        parts = name.split("|")
        if len(parts) < 2:
            if need_label:
                raise TableError(
                    f"{path}: record {i} ({name}): no label in the record name; write >NAME|LABEL or >NAME|LABEL|SPLIT"
                )
            out.append(SeqRecord(name, seq.upper()))
            continue
        where = f"{path}: record {i} ({name})"
        label = tuple(x.strip() for x in parts[1].split(","))
        split = normalise_split(where, parts[2]) if len(parts) > 2 else None
        out.append(SeqRecord(parts[0], seq.upper(), label, split))
    return out


def make_splits(strata: Sequence, val_frac: float, test_frac: float, seed: int) -> list[str]:
    """A split per row: within each stratum (class; one stratum for regression) a seeded shuffle, then
    ``test_frac`` to test, ``val_frac`` to validation, the rest to train (at least one row each where possible)."""
    if val_frac < 0 or test_frac < 0 or val_frac + test_frac >= 1:
        raise TableError(f"--val-frac {val_frac} and --test-frac {test_frac}: each >= 0, together < 1")
    rng = np.random.default_rng(seed)
    out = ["train"] * len(strata)
    groups: dict = {}
    for i, s in enumerate(strata):
        groups.setdefault(s, []).append(i)
    for key in sorted(groups, key=str):
        idx = np.array(groups[key])
        rng.shuffle(idx)
        n = len(idx)
        n_test = int(round(test_frac * n)) if n >= 3 or test_frac == 0 else 0
        n_val = int(round(val_frac * n)) if n >= 3 or val_frac == 0 else 0
        if test_frac > 0 and n >= 3:
            n_test = max(1, n_test)
        if val_frac > 0 and n >= 3:
            n_val = max(1, n_val)
        for j in idx[:n_test]:
            out[j] = "test"
        for j in idx[n_test : n_test + n_val]:
            out[j] = "validation"
    return out
