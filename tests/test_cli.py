import subprocess
import sys

from caduceus_cli import __version__
from tests.conftest import GOLDEN


def run(*args):
    return subprocess.run([sys.executable, "-m", "caduceus_cli.cli", *args], capture_output=True, text=True)


def test_version_and_help():
    p = run("--version")
    assert p.returncode == 0 and p.stdout.strip() == f"caduceus {__version__}"
    h = run("--help")
    assert h.returncode == 0
    for cmd in ("score-vcf", "pretrain", "info", "embed", "finetune"):
        assert cmd in h.stdout
    sh = run("score-vcf", "--help")
    assert "Examples" in sh.stdout and "--window" in sh.stdout


def test_info_and_model_errors():
    p = run("info", str(GOLDEN / "caduceus_ps_d64_n2"))
    assert p.returncode == 0 and "Caduceus-PS" in p.stdout and "weights_sha256" in p.stdout
    bad = run("info", "/no/such/model")
    assert bad.returncode == 5 and "no such model directory" in bad.stderr and "Traceback" not in bad.stderr


def test_default_model_is_shipped():
    p = run("info")
    assert p.returncode == 0 and "training_length\t1024" in p.stdout


def test_embed_finetune_score_vcf_pipeline_on_the_example(tmp_path):
    """The README's three commands (on the first 120 labelled SNVs, one seed, to keep CI short)."""
    from pathlib import Path

    ex = Path(__file__).parents[1] / "examples"
    table = tmp_path / "snvs.tsv"
    table.write_text("\n".join((ex / "chr22_labelled_snvs.tsv").read_text().splitlines()[:121]) + "\n")
    ref = str(ex / "chr22_slice.fa.gz")
    e = run("embed", str(table), "--ref", ref, "--window", "256", "--flank", "64", "-o", str(tmp_path / "e.parquet"))
    assert e.returncode == 0, e.stderr
    assert "120 rows (variant-table, pool centre, dim 256, window 256)" in " ".join(e.stderr.split())
    f = run("finetune", "--method", "probe", str(tmp_path / "e.parquet"), "--split", "cv", "--seeds", "1",
            "--bootstrap", "50", "-o", str(tmp_path / "probe"))
    assert f.returncode == 0, f.stderr
    assert "AUROC" in f.stderr and (tmp_path / "probe" / "metrics.json").exists()
    s = run("score-vcf", str(ex / "chr22_example.vcf.gz"), "--ref", ref, "--probe", str(tmp_path / "probe" / "probe.joblib"),
            "-o", "-", "-O", "tsv", "-q")
    assert s.returncode == 0, s.stderr
    rows = [line.split("\t") for line in s.stdout.splitlines() if not line.startswith("#")]
    assert rows[0][-1] == "CAD_PROB" and len(rows) == 51
    assert all(0.0 <= float(r[-1]) <= 1.0 for r in rows[1:])
    # a bad table: one line naming file and row, exit code 7, no traceback
    bad = tmp_path / "bad.tsv"
    bad.write_text("chromosome\tposition\tref\talt\tlabel\nchr22\t20000950\tA\tG\t1\n")
    b = run("finetune", str(bad), "--ref", ref, "-o", str(tmp_path / "o"))
    assert b.returncode == 7 and "bad.tsv: row 1 (chr22:20000950 A>G): REF does not match" in " ".join(b.stderr.split())
    assert "Traceback" not in b.stderr
    m = run("finetune", "--method", "full", str(bad), "-o", str(tmp_path / "o"))
    assert m.returncode == 2 and "--method full" in m.stderr
