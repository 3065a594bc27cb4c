"""Software prefetch for numba kernels: ask for the cache line of an array element ahead of its use.

The CPU kernels walk rows of token-major arrays (tens of MB, far beyond L2) at a fixed stride: the
scan reads one 512-byte channel block per position from rows 1-2 KiB apart, and the conv reads one
new row and writes one per position and direction. On a 2-core AMD EPYC (Zen 3) VM, sampling the
kernels with ``perf`` put a quarter of the scan's time and most of the conv's on the loads of the
next row: the hardware prefetchers did not run ahead of these strides. Prefetching the rows a few
positions ahead took a sixth off the scan's time there and a tenth to a fifth off the conv's
(``bench/bench_cpu_kernels.py``, same bits). The block boundary (rows read once, in order) gained
nothing measurable and has none.

``prefetch(ary, idx)`` / ``prefetch_w(ary, idx)``: ``llvm.prefetch`` of the element ``ary[idx]``
(``idx`` a tuple with one integer per dimension, not wrapped, not bounds-checked: the address is
only a hint, and a prefetch of any address never faults), for reading / for writing, kept in all
cache levels. Hints only: no value a kernel computes depends on them.

As with ``vmath_numba``: numba's on-disk cache keys a kernel on its own file, so after editing this
one, touch ``mixer_numba.py`` (or clear its cached entries).
"""

from __future__ import annotations

try:
    from llvmlite import ir
    from numba.core import cgutils, types
    from numba.extending import intrinsic
except ImportError:  # pragma: no cover - numba is a declared dependency
    intrinsic = None

LINE_FLOATS = 16  # float32 elements per 64-byte cache line


def _prefetch_intrinsic(write: int):
    def typer(typingctx, ary, idx):  # pragma: no cover - compile time
        if not isinstance(ary, types.Array) or not isinstance(idx, types.BaseTuple) or len(idx) != ary.ndim:
            return None
        if not all(isinstance(t, types.Integer) for t in idx):
            return None
        sig = types.none(ary, idx)

        def codegen(context, builder, signature, args):
            aryty, idxty = signature.args
            array = context.make_array(aryty)(context, builder, args[0])
            indices = [
                context.cast(builder, value, ty, types.intp)
                for value, ty in zip(cgutils.unpack_tuple(builder, args[1]), idxty, strict=True)
            ]
            ptr = cgutils.get_item_pointer(context, builder, aryty, array, indices, wraparound=False)
            i8p = ir.IntType(8).as_pointer()
            i32 = ir.IntType(32)
            fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
            fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0i8")
            # (address, 0 read / 1 write, locality 3 = keep in all levels, 1 = data cache)
            builder.call(
                fn, [builder.bitcast(ptr, i8p), ir.Constant(i32, write), ir.Constant(i32, 3), ir.Constant(i32, 1)]
            )
            return context.get_dummy_value()

        return sig, codegen

    typer.__name__ = "prefetch_w" if write else "prefetch"
    return intrinsic(typer)


if intrinsic is not None:
    prefetch = _prefetch_intrinsic(0)
    prefetch_w = _prefetch_intrinsic(1)

    import numba as nb

    @nb.njit(cache=True)
    def prefetch_span(row, lo, hi):  # pragma: no cover - compiled
        """Prefetch ``row[lo:hi]`` (a 1-D array, e.g. one row of a token-major array) for reading: one
        hint per cache line."""
        for c in range(lo, hi, LINE_FLOATS):
            prefetch(row, (c,))
        prefetch(row, (hi - 1,))  # the last line, when the span does not start on a line

    @nb.njit(cache=True)
    def prefetch_span_w(row, lo, hi):  # pragma: no cover - compiled
        """``prefetch_span`` for writing (the lines are fetched for ownership)."""
        for c in range(lo, hi, LINE_FLOATS):
            prefetch_w(row, (c,))
        prefetch_w(row, (hi - 1,))
