"""BiMamba: a forward and a reverse Mamba with tied in/out projections.

``out = mamba_fwd(h) + flip_L(mamba_rev(flip_L(h)))`` ("add"; "ew_multiply" multiplies).

``forward`` keeps the projections in the (B, channels, L) layout the kernels want
(no transposing copies) and, for "add", applies the shared out_proj once to the
summed outputs. ``forward_unfused`` is the literal composition, its reference twin.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from caduceus_cli.kernels.backend import Backend
from caduceus_cli.model.config import CaduceusConfig
from caduceus_cli.model.mamba import MambaMixer, channels_flat

# mamba-ssm's selective-scan kernel ran a batch of 512 rows (L = 1,024, d_inner 512) in 6.22 ms
# and two calls of 256 in 4.71 ms, four of 128 in 4.62 ms, on the H100 (bench/scan_layout.py).
# Chunks of at most 2**17 tokens also bound the per-direction intermediates (x, z, conv, delta,
# scan outputs) to ~6 bytes x d_inner x 2**17 whatever the batch.
SCAN_MAX_ROWS = 256
SCAN_MAX_TOKENS = 1 << 17
# The token-major CUDA mixer takes short rows in calls of up to 2**19 tokens: fewer, larger GEMM /
# conv / scan launches (bench/bench_mixer_calls.py, H100, PS d256 x 16 at 256 x 1,024, measured
# with the per-direction mixer: 0.131 s at 2**17, 0.126 at 2**18, 0.122 at 2**19; peak 1.81 ->
# 2.86 GiB). Long rows stay at SCAN_MAX_TOKENS (one 131,072-token row per call), which keeps the
# 131k forward's peak well under 1.5 GiB (PS; bench/README.md has the current figures).
MIXER_MAX_TOKENS_SHORT_ROWS = 1 << 19
SHORT_ROW = 1 << 14


def mixer_rows_per_call(length: int) -> int:
    """Rows per token-major mixer call for rows of ``length`` tokens."""
    cap = MIXER_MAX_TOKENS_SHORT_ROWS if length <= SHORT_ROW else SCAN_MAX_TOKENS
    return max(1, cap // length)


class BiMamba(nn.Module):
    def __init__(self, cfg: CaduceusConfig) -> None:
        super().__init__()
        self.strategy = cfg.bidirectional_strategy
        self.mamba_fwd = MambaMixer(cfg)
        self.mamba_rev = MambaMixer(cfg)
        self.tie_weights()

    def tie_weights(self) -> None:
        """mamba_rev.in_proj / out_proj ARE mamba_fwd's (same Parameter objects)."""
        self.mamba_rev.in_proj.weight = self.mamba_fwd.in_proj.weight
        self.mamba_rev.out_proj.weight = self.mamba_fwd.out_proj.weight

    def _combine(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b if self.strategy == "add" else a * b

    def forward_unfused(self, h: torch.Tensor, kernels: Backend) -> torch.Tensor:
        """Reference twin: two independent Mamba passes, h (B, L, D) -> (B, L, D)."""
        out = self.mamba_fwd(h, kernels)
        out_rev = self.mamba_rev(h.flip(1), kernels).flip(1)
        return self._combine(out, out_rev)

    def forward(self, h: torch.Tensor, kernels: Backend) -> torch.Tensor:
        """Both directions, h (B, L, D) -> (B, L, D).

        The reverse direction flips h (D channels, not the 4x wider projections) and
        re-aligns its scan output; with "add" the two outputs are summed before one
        shared out_proj (it is linear), saving a matmul and an activation.
        Inference goes through ``kernels.bimamba_rows`` where it applies (no flip at all).
        """
        f, r = self.mamba_fwd, self.mamba_rev
        bsz, L, _ = h.shape
        if self._rows_path(h, kernels):
            rows = h.reshape(bsz * L, -1)  # (B, L, D) -> (B*L, D)
            out = kernels.bimamba_rows(rows, L, f.token_major_weights(f), r.token_major_weights(f))
            return out.view(bsz, L, -1)  # (B*L, D) -> (B, L, D)
        y_f = channels_flat(f.scan_branch(*f.in_projection(h), kernels))  # (di, B*L)
        y_r = channels_flat(r.scan_branch(*f.in_projection(h.flip(1)), kernels))  # reverse positions
        y_r = y_r.view(-1, bsz, L).flip(-1).reshape(y_r.shape)  # (di, B, L) re-aligned to forward positions
        if self.strategy == "add":
            return f.out_projection(y_f + y_r, bsz)
        return f.out_projection(y_f, bsz) * f.out_projection(y_r, bsz)

    def _rows_path(self, h: torch.Tensor, kernels: Backend) -> bool:
        """Whether ``forward`` runs through ``kernels.bimamba_rows``: "add", inference (no autograd,
        no autocast), and a case the kernel takes (``kernels.bimamba_rows_supports``)."""
        return self._rows_kernel(h, kernels) and not torch.is_autocast_enabled(h.device.type)

    def _rows_kernel(self, X: torch.Tensor, kernels: Backend) -> bool:
        """ "add", no autograd, and ``kernels.bimamba_rows`` takes X's d_inner, dtype and device."""
        if kernels.bimamba_rows is None or self.strategy != "add" or torch.is_grad_enabled():
            return False
        return kernels.bimamba_rows_supports(self.mamba_fwd.d_inner, X.dtype, X.device)

    def forward_split(
        self, X: torch.Tensor, kernels: Backend, max_rows: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Both directions without flipped copies between blocks: X (M, L, D) rows -> (o_f, o_r).

        Through ``kernels.bimamba_rows`` (the reverse direction walks each row backwards): o_f
        (M*L, D) is both directions' summed output, written over X (consumed: one (M*L, D) buffer
        less at the peak), and o_r is None. Otherwise (the literal per-direction path, which flips
        each chunk of rows for the reverse direction) o_f and o_r (M*L, D) are the forward
        direction's output and the reverse direction's in reversed position order:
        ``o_f + flip_L(o_r)`` is ``forward``'s result for "add". The next add+norm reads them that
        way (``kernels/addnorm.py``).
        Rows go through in chunks of at most ``max_rows`` (default: ``mixer_rows_per_call`` on a
        GPU, SCAN_MAX_TOKENS tokens on the CPU; literal path: SCAN_MAX_ROWS rows and SCAN_MAX_TOKENS
        tokens), each chunk's GEMM outputs dense, its out_proj written straight into its rows.
        """
        f, r = self.mamba_fwd, self.mamba_rev
        M, L, D = X.shape
        if self._rows_kernel(X, kernels):
            return self._forward_split_rows(X, kernels, max_rows), None
        max_rows = max_rows or max(1, min(SCAN_MAX_ROWS, SCAN_MAX_TOKENS // L))
        outs: list[torch.Tensor] = []
        for direction, mixer in ((0, f), (1, r)):
            out = None
            for s in range(0, M, max_rows):
                e = min(M, s + max_rows)
                rows = X[s:e] if direction == 0 else X[s:e].flip(1)  # (n, L, D)
                # scan_inputs' frame holds x until the conv has run: x is freed before the scan
                inputs = mixer.scan_inputs(*f.in_projection(rows), kernels)
                del rows
                y = channels_flat(mixer.scan(inputs, kernels))  # (di, n*L)
                del inputs
                if out is None:
                    out = torch.empty(M * L, D, device=X.device, dtype=y.dtype)  # (M*L, D)
                torch.mm(y.t(), f.out_proj.weight.t().to(y.dtype), out=out[s * L : e * L])
                del y  # before the next chunk's intermediates are allocated
            outs.append(out)
        return outs[0], outs[1]

    def _forward_split_rows(self, X: torch.Tensor, kernels: Backend, max_rows: int | None) -> torch.Tensor:
        """``forward_split`` through ``kernels.bimamba_rows``: both directions summed, (M*L, D), written
        over X's rows (each call has read its rows before it writes them), in chunks of at most
        ``max_rows`` rows to bound the intermediates."""
        f, r = self.mamba_fwd, self.mamba_rev
        M, L, D = X.shape
        max_rows = max_rows or (mixer_rows_per_call(L) if X.is_cuda else max(1, SCAN_MAX_TOKENS // L))
        pf, pr = f.token_major_weights(f), r.token_major_weights(f)
        rows = X.reshape(M * L, D)  # a view of X where reshape gives one, else a copy: X is consumed
        return kernels.bimamba_rows(rows, L, pf, pr, out=rows, max_rows=max_rows)
