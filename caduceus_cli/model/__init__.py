"""The Caduceus network (PS and Ph), its config, and loading/saving."""

from caduceus_cli.model.caduceus import CaduceusForMaskedLM, CaduceusOutput
from caduceus_cli.model.config import CaduceusConfig
from caduceus_cli.model.loading import load_model, save_model

__all__ = ["CaduceusConfig", "CaduceusForMaskedLM", "CaduceusOutput", "load_model", "save_model"]
