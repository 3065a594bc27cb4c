"""Masked-LM pretraining of Caduceus (``CADUCEUS_SPEC.md``, pretraining recipe)."""
