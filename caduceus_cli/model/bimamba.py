"""BiMamba: a forward and a reverse Mamba with tied in/out projections.

``out = mamba_fwd(h) + flip_L(mamba_rev(flip_L(h)))`` ("add"; "ew_multiply" multiplies).

The fused path computes both directions at once: one in_proj (shared, and
in_proj(flip h) = flip in_proj(h)), one conv over 2*d_inner channels, one grouped
selective scan (group 0: forward, group 1: reverse), and for "add" one out_proj of
the summed outputs (out_proj is linear and shared). ``forward_unfused`` is the
literal composition, kept as its reference twin.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from caduceus_cli.kernels.backend import Backend
from caduceus_cli.model.config import CaduceusConfig
from caduceus_cli.model.mamba import MambaMixer


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
        """Fused both-direction pass, h (B, L, D) -> (B, L, D)."""
        f, r = self.mamba_fwd, self.mamba_rev
        d_inner, d_state, dt_rank = f.d_inner, f.d_state, f.dt_rank
        bsz, L, _ = h.shape
        xz = f.in_proj(h).transpose(1, 2)  # (B, L, 2*di) -> (B, 2*di, L)
        x, z = xz[:, :d_inner], xz[:, d_inner:]
        # both directions on channels, reverse one flipped along L: (B, 2*di, L)
        x2 = torch.cat([x, x.flip(-1)], dim=1)
        z2 = torch.cat([z, z.flip(-1)], dim=1)
        del xz, x, z
        conv_w = torch.cat([f.conv1d.weight, r.conv1d.weight], 0).squeeze(1)  # (2*di, d_conv)
        conv_b = torch.cat([f.conv1d.bias, r.conv1d.bias], 0)
        x2 = kernels.causal_conv1d(x2, conv_w, conv_b, "silu")
        w_x = torch.stack([f.x_proj.weight, r.x_proj.weight], 0)  # (2, R + 2N, di)
        x_dbl = torch.einsum("kod,bkdl->bkol", w_x, x2.view(bsz, 2, d_inner, L))  # (B, 2, R + 2N, L)
        dt = x_dbl[:, :, :dt_rank]  # (B, 2, R, L)
        Bm = x_dbl[:, :, dt_rank : dt_rank + d_state]  # (B, 2, N, L): group per direction
        Cm = x_dbl[:, :, dt_rank + d_state :]
        w_dt = torch.stack([f.dt_proj.weight, r.dt_proj.weight], 0)  # (2, di, R)
        delta = torch.einsum("kdr,bkrl->bkdl", w_dt, dt)  # (B, 2, di, L)
        delta = delta.reshape(bsz, 2 * d_inner, L)  # (B, 2, di, L) -> (B, 2*di, L)
        A = -torch.exp(torch.cat([f.A_log, r.A_log], 0).float())  # (2*di, N)
        D = torch.cat([f.D, r.D], 0)
        dt_bias = torch.cat([f.dt_proj.bias, r.dt_proj.bias], 0)
        y = kernels.selective_scan(x2, delta, A, Bm, Cm, D, z=z2, delta_bias=dt_bias, delta_softplus=True)
        del x2, z2, delta, x_dbl
        y_f, y_r = y[:, :d_inner], y[:, d_inner:].flip(-1)  # each (B, di, L), reverse re-aligned
        if self.strategy == "add":
            return f.out_proj((y_f + y_r).transpose(1, 2))  # (B, L, D)
        return f.out_proj(y_f.transpose(1, 2)) * f.out_proj(y_r.transpose(1, 2))
