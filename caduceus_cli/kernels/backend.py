"""The one place a kernel backend is chosen.

``torch``: pure PyTorch (chunked scan, cuDNN/CPU conv); runs everywhere and is the
reference twin of every fast path. On the CPU with numba it adds the inference kernels
(``mixer_numba.bimamba_rows``, ``addnorm_numba.add_norm_pair_cpu``: the flip-free backbone);
the same backend on a GPU keeps the literal composition. ``cuda``: mamba-ssm's selective-scan kernel plus
causal-conv1d's conv when installed, and for inference the Triton block boundary and the NVRTC
BiMamba mixer (``addnorm_triton.add_norm_pair``, ``mixer_cuda.bimamba_rows``). ``auto``: ``cuda`` on a GPU with the kernels,
else ``torch``. The choice is logged once per (name, device type).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch

from caduceus_cli.errors import BackendUnavailableError
from caduceus_cli.kernels.scan_numba import numba_available, scan_cpu
from caduceus_cli.kernels.scan_torch import causal_conv1d_ref

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'caduceus-cli[cuda]' (or: pip install mamba-ssm causal-conv1d --no-build-isolation)"
BACKEND_NAMES = ("auto", "torch", "cuda")


@dataclass(frozen=True)
class Backend:
    """A set of kernels with mamba-ssm's signatures."""

    name: str
    selective_scan: Callable[..., torch.Tensor]
    causal_conv1d: Callable[..., torch.Tensor]
    detail: str = ""
    # block boundary of the flip-free path (kernels/addnorm.py); None: the literal composition
    add_norm_pair: Callable[..., tuple[torch.Tensor, torch.Tensor]] | None = None
    # both directions of a BiMamba ("add") on token-major rows, summed, out_proj applied
    # (kernels/mixer_numba.bimamba_rows on the CPU, kernels/mixer_cuda.bimamba_rows on a GPU; twin:
    # mixer_ref.bimamba_rows_ref), used for inference by BiMamba.forward / forward_split where
    # bimamba_rows_supports(d_inner, dtype, device) says so; None: per direction, the literal flips.
    # (rows (n*L, D), L, pf, pr, out=None, max_rows=None): max_rows rows at a time, weights prepared once
    bimamba_rows: Callable[..., torch.Tensor] | None = None
    bimamba_rows_supports: Callable[[int, torch.dtype, torch.device], bool] = lambda d_inner, dtype, device: False


@functools.cache
def _cuda_kernels() -> tuple[Callable | None, Callable | None, str]:
    """(selective_scan_fn, causal_conv1d_fn or None, reason if unavailable)."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception as exc:  # ImportError, or a broken build raising OSError
        return None, None, f"mamba-ssm is not importable ({type(exc).__name__}: {exc})"
    try:
        from causal_conv1d import causal_conv1d_fn
    except Exception:
        causal_conv1d_fn = None
    return selective_scan_fn, causal_conv1d_fn, ""


def _cuda_scan(selective_scan_fn: Callable) -> Callable[..., torch.Tensor]:
    def last_contig(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        t = t.to(dtype)
        return t if t.stride(-1) == 1 else t.contiguous()

    def scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
        dt = u.dtype
        return selective_scan_fn(
            last_contig(u, dt),
            last_contig(delta, dt),
            A.float(),
            B.to(dt).contiguous(),
            C.to(dt).contiguous(),
            None if D is None else D.float(),
            z=None if z is None else last_contig(z, dt),
            delta_bias=None if delta_bias is None else delta_bias.float(),
            delta_softplus=delta_softplus,
        )

    return scan


def _cuda_conv(causal_conv1d_fn: Callable) -> Callable[..., torch.Tensor]:
    def conv(x, weight, bias=None, activation=None):
        if x.stride(-1) != 1 and x.stride(1) != 1:
            x = x.contiguous()
        return causal_conv1d_fn(
            x, weight.to(x.dtype), None if bias is None else bias.to(x.dtype), activation=activation
        )

    return conv


def available_backends() -> dict[str, str]:
    """Name -> '' when usable here, else why not."""
    scan, _, why = _cuda_kernels()
    if scan is not None and not torch.cuda.is_available():
        why = "no CUDA GPU visible"
    return {"torch": "", "cuda": "" if scan is not None and not why else why}


def resolve_backend(name: str = "auto", device: torch.device | str | None = None) -> str:
    """The concrete backend name for ``name`` on ``device``; raises if a forced one is missing."""
    if name not in BACKEND_NAMES:
        raise BackendUnavailableError(f"unknown backend {name!r}; choose one of {', '.join(BACKEND_NAMES)}")
    dev = torch.device(device) if device is not None else None
    if name == "torch":
        return "torch"
    why = available_backends()["cuda"]
    if name == "cuda":
        if why:
            raise BackendUnavailableError(f"backend 'cuda' is not available: {why}; install it with: {INSTALL_HINT}")
        if dev is not None and dev.type != "cuda":
            raise BackendUnavailableError(f"backend 'cuda' needs a CUDA device, got {dev}; pass --device cuda")
        return "cuda"
    return "cuda" if not why and (dev is None or dev.type == "cuda") else "torch"


@functools.cache
def _build(name: str, device_type: str = "cpu") -> Backend:
    if name == "cuda":
        scan, conv, _ = _cuda_kernels()
        conv_fn = _cuda_conv(conv) if conv is not None else causal_conv1d_ref
        detail = "mamba-ssm selective scan + " + (
            "causal-conv1d" if conv is not None else "cuDNN conv (causal-conv1d not installed)"
        )
        from caduceus_cli.kernels import addnorm_triton

        pair = addnorm_triton.add_norm_pair if addnorm_triton.triton_available() else None
        detail += " + Triton add/norm" if pair else " (no Triton: eager add/norm)"
        rows: dict = {}
        if pair is not None and os.environ.get("CADUCEUS_FUSED_SCAN", "1") != "0":
            from caduceus_cli.kernels import mixer_cuda, scan_cuda

            why = scan_cuda.available()
            if not why:
                rows = dict(bimamba_rows=mixer_cuda.bimamba_rows, bimamba_rows_supports=mixer_cuda.rows_supported)
            detail += " + token-major NVRTC BiMamba for inference" if rows else f" (no NVRTC scan: {why})"
        return Backend("cuda", _cuda_scan(scan), conv_fn, detail, pair, **rows)
    if not numba_available() or device_type != "cpu":  # on a GPU: the literal composition, as before
        return Backend("torch", scan_cpu, causal_conv1d_ref, "chunked PyTorch scan")
    from caduceus_cli.kernels.addnorm_numba import add_norm_pair_cpu
    from caduceus_cli.kernels.mixer_numba import bimamba_rows, supported

    detail = "numba BiMamba mixer + block boundary for CPU inference, chunked PyTorch scan otherwise"
    return Backend(
        "torch",
        scan_cpu,
        causal_conv1d_ref,
        detail,
        add_norm_pair_cpu,
        bimamba_rows=bimamba_rows,
        bimamba_rows_supports=supported,
    )


_logged: set[tuple[str, str]] = set()


def get_backend(name: str = "auto", device: torch.device | str | None = None) -> Backend:
    """Resolve and build a backend, logging the choice once per (backend, device type)."""
    resolved = resolve_backend(name, device)
    dev_type = torch.device(device).type if device is not None else None
    backend = _build(resolved, (dev_type or "cpu") if resolved == "torch" else "cuda")
    key = (resolved, dev_type or "?")
    if key not in _logged:
        _logged.add(key)
        log.info("kernel backend: %s (%s)%s", resolved, backend.detail, "" if name == resolved else f", from {name!r}")
    return backend
