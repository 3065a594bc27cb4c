"""``caduceus merge``."""

from __future__ import annotations

import typer

from caduceus_cli.choices import OutputType
from caduceus_cli.cli import options as o
from caduceus_cli.cli.progress import err_console

EPILOG = (
    "Examples:\n\n"
    "  for i in 1 2 3; do caduceus score-vcf calls.vcf.gz --ref hg38.fa --chunk $i/3 -o part$i.vcf.gz; done\n\n"
    "  caduceus merge part1.vcf.gz part2.vcf.gz part3.vcf.gz -o scored.vcf.gz"
)


def merge_cmd(
    parts: list[str] = typer.Argument(..., help="The shard outputs of one `score-vcf --chunk i/n` run, any order."),
    out: str = typer.Option("-", "--output", "-o", help="Output: .vcf, .vcf.gz (bgzip + tabix), .bcf, .tsv, or '-'."),
    output_type: OutputType | None = typer.Option(
        None, "--output-type", "-O", help="v, z, b or tsv (default: from -o)."
    ),
    quiet: bool = o.QUIET,
) -> None:
    """Join the shards of a chunked score-vcf run into one output, checking every shard is there, once, whole."""
    from caduceus_cli.pipelines.merge import merge_shards

    summary = merge_shards(parts, out, output_type)
    if not quiet:
        err_console.print(f"[green]done:[/] {summary.describe()}", highlight=False)
