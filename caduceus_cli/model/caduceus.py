"""Caduceus-PS and Caduceus-Ph: embeddings, blocks, backbone and the masked-LM head.

Module names follow the published state-dict keys (``CADUCEUS_SPEC.md``), so a
checkpoint loads with ``load_state_dict`` once the ties are restored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from caduceus_cli.kernels.addnorm import add_norm
from caduceus_cli.kernels.backend import Backend, get_backend
from caduceus_cli.model.bimamba import BiMamba
from caduceus_cli.model.config import CaduceusConfig
from caduceus_cli.model.rc import rc_hidden


@dataclass
class CaduceusOutput:
    """logits: float32 (B, L, vocab); last_hidden_state: (B, L, H) after the final norm."""

    logits: torch.Tensor | None
    last_hidden_state: torch.Tensor
    hidden_states: list[torch.Tensor] | None = None


class RMSNorm(nn.Module):
    """RMSNorm with weight only, computed in float32 and cast back (mamba-ssm's maths)."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return add_norm(x, None, self.weight, self.eps, False, False, False)[0]


class Submodule(nn.Module):
    """Container giving the ``.submodule`` key prefix of the reference RC wrappers."""

    def __init__(self, submodule: nn.Module) -> None:
        super().__init__()
        self.submodule = submodule


class RCPSEmbedding(nn.Module):
    """``cat([E(ids), RC(E(RC(ids)))], -1)`` with one table E."""

    def __init__(self, cfg: CaduceusConfig) -> None:
        super().__init__()
        self.register_buffer("complement_map", torch.tensor(cfg.complement_list, dtype=torch.long))
        self.embedding = nn.Embedding(cfg.padded_vocab_size, cfg.d_model)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        # RC(E(RC(ids))) at position l is flip_C(E[complement[ids[l]]]) (the two length flips cancel), so
        # one lookup in a (V, 2D) table whose row v is [E[v], flip_C(E[complement[v]])] gives the same
        # values as the two lookups, the flips and the concatenation, with one write of the output
        E = self.embedding.weight  # (V, D)
        table = torch.cat([E, E[self.complement_map].flip(-1)], dim=-1)  # (V, 2D)
        return F.embedding(ids, table)  # (B, L, 2D)


class Embeddings(nn.Module):
    def __init__(self, cfg: CaduceusConfig) -> None:
        super().__init__()
        self.word_embeddings = RCPSEmbedding(cfg) if cfg.rcps else nn.Embedding(cfg.padded_vocab_size, cfg.d_model)

    @property
    def table(self) -> nn.Embedding:
        w = self.word_embeddings
        return w.embedding if isinstance(w, RCPSEmbedding) else w

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.word_embeddings(ids)


class PhBlock(nn.Module):
    """Pre-norm residual block: ``residual = h + residual; h = mixer(norm(residual))``."""

    def __init__(self, cfg: CaduceusConfig) -> None:
        super().__init__()
        self.residual_in_fp32 = cfg.residual_in_fp32
        self.mixer = BiMamba(cfg)
        self.norm = RMSNorm(cfg.d_model, cfg.norm_epsilon)

    def forward(self, h: torch.Tensor, residual: torch.Tensor | None, kernels: Backend):
        normed, residual = add_norm(h, residual, self.norm.weight, self.norm.eps, False, False, self.residual_in_fp32)
        return self.mixer(normed, kernels), residual


class PSBlock(nn.Module):
    """RC-equivariant block on (B, L, 2D): shared add+norm, mixer in an RC wrapper.

    With ``fused_add_norm`` (the published checkpoints) the block runs on swapped
    halves, as the reference's fused path does (``CADUCEUS_SPEC.md``, Half swap).
    """

    def __init__(self, cfg: CaduceusConfig) -> None:
        super().__init__()
        self.fused = cfg.fused_add_norm
        self.residual_in_fp32 = cfg.residual_in_fp32
        self.mixer = Submodule(BiMamba(cfg))
        norm = RMSNorm(cfg.d_model, cfg.norm_epsilon)
        self.norm = norm if self.fused else Submodule(norm)

    @property
    def rmsnorm(self) -> RMSNorm:
        return self.norm if isinstance(self.norm, RMSNorm) else self.norm.submodule

    def forward(self, h: torch.Tensor, residual: torch.Tensor | None, kernels: Backend):
        norm = self.rmsnorm
        normed, residual = add_norm(h, residual, norm.weight, norm.eps, self.fused, True, self.residual_in_fp32)
        return rc_mixer(self.mixer.submodule, normed, kernels), residual


def rc_mixer(mixer: BiMamba, x: torch.Tensor, kernels: Backend) -> torch.Tensor:
    """``cat([M(x1), RC(M(RC(x2)))], -1)``, both halves in one batched call (B, L, 2D)."""
    bsz, d = x.shape[0], x.shape[-1] // 2
    both = torch.cat([x[..., :d], rc_hidden(x[..., d:])], dim=0)  # (2B, L, D)
    out = mixer(both, kernels)
    return torch.cat([out[:bsz], rc_hidden(out[bsz:])], dim=-1)  # (B, L, 2D)


class Backbone(nn.Module):
    def __init__(self, cfg: CaduceusConfig) -> None:
        super().__init__()
        self.rcps = cfg.rcps
        self.embeddings = Embeddings(cfg)
        block = PSBlock if cfg.rcps else PhBlock
        self.layers = nn.ModuleList(block(cfg) for _ in range(cfg.n_layer))
        norm_f = RMSNorm(cfg.d_model, cfg.norm_epsilon)
        self.norm_f = Submodule(norm_f) if (cfg.rcps and not cfg.fused_add_norm) else norm_f

    @property
    def final_norm(self) -> RMSNorm:
        return self.norm_f if isinstance(self.norm_f, RMSNorm) else self.norm_f.submodule

    def forward(self, ids: torch.Tensor, kernels: Backend, output_hidden_states: bool = False):
        # inference only: the Triton add/norm has no backward, and the chunked out_proj writes in place
        if (
            kernels.add_norm_pair is not None
            and not torch.is_grad_enabled()
            and not output_hidden_states
            and self._all_add()
        ):
            return self.forward_flip_free(ids, kernels), None
        h = self.embeddings(ids)  # (B, L, H)
        residual = None
        all_hidden = [] if output_hidden_states else None
        for layer in self.layers:
            if all_hidden is not None:
                all_hidden.append(h)
            h, residual = layer(h, residual, kernels)
        norm = self.final_norm  # no swap at the end
        out, _ = add_norm(h, residual, norm.weight, norm.eps, False, self.rcps, False)
        if all_hidden is not None:
            all_hidden.append(out)
        return out, all_hidden

    def _all_add(self) -> bool:
        return all(self._parts(layer)[0].strategy == "add" for layer in self.layers)

    @staticmethod
    def _parts(layer: nn.Module) -> tuple[BiMamba, RMSNorm, bool]:
        """(BiMamba, its RMSNorm, swap halves?) of a PS or Ph block."""
        if isinstance(layer, PSBlock):
            return layer.mixer.submodule, layer.rmsnorm, layer.fused
        return layer.mixer, layer.norm, False

    def forward_flip_free(self, ids: torch.Tensor, kernels: Backend) -> torch.Tensor:
        """The same function as ``forward`` with no flip or concatenation copies between blocks.

        Each BiMamba returns its two directions unflipped (``forward_split``; one output holding
        their sum where the mixer walks rows backwards itself); the block boundary
        (``kernels.add_norm_pair``) reads them through index maps, adds, norms and writes the
        next mixer's input rows.
        """
        bsz, L = ids.shape
        h = self.embeddings(ids)  # (B, L, C)
        dev = h.device.type
        act = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else h.dtype
        o_f = o_r = residual = None
        for i, layer in enumerate(self.layers):
            mixer, norm, swap = self._parts(layer)
            X, residual = kernels.add_norm_pair(
                h if i == 0 else None,
                o_f,
                o_r,
                residual,
                norm.weight,
                norm.eps,
                batch=bsz,
                length=L,
                swap=swap,
                rcps=self.rcps,
                residual_fp32=layer.residual_in_fp32,
                final=False,
                out_dtype=act,
            )  # X (M, L, D)
            h = o_f = o_r = None  # read by the boundary: free them before the mixer allocates (peak memory)
            o_f, o_r = mixer.forward_split(X, kernels)  # each (M*L, D)
        norm = self.final_norm
        out, _ = kernels.add_norm_pair(
            None,
            o_f,
            o_r,
            residual,
            norm.weight,
            norm.eps,
            batch=bsz,
            length=L,
            swap=False,
            rcps=self.rcps,
            residual_fp32=False,
            final=True,
            out_dtype=act,
        )
        return out  # (B, L, C)


class RCPSLMHead(nn.Module):
    """``logits = h1 @ W.T + flip_C(h2) @ W[complement].T`` with W tied to the embedding."""

    def __init__(self, cfg: CaduceusConfig) -> None:
        super().__init__()
        self.register_buffer("complement_map", torch.tensor(cfg.complement_list, dtype=torch.long))
        self.lm_head = nn.Linear(cfg.d_model, cfg.padded_vocab_size, bias=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        w = self.lm_head.weight  # (V, D)
        # flip_C(h2) @ W[complement].T == h2 @ flip_C(W[complement]).T: the flip goes into the (V, 2D)
        # weight, so h (B, L, 2D) is read once by one matmul, with no flipped copy of it
        return F.linear(h, torch.cat([w, w[self.complement_map].flip(-1)], dim=1))  # (B, L, V)


class CaduceusInner(nn.Module):
    def __init__(self, cfg: CaduceusConfig) -> None:
        super().__init__()
        self.backbone = Backbone(cfg)


class CaduceusForMaskedLM(nn.Module):
    """The masked-LM model: ``model(input_ids)`` -> ``CaduceusOutput``."""

    def __init__(self, cfg: CaduceusConfig, backend: str = "auto") -> None:
        super().__init__()
        self.config = cfg
        self.backend = backend
        self.caduceus = CaduceusInner(cfg)
        self.lm_head = RCPSLMHead(cfg) if cfg.rcps else nn.Linear(cfg.d_model, cfg.padded_vocab_size, bias=False)
        self._init_weights()
        self.tie_weights()

    # ---- weights ----
    @property
    def head_linear(self) -> nn.Linear:
        return self.lm_head.lm_head if isinstance(self.lm_head, RCPSLMHead) else self.lm_head

    def tie_weights(self) -> None:
        """Restore every tie: LM head = embedding table; each reverse Mamba's in/out projections."""
        self.head_linear.weight = self.caduceus.backbone.embeddings.table.weight
        for layer in self.caduceus.backbone.layers:
            mixer = layer.mixer.submodule if isinstance(layer, PSBlock) else layer.mixer
            mixer.tie_weights()

    @torch.no_grad()
    def _init_weights(self) -> None:
        """The reference initialisation: normal embeddings, rescaled out_proj per layer."""
        init = self.config.initializer_cfg or {}
        nn.init.normal_(self.caduceus.backbone.embeddings.table.weight, std=float(init.get("initializer_range", 0.02)))
        if init.get("rescale_prenorm_residual", True):
            scale = math.sqrt(int(init.get("n_residuals_per_layer", 1)) * self.config.n_layer)
            for name, p in self.named_parameters():
                if name.endswith("out_proj.weight"):
                    nn.init.kaiming_uniform_(p, a=math.sqrt(5))
                    p.div_(scale)

    # ---- forward ----
    def kernels(self, device: torch.device) -> Backend:
        return get_backend(self.backend, device)

    def forward(
        self, input_ids: torch.Tensor, output_hidden_states: bool = False, return_logits: bool = True
    ) -> CaduceusOutput:
        kernels = self.kernels(input_ids.device)
        hidden, all_hidden = self.caduceus.backbone(input_ids, kernels, output_hidden_states)
        logits = self.lm_head(hidden).float() if return_logits else None
        return CaduceusOutput(logits=logits, last_hidden_state=hidden, hidden_states=all_hidden)
