"""Running an iterator ahead of its consumer on a worker thread, so reading and planning overlap the model.

``prefetched(items)`` yields what ``items`` yields, in order, while a worker thread produces up to
``depth`` items ahead (a bounded queue: memory stays bounded). torch releases the GIL in its kernels,
so the worker reads, plans and tokenises while the model runs. An exception raised by ``items`` is
raised to the consumer after the items before it, as it was raised (the CLI still reports our
errors in one line). Closing the generator early, or an exception in the consumer, stops the worker
after its current item and joins it.

``locked(items, lock, done)`` takes ``lock`` around each step of ``items``: the consumer holds the
same lock while it uses objects that must not be touched while the next item is read (pysam records
and headers are not thread-safe); once ``done`` is set no further item is read.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
_POLL_S = 0.1  # how often a worker waiting on a full queue checks whether it was stopped


def prefetched(items: Iterable[T], depth: int = 1) -> Iterator[T]:
    """``items`` in order, produced on a worker thread at most ``depth`` items ahead (see the module docstring)."""
    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()
    it = iter(items)

    def put(entry: tuple) -> bool:
        while not stop.is_set():
            try:
                q.put(entry, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for x in it:
                if not put((True, x)):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            put((False, exc))
            return
        put((False, None))

    worker = threading.Thread(target=work, name="caduceus-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            ok, x = q.get()
            if ok:
                yield x
            elif x is None:
                return
            else:
                raise x
    finally:
        stop.set()
        worker.join()
        close = getattr(it, "close", None)
        if close is not None:
            close()  # a generator: run its clean-up here, now that the worker is gone


def locked(items: Iterable[T], lock: threading.Lock, done: threading.Event | None = None) -> Iterator[T]:
    """``items``, each step taken while holding ``lock``; they end early once ``done`` is set."""
    it = iter(items)
    while done is None or not done.is_set():
        with lock:
            try:
                x = next(it)
            except StopIteration:
                return
        yield x
