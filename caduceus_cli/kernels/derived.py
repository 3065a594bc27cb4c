"""Tensors derived from model weights (casts, transposes, scaled copies), made once per weight version.

The token-major CUDA mixer (``kernels/scan_cuda.py``) needs on every call, for every block and
direction, the projection weights in the activations' dtype, the conv weight transposed, A * log2(e)
and so on: small copies that cost a kernel launch each (about 900 per PS 256 x 1,024 forward) if
remade every time. ``derived`` remakes one only when its source weight changed:

- keyed by the source's base tensor (held weakly: a freed model's entries go with it), the view's
  address, shape, strides and dtype (a storage swapped in by ``module.to()`` or ``param.data = ...``
  has another address), and a tag naming the derivation;
- valid while the base is alive and its version counter (bumped by every in-place update: an
  optimiser step, ``load_state_dict``, ``copy_``) is the one it was made at.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import torch

_CACHE: dict[tuple, tuple[weakref.ref, int, torch.Tensor]] = {}


def _key(tag: str, source: torch.Tensor) -> tuple[tuple, torch.Tensor]:
    base = source._base if source._base is not None else source
    # data_ptr: a tensor whose storage was swapped (``param.data = ...``, as ``module.to()`` does) misses
    key = (tag, id(base), source.data_ptr(), tuple(source.shape), tuple(source.stride()), source.dtype)
    return key, base


def derived(tag: str, source: torch.Tensor, make: Callable[[], torch.Tensor]) -> torch.Tensor:
    """``make()`` (a tensor computed from ``source`` alone), remade only when ``source`` changed.

    ``tag`` names the derivation (two derivations of one weight need two tags). ``make`` runs
    without autograd: these are inference copies. An inference-mode tensor has no version
    counter, so what is derived from one is made on every call.
    """
    if source.is_inference():  # no version counter to check against: made afresh
        with torch.no_grad():
            return make()
    key, base = _key(tag, source)
    hit = _CACHE.get(key)
    if hit is not None:
        ref, version, value = hit
        if ref() is base and version == source._version:
            return value
    with torch.no_grad():
        value = make()
    _CACHE[key] = (weakref.ref(base, lambda _ref, k=key: _drop(k, _ref)), source._version, value)
    return value


def _drop(key: tuple, ref: weakref.ref) -> None:
    """Weakref callback: forget an entry whose base was freed (unless the key now holds another's)."""
    hit = _CACHE.get(key)
    if hit is not None and hit[0] is ref:
        del _CACHE[key]


def cached_count() -> int:
    """How many derived tensors are held (tests, diagnostics)."""
    return len(_CACHE)


def as_dtype(source: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``source`` in ``dtype`` and contiguous: itself when it already is, else a cached copy."""
    if source.dtype == dtype and source.is_contiguous():
        return source
    return derived(f"as_{dtype}", source, lambda: source.to(dtype).contiguous())
