"""The ``caduceus`` command line: parses arguments, calls one library function, renders.

Library errors (``CaduceusError``) become a one-line message on stderr and a
non-zero exit code; nothing else here holds logic.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.logging import RichHandler

from caduceus_cli import __version__
from caduceus_cli.errors import (
    BackendUnavailableError,
    CaduceusError,
    InputFileError,
    ModelLoadError,
    ProbeError,
    ReferenceError_,
)

err_console = Console(stderr=True)
app = typer.Typer(
    name="caduceus",
    help="Score genetic variants with Caduceus, the RC-equivariant bidirectional Mamba DNA language model.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)

# Options shared by score-vcf, embed and finetune (one definition each).
MODEL_OPT = typer.Option(None, "--model", "-m", help="Model directory or hub id (default: shipped model).")
WINDOW_OPT = typer.Option(None, "--window", "-w", help="Window in bp (default: model training length; max 131072).")
BATCH_OPT = typer.Option(8, "--batch-size", "-b", help="Windows per forward pass.")
DEVICE_OPT = typer.Option("auto", help="auto, cpu, cuda or cuda:N.")
BACKEND_OPT = typer.Option("auto", help="Kernel backend: auto, torch or cuda (mamba-ssm).")
PRECISION_OPT = typer.Option("auto", help="auto (bf16 on GPU, fp32 on CPU), bf16 or fp32.")
RENAME_OPT = typer.Option(None, "--rename-chrs", help="Two-column file: contig in the input, contig in the reference.")
QUIET_OPT = typer.Option(False, "--quiet", "-q", help="No progress output.")

EXIT_CODES = {InputFileError: 3, ReferenceError_: 4, ModelLoadError: 5, BackendUnavailableError: 6, ProbeError: 7}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"caduceus {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More log output (-vv for debug)."),
) -> None:
    """Run `caduceus COMMAND --help` for the options and examples of each command."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    if len(sys.argv) > 1 and "pretrain" in sys.argv[1:3] and verbose == 0:
        level = logging.INFO  # training metrics are the point of that command
    logging.basicConfig(
        level=level, format="%(message)s", handlers=[RichHandler(console=err_console, show_path=False)], force=True
    )


@app.command(epilog="Example: caduceus info models/caduceus-ps-hg-chr20-d128-n4")
def info(
    model: str | None = typer.Argument(None, help="Model directory or hub id (default: the shipped model)."),
) -> None:
    """Describe a model: architecture, parameters, weights sha256, training length, backend."""
    from caduceus_cli.model.inspect import describe_model

    for key, value in describe_model(model).items():
        typer.echo(f"{key}\t{value}")


@app.command(
    "score-vcf",
    epilog=(
        "Examples:\n\n"
        "  caduceus score-vcf examples/chr22_example.vcf.gz --ref examples/chr22_slice.fa.gz -o scored.vcf.gz\n\n"
        "  bcftools view -r 22 calls.bcf | caduceus score-vcf - --ref hg19.fa -o - -O tsv | head\n\n"
        "  caduceus score-vcf calls.vcf.gz --ref hg19.fa --probe probe_run/probe.joblib -o scored.vcf.gz"
    ),
)
def score_vcf_cmd(
    vcf: str = typer.Argument(..., help="VCF, VCF.gz or BCF; '-' reads standard input."),
    ref: Path = typer.Option(..., "--ref", "-r", help="Reference FASTA (plain or bgzip; indexed when missing)."),
    out: str = typer.Option("-", "--output", "-o", help="Output: .vcf, .vcf.gz (bgzip + tabix), .bcf, .tsv, or '-'."),
    output_type: str | None = typer.Option(None, "--output-type", "-O", help="v, z, b or tsv (default: from -o)."),
    model: str | None = MODEL_OPT,
    window: int | None = WINDOW_OPT,
    flank: int | None = typer.Option(None, help="Embedding pooling half-width around the variant (default 768, or the probe's)."),
    batch_size: int = BATCH_OPT,
    probe: Path | None = typer.Option(None, "--probe", help="Probe from `caduceus finetune --method probe`: adds CAD_PROB."),
    tissue: str | None = typer.Option(None, help="Tissue of every variant, for a probe trained with tissue."),
    device: str = DEVICE_OPT,
    backend: str = BACKEND_OPT,
    precision: str = PRECISION_OPT,
    rename_chrs: Path | None = RENAME_OPT,
    strict: bool = typer.Option(False, help="Fail on REF mismatch or a missing contig instead of flagging."),
    quiet: bool = QUIET_OPT,
) -> None:
    """Annotate every ALT of a VCF with RC-averaged Caduceus scores (CAD_LLR, CAD_COS, CAD_FLAG; CAD_PROB with --probe)."""
    from caduceus_cli.progress import progress_reporter
    from caduceus_cli.scoring import ScoreOptions, count_records, describe_summary, score_vcf

    opts = ScoreOptions(window=window, flank=flank, batch_size=batch_size, strict=strict, device=device,
                        backend=backend, precision=precision, rename_chrs=str(rename_chrs) if rename_chrs else None,
                        output_format=output_type, probe=str(probe) if probe else None, tissue=tissue)
    with progress_reporter("variants", count_records(vcf), quiet=quiet, console=err_console) as advance:
        summary = score_vcf(vcf, str(ref), out, model, opts, progress=advance)
    if not quiet:
        err_console.print(f"[green]done:[/] {describe_summary(summary)}", highlight=False)


@app.command(
    epilog=(
        "Examples:\n\n"
        "  caduceus pretrain 20.fa.gz --val-fasta 22_slice.fa -o runs/ps --seq-len 1024 --steps 2000\n\n"
        "  torchrun --nproc-per-node 8 -m caduceus_cli.cli pretrain hg38.fa.gz -o runs/big --resume"
    ),
)
def pretrain(
    fasta: list[Path] = typer.Argument(..., help="Training FASTA files (plain, gzip or bgzip)."),
    out: Path = typer.Option(..., "--output", "-o", help="Run folder: checkpoints/, model/, metrics.jsonl."),
    seq_len: int = typer.Option(1024, help="Training length (tokens per sequence); becomes the model's window."),
    d_model: int = typer.Option(128), n_layer: int = typer.Option(4),
    variant: str = typer.Option("ps", help="ps (RC-equivariant) or ph (RC augmentation)."),
    steps: int = typer.Option(1000), batch_size: int = typer.Option(32, help="Sequences per micro-batch per process."),
    tokens_per_step: int = typer.Option(0, help="Gradient accumulation up to this many tokens per step (0: none)."),
    lr: float = typer.Option(8e-3), seed: int = typer.Option(0),
    bed: Path | None = typer.Option(None, help="BED of training intervals (0-based)."),
    val_fasta: list[Path] = typer.Option([], help="Held-out FASTA for validation."),
    val_contig: list[str] = typer.Option([], help="Contigs of the training FASTA held out for validation."),
    contig: list[str] = typer.Option([], help="Train only on these contigs."),
    eval_every: int = typer.Option(200), save_every: int = typer.Option(500),
    time_budget: float = typer.Option(0.0, help="Seconds: shorten --steps to fit (schedule included)."),
    device: str = DEVICE_OPT, backend: str = BACKEND_OPT,
    resume: bool = typer.Option(False, help="Continue from the latest checkpoint in --output."),
) -> None:
    """Masked-LM pretraining on any genome; resumable, SIGTERM-safe, DDP under torchrun."""
    from caduceus_cli.provenance import command_line
    from caduceus_cli.training.pretrain import PretrainConfig
    from caduceus_cli.training.pretrain import pretrain as run

    cfg = PretrainConfig(fasta=tuple(map(str, fasta)), out_dir=str(out), seq_len=seq_len, d_model=d_model,
                         n_layer=n_layer, rcps=variant == "ps", steps=steps, batch_size=batch_size,
                         tokens_per_step=tokens_per_step, lr=lr, seed=seed, bed=str(bed) if bed else None,
                         val_fasta=tuple(map(str, val_fasta)), val_contigs=tuple(val_contig), train_contigs=tuple(contig),
                         eval_every=eval_every, save_every=save_every, time_budget_s=time_budget, device=device,
                         backend=backend, resume=resume, command=command_line())
    result = run(cfg)
    err_console.print(f"[green]done:[/] step {result.get('step')} loss {result.get('loss', float('nan')):.4f}"
                      + (f" val_loss {result['val_loss']:.4f}" if "val_loss" in result else ""), highlight=False)


FLANK_HELP = "Pooling half-width around the variant / sequence centre (the paper's 768)."


@app.command(
    epilog=(
        "Examples:\n\n"
        "  caduceus embed examples/chr22_example.vcf.gz --ref examples/chr22_slice.fa.gz -o variants.parquet\n\n"
        "  caduceus embed eqtl.tsv --ref hg38.fa -o eqtl.parquet --window 131072\n\n"
        "  caduceus embed promoters.bed --ref hg38.fa -o promoters.parquet --pool centre --flank 256\n\n"
        "  caduceus embed reads.fa -o tokens.npy --pool none"
    ),
)
def embed(
    inputs: str = typer.Argument(..., help="FASTA of sequences, BED (with --ref), VCF, or a variant table (.csv/.tsv/.parquet)."),
    out: str = typer.Option(..., "--output", "-o", help="Parquet (.parquet); with --pool none: .npy (streamed) or .safetensors."),
    ref: Path | None = typer.Option(None, "--ref", "-r", help="Reference FASTA for BED regions and variants."),
    model: str | None = MODEL_OPT,
    pool: str | None = typer.Option(None, help="mean (whole sequence/window), centre (+/- flank) or none (per token). "
                                    "Default: centre for variants, mean for sequences."),
    window: int | None = WINDOW_OPT,
    flank: int = typer.Option(768, help=FLANK_HELP),
    layer: int = typer.Option(-1, help="Hidden state: 0 = embeddings .. n_layer; -1 = final normalised output."),
    rc_mode: str = typer.Option("avg", "--rc-mode", help="avg (strand-averaged), fwd, or both (strands concatenated)."),
    bed: bool = typer.Option(False, "--bed", help="Treat the input as BED whatever its name."),
    columns: str | None = typer.Option(None, help="Table column mapping, e.g. chromosome=chr,position=pos1."),
    batch_size: int = BATCH_OPT,
    device: str = DEVICE_OPT, backend: str = BACKEND_OPT, precision: str = PRECISION_OPT,
    rename_chrs: Path | None = RENAME_OPT,
    strict: bool = typer.Option(False, help="VCF input: fail on REF mismatch or a missing contig instead of flagging."),
    quiet: bool = QUIET_OPT,
) -> None:
    """Embeddings of sequences, regions or variants (RC-averaged by default) to Parquet / .npy / .safetensors."""
    from caduceus_cli.embed_io import embed as run
    from caduceus_cli.embedding import EmbedOptions
    from caduceus_cli.progress import progress_reporter

    opts = EmbedOptions(window=window, pool=pool, flank=flank, layer=layer, rc_mode=rc_mode, batch_size=batch_size,
                        device=device, backend=backend, precision=precision, columns=columns, strict=strict,
                        rename_chrs=str(rename_chrs) if rename_chrs else None)
    with progress_reporter("inputs", None, quiet=quiet, console=err_console) as advance:
        summary = run(inputs, out, model, str(ref) if ref else None, opts, bed=bed, progress=advance)
    if not quiet:
        err_console.print(f"[green]done:[/] {summary['rows']} rows ({summary['kind']}, pool {summary['pool']}, "
                          f"dim {summary['dim']}, window {summary['window']}) -> {out}", highlight=False)


@app.command(
    epilog=(
        "Examples:\n\n"
        "  caduceus finetune --method probe eqtl.tsv --ref hg38.fa -o probe_run --window 131072\n\n"
        "  caduceus finetune --method probe eqtl.parquet -o probe_run --split cv --folds 5\n\n"
        "  caduceus finetune --method probe labels.csv --ref hg19.fa -o run --columns label=is_causal,chromosome=chr"
    ),
)
def finetune(
    table: str = typer.Argument(..., help="Labelled variants (.csv/.tsv/.parquet, a VCF with --label-field) or "
                                "`caduceus embed` Parquet output."),
    out: Path = typer.Option(..., "--output", "-o", help="Run folder: metrics.json, report.json, probe.joblib, roc.png."),
    method: str = typer.Option("probe", help="probe (frozen embeddings + SVC / logistic regression)."),
    ref: Path | None = typer.Option(None, "--ref", "-r", help="Reference FASTA (needed unless the input is embeddings)."),
    model: str | None = MODEL_OPT,
    window: int | None = WINDOW_OPT,
    flank: int = typer.Option(768, help=FLANK_HELP),
    layer: int = typer.Option(-1), rc_mode: str = typer.Option("avg", "--rc-mode"),
    columns: str | None = typer.Option(None, help="Column mapping, e.g. label=is_causal,chromosome=chr."),
    label_field: str = typer.Option("label", help="INFO field with the label when the input is a VCF."),
    classifier: str = typer.Option("svm", help="svm (RBF SVC, C in 1/5/10) or logreg."),
    split: str = typer.Option("chrom", help="chrom (held-out --test-chroms) or cv (grouped K-fold)."),
    test_chroms: str = typer.Option("9,10", help="Held-out chromosomes for --split chrom."),
    folds: int = typer.Option(5, help="Folds for --split cv."),
    seeds: int = typer.Option(5, help="Probes fitted on different training samples; scores averaged."),
    train_rows: int = typer.Option(5000, help="Training rows sampled per seed."),
    no_tissue: bool = typer.Option(False, "--no-tissue", help="Do not use the tissue column as a feature."),
    bootstrap: int = typer.Option(1000, help="Bootstrap resamples for the confidence intervals."),
    batch_size: int = BATCH_OPT,
    device: str = DEVICE_OPT, backend: str = BACKEND_OPT, precision: str = PRECISION_OPT,
    rename_chrs: Path | None = RENAME_OPT,
    quiet: bool = QUIET_OPT,
) -> None:
    """Fit and evaluate a variant-effect probe on frozen Caduceus embeddings (the paper's eQTL protocol)."""
    from caduceus_cli.embedding import EmbedOptions
    from caduceus_cli.finetune import FinetuneOptions
    from caduceus_cli.finetune import finetune as run
    from caduceus_cli.probe import ProbeOptions
    from caduceus_cli.progress import progress_reporter

    eopts = EmbedOptions(window=window, flank=flank, layer=layer, rc_mode=rc_mode, batch_size=batch_size, device=device,
                         backend=backend, precision=precision, columns=columns, label_field=label_field,
                         rename_chrs=str(rename_chrs) if rename_chrs else None)
    popts = ProbeOptions(classifier=classifier, seeds=seeds, train_rows=train_rows, use_tissue=not no_tissue)
    fopts = FinetuneOptions(method=method, split=split, test_chroms=tuple(c for c in test_chroms.split(",") if c),
                            folds=folds, bootstrap=bootstrap, probe=popts)
    with progress_reporter("variants", None, quiet=quiet, console=err_console) as advance:
        report = run(table, str(out), model, str(ref) if ref else None, eopts, fopts, progress=advance)
    if not quiet:
        _render_metrics(report)


def _render_metrics(report: dict) -> None:
    from rich.table import Table

    def fmt(m: dict, key: str) -> str:
        if m.get(key) is None:
            return "n/a"
        ci = m.get(f"{key}_ci")
        return f"{m[key]:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")

    metrics = report["metrics"]
    table = Table(title=f"probe on {report['n_test']} test variants (95% bootstrap CI)")
    for col in ("set", "n", "positives", "AUROC", "AUPRC"):
        table.add_column(col, justify="left" if col == "set" else "right")
    rows = [("all", metrics)] + list(metrics.get("buckets", {}).items())
    for name, m in rows:
        table.add_row(name, str(m["n"]), str(m["n_pos"]), fmt(m, "auroc"), fmt(m, "auprc"))
    err_console.print(table)
    err_console.print(f"[green]done:[/] probe, metrics and report in {Path(report['probe']).parent}", highlight=False)


def main() -> None:
    """Entry point: run the app, map library errors to one line and an exit code."""
    try:
        app()
    except CaduceusError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        code = next((c for cls, c in EXIT_CODES.items() if isinstance(exc, cls)), 2)
        sys.exit(code)
    except KeyboardInterrupt:
        err_console.print("[bold red]interrupted[/]")
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)


if __name__ == "__main__":
    main()
