"""``caduceus embed``."""

from __future__ import annotations

from pathlib import Path

import typer

from caduceus_cli.choices import BackendChoice, Pool, Precision, RcMode
from caduceus_cli.cli import options as o
from caduceus_cli.cli.progress import err_console, progress_reporter

EPILOG = (
    "Examples:\n\n"
    "  caduceus embed examples/chr22_example.vcf.gz --ref examples/chr22_slice.fa.gz -o variants.parquet\n\n"
    "  caduceus embed eqtl.tsv --ref hg38.fa -o eqtl.parquet --window 131072\n\n"
    "  caduceus embed promoters.bed --ref hg38.fa -o promoters.parquet --pool centre --flank 256\n\n"
    "  caduceus embed reads.fa -o tokens.npy --pool none"
)


def embed_cmd(
    inputs: str = typer.Argument(
        ..., help="FASTA of sequences, BED (with --ref), VCF, or a variant table (.csv/.tsv/.parquet)."
    ),
    out: str = typer.Option(
        ..., "--output", "-o", help="Parquet (.parquet); with --pool none: .npy (streamed) or .safetensors."
    ),
    ref: Path | None = o.REF_OPTIONAL,
    model: str | None = o.MODEL,
    pool: Pool | None = typer.Option(
        None,
        help="mean (whole sequence/window), centre (+/- flank) or none "
        "(per token). Default: centre for variants, mean for sequences.",
    ),
    window: int | None = o.WINDOW,
    flank: int | None = o.FLANK,
    layer: int = o.LAYER,
    rc_mode: RcMode = o.RC_MODE,
    bed: bool = typer.Option(False, "--bed", help="Treat the input as BED whatever its name."),
    columns: str | None = typer.Option(None, help="Table column mapping, e.g. chromosome=chr,position=pos1."),
    batch_size: int = o.BATCH,
    device: str = o.DEVICE,
    backend: BackendChoice = o.BACKEND,
    precision: Precision = o.PRECISION,
    rename_chrs: Path | None = o.RENAME,
    strict: bool = typer.Option(False, help="VCF input: fail on REF mismatch or a missing contig instead of flagging."),
    quiet: bool = o.QUIET,
) -> None:
    """Embeddings of sequences, regions or variants (RC-averaged by default) to Parquet / .npy / .safetensors."""
    from caduceus_cli.pipelines.embed import EmbedOptions, embed

    opts = EmbedOptions(
        window=window,
        pool=pool,
        flank=flank,
        layer=layer,
        rc_mode=rc_mode,
        batch_size=batch_size,
        device=device,
        backend=backend,
        precision=precision,
        columns=columns,
        strict=strict,
        rename_chrs=o.path_or_none(rename_chrs),
    )
    with progress_reporter("inputs", None, quiet=quiet) as advance:
        r = embed(inputs, out, model, o.path_or_none(ref), opts, bed=bed, progress=advance)
    if not quiet:
        err_console.print(
            f"[green]done:[/] {r.rows} rows ({r.kind}, pool {r.pool}, dim {r.dim}, window {r.window}) -> {out}",
            highlight=False,
        )
