"""Progress on stderr: a rich bar on a terminal, periodic log lines otherwise, nothing with --quiet."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

log = logging.getLogger("caduceus")
err_console = Console(stderr=True)  # everything the CLI says goes to stderr; stdout is for data


@contextlib.contextmanager
def progress_reporter(
    what: str, total: int | None, quiet: bool = False, console: Console | None = None, every_s: float = 30.0
) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``; renders according to the terminal and ``quiet``."""
    console = console or err_console
    if quiet:
        yield lambda n: None
        return
    if console.is_terminal:
        cols = [
            TextColumn(f"[bold]{what}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        ]
        with Progress(*cols, console=console, transient=False) as prog:
            task = prog.add_task(what, total=total, rate="")
            t0 = time.monotonic()

            def advance(n: int) -> None:
                prog.advance(task, n)
                done = prog.tasks[0].completed
                prog.update(task, rate=f"{done / max(1e-9, time.monotonic() - t0):.1f}/s")

            yield advance
        return
    state = {"done": 0, "last": time.monotonic(), "t0": time.monotonic()}

    def advance_plain(n: int) -> None:
        state["done"] += n
        now = time.monotonic()
        if now - state["last"] >= every_s:
            state["last"] = now
            rate = state["done"] / max(1e-9, now - state["t0"])
            of = f"/{total}" if total else ""
            console.print(f"{what}: {state['done']}{of} ({rate:.1f}/s)", highlight=False)

    yield advance_plain
