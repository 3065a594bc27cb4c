import pytest
import torch

from caduceus_cli import load_model
from caduceus_cli.kernels.addnorm import add_norm
from caduceus_cli.kernels.backend import get_backend
from caduceus_cli.model.caduceus import rc_mixer
from caduceus_cli.model.rc import rc_average_ph, rc_average_ps, rc_hidden
from caduceus_cli.tokenizer import COMPLEMENT_MAP, reverse_complement_ids
from tests.conftest import perturbed_model, random_ids

COMP = torch.tensor(COMPLEMENT_MAP)
K = get_backend("torch")


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def test_golden_outputs_reproduced(golden_dir):
    model = load_model(golden_dir, backend="torch")
    expected = torch.load(golden_dir / "expected.pt")
    with torch.no_grad():
        out = model(expected["input_ids"])
    assert out.logits.dtype == torch.float32
    assert out.logits.shape == expected["logits"].shape
    assert rel(out.logits, expected["logits"]) <= 1e-4
    assert rel(out.last_hidden_state, expected["last_hidden_state"]) <= 1e-4


def test_golden_ps_depends_on_half_swap():
    """Loading the fused PS checkpoint as if non-fused (no swap) must change the outputs."""
    from tests.conftest import GOLDEN

    d = GOLDEN / "caduceus_ps_d64_n2"
    fused = load_model(d, backend="torch")
    unfused = perturbed_model(True, d_model=64, n_layer=2, fused=False)
    state = {
        k.replace(".norm.weight", ".norm.submodule.weight").replace("norm_f.weight", "norm_f.submodule.weight"): v
        for k, v in fused.state_dict().items()
    }
    unfused.load_state_dict(state)
    x = torch.load(d / "expected.pt")["input_ids"]
    with torch.no_grad():
        assert rel(unfused(x).logits, fused(x).logits) > 1e-2


@pytest.mark.parametrize("fused", [True, False])
def test_every_ps_layer_is_rc_equivariant(fused):
    model = perturbed_model(True, fused=fused)
    bb = model.caduceus.backbone
    ids = random_ids(2, 64)
    with torch.no_grad():
        emb = bb.embeddings(ids)
        assert torch.allclose(bb.embeddings(reverse_complement_ids(ids)), rc_hidden(emb), atol=1e-6)
        h = torch.randn(2, 64, 64)
        r = torch.randn(2, 64, 64)
        for layer in bb.layers:
            h1, r1 = layer(h, r, K)
            h2, r2 = layer(rc_hidden(h), rc_hidden(r), K)
            assert rel(h2, rc_hidden(h1)) < 1e-5 and rel(r2, rc_hidden(r1)) < 1e-6
            assert (
                rel(rc_mixer(layer.mixer.submodule, rc_hidden(h), K), rc_hidden(rc_mixer(layer.mixer.submodule, h, K)))
                < 1e-5
            )
        norm = bb.final_norm
        final = lambda x: add_norm(x, None, norm.weight, norm.eps, False, True, False)[0]  # noqa: E731
        assert rel(final(rc_hidden(h)), rc_hidden(final(h))) < 1e-6
        logits = model.lm_head(h)
        assert rel(model.lm_head(rc_hidden(h)), logits.flip(1)[..., COMP]) < 1e-5


def test_ps_embedding_and_lm_head_match_their_literal_definitions():
    """The PS embedding (one lookup in a (V, 2D) table) is bit for bit cat([E(ids), RC(E(RC(ids)))]);
    the PS LM head (flip folded into its weight) is h1 @ W.T + flip_C(h2) @ W[complement].T."""
    model = perturbed_model(True)
    emb, head = model.caduceus.backbone.embeddings.word_embeddings, model.lm_head
    ids = random_ids(3, 50)
    with torch.no_grad():
        E = emb.embedding
        assert torch.equal(emb(ids), torch.cat([E(ids), rc_hidden(E(reverse_complement_ids(ids)))], dim=-1))
        w = head.lm_head.weight  # (V, D)
        d = w.shape[1]
        h = torch.randn(3, 50, 2 * d)
        literal = h[..., :d] @ w.t() + h[..., d:].flip(-1) @ w[COMP].t()
        assert rel(head(h), literal) < 1e-6


@pytest.mark.parametrize("strategy", ["add", "ew_multiply"])
def test_whole_ps_model_is_rc_equivariant(strategy):
    model = perturbed_model(True, strategy=strategy, n_layer=3)
    x = random_ids(2, 97, seed=1)
    with torch.no_grad():
        a, b = model(x), model(reverse_complement_ids(x))
    assert rel(b.logits, a.logits.flip(1)[..., COMP]) < 1e-5
    assert rel(b.last_hidden_state, rc_hidden(a.last_hidden_state)) < 1e-5


def test_pooled_features_are_rc_invariant():
    ps, ph = perturbed_model(True), perturbed_model(False)
    x = random_ids(2, 80, seed=2)
    xr = reverse_complement_ids(x)
    with torch.no_grad():
        f_ps = rc_average_ps(ps(x).last_hidden_state)
        f_ps_rc = rc_average_ps(ps(xr).last_hidden_state)
        assert rel(f_ps_rc, f_ps.flip(1)) < 1e-5  # per position: mirrored
        assert rel(f_ps_rc.mean(1), f_ps.mean(1)) < 1e-5  # pooled: identical
        h, h_rc = ph(x).last_hidden_state, ph(xr).last_hidden_state
        f_ph, f_ph_rc = rc_average_ph(h, h_rc), rc_average_ph(h_rc, h)
        assert rel(f_ph_rc.mean(1), f_ph.mean(1)) < 1e-6
        assert rel(h_rc.mean(1), h.mean(1)) > 1e-3  # Ph alone is not invariant: the averaging matters


@pytest.mark.parametrize("rcps", [True, False])
@pytest.mark.parametrize("strategy", ["add", "ew_multiply"])
def test_fused_bimamba_matches_unfused_twin(rcps, strategy):
    model = perturbed_model(rcps, strategy=strategy)
    layer = model.caduceus.backbone.layers[0]
    mixer = layer.mixer.submodule if rcps else layer.mixer
    h = torch.randn(3, 45, 32)
    with torch.no_grad():
        assert rel(mixer(h, K), mixer.forward_unfused(h, K)) < 1e-5


def test_weights_are_tied():
    model = perturbed_model(True)
    layer = model.caduceus.backbone.layers[0].mixer.submodule
    assert layer.mamba_rev.in_proj.weight is layer.mamba_fwd.in_proj.weight
    assert layer.mamba_rev.out_proj.weight is layer.mamba_fwd.out_proj.weight
    assert model.head_linear.weight is model.caduceus.backbone.embeddings.table.weight
    assert layer.mamba_rev.conv1d.weight is not layer.mamba_fwd.conv1d.weight


def test_hidden_states_and_training_step():
    model = perturbed_model(False, n_layer=2).train()
    out = model(random_ids(1, 30), output_hidden_states=True)
    assert len(out.hidden_states) == 3 and out.hidden_states[-1] is out.last_hidden_state
    out.logits.sum().backward()
    assert model.caduceus.backbone.layers[0].mixer.mamba_fwd.A_log.grad is not None


@pytest.mark.parametrize("rcps,fused", [(True, True), (True, False), (False, True)])
def test_flip_free_forward_equals_forward(rcps, fused):
    """The flip-free block plumbing (split BiMamba outputs read through index maps) with the eager
    add/norm twin computes the same function as the literal composition."""
    from dataclasses import replace

    from caduceus_cli.kernels import addnorm
    from caduceus_cli.kernels.backend import get_backend

    model = perturbed_model(rcps, d_model=32, n_layer=3, fused=fused, seed=3)
    base = get_backend("torch", "cpu")
    flip_free = replace(base, add_norm_pair=addnorm.add_norm_pair)
    ids = random_ids(3, 57, seed=5)
    with torch.no_grad():
        want = model.caduceus.backbone(ids, base)[0]
        got = model.caduceus.backbone(ids, flip_free)[0]
        mixer = model.caduceus.backbone._parts(model.caduceus.backbone.layers[0])[0]
        X = torch.randn(5, 57, 32)  # rows in chunks of 2: 2 + 2 + 1
        # the rows kernel writes its output over X: each call gets its own copy
        whole = mixer.forward_split(X.clone(), base, max_rows=64)
        chunked = mixer.forward_split(X.clone(), base, max_rows=2)
        # the literal path: per direction, each chunk flipped for the reverse one; o_r in reversed order
        o_f, o_r = mixer.forward_split(X.clone(), replace(base, bimamba_rows=None), max_rows=2)
        literal = o_f + o_r.view(5, 57, 32).flip(1).reshape(o_f.shape)
        direct = mixer.forward_unfused(X, base).reshape(o_f.shape)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert whole[1] is None and chunked[1] is None
    for out in (whole[0], chunked[0], literal):
        torch.testing.assert_close(out, direct, rtol=1e-5, atol=1e-5)
