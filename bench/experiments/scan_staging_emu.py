"""CPU check of the index arithmetic of the fixed-role scan staging (``scan_staging_dbatch.patch``).

    python bench/experiments/scan_staging_emu.py

The patch rewrites how ``scan_chunk`` (``caduceus_cli/kernels/scan_cuda.py``) stages its tiles: each
thread keeps the same rows and channels for the whole chunk, and a tile's xdbl rows go as 16-byte
vectors. It compiles (nvcc sm_90, every define combination the scan takes) but had no GPU run when it
was written, so this script replays the new per-thread index formulas in Python for every thread of
a block, over blocks, chunks, tiles, both walks, bf16 and float32, and asserts that every shared-memory
element is written exactly once per tile from the token and channel the plain mapping gives (the
old code's ``at(tb + r)``), that rows past the chunk's end are skipped (u, z, y_f, delta, y) or zeroed
(xdbl), and that the deltas the state pass writes land at the right token. Index maths only: no values.
"""

from __future__ import annotations

import itertools

import numpy as np


def check(ch: int, esz: int, tt: int, rk: int, ns: int, din: bool, length: int, chunk: int, rev: bool, b: int) -> int:
    vec = 16 // esz
    vpr = ch // vec
    xw = rk + 2 * ns
    xo = rk if din else 0
    xs_cols = xw - xo
    xv = xw % vec == 0 and xo % vec == 0
    xsv = xs_cols // vec
    xpv = -(-tt * xsv // ch)
    row0 = b * length

    def at(q: int) -> int:  # the kernel's walk position -> token index
        return row0 + (length - 1 - q if rev else q)

    checked = 0
    for k in range(-(-length // chunk)):
        t0, t1 = k * chunk, min(length, k * chunk + chunk)
        tok0, sg = at(t0), (-1 if rev else 1)

        def tok(s: int, tok0: int = tok0, sg: int = sg) -> int:
            return tok0 + sg * s

        ntiles = -(-(t1 - t0) // tt)
        dout_tok = tok0  # the state pass's delta pointer, as a token index (advanced by rows per tile)
        for it in range(ntiles):
            sb = it * tt
            rows = min(tt, t1 - (t0 + sb))
            u_tile = np.full((tt, ch), -1, dtype=np.int64)  # token each (row, channel) was staged from
            d_tile = np.full((tt, ch), -1, dtype=np.int64)
            x_tile = np.full((tt, xs_cols), -2, dtype=np.int64)  # token * xw + column, or -1 for a zero
            y_out = {}
            for tid in range(ch):
                ur, dr = tid // vpr, tid // (ch // 4)
                uc, dc = (tid - ur * vpr) * vec, (tid - dr * (ch // 4)) * 4
                for j in range(tt // vec):  # issue_uz: u (z and y_f alike) and the y write-out
                    r = ur + j * vec
                    if r < rows:
                        src = tok(sb + r)
                        assert (u_tile[r, uc : uc + vec] == -1).all()
                        u_tile[r, uc : uc + vec] = src
                        y_out[(r, uc)] = src
                if din:
                    for j in range(tt // 4):
                        r = dr + 4 * j
                        if r < rows:
                            assert (d_tile[r, dc : dc + 4] == -1).all()
                            d_tile[r, dc : dc + 4] = tok(sb + r)
                if xv:  # load_x + store_x, vectors
                    for j in range(xpv):
                        v = tid + j * ch
                        if v < tt * xsv:
                            r = v // xsv
                            c = (v - r * xsv) * vec
                            assert (x_tile[r, c : c + vec] == -2).all()
                            x_tile[r, c : c + vec] = (
                                [tok(sb + r) * xw + xo + c + e for e in range(vec)] if r < rows else -1
                            )
                else:
                    for j in range(-(-tt * xs_cols // ch)):
                        e = tid + j * ch
                        if e < tt * xs_cols:
                            r, c = e // xs_cols, e % xs_cols
                            assert x_tile[r, c] == -2
                            x_tile[r, c] = tok(sb + r) * xw + xo + c if r < rows else -1
            for r in range(tt):  # what the plain mapping gives
                want = at(t0 + sb + r) if r < rows else -1
                assert (u_tile[r] == want).all(), (k, it, r)
                assert not din or (d_tile[r] == want).all()
                want_x = [want * xw + xo + c for c in range(xs_cols)] if r < rows else [-1] * xs_cols
                assert (x_tile[r] == want_x).all(), (k, it, r, x_tile[r], want_x)
            assert len(y_out) == rows * vpr and all(y_out[(r, c)] == at(t0 + sb + r) for r, c in y_out)
            for t in range(rows):  # the state pass's deltas: dout[t * dstep] with dstep = +-d
                assert dout_tok + sg * t == at(t0 + sb + t)
            dout_tok += sg * rows
            checked += 1
    return checked


def main() -> None:
    total = 0
    for (ch, rk), esz, din, rev, (length, chunk) in itertools.product(
        [(128, 16), (128, 8), (64, 4), (32, 6)],
        [2, 4],
        [False, True],
        [False, True],
        [(77, 77), (300, 32), (1000, 64), (4096, 256), (131, 48)],
    ):
        tt = 16 if esz == 2 else 8
        if chunk < length and chunk % tt:
            continue
        total += check(ch, esz, tt, rk, 16, din, length, chunk, rev, b=1)
    print(f"all {total} tiles staged as the plain mapping stages them")


if __name__ == "__main__":
    main()
