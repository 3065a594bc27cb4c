"""GPU parity of the ``cuda`` backend (mamba-ssm kernels) against the ``torch`` backend.

Run on the device machine: ``pytest -m gpu tests/test_gpu.py``.
"""

import pytest
import torch

from caduceus_cli import CaduceusConfig, CaduceusForMaskedLM, load_model
from caduceus_cli.kernels.backend import available_backends
from tests.conftest import perturbed_model, random_ids

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]
needs_cuda_kernels = pytest.mark.skipif(
    torch.cuda.is_available() and bool(available_backends()["cuda"]), reason="needs mamba-ssm"
)


def rel(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


@needs_cuda_kernels
def test_golden_cuda_matches_torch_and_reference(golden_dir):
    expected = torch.load(golden_dir / "expected.pt")
    ids = expected["input_ids"].cuda()
    outs = {}
    for backend in ("cuda", "torch"):
        model = load_model(golden_dir, device="cuda", backend=backend)
        with torch.no_grad():
            outs[backend] = model(ids)
    assert rel(outs["cuda"].logits, outs["torch"].logits) <= 1e-4
    assert rel(outs["cuda"].last_hidden_state, outs["torch"].last_hidden_state) <= 1e-4
    assert rel(outs["cuda"].logits.cpu(), expected["logits"]) <= 1e-4


@needs_cuda_kernels
def test_long_ps_model_cuda_matches_torch():
    """d_model 256, 16 layers, L = 131,072: float32 <= 1e-3, bf16 autocast <= 2e-2."""
    torch.manual_seed(3)  # the reference initialisation (a random, untrained model)
    model = CaduceusForMaskedLM(CaduceusConfig(d_model=256, n_layer=16, rcps=True)).cuda().eval()
    ids = random_ids(1, 131_072, seed=4).cuda()
    with torch.no_grad():
        model.backend = "torch"
        ref = model(ids).logits
        model.backend = "cuda"
        fast = model(ids).logits
        with torch.autocast("cuda", dtype=torch.bfloat16):
            fast_bf16 = model(ids).logits
    err32, err16 = rel(fast, ref), rel(fast_bf16, ref)
    print(f"L=131072 PS d256 n16: fp32 rel err {err32:.2e}, bf16 rel err {err16:.2e}")
    assert err32 <= 1e-3
    assert err16 <= 2e-2


@needs_cuda_kernels
def test_cuda_backend_trains_with_the_torch_backends_gradients():
    """Every parameter gets the gradient the torch backend computes (training never takes the
    inference-only flip-free path, whose Triton add/norm has no backward)."""
    grads = {}
    for backend in ("cuda", "torch"):
        model = perturbed_model(True, d_model=64, n_layer=2).cuda().train()
        model.backend = backend
        loss = model(random_ids(2, 256).cuda()).logits.logsumexp(-1).mean()
        loss.backward()
        grads[backend] = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert all(g is not None for g in grads["cuda"].values())
    for name, g in grads["cuda"].items():
        assert rel(g, grads["torch"][name]) <= 1e-3, name
    model.backend = "cuda"
    with torch.autocast("cuda", dtype=torch.bfloat16):
        model(random_ids(2, 256).cuda()).logits.logsumexp(-1).mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("rcps,swap", [(True, True), (True, False), (False, False)])
@pytest.mark.parametrize("first,final", [(True, False), (False, False), (False, True)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_add_norm_pair_matches_twin(rcps, swap, first, final, dtype):
    from caduceus_cli.kernels import addnorm, addnorm_triton

    if not addnorm_triton.triton_available():
        pytest.skip("no Triton")
    g = torch.Generator(device="cuda").manual_seed(hash((rcps, swap, first, final)) % 1000)
    B, L, D = 3, 77, 40  # D not a power of two: masked lanes
    C, M = (2 * D, 2 * B) if rcps else (D, B)
    rnd = lambda *s, dt=dtype: torch.randn(*s, device="cuda", generator=g).to(dt)  # noqa: E731
    h = rnd(B, L, C, dt=torch.float32) if first else None
    o_f, o_r2 = (None, None) if first else (rnd(M * L, D), rnd(M * L, D))
    res = None if first else rnd(B, L, C, dt=torch.float32)
    w = rnd(D, dt=torch.float32) + 1.0
    kw = dict(batch=B, length=L, swap=swap, rcps=rcps, residual_fp32=True, final=final, out_dtype=dtype)
    for o_r in (o_r2, None) if not first else (None,):  # None: o_f holds both directions' sum
        want = addnorm.add_norm_pair(h, o_f, o_r, res, w, 1e-5, **kw)
        got = addnorm_triton.add_norm_pair(h, o_f, o_r, res, w, 1e-5, **kw)
        for a, b in zip(got, want, strict=True):
            assert a.shape == b.shape and a.dtype == b.dtype
            assert rel(a, b) <= (1e-6 if dtype == torch.float32 else 8e-3)


@needs_cuda_kernels
@pytest.mark.parametrize("rcps", [True, False])
def test_flip_free_cuda_path_matches_literal_cuda_path(rcps):
    from dataclasses import replace

    from caduceus_cli.kernels.backend import get_backend

    model = perturbed_model(rcps, d_model=64, n_layer=4, seed=7).cuda()
    cuda = get_backend("cuda", "cuda")
    assert cuda.add_norm_pair is not None
    literal = replace(cuda, add_norm_pair=None, bimamba_rows=None)
    ids = random_ids(4, 1000, seed=2).cuda()
    with torch.no_grad():
        a = model.caduceus.backbone(ids, cuda)[0]
        b = model.caduceus.backbone(ids, literal)[0]
        with torch.autocast("cuda", dtype=torch.bfloat16):
            c = model.caduceus.backbone(ids, cuda)[0]
    assert rel(a, b) <= 1e-5
    assert rel(c, b) <= 2e-2
