"""``caduceus score-vcf``."""

from __future__ import annotations

from pathlib import Path

import typer

from caduceus_cli.choices import BackendChoice, IndelMasking, OutputType, Precision, Score, WindowMode, choice
from caduceus_cli.cli import options as o
from caduceus_cli.cli.progress import err_console, progress_reporter

EPILOG = (
    "Examples:\n\n"
    "  caduceus score-vcf examples/chr22_example.vcf.gz --ref examples/chr22_slice.fa.gz -o scored.vcf.gz\n\n"
    "  bcftools view -r 22 calls.bcf | caduceus score-vcf - --ref hg19.fa -o - -O tsv | head\n\n"
    "  caduceus score-vcf calls.vcf.gz --ref hg19.fa --probe probe_run/probe.joblib -o scored.vcf.gz\n\n"
    "  caduceus score-vcf genome.vcf.gz --ref hg38.fa --windows shared --scores llr -o llr.vcf.gz\n\n"
    "  caduceus score-vcf calls.vcf.gz --ref hg38.fa --chunk 3/8 --resume -o part3.vcf.gz   # then: caduceus merge\n\n"
    "  torchrun --nproc_per_node 4 --no-python caduceus score-vcf calls.vcf.gz --ref hg38.fa -o scored.vcf.gz"
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
    scores: str | None = typer.Option(
        None,
        help="Scores: llr (masked forwards only), cos, delta (a fine-tuned model's head); "
        "default llr,cos, + delta with a model from `finetune --method full`.",
    ),
    windows: WindowMode = typer.Option(
        WindowMode.CENTRED,
        help="centred: one window per variant (the paper's); "
        "shared: tiles shared by the variants of their central core (much faster).",
    ),
    indel_masking: IndelMasking = typer.Option(
        IndelMasking.SPAN,
        help="Indel CAD_LLR: span (the changed bases +/- 3 bp masked at once: 2 forwards per indel) or position "
        "(one masked base per forward, the full PLL: 13 forwards for a 1-bp indel; separates real from simulated "
        "insertions better).",
    ),
    core: int | None = typer.Option(None, help="--windows shared: core of each tile in bp (default: half the window)."),
    min_spacing: int = typer.Option(0, help="--windows shared: SNV/MNVs closer than this go to further masked passes."),
    cluster_window: int | None = typer.Option(
        None,
        help="--windows shared: a tile's extra masked passes (close indels, overlapping alleles) run in windows of "
        "this many bp around them (default 16,384; the window: off).",
    ),
    probe: Path | None = typer.Option(
        None, "--probe", help="Probe from `caduceus finetune --method probe`: adds CAD_PROB."
    ),
    tissue: str | None = typer.Option(None, help="Tissue of every variant, for a probe trained with tissue."),
    device: str = o.DEVICE,
    backend: BackendChoice = o.BACKEND,
    precision: Precision = o.PRECISION,
    rename_chrs: Path | None = o.RENAME,
    strict: bool = typer.Option(False, help="Fail on REF mismatch or a missing contig instead of flagging."),
    regions: list[str] | None = typer.Option(
        None, "--regions", help="Only records overlapping chr, chr:start or chr:start-end (1-based; comma-separated)."
    ),
    regions_file: Path | None = typer.Option(None, "--regions-file", "-R", help="Only records overlapping a BED file."),
    chunk: str | None = typer.Option(
        None, "--chunk", help="Score shard i of n (i/n, 1-based; whole chunks, balanced); join with `caduceus merge`."
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Continue an unfinished run from the parts kept beside the output (OUT.caduceus-parts)."
    ),
    checkpoint_every: int = typer.Option(20_000, help="Records per durable part of a file output."),
    chunk_sites: int = typer.Option(256, help="Records planned and scored together (memory; shards cut between)."),
    quiet: bool = o.QUIET,
) -> None:
    """Annotate every ALT of a VCF with RC-averaged Caduceus scores (CAD_LLR, CAD_COS, CAD_FLAG; CAD_PROB with
    --probe; CAD_DELTA with a fine-tuned --model)."""
    from caduceus_cli.inference.distributed import Ranks
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
        scores=None
        if scores is None
        else tuple(choice(Score, x.strip(), "--scores") for x in scores.split(",") if x.strip()),
        windows=windows,
        core=core,
        min_spacing=min_spacing,
        cluster_window=cluster_window,
        indel_masking=indel_masking,
        regions=tuple(regions or ()),
        regions_file=o.path_or_none(regions_file),
        chunk=chunk,
        resume=resume,
        checkpoint_every=checkpoint_every,
        chunk_sites=chunk_sites,
    )
    ranks = Ranks.from_env()
    whole = not (regions or regions_file or chunk or ranks.many)
    total = count_records(vcf) if whole else None
    with (
        o.stop_on_sigterm() as stop,
        progress_reporter("variants", total, quiet=quiet, prefix=ranks.label(), plain=ranks.many) as advance,
    ):
        summary = score_vcf(
            vcf, str(ref), out, model, opts, progress=advance, command=o.command_line(), ranks=ranks, stop=stop
        )
    if not quiet and ranks.rank == 0:
        err_console.print(f"[green]done:[/] {summary.describe()}", highlight=False)
