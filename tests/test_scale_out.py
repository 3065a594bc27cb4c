"""Scale-out through the CLI on the real chr22 10-donor calls: chunks + merge, SIGKILL + --resume, SIGTERM,
torchrun with two gloo processes and the Snakemake workflow each give the single run's body.

The small golden PS model at a 256 bp window keeps each run to seconds; --regions keeps a fifth of the
calls (and is itself under test)."""

from __future__ import annotations

import gzip
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
VCF = str(DATA / "chr22_10donors.vcf.gz")
REF = str(DATA / "chr22_slice.fa.gz")
MODEL = str(DATA / "golden" / "caduceus_ps_d64_n2")
REGION = "22:20000000-20060000"
BASE = ["--ref", REF, "--model", MODEL, "--window", "256", "--regions", REGION, "--windows", "shared"]
BASE += ["-b", "16", "--chunk-sites", "24", "--quiet"]
BIN = Path(sys.executable).parent


def caduceus(*args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    p = subprocess.run([sys.executable, "-m", "caduceus_cli", *args], capture_output=True, text=True, env=env, cwd=ROOT)
    if check:
        assert p.returncode == 0, p.stderr
    return p


def body(path: Path) -> list[str]:
    with gzip.open(path, "rt") if str(path).endswith(".gz") else open(path) as fh:
        return [line for line in fh if not line.startswith("#")]


def header(path: Path) -> list[str]:
    with gzip.open(path, "rt") as fh:
        return [line for line in fh if line.startswith("##") and "caduceus_command" not in line]


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Path:
    """One uninterrupted run (shared windows): the output every other layout must match."""
    out = tmp_path_factory.mktemp("single") / "single.vcf.gz"
    caduceus("score-vcf", VCF, *BASE, "-o", str(out))
    assert not Path(str(out) + ".caduceus-parts").exists()
    assert 150 < len(body(out)) < 250  # the region's records, all of them
    return out


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("shards")
    parts = [d / f"p{i}.vcf.gz" for i in (1, 2, 3)]
    for i, p in enumerate(parts, 1):
        caduceus("score-vcf", VCF, *BASE, "--chunk", f"{i}/3", "-o", str(p))
    return parts


def test_three_chunks_merge_to_the_single_run(single, shards, tmp_path):
    sizes = [len(body(p)) for p in shards]
    assert min(sizes) > 0 and max(sizes) - min(sizes) < 0.5 * max(sizes)  # balanced by record count
    merged = tmp_path / "merged.vcf.gz"
    caduceus("merge", str(shards[2]), str(shards[0]), str(shards[1]), "-o", str(merged))  # any order
    assert body(merged) == body(single)
    assert Path(str(merged) + ".tbi").exists()
    assert not any("caduceus_shard" in line for line in header(merged))
    assert [line for line in header(merged) if "caduceus_merged" not in line] == header(single)
    bcf = tmp_path / "merged.bcf"  # another format: the same records
    caduceus("merge", *map(str, shards), "-o", str(bcf))
    import pysam

    with pysam.VariantFile(str(bcf)) as a, pysam.VariantFile(str(merged)) as b:
        assert [str(r) for r in a] == [str(r) for r in b]


def test_merge_refuses_missing_foreign_and_repeated_shards(single, shards, tmp_path):
    foreign = tmp_path / "foreign.vcf.gz"
    caduceus("score-vcf", VCF, *BASE, "--chunk", "3/3", "--flank", "10", "-o", str(foreign))
    cut = tmp_path / "cut.vcf.gz"
    cut.write_bytes(shards[1].read_bytes()[: shards[1].stat().st_size // 2])
    text = gzip.decompress(shards[1].read_bytes())
    mid_line, short = tmp_path / "mid_line.vcf.gz", tmp_path / "short.vcf.gz"
    mid_line.write_bytes(gzip.compress(text[:-10]))  # readable, but the last record ends mid-line
    short.write_bytes(gzip.compress(text[: text.rstrip(b"\n").rindex(b"\n") + 1]))  # one whole record less
    out = str(tmp_path / "m.vcf.gz")
    cases = {
        "cut short": ([shards[0], cut, shards[2]], "score shard 2/3 again"),
        "cut mid-line": ([shards[0], mid_line, shards[2]], "the last line is cut short; score shard 2/3 again"),
        "a record short": ([shards[0], short, shards[2]], "it is incomplete; score shard 2/3 again"),
        "missing": ([shards[0], shards[2]], "shard 2/3 of run"),
        "foreign": ([*shards[:2], foreign], "shard of another run"),
        "repeated": ([shards[0], *shards], "is also given as"),
        "not a shard": ([shards[0], single], "not a shard"),
        "TSV out": (shards, "write the merge as the same"),
    }
    for name, (files, message) in cases.items():
        target = out.replace(".vcf.gz", ".tsv") if name == "TSV out" else out
        p = caduceus("merge", *map(str, files), "-o", target, check=False)
        assert p.returncode == 3 and message in " ".join(p.stderr.split()), (name, p.stderr)
        assert p.stderr.count("again") <= 1, (name, p.stderr)  # one message, not wrapped in another
        assert "Traceback" not in p.stderr and not Path(target).exists()


def _wait_for_parts(folder: Path, n: int, proc: subprocess.Popen, limit_s: float = 240) -> None:
    t0 = time.monotonic()
    while len(list(folder.glob("part-*.bgz"))) < n:
        assert proc.poll() is None, "the run ended before it could be interrupted"
        assert time.monotonic() - t0 < limit_s
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_interrupted_run_resumes_to_the_same_output(single, tmp_path, sig):
    out = tmp_path / "r.vcf.gz"
    folder = Path(str(out) + ".caduceus-parts")
    args = ["score-vcf", VCF, *BASE, "--checkpoint-every", "30", "-o", str(out)]
    proc = subprocess.Popen([sys.executable, "-m", "caduceus_cli", *args], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    _wait_for_parts(folder, 2, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    if sig == signal.SIGKILL:
        assert proc.returncode == -9
    else:  # stops at the next chunk, keeps what is done, says how to go on
        assert proc.returncode == 143 and "--resume" in err and "Traceback" not in err
    assert not out.exists()  # a killed run never leaves a complete-looking output
    done = len(list(folder.glob("part-*.bgz")))
    if sig == signal.SIGKILL:
        again = caduceus(*args, check=False)  # without --resume: refused, nothing lost
        assert again.returncode == 3 and "--resume" in again.stderr
        other = caduceus(*args, "--resume", "--flank", "10", check=False)  # other options: refused
        assert other.returncode == 3 and "flank" in other.stderr
        chr20 = str(DATA / "chr20_slices.fa.gz")
        wrong_ref = caduceus(*[chr20 if a == REF else a for a in args], "--resume", check=False)
        assert wrong_ref.returncode == 3 and "reference" in wrong_ref.stderr
        assert len(list(folder.glob("part-*.bgz"))) == done
    caduceus(*args, "--resume")
    assert body(out) == body(single)
    assert header(out) == header(single)
    assert not folder.exists()


@pytest.mark.skipif(shutil.which("torchrun", path=str(BIN)) is None, reason="torchrun is not installed")
def test_torchrun_two_gloo_processes_give_the_single_run(single, tmp_path):
    out = tmp_path / "t.vcf.gz"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", "--no-python", str(BIN / "caduceus")]
    args = ["score-vcf", VCF, *BASE[:-1], "-o", str(out)]
    p = subprocess.run(cmd + args, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert body(out) == body(single)
    assert "rank 1/2 variants" in p.stderr and "rank 2/2 variants" in p.stderr  # per-rank lines, no TTY


@pytest.mark.skipif(shutil.which("snakemake", path=str(BIN)) is None, reason="snakemake is not installed")
def test_snakemake_workflow_scatter_score_merge(single, tmp_path):
    out = tmp_path / "results" / "donors.vcf.gz"
    config = [
        f"vcf={VCF}",
        f"ref={REF}",
        f"out={out}",
        "chunks=3",
        f"model={MODEL}",
        "window=256",
        f"extra=--regions {REGION} --windows shared -b 16 --chunk-sites 24",
        "threads=1",
        "gpus=0",
    ]
    cmd = [str(BIN / "snakemake"), "-s", str(ROOT / "workflows" / "snakemake" / "Snakefile"), "--cores", "2"]
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    p = subprocess.run(cmd + ["--config", *config], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert body(out) == body(single) and Path(str(out) + ".tbi").exists()
    logs = sorted((out.parent / "logs" / "donors").glob("*.log"))
    assert [x.name for x in logs] == ["merge.log", "score.part1.log", "score.part2.log", "score.part3.log"]
    assert not list(out.parent.glob(".donors.shards/*"))  # shards and their indexes are temp()
