"""Rows of a token-major mixer call in groups: the ``max_rows`` of the ``bimamba_rows`` contract
(``mixer_cuda.bimamba_rows``, ``mixer_numba.bimamba_rows``), which bounds one call's intermediates."""

from __future__ import annotations

from collections.abc import Callable

import torch


def in_row_groups(
    group: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor],
    rows: torch.Tensor,
    length: int,
    max_rows: int | None,
    out: torch.Tensor | None,
    new_out: Callable[[], torch.Tensor],
) -> torch.Tensor:
    """``group(rows, out)`` on rows (n*L, D) of ``length`` tokens, in groups of at most ``max_rows`` rows
    (all at once when None) writing their slices of ``out`` (``new_out()`` when None): the ``max_rows``
    of the ``bimamba_rows`` contract, which bounds a call's intermediates."""
    n = rows.shape[0] // length
    if max_rows is None or max_rows >= n:
        return group(rows, out)
    out = new_out() if out is None else out
    for s in range(0, n, max_rows):
        a, b = s * length, min(n, s + max_rows) * length  # token range of this group
        group(rows[a:b], out[a:b])
    return out
