"""The inference engine: batched forwards over fixed-length token windows, RC-averaged.

``WindowEngine`` turns token windows into (a) features pooled around the window
centre and (b) log-probabilities of A/C/G/T at masked positions, both averaged
over the two strands: PS by its equivariance (one pass; the RC pass would give
the same numbers), Ph by a forward and a reverse-complement pass.
"""

from __future__ import annotations

import contextlib
import logging

import numpy as np
import torch

from caduceus_cli.choices import Precision, RcMode, choice
from caduceus_cli.inference.spec import check_layer, feature_dim
from caduceus_cli.model.caduceus import CaduceusForMaskedLM
from caduceus_cli.model.rc import rc_average_ph, rc_average_ps
from caduceus_cli.tokenizer import A, C, G, T, reverse_complement_ids

log = logging.getLogger(__name__)

ACGT = [A, C, G, T]
TGCA = [T, G, C, A]  # complement of ACGT, in ACGT order


class WindowEngine:
    """A model on a device with a batch size and precision; counts the windows it runs (``windows_run``) and
    their tokens (``tokens_run``; a Ph window's RC pass counts as a second window)."""

    def __init__(
        self,
        model: CaduceusForMaskedLM,
        device: torch.device,
        batch_size: int = 8,
        precision: Precision | str = Precision.AUTO,
    ) -> None:
        self.model = model
        self.device = device
        self.batch_size = max(1, batch_size)
        self.rcps = model.config.rcps
        precision = choice(Precision, precision, "--precision")
        if precision == Precision.AUTO:
            precision = Precision.BF16 if device.type == "cuda" else Precision.FP32
        self.precision = precision
        self.windows_run = 0
        self.tokens_run = 0

    def _count(self, batch: torch.Tensor, passes: int) -> None:
        self.windows_run += len(batch) * passes
        self.tokens_run += batch.numel() * passes

    def _ctx(self):
        if self.precision == Precision.BF16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _batches(self, ids: np.ndarray, size: int | None = None):
        """Batches of ``size`` (default ``batch_size``) token windows (n, L) as int64 on the device (``ids`` may be
        any integer type, e.g. uint8)."""
        size = size or self.batch_size
        for i in range(0, len(ids), size):
            batch = torch.from_numpy(np.ascontiguousarray(ids[i : i + size]))
            yield batch.to(self.device, non_blocking=True).long()

    def feature_dim(self, rc_mode: RcMode | str = RcMode.AVG) -> int:
        return feature_dim(self.model.config, rc_mode)

    def token_features(self, batch: torch.Tensor, layer: int = -1, rc_mode: str = "avg") -> torch.Tensor:
        """Per-position features of token windows (n, L) -> (n, L, F), in the autocast dtype.

        ``layer``: index into the reference's ``output_hidden_states`` (0 = embeddings,
        n_layer or -1 = the final normalised output). ``rc_mode``: 'avg' averages the
        forward and reverse-complement strands at each genomic position, 'fwd' keeps the
        forward strand (PS: first channel half; Ph: the forward pass), 'both' concatenates them.
        """
        rc_mode = self.check(layer, rc_mode)
        h = self._hidden(batch, layer)  # (n, L, D)
        if self.rcps:
            if rc_mode == "avg":
                return rc_average_ps(h)  # (n, L, 2 d_model) -> (n, L, d_model)
            d = h.shape[-1] // 2
            fwd, rc = h[..., :d], h[..., d:].flip(-1)  # both (n, L, d_model), aligned to forward positions
        elif rc_mode == "fwd":
            return h
        else:
            h_rc = self._hidden(reverse_complement_ids(batch), layer)  # (n, L, D), RC strand order
            if rc_mode == "avg":
                return rc_average_ph(h, h_rc)
            fwd, rc = h, h_rc.flip(-2)
        if rc_mode == "fwd":
            return fwd
        return torch.cat([fwd, rc], dim=-1)  # (n, L, 2F)

    def check(self, layer: int, rc_mode: RcMode | str) -> str:
        """The RC mode's name; OptionError for a layer this model lacks or an unknown RC mode."""
        check_layer(self.model.config, layer)
        return choice(RcMode, rc_mode, "--rc-mode").value

    def _hidden(self, batch: torch.Tensor, layer: int) -> torch.Tensor:
        n_layer = self.model.config.n_layer
        self._count(batch, 1)
        if layer in (-1, n_layer):
            return self.model(batch, return_logits=False).last_hidden_state
        return self.model(batch, output_hidden_states=True, return_logits=False).hidden_states[layer]

    def run_token_features(self, ids: np.ndarray, layer: int = -1, rc_mode: str = "avg"):
        """Yield (row offset, float32 features (n, L, F) on the CPU) for batches of ``ids`` (N, L)."""
        for i, batch in enumerate(self._batches(ids)):
            with torch.inference_mode(), self._ctx():
                feats = self.token_features(batch, layer, rc_mode).float().cpu()
            yield i * self.batch_size, feats

    @torch.inference_mode()
    def pooled_features(
        self, ids: np.ndarray, centre: int, flank: int, layer: int = -1, rc_mode: str = "avg"
    ) -> np.ndarray:
        """ids (N, W) -> features mean-pooled over [centre - flank, centre + flank], (N, F).

        With rc_mode 'avg' (PS or Ph) the pooled vector of the reverse-complemented window
        (centre mirrored) is the same: the pooling range is symmetric about the centre.
        """
        W = ids.shape[1]
        lo, hi = max(0, centre - flank), min(W, centre + flank + 1)
        out = []
        for batch in self._batches(ids):
            with self._ctx():
                feats = self.token_features(batch, layer, rc_mode)[:, lo:hi]  # (n, hi - lo, F)
            out.append(feats.float().mean(1).cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, self.feature_dim(rc_mode)), np.float32)

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
            self._count(batch, 1 if self.rcps else 2)
        return torch.cat(out).numpy() if out else np.zeros((0, length, 4), np.float32)

    @torch.inference_mode()
    def pooled_features_at(
        self,
        ids: np.ndarray,
        centres: list[np.ndarray],
        flank: int,
        layer: int = -1,
        rc_mode: str = "avg",
        running: bool = False,
    ) -> list[np.ndarray]:
        """ids (N, W) and, per row, the positions to pool around -> per row (k_i, F) float32 means over
        [c - flank, c + flank] (clipped to the window), from one forward per row.

        A row pooled at one position takes the slice's mean, unless ``running``; a row pooled at several (a
        shared tile), or any row with ``running``, takes differences of a float64 running sum along the
        window, so a position's features do not depend on the other positions pooled with it. One copy to
        the host per batch.
        """
        W = ids.shape[1]
        out: list[np.ndarray] = []
        for offset, batch in zip(range(0, len(ids), self.batch_size), self._batches(ids), strict=True):
            with self._ctx():
                feats = self.token_features(batch, layer, rc_mode)  # (n, W, F)
            pooled, sizes = [], []
            for r in range(len(batch)):
                cs_ = np.asarray(centres[offset + r], np.int64)
                if len(cs_) == 1 and not running:
                    lo, hi = max(0, int(cs_[0]) - flank), min(W, int(cs_[0]) + flank + 1)
                    pooled.append(feats[r, lo:hi].float().mean(0, keepdim=True))  # (1, F)
                else:
                    cs = torch.nn.functional.pad(feats[r].double().cumsum(0), (0, 0, 1, 0))  # (W + 1, F), cs[0] = 0
                    c = torch.as_tensor(cs_, device=cs.device)  # (k,)
                    lo, hi = (c - flank).clamp(min=0), (c + flank + 1).clamp(max=W)
                    pooled.append(((cs[hi] - cs[lo]) / (hi - lo).unsqueeze(1)).float())  # (k, F)
                sizes.append(len(cs_))
            host = torch.cat(pooled).cpu().numpy()  # (sum k, F)
            out += np.split(host, np.cumsum(sizes)[:-1])
        return out

    @torch.inference_mode()
    def masked_logprobs_at(
        self, ids: np.ndarray, positions: list[np.ndarray], batch_size: int | None = None
    ) -> list[np.ndarray]:
        """ids (N, W) already masked at ``positions[i]`` in row i -> per row log P over ACGT there, (k_i, 4);
        ``batch_size`` windows per forward (default the engine's: shorter windows may take more). One gather
        and one copy to the host per batch."""
        if len(positions) != len(ids):
            raise ValueError(f"{len(ids)} windows but positions for {len(positions)}")
        out: list[np.ndarray] = []
        step = batch_size or self.batch_size
        for offset, batch in zip(range(0, len(ids), step), self._batches(ids, step), strict=True):
            with self._ctx():
                logits = self.model(batch).logits  # (n, W, V)
                lrc = None if self.rcps else self.model(reverse_complement_ids(batch)).logits.flip(1)
            part = [np.asarray(p, np.int64) for p in positions[offset : offset + len(batch)]]
            sizes = [len(p) for p in part]
            rows = torch.from_numpy(np.repeat(np.arange(len(part)), sizes)).to(logits.device)  # (K,) row of each
            cols = torch.from_numpy(np.concatenate(part)).to(logits.device)  # (K,) its position
            logp = torch.log_softmax(logits[rows, cols][:, ACGT].float(), -1)  # (K, 4)
            if lrc is not None:  # Ph: the RC pass, re-aligned to forward positions and complemented
                logp = (logp + torch.log_softmax(lrc[rows, cols][:, TGCA].float(), -1)) * 0.5
            out += np.split(logp.cpu().numpy(), np.cumsum(sizes)[:-1])  # per row (k_i, 4)
            self._count(batch, 1 if self.rcps else 2)
        return out
