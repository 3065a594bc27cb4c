"""The closed sets of option values, as Enums: the CLI offers them, the library checks them once.

``choice(Enum, value, option)`` turns a string (or a member) into a member, or raises
``OptionError`` naming the option and the accepted values, so ``--precision fp13``
stops with one line instead of running fp32 and recording 'fp13'.
"""

from __future__ import annotations

from enum import Enum
from typing import TypeVar

from caduceus_cli.errors import OptionError


class Choice(str, Enum):
    """A string-valued choice; ``str(member)`` is its value."""

    def __str__(self) -> str:
        return self.value


class Precision(Choice):
    AUTO = "auto"  # bf16 autocast on a GPU, fp32 on the CPU
    BF16 = "bf16"
    FP32 = "fp32"


class BackendChoice(Choice):
    AUTO = "auto"
    TORCH = "torch"
    CUDA = "cuda"


class RcMode(Choice):
    AVG = "avg"  # both strands averaged at each position
    FWD = "fwd"  # the forward strand only
    BOTH = "both"  # the two strands side by side


class Pool(Choice):
    MEAN = "mean"
    CENTRE = "centre"
    NONE = "none"


class ModelVariant(Choice):
    PS = "ps"  # RC-equivariant parameter sharing
    PH = "ph"  # post-hoc conjoining, trained with RC augmentation


class OutputType(Choice):
    VCF = "v"
    VCF_GZ = "z"
    BCF = "b"
    TSV = "tsv"


class Score(Choice):
    LLR = "llr"  # CAD_LLR: masked forwards only
    COS = "cos"  # CAD_COS: reference and alternate forwards
    DELTA = "delta"  # CAD_DELTA: a fine-tuned head on the reference and alternate windows


class IndelMasking(Choice):
    POSITION = "position"  # indel CAD_LLR: each span base masked in a forward of its own (13 for a 1-bp indel)
    SPAN = "span"  # the whole span masked in one forward per window (2 per indel)


class WindowMode(Choice):
    CENTRED = "centred"  # one window per site, the variant in the middle (the paper's protocol)
    SHARED = "shared"  # tiles shared by the sites in their central core


class Classifier(Choice):
    SVM = "svm"
    LOGREG = "logreg"


class Split(Choice):
    CHROM = "chrom"
    CV = "cv"


class FinetuneMethod(Choice):
    PROBE = "probe"
    FULL = "full"


class Task(Choice):
    CLASSIFICATION = "classification"  # cross-entropy, binary or multi-class
    REGRESSION = "regression"  # MSE, one or more targets


class HeadPool(Choice):
    MEAN = "mean"  # mean over the sequence's positions (strand-averaged features)
    MAX = "max"


E = TypeVar("E", bound=Choice)


def choice(kind: type[E], value: str | E, option: str) -> E:
    """``value`` as a member of ``kind``; an unknown value raises OptionError naming ``option``."""
    if isinstance(value, kind):
        return value
    try:
        return kind(str(value).lower())
    except ValueError:
        accepted = ", ".join(m.value for m in kind)
        raise OptionError(f"{option} {value}: expected one of {accepted}") from None
