"""What users see, pinned: the README examples and the test VCFs run through the CLI.

``run_cases(workdir)`` runs each case and returns {name: normalised bytes}; the
expected bytes live in ``tests/data/pinned/NAME.gz`` and are (re)written only by
``python -m tests.pinned --write [NAME ...]`` (run it when an output is meant to change, and
say why in the commit). Normalisation removes only what depends on where the run
happens: the checkout's path and the temporary folder. VCF/TSV outputs are compared
as decompressed text; embed's Parquet as its columns, summary statistics of its float32
embeddings (6 significant digits) and its metadata; finetune's metrics.json and
predictions.tsv as written.

``compare(name, expected, got)`` is the check: identical bytes pass at once; otherwise the
texts must have the same lines, the same text between numbers, the same integers, and
floats equal within float-rounding noise (``DEFAULT_TOL``, ``FIELD_TOL``, ``CASE_TOL``).
The last printed digit of a float32 result legitimately differs between CPUs: MKL, oneDNN
and numba pick CPU-specific vector paths, so sums run in another order.
"""

from __future__ import annotations

import difflib
import gzip
import json
import math
import re
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


def _floats(values) -> str:
    return "[" + ", ".join("null" if v is None else f"{v:.6g}" for v in values) + "]"


def _parquet(path: Path) -> bytes:
    """Columns as JSON lines, the embedding as summary statistics, the metadata as JSON.

    The float32 embedding bytes depend on the CPU (summation order), so they are pinned as
    statistics printed with 6 significant digits, compared within ``FIELD_TOL``: per column
    the mean and the root mean square over the non-null rows; per row (null for a null row)
    the projection on a fixed unit direction (r_j = frac(j / golden ratio) - 0.5, normalised:
    plain IEEE arithmetic, the same everywhere), so a change in any one row shows. Statistics
    are computed in float64.
    """
    import numpy as np
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    meta = json.loads(table.schema.metadata[b"caduceus"])
    lines = [json.dumps(meta, sort_keys=True)]
    for name in table.column_names:
        if name == "embedding":
            emb = table.column(name).combine_chunks()
            valid = emb.is_valid()
            n_valid = len(emb) - emb.null_count
            flat = np.asarray(emb.filter(valid).flatten().to_numpy(), np.float64)
            dim = flat.size // n_valid if n_valid else 0
            rows = flat.reshape(n_valid, dim)
            lines.append(f"embedding {len(emb)} rows, nulls {emb.null_count}, dim {dim}")
            if n_valid:
                direction = np.arange(dim, dtype=np.float64) * 0.6180339887498949 % 1.0 - 0.5
                proj = iter((rows @ (direction / np.linalg.norm(direction))).tolist())
                lines.append(f"embedding col_mean={_floats(rows.mean(axis=0).tolist())}")
                lines.append(f"embedding col_rms={_floats(np.sqrt((rows**2).mean(axis=0)).tolist())}")
                ok = valid.to_numpy(zero_copy_only=False)
                lines.append(f"embedding row_proj={_floats(next(proj) if v else None for v in ok)}")
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


# --- comparison ------------------------------------------------------------------------------

# A number standing alone (not part of a word such as chr22, rs123, HG00096, a hex digest or a
# version 0.1.0): sign, digits, optional fraction, optional exponent.
NUMBER = re.compile(r"(?<![\w.])([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(?![\w.])")
INTEGER = re.compile(r"[-+]?\d+")
KEY = re.compile(r"([A-Za-z_]\w*)(?:=|\": )")  # VCF INFO KEY=, JSON "key":

# (rtol, atol): a float passes when |got - pinned| <= atol + rtol * max(|got|, |pinned|).
# Integers (no '.', no exponent: positions, counts, QUAL, labels) always compare exactly.
#
# Default rtol 1e-4: values are printed with 6 significant digits (%.6g) from float32 results,
# so one unit in the last digit is a relative 1e-6 .. 1e-5, and a different summation order moves
# a float32 result by a few ulp (1e-7 .. 1e-6 relative). Measured between an AVX-512 EPYC and
# the machine that wrote the pinned files: CAD_COS 2.7e-5, CAD_PROB 1.2e-5 relative at most, so
# 1e-4 leaves a margin of ~4x while a 0.1% change still fails. No absolute slack by default:
# small values must keep being compared relatively; fields whose noise is absolute get theirs below.
DEFAULT_TOL = (1e-4, 0.0)
# The probe is a logistic regression fitted by lbfgs to tol=1e-4 on those embeddings: noise in
# the features moves where the optimiser stops, so its decision values move by up to ~3e-4
# (measured; 2.40458 vs 2.4043, -0.0394864 vs -0.0395803), and rank metrics (AUROC of ~50-row
# folds) by one swapped pair at most (~2e-3). 1e-3 absolute + 1e-3 relative is ~4-10x that.
PROBE_TOL = (1e-3, 1e-3)
# Per field: the INFO key (KEY=...) or the TSV column the number is in.
FIELD_TOL: dict[str, tuple[float, float]] = {
    # log P(alt) - log P(ref): a difference of float32 log-probabilities of size ~1-10, so the noise
    # is absolute (measured 3e-6 on -0.0134931 vs -0.0134902); 2e-5 absolute is ~10x that.
    "CAD_LLR": (1e-4, 2e-5),
    # |a/|a| - b/|b||^2 / 2 of near-equal embeddings: noise e moves it by ~sqrt(2 d) * e, so the
    # relative noise grows as d shrinks (pinned values reach 5e-9). Measured |diff| 1.6e-11 at
    # 6e-7; 1e-10 absolute covers that 6x and is still ~2% of the smallest pinned distance.
    "CAD_COS": (1e-4, 1e-10),
    "CAD_PROB": PROBE_TOL,
    # embedding statistics that may sit near zero (sums of signed terms of size ~0.5-2).
    "col_mean": (1e-4, 1e-5),
    "row_proj": (1e-4, 1e-5),
}
CASE_TOL: dict[str, tuple[float, float]] = {
    "probe_metrics.json": PROBE_TOL,
    "probe_predictions.tsv": PROBE_TOL,
}


def _split(line: str) -> tuple[list[str], list[re.Match]]:
    """The text between numbers and the numbers' matches."""
    return NUMBER.split(line)[::2], list(NUMBER.finditer(line))


def _is_header(line: str) -> bool:
    return line.count("\t") >= 2 and not NUMBER.search(line)


def _label(line: str, m: re.Match, header: list[str] | None) -> str | None:
    """The key (KEY= or JSON "key":) before the number within its tab field, else the header's name for that field."""
    start = line.rfind("\t", 0, m.start()) + 1
    keys = KEY.findall(line, start, m.start())
    if keys:
        return keys[-1]
    col = line.count("\t", 0, m.start())
    return header[col] if header and col < len(header) else None


def _clip(text: str, at: int, width: int = 240) -> str:
    lo = max(0, at - width // 3)
    return ("..." if lo else "") + text[lo : lo + width] + ("..." if lo + width < len(text) else "")


def _first_diff(a: str, b: str) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def compare(name: str, expected: bytes, got: bytes, max_lines: int = 10) -> str | None:
    """None when ``got`` matches the pinned ``expected`` (see the module docstring), else why not."""
    if got == expected:
        return None
    exp, now = expected.decode().split("\n"), got.decode().split("\n")
    if len(exp) != len(now):
        diff = difflib.unified_diff(exp, now, "pinned", "now", lineterm="", n=0)
        shown = [_clip(d, 0) for d in list(diff)[: 4 * max_lines]]
        return f"{name}: {len(exp)} lines pinned, {len(now)} now:\n" + "\n".join(shown)
    default = CASE_TOL.get(name, DEFAULT_TOL)
    header: list[str] | None = None
    bad: list[tuple[int, str]] = []  # (line index, why)
    worst: tuple[float, str] | None = None  # (deviation / allowed, description)
    for i, (a, b) in enumerate(zip(exp, now, strict=True)):
        if _is_header(a):
            header = a.lstrip("#").split("\t")
        if a == b:
            continue
        (text_a, nums_a), (text_b, nums_b) = _split(a), _split(b)
        if text_a != text_b:
            bad.append((i, "text differs"))
            continue
        why = None
        for ma, mb in zip(nums_a, nums_b, strict=True):
            x, y = ma.group(), mb.group()
            if x == y:
                continue
            label = _label(a, ma, header)
            if INTEGER.fullmatch(x) and INTEGER.fullmatch(y):
                why = why or f"{label or 'integer'} {x} -> {y} (integers compare exactly)"
                continue
            fx, fy = float(x), float(y)
            rtol, atol = FIELD_TOL.get(label or "", default)
            allowed = atol + rtol * max(abs(fx), abs(fy))
            dev = abs(fx - fy)
            ratio = dev / allowed if allowed else math.inf
            if worst is None or ratio > worst[0]:
                rel = dev / max(abs(fx), abs(fy))
                worst = (
                    ratio,
                    f"line {i + 1} ({label or '?'}): pinned {x}, now {y}: |diff| {dev:.3g}, relative {rel:.3g}, "
                    f"allowed {allowed:.3g} (rtol {rtol:g}, atol {atol:g})",
                )
            if ratio > 1:
                why = why or f"{label or 'number'} {x} -> {y} beyond tolerance"
        if why:
            bad.append((i, why))
    if not bad:
        return None
    out = [
        f"{name} changed: {len(bad)} of {len(exp)} lines differ beyond float-rounding noise",
        "--- pinned",
        "+++ now",
    ]
    for i, why in bad[:max_lines]:
        at = _first_diff(exp[i], now[i])
        out += [f"@@ -{i + 1} +{i + 1} @@ {why}", "-" + _clip(exp[i], at), "+" + _clip(now[i], at)]
    if len(bad) > max_lines:
        out.append(f"... and {len(bad) - max_lines} more lines")
    out.append("largest numeric deviation: " + (worst[1] if worst else "none (only text/integers differ)"))
    return "\n".join(out)


def main() -> None:
    import tempfile

    args = sys.argv[1:]
    if "--write" not in args:
        raise SystemExit(
            "usage: python -m tests.pinned --write [NAME ...]   (rewrites tests/data/pinned/, all cases or NAMEs)"
        )
    names = [a for a in args if a != "--write"] or None
    unknown = set(names or ()) - set(CASES)
    if unknown:
        raise SystemExit(f"unknown case(s): {', '.join(sorted(unknown))}; cases: {', '.join(CASES)}")
    PINNED.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in run_cases(Path(tmp), names).items():
            with gzip.GzipFile(PINNED / f"{name}.gz", "wb", mtime=0) as fh:
                fh.write(data)
            print(f"{name}: {len(data):,} bytes")


if __name__ == "__main__":
    main()
