"""A short description of a model, for ``caduceus info`` and provenance headers."""

from __future__ import annotations

import os

import torch

from caduceus_cli.kernels.backend import available_backends, resolve_backend
from caduceus_cli.model.loading import load_model, training_length, weights_sha256


def describe_model(source: str | os.PathLike | None = None) -> dict[str, str]:
    """Key facts of a model as strings (architecture, size, sha256, window, backends)."""
    model = load_model(source)
    cfg = model.config
    n_params = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    avail = available_backends()
    return {
        "source": str(model.source_dir),
        "variant": "Caduceus-PS (RC-equivariant)" if cfg.rcps else "Caduceus-Ph (post-hoc RC)",
        "d_model": str(cfg.d_model),
        "n_layer": str(cfg.n_layer),
        "parameters": f"{n_params:,}",
        "training_length": str(training_length(model) or "unknown"),
        "fused_add_norm": str(cfg.fused_add_norm).lower(),
        "weights_sha256": weights_sha256(model.source_dir),
        "backend_auto": resolve_backend("auto", "cuda" if torch.cuda.is_available() else "cpu"),
        "backend_cuda": "available" if not avail["cuda"] else f"unavailable ({avail['cuda']})",
    }
