"""score-vcf: stream a VCF, score every ALT with Caduceus, write every record in order.

The scores and flags are defined in ``inference.featurise`` and ``inference.planner``;
this module wires reader -> planner -> featuriser (-> probe) -> output, with provenance.

To standard output records are written as they are scored. To a file they go through a parts
folder beside it (``io.checkpoint``): durable as they are written, resumable (``resume``) after a
kill, shared by torchrun ranks, and turned into the output only when complete. ``chunk`` = "i/n"
scores the i-th of n shards of whole chunks (``pipelines.scatter``) for ``caduceus merge``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace

from caduceus_cli import __version__
from caduceus_cli.choices import IndelMasking, OutputType, Score, WindowMode, choice
from caduceus_cli.errors import InputFileError, OptionError, StoppedError
from caduceus_cli.inference.chunking import Shard
from caduceus_cli.inference.delta import DeltaScorer
from caduceus_cli.inference.distributed import Ranks
from caduceus_cli.inference.featurise import Featuriser, SiteScores, scored_chunks
from caduceus_cli.inference.planner import N_FRACTION_FLAG, SitePlanner, WindowLayout
from caduceus_cli.inference.runtime import InferenceOptions, Runtime
from caduceus_cli.inference.spec import variant_spec
from caduceus_cli.io.checkpoint import SUFFIX, Checkpoint, PartStats
from caduceus_cli.io.regions import Regions
from caduceus_cli.io.variant import Variant
from caduceus_cli.io.vcf import VariantReader
from caduceus_cli.io.writers import (
    Annotation,
    TsvText,
    TsvWriter,
    VcfText,
    VcfWriter,
    add_header_lines,
    declare_contigs,
    output_format,
)
from caduceus_cli.model.heads import attach_head, head_sha256, is_finetuned
from caduceus_cli.pipelines.parts import Cursor, Progress, score_parts
from caduceus_cli.pipelines.scatter import plan_scatter, run_hash, run_identity
from caduceus_cli.probe.apply import SiteProbe

log = logging.getLogger(__name__)

DEFAULT_MIN_SPACING = 0  # bp; measured in bench/README.md (shared windows vs centred)


@dataclass(frozen=True)
class ScoreOptions(InferenceOptions):
    """Options of ``score_vcf`` (runtime and feature options are ``InferenceOptions``'s)."""

    output_type: OutputType | str | None = None  # default: from the output file name
    scores: tuple[Score | str, ...] | None = None  # default: llr, cos (+ delta with a fine-tuned model)
    windows: WindowMode | str = WindowMode.CENTRED
    core: int | None = None  # shared windows: bp of a tile's core (default: half the window)
    min_spacing: int = DEFAULT_MIN_SPACING  # shared windows: closer SNV/MNVs go to further masked passes
    cluster_window: int | None = None  # shared windows: bp of the windows of a tile's extra passes (inference.passes)
    probe: str | None = None  # probe file from `finetune --method probe`: adds CAD_PROB
    tissue: str | None = None  # tissue of every variant, for a probe trained with tissue
    n_fraction_flag: float = N_FRACTION_FLAG
    regions: tuple[str, ...] = ()  # chr, chr:start or chr:start-end (1-based inclusive); several comma-separated
    regions_file: str | None = None  # BED (0-based half-open)
    chunk: str | None = None  # "i/n": the i-th of n shards (1-based), for `caduceus merge`
    resume: bool = False  # continue the unfinished run whose parts are beside the output
    checkpoint_every: int = 20_000  # records per durable part (a part also closes after checkpoint_s)
    checkpoint_s: float = 300.0
    indel_masking: IndelMasking | str = IndelMasking.SPAN  # indel CAD_LLR: the span in one forward, or per base


@dataclass
class ScoreSummary:
    """What a score-vcf run did (with several torchrun ranks: rank 0's summary is the whole output's)."""

    records: int = 0
    alts: int = 0
    scored: int = 0
    flags: Counter = field(default_factory=Counter)
    windows_run: int = 0
    tokens_run: int = 0  # tokens of those forwards (windows of a tile's extra passes are shorter)
    window: int = 0
    output: str = "-"
    resumed: int = 0  # records that an earlier, killed run had already scored

    def describe(self) -> str:
        flags = ", ".join(f"{k} {v}" for k, v in sorted(self.flags.items())) or "none"
        again = f" ({self.resumed} from an earlier run)" if self.resumed else ""
        return (
            f"{self.records} records{again}, {self.alts} ALTs, {self.scored} scored; flags: {flags}; "
            f"window {self.window} bp"
        )


def score_vcf(
    vcf: str,
    ref: str,
    out: str,
    model: str | None = None,
    opts: ScoreOptions = ScoreOptions(),
    progress: Callable[[int], None] | None = None,
    command: str | None = None,
    ranks: Ranks = Ranks(),
    stop: Callable[[], bool] | None = None,
) -> ScoreSummary:
    """Score every ALT of ``vcf`` against ``ref``; write annotated VCF/BCF/TSV to ``out`` (or '-').

    ``model``: a model directory, hub id, or None for the shipped default. ``command``: the command
    line to record in the output header (the CLI passes it). ``progress(n)`` is called after each
    chunk of n records. ``ranks``: this process's place under torchrun. ``stop()``: checked after each
    chunk; when true the run keeps what is done and raises ``StoppedError`` (``resume`` continues it).
    """
    fmt = output_format(out, opts.output_type)
    scores = None if opts.scores is None else {choice(Score, x, "--scores") for x in opts.scores}
    if scores is not None and not scores:
        raise OptionError("--scores: name at least one of llr, cos, delta")
    mode = choice(WindowMode, opts.windows, "--windows")
    shard = Shard.parse(opts.chunk) if opts.chunk else None
    regions = Regions.parse(opts.regions, opts.regions_file)
    if opts.checkpoint_every < 1:
        raise OptionError(f"--checkpoint-every {opts.checkpoint_every}: must be 1 or more")
    if vcf == "-" and (shard is not None or ranks.many or opts.resume):
        raise OptionError("--chunk, --resume and torchrun read the input more than once: give a file, not '-'")
    if out == "-" and (opts.resume or ranks.many):
        raise OptionError("--resume and torchrun keep parts beside the output: give -o FILE, not '-'")
    probe = SiteProbe.load(opts.probe, opts.tissue) if opts.probe else None
    progress_ = Progress(progress)
    ranks.init()
    try:
        with Runtime(model, replace(opts, device=ranks.device(opts.device)), ref) as rt:
            job = _Job(rt, opts, mode, scores, probe)
            scatter = plan_scatter(vcf, regions, job.layout, opts.chunk_sites, shard, ranks)
            if scatter.mine.size is not None:
                progress_.set_total(scatter.mine.size)
            with VariantReader(vcf, regions) as reader:
                provenance = job.provenance(command, regions, shard)
                identity = None
                if shard is not None or out != "-":
                    identity = run_identity(vcf, job, opts, shard, fmt == OutputType.TSV)
                if shard is not None:
                    provenance["shard"] = (
                        f"<index={shard.index},total={shard.total},records={scatter.output.size},"
                        f"run={run_hash(identity)}>"
                    )
                if reader.scored_before and ranks.rank == 0:
                    log.info("%s was scored before: that run's provenance and CAD_* values are replaced", vcf)
                try:
                    add_header_lines(reader.header, provenance, job.fields, job.delta_fields)
                except InputFileError as exc:
                    raise InputFileError(f"{vcf}: {exc}") from exc
                if fmt == OutputType.BCF:
                    declare_contigs(reader.header, job.reference.lengths)
                if fmt == OutputType.TSV:
                    text: TsvText | VcfText = TsvText(provenance, job.fields)
                else:  # a file scored before: only this run's provenance lines stay
                    text = VcfText(reader.header, tuple(provenance) if reader.scored_before else None, reader.own_keys)
                summary = ScoreSummary(window=job.spec.window, output=out)
                cursor = Cursor(reader)
                if out == "-":
                    job.stream(cursor.take(scatter.output), text, fmt, out, reader, summary, progress_, stop)
                else:
                    # the output's range (a shard's is fixed by the rest; the whole input's end is left open, so a
                    # run may resume as one process or as torchrun ranks)
                    out_range = [0, None] if shard is None else [scatter.output.start, scatter.output.end]
                    identity |= {"chunk": str(shard or ""), "range": out_range}
                    ck = Checkpoint(out)
                    if ranks.rank == 0:
                        ck.start(identity, text.header_text(), opts.resume)
                    ranks.barrier()
                    if ranks.rank != 0:
                        ck.check(identity)
                    try:
                        mine, summary.resumed = score_parts(job, ck, cursor, scatter.mine, text, progress_, stop, ranks)
                    except Exception:
                        if not ranks.many:  # other ranks may be writing parts into the folder
                            ck.discard_if_empty()
                        raise
                    ranks.barrier()
                    if ranks.rank == 0:
                        end = scatter.output.end if scatter.output.end is not None else cursor.seen
                        mine = ck.assemble(scatter.output.start, end, fmt)
                    _add(summary, mine)
            summary.windows_run = rt.engine.windows_run
            summary.tokens_run = rt.engine.tokens_run
            if ranks.rank == 0:
                _warn_build(summary, vcf, job.reference.describe())
    finally:
        ranks.close()
    return summary


def _warn_build(summary: ScoreSummary, vcf: str, ref: str) -> None:
    """One warning when many REF alleles disagree with the reference: most often the wrong genome build."""
    bad = summary.flags.get("REF_MISMATCH", 0)
    if bad >= 5 and bad >= 0.1 * summary.records:
        log.warning(
            "%d of %d records in %s have a REF that is not in %s at their position: check that both are the same "
            "genome build (and chromosome naming)",
            bad,
            summary.records,
            vcf,
            ref,
        )


class _Job:
    """The model-side pieces of one run: layout, planner, featuriser, probe, fields."""

    def __init__(self, rt: Runtime, opts: ScoreOptions, mode: WindowMode, scores: set[Score] | None, probe) -> None:
        head = is_finetuned(rt.model.source_dir)
        if scores is None:
            scores = {Score.LLR, Score.COS} | ({Score.DELTA} if head else set())
        if Score.DELTA in scores and not head:
            raise OptionError(
                f"--scores delta: {rt.model.source} has no fine-tuned head (make one with `caduceus finetune --method full`)"
            )
        self.rt, self.opts, self.scores, self.probe = rt, opts, scores, probe
        self.reference = rt.need_reference("score-vcf")
        self.delta = None
        self.head_sha256 = head_sha256(rt.model.source_dir) if head else None
        if Score.DELTA in scores:
            model = attach_head(rt.model, rt.model.source_dir)
            self.delta = DeltaScorer(model, rt.device, rt.engine.precision, opts.batch_size)
        if probe is None:
            self.spec = variant_spec(rt.model, rt.model_sha256, opts)
        else:
            self.spec = probe.spec_for(rt.model, rt.model_sha256, opts.window, opts.flank)
        self.layout = WindowLayout(
            self.spec.window, opts.n_fraction_flag, opts.strict, _core(self.spec.window, mode, opts.core)
        )
        self.planner = SitePlanner(self.reference, self.layout)
        self.featuriser = Featuriser(
            rt.engine,
            self.spec,
            llr=Score.LLR in scores,
            features=Score.COS in scores or probe is not None,
            min_spacing=opts.min_spacing,
            cluster=opts.cluster_window,
            indel_masking=choice(IndelMasking, opts.indel_masking, "--indel-masking").value,
        )
        wanted = {"CAD_LLR": Score.LLR in scores, "CAD_COS": Score.COS in scores, "CAD_PROB": probe is not None}
        self.delta_fields = tuple(self.delta.fields) if self.delta is not None else ()
        self.fields = tuple(f for f, on in wanted.items() if on) + tuple(name for name, _ in self.delta_fields)

    def annotated(self, items: Iterable[tuple[Variant, object]]) -> Iterator[tuple[list, PartStats]]:
        """(record, Annotation) pairs and their stats, one scored chunk at a time, in input order."""
        for chunk in scored_chunks(items, self.planner, self.featuriser, self.opts.chunk_sites):
            yield self._annotate(chunk)

    def _annotate(self, chunk: list[tuple[SiteScores, object]]) -> tuple[list, PartStats]:
        probs = self.probe.predict_sites([s for s, _ in chunk]) if self.probe is not None else None
        deltas = self.delta.score([s.plan for s, _ in chunk]) if self.delta is not None else None
        stats = PartStats()
        pairs = []
        for j, (s, rec) in enumerate(chunk):
            stats.records += 1
            stats.alts += s.plan.n_alts
            stats.scored += sum(
                1
                for i in range(s.plan.n_alts)
                if s.cos[i] is not None or s.llr[i] is not None or (deltas is not None and deltas[j][i] is not None)
            )
            stats.flags.update(s.flags)
            prob = tuple(probs[j]) if probs is not None else None
            llr = tuple(s.llr) if "CAD_LLR" in self.fields else None
            cos = tuple(s.cos) if "CAD_COS" in self.fields else None
            extra = ()
            if deltas is not None:
                per_alt = deltas[j]  # per ALT: one value per delta field, or None
                extra = tuple(
                    (name, tuple(None if d is None else d[k] for d in per_alt))
                    for k, (name, _) in enumerate(self.delta_fields)
                )
            # per-ALT flags (TSV rows) only where the record has flags: most records have none
            alt_flags = tuple(s.plan.alt_flags(i) for i in range(s.plan.n_alts)) if s.flags else None
            pairs.append((rec, Annotation(llr, cos, s.flags, prob, extra, alt_flags)))
        return pairs, stats

    def stream(self, items, text, fmt, out, reader, summary, progress, stop) -> None:
        """Write to standard output as records are scored."""
        if fmt == OutputType.TSV:
            writer: TsvWriter | VcfWriter = TsvWriter(out, text.provenance, self.fields)
        else:
            writer = VcfWriter(out, fmt, reader.header, self.reference.lengths, text.provenance, text.clear)
        ok = False
        try:
            for pairs, stats in self.annotated(items):
                for rec, ann in pairs:
                    writer.write(rec, ann)
                _add(summary, stats)
                progress(stats.records)
                if stop is not None and stop():
                    raise StoppedError(f"stopped after {summary.records} records (standard output is incomplete)")
            ok = True
        finally:
            writer.close(ok)

    def provenance(self, command: str | None, regions: Regions | None, shard: Shard | None) -> dict[str, str]:
        rt = self.rt
        prov = {"version": __version__}
        if command is not None:
            prov["command"] = command
        prov |= {
            "model": f"<ID={rt.model.source},sha256={rt.model_sha256}>",
            "window": str(self.spec.window),
            "flank": str(self.spec.flank),
            "rc_mode": "PS equivariant (both strands in one pass)" if rt.model.config.rcps else "Ph forward+RC average",
            "precision": rt.engine.precision.value,
            "backend": rt.backend_name,
        }
        if self.layout.core is not None:
            cluster = self.featuriser.cluster
            extra = f", cluster windows {cluster} bp" if cluster < self.spec.window else ""
            prov["windows"] = f"shared (core {self.layout.core} bp{extra})"
        if self.scores != {Score.LLR, Score.COS}:
            prov["scores"] = ",".join(sorted(x.value for x in self.scores))
        if choice(IndelMasking, self.opts.indel_masking, "--indel-masking") != IndelMasking.SPAN:
            prov["indel_masking"] = choice(IndelMasking, self.opts.indel_masking, "--indel-masking").value
        if self.delta is not None:
            prov["delta"] = f"<head={self.delta.head_config.task},window={self.delta.window}>"
        if self.probe is not None:
            prov["probe"] = self.probe.describe()
        if regions is not None:
            prov["regions"] = regions.describe()
        return prov


def _add(summary: ScoreSummary, stats: PartStats) -> None:
    summary.records += stats.records
    summary.alts += stats.alts
    summary.scored += stats.scored
    summary.flags.update(stats.flags)


def _core(window: int, mode: WindowMode, core: int | None) -> int | None:
    """The shared tiles' core in bp (None for centred windows); default half the window."""
    if mode == WindowMode.CENTRED:
        return None
    core = window // 2 if core is None else core
    if not 1 <= core <= window:
        raise OptionError(f"--core {core}: must be between 1 and the window ({window})")
    return core


__all__ = ["SUFFIX", "ScoreOptions", "ScoreSummary", "score_vcf"]
