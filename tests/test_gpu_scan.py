"""GPU parity of the token-major NVRTC mixer kernels (``kernels/scan_cuda.py``) and of the BiMamba
that runs them (``kernels/mixer_cuda.py``) with their PyTorch twins (``kernels/mixer_ref.py``), and of
the whole flip-free forward that uses them.

Run on the device machine: ``pytest -m gpu tests/test_gpu_scan.py``.
"""

import dataclasses

import pytest
import torch

from caduceus_cli.kernels import mixer_ref
from tests.conftest import perturbed_model, random_ids

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def rel(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def scan_cuda():
    from caduceus_cli.kernels import scan_cuda as sc

    if sc.available():
        pytest.skip(sc.available())
    return sc


def random_weights(d_model, d_inner, ns=16, rk=None, dc=4, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    rk = rk or -(-d_model // 16)
    r = lambda *s, scale=1.0: scale * torch.randn(*s, device="cuda", generator=g)  # noqa: E731
    dt = torch.exp(torch.rand(d_inner, device="cuda", generator=g) * 4.6 - 6.9)  # 1e-3 .. 0.1
    return mixer_ref.MixerWeights(
        d_inner=d_inner,
        in_proj=r(2 * d_inner, d_model, scale=d_model**-0.5),
        conv_weight=r(d_inner, dc, scale=0.5),
        conv_bias=r(d_inner, scale=0.1),
        x_proj=r(rk + 2 * ns, d_inner, scale=d_inner**-0.5),
        dt_weight=r(d_inner, rk, scale=rk**-0.5),
        dt_bias=dt + torch.log(-torch.expm1(-dt)),
        A_log=torch.log(torch.arange(1, ns + 1, device="cuda").float().repeat(d_inner, 1)) + r(d_inner, ns, scale=0.3),
        D=1.0 + r(d_inner, scale=0.1),
        out_proj=r(d_model, d_inner, scale=d_inner**-0.5),
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("n,L,chunk", [(3, 77, None), (2, 1000, 64), (1, 4096, 256), (5, 300, 32)])
@pytest.mark.parametrize("npoly", [0, 4])
def test_selective_scan_tm_matches_twin(dtype, n, L, chunk, npoly):
    """Single pass and the chunked two-pass path (state, combine, full), tails included."""
    sc = scan_cuda()
    d, ns, rk = 128, 16, 8
    p = random_weights(64, d, ns, rk, seed=n * L)
    g = torch.Generator(device="cuda").manual_seed(L)
    u = torch.randn(n * L, d, device="cuda", generator=g).to(dtype)
    zz = torch.randn(n * L, 2 * d, device="cuda", generator=g).to(dtype)
    z = zz[:, d:]  # a strided view, as the model's x|z layout would give
    xdbl = (0.5 * torch.randn(n * L, rk + 2 * ns, device="cuda", generator=g)).to(dtype)
    A = -torch.exp(p.A_log)
    want = mixer_ref.selective_scan_tm_ref(u, z, xdbl, p.dt_weight, p.dt_bias, A, p.D, L)
    got = torch.full_like(u, float("nan"))
    sc.selective_scan_tm(u, z, xdbl, p.dt_weight, p.dt_bias, A, p.D, L, chunk=chunk, npoly=npoly, out=got)
    assert torch.isfinite(got).all()
    err = rel(got, want)
    print(f"scan {dtype} n={n} L={L} chunk={chunk} npoly={npoly}: rel err {err:.2e}")
    assert err <= (2e-5 if dtype == torch.float32 else 1e-2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("n,L,chunk,d", [(3, 77, None, 128), (1, 4096, 256, 128), (5, 300, 32, 128), (2, 300, 64, 96)])
@pytest.mark.parametrize("mode", ["reverse", "add", "reverse+add in place", "no gate", "reverse no gate"])
def test_selective_scan_tm_reverse_and_add_match_twin(dtype, n, L, chunk, d, mode):
    """The reverse walk (rows scanned last position first, row order kept), add before the gate and
    no gate, single pass and chunked (d 96: blocks of 32 channels); "in place" writes
    (y_f + y_r) * silu(z) over y_f, as ``bimamba_rows`` does."""
    sc = scan_cuda()
    ns, rk = 16, 8
    p = random_weights(64, d, ns, rk, seed=n + L)
    g = torch.Generator(device="cuda").manual_seed(L + 1)
    u = torch.randn(n * L, d, device="cuda", generator=g).to(dtype)
    z = torch.randn(n * L, 2 * d, device="cuda", generator=g).to(dtype)[:, d:]
    xdbl = (0.5 * torch.randn(n * L, rk + 2 * ns, device="cuda", generator=g)).to(dtype)
    add = torch.randn(n * L, d, device="cuda", generator=g).to(dtype) if "add" in mode else None
    reverse, gate = "reverse" in mode, "no gate" not in mode
    A = -torch.exp(p.A_log)
    want = mixer_ref.selective_scan_tm_ref(
        u, z, xdbl, p.dt_weight, p.dt_bias, A, p.D, L, reverse=reverse, add=add, gate=gate
    )
    got = add.clone() if "in place" in mode else torch.full_like(u, float("nan"))
    sc.selective_scan_tm(
        u,
        z if gate else None,
        xdbl,
        p.dt_weight,
        p.dt_bias,
        A,
        p.D,
        L,
        chunk=chunk,
        out=got,
        reverse=reverse,
        add=got if "in place" in mode else add,
        gate=gate,
    )
    assert torch.isfinite(got).all()
    err = rel(got, want)
    print(f"scan {mode} {dtype} n={n} L={L} chunk={chunk}: rel err {err:.2e}")
    assert err <= (2e-5 if dtype == torch.float32 else 1e-2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("n,L,chunk", [(1, 4096, 256), (3, 1000, 64), (2, 300, 32), (2, 77, None)])
@pytest.mark.parametrize("mode", ["forward", "reverse+add", "no gate"])
def test_selective_scan_tm_delta_reuse_is_bit_identical(dtype, n, L, chunk, mode):
    """delta handed from the state pass to the full pass (``reuse_delta``) gives the same bits as the
    full pass computing it, the last chunk and a single-chunk row (the state pass then runs it) included."""
    sc = scan_cuda()
    d, ns, rk = 128, 16, 8
    p = random_weights(64, d, ns, rk, seed=n * L + 7)
    g = torch.Generator(device="cuda").manual_seed(L + 2)
    u = torch.randn(n * L, d, device="cuda", generator=g).to(dtype)
    z = torch.randn(n * L, 2 * d, device="cuda", generator=g).to(dtype)[:, d:]
    xdbl = (0.5 * torch.randn(n * L, rk + 2 * ns, device="cuda", generator=g)).to(dtype)
    add = torch.randn(n * L, d, device="cuda", generator=g).to(dtype) if "add" in mode else None
    gate = mode != "no gate"
    A = -torch.exp(p.A_log)
    outs = [
        sc.selective_scan_tm(
            u, z if gate else None, xdbl, p.dt_weight, p.dt_bias, A, p.D, L,
            chunk=chunk, reverse="reverse" in mode, add=add, gate=gate, reuse_delta=reuse,
        )
        for reuse in (False, True)
    ]  # fmt: skip
    assert torch.isfinite(outs[1]).all()
    assert torch.equal(outs[0], outs[1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("reverse", [False, True])
def test_conv_silu_matches_twin(dtype, reverse):
    sc = scan_cuda()
    n, L, d = 3, 101, 256
    g = torch.Generator(device="cuda").manual_seed(5)
    xz = torch.randn(n * L, 2 * d, device="cuda", generator=g).to(dtype)
    w, b = torch.randn(d, 4, device="cuda", generator=g), torch.randn(d, device="cuda", generator=g)
    want = mixer_ref.conv_silu_ref(xz[:, :d], w, b, L, reverse=reverse)
    got = sc.conv_silu(xz[:, :d], w, b, L, reverse=reverse)
    assert rel(got, want) <= (1e-6 if dtype == torch.float32 else 8e-3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("n,L,d", [(3, 101, 256), (2, 1000, 96), (4, 5, 64)])
def test_conv_silu_pair_matches_single_convs_and_twin(dtype, n, L, d):
    """Both directions from one read of x: bit for bit the two single-direction kernels, and the twin;
    rows shorter than a thread's 8 positions (L 5), a partial last block (101), d 96, x a column slice of x | z."""
    sc = scan_cuda()
    g = torch.Generator(device="cuda").manual_seed(d + L)
    xz = torch.randn(n * L, 2 * d, device="cuda", generator=g).to(dtype)
    conv_f = (torch.randn(d, 4, device="cuda", generator=g), torch.randn(d, device="cuda", generator=g))
    conv_r = (torch.randn(d, 4, device="cuda", generator=g), torch.randn(d, device="cuda", generator=g))
    u_f, u_r = sc.conv_silu_pair(xz[:, :d], conv_f, conv_r, L)
    assert torch.equal(u_f, sc.conv_silu(xz[:, :d], *conv_f, L))
    assert torch.equal(u_r, sc.conv_silu(xz[:, :d], *conv_r, L, reverse=True))
    want_f, want_r = mixer_ref.conv_silu_pair_ref(xz[:, :d], conv_f, conv_r, L)
    assert rel(u_f, want_f) <= (1e-6 if dtype == torch.float32 else 8e-3)
    assert rel(u_r, want_r) <= (1e-6 if dtype == torch.float32 else 8e-3)


def mixer_cuda():
    from caduceus_cli.kernels import mixer_cuda as mc

    scan_cuda()
    return mc


def mixer_pair(d_model, d_inner, seed):
    """Forward and reverse weights of one BiMamba: own conv / x_proj / dt / A / D, tied in/out projections."""
    pf = random_weights(d_model, d_inner, seed=seed)
    pr = random_weights(d_model, d_inner, seed=seed + 1)
    return pf, dataclasses.replace(pr, in_proj=pf.in_proj, out_proj=pf.out_proj)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("n,L,max_rows", [(4, 1024, None), (1, 20000, None), (5, 1024, 2), (2, 20000, 1)])
def test_bimamba_rows_matches_twin(dtype, n, L, max_rows):
    """Whole calls and rows in groups of ``max_rows`` (the weights prepared once for all groups)."""
    mc = mixer_cuda()
    pf, pr = mixer_pair(256, 512, seed=L)
    rows = torch.randn(n * L, 256, device="cuda").to(dtype)
    want = mixer_ref.bimamba_rows_ref(rows, L, pf, pr)
    out = torch.full_like(rows, float("nan"))
    got = mc.bimamba_rows(rows, L, pf, pr, out=out, max_rows=max_rows)
    assert got.data_ptr() == out.data_ptr() and torch.isfinite(got).all()
    err = rel(got, want)
    print(f"bimamba {dtype} n={n} L={L} max_rows={max_rows}: rel err {err:.2e}")
    assert err <= (1e-4 if dtype == torch.float32 else 2e-2)


def test_bimamba_rows_follows_in_place_weight_updates():
    """Nothing derived from the weights (casts, the transposed conv weight, A * log2 e) outlives a
    call: after in-place updates the mixer uses the new weights."""
    mc = mixer_cuda()
    pf, pr = mixer_pair(64, 128, seed=3)
    L = 300
    rows = torch.randn(2 * L, 64, device="cuda").to(torch.bfloat16)
    first = mc.bimamba_rows(rows, L, pf, pr)
    with torch.no_grad():
        pf.A_log.add_(0.5)
        pr.conv_weight.mul_(1.5)
        pf.in_proj.mul_(0.9)
        pf.out_proj.mul_(1.1)
        pr.x_proj.data.mul_(0.8)  # through .data: no version-counter bump
    got = mc.bimamba_rows(rows, L, pf, pr)
    want = mixer_ref.bimamba_rows_ref(rows, L, pf, pr)
    print(f"after update: rel err {rel(got, want):.2e}, moved {rel(got, first):.2e}")
    assert rel(got, want) <= 2e-2 and rel(got, first) > 5e-2


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("param_dtype", [torch.float32, torch.bfloat16])
def test_rows_weights_from_one_launch_match_twin(dtype, param_dtype):
    """``RowsWeights.of`` (one prep kernel) against its twin ``of_torch`` (the torch ops): every tensor
    bit for bit except A2 = -exp(A_log) * log2 e, within one float32 ulp; float32 and bf16 parameters."""
    mc = mixer_cuda()
    pf, pr = mixer_pair(256, 512, seed=7)
    cast = lambda p: dataclasses.replace(  # noqa: E731
        p, **{k: getattr(p, k).to(param_dtype) for k in ("in_proj", "x_proj", "conv_weight", "A_log", "out_proj")}
    )
    pf, pr = cast(pf), cast(pr)
    got, want = mc.RowsWeights.of(pf, pr, dtype), mc.RowsWeights.of_torch(pf, pr, dtype)
    for name in ("in_proj", "x_proj_f", "x_proj_r", "out_proj"):
        g, w = getattr(got, name), getattr(want, name)
        assert g.dtype == w.dtype == dtype and g.is_contiguous() and torch.equal(g, w), name
    for g, w in ((got.conv_f, want.conv_f), (got.conv_r, want.conv_r)):
        assert torch.equal(g[0], w[0]) and torch.equal(g[1], w[1])
    for g, w in ((got.scan_f, want.scan_f), (got.scan_r, want.scan_r)):
        for field in ("dt_weight", "dt_bias", "D"):
            assert torch.equal(getattr(g, field), getattr(w, field)), field
        ulps = (g.A2.view(torch.int32) - w.A2.view(torch.int32)).abs().max().item()
        print(f"A2 {dtype} from {param_dtype}: {(g.A2 != w.A2).sum().item()} of {w.A2.numel()} differ, max {ulps} ulp")
        assert ulps <= 1


@pytest.mark.parametrize("rcps", [True, False])
def test_token_major_forward_matches_torch_backend(rcps):
    """The whole flip-free forward with the NVRTC mixer against the torch backend (literal path)."""
    from caduceus_cli.kernels.backend import get_backend

    cuda = _rows_backend()
    model = perturbed_model(rcps, d_model=64, n_layer=4, seed=11).cuda()
    ids = random_ids(3, 2000, seed=9).cuda()
    with torch.no_grad():
        want = model.caduceus.backbone(ids, get_backend("torch", "cuda"))[0]
        got = model.caduceus.backbone(ids, cuda)[0]
        with torch.autocast("cuda", dtype=torch.bfloat16):
            got16 = model.caduceus.backbone(ids, cuda)[0]
    print(f"forward rcps={rcps}: fp32 {rel(got, want):.2e}, bf16 {rel(got16, want):.2e}")
    assert rel(got, want) <= 1e-4
    assert rel(got16, want) <= 2e-2


@pytest.mark.parametrize("rcps", [True, False])
def test_forward_split_chunks_and_forward_match_literal(rcps):
    """BiMamba on the GPU rows kernel: forward_split in chunks of rows (output written over X) and
    whole, and BiMamba.forward (float32, no autocast), against the literal composition."""
    cuda = _rows_backend()
    model = perturbed_model(rcps, d_model=64, n_layer=1, seed=5).cuda()
    backbone = model.caduceus.backbone
    mixer = backbone._parts(backbone.layers[0])[0]
    X = torch.randn(5, 333, 64, device="cuda")
    with torch.no_grad():
        want = mixer.forward_unfused(X, dataclasses.replace(cuda, bimamba_rows=None)).reshape(5 * 333, 64)
        whole, none = mixer.forward_split(X.clone(), cuda, max_rows=64)
        chunked, _ = mixer.forward_split(X.clone(), cuda, max_rows=2)
        direct = mixer(X, cuda).reshape(want.shape)
    assert none is None
    for name, got in (("whole", whole), ("chunked", chunked), ("forward", direct)):
        print(f"{name}: rel err {rel(got, want):.2e}")
        assert rel(got, want) <= 1e-5


def _rows_backend():
    """The cuda backend with the NVRTC BiMamba (``bimamba_rows``), else the test is skipped."""
    from caduceus_cli.kernels.backend import available_backends, get_backend

    scan_cuda()
    if available_backends()["cuda"]:
        pytest.skip("cuda backend unavailable")
    cuda = get_backend("cuda", "cuda")
    if cuda.bimamba_rows is None:
        pytest.skip("cuda backend without the NVRTC mixer")
    return cuda
