"""caduceus: score genetic variants with the Caduceus RC-equivariant DNA language model."""

__version__ = "0.1.0"

from caduceus_cli.model import CaduceusConfig, CaduceusForMaskedLM, load_model, save_model  # noqa: E402

__all__ = ["CaduceusConfig", "CaduceusForMaskedLM", "__version__", "load_model", "save_model"]
