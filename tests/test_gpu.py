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
def test_cuda_backend_trains():
    model = perturbed_model(True, d_model=64, n_layer=2).cuda().train()
    model.backend = "cuda"
    ids = random_ids(2, 256).cuda()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = model(ids).logits.logsumexp(-1).mean()
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)

