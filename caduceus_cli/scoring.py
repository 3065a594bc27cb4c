"""score-vcf: stream a VCF, score every ALT with Caduceus, write every record in order.

Per site (``pos0`` = VCF POS - 1) the reference window is [pos0 - W//2, pos0 - W//2 + W):
the variant's first base sits at index W//2. Scores per ALT:

- CAD_LLR (SNV, MNV): log P(alt) - log P(ref) over A/C/G/T at the REF positions,
  all masked in one forward of the reference window, summed over positions,
  averaged over both strands. Indels get '.', as a masked model has no
  likelihood for a length change at one position.
- CAD_COS (SNV, MNV, indel): cosine distance of the RC-averaged embeddings of the
  reference and alternate windows, mean-pooled over +/- flank positions around the
  variant. The alternate window is the reference with REF replaced by ALT, aligned
  on the left anchor (index W//2), cut or filled from the reference to W bases.
- CAD_FLAG: REF_MISMATCH, CONTIG_MISSING and SYMBOLIC / TOO_LONG ALTs are not
  scored; EDGE_PADDED (window padded with N past a contig end) and N_IN_WINDOW
  (>= 0.5% N, the paper's drop rule) are scored but flagged.

Identical windows are run once per chunk (multi-allelic sites share the reference
and masked windows), and recent reference-window features are cached across chunks.
"""

from __future__ import annotations

import logging
import os
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace

import numpy as np

from caduceus_cli import __version__
from caduceus_cli.errors import InputFileError, ReferenceError_
from caduceus_cli.model.loading import load_model, weights_sha256
from caduceus_cli.provenance import command_line
from caduceus_cli.reference import Reference, read_rename_table
from caduceus_cli.tokenizer import MASK, encode
from caduceus_cli.variants import (
    TsvWriter,
    VariantReader,
    VcfWriter,
    add_header_lines,
    allele_class,
    output_format,
)
from caduceus_cli.windows import WindowModel, pick_device

log = logging.getLogger(__name__)

MAX_WINDOW = 131_072
DEFAULT_FLANK = 768  # the paper's pooling half-width
_BASE_INDEX = {"A": 0, "C": 1, "G": 2, "T": 3}


@dataclass(frozen=True)
class ScoreOptions:
    window: int | None = None  # default: the probe's window, else the model's training length
    flank: int | None = None  # default: the probe's, else 768 (the paper's)
    batch_size: int = 8
    chunk_sites: int = 256
    strict: bool = False
    device: str = "auto"
    backend: str = "auto"
    precision: str = "auto"
    rename_chrs: str | None = None
    n_fraction_flag: float = 0.005
    output_format: str | None = None
    layer: int = -1  # hidden state used for embeddings (-1: final normalised output)
    rc_mode: str = "avg"  # avg | fwd | both (see WindowModel.token_features)
    llr: bool = True  # False: embeddings only (embed, probe training)
    probe: str | None = None  # probe file from `finetune --method probe`: adds CAD_PROB
    tissue: str | None = None  # tissue value for a probe trained with tissue


@dataclass
class ScoreSummary:
    records: int = 0
    alts: int = 0
    scored: int = 0
    flags: Counter = field(default_factory=Counter)
    windows_run: int = 0
    window: int = 0


@dataclass
class _SitePlan:
    rec: object
    flags: list[str]
    llr: list
    cos: list
    chrom: str | None = None
    start: int = 0
    ref_seq: str = ""
    alt_seqs: dict = field(default_factory=dict)  # alt index -> window sequence
    masked: bool = False
    ref_feat: np.ndarray | None = None  # (F,) pooled features of the reference window
    alt_feats: dict = field(default_factory=dict)  # alt index -> (F,) pooled features of the alternate window

    def variant_features(self, i: int) -> np.ndarray | None:
        """The paper's variant feature of ALT ``i``: [ref pooled, alt pooled], (2F,); None if not scored."""
        if i not in self.alt_feats:
            return None
        return np.concatenate([self.ref_feat, self.alt_feats[i]])


def default_window(model) -> int:
    w = model.config.max_seq_len
    if not w:
        log.warning("model config has no max_seq_len; using a 1,024 bp window (set --window)")
        w = 1024
    return int(w)


class VariantScorer:
    """Holds the model, reference and options; scores chunks of records."""

    def __init__(self, model, reference: Reference, opts: ScoreOptions, device, engine: WindowModel | None = None) -> None:
        self.ref = reference
        self.opts = opts = replace(opts, flank=DEFAULT_FLANK if opts.flank is None else opts.flank)
        self.W = opts.window or default_window(model)
        if not 1 <= self.W <= MAX_WINDOW:
            raise InputFileError(f"--window {self.W}: must be between 1 and {MAX_WINDOW}")
        self.centre = self.W // 2
        self.engine = engine or WindowModel(model, device, opts.batch_size, opts.precision)
        self.summary = ScoreSummary(window=self.W)
        self._warned: set[str] = set()
        self._ref_cache: OrderedDict = OrderedDict()

    # ---- planning ----
    def plan(self, rec) -> _SitePlan:
        alts = tuple(rec.alts or ())
        p = _SitePlan(rec, [], [None] * len(alts), [None] * len(alts))
        if not alts:
            return p
        chrom = self.ref.resolve(rec.chrom)
        if chrom is None:
            if self.opts.strict:
                raise ReferenceError_(
                    f"{rec.chrom}:{rec.pos}: contig {rec.chrom} is not in the reference {self.ref.path.name} "
                    "(use --rename-chrs FILE, or drop --strict to pass such records through flagged)"
                )
            if rec.chrom not in self._warned:
                self._warned.add(rec.chrom)
                log.warning("contig %s is not in %s: its records pass through flagged CONTIG_MISSING",
                            rec.chrom, self.ref.path.name)
            p.flags.append("CONTIG_MISSING")
            return p
        ref_allele = (rec.ref or "").upper()
        pos0 = rec.pos - 1
        c, W = self.centre, self.W
        if len(ref_allele) > W - c:
            p.flags.append("TOO_LONG")
            return p
        longest_del = max([len(ref_allele) - len(a) for a in alts if allele_class(ref_allele, a) == "indel"] + [0])
        win = self.ref.window(chrom, pos0 - c, W + longest_del)
        if win.seq[c : c + len(ref_allele)] != ref_allele:
            if self.opts.strict:
                raise ReferenceError_(
                    f"{rec.chrom}:{rec.pos}: REF {rec.ref} does not match the reference "
                    f"({win.seq[c:c + len(ref_allele)] or 'past the contig end'}) in {self.ref.path.name}; "
                    "is it the right genome build?"
                )
            p.flags.append("REF_MISMATCH")
            return p
        p.chrom, p.start = chrom, pos0 - c
        p.ref_seq = win.seq[:W]
        if win.padded and (pos0 - c < 0 or pos0 - c + W > self.ref.lengths[chrom]):
            p.flags.append("EDGE_PADDED")
        if p.ref_seq.count("N") >= self.opts.n_fraction_flag * W:
            p.flags.append("N_IN_WINDOW")
        for i, alt in enumerate(alts):
            kind = allele_class(ref_allele, alt)
            if kind == "symbolic":
                p.flags.append("SYMBOLIC")
            elif len(alt) > W - c:
                p.flags.append("TOO_LONG")
            else:
                p.alt_seqs[i] = (win.seq[:c] + alt.upper() + win.seq[c + len(ref_allele):])[:W]
                if kind in ("snv", "mnv"):
                    p.masked = True
        p.flags = list(dict.fromkeys(p.flags))
        return p

    def scored_chunks(self, records: Iterable, check: Callable[[list[_SitePlan], int], None] | None = None
                      ) -> Iterator[list[_SitePlan]]:
        """Plan and score ``records`` ``chunk_sites`` at a time, in input order (memory bounded by a chunk).

        ``check(plans, offset)`` sees each chunk's plans before the model runs on them.
        """
        chunk: list[_SitePlan] = []
        done = 0
        for rec in records:
            chunk.append(self.plan(rec))
            if len(chunk) >= self.opts.chunk_sites:
                yield self._scored(chunk, done, check)
                done += len(chunk)
                chunk = []
        if chunk:
            yield self._scored(chunk, done, check)

    def _scored(self, plans: list[_SitePlan], offset: int, check) -> list[_SitePlan]:
        if check is not None:
            check(plans, offset)
        self.score_chunk(plans)
        return plans

    # ---- scoring a chunk ----
    def score_chunk(self, plans: list[_SitePlan]) -> None:
        c, W = self.centre, self.W
        ref_keys: dict[tuple, int] = {}
        alt_keys: dict[tuple, int] = {}
        mask_keys: dict[tuple, int] = {}
        for p in plans:
            if not p.alt_seqs:
                continue
            rkey = (p.chrom, p.start)
            if rkey not in self._ref_cache:
                ref_keys.setdefault(rkey, len(ref_keys))
            for seq in p.alt_seqs.values():
                alt_keys.setdefault(seq, len(alt_keys))
            if p.masked and self.opts.llr:
                mask_keys.setdefault((p.chrom, p.start, len(p.rec.ref)), len(mask_keys))
        by_ref = {(p.chrom, p.start): p.ref_seq for p in plans if p.alt_seqs}
        flank = self.opts.flank
        ref_feats = self._encode_and_pool([by_ref[k] for k in ref_keys], c, flank)
        for k, idx in ref_keys.items():
            self._ref_cache[k] = ref_feats[idx]
            if len(self._ref_cache) > 4096:
                self._ref_cache.popitem(last=False)
        alt_feats = self._encode_and_pool(list(alt_keys), c, flank)
        mask_lp = {}
        for length in sorted({k[2] for k in mask_keys}):
            keys = [k for k in mask_keys if k[2] == length]
            ids = np.stack([encode(by_ref[(k[0], k[1])]) for k in keys]) if keys else np.zeros((0, W), np.int64)
            ids[:, c : c + length] = MASK
            lp = self.engine.masked_logprobs(ids, c, length)
            mask_lp.update({k: lp[j] for j, k in enumerate(keys)})
        for p in plans:
            if not p.alt_seqs:
                continue
            rf = self._ref_cache[(p.chrom, p.start)]
            p.ref_feat = rf
            ref_allele = p.rec.ref.upper()
            for i, seq in p.alt_seqs.items():
                alt = p.rec.alts[i].upper()
                af = alt_feats[alt_keys[seq]]
                p.alt_feats[i] = af
                p.cos[i] = float(1.0 - np.dot(rf, af) / (np.linalg.norm(rf) * np.linalg.norm(af) + 1e-12))
                if len(alt) == len(ref_allele) and self.opts.llr:
                    lp = mask_lp[(p.chrom, p.start, len(ref_allele))]
                    p.llr[i] = _llr(lp, ref_allele, alt)

    def _encode_and_pool(self, seqs: list[str], centre: int, flank: int) -> np.ndarray:
        if not seqs:
            return np.zeros((0, 1), np.float32)
        ids = np.stack([encode(s) for s in seqs])  # (N, W)
        return self.engine.pooled_features(ids, centre, flank, self.opts.layer, self.opts.rc_mode)


def _llr(logp: np.ndarray, ref: str, alt: str) -> float | None:
    """Sum over positions where ref and alt differ of log P(alt base) - log P(ref base)."""
    total = 0.0
    for j, (r, a) in enumerate(zip(ref, alt, strict=True)):
        if r == a:
            continue
        if r not in _BASE_INDEX or a not in _BASE_INDEX:
            return None
        total += float(logp[j, _BASE_INDEX[a]] - logp[j, _BASE_INDEX[r]])
    return total


def score_vcf(
    vcf: str,
    ref: str,
    out: str,
    model_source: str | None = None,
    opts: ScoreOptions = ScoreOptions(),
    progress: Callable[[int], None] | None = None,
) -> ScoreSummary:
    """Score every ALT of ``vcf`` against ``ref``; write annotated VCF/BCF/TSV to ``out`` (or '-')."""
    device = pick_device(opts.device)
    model = load_model(model_source, device=device, backend=opts.backend)
    probe = None
    if opts.probe:
        from caduceus_cli.probe import Probe, SiteProbe

        probe = SiteProbe(Probe.load(opts.probe), opts.tissue)
        opts = probe.adopt_options(opts, model)
    renames = read_rename_table(opts.rename_chrs) if opts.rename_chrs else None
    reference = Reference(ref, renames)
    scorer = VariantScorer(model, reference, opts, device)
    reader = VariantReader(vcf)
    fmt = output_format(out, opts.output_format)
    provenance = {
        "version": __version__,
        "command": command_line(),
        "model": f"<ID={model.source},sha256={weights_sha256(model.source_dir)}>",
        "window": str(scorer.W),
        "flank": str(scorer.opts.flank),
        "rc_mode": "PS equivariant (both strands in one pass)" if model.config.rcps else "Ph forward+RC average",
        "precision": scorer.engine.precision,
        "backend": model.kernels(device).name,
    }
    if probe is not None:
        provenance["probe"] = f"<file={opts.probe},classifier={probe.probe.classifier},table={probe.probe.info.get('table')}>"
    header = reader.header
    add_header_lines(header, provenance, with_prob=probe is not None)
    writer = TsvWriter(out, provenance, probe is not None) if fmt == "tsv" else VcfWriter(out, fmt, header, reference.lengths)
    ok = False
    summary = scorer.summary
    try:
        for chunk in scorer.scored_chunks(reader.records()):
            _write_chunk(chunk, writer, probe, summary, progress)
        ok = True
    finally:
        writer.close(ok)
        reader.close()
        reference.close()
    summary.windows_run = scorer.engine.windows_run
    return summary


def _write_chunk(chunk: list[_SitePlan], writer, probe, summary: ScoreSummary, progress) -> None:
    probs = probe.predict_sites(chunk) if probe is not None else None
    for j, p in enumerate(chunk):
        n_alts = len(p.llr)
        summary.records += 1
        summary.alts += n_alts
        summary.scored += sum(1 for x in p.cos if x is not None)
        summary.flags.update(p.flags)
        writer.write(p.rec, p.llr, p.cos, p.flags, probs[j] if probs is not None else None)
    if progress:
        progress(len(chunk))


def describe_summary(s: ScoreSummary) -> str:
    flags = ", ".join(f"{k} {v}" for k, v in sorted(s.flags.items())) or "none"
    return f"{s.records} records, {s.alts} ALTs, {s.scored} scored; flags: {flags}; window {s.window} bp"


def count_records(path: str) -> int | None:
    """Records in a VCF for the progress bar's total (None for stdin or when it cannot be counted cheaply)."""
    if path == "-" or not os.path.exists(path) or os.path.getsize(path) > 200_000_000:
        return None
    try:
        import pysam

        with pysam.VariantFile(path) as vf:
            return sum(1 for _ in vf)
    except Exception:  # unreadable here: the scorer reports it properly
        return None
