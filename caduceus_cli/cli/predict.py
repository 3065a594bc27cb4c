"""``caduceus predict``."""

from __future__ import annotations

from pathlib import Path

import typer

from caduceus_cli.choices import BackendChoice, Precision
from caduceus_cli.cli import options as o
from caduceus_cli.cli.progress import err_console

EPILOG = (
    "Examples:\n\n"
    "  caduceus predict ft/model promoters.fa -o promoters.tsv\n\n"
    "  caduceus predict ft/model regions.bed --ref hg38.fa -o regions.tsv"
)


def predict_cmd(
    model: str = typer.Argument(..., help="A model directory made by `caduceus finetune --method full` (DIR/model)."),
    inputs: str = typer.Argument(
        ..., help="FASTA, BED (with --ref) or a table (.csv/.tsv/.parquet) with a sequence column."
    ),
    out: str = typer.Option(..., "--output", "-o", help="TSV: name, then one column per class probability or target."),
    ref: Path | None = o.REF_OPTIONAL,
    window: int | None = typer.Option(
        None, "--window", "-w", help="Crop longer sequences to this many bp (default: the fine-tuning length)."
    ),
    bed: bool = typer.Option(False, "--bed", help="Treat the input as BED whatever its name."),
    batch_size: int = o.BATCH,
    device: str = o.DEVICE,
    backend: BackendChoice = o.BACKEND,
    precision: Precision = o.PRECISION,
    rename_chrs: Path | None = o.RENAME,
    quiet: bool = o.QUIET,
) -> None:
    """Class probabilities or regression targets of a fine-tuned model (RC-invariant) for sequences or regions."""
    from caduceus_cli.pipelines.predict import PredictOptions, predict

    opts = PredictOptions(
        window=window,
        batch_size=batch_size,
        device=device,
        backend=backend,
        precision=precision,
        bed=bed,
        rename_chrs=o.path_or_none(rename_chrs),
    )
    r = predict(model, inputs, out, o.path_or_none(ref), opts)
    if not quiet:
        err_console.print(
            f"[green]done:[/] {r.rows} sequences ({r.task}, {len(r.columns) - 1} outputs, window {r.window}) -> {out}",
            highlight=False,
        )
