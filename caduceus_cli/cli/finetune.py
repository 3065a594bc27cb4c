"""``caduceus finetune``."""

from __future__ import annotations

from pathlib import Path

import typer

from caduceus_cli.choices import BackendChoice, Classifier, FinetuneMethod, Precision, RcMode, Split
from caduceus_cli.cli import options as o
from caduceus_cli.cli.progress import err_console, progress_reporter

EPILOG = (
    "Examples:\n\n"
    "  caduceus finetune --method probe eqtl.tsv --ref hg38.fa -o probe_run --window 131072\n\n"
    "  caduceus finetune --method probe eqtl.parquet -o probe_run --split cv --folds 5\n\n"
    "  caduceus finetune --method probe labels.csv --ref hg19.fa -o run --columns label=is_causal,chromosome=chr"
)


def finetune_cmd(
    table: str = typer.Argument(
        ..., help="Labelled variants (.csv/.tsv/.parquet, a VCF with --label-field) or `caduceus embed` Parquet output."
    ),
    out: Path = typer.Option(
        ..., "--output", "-o", help="Run folder: metrics.json, report.json, probe.joblib, roc.png."
    ),
    method: FinetuneMethod = typer.Option(
        FinetuneMethod.PROBE, help="probe (frozen embeddings + SVC / logistic regression); full is on the roadmap."
    ),
    ref: Path | None = typer.Option(
        None, "--ref", "-r", help="Reference FASTA (needed unless the input is embeddings)."
    ),
    model: str | None = o.MODEL,
    window: int | None = o.WINDOW,
    flank: int | None = o.FLANK,
    layer: int = o.LAYER,
    rc_mode: RcMode = o.RC_MODE,
    columns: str | None = typer.Option(None, help="Column mapping, e.g. label=is_causal,chromosome=chr."),
    label_field: str = typer.Option("label", help="INFO field with the label when the input is a VCF."),
    classifier: Classifier = typer.Option(Classifier.SVM, help="svm (RBF SVC, C in 1/5/10) or logreg."),
    split: Split = typer.Option(Split.CHROM, help="chrom (held-out --test-chroms) or cv (grouped K-fold)."),
    test_chroms: str = typer.Option("9,10", help="Held-out chromosomes for --split chrom."),
    folds: int = typer.Option(5, help="Folds for --split cv."),
    seeds: int = typer.Option(5, help="Probes fitted on different training samples; scores averaged."),
    train_rows: int = typer.Option(5000, help="Training rows sampled per seed."),
    no_tissue: bool = typer.Option(False, "--no-tissue", help="Do not use the tissue column as a feature."),
    bootstrap: int = typer.Option(1000, help="Bootstrap resamples for the confidence intervals."),
    batch_size: int = o.BATCH,
    device: str = o.DEVICE,
    backend: BackendChoice = o.BACKEND,
    precision: Precision = o.PRECISION,
    rename_chrs: Path | None = o.RENAME,
    quiet: bool = o.QUIET,
) -> None:
    """Fit and evaluate a variant-effect probe on frozen Caduceus embeddings (the paper's eQTL protocol)."""
    from caduceus_cli.cli.render import render_probe_report
    from caduceus_cli.pipelines.embed import EmbedOptions
    from caduceus_cli.pipelines.finetune_probe import FinetuneOptions, finetune_probe
    from caduceus_cli.probe.model import ProbeOptions

    eopts = EmbedOptions(
        window=window,
        flank=flank,
        layer=layer,
        rc_mode=rc_mode,
        batch_size=batch_size,
        device=device,
        backend=backend,
        precision=precision,
        columns=columns,
        label_field=label_field,
        rename_chrs=o.path_or_none(rename_chrs),
    )
    popts = ProbeOptions(classifier=classifier, seeds=seeds, train_rows=train_rows, use_tissue=not no_tissue)
    fopts = FinetuneOptions(
        method=method,
        split=split,
        test_chroms=tuple(c for c in test_chroms.split(",") if c),
        folds=folds,
        bootstrap=bootstrap,
        probe=popts,
    )
    with progress_reporter("variants", None, quiet=quiet) as advance:
        report = finetune_probe(table, str(out), model, o.path_or_none(ref), eopts, fopts, progress=advance)
    if not quiet:
        render_probe_report(report, err_console)
