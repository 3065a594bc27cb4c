"""kernels/derived.py: weight-derived tensors are made once per weight version, never served stale."""

import gc

import torch

from caduceus_cli.kernels.derived import as_dtype, cached_count, derived


def counting(fn):
    calls = []

    def make():
        calls.append(1)
        return fn()

    return make, calls


def test_made_once_per_version_and_remade_after_an_in_place_update():
    w = torch.nn.Parameter(torch.randn(4, 3))
    make, calls = counting(lambda: (w * 2).contiguous())
    first = derived("double", w, make)
    assert derived("double", w, make) is first and len(calls) == 1
    assert not first.requires_grad  # inference copies: no graph kept
    with torch.no_grad():
        w.add_(1.0)  # what an optimiser step or load_state_dict does
    again = derived("double", w, make)
    assert len(calls) == 2 and torch.equal(again, w.detach() * 2)


def test_a_swapped_storage_is_not_served_the_old_copy():
    w = torch.nn.Parameter(torch.ones(3))
    assert torch.equal(derived("double", w, lambda: 2 * w.detach()), torch.full((3,), 2.0))
    w.data = torch.full((3,), 5.0)  # what module.to() does: same Parameter, new storage, same version
    assert torch.equal(derived("double", w, lambda: 2 * w.detach()), torch.full((3,), 10.0))


def test_views_and_tags_are_kept_apart():
    w = torch.nn.Parameter(torch.arange(12.0).reshape(4, 3))
    top = derived("neg", w[:2], lambda: -w[:2].detach())
    bottom = derived("neg", w[2:], lambda: -w[2:].detach())
    assert torch.equal(top, -w.detach()[:2]) and torch.equal(bottom, -w.detach()[2:])
    # a fresh view object of the same rows (as squeeze() gives on every call) hits the same entry
    assert derived("neg", w[:2], lambda: torch.zeros(2, 3)) is top
    assert torch.equal(derived("twice", w[:2], lambda: 2 * w[:2].detach()), 2 * w.detach()[:2])


def test_a_freed_weight_takes_its_entries_with_it():
    before = cached_count()
    w = torch.randn(8)
    v = w[2:]
    derived("copy", w, w.clone)
    derived("copy", v, v.clone)
    assert cached_count() == before + 2
    del w, v  # the view held the base alive too
    gc.collect()
    assert cached_count() == before


def test_inference_tensors_are_derived_on_every_call():
    with torch.inference_mode():
        t = torch.randn(3)
        make, calls = counting(lambda: t + 1)
        a, b = derived("plus", t, make), derived("plus", t, make)
    assert len(calls) == 2 and torch.equal(a, b)


def test_as_dtype_returns_the_weight_itself_when_it_already_fits():
    w = torch.randn(5, 2)
    assert as_dtype(w, torch.float32) is w
    half = as_dtype(w, torch.bfloat16)
    assert half.dtype == torch.bfloat16 and as_dtype(w, torch.bfloat16) is half
    t = w.t()  # not contiguous: a contiguous copy, cached
    assert as_dtype(t, torch.float32).is_contiguous() and as_dtype(t, torch.float32) is as_dtype(t, torch.float32)
