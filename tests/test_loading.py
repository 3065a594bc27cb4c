import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from caduceus_cli import load_model, save_model
from caduceus_cli.errors import ModelLoadError
from tests.conftest import GOLDEN, random_ids


def copy_model(golden_dir, tmp_path):
    dst = tmp_path / "m"
    shutil.copytree(golden_dir, dst)
    for f in dst.iterdir():
        f.chmod(0o644)
    return dst


def test_save_load_roundtrip_identical(golden_dir, tmp_path):
    model = load_model(golden_dir, backend="torch")
    out = save_model(model, tmp_path / "saved")
    keys = set(load_file(str(out / "model.safetensors")))
    assert keys == set(load_file(str(golden_dir / "model.safetensors")))  # same layout, ties omitted
    assert not any("mamba_rev.in_proj" in k or k.endswith("lm_head.weight") for k in keys)
    again = load_model(out, backend="torch")
    x = random_ids(2, 50)
    with torch.no_grad():
        assert torch.equal(model(x).logits, again(x).logits)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["complement_map"]["7"] == 10 and cfg["id2label"]  # extra keys kept


def test_pytorch_model_bin_is_accepted(golden_dir, tmp_path):
    d = copy_model(golden_dir, tmp_path)
    state = load_file(str(d / "model.safetensors"))
    (d / "model.safetensors").unlink()
    torch.save(state, d / "pytorch_model.bin")
    assert load_model(d).config.d_model == 64


def test_missing_directory_and_files(tmp_path):
    with pytest.raises(ModelLoadError, match="no such model directory"):
        load_model(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_model(tmp_path / "empty")


def test_missing_weights(golden_dir, tmp_path):
    d = copy_model(golden_dir, tmp_path)
    (d / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="no weights file"):
        load_model(d)


def test_truncated_weights(golden_dir, tmp_path):
    d = copy_model(golden_dir, tmp_path)
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="truncated"):
        load_model(d)


def test_key_problems_reported_together(golden_dir, tmp_path):
    d = copy_model(golden_dir, tmp_path)
    state = load_file(str(d / "model.safetensors"))
    victim = next(k for k in state if k.endswith("mamba_fwd.D"))
    del state[victim]
    state["caduceus.backbone.extra.weight"] = torch.zeros(3)
    shaped = next(k for k in state if k.endswith("x_proj.weight"))
    state[shaped] = torch.zeros(5, 5)
    save_file(state, str(d / "model.safetensors"))
    with pytest.raises(ModelLoadError) as exc:
        load_model(d)
    msg = str(exc.value)
    assert "missing keys" in msg and victim in msg
    assert "unknown keys" in msg and "extra.weight" in msg
    assert "wrong shapes" in msg and "(5, 5)" in msg


def test_unsupported_config(golden_dir, tmp_path):
    d = copy_model(golden_dir, tmp_path)
    cfg = json.loads((d / "config.json").read_text())
    cfg["rms_norm"] = False
    cfg["bidirectional_strategy"] = "concat"
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match="rms_norm=false.*bidirectional_strategy='concat'"):
        load_model(d)
    (d / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        load_model(d)


def test_hub_id_offline_not_cached(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ModelLoadError, match="not in the local Hugging Face cache"):
        load_model("kuleshov-group/caduceus-ps_seqlen-131k_d_model-256_n_layer-16")


def test_hub_id_from_local_cache(golden_dir, monkeypatch, tmp_path):
    """A cached hub snapshot loads offline through huggingface_hub's cache layout."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    repo = cache / "models--org--tiny-caduceus"
    snap = repo / "snapshots" / ("a" * 40)
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    for f in ("config.json", "model.safetensors"):
        shutil.copy(golden_dir / f, snap / f)
    assert load_model("org/tiny-caduceus").config.d_model == 64


def test_training_length_of_published_checkpoints_comes_from_their_name(tmp_path):
    """The hub checkpoints carry no max_seq_len: seqlen-131k / seqlen-1k in the id or folder name gives it."""
    from caduceus_cli.inference.spec import spec_for
    from caduceus_cli.model.loading import training_length

    for name, length in (
        ("caduceus-ps_seqlen-131k_d_model-256_n_layer-16", 131_072),
        ("caduceus-ph_seqlen-1k_d_model-256_n_layer-4", 1_024),
    ):
        d = tmp_path / f"models--kuleshov-group--{name}" / "snapshots" / "abc123"
        shutil.copytree(GOLDEN / "caduceus_ps_d64_n2", d)
        model = load_model(d)
        assert model.config.max_seq_len is None and training_length(model) == length
        assert spec_for(model, "sha", "variant").window == length
    assert training_length(load_model(GOLDEN / "caduceus_ps_d64_n2")) is None
