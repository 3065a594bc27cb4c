"""``caduceus doctor`` on the CPU: the torch backend, the shipped model's self-test, JSON, one-line
failures, and the mamba-ssm states (absent, installed without its CUDA scan, broken) from fake packages."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch

from caduceus_cli import __version__
from caduceus_cli.doctor import (
    MAMBA_ABSENT,
    MAMBA_BROKEN,
    MAMBA_NO_CUDA_SCAN,
    collect_mamba,
    run_doctor,
)
from caduceus_cli.kernels import backend as backend_mod

cpu_only = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU report")
no_real_mamba = pytest.mark.skipif(
    any(importlib.util.find_spec(m) for m in ("mamba_ssm", "selective_scan_cuda")),
    reason="fake mamba-ssm installs need a machine without the real one",
)


def run(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "caduceus_cli", *args], capture_output=True, text=True, env={**os.environ, **(env or {})}
    )


@cpu_only
def test_doctor_reports_the_torch_backend_and_the_self_test_passes():
    report = run_doctor()
    assert report.backend.backend == "torch" and report.backend.device == "cpu"
    assert "no CUDA GPU" in report.backend.reason
    assert report.versions.caduceus == __version__ and report.versions.torch == torch.__version__
    if importlib.util.find_spec("mamba_ssm") is None:
        assert report.mamba.state == MAMBA_ABSENT
    test = report.self_test
    assert test is not None and test.error is None, test
    assert test.model.endswith("caduceus-ps-hg-chr20-d128-n4") and test.length == 1024 and test.backend == "torch"
    checks = {c.name: c for c in test.checks}
    assert set(checks) == {"finite", "rc_equivariance"}  # no parity check without CUDA
    assert checks["rc_equivariance"].value is not None and checks["rc_equivariance"].value < 1e-4
    assert test.passed and report.healthy
    assert any("CPU" in h or "GPU" in h for h in report.hints)
    assert run_doctor(self_test=False).self_test is None


@cpu_only
def test_cli_json_is_the_report_on_stdout():
    p = run("doctor", "--json")
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    assert data["healthy"] is True and data["backend"]["backend"] == "torch"
    assert data["self_test"]["passed"] is True
    assert {c["name"] for c in data["self_test"]["checks"]} == {"finite", "rc_equivariance"}
    assert data["versions"]["caduceus"] == __version__
    assert "Traceback" not in p.stderr


def test_cli_failed_self_test_exits_1_with_a_one_line_verdict(tmp_path):
    p = run("doctor", env={"CADUCEUS_DEFAULT_MODEL": str(tmp_path / "no-model")})
    assert p.returncode == 1, p.stderr
    assert "Traceback" not in p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("doctor: self-test failed: ModelLoadError") and "no-model" in " ".join(p.stderr.split())
    table = run("doctor", "--no-self-test")
    assert table.returncode == 0 and table.stdout == ""
    assert "backend auto" in table.stderr and table.stderr.strip().splitlines()[-1].startswith("doctor: checked")
    bad = run("doctor", "--bogus")
    lines = bad.stderr.strip().splitlines()
    assert bad.returncode == 2 and len(lines) == 1 and "caduceus doctor --help" in lines[0]


@pytest.fixture
def fake_site(tmp_path, monkeypatch):
    """A folder on sys.path for fake mamba-ssm installs; module and backend caches restored after."""
    monkeypatch.syspath_prepend(str(tmp_path))
    backend_mod._cuda_kernels.cache_clear()
    yield tmp_path
    for name in [m for m in sys.modules if m.split(".")[0] in ("mamba_ssm", "selective_scan_cuda")]:
        del sys.modules[name]
    importlib.invalidate_caches()
    backend_mod._cuda_kernels.cache_clear()


def _fake_mamba(site, version: str, scan_module: str | None, dist_info: bool = True) -> None:
    """A mamba_ssm package whose __init__ imports the scan interface, as the real one does."""
    pkg = site / "mamba_ssm"
    (pkg / "ops").mkdir(parents=True)
    (pkg / "__init__.py").write_text(
        f"__version__ = {version!r}\nfrom mamba_ssm.ops.selective_scan_interface import selective_scan_fn\n"
    )
    (pkg / "ops" / "__init__.py").write_text("")
    (pkg / "ops" / "selective_scan_interface.py").write_text("import selective_scan_cuda\nselective_scan_fn = None\n")
    if dist_info:
        dist = site / f"mamba_ssm-{version}.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: mamba_ssm\nVersion: {version}\n")
    if scan_module is not None:
        (site / "selective_scan_cuda.py").write_text(scan_module)
    importlib.invalidate_caches()


@no_real_mamba
def test_mamba_without_its_cuda_scan_is_the_keep_cuda_build_case(fake_site):
    """mamba-ssm built without MAMBA_KEEP_CUDA_BUILD=TRUE: the package is there, selective_scan_cuda is not."""
    _fake_mamba(fake_site, "2.4.0", scan_module=None, dist_info=False)  # version read from its source
    state = collect_mamba("2.4.0")
    assert state.state == MAMBA_NO_CUDA_SCAN and not state.scan_extension
    assert "MAMBA_KEEP_CUDA_BUILD=TRUE" in state.detail and "2.4.0" in state.detail
    report = run_doctor(self_test=False)
    assert report.versions.mamba_ssm == "2.4.0" and report.mamba.state == MAMBA_NO_CUDA_SCAN
    assert report.backend.backend == "torch" and "MAMBA_KEEP_CUDA_BUILD" in report.backend.reason
    assert any("MAMBA_KEEP_CUDA_BUILD=TRUE" in h and "mamba-ssm==2.3.2.post1" in h for h in report.hints)


@no_real_mamba
def test_mamba_whose_extension_does_not_load_is_broken(fake_site):
    _fake_mamba(fake_site, "2.3.2.post1", scan_module="raise ImportError('undefined symbol: _ZN3c10')\n")
    state = collect_mamba("2.3.2.post1")
    assert state.state == MAMBA_BROKEN and "undefined symbol" in state.detail
    report = run_doctor(self_test=False)
    assert any("rebuild" in h for h in report.hints)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_doctor_on_a_gpu_checks_cuda_against_torch():
    from caduceus_cli.kernels.backend import available_backends

    report = run_doctor()
    assert report.device.cuda_available and report.device.gpus and report.backend.device == "cuda"
    assert report.self_test is not None and report.self_test.passed, report.self_test
    names = {c.name for c in report.self_test.checks}
    if available_backends()["cuda"]:  # no usable mamba-ssm: the torch backend on the GPU
        assert report.backend.backend == "torch" and names == {"finite", "rc_equivariance"}
    else:
        assert report.backend.backend == "cuda" and report.mamba.state == "ok"
        assert names == {"finite", "rc_equivariance", "cuda_vs_torch"}
