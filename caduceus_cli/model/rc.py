"""Reverse-complement operations on hidden states (``CADUCEUS_SPEC.md``, Hidden-state RC)."""

from __future__ import annotations

import torch


def rc_hidden(h: torch.Tensor) -> torch.Tensor:
    """RC of a hidden tensor (B, L, C): both length and channels reversed."""
    return h.flip(dims=(-2, -1))


def rc_average_ps(hidden: torch.Tensor) -> torch.Tensor:
    """Per-position RC-averaged features of a PS hidden state (B, L, 2D) -> (B, L, D).

    ``(h1 + flip_C(h2)) / 2``: the forward stream and the RC stream at the same
    genomic position. For RC(x) the result is flip_L of the result for x, so any
    pooling symmetric about the window centre is RC-invariant.
    """
    d = hidden.shape[-1] // 2
    return (hidden[..., :d] + hidden[..., d:].flip(-1)) * 0.5


def rc_average_ph(hidden_fwd: torch.Tensor, hidden_of_rc: torch.Tensor) -> torch.Tensor:
    """Per-position RC-averaged features of Ph: forward pass and the RC pass re-aligned, (B, L, D)."""
    return (hidden_fwd + hidden_of_rc.flip(-2)) * 0.5
