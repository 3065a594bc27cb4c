"""``caduceus finetune``."""

from __future__ import annotations

from pathlib import Path

import typer

from caduceus_cli.choices import BackendChoice, Classifier, FinetuneMethod, HeadPool, Precision, RcMode, Split, Task
from caduceus_cli.cli import options as o
from caduceus_cli.cli.progress import err_console, progress_reporter

EPILOG = (
    "Examples:\n\n"
    "  caduceus finetune --method probe eqtl.tsv --ref hg38.fa -o probe_run --window 131072\n\n"
    "  caduceus finetune --method probe eqtl.parquet -o probe_run --split cv --folds 5\n\n"
    "  caduceus finetune --method probe labels.csv --ref hg19.fa -o run --columns label=is_causal,chromosome=chr\n\n"
    "  caduceus finetune --method full promoters.tsv --model kuleshov-group/caduceus-ps_seqlen-131k_d_model-256_n_layer-16"
    " -o ft --epochs 10 --patience 3\n\n"
    "  caduceus finetune --method full regions.bed --ref hg38.fa --task regression --labels signal -o ft_reg"
)
FULL = "Full fine-tuning (--method full)"


def finetune_cmd(
    table: str = typer.Argument(
        ..., help="Labelled variants (.csv/.tsv/.parquet, a VCF with --label-field) or `caduceus embed` Parquet output."
    ),
    out: Path = typer.Option(
        ...,
        "--output",
        "-o",
        help="Run folder: metrics.json, report.json, probe.joblib, roc.png (full: metrics.json, model/, ...).",
    ),
    method: FinetuneMethod = typer.Option(
        FinetuneMethod.PROBE,
        help="probe (frozen embeddings + SVC / logistic regression) or full (fine-tune the model + an RC-invariant "
        "head on labelled sequences: a table with sequence and label columns, BED + label with --ref, or a FASTA "
        "with >NAME|LABEL[|SPLIT] records).",
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
    task: Task = typer.Option(Task.CLASSIFICATION, help="classification or regression.", rich_help_panel=FULL),
    labels: str = typer.Option(
        "label", help="Label column(s), comma-separated (several: regression targets).", rich_help_panel=FULL
    ),
    pool: HeadPool = typer.Option(HeadPool.MEAN, help="Pooling of the head: mean or max.", rich_help_panel=FULL),
    steps: int = typer.Option(0, help="Optimiser steps (0: --epochs passes).", rich_help_panel=FULL),
    epochs: int = typer.Option(10, rich_help_panel=FULL),
    lr: float = typer.Option(1e-4, help="Backbone learning rate.", rich_help_panel=FULL),
    head_lr: float = typer.Option(1e-3, help="Head learning rate.", rich_help_panel=FULL),
    weight_decay: float = typer.Option(0.01, rich_help_panel=FULL),
    warmup_frac: float = typer.Option(0.1, help="Warm-up share of the steps (then cosine).", rich_help_panel=FULL),
    grad_clip: float = typer.Option(1.0, help="Gradient-norm clip (0: none).", rich_help_panel=FULL),
    accumulate: int = typer.Option(1, help="Micro-batches per optimiser step.", rich_help_panel=FULL),
    eval_every: int = typer.Option(0, help="Validate every N steps (0: once per epoch).", rich_help_panel=FULL),
    patience: int = typer.Option(
        0, help="Stop after N validations without improvement (0: never).", rich_help_panel=FULL
    ),
    metric: str = typer.Option(
        "",
        help="Validation metric (default accuracy / pearson; also mcc, auroc, loss, spearman, mse).",
        rich_help_panel=FULL,
    ),
    freeze_backbone: bool = typer.Option(False, "--freeze-backbone", help="Train the head only.", rich_help_panel=FULL),
    conjoin_train: bool = typer.Option(
        False,
        "--conjoin-train",
        help="Ph: forward + RC pass in training too (else RC augmentation).",
        rich_help_panel=FULL,
    ),
    dropout: float = typer.Option(0.0, help="Dropout before the head.", rich_help_panel=FULL),
    val_frac: float = typer.Option(0.1, help="Validation share when the input has no split.", rich_help_panel=FULL),
    test_frac: float = typer.Option(0.1, help="Test share when the input has no split.", rich_help_panel=FULL),
    seed: int = typer.Option(0, rich_help_panel=FULL),
    bed: bool = typer.Option(False, "--bed", help="Treat the input as BED whatever its name.", rich_help_panel=FULL),
    resume: bool = typer.Option(False, help="Continue from the latest checkpoint in --output.", rich_help_panel=FULL),
) -> None:
    """Fit and evaluate a variant-effect probe on frozen Caduceus embeddings (the paper's eQTL protocol), or
    fine-tune the whole model with an RC-invariant head on labelled sequences (--method full)."""
    if method == FinetuneMethod.FULL:
        from caduceus_cli.pipelines.finetune_full import FullFinetuneOptions, finetune_full
        from caduceus_cli.training.finetune import TrainConfig

        _training_logs()
        tcfg = TrainConfig(
            out_dir=str(out),
            steps=steps,
            epochs=epochs,
            batch_size=batch_size,
            accumulate=accumulate,
            lr=lr,
            head_lr=head_lr,
            warmup_frac=warmup_frac,
            weight_decay=weight_decay,
            grad_clip=grad_clip,
            freeze_backbone=freeze_backbone,
            eval_every=eval_every,
            patience=patience,
            metric=metric,
            seed=seed,
            device=device,
            precision=precision.value,
            resume=resume,
        )
        fopts = FullFinetuneOptions(
            task=task,
            labels=tuple(c.strip() for c in labels.split(",") if c.strip()),
            pool=pool,
            window=window,
            val_frac=val_frac,
            test_frac=test_frac,
            conjoin_train=conjoin_train,
            dropout=dropout,
            backend=backend,
            bed=bed,
            rename_chrs=o.path_or_none(rename_chrs),
            train=tcfg,
        )
        result = finetune_full(table, str(out), model, o.path_or_none(ref), fopts)
        if not quiet:
            _render_full(result)
        return
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


def _training_logs() -> None:
    import logging

    root = logging.getLogger()
    if root.level > logging.INFO:
        root.setLevel(logging.INFO)  # training progress is the point of this command


def _render_full(result) -> None:
    from rich.table import Table

    if result.stopped:
        err_console.print(f"[yellow]stopped:[/] checkpointed at step {result.steps}; rerun with --resume")
        return
    if result.model_dir is None:  # a torchrun rank other than 0: rank 0 reports
        return
    m = result.metrics
    keys = (
        ["n", "accuracy", "mcc", "auroc", "loss"]
        if result.task == "classification"
        else ["n", "pearson", "spearman", "mse"]
    )
    table = Table(title=f"fine-tuned {result.task} model (best step {result.best_step} of {result.steps})")
    table.add_column("split")
    for k in keys:
        table.add_column(k, justify="right")
    for split in ("validation", "test"):
        row = m.get(split) or {}
        if not row:
            continue
        table.add_row(
            split, *("n/a" if row.get(k) is None else (str(row[k]) if k == "n" else f"{row[k]:.3f}") for k in keys)
        )
    err_console.print(table)
    err_console.print(f"[green]done:[/] metrics.json and model/ in {Path(result.model_dir).parent}", highlight=False)
