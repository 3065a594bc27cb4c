"""Options shared by several commands, each defined once, and the command line for provenance."""

from __future__ import annotations

import contextlib
import shlex
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import typer

from caduceus_cli.choices import BackendChoice, Precision, RcMode

MODEL = typer.Option(None, "--model", "-m", help="Model directory or hub id (default: the shipped model).")
WINDOW = typer.Option(None, "--window", "-w", help="Window in bp (default: the model's training length; max 131072).")
FLANK = typer.Option(None, help="Pooling half-width around the variant / sequence centre (default: the paper's 768).")
LAYER = typer.Option(-1, help="Hidden state: 0 = embeddings .. n_layer; -1 = final normalised output.")
RC_MODE = typer.Option(RcMode.AVG, "--rc-mode", help="avg (strand-averaged), fwd, or both (strands concatenated).")
BATCH = typer.Option(8, "--batch-size", "-b", help="Windows per forward pass.")
DEVICE = typer.Option("auto", help="auto, cpu, cuda or cuda:N.")
BACKEND = typer.Option(BackendChoice.AUTO, help="Kernel backend: auto, torch or cuda (mamba-ssm).")
PRECISION = typer.Option(Precision.AUTO, help="auto (bf16 on GPU, fp32 on CPU), bf16 or fp32.")
RENAME = typer.Option(None, "--rename-chrs", help="Two-column file: contig in the input, contig in the reference.")
QUIET = typer.Option(False, "--quiet", "-q", help="No progress output.")
REF_OPTIONAL = typer.Option(None, "--ref", "-r", help="Reference FASTA (plain or bgzip) for BED regions and variants.")


def path_or_none(p: Path | None) -> str | None:
    return str(p) if p is not None else None


def command_line() -> str:
    """The command as the user typed it (program name normalised to ``caduceus``), for output headers."""
    return " ".join(shlex.quote(a) for a in ["caduceus"] + sys.argv[1:])


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[Callable[[], bool]]:
    """Yield ``stop()``: true once SIGTERM (a scheduler's preemption) has arrived; the run then stops at its
    next durable point instead of dying mid-write. The previous handler is restored on exit."""
    got: list[int] = []

    def handler(signum, frame) -> None:
        got.append(signum)

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield lambda: False
        return
    try:
        yield lambda: bool(got)
    finally:
        signal.signal(signal.SIGTERM, previous)
