"""Progress on stderr: a rich bar on a terminal, periodic log lines otherwise, nothing with --quiet.

Without a terminal (a cluster job's log, several torchrun ranks) a line every ``every_s`` seconds
and one at the end says the records done, the rate and the time left, prefixed with the rank.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

log = logging.getLogger("caduceus")
# everything the CLI says goes to stderr (stdout is for data), one line per message (no wrapping at 80
# columns in a cluster job's log)
err_console = Console(stderr=True, soft_wrap=True)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


class _Bar:
    """``advance(n)`` and ``set_total(n)`` on a rich progress bar."""

    def __init__(self, prog: Progress, task, t0: float) -> None:
        self.prog, self.task, self.t0 = prog, task, t0
        self.t0_done = 0  # records skipped (done by an earlier run)

    def __call__(self, n: int) -> None:
        self.prog.advance(self.task, n)
        done = self.prog.tasks[0].completed - self.t0_done
        self.prog.update(self.task, rate=f"{done / max(1e-9, time.monotonic() - self.t0):.1f}/s")

    def set_total(self, n: int) -> None:
        self.prog.update(self.task, total=n)

    def skip(self, n: int) -> None:  # records done by an earlier run: on the bar, not in the rate
        self.prog.advance(self.task, n)
        self.t0_done = n


class _Lines:
    """``advance(n)`` and ``set_total(n)`` as a plain line every ``every_s`` seconds: done, rate, ETA."""

    def __init__(self, what: str, total: int | None, console: Console, every_s: float, prefix: str) -> None:
        self.what, self.total, self.console, self.every_s, self.prefix = what, total, console, every_s, prefix
        self.done = 0
        self.skipped = 0  # records done by an earlier run: counted as done, not in the rate
        self.t0 = self.last = time.monotonic()

    def __call__(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            self.line(now)

    def set_total(self, n: int) -> None:
        self.total = n

    def skip(self, n: int) -> None:
        self.done += n
        self.skipped += n

    def line(self, now: float | None = None) -> None:
        elapsed = max(1e-9, (now or time.monotonic()) - self.t0)
        rate = (self.done - self.skipped) / elapsed
        of = f"/{self.total}" if self.total else ""
        eta = ""
        if self.total and rate > 0 and self.done < self.total:
            eta = f", ETA {_duration((self.total - self.done) / rate)}"
        self.console.print(
            f"{self.prefix}{self.what}: {self.done}{of} ({rate:.1f}/s, {_duration(elapsed)} elapsed{eta})",
            highlight=False,
        )


class _Silent:
    def __call__(self, n: int) -> None:
        pass

    def skip(self, n: int) -> None:
        pass

    def set_total(self, n: int) -> None:
        pass


@contextlib.contextmanager
def progress_reporter(
    what: str,
    total: int | None,
    quiet: bool = False,
    console: Console | None = None,
    every_s: float = 30.0,
    prefix: str = "",
    plain: bool = False,
) -> Iterator[_Bar | _Lines | _Silent]:
    """Yield ``advance(n)`` (with ``.set_total(n)``); a bar on a terminal unless ``plain``, else lines."""
    console = console or err_console
    if quiet:
        yield _Silent()
        return
    if console.is_terminal and not plain:
        cols = [
            TextColumn(f"[bold]{what}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        ]
        with Progress(*cols, console=console, transient=False) as prog:
            yield _Bar(prog, prog.add_task(what, total=total, rate=""), time.monotonic())
        return
    lines = _Lines(what, total, console, every_s, prefix)
    yield lines
    if lines.done:
        lines.line()
