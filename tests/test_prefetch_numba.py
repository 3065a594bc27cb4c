"""The prefetch hints: they compile to prefetch instructions and change no value."""

import re

import numpy as np
import pytest

nb = pytest.importorskip("numba")

from caduceus_cli.kernels.prefetch_numba import prefetch, prefetch_span, prefetch_span_w  # noqa: E402


@nb.njit
def _row_sums_prefetching(a, ahead):
    out = np.zeros(a.shape[0], np.float32)
    for i in range(a.shape[0]):
        if i + ahead < a.shape[0]:
            prefetch_span(a[i + ahead], 3, a.shape[1])  # a span not starting on a cache line
            prefetch_span_w(out[i + ahead : i + ahead + 1], 0, 1)
        prefetch(a, (i, 0))
        s = np.float32(0.0)
        for c in range(a.shape[1]):
            s += a[i, c]
        out[i] = s
    return out


def test_prefetch_emits_hints_and_keeps_values():
    a = np.random.default_rng(0).standard_normal((64, 100)).astype(np.float32)
    plain = np.zeros(64, np.float32)
    for i in range(64):  # the same sum, in the same order, without hints
        for c in range(100):
            plain[i] += a[i, c]
    got = _row_sums_prefetching(a, 4)
    assert np.array_equal(got.view(np.int32), plain.view(np.int32))
    for spanner in (prefetch_span, prefetch_span_w):
        ir = next(iter(spanner.inspect_llvm().values()))
        assert "@llvm.prefetch" in ir
    asm = next(iter(prefetch_span_w.inspect_asm().values()))
    assert re.search(r"^\s+(prefetch(t0|t1|t2|nta|w)|prfm)\b", asm, re.M)  # an instruction, not a symbol name


def test_prefetch_rejects_an_index_of_the_wrong_rank_or_type():
    @nb.njit
    def wrong_rank(a):
        prefetch(a, (0,))

    @nb.njit
    def float_index(a):
        prefetch(a, (1.5, 0))

    for fn in (wrong_rank, float_index):
        with pytest.raises(nb.core.errors.TypingError):
            fn(np.zeros((2, 2), np.float32))
