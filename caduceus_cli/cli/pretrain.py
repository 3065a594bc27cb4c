"""``caduceus pretrain``."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from caduceus_cli.choices import BackendChoice, ModelVariant, Precision
from caduceus_cli.cli import options as o
from caduceus_cli.cli.progress import err_console

EPILOG = (
    "Examples:\n\n"
    "  caduceus pretrain 20.fa.gz --val-fasta 22_slice.fa -o runs/ps --seq-len 1024 --steps 2000\n\n"
    "  torchrun --nproc-per-node 8 --no-python caduceus pretrain hg38.fa.gz -o runs/big --resume"
)


def pretrain_cmd(
    fasta: list[Path] = typer.Argument(..., help="Training FASTA files (plain, gzip or bgzip)."),
    out: Path = typer.Option(..., "--output", "-o", help="Run folder: checkpoints/, model/, metrics.jsonl."),
    seq_len: int = typer.Option(1024, help="Training length (tokens per sequence); becomes the model's window."),
    d_model: int = typer.Option(128),
    n_layer: int = typer.Option(4),
    variant: ModelVariant = typer.Option(ModelVariant.PS, help="ps (RC-equivariant) or ph (RC augmentation)."),
    steps: int = typer.Option(1000),
    batch_size: int = typer.Option(32, help="Sequences per micro-batch per process."),
    tokens_per_step: int = typer.Option(0, help="Gradient accumulation up to this many tokens per step (0: none)."),
    lr: float = typer.Option(8e-3),
    seed: int = typer.Option(0),
    bed: Path | None = typer.Option(None, help="BED of training intervals (0-based)."),
    val_fasta: list[Path] = typer.Option([], help="Held-out FASTA for validation."),
    val_contig: list[str] = typer.Option([], help="Contigs of the training FASTA held out for validation."),
    contig: list[str] = typer.Option([], help="Train only on these contigs."),
    eval_every: int = typer.Option(200),
    save_every: int = typer.Option(500),
    time_budget: float = typer.Option(0.0, help="Seconds: shorten --steps to fit (schedule included)."),
    device: str = o.DEVICE,
    backend: BackendChoice = o.BACKEND,
    precision: Precision = o.PRECISION,
    resume: bool = typer.Option(False, help="Continue from the latest checkpoint in --output."),
) -> None:
    """Masked-LM pretraining on any genome; resumable, SIGTERM-safe, DDP under torchrun."""
    from caduceus_cli.training.pretrain import PretrainConfig, pretrain

    root = logging.getLogger()
    if root.level > logging.INFO:
        root.setLevel(logging.INFO)  # training metrics are the point of this command
    cfg = PretrainConfig(
        fasta=tuple(map(str, fasta)),
        out_dir=str(out),
        seq_len=seq_len,
        d_model=d_model,
        n_layer=n_layer,
        rcps=variant == ModelVariant.PS,
        steps=steps,
        batch_size=batch_size,
        tokens_per_step=tokens_per_step,
        lr=lr,
        seed=seed,
        bed=o.path_or_none(bed),
        val_fasta=tuple(map(str, val_fasta)),
        val_contigs=tuple(val_contig),
        train_contigs=tuple(contig),
        eval_every=eval_every,
        save_every=save_every,
        time_budget_s=time_budget,
        device=device,
        backend=backend.value,
        precision=precision,
        resume=resume,
        command=o.command_line(),
    )
    r = pretrain(cfg)
    val = f" val_loss {r.val_loss:.4f}" if r.val_loss is not None else ""
    err_console.print(f"[green]done:[/] step {r.step} loss {r.loss:.4f}{val}", highlight=False)
