"""Compute kernels of the Mamba mixer and the one place a backend is chosen."""

from caduceus_cli.kernels.backend import Backend, available_backends, get_backend, resolve_backend

__all__ = ["Backend", "available_backends", "get_backend", "resolve_backend"]
