"""Model side of scoring: batched forwards over fixed-length windows, RC-averaged.

``WindowModel`` turns token windows into (a) features pooled around the window
centre and (b) log-probabilities of A/C/G/T at masked positions, both averaged
over the two strands: PS by its equivariance (one pass; the RC pass would give
the same numbers), Ph by a forward and a reverse-complement pass.
"""

from __future__ import annotations

import contextlib
import logging

import numpy as np
import torch

from caduceus_cli.model.caduceus import CaduceusForMaskedLM
from caduceus_cli.model.rc import rc_average_ph, rc_average_ps
from caduceus_cli.tokenizer import A, C, G, T, reverse_complement_ids

log = logging.getLogger(__name__)

ACGT = [A, C, G, T]
TGCA = [T, G, C, A]  # complement of ACGT, in ACGT order


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class WindowModel:
    def __init__(self, model: CaduceusForMaskedLM, device: torch.device, batch_size: int = 8,
                 precision: str = "auto") -> None:
        self.model = model
        self.device = device
        self.batch_size = max(1, batch_size)
        self.rcps = model.config.rcps
        if precision == "auto":
            precision = "bf16" if device.type == "cuda" else "fp32"
        self.precision = precision
        self.windows_run = 0

    def _ctx(self):
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _batches(self, ids: np.ndarray):
        for i in range(0, len(ids), self.batch_size):
            yield torch.from_numpy(ids[i : i + self.batch_size]).to(self.device, non_blocking=True)

    @torch.inference_mode()
    def pooled_features(self, ids: np.ndarray, centre: int, flank: int) -> np.ndarray:
        """ids (N, W) -> RC-averaged hidden states mean-pooled over [centre - flank, centre + flank], (N, H)."""
        W = ids.shape[1]
        lo, hi = max(0, centre - flank), min(W, centre + flank + 1)
        out = []
        for batch in self._batches(ids):
            with self._ctx():
                h = self.model(batch, return_logits=False).last_hidden_state
                if self.rcps:
                    feats = rc_average_ps(h[:, lo:hi])  # (n, hi - lo, D)
                else:
                    h_rc = self.model(reverse_complement_ids(batch), return_logits=False).last_hidden_state
                    feats = rc_average_ph(h, h_rc)[:, lo:hi]
            out.append(feats.float().mean(1).cpu())
            self.windows_run += len(batch) * (1 if self.rcps else 2)
        return torch.cat(out).numpy() if out else np.zeros((0, self.model.config.d_model), np.float32)

    @torch.inference_mode()
    def masked_logprobs(self, ids: np.ndarray, start: int, length: int) -> np.ndarray:
        """ids (N, W) already masked at [start, start + length) -> log P over ACGT there, (N, length, 4)."""
        out = []
        for batch in self._batches(ids):
            with self._ctx():
                logits = self.model(batch).logits[:, start : start + length, ACGT]
                logp = torch.log_softmax(logits.float(), -1)
                if not self.rcps:
                    lrc = self.model(reverse_complement_ids(batch)).logits.flip(1)  # re-aligned to forward positions
                    logp_rc = torch.log_softmax(lrc[:, start : start + length, TGCA].float(), -1)
                    logp = (logp + logp_rc) * 0.5
            out.append(logp.cpu())
            self.windows_run += len(batch) * (1 if self.rcps else 2)
        return torch.cat(out).numpy() if out else np.zeros((0, length, 4), np.float32)
