"""Provenance strings written into outputs and model cards."""

from __future__ import annotations

import shlex
import sys


def command_line() -> str:
    """The command as the user typed it (program name normalised to ``caduceus``)."""
    return " ".join(shlex.quote(a) for a in ["caduceus"] + sys.argv[1:])
