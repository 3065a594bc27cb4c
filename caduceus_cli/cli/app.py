"""The ``caduceus`` command line: parses arguments, calls one library function, renders.

Library errors (``CaduceusError``) and usage errors (an unknown option value, a
missing argument) become one line on stderr and a non-zero exit code; nothing here
holds logic. Exit codes: 3 input file or shard, 4 reference, 5 model, 6 backend, 7 probe or
table, 143 stopped by SIGTERM (resumable), 2 usage, option and any other library error.
"""

from __future__ import annotations

import atexit
import gc
import logging
import sys

import typer
from rich.logging import RichHandler
from rich.markup import escape

try:  # typer >= 0.20 carries its own copy of click
    from typer._click.exceptions import NoArgsIsHelpError, UsageError
except ImportError:  # older typer runs on click itself
    from click.exceptions import NoArgsIsHelpError, UsageError

from caduceus_cli import __version__
from caduceus_cli.cli import doctor, embed, finetune, info, merge, predict, pretrain, score
from caduceus_cli.cli.progress import err_console
from caduceus_cli.errors import (
    BackendUnavailableError,
    CaduceusError,
    InputFileError,
    ModelLoadError,
    ProbeError,
    ReferenceError_,
    ShardError,
    StoppedError,
    TableError,
)

app = typer.Typer(
    name="caduceus",
    help="Score genetic variants with Caduceus, the RC-equivariant bidirectional Mamba DNA language model.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)

EXIT_CODES: dict[type[CaduceusError], int] = {
    InputFileError: 3,
    ReferenceError_: 4,
    ModelLoadError: 5,
    BackendUnavailableError: 6,
    ProbeError: 7,
    TableError: 7,
    ShardError: 3,
    StoppedError: 143,  # 128 + SIGTERM, as a shell reports a process it terminated
}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"caduceus {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More log output (-vv for debug)."),
) -> None:
    """Run `caduceus COMMAND --help` for the options and examples of each command."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    if err_console.is_terminal:
        handler: logging.Handler = RichHandler(console=err_console, show_path=False)
        fmt = "%(message)s"
    else:  # a log file: one greppable line per message, ISO time
        handler, fmt = logging.StreamHandler(sys.stderr), "%(asctime)s %(levelname)s %(message)s"
    logging.basicConfig(level=level, format=fmt, datefmt="%Y-%m-%d %H:%M:%S", handlers=[handler], force=True)


app.command("info", epilog=info.EPILOG)(info.info_cmd)
app.command("score-vcf", epilog=score.EPILOG)(score.score_vcf_cmd)
app.command("embed", epilog=embed.EPILOG)(embed.embed_cmd)
app.command("finetune", epilog=finetune.EPILOG)(finetune.finetune_cmd)
app.command("pretrain", epilog=pretrain.EPILOG)(pretrain.pretrain_cmd)
app.command("predict", epilog=predict.EPILOG)(predict.predict_cmd)
app.command("merge", epilog=merge.EPILOG)(merge.merge_cmd)
app.command("doctor", epilog=doctor.EPILOG)(doctor.doctor_cmd)


def _fail(message: str, code: int) -> None:
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(code)


# Collections of the youngest generation after this many new container objects (Python's default: 700).
# The pipeline and numba's kernel dispatch allocate many container objects, most of them long-lived:
# after its imports the quick start ran 183 collections (0.2 s) at the default, 22 (0.05 s) at 50,000
# (bench/ab_quickstart.py, bench/results/quickstart_ab_epyc.json).
GC_GEN0_THRESHOLD = 50_000


def main() -> None:
    """Entry point: run the app; map usage and library errors to one line and an exit code.

    While the command runs, the cyclic collector's youngest generation waits for
    ``GC_GEN0_THRESHOLD`` new objects (the previous thresholds come back afterwards). At
    interpreter exit, ``gc.freeze`` (an ``atexit`` handler, so after any caller's own code) moves
    every object out of the collector's reach: shutdown's collections then skip the modules of
    torch and numba, which took 0.9-1.4 s after a quick start (0.2-0.3 s with the freeze). Outputs
    are closed by then; no finaliser is left to them.
    """
    atexit.register(gc.freeze)
    threshold = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, *threshold[1:])
    try:
        _main()
    finally:
        gc.set_threshold(*threshold)


def _main() -> None:
    try:
        code = app(standalone_mode=False, prog_name="caduceus")
    except NoArgsIsHelpError as exc:
        err_console.print(exc.ctx.get_help() if exc.ctx else str(exc), highlight=False)
        sys.exit(2)
    except UsageError as exc:
        where = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx else ""
        _fail(exc.format_message().replace("\n", " ").replace("Value error, ", "") + where, 2)
    except CaduceusError as exc:
        _fail(str(exc), next((c for cls, c in EXIT_CODES.items() if isinstance(exc, cls)), 2))
    except (KeyboardInterrupt, typer.Abort):
        err_console.print("[bold red]interrupted[/]")
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    sys.exit(code if isinstance(code, int) else 0)
