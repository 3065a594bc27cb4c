"""Masked-LM corruption: p = 0.15; of those 80% [MASK], 10% a random base, 10% unchanged.

N is [PAD] before masking, so it is never a target (loss ignores [PAD] / -100).
"""

from __future__ import annotations

import torch

from caduceus_cli.tokenizer import MASK, NUCLEOTIDE_IDS, PAD, N

IGNORE = -100


def mask_tokens(ids: torch.Tensor, generator: torch.Generator, p: float = 0.15) -> tuple[torch.Tensor, torch.Tensor]:
    """ids (B, L) -> (inputs, labels); labels are IGNORE except at masked, non-N positions."""
    ids = ids.clone()
    ids[ids == N] = PAD
    u = torch.rand(ids.shape, generator=generator)
    chosen = (u < p) & (ids != PAD)
    labels = torch.where(chosen, ids, torch.full_like(ids, IGNORE))
    action = torch.rand(ids.shape, generator=generator)
    inputs = ids.clone()
    inputs[chosen & (action < 0.8)] = MASK
    rand_pos = chosen & (action >= 0.8) & (action < 0.9)
    bases = torch.tensor(NUCLEOTIDE_IDS)[torch.randint(0, 4, ids.shape, generator=generator)]
    inputs[rand_pos] = bases[rand_pos]
    return inputs, labels
