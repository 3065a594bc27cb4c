"""The ``caduceus`` command line: parses arguments, calls one library function, renders.

Library errors (``CaduceusError``) become a one-line message on stderr and a
non-zero exit code; nothing else here holds logic.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.logging import RichHandler

from caduceus_cli import __version__
from caduceus_cli.errors import (
    BackendUnavailableError,
    CaduceusError,
    InputFileError,
    ModelLoadError,
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

EXIT_CODES = {InputFileError: 3, ReferenceError_: 4, ModelLoadError: 5, BackendUnavailableError: 6}


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
    logging.basicConfig(
        level=level, format="%(message)s", handlers=[RichHandler(console=err_console, show_path=False)], force=True
    )


@app.command(epilog="Example: caduceus info models/caduceus-ps-hg-chr20-d128-n4")
def info(
    model: Optional[str] = typer.Argument(None, help="Model directory or hub id (default: the shipped model)."),
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
        "  bcftools view -r 22 calls.bcf | caduceus score-vcf - --ref hg19.fa -o - -O tsv | head"
    ),
)
def score_vcf_cmd(
    vcf: str = typer.Argument(..., help="VCF, VCF.gz or BCF; '-' reads standard input."),
    ref: Path = typer.Option(..., "--ref", "-r", help="Reference FASTA (plain or bgzip; indexed when missing)."),
    out: str = typer.Option("-", "--output", "-o", help="Output: .vcf, .vcf.gz (bgzip + tabix), .bcf, .tsv, or '-'."),
    output_type: Optional[str] = typer.Option(None, "--output-type", "-O", help="v, z, b or tsv (default: from -o)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model directory or hub id (default: shipped model)."),
    window: Optional[int] = typer.Option(None, "--window", "-w", help="Window in bp (default: model training length; max 131072)."),
    flank: int = typer.Option(768, help="Embedding pooling half-width around the variant."),
    batch_size: int = typer.Option(8, "--batch-size", "-b", help="Windows per forward pass."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    backend: str = typer.Option("auto", help="Kernel backend: auto, torch or cuda (mamba-ssm)."),
    precision: str = typer.Option("auto", help="auto (bf16 on GPU, fp32 on CPU), bf16 or fp32."),
    rename_chrs: Optional[Path] = typer.Option(None, "--rename-chrs", help="Two-column file: VCF contig, reference contig."),
    strict: bool = typer.Option(False, help="Fail on REF mismatch or a missing contig instead of flagging."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """Annotate every ALT of a VCF with RC-averaged Caduceus scores (CAD_LLR, CAD_COS, CAD_FLAG)."""
    from caduceus_cli.progress import progress_reporter
    from caduceus_cli.scoring import ScoreOptions, count_records, describe_summary, score_vcf

    opts = ScoreOptions(window=window, flank=flank, batch_size=batch_size, strict=strict, device=device,
                        backend=backend, precision=precision, rename_chrs=str(rename_chrs) if rename_chrs else None,
                        output_format=output_type)
    with progress_reporter("variants", count_records(vcf), quiet=quiet, console=err_console) as advance:
        summary = score_vcf(vcf, str(ref), out, model, opts, progress=advance)
    if not quiet:
        err_console.print(f"[green]done:[/] {describe_summary(summary)}", highlight=False)


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
