"""``caduceus info``."""

from __future__ import annotations

import typer

EPILOG = "Example: caduceus info models/caduceus-ps-hg-chr20-d128-n4"


def info_cmd(
    model: str | None = typer.Argument(None, help="Model directory or hub id (default: the shipped model)."),
) -> None:
    """Describe a model: architecture, parameters, weights sha256, training length, backend."""
    from caduceus_cli.model.inspect import describe_model

    for key, value in describe_model(model).items():
        typer.echo(f"{key}\t{value}")
