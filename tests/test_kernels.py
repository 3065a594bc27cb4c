import pytest
import torch

from caduceus_cli.errors import BackendUnavailableError
from caduceus_cli.kernels.backend import available_backends, get_backend, resolve_backend
from caduceus_cli.kernels.scan_numba import numba_available, scan_cpu, selective_scan_numba
from caduceus_cli.kernels.scan_torch import causal_conv1d_ref, selective_scan_chunked, selective_scan_ref


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def scan_inputs(b, d, n, L, groups, seed):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    bshape = (b, n, L) if groups == 0 else (b, groups, n, L)
    return dict(
        u=r(b, d, L),
        delta=r(b, d, L),
        A=-torch.rand(d, n, generator=g) * 3,
        B=r(*bshape),
        C=r(*bshape),
        D=r(d),
        z=r(b, d, L),
        delta_bias=r(d),
        delta_softplus=True,
    )


@pytest.mark.parametrize("L,groups,seed", [(1, 0, 0), (37, 0, 1), (100, 2, 2), (257, 4, 3)])
def test_fast_scans_match_reference(L, groups, seed):
    args = scan_inputs(2, 16, 8, L, groups, seed)
    ref = selective_scan_ref(**args)
    assert rel(selective_scan_chunked(**args), ref) < 1e-5
    assert rel(selective_scan_chunked(**args, chunk=7), ref) < 1e-5
    if numba_available():
        assert rel(selective_scan_numba(**args), ref) < 1e-5


def test_scan_without_z_and_d():
    args = scan_inputs(1, 8, 4, 50, 0, 4)
    args.pop("z"), args.pop("D")
    ref = selective_scan_ref(**args)
    assert rel(selective_scan_chunked(**args), ref) < 1e-5
    assert rel(scan_cpu(**args), ref) < 1e-5


def test_scan_cpu_keeps_autograd():
    args = scan_inputs(1, 8, 4, 20, 0, 5)
    args["u"].requires_grad_(True)
    scan_cpu(**args).sum().backward()
    assert args["u"].grad is not None and torch.isfinite(args["u"].grad).all()


def test_chunked_scan_segments_carry_state(monkeypatch):
    import caduceus_cli.kernels.scan_torch as st

    monkeypatch.setattr(st, "_SEGMENT_BUDGET", 64)  # force many segments
    args = scan_inputs(1, 4, 4, 90, 0, 6)
    assert rel(st.selective_scan_chunked(**args, chunk=8), selective_scan_ref(**args)) < 1e-5


def test_causal_conv_is_causal():
    x = torch.randn(1, 3, 10)
    w, b = torch.randn(3, 4), torch.randn(3)
    y = causal_conv1d_ref(x, w, b)
    x2 = x.clone()
    x2[..., 6:] += 5.0
    assert torch.allclose(causal_conv1d_ref(x2, w, b)[..., :6], y[..., :6])
    # explicit formula at t=5 for channel 0: sum_k w[k] * x[t - 3 + k]
    manual = (w[0] * x[0, 0, 2:6]).sum() + b[0]
    assert torch.allclose(y[0, 0, 5], manual, atol=1e-6)


def test_backend_choice_and_errors():
    assert resolve_backend("torch") == "torch"
    assert resolve_backend("auto", "cpu") == "torch"
    assert get_backend("torch").name == "torch"
    with pytest.raises(BackendUnavailableError, match="unknown backend"):
        resolve_backend("triton")
    if available_backends()["cuda"]:
        with pytest.raises(BackendUnavailableError, match="pip install"):
            resolve_backend("cuda")


# ---- the CPU inference path: numba BiMamba mixer, block boundary, vector maths ----

needs_numba = pytest.mark.skipif(not numba_available(), reason="numba is not installed")


def _mixer_pair(d_model: int, seed: int, d_state: int = 16):
    """(BiMamba, forward MixerWeights, reverse MixerWeights) of a one-layer PS model, every parameter
    perturbed; d_state other than 16 exercises the scan's loop tail (states not a multiple of 4)."""
    from caduceus_cli.model.caduceus import CaduceusForMaskedLM
    from caduceus_cli.model.config import DEFAULT_SSM_CFG, CaduceusConfig

    torch.manual_seed(seed)
    cfg = CaduceusConfig(d_model=d_model, n_layer=1, ssm_cfg={**DEFAULT_SSM_CFG, "d_state": d_state})
    model = CaduceusForMaskedLM(cfg, backend="torch").eval()
    with torch.no_grad():
        for p in {id(p): p for p in model.parameters()}.values():
            p.add_(0.1 * torch.randn_like(p))
    bm = model.caduceus.backbone.layers[0].mixer.submodule
    f, r = bm.mamba_fwd, bm.mamba_rev
    return bm, f.token_major_weights(f), r.token_major_weights(f)


@needs_numba
def test_vector_maths_accuracy():
    import numba as nb
    import numpy as np

    from caduceus_cli.kernels.vmath_numba import FASTMATH, exp2_neg, fexp, silu, softplus

    @nb.njit(fastmath=FASTMATH, error_model="numpy")
    def apply(x, out):
        for i in range(x.shape[0]):
            out[0, i] = fexp(x[i])
            out[1, i] = exp2_neg(-abs(x[i]))
            out[2, i] = softplus(x[i])
            out[3, i] = silu(x[i])

    x = np.concatenate([np.linspace(-80, 80, 200_001), np.random.default_rng(0).uniform(-4, 4, 100_000)])
    x = np.concatenate([x, -np.logspace(-30, 1, 500), np.logspace(-30, 1, 500)]).astype(np.float32)
    out = np.empty((4, x.size), np.float32)
    apply(x, out)
    xd = x.astype(np.float64)
    ulp = lambda v: np.spacing(np.abs(v).astype(np.float32)).astype(np.float64)  # noqa: E731
    want = [np.exp(xd), 2.0 ** -np.abs(xd), np.logaddexp(0, xd), xd / (1 + np.exp(-xd))]
    assert (np.abs(out[0] - want[0]) / ulp(want[0])).max() <= 1.5
    assert (np.abs(out[1] - want[1]) / ulp(want[1])).max() <= 1.5
    assert (np.abs(out[2] - want[2]) / want[2]).max() <= 5e-7
    nz = np.abs(want[3]) > 1e-30
    assert (np.abs(out[3][nz] - want[3][nz]) / ulp(want[3][nz])).max() <= 4


@needs_numba
@pytest.mark.parametrize(
    "d_model,rows,L,d_state,seed",
    [(32, 3, 1, 16, 0), (32, 2, 37, 16, 1), (24, 4, 300, 16, 2), (40, 1, 1000, 6, 3), (128, 2, 129, 16, 4)],
)
def test_bimamba_rows_matches_twin(d_model, rows, L, d_state, seed):
    """numba mixer (both directions, summed, out_proj) vs its plain-PyTorch twin; d_inner 48/80 (16-channel
    blocks), 64 (one block), 256 (two 128-channel blocks); d_state 6 (state loop tail)."""
    from caduceus_cli.kernels.mixer_numba import bimamba_rows
    from caduceus_cli.kernels.mixer_ref import bimamba_rows_ref

    _, pf, pr = _mixer_pair(d_model, seed, d_state)
    x = torch.randn(rows * L, d_model, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        want = bimamba_rows_ref(x, L, pf, pr)
        got = bimamba_rows(x, L, pf, pr, out=torch.full_like(want, float("nan")))
    assert got.shape == want.shape and torch.isfinite(got).all()
    assert rel(got, want) < 2e-6
    assert (got - want).abs().max().item() < 2e-5 * want.abs().max().item()


@needs_numba
@pytest.mark.parametrize("max_rows", [1, 3, 5])
@pytest.mark.parametrize("given_out", [False, True])
def test_bimamba_rows_in_row_groups_matches_twin(max_rows, given_out):
    """``max_rows``: 5 rows in groups of 1, 3 (a short last group) and 5 (one call), into a given
    ``out`` or a new one; every group's slice written, same values as the twin."""
    from caduceus_cli.kernels.mixer_numba import bimamba_rows
    from caduceus_cli.kernels.mixer_ref import bimamba_rows_ref

    _, pf, pr = _mixer_pair(32, 5, 16)
    L = 60
    x = torch.randn(5 * L, 32, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        want = bimamba_rows_ref(x, L, pf, pr)
        out = torch.full_like(want, float("nan")) if given_out else None
        got = bimamba_rows(x, L, pf, pr, out=out, max_rows=max_rows)
    assert got.shape == want.shape and torch.isfinite(got).all()
    assert out is None or got.data_ptr() == out.data_ptr()
    assert rel(got, want) < 2e-6


@needs_numba
def test_numba_kernels_deterministic_and_thread_count_free():
    """Same bits on repeat, with one thread or several (and so with any channel block width)."""
    import numba

    from caduceus_cli.kernels.mixer_numba import bimamba_rows

    _, pf, pr = _mixer_pair(32, 5)
    x = torch.randn(200, 32, generator=torch.Generator().manual_seed(5))  # one row: 2+ threads split d_inner finer
    before = numba.get_num_threads()
    try:
        with torch.no_grad():
            numba.set_num_threads(1)
            one = bimamba_rows(x, 200, pf, pr).clone()
            numba.set_num_threads(before)
            many = bimamba_rows(x, 200, pf, pr)
            again = bimamba_rows(x, 200, pf, pr)
    finally:
        numba.set_num_threads(before)
    assert torch.equal(many, again) and torch.equal(one, many)


@needs_numba
@pytest.mark.parametrize("rcps", [True, False])
@pytest.mark.parametrize("source", ["h", "o_f", "o_f+o_r"])
@pytest.mark.parametrize("final", [False, True])
def test_add_norm_pair_cpu_matches_twin(rcps, source, final):
    from caduceus_cli.kernels import addnorm
    from caduceus_cli.kernels.addnorm_numba import add_norm_pair_cpu

    g = torch.Generator().manual_seed(7)
    B, L, D = 2, 23, 32
    C, M = (2 * D, 2 * B) if rcps else (D, B)
    h = torch.randn(B, L, C, generator=g) if source == "h" else None
    o_f = None if source == "h" else torch.randn(M * L, D, generator=g)
    o_r = torch.randn(M * L, D, generator=g) if source == "o_f+o_r" else None
    w = 1 + 0.3 * torch.randn(D, generator=g)
    for residual in (None, torch.randn(B, L, C, generator=g)):
        for swap in (False, True) if rcps else (False,):
            kw = dict(batch=B, length=L, swap=swap, rcps=rcps, residual_fp32=True, final=final, out_dtype=torch.float32)
            with torch.no_grad():
                want = addnorm.add_norm_pair(h, o_f, o_r, residual, w, 1e-5, **kw)
                got = add_norm_pair_cpu(h, o_f, o_r, residual, w, 1e-5, **kw)
            for a, b in zip(got, want, strict=True):
                assert a.shape == b.shape
                torch.testing.assert_close(a, b, rtol=2e-6, atol=2e-6)


@needs_numba
@pytest.mark.parametrize("rcps,fused,d_model", [(True, True, 32), (True, False, 48), (False, True, 32)])
def test_cpu_fast_backend_matches_literal_composition(rcps, fused, d_model):
    """The CPU backend (flip-free blocks, numba boundary and mixer) vs the literal composition
    (eager add/norm, flips, per-direction PyTorch projections around the numba scan)."""
    from dataclasses import replace

    from tests.conftest import perturbed_model, random_ids

    model = perturbed_model(rcps, d_model=d_model, n_layer=3, fused=fused, seed=11)
    fast = get_backend("torch", "cpu")
    assert fast.bimamba_rows is not None and fast.add_norm_pair is not None
    literal = replace(fast, add_norm_pair=None, bimamba_rows=None)
    ids = random_ids(3, 150, seed=2)
    with torch.no_grad():
        want = model.caduceus.backbone(ids, literal)[0]
        got = model.caduceus.backbone(ids, fast)[0]
        logits = model(ids).logits
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert torch.isfinite(logits).all()


@needs_numba
def test_cpu_fast_path_only_for_inference():
    """With autograd on, BiMamba takes the differentiable path (gradients reach the mixer weights)."""
    from tests.conftest import perturbed_model, random_ids

    model = perturbed_model(True, d_model=32, n_layer=1, seed=3)
    model(random_ids(1, 20)).logits.sum().backward()
    assert model.caduceus.backbone.layers[0].mixer.submodule.mamba_fwd.A_log.grad is not None


_CACHE_SCRIPT = """
import hashlib, sys, torch
sys.path.insert(0, {root!r})
from tests.test_kernels import _mixer_pair
from caduceus_cli.kernels.mixer_numba import bimamba_rows
from caduceus_cli.kernels.addnorm_numba import add_norm_pair_cpu
_, pf, pr = _mixer_pair(32, 9)
x = torch.randn(2 * 64, 32, generator=torch.Generator().manual_seed(9))
with torch.no_grad():
    y = bimamba_rows(x, 64, pf, pr)
    X, res = add_norm_pair_cpu(None, y, None, None, torch.ones(32), 1e-5, batch=1, length=64, swap=True,
                               rcps=True, residual_fp32=False, final=False, out_dtype=torch.float32)
print(hashlib.sha256(y.numpy().tobytes() + X.numpy().tobytes()).hexdigest())
"""


@needs_numba
@pytest.mark.slow
def test_kernel_bits_same_when_compiled_or_loaded_from_cache(tmp_path):
    """A fresh compile and a load from numba's on-disk cache give the same output bytes."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    script = _CACHE_SCRIPT.format(root=root)
    runs = [
        subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, cwd=root) for _ in "ab"
    ]
    for r in runs:
        assert r.returncode == 0, r.stderr
    assert any((tmp_path / "cache").rglob("*.nbi")), "nothing was cached"
    assert runs[0].stdout.split()[-1] == runs[1].stdout.split()[-1]
