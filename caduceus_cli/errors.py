"""Exception classes of the library.

Each subclasses a built-in so callers can catch broadly; only the CLI maps them
to exit codes (see ``caduceus_cli.cli``). Messages are one line and say what to do.
"""

from __future__ import annotations


class CaduceusError(Exception):
    """Base class of every error the library raises on purpose."""


class ModelLoadError(CaduceusError, ValueError):
    """A model directory, hub id or checkpoint could not be loaded."""


class OptionError(CaduceusError, ValueError):
    """A command-line option or library argument has an unusable value."""


class ConfigError(CaduceusError, ValueError):
    """A model config holds a value this implementation does not support."""


class BackendUnavailableError(CaduceusError, RuntimeError):
    """A kernel backend was forced but is not installed or usable here."""


class InputFileError(CaduceusError, OSError):
    """An input file is missing, unreadable, truncated or malformed."""


class ReferenceError_(CaduceusError, ValueError):
    """The reference FASTA does not match the variants (contig, REF allele)."""


class ProbeError(CaduceusError, ValueError):
    """A probe file cannot be used as asked (wrong model, window or tissue; unreadable)."""


class TableError(CaduceusError, ValueError):
    """A variant table has a missing column, a bad value or a row that cannot be embedded."""


class TrainingError(CaduceusError, RuntimeError):
    """Pretraining cannot start or resume as asked."""


class StoppedError(CaduceusError, RuntimeError):
    """A run was asked to stop (SIGTERM) and stopped at a durable point; it can be resumed."""


class ShardError(CaduceusError, ValueError):
    """Shard outputs that cannot be merged: missing, duplicated, incomplete or from different runs."""


class RankError(CaduceusError, RuntimeError):
    """Another process of a torchrun run failed or stopped; this one stops too."""
