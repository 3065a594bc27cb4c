"""Atomic output files: written beside the target under a temporary name, renamed into place on success."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from caduceus_cli.errors import InputFileError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_file(path: str | os.PathLike) -> None:
    """Flush a written file's bytes to disk."""
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def fsync_dir(path: str | os.PathLike) -> None:
    """Flush a folder's entries (a rename into it) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class AtomicOutput:
    """A temporary file beside ``path`` ('-' for standard output, written directly); ``commit`` or ``abort``."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.stdout = path == "-"
        if self.stdout:
            self.tmp = "-"
        else:
            target = Path(path)
            if not target.parent.exists():
                raise InputFileError(f"{path}: output folder {target.parent} does not exist")
            try:
                fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
            except OSError as exc:
                raise InputFileError(f"{path}: cannot write in {target.parent} ({exc.strerror})") from exc
            os.close(fd)
            self.tmp = tmp

    def commit(self) -> None:
        """Make the file durable under its final name: fsync it, rename it, fsync its folder."""
        if not self.stdout:
            os.chmod(self.tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual file mode
            fsync_file(self.tmp)
            os.replace(self.tmp, self.path)
            fsync_dir(Path(self.path).parent)

    def abort(self) -> None:
        if not self.stdout and os.path.exists(self.tmp):
            os.unlink(self.tmp)
