"""Labelled variant tables: CSV / TSV / Parquet (pyarrow) or a VCF with the label in INFO.

The public eQTL benchmark's column names are the defaults: ``chromosome``,
``position`` (1-based, as in VCF), ``ref``, ``alt``, ``label`` and optionally
``tissue`` and ``distance_to_nearest_tss``. ``--columns label=is_causal,...``
maps other names; a few common spellings (chrom, chr, pos, CHROM, POS, REF, ALT)
are recognised without a mapping. Every other column is carried through.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from caduceus_cli.errors import InputFileError, TableError
from caduceus_cli.io.variant import Variant

log = logging.getLogger(__name__)

REQUIRED = ("chromosome", "position", "ref", "alt")
OPTIONAL = ("label", "tissue", "distance_to_nearest_tss")
ALIASES = {
    "chromosome": ("chromosome", "chrom", "chr", "#chrom", "CHROM", "#CHROM", "contig"),
    "position": ("position", "pos", "POS", "pos1"),
    "ref": ("ref", "REF"),
    "alt": ("alt", "ALT"),
    "label": ("label",),
    "tissue": ("tissue",),
    "distance_to_nearest_tss": ("distance_to_nearest_tss", "tss_distance", "distance"),
}
_TRUE = {"1", "true", "yes", "y", "t", "causal", "positive"}
_FALSE = {"0", "false", "no", "n", "f", "non-causal", "negative"}


@dataclass
class VariantTable:
    """Rows in file order: ``variants[i]`` (its ``index`` is i) and ``columns[name][i]`` (standard names)."""

    path: str
    variants: list[Variant]
    columns: dict[str, list]

    def __len__(self) -> int:
        return len(self.variants)

    def where(self, i: int) -> str:
        v = self.variants[i]
        return f"{self.path}: row {i + 1} ({v.chrom}:{v.pos1} {v.ref}>{v.alts[0]})"


def parse_column_map(text: str | None) -> dict[str, str]:
    """``'label=is_causal,chromosome=chr'`` -> {'label': 'is_causal', 'chromosome': 'chr'}."""
    out: dict[str, str] = {}
    for part in filter(None, (text or "").split(",")):
        std, sep, col = part.partition("=")
        if not sep or std.strip() not in REQUIRED + OPTIONAL:
            raise TableError(
                f"--columns {part!r}: expected NAME=COLUMN with NAME one of {', '.join(REQUIRED + OPTIONAL)}"
            )
        out[std.strip()] = col.strip()
    return out


def table_format(path: str) -> str:
    name = path.lower().removesuffix(".gz")
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".vcf", ".bcf", ".vcf.bgz")):
        return "vcf"
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".tsv", ".txt", ".tab")):
        return "tsv"
    raise InputFileError(f"{path}: unknown table type; use .csv, .tsv, .parquet or a VCF (optionally .gz)")


def read_variant_table(
    path: str, column_map: dict[str, str] | None = None, label_field: str = "label", need_label: bool = True
) -> VariantTable:
    """Read and validate a variant table; errors name the file, the row and the fix."""
    if not Path(path).exists():
        raise InputFileError(f"{path}: no such variant table")
    fmt = table_format(path)
    raw = _read_vcf_columns(path, label_field) if fmt == "vcf" else _read_arrow_columns(path, fmt)
    names = _resolve_columns(path, raw, column_map or {}, need_label, fmt == "vcf")
    n = len(next(iter(raw.values()))) if raw else 0
    variants = []
    for i in range(n):
        chrom = str(raw[names["chromosome"]][i] or "").strip()
        pos = _position(path, i, raw[names["position"]][i])
        ref = str(raw[names["ref"]][i] or "").strip().upper()
        alt = str(raw[names["alt"]][i] or "").strip().upper()
        if not chrom or not ref or not alt:
            raise TableError(f"{path}: row {i + 1}: empty chromosome, ref or alt")
        ident = raw["id"][i] if "id" in raw else None
        variants.append(Variant(chrom, pos, ref, (alt,), str(ident) if ident not in (None, "") else None, i))
    columns = {std: raw[col] for std, col in names.items() if std not in REQUIRED}
    mapped = set(names.values())
    columns.update({k: v for k, v in raw.items() if k not in mapped and k not in columns})
    if "label" in columns:
        columns["label"] = [_label(path, i, x) for i, x in enumerate(columns["label"])]
    if "distance_to_nearest_tss" in columns:
        columns["distance_to_nearest_tss"] = [
            _number(path, i, x, "distance_to_nearest_tss") for i, x in enumerate(columns["distance_to_nearest_tss"])
        ]
    log.info("%s: %d variants; columns %s", path, n, ", ".join(columns))
    return VariantTable(path, variants, columns)


def _read_arrow_columns(path: str, fmt: str) -> dict[str, list]:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    try:
        if fmt == "parquet":
            table = pq.read_table(path)
        else:
            table = pacsv.read_csv(
                path,
                parse_options=pacsv.ParseOptions(delimiter="," if fmt == "csv" else "\t"),
                convert_options=pacsv.ConvertOptions(
                    strings_can_be_null=True,
                    column_types={"chromosome": pa.string(), "ref": pa.string(), "alt": pa.string()},
                ),
            )
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputFileError(f"{path}: cannot read the {fmt} table ({str(exc).splitlines()[0]})") from exc
    return {name: table.column(name).to_pylist() for name in table.column_names}


def _read_vcf_columns(path: str, label_field: str) -> dict[str, list]:
    from caduceus_cli.io.vcf import VariantReader  # pysam: only for VCF tables

    reader = VariantReader(path)
    cols: dict[str, list] = {k: [] for k in ("chromosome", "position", "ref", "alt", "id")}
    info_keys = [k for k in (label_field, "tissue", "distance_to_nearest_tss") if k in reader.header.info]
    extra: dict[str, list] = {k: [] for k in info_keys}
    try:
        for _, rec in reader:
            for alt in rec.alts or ("",):
                cols["chromosome"].append(rec.chrom)
                cols["position"].append(rec.pos)
                cols["ref"].append(rec.ref)
                cols["alt"].append(alt)
                cols["id"].append(rec.id)
                for k in info_keys:
                    value = rec.info.get(k)
                    extra[k].append(value[0] if isinstance(value, tuple) else value)
    finally:
        reader.close()
    if label_field in extra:
        extra["label"] = extra.pop(label_field)
    return cols | extra


def _resolve_columns(
    path: str, raw: dict[str, list], column_map: dict[str, str], need_label: bool, is_vcf: bool
) -> dict[str, str]:
    names: dict[str, str] = {}
    missing = []
    for std in REQUIRED + OPTIONAL:
        if std in column_map:
            if column_map[std] not in raw:
                raise TableError(
                    f"{path}: --columns maps {std} to {column_map[std]!r}, which is not a column "
                    f"(found: {', '.join(raw)})"
                )
            names[std] = column_map[std]
            continue
        found = next((a for a in ALIASES[std] if a in raw), None)
        if found:
            names[std] = found
        elif std in REQUIRED or (std == "label" and need_label):
            missing.append(std)
    if missing:
        fix = (
            "put the label in an INFO field and name it with --label-field"
            if is_vcf
            else f"map them with --columns {missing[0]}=YOUR_COLUMN"
        )
        raise TableError(f"{path}: missing column(s) {', '.join(missing)} (found: {', '.join(raw) or 'none'}); {fix}")
    return names


def _position(path: str, i: int, value) -> int:
    try:
        pos = int(value)
    except (TypeError, ValueError):
        pos = 0
    if pos < 1 or (isinstance(value, float) and not float(value).is_integer()):
        raise TableError(f"{path}: row {i + 1}: position {value!r} is not a 1-based integer")
    return pos


def _label(path: str, i: int, value) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float) and value in (0, 1):
        return int(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return 1
    if text in _FALSE:
        return 0
    raise TableError(f"{path}: row {i + 1}: label {value!r} is not binary (use 0/1 or true/false)")


def _number(path: str, i: int, value, name: str) -> float | None:
    if value is None or value == "" or value == ".":
        return None
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise TableError(f"{path}: row {i + 1}: {name} {value!r} is not a number") from exc
