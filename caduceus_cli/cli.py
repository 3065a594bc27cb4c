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
