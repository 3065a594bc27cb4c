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
    for cmd in ("score-vcf", "pretrain", "info"):
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
