"""The Mamba-1 mixer of one direction, with mamba-ssm's parameter names and maths."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from caduceus_cli.kernels.backend import Backend
from caduceus_cli.kernels.mixer_ref import MixerWeights
from caduceus_cli.model.config import CaduceusConfig


class MambaMixer(nn.Module):
    """``mamba_ssm.modules.mamba_simple.Mamba`` (no bias on in/out projections).

    in_proj -> (x, z); x -> causal depthwise conv1d + SiLU -> x_proj -> (dt, B, C);
    dt -> dt_proj; selective scan with A = -exp(A_log), D, softplus(dt + dt_bias),
    gated by SiLU(z) -> out_proj.
    """

    def __init__(self, cfg: CaduceusConfig) -> None:
        super().__init__()
        d_model, d_inner, d_state, dt_rank = cfg.d_model, cfg.d_inner, cfg.d_state, cfg.dt_rank
        self.d_inner, self.d_state, self.dt_rank = d_inner, d_state, dt_rank
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=False)
        self.conv1d = nn.Conv1d(d_inner, d_inner, cfg.d_conv, groups=d_inner, padding=cfg.d_conv - 1, bias=True)
        self.x_proj = nn.Linear(d_inner, dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(dt_rank, d_inner, bias=True)
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)
        self.A_log = nn.Parameter(torch.empty(d_inner, d_state))
        self.D = nn.Parameter(torch.empty(d_inner))
        self._init_ssm(cfg)

    @torch.no_grad()
    def _init_ssm(self, cfg: CaduceusConfig) -> None:
        """mamba-ssm's initialisation of dt_proj, A_log (S4D-real) and D."""
        s = cfg.ssm_cfg
        std = self.dt_rank**-0.5 * float(s.get("dt_scale", 1.0))
        if s.get("dt_init", "random") == "constant":
            nn.init.constant_(self.dt_proj.weight, std)
        else:
            nn.init.uniform_(self.dt_proj.weight, -std, std)
        lo, hi = math.log(float(s.get("dt_min", 1e-3))), math.log(float(s.get("dt_max", 0.1)))
        dt = torch.exp(torch.rand(self.d_inner) * (hi - lo) + lo).clamp(min=float(s.get("dt_init_floor", 1e-4)))
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        A = torch.arange(1, self.d_state + 1, dtype=torch.float32).repeat(self.d_inner, 1)  # (d_inner, d_state)
        self.A_log.copy_(torch.log(A))
        self.D.fill_(1.0)

    def scan_inputs(self, x: torch.Tensor, z: torch.Tensor, kernels: Backend) -> tuple:
        """conv + SiLU, x_proj, dt_proj: x, z (B, d_inner, L) -> the selective scan's arguments."""
        bsz = x.shape[0]
        x = kernels.causal_conv1d(x, self.conv1d.weight.squeeze(1), self.conv1d.bias, "silu")
        x_dbl = self.x_proj.weight @ channels_flat(x)  # (R + 2N, d_inner) @ (d_inner, B*L) -> (R + 2N, B*L)
        dt, B, C = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=0)
        delta = self.dt_proj.weight @ dt  # (d_inner, R) @ (R, B*L) -> (d_inner, B*L)
        A = -torch.exp(self.A_log.float())
        return x, batch_view(delta, bsz), A, batch_view(B, bsz), batch_view(C, bsz), self.D, z

    def scan(self, inputs: tuple, kernels: Backend) -> torch.Tensor:
        """The selective scan gated by SiLU(z): (B, d_inner, L)."""
        x, delta, A, B, C, D, z = inputs
        return kernels.selective_scan(x, delta, A, B, C, D, z=z, delta_bias=self.dt_proj.bias, delta_softplus=True)

    def scan_branch(self, x: torch.Tensor, z: torch.Tensor, kernels: Backend) -> torch.Tensor:
        """Everything between in_proj and out_proj: x, z (B, d_inner, L), stride 1 along L -> y (B, d_inner, L)."""
        return self.scan(self.scan_inputs(x, z, kernels), kernels)

    def in_projection(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """h (B, L, d_model) -> x, z, each (B, d_inner, L) viewing its own dense (d_inner, B*L) GEMM output.

        Two GEMMs rather than one (2*d_inner, B*L) output: a slice of that is not dense, so
        the conv and scan kernels would return contiguous (B, d_inner, L) tensors and every
        (C, B*L) view after them would become a copy when B > 1.
        """
        bsz, L, d = h.shape
        rows = h.reshape(bsz * L, d).t()  # (d_model, B*L), a transposed view
        w = self.in_proj.weight
        x = w[: self.d_inner] @ rows  # (d_inner, B*L)
        z = w[self.d_inner :] @ rows  # (d_inner, B*L)
        return batch_view(x, bsz), batch_view(z, bsz)

    def out_rows(self, y_flat: torch.Tensor) -> torch.Tensor:
        """y (d_inner, B*L) -> (B*L, d_model)."""
        return y_flat.t() @ self.out_proj.weight.t()

    def out_projection(self, y_flat: torch.Tensor, bsz: int) -> torch.Tensor:
        """y (d_inner, B*L) -> (B, L, d_model)."""
        out = self.out_rows(y_flat)  # (B*L, d_model)
        return out.view(bsz, -1, out.shape[-1])

    def token_major_weights(self, tied: MambaMixer) -> MixerWeights:
        """This direction's parameters for ``Backend.bimamba_rows`` (in/out projections from ``tied``)."""
        return MixerWeights(
            d_inner=self.d_inner,
            in_proj=tied.in_proj.weight,
            conv_weight=self.conv1d.weight.squeeze(1),
            conv_bias=self.conv1d.bias,
            x_proj=self.x_proj.weight,
            dt_weight=self.dt_proj.weight,
            dt_bias=self.dt_proj.bias,
            A_log=self.A_log,
            D=self.D,
            out_proj=tied.out_proj.weight,
        )

    def forward(self, h: torch.Tensor, kernels: Backend) -> torch.Tensor:
        """h (B, L, d_model) -> (B, L, d_model); one direction (reference twin of the fused BiMamba)."""
        return self.out_projection(channels_flat(self.scan_branch(*self.in_projection(h), kernels)), h.shape[0])


def batch_view(t: torch.Tensor, bsz: int) -> torch.Tensor:
    """(C, B*L) -> (B, C, L) view with stride 1 along L (what the kernels take)."""
    return t.view(t.shape[0], bsz, -1).permute(1, 0, 2)


def channels_flat(t: torch.Tensor) -> torch.Tensor:
    """(B, C, L) -> (C, B*L): a view when stored channel-major (kernel outputs keep it), else a copy."""
    return t.permute(1, 0, 2).reshape(t.shape[1], -1)
