"""Loading and saving models in the Hugging Face hub layout.

A model directory holds ``config.json`` and ``model.safetensors`` (or the older
``pytorch_model.bin``); tied tensors (reverse Mamba in/out projections, LM head)
are omitted from the file and restored on load.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from caduceus_cli.errors import ConfigError, ModelLoadError
from caduceus_cli.model.caduceus import CaduceusForMaskedLM
from caduceus_cli.model.config import CaduceusConfig

log = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "caduceus-ps-hg-chr20-d128-n4"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_TIED_SUFFIXES = ("mamba_rev.in_proj.weight", "mamba_rev.out_proj.weight")
_TIED_HEAD = ("lm_head.weight", "lm_head.lm_head.weight")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def default_model_dir() -> Path:
    """The shipped default model: $CADUCEUS_DEFAULT_MODEL, else ``models/<name>`` of this checkout
    (source tree, editable install), else ``caduceus_cli/_models/<name>`` (wheel; setup.py copies it there)."""
    env = os.environ.get("CADUCEUS_DEFAULT_MODEL")
    if env:
        return Path(env)
    import caduceus_cli

    here = Path(caduceus_cli.__file__).resolve().parent  # the package, wherever this module sits in it
    candidates = (here.parent / "models" / DEFAULT_MODEL_NAME, here / "_models" / DEFAULT_MODEL_NAME)
    for path in candidates:
        if (path / "config.json").exists():
            return path
    raise ModelLoadError(
        f"no default model found (looked in {' and '.join(map(str, candidates))}); "
        "pass --model DIR or a hub id, or set CADUCEUS_DEFAULT_MODEL"
    )


_SEQLEN = re.compile(r"seqlen-(\d+)(k?)(?![0-9a-zA-Z])", re.IGNORECASE)


def training_length(model: CaduceusForMaskedLM) -> int | None:
    """The training length: ``max_seq_len`` of the config, else the ``seqlen-131k`` / ``seqlen-1k`` of the
    model's hub id or folder name (the published checkpoints carry no length in their config), else None."""
    if model.config.max_seq_len:
        return int(model.config.max_seq_len)
    names = [str(getattr(model, "source", "") or "")]
    if getattr(model, "source_dir", None) is not None:
        names += list(Path(model.source_dir).parts)
    for name in names:
        m = _SEQLEN.search(name)
        if m:
            n = int(m.group(1))  # "131k" is 2^17 = 131,072 and "1k" is 1,024: the nearest power of two
            return 2 ** round(math.log2(n * 1000)) if m.group(2) else n
    return None


def is_tied_key(key: str) -> bool:
    return key.endswith(_TIED_SUFFIXES) or key in _TIED_HEAD


def resolve_model_dir(source: str | os.PathLike | None) -> Path:
    """A local directory for ``source``: a path, a hub id (downloaded or cached), or the default."""
    if source is None:
        return default_model_dir()
    path = Path(source).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelLoadError(f"{path}: a model is a directory with config.json and model.safetensors, not a file")
        return path
    text = str(source)
    if not _HUB_ID.match(text):
        raise ModelLoadError(f"{text}: no such model directory, and not a hub id of the form 'org/name'")
    return _download(text)


def _download(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise ModelLoadError("loading a hub id needs huggingface_hub: pip install huggingface_hub") from exc
    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    try:
        path = snapshot_download(
            repo_id, allow_patterns=["config.json", "*.safetensors", "pytorch_model.bin"], local_files_only=offline
        )
    except LocalEntryNotFoundError as exc:
        raise ModelLoadError(
            f"{repo_id}: not in the local Hugging Face cache and "
            + ("HF_HUB_OFFLINE is set" if offline else "the hub cannot be reached")
            + f"; on a machine with internet run `hf download {repo_id}` (same HF_HOME), or pass a local directory"
        ) from exc
    except RepositoryNotFoundError as exc:
        raise ModelLoadError(f"{repo_id}: no such repository on the Hugging Face hub (check the id)") from exc
    except Exception as exc:  # network and HTTP errors of many kinds
        raise ModelLoadError(
            f"{repo_id}: download failed ({type(exc).__name__}: {exc}); retry or pass a local directory"
        ) from exc
    return Path(path)


def _read_state_dict(directory: Path) -> tuple[dict[str, torch.Tensor], Path]:
    for name in WEIGHT_FILES:
        f = directory / name
        if f.exists():
            try:
                if name.endswith(".safetensors"):
                    return load_file(str(f)), f
                return torch.load(f, map_location="cpu", weights_only=True), f
            except Exception as exc:
                raise ModelLoadError(
                    f"{f}: cannot read weights ({type(exc).__name__}: {exc}); the file may be truncated"
                ) from exc
    raise ModelLoadError(f"{directory}: no weights file (expected one of {', '.join(WEIGHT_FILES)})")


def weights_sha256(directory: str | os.PathLike) -> str:
    """sha256 of the weights file of a model directory (for provenance); hashed once per file version."""
    for name in WEIGHT_FILES:
        f = Path(directory) / name
        if f.exists():
            st = f.stat()
            return _file_sha256(str(f.resolve()), st.st_size, st.st_mtime_ns)
    return "unknown"


@functools.lru_cache(maxsize=16)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_model(
    source: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    backend: str = "auto",
) -> CaduceusForMaskedLM:
    """Load a Caduceus masked-LM model from a directory, a hub id, or the shipped default.

    Keys and shapes are checked strictly; every problem is reported in one message.
    The model is returned in eval mode on ``device`` (``dtype`` casts floating weights).
    """
    directory = resolve_model_dir(source)
    cfg_path = directory / "config.json"
    if not cfg_path.exists():
        raise ModelLoadError(f"{directory}: no config.json (a model directory holds config.json + model.safetensors)")
    try:
        cfg = CaduceusConfig.from_json(cfg_path)
    except ConfigError as exc:
        raise ModelLoadError(f"{cfg_path}: {exc}") from exc
    state, weights_file = _read_state_dict(directory)
    model = CaduceusForMaskedLM(cfg, backend=backend)
    expected = model.state_dict()
    missing = sorted(k for k in expected if k not in state and not is_tied_key(k))
    unknown = sorted(k for k in state if k not in expected)
    shapes = sorted(
        f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
        for k in state
        if k in expected and tuple(state[k].shape) != tuple(expected[k].shape)
    )
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {', '.join(missing[:6])}{' ...' if len(missing) > 6 else ''}")
    if unknown:
        problems.append(f"unknown keys ({len(unknown)}): {', '.join(unknown[:6])}{' ...' if len(unknown) > 6 else ''}")
    if shapes:
        problems.append(f"wrong shapes ({len(shapes)}): {'; '.join(shapes[:6])}")
    if problems:
        raise ModelLoadError(
            f"{weights_file}: does not match config.json ({cfg.d_model=}, {cfg.n_layer=}, rcps={cfg.rcps}): "
            + " | ".join(problems)
        )
    state = {k: v for k, v in state.items() if not is_tied_key(k)}
    model.load_state_dict(state, strict=False)
    model.tie_weights()
    model.source = str(source) if source is not None else str(directory)
    model.source_dir = directory
    if dtype is not None:
        model = model.to(dtype=dtype)
    return model.to(device).eval()


def save_model(model: CaduceusForMaskedLM, directory: str | os.PathLike, extra_config: dict | None = None) -> Path:
    """Write config.json + model.safetensors (tied tensors omitted), loadable by the reference code."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    cfg = model.config.to_dict()
    if extra_config:
        cfg.update(extra_config)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items() if not is_tied_key(k)}
    tmp = out / "model.safetensors.tmp"
    save_file(state, str(tmp), metadata={"format": "pt"})
    tmp.replace(out / "model.safetensors")
    (out / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    log.info("saved model to %s", out)
    return out
