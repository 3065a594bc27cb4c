import subprocess
import sys

import pytest

from caduceus_cli import __version__
from tests.conftest import GOLDEN


def run(*args):
    return subprocess.run([sys.executable, "-m", "caduceus_cli", *args], capture_output=True, text=True)


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


def test_table_errors_are_one_line_with_exit_code_7(tmp_path):
    """(The README's embed -> finetune -> score-vcf --probe run is pinned byte for byte in test_pinned_outputs.)"""
    from pathlib import Path

    ref = str(Path(__file__).parents[1] / "examples" / "chr22_slice.fa.gz")
    bad = tmp_path / "bad.tsv"
    bad.write_text("chromosome\tposition\tref\talt\tlabel\nchr22\t20000950\tA\tG\t1\n")
    b = run("finetune", str(bad), "--ref", ref, "-o", str(tmp_path / "o"))
    assert b.returncode == 7 and "bad.tsv: row 1 (chr22:20000950 A>G): REF does not match" in " ".join(b.stderr.split())
    assert "Traceback" not in b.stderr
    m = run("finetune", "--method", "full", str(bad), "-o", str(tmp_path / "o"))  # full wants sequences
    assert m.returncode == 7 and "bad.tsv: no sequence column" in m.stderr and "Traceback" not in m.stderr


def test_bad_choices_stop_with_one_line(tmp_path):
    """Choices are checked at the edge: the CLI and the library both refuse, in one line."""
    import pytest

    from caduceus_cli.errors import OptionError
    from caduceus_cli.pipelines.score_vcf import ScoreOptions, score_vcf
    from tests.conftest import DATA

    cases = [
        (["score-vcf", "x.vcf", "--ref", "y.fa", "--precision", "fp13"], "'fp13' is not one of 'auto', 'bf16', 'fp32'"),
        (["pretrain", "x.fa", "-o", str(tmp_path / "r"), "--variant", "XX"], "'XX' is not one of 'ps', 'ph'"),
        (["embed", "x.fa", "-o", "o.parquet", "--pool", "max"], "'max' is not one of 'mean', 'centre', 'none'"),
        (["score-vcf", "x.vcf"], "Missing option '--ref'"),
    ]
    for args, pattern in cases:
        p = run(*args)
        lines = p.stderr.strip().splitlines()
        assert p.returncode == 2 and len(lines) == 1 and pattern in lines[0], p.stderr
        assert lines[0].startswith("error: ") and f"caduceus {args[0]} --help" in lines[0]
    assert not (tmp_path / "r").exists()
    with pytest.raises(OptionError, match="--precision fp13: expected one of auto, bf16, fp32"):
        score_vcf(
            str(DATA / "chr20_pysam_20.vcf.gz"),
            str(DATA / "chr20_slices.fa.gz"),
            str(tmp_path / "o.vcf"),
            str(GOLDEN / "caduceus_ps_d64_n2"),
            ScoreOptions(precision="fp13"),
        )
    assert not (tmp_path / "o.vcf").exists()


def test_main_collects_rarely_while_it_runs_and_restores_the_thresholds(monkeypatch, capsys):
    import gc

    from caduceus_cli.cli import app as app_module

    threshold = gc.get_threshold()
    seen = []
    monkeypatch.setattr(app_module, "app", lambda **kw: seen.append(gc.get_threshold()[0]) or 0)
    with pytest.raises(SystemExit) as exc:
        app_module.main()
    assert exc.value.code == 0
    assert seen == [app_module.GC_GEN0_THRESHOLD]
    assert gc.get_threshold() == threshold


def test_the_heap_is_frozen_at_exit_after_the_callers_own_exit_handlers():
    # atexit runs handlers last-registered first: this probe, registered before main(), runs after main's
    code = (
        "import atexit, gc, sys\n"
        "atexit.register(lambda: print('frozen', gc.get_freeze_count() > 0))\n"
        "sys.argv = ['caduceus', '--version']\n"
        "from caduceus_cli.cli.app import main\n"
        "main()\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["caduceus", __version__, "frozen", "True"]
