"""Shared fixtures: golden model directories, small random models, data paths."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from caduceus_cli.model.caduceus import CaduceusForMaskedLM
from caduceus_cli.model.config import CaduceusConfig

DATA = Path(__file__).parent / "data"
GOLDEN = DATA / "golden"


def perturbed_model(rcps: bool, d_model: int = 32, n_layer: int = 2, fused: bool = True, seed: int = 0,
                    strategy: str = "add") -> CaduceusForMaskedLM:
    """A random model with every parameter perturbed (norm weights and biases non-trivial)."""
    torch.manual_seed(seed)
    cfg = CaduceusConfig(d_model=d_model, n_layer=n_layer, rcps=rcps, fused_add_norm=fused, bidirectional_strategy=strategy)
    model = CaduceusForMaskedLM(cfg, backend="torch")
    with torch.no_grad():
        for p in {id(p): p for p in model.parameters()}.values():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


@pytest.fixture(params=["ps", "ph"])
def golden_dir(request) -> Path:
    return GOLDEN / f"caduceus_{request.param}_d64_n2"


def random_ids(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(7, 12, (batch, length), generator=g)
