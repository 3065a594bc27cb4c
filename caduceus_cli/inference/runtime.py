"""The runtime of one run: device, precision, model, reference and engine, built once.

Every pipeline that runs the model (score-vcf, embed, finetune --method probe) opens a
``Runtime`` from its ``RuntimeOptions`` and closes it at the end; nothing else loads
a model or opens a reference.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from caduceus_cli.choices import BackendChoice, Precision, RcMode, choice
from caduceus_cli.errors import InputFileError, OptionError
from caduceus_cli.inference.engine import WindowEngine
from caduceus_cli.io.reference import Reference, read_rename_table
from caduceus_cli.model.loading import load_model, weights_sha256

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RuntimeOptions:
    """Where and how the model runs, and the reference it reads (shared by every pipeline)."""

    device: str = "auto"  # auto | cpu | cuda | cuda:N
    backend: BackendChoice | str = BackendChoice.AUTO
    precision: Precision | str = Precision.AUTO
    batch_size: int = 8  # windows per forward
    rename_chrs: str | None = None  # two-column file: contig in the input, contig in the reference


@dataclass(frozen=True)
class InferenceOptions(RuntimeOptions):
    """Runtime options plus what shapes variant features: window, pooling, layer, strands, chunking."""

    window: int | None = None  # bp; default: the model's training length (see inference.spec)
    flank: int | None = None  # pooling half-width; default 768 (the paper's), or a probe's
    layer: int = -1  # hidden state: 0 = embeddings .. n_layer; -1 = the final normalised output
    rc_mode: RcMode | str = RcMode.AVG
    strict: bool = False  # REF mismatch or a missing contig: an error instead of a flag
    chunk_sites: int = 256  # sites planned and scored together (memory is bounded by a chunk)


def pick_device(device: str = "auto") -> torch.device:
    """'auto' -> cuda when available, else cpu; anything else as torch understands it."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as exc:
        raise OptionError(f"--device {device}: expected auto, cpu, cuda or cuda:N") from exc


class Runtime:
    """Model + engine (+ reference) for one run; use as a context manager or call ``close``."""

    def __init__(self, model_source: str | None, opts: RuntimeOptions, ref: str | None = None) -> None:
        backend = choice(BackendChoice, opts.backend, "--backend")
        precision = choice(Precision, opts.precision, "--precision")
        if opts.batch_size < 1:
            raise OptionError(f"--batch-size {opts.batch_size}: must be 1 or more")
        self.device = pick_device(opts.device)
        self.model = load_model(model_source, device=self.device, backend=backend.value)
        self.engine = WindowEngine(self.model, self.device, opts.batch_size, precision)
        self.reference: Reference | None = None
        if ref is not None:
            renames = read_rename_table(opts.rename_chrs) if opts.rename_chrs else None
            self.reference = Reference(ref, renames)
        self._sha256: str | None = None

    @property
    def model_sha256(self) -> str:
        if self._sha256 is None:
            self._sha256 = weights_sha256(self.model.source_dir)
        return self._sha256

    @property
    def backend_name(self) -> str:
        return self.model.kernels(self.device).name

    def need_reference(self, what: str):
        """The reference, or an error saying that ``what`` needs one."""
        if self.reference is None:
            raise InputFileError(f"{what} need the reference genome: pass --ref FASTA")
        return self.reference

    def close(self) -> None:
        if self.reference is not None:
            self.reference.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
