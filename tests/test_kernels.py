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
