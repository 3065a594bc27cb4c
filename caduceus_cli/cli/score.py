"""``caduceus score-vcf``."""

from __future__ import annotations

from pathlib import Path

import typer

from caduceus_cli.choices import BackendChoice, OutputType, Precision, Score, WindowMode, choice
from caduceus_cli.cli import options as o
from caduceus_cli.cli.progress import err_console, progress_reporter

EPILOG = (
    "Examples:\n\n"
    "  caduceus score-vcf examples/chr22_example.vcf.gz --ref examples/chr22_slice.fa.gz -o scored.vcf.gz\n\n"
    "  bcftools view -r 22 calls.bcf | caduceus score-vcf - --ref hg19.fa -o - -O tsv | head\n\n"
    "  caduceus score-vcf calls.vcf.gz --ref hg19.fa --probe probe_run/probe.joblib -o scored.vcf.gz\n\n"
    "  caduceus score-vcf genome.vcf.gz --ref hg38.fa --windows shared --scores llr -o llr.vcf.gz"
)


def score_vcf_cmd(
    vcf: str = typer.Argument(..., help="VCF, VCF.gz or BCF; '-' reads standard input."),
    ref: Path = typer.Option(..., "--ref", "-r", help="Reference FASTA (plain or bgzip; indexed when missing)."),
    out: str = typer.Option("-", "--output", "-o", help="Output: .vcf, .vcf.gz (bgzip + tabix), .bcf, .tsv, or '-'."),
    output_type: OutputType | None = typer.Option(
        None, "--output-type", "-O", help="v, z, b or tsv (default: from -o)."
    ),
    model: str | None = o.MODEL,
    window: int | None = o.WINDOW,
    flank: int | None = typer.Option(
        None, help="Embedding pooling half-width around the variant (default 768, or the probe's)."
    ),
    batch_size: int = o.BATCH,
    scores: str = typer.Option("llr,cos", help="Scores to compute: llr (masked forwards only), cos, or both."),
    windows: WindowMode = typer.Option(
        WindowMode.CENTRED,
        help="centred: one window per variant (the paper's); "
        "shared: tiles shared by the variants of their central core (much faster).",
    ),
    core: int | None = typer.Option(None, help="--windows shared: core of each tile in bp (default: half the window)."),
    min_spacing: int = typer.Option(0, help="--windows shared: SNV/MNVs closer than this go to further masked passes."),
    probe: Path | None = typer.Option(
        None, "--probe", help="Probe from `caduceus finetune --method probe`: adds CAD_PROB."
    ),
    tissue: str | None = typer.Option(None, help="Tissue of every variant, for a probe trained with tissue."),
    device: str = o.DEVICE,
    backend: BackendChoice = o.BACKEND,
    precision: Precision = o.PRECISION,
    rename_chrs: Path | None = o.RENAME,
    strict: bool = typer.Option(False, help="Fail on REF mismatch or a missing contig instead of flagging."),
    quiet: bool = o.QUIET,
) -> None:
    """Annotate every ALT of a VCF with RC-averaged Caduceus scores (CAD_LLR, CAD_COS, CAD_FLAG; CAD_PROB with --probe)."""
    from caduceus_cli.io.vcf import count_records
    from caduceus_cli.pipelines.score_vcf import ScoreOptions, score_vcf

    opts = ScoreOptions(
        window=window,
        flank=flank,
        batch_size=batch_size,
        strict=strict,
        device=device,
        backend=backend,
        precision=precision,
        rename_chrs=o.path_or_none(rename_chrs),
        output_type=output_type,
        probe=o.path_or_none(probe),
        tissue=tissue,
        scores=tuple(choice(Score, x.strip(), "--scores") for x in scores.split(",") if x.strip()),
        windows=windows,
        core=core,
        min_spacing=min_spacing,
    )
    with progress_reporter("variants", count_records(vcf), quiet=quiet) as advance:
        summary = score_vcf(vcf, str(ref), out, model, opts, progress=advance, command=o.command_line())
    if not quiet:
        err_console.print(f"[green]done:[/] {summary.describe()}", highlight=False)
