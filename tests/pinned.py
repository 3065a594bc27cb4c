"""What users see, pinned: the README examples and the test VCFs run through the CLI.

``run_cases(workdir)`` runs each case and returns {name: normalised bytes}; the
expected bytes live in ``tests/data/pinned/NAME.gz`` and are (re)written only by
``python -m tests.pinned --write`` (run it when an output is meant to change, and
say why in the commit). Normalisation removes only what depends on where the run
happens: the checkout's path and the temporary folder. VCF/TSV outputs are compared
as decompressed text; embed's Parquet as its columns, its float32 embedding bytes
and its metadata; finetune's metrics.json and predictions.tsv as written.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PINNED = ROOT / "tests" / "data" / "pinned"
EX = "examples"
DATA = "tests/data"
PS = f"{DATA}/golden/caduceus_ps_d64_n2"
PH = f"{DATA}/golden/caduceus_ph_d64_n2"

# name -> (CLI arguments with {out} for the output folder, the output file to read)
CASES: dict[str, tuple[list[str], str]] = {
    "quickstart.vcf": (
        ["score-vcf", f"{EX}/chr22_example.vcf.gz", "--ref", f"{EX}/chr22_slice.fa.gz", "-o", "{out}/scored.vcf.gz"],
        "scored.vcf.gz",
    ),
    "probe_embed.txt": (
        [
            "embed",
            f"{EX}/chr22_labelled_snvs.tsv",
            "--ref",
            f"{EX}/chr22_slice.fa.gz",
            "--window",
            "256",
            "--flank",
            "64",
            "-o",
            "{out}/snvs.parquet",
        ],
        "snvs.parquet",
    ),
    "probe_metrics.json": (
        ["finetune", "--method", "probe", "{out}/snvs.parquet", "--split", "cv", "-o", "{out}/probe_run"],
        "probe_run/metrics.json",
    ),
    "probe_predictions.tsv": ([], "probe_run/predictions.tsv"),  # written by the case above
    "probe_scored.vcf": (
        [
            "score-vcf",
            f"{EX}/chr22_example.vcf.gz",
            "--ref",
            f"{EX}/chr22_slice.fa.gz",
            "--probe",
            "{out}/probe_run/probe.joblib",
            "-o",
            "{out}/scored_probe.vcf.gz",
        ],
        "scored_probe.vcf.gz",
    ),
    "pysam20_ps.vcf": (
        [
            "score-vcf",
            f"{DATA}/chr20_pysam_20.vcf.gz",
            "--ref",
            f"{DATA}/chr20_slices.fa.gz",
            "--model",
            PS,
            "--window",
            "301",
            "--flank",
            "50",
            "-b",
            "16",
            "-o",
            "{out}/p.vcf.gz",
        ],
        "p.vcf.gz",
    ),
    "vt_indels_ps.tsv": (
        [
            "score-vcf",
            f"{DATA}/chr20_vt_indels.vcf.gz",
            "--ref",
            f"{DATA}/chr20_slices.fa.gz",
            "--model",
            PS,
            "--window",
            "301",
            "--flank",
            "50",
            "-o",
            "{out}/i.tsv",
        ],
        "i.tsv",
    ),
    "platypus_ps.bcf.vcf": (
        [
            "score-vcf",
            f"{DATA}/chr20_platypus_5.vcf.gz",
            "--ref",
            f"{DATA}/chr20_slices.fa.gz",
            "--model",
            PS,
            "--window",
            "128",
            "--flank",
            "20",
            "-b",
            "32",
            "-o",
            "{out}/pl.bcf",
        ],
        "pl.bcf",
    ),
    "donors10_ph.vcf": (
        [
            "score-vcf",
            f"{DATA}/chr22_10donors.vcf.gz",
            "--ref",
            f"{DATA}/chr22_slice.fa.gz",
            "--model",
            PH,
            "--window",
            "201",
            "--flank",
            "30",
            "-b",
            "32",
            "-o",
            "{out}/d.vcf",
        ],
        "d.vcf",
    ),
    "donors10_embed.txt": (
        [
            "embed",
            f"{DATA}/chr22_10donors.vcf.gz",
            "--ref",
            f"{DATA}/chr22_slice.fa.gz",
            "--model",
            PS,
            "--window",
            "128",
            "--flank",
            "16",
            "-b",
            "32",
            "-o",
            "{out}/d.parquet",
        ],
        "d.parquet",
    ),
}


def _cli(args: list[str]) -> None:
    p = subprocess.run([sys.executable, "-m", "caduceus_cli", *args], cwd=ROOT, capture_output=True, text=True)
    if p.returncode != 0:
        raise AssertionError(f"caduceus {' '.join(args)} failed ({p.returncode}):\n{p.stderr}")


def _text(path: Path) -> bytes:
    if path.suffix == ".bcf":
        import pysam

        with pysam.VariantFile(str(path)) as vf:
            return (str(vf.header) + "".join(str(r) for r in vf)).encode()
    raw = path.read_bytes()
    return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw


def _parquet(path: Path) -> bytes:
    """Columns as JSON lines, the embedding's float32 bytes as a sha256, the metadata as JSON."""
    import numpy as np
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    meta = json.loads(table.schema.metadata[b"caduceus"])
    lines = [json.dumps(meta, sort_keys=True)]
    for name in table.column_names:
        if name == "embedding":
            emb = table.column(name).combine_chunks()
            flat = np.asarray(emb.flatten().to_numpy(), np.float32)
            nulls = emb.is_null().to_numpy(zero_copy_only=False)
            lines.append(
                f"embedding {len(emb)} rows, nulls {int(nulls.sum())}, "
                f"sha256 {hashlib.sha256(flat.tobytes()).hexdigest()}"
            )
        else:
            lines.append(f"{name} {json.dumps(table.column(name).to_pylist())}")
    return ("\n".join(lines) + "\n").encode()


def run_cases(workdir: Path, names: list[str] | None = None) -> dict[str, bytes]:
    """Run the cases (in order; the probe cases depend on each other) and return their normalised outputs."""
    out: dict[str, bytes] = {}
    for name, (args, result) in CASES.items():
        if names is not None and name not in names:
            continue
        if args:
            _cli([a.replace("{out}", str(workdir)) for a in args])
        path = workdir / result
        data = _parquet(path) if path.suffix == ".parquet" else _text(path)
        out[name] = data.replace(str(workdir).encode(), b"<OUT>").replace(str(ROOT).encode(), b"<ROOT>")
    return out


def main() -> None:
    import tempfile

    if "--write" not in sys.argv:
        raise SystemExit("usage: python -m tests.pinned --write   (rewrites tests/data/pinned/)")
    PINNED.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in run_cases(Path(tmp)).items():
            with gzip.GzipFile(PINNED / f"{name}.gz", "wb", mtime=0) as fh:
                fh.write(data)
            print(f"{name}: {len(data):,} bytes")


if __name__ == "__main__":
    main()
