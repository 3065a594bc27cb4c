"""predict: class probabilities or regression targets of a fine-tuned model for sequences.

Input: a FASTA, BED regions with a reference, or a table with a ``sequence`` column (``io.sequences``;
labels and splits, if any, are ignored). Output: a TSV with the name first, then one column per
class probability (``prob_<class>``) or target, in input order. Outputs are RC-invariant: a
sequence and its reverse complement get the same row (``model.heads``).
"""

from __future__ import annotations

import csv
import logging
import sys
from dataclasses import dataclass

from caduceus_cli.choices import BackendChoice, Precision, choice
from caduceus_cli.errors import OptionError
from caduceus_cli.inference.runtime import pick_device
from caduceus_cli.io.atomic import AtomicOutput
from caduceus_cli.io.reference import read_rename_table
from caduceus_cli.io.sequences import read_sequences
from caduceus_cli.model.heads import load_finetuned, sequence_outputs
from caduceus_cli.tokenizer import encode

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PredictOptions:
    window: int | None = None  # default: the fine-tuning length; longer sequences are centre-cropped
    batch_size: int = 8
    device: str = "auto"
    backend: BackendChoice | str = BackendChoice.AUTO
    precision: Precision | str = Precision.AUTO
    bed: bool = False
    rename_chrs: str | None = None


@dataclass(frozen=True)
class PredictResult:
    rows: int
    columns: list[str]
    task: str
    window: int
    output: str


def predict(
    model_dir: str, input_path: str, out: str, ref: str | None = None, opts: PredictOptions = PredictOptions()
) -> PredictResult:
    """Write ``out`` (TSV: name, then one column per output) for every sequence of ``input_path``."""
    backend = choice(BackendChoice, opts.backend, "--backend")
    precision = choice(Precision, opts.precision, "--precision")
    if opts.batch_size < 1:
        raise OptionError(f"--batch-size {opts.batch_size}: must be 1 or more")
    device = pick_device(opts.device)
    model = load_finetuned(model_dir, device=device, backend=backend.value)
    head = model.head_config
    renames = read_rename_table(opts.rename_chrs) if opts.rename_chrs else None
    records = read_sequences(
        input_path, ref, head.targets or ("label",), need_label=False, bed=opts.bed, renames=renames
    )
    bf16 = precision == Precision.BF16 or (precision == Precision.AUTO and device.type == "cuda")
    window = head.window if opts.window is None else opts.window
    if window < 1:
        raise OptionError(f"--window {window}: must be 1 or more")
    values = sequence_outputs(model, [encode(r.seq) for r in records], window, opts.batch_size, bf16)
    columns = ["name", *head.output_names]
    rows = ([r.name, *(f"{x:.6g}" for x in v)] for r, v in zip(records, values, strict=True))
    if out == "-":
        _write_tsv(sys.stdout, columns, rows)
    else:
        sink = AtomicOutput(out)
        try:
            with open(sink.tmp, "w", newline="") as fh:
                _write_tsv(fh, columns, rows)
            sink.commit()
        except BaseException:
            sink.abort()
            raise
    log.info("predicted %d sequences from %s into %s", len(records), input_path, out)
    return PredictResult(len(records), columns, head.task, window, out)


def _write_tsv(fh, columns: list[str], rows) -> None:
    w = csv.writer(fh, delimiter="\t", lineterminator="\n")
    w.writerow(columns)
    w.writerows(rows)
