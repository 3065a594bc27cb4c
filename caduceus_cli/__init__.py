"""caduceus: score genetic variants with the Caduceus RC-equivariant DNA language model.

The public API (``__all__``) is importable from here; the pipelines load lazily, so
``import caduceus_cli`` stays light and a machine without pysam can still train:

    import caduceus_cli
    summary = caduceus_cli.score_vcf("calls.vcf.gz", "hg38.fa", "scored.vcf.gz")
    model = caduceus_cli.load_model()  # the shipped default model
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "load_model": "caduceus_cli.model.loading",
    "save_model": "caduceus_cli.model.loading",
    "CaduceusConfig": "caduceus_cli.model.config",
    "CaduceusForMaskedLM": "caduceus_cli.model.caduceus",
    "score_vcf": "caduceus_cli.pipelines.score_vcf",
    "ScoreOptions": "caduceus_cli.pipelines.score_vcf",
    "ScoreSummary": "caduceus_cli.pipelines.score_vcf",
    "embed": "caduceus_cli.pipelines.embed",
    "EmbedOptions": "caduceus_cli.pipelines.embed",
    "EmbedResult": "caduceus_cli.pipelines.embed",
    "finetune_probe": "caduceus_cli.pipelines.finetune_probe",
    "FinetuneOptions": "caduceus_cli.pipelines.finetune_probe",
    "ProbeReport": "caduceus_cli.pipelines.finetune_probe",
    "finetune_full": "caduceus_cli.pipelines.finetune_full",
    "FullFinetuneOptions": "caduceus_cli.pipelines.finetune_full",
    "FinetuneResult": "caduceus_cli.pipelines.finetune_full",
    "predict": "caduceus_cli.pipelines.predict",
    "PredictOptions": "caduceus_cli.pipelines.predict",
    "PredictResult": "caduceus_cli.pipelines.predict",
    "load_finetuned": "caduceus_cli.model.heads",
    "pretrain": "caduceus_cli.training.pretrain",
    "PretrainConfig": "caduceus_cli.training.pretrain",
    "fit_probe": "caduceus_cli.probe.model",
    "Probe": "caduceus_cli.probe.model",
    "ProbeOptions": "caduceus_cli.probe.model",
    "read_embeddings": "caduceus_cli.pipelines.embed",
    "EmbeddingSpec": "caduceus_cli.inference.spec",
    "Variant": "caduceus_cli.io.variant",
    "CaduceusError": "caduceus_cli.errors",
}

__all__ = [  # the names of _EXPORTS, spelled out for tools that read __all__ statically
    "__version__",
    "load_model",
    "save_model",
    "CaduceusConfig",
    "CaduceusForMaskedLM",
    "score_vcf",
    "ScoreOptions",
    "ScoreSummary",
    "embed",
    "EmbedOptions",
    "EmbedResult",
    "finetune_probe",
    "FinetuneOptions",
    "ProbeReport",
    "finetune_full",
    "FullFinetuneOptions",
    "FinetuneResult",
    "predict",
    "PredictOptions",
    "PredictResult",
    "load_finetuned",
    "pretrain",
    "PretrainConfig",
    "fit_probe",
    "Probe",
    "ProbeOptions",
    "read_embeddings",
    "EmbeddingSpec",
    "Variant",
    "CaduceusError",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'caduceus_cli' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names load on first use
    from caduceus_cli.errors import CaduceusError
    from caduceus_cli.inference.spec import EmbeddingSpec
    from caduceus_cli.io.variant import Variant
    from caduceus_cli.model.caduceus import CaduceusForMaskedLM
    from caduceus_cli.model.config import CaduceusConfig
    from caduceus_cli.model.heads import load_finetuned
    from caduceus_cli.model.loading import load_model, save_model
    from caduceus_cli.pipelines.embed import EmbedOptions, EmbedResult, embed, read_embeddings
    from caduceus_cli.pipelines.finetune_full import FinetuneResult, FullFinetuneOptions, finetune_full
    from caduceus_cli.pipelines.finetune_probe import FinetuneOptions, ProbeReport, finetune_probe
    from caduceus_cli.pipelines.predict import PredictOptions, PredictResult, predict
    from caduceus_cli.pipelines.score_vcf import ScoreOptions, ScoreSummary, score_vcf
    from caduceus_cli.probe.model import Probe, ProbeOptions, fit_probe
    from caduceus_cli.training.pretrain import PretrainConfig, pretrain
