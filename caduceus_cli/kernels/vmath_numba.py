"""float32 maths for numba kernels that LLVM can vectorise: fma, exp, exp2, softplus, SiLU.

numba has no vector maths library here (no SVML), so ``math.exp`` in a loop is a scalar libm call
per element and keeps the loop scalar. These helpers are plain float32 arithmetic on three LLVM
intrinsics (``llvm.fma``, an int-to-float bit cast, and a function attribute), so a loop over
channels that calls them compiles to AVX-512 / AVX2 code. Accuracy (float32 inputs):

- ``exp2_neg(y)``: 2**y for y <= 0, within 1 ulp for y >= -126 (y < -126 gives 2**-126, not 0).
- ``fexp(x)``: exp(x) within 1 ulp on [-87.3, 88.3]; inputs are clamped to it (no inf, no denormals).
- ``softplus(x)``: log(1 + exp(x)) within 2.5e-7 relative for x > -80 (torch's: 1.2e-7).
- ``silu(x)``: x / (1 + exp(-x)) within 3 ulp.

Determinism: kernels compile with ``FASTMATH`` (no 'reassoc', no 'contract'): LLVM may neither
reorder these operations nor fuse a multiply and an add on its own, so the bits follow the source
order, whether a kernel was just compiled or loaded from numba's cache, vectorised or scalar.
``fma`` is an explicit fused multiply-add (one rounding, as IEEE 754 defines it): it gives the same
bits everywhere, unlike contraction left to the optimiser.

numba's on-disk cache keys each kernel on its own source file only: after editing this file, delete
the cached ``mixer_numba`` / ``addnorm_numba`` entries in ``kernels/__pycache__`` (or touch those
files), or they keep the old inlined maths.
"""

from __future__ import annotations

import logging

import numpy as np

try:
    import numba as nb
    from llvmlite import ir
    from numba.core import types
    from numba.extending import intrinsic
except ImportError:  # pragma: no cover - numba is a declared dependency
    nb = None

log = logging.getLogger(__name__)

# no 'reassoc' / 'contract': see the module docstring
FASTMATH = {"nnan", "ninf", "nsz"}

# 2**f on [-1/2, 1/2], degree 6, fitted for relative error (2e-9 in exact arithmetic)
_P2 = (
    0.00015353360504377633,
    0.0013398875016719103,
    0.00961843691766262,
    0.055503323674201965,
    0.24022647738456726,
    0.6931471824645996,
)
LOG2E = 1.4426950408889634

if nb is not None:

    @intrinsic
    def fma(typingctx, a, b, c):  # pragma: no cover - compile time
        """a * b + c with one rounding (``llvm.fma.f32``)."""
        sig = types.float32(types.float32, types.float32, types.float32)

        def codegen(context, builder, signature, args):
            return builder.fma(*args)

        return sig, codegen

    @intrinsic
    def _bits_to_f32(typingctx, x):  # pragma: no cover - compile time
        """Reinterpret an int32's bits as a float32 (no conversion)."""
        sig = types.float32(types.int32)

        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir.FloatType())

        return sig, codegen

    @intrinsic
    def _f32_to_bits(typingctx, x):  # pragma: no cover - compile time
        """Reinterpret a float32's bits as an int32 (no conversion)."""
        sig = types.int32(types.float32)

        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir.IntType(32))

        return sig, codegen

    @intrinsic
    def prefer_512_bit_vectors(typingctx):  # pragma: no cover - compile time
        """Let LLVM vectorise the calling function with 512-bit vectors where the CPU has them.

        LLVM caps auto-vectorisation at 256 bits on most AVX-512 CPUs; the scan runs 2-2.5x faster
        with 512 (measured, bench/README.md). Same bits either way (lane-wise operations, no
        reassociation). llvmlite only lists a fixed set of attribute names, hence ``set.add``.
        """
        sig = types.none()

        def codegen(context, builder, signature, args):
            try:
                set.add(builder.function.attributes, '"prefer-vector-width"="512"')
            except Exception as exc:  # an llvmlite without a set-based attribute list: keep the default
                log.debug("prefer-vector-width not set: %s", exc)
            return context.get_dummy_value()

        return sig, codegen

    @nb.njit(fastmath=FASTMATH, error_model="numpy", cache=True)
    def exp2_neg(y):  # pragma: no cover - compiled
        """2**y for y <= 0: y = k + f, k = round(y), |f| <= 1/2; 2**f by polynomial, 2**k by bits.

        t = y + (1.5 * 2**23 + 127) rounds y to the integer k in t's low mantissa bits (offset by the
        exponent bias); t's bits shifted left by 23 are those of the float 2**k.
        """
        y = max(y, np.float32(-126.0))
        t = y + np.float32(12583039.0)
        f = y - (t - np.float32(12583039.0))
        p = np.float32(_P2[0])
        p = fma(p, f, np.float32(_P2[1]))
        p = fma(p, f, np.float32(_P2[2]))
        p = fma(p, f, np.float32(_P2[3]))
        p = fma(p, f, np.float32(_P2[4]))
        p = fma(p, f, np.float32(_P2[5]))
        p = fma(p, f, np.float32(1.0))
        return p * _bits_to_f32(_f32_to_bits(t) << 23)

    @nb.njit(fastmath=FASTMATH, error_model="numpy", cache=True)
    def fexp(x):  # pragma: no cover - compiled
        """exp(x) = 2**k e**r, k = round(x / ln2), r = x - k ln2 (two-part ln2), |r| <= ln2 / 2 (Cephes expf)."""
        x = min(max(x, np.float32(-87.3)), np.float32(88.3))
        k = np.rint(x * np.float32(LOG2E))
        r = fma(k, np.float32(-0.693359375), x)
        r = fma(k, np.float32(2.12194440e-4), r)
        p = np.float32(1.9875691500e-4)
        p = fma(p, r, np.float32(1.3981999507e-3))
        p = fma(p, r, np.float32(8.3334519073e-3))
        p = fma(p, r, np.float32(4.1665795894e-2))
        p = fma(p, r, np.float32(1.6666665459e-1))
        p = fma(p, r, np.float32(5.0000001201e-1))
        p = fma(p, r * r, r) + np.float32(1.0)
        return p * _bits_to_f32((np.int32(k) + np.int32(127)) << 23)

    @nb.njit(fastmath=FASTMATH, error_model="numpy", cache=True)
    def softplus(x):  # pragma: no cover - compiled
        """log(1 + exp(x)) = max(x, 0) + log1p(v), v = exp(-|x|) in (0, 1].

        log1p(v) = 2 atanh(s), s = v / (2 + v) in (0, 1/3]: the odd series to s**15 (truncation
        < 2e-8 relative); accurate for tiny v too, with no exponent extraction.
        """
        v = fexp(-abs(x))
        s = v / (np.float32(2.0) + v)
        s2 = s * s
        q = np.float32(1.0 / 15.0)
        q = fma(q, s2, np.float32(1.0 / 13.0))
        q = fma(q, s2, np.float32(1.0 / 11.0))
        q = fma(q, s2, np.float32(1.0 / 9.0))
        q = fma(q, s2, np.float32(1.0 / 7.0))
        q = fma(q, s2, np.float32(1.0 / 5.0))
        q = fma(q, s2, np.float32(1.0 / 3.0))
        q = fma(q, s2, np.float32(1.0))
        return max(x, np.float32(0.0)) + np.float32(2.0) * s * q

    @nb.njit(fastmath=FASTMATH, error_model="numpy", cache=True)
    def silu(x):  # pragma: no cover - compiled
        """x * sigmoid(x) = x / (1 + exp(-x))."""
        return x / (np.float32(1.0) + fexp(-x))
