"""score-vcf: stream a VCF, score every ALT with Caduceus, write every record in order.

The scores and flags are defined in ``inference.featurise`` and ``inference.planner``;
this module wires reader -> planner -> featuriser (-> probe) -> writer, with provenance.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from caduceus_cli import __version__
from caduceus_cli.choices import OutputType, Pool, Score, WindowMode, choice
from caduceus_cli.errors import OptionError
from caduceus_cli.inference.featurise import Featuriser, SiteScores, scored_chunks
from caduceus_cli.inference.planner import N_FRACTION_FLAG, SitePlanner, WindowLayout
from caduceus_cli.inference.runtime import InferenceOptions, Runtime
from caduceus_cli.inference.spec import spec_for
from caduceus_cli.io.vcf import VariantReader
from caduceus_cli.io.writers import Annotation, TsvWriter, VcfWriter, add_header_lines, output_format
from caduceus_cli.probe.apply import SiteProbe

DEFAULT_MIN_SPACING = 0  # bp; measured in bench/README.md (shared windows vs centred)


@dataclass(frozen=True)
class ScoreOptions(InferenceOptions):
    """Options of ``score_vcf`` (runtime and feature options are ``InferenceOptions``'s)."""

    output_type: OutputType | str | None = None  # default: from the output file name
    scores: tuple[Score | str, ...] = (Score.LLR, Score.COS)
    windows: WindowMode | str = WindowMode.CENTRED
    core: int | None = None  # shared windows: bp of a tile's core (default: half the window)
    min_spacing: int = DEFAULT_MIN_SPACING  # shared windows: closer SNV/MNVs go to further masked passes
    probe: str | None = None  # probe file from `finetune --method probe`: adds CAD_PROB
    tissue: str | None = None  # tissue of every variant, for a probe trained with tissue
    n_fraction_flag: float = N_FRACTION_FLAG


@dataclass
class ScoreSummary:
    """What a score-vcf run did."""

    records: int = 0
    alts: int = 0
    scored: int = 0
    flags: Counter = field(default_factory=Counter)
    windows_run: int = 0
    window: int = 0
    output: str = "-"

    def describe(self) -> str:
        flags = ", ".join(f"{k} {v}" for k, v in sorted(self.flags.items())) or "none"
        return (
            f"{self.records} records, {self.alts} ALTs, {self.scored} scored; flags: {flags}; window {self.window} bp"
        )


def score_vcf(
    vcf: str,
    ref: str,
    out: str,
    model: str | None = None,
    opts: ScoreOptions = ScoreOptions(),
    progress: Callable[[int], None] | None = None,
    command: str | None = None,
) -> ScoreSummary:
    """Score every ALT of ``vcf`` against ``ref``; write annotated VCF/BCF/TSV to ``out`` (or '-').

    ``model``: a model directory, hub id, or None for the shipped default. ``command``: the
    command line to record in the output header (the CLI passes it). ``progress(n)`` is
    called after each chunk of n records.
    """
    fmt = output_format(out, opts.output_type)
    scores = {choice(Score, x, "--scores") for x in opts.scores}
    if not scores:
        raise OptionError("--scores: name at least one of llr, cos")
    mode = choice(WindowMode, opts.windows, "--windows")
    probe = SiteProbe.load(opts.probe, opts.tissue) if opts.probe else None
    with Runtime(model, opts, ref) as rt:
        reference = rt.need_reference("score-vcf")
        if probe is None:
            spec = spec_for(
                rt.model,
                rt.model_sha256,
                "variant",
                window=opts.window,
                flank=opts.flank,
                pool=Pool.CENTRE,
                layer=opts.layer,
                rc_mode=opts.rc_mode,
            )
        else:
            spec = probe.spec_for(rt.model, rt.model_sha256, opts.window, opts.flank)
        layout = WindowLayout(spec.window, opts.n_fraction_flag, opts.strict, _core(spec.window, mode, opts.core))
        planner = SitePlanner(reference, layout)
        featuriser = Featuriser(
            rt.engine,
            spec,
            llr=Score.LLR in scores,
            features=Score.COS in scores or probe is not None,
            min_spacing=opts.min_spacing,
        )
        fields = tuple(
            f
            for f, on in (
                ("CAD_LLR", Score.LLR in scores),
                ("CAD_COS", Score.COS in scores),
                ("CAD_PROB", probe is not None),
            )
            if on
        )
        summary = ScoreSummary(window=spec.window, output=out)
        with VariantReader(vcf) as reader:
            provenance = _provenance(rt, spec, command, probe, layout, scores)
            add_header_lines(reader.header, provenance, fields)
            if fmt == OutputType.TSV:
                writer: TsvWriter | VcfWriter = TsvWriter(out, provenance, fields)
            else:
                writer = VcfWriter(out, fmt, reader.header, reference.lengths)
            ok = False
            try:
                for chunk in scored_chunks(reader, planner, featuriser, opts.chunk_sites):
                    _write_chunk(chunk, writer, probe, summary, fields)
                    if progress:
                        progress(len(chunk))
                ok = True
            finally:
                writer.close(ok)
        summary.windows_run = rt.engine.windows_run
    return summary


def _core(window: int, mode: WindowMode, core: int | None) -> int | None:
    """The shared tiles' core in bp (None for centred windows); default half the window."""
    if mode == WindowMode.CENTRED:
        return None
    core = window // 2 if core is None else core
    if not 1 <= core <= window:
        raise OptionError(f"--core {core}: must be between 1 and the window ({window})")
    return core


def _provenance(
    rt: Runtime, spec, command: str | None, probe: SiteProbe | None, layout: WindowLayout, scores: set[Score]
) -> dict[str, str]:
    prov = {"version": __version__}
    if command is not None:
        prov["command"] = command
    prov |= {
        "model": f"<ID={rt.model.source},sha256={rt.model_sha256}>",
        "window": str(spec.window),
        "flank": str(spec.flank),
        "rc_mode": "PS equivariant (both strands in one pass)" if rt.model.config.rcps else "Ph forward+RC average",
        "precision": rt.engine.precision.value,
        "backend": rt.backend_name,
    }
    if layout.core is not None:
        prov["windows"] = f"shared (core {layout.core} bp)"
    if scores != {Score.LLR, Score.COS}:
        prov["scores"] = ",".join(sorted(x.value for x in scores))
    if probe is not None:
        prov["probe"] = probe.describe()
    return prov


def _write_chunk(
    chunk: list[tuple[SiteScores, object]],
    writer,
    probe: SiteProbe | None,
    summary: ScoreSummary,
    fields: tuple[str, ...],
) -> None:
    probs = probe.predict_sites([s for s, _ in chunk]) if probe is not None else None
    for j, (s, rec) in enumerate(chunk):
        summary.records += 1
        summary.alts += s.plan.n_alts
        summary.scored += sum(1 for i in range(s.plan.n_alts) if s.cos[i] is not None or s.llr[i] is not None)
        summary.flags.update(s.flags)
        prob = tuple(probs[j]) if probs is not None else None
        llr = tuple(s.llr) if "CAD_LLR" in fields else None
        cos = tuple(s.cos) if "CAD_COS" in fields else None
        writer.write(rec, Annotation(llr, cos, s.flags, prob))
