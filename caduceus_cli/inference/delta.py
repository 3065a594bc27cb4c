"""CAD_DELTA: the change of a fine-tuned head's output from a site's reference window to its alternate window.

API (three names)::

    scorer = DeltaScorer(load_finetuned(model_dir, device), device, precision="auto", batch_size=8)
    scorer.fields                  # [(INFO name, description)], all Number=A, Type=Float
    scorer.score(plans)            # per plan, per ALT index: a tuple (one float per field) or None
    delta_fields(head_config)      # the same fields without a model

``score(plans)`` returns ``out[i][j]``: the deltas of ALT ``j`` of ``plans[i]`` (``len(out[i]) ==
plans[i].n_alts``), ``None`` where the plan has no ``AllelePlan`` for that ALT (REF_MISMATCH,
CONTIG_MISSING, SYMBOLIC, TOO_LONG). Each ALT is scored in its own ``AllelePlan``'s windows (an indel's
at its normalised position): the delta is ``value(AllelePlan.seq) - value(AllelePlan.ref_seq)`` for
every output of the head, in ``fields`` order.

What ``value`` is (raw head outputs ``z``, float32, then float64 on the host):

- binary classification (two classes ``c0``, ``c1`` in ``HeadConfig.classes`` order): the log-odds of
  ``c1``, ``z1 - z0``; for the 2-class softmax this is exactly ``log p1 / (1 - p1)`` (``p1 / p0 =
  exp(z1 - z0)`` and ``p0 = 1 - p1``), computed as the logit difference so that it does not saturate.
  One field, ``CAD_DELTA``.
- one regression target: the prediction in the target's own units (``z * target_std +
  target_mean``), so the delta is ``target_std * (z_alt - z_ref)``. One field, ``CAD_DELTA``.
- several classes: the log-probability of each class, ``log_softmax(z)_k`` (the delta is the log of
  the ratio of the class probabilities, ``log p_k(alt) / p_k(ref)``); several targets: each
  prediction in its own units. One field per output, ``CAD_DELTA_<name>`` with ``<name>`` from
  ``HeadConfig.output_names`` (``prob_<class>`` / the target name; characters a VCF INFO key cannot
  hold become ``_``).

RC invariance: the head's features are strand-averaged and its pooling symmetric (``model.heads``;
PS by its equivariance, Ph by a forward and a reverse-complement pass, always run in eval mode), and
the crop below is mirror-symmetric, so a site described on the other strand (reverse-complemented
windows, allele spans mirrored) gets the same deltas: bit for bit for Ph, up to float rounding for
PS. The backbone runs under bf16 autocast when asked (``precision`` auto: on a GPU); the pooling
and the linear head always run in float32, because a delta is a small difference of two outputs.

Windows longer than the head's training length (``HeadConfig.window``; ``window=`` overrides it, 0
pools the whole window) are cropped to it around the allele, not pooled whole: the head was trained
on sequences of that length and pools over all positions, so over a 131 kb window one allele's effect
would be diluted ~128-fold for a 1 kb head, and the pooled statistics would leave the training
distribution (and a crop's forward costs window / W of the whole window's). The crop of each window
is centred on the allele's span in it: ``[centre, centre + len(ref))`` in the reference window,
``[centre, centre + len(alt))`` in the alternate (``AllelePlan`` fields: the planner aligns an ALT on
its left anchor, an indel normalised).
When the training length and the allele length differ in parity the crop is one base shorter, so that
it is exactly centred (a crop of a reverse-complemented window is then the reverse complement of the
crop: one forward, RC-invariant); near a window edge it is shifted inside the window (mirror-
symmetric too). ``heads.centre_crops`` (the window's centre, two crops for an odd excess) is not used:
in ``--windows shared`` tiles the variant is not at the window centre, and two crops cost two forwards.
A window no longer than the training length is pooled whole.

Forwards are batched by crop length (no padding) and deduplicated within a call: reference crops by
``(AllelePlan.window_key, crop)``, so the ALTs of one site, split multi-allelic records and (without
a crop) the sites of a shared tile share one reference forward; alternate crops by their sequence. ``windows_run``
counts the windows run (a Ph model's reverse-complement pass not counted).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from caduceus_cli.choices import Precision, choice
from caduceus_cli.errors import OptionError
from caduceus_cli.model.heads import HeadConfig, SequenceHeadModel, symmetric_pool
from caduceus_cli.tokenizer import PAD, encode

if TYPE_CHECKING:
    from caduceus_cli.inference.planner import SitePlan

log = logging.getLogger(__name__)

DELTA_FIELD = "CAD_DELTA"
Delta = tuple[float, ...]
_INFO_BAD = re.compile(r"[^0-9A-Za-z_.]")


def _text(s: str) -> str:
    """A name as it may stand inside a VCF header's quoted Description."""
    return s.replace('"', "'").replace("\\", "/").replace("\n", " ")


def _field_names(head: HeadConfig) -> list[str]:
    if head.n_outputs == 1 or (head.task == "classification" and head.n_outputs == 2):
        return [DELTA_FIELD]
    names: list[str] = []
    for name in head.output_names:
        field = f"{DELTA_FIELD}_{_INFO_BAD.sub('_', name)}"
        while field in names:  # two names that differ only in characters an INFO key cannot hold
            field += "_"
        names.append(field)
    return names


def delta_fields(head_config: HeadConfig) -> list[tuple[str, str]]:
    """The INFO fields (name, description) of a head's deltas, in output order; all Number=A, Type=Float.

    One output (binary classification, one regression target): ``CAD_DELTA``; else ``CAD_DELTA_<name>``
    per output of ``head_config.output_names``.
    """
    head = head_config
    names = _field_names(head)
    tail = " (alt window - ref window, per ALT; RC-invariant head of a fine-tuned Caduceus model)"
    if head.task == "classification" and head.n_outputs == 2:
        c0, c1 = (_text(c) for c in head.classes)
        return [(names[0], f"Change in the log-odds of class {c1} vs {c0}, logit {c1} - logit {c0}" + tail)]
    if head.task == "classification":
        return [
            (n, f"Change in the log-probability of class {_text(c)}, log_softmax of the logits" + tail)
            for n, c in zip(names, head.classes, strict=True)
        ]
    return [
        (n, f"Change in the predicted {_text(t)}, in its own units" + tail)
        for n, t in zip(names, head.targets, strict=True)
    ]


def head_values(head: HeadConfig, raw: np.ndarray) -> np.ndarray:
    """Raw head outputs (N, K) -> the values whose differences are the deltas, (N, F) float64 (see module doc)."""
    z = np.asarray(raw, np.float64)
    if head.task == "classification":
        if head.n_outputs == 2:
            return z[:, 1:2] - z[:, 0:1]  # (N, 1): log-odds of class 1
        m = z.max(1, keepdims=True)
        return z - m - np.log(np.exp(z - m).sum(1, keepdims=True))  # (N, K): log_softmax
    mean = np.asarray(head.target_mean or [0.0] * z.shape[1], np.float64)
    std = np.asarray(head.target_std or [1.0] * z.shape[1], np.float64)
    return z * std + mean  # (N, T) in the targets' units


def allele_crop(length: int, start: int, span: int, window: int) -> tuple[int, int]:
    """(start, length) of the crop of a ``length``-bp window centred on the allele at ``[start, start + span)``.

    ``window`` 0 or >= ``length``: the whole window. Else ``window`` bp, or ``window - 1`` when ``window -
    span`` is odd (so the crop is exactly centred), shifted inside ``[0, length)``. Mirror-symmetric: the
    crop for ``(length, length - start - span, span)`` is the mirror image of this one.
    """
    if window <= 0 or length <= window:
        return 0, length
    n = window if (window - span) % 2 == 0 else window - 1
    if n < 1:  # window 1, an even-length allele
        n = 2
        if length <= n:
            return 0, length
    lo = start + (span - n) // 2  # exact: span - n is even
    return min(max(lo, 0), length - n), n


class DeltaScorer:
    """A fine-tuned model on a device scoring CAD_DELTA for site plans (see the module docstring)."""

    def __init__(
        self,
        model: SequenceHeadModel,
        device: torch.device | str = "cpu",
        precision: Precision | str = Precision.AUTO,
        batch_size: int = 8,
        window: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise OptionError(f"--batch-size {batch_size}: must be 1 or more")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        precision = choice(Precision, precision, "--precision")
        if precision == Precision.AUTO:
            precision = Precision.BF16 if self.device.type == "cuda" else Precision.FP32
        self.precision = precision
        self.batch_size = batch_size
        self.window = self.head_config.window if window is None else window
        if self.window < 0:
            raise OptionError(f"head window {self.window}: must be 0 (whole window) or more")
        self.fields = delta_fields(self.head_config)
        self.windows_run = 0
        log.info(
            "CAD_DELTA: %s head, %d field(s); windows %s",
            self.head_config.task,
            len(self.fields),
            f"longer than {self.window} bp cropped to it around each allele" if self.window else "pooled whole",
        )

    @property
    def head_config(self) -> HeadConfig:
        return self.model.head_config

    def _ctx(self):
        if self.precision == Precision.BF16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @torch.inference_mode()
    def raw_outputs(self, ids: np.ndarray) -> np.ndarray:
        """Token windows (N, L) -> raw head outputs (N, K) float32: backbone in the scorer's precision, the
        pooling and the head in float32; the same numbers as ``model(ids)`` in float32."""
        out = []
        for i in range(0, len(ids), self.batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(ids[i : i + self.batch_size])).to(self.device)
            with self._ctx():
                feats = self.model.features(batch)  # (n, L, D), strand-averaged (Ph: + the RC pass)
            pooled = symmetric_pool(feats.float(), batch != PAD, self.head_config.pool)  # (n, D)
            out.append(self.model.head(pooled).float().cpu())  # (n, K)
            self.windows_run += len(batch)
        return torch.cat(out).numpy() if out else np.zeros((0, self.head_config.n_outputs), np.float32)

    def score(self, plans: Sequence[SitePlan]) -> list[list[Delta | None]]:
        """Per plan, per ALT index: the deltas (one float per field) or None (no window for that ALT)."""
        out: list[list[Delta | None]] = [[None] * p.n_alts for p in plans]
        rows: dict[tuple, int] = {}  # crop key -> row of ``seqs``
        seqs: list[str] = []
        pairs: list[tuple[int, int, int, int]] = []  # (plan, ALT index, reference row, alternate row)

        def row(key: tuple, seq: str, lo: int, n: int) -> int:
            if key not in rows:
                rows[key] = len(seqs)
                seqs.append(seq[lo : lo + n])
            return rows[key]

        for i, p in enumerate(plans):
            for j, al in p.alleles.items():
                if not 0 <= j < p.n_alts or not al.ref_seq or not al.seq:
                    continue
                lo, n = allele_crop(len(al.ref_seq), al.centre, len(al.ref), self.window)
                ref_row = row(("ref", al.window_key, len(al.ref_seq), lo, n), al.ref_seq, lo, n)
                a, m = allele_crop(len(al.seq), al.centre, len(al.alt), self.window)
                pairs.append((i, j, ref_row, row(("alt", al.seq[a : a + m]), al.seq, a, m)))
        if not pairs:
            return out
        raw = np.zeros((len(seqs), self.head_config.n_outputs), np.float32)  # (R, K)
        by_len: dict[int, list[int]] = {}
        for r, s in enumerate(seqs):
            by_len.setdefault(len(s), []).append(r)
        for idx in by_len.values():
            for k in range(0, len(idx), self.batch_size):  # encoded a batch at a time: windows may be long
                part = idx[k : k + self.batch_size]
                raw[part] = self.raw_outputs(np.stack([encode(seqs[r]) for r in part]))  # (n, L) -> (n, K)
        values = head_values(self.head_config, raw)  # (R, F)
        for i, j, r, a in pairs:
            out[i][j] = tuple(float(x) for x in values[a] - values[r])
        log.debug("CAD_DELTA: %d ALTs of %d sites from %d windows", len(pairs), len(plans), len(seqs))
        return out
