"""numpy emulation of scan_cuda's dt_tile fragment indexing against dt_low @ W_dt^T.

PTX mma.m16n8k16 layouts: A rows grp / grp+8, columns 2 tig (+8); B rows 2 tig (+8), column grp;
D (grp, 2 tig), (grp+8, 2 tig). W_dt is split into two bf16 terms as the kernel does.
python bench/experiments/mma_dt_emu.py
"""

import numpy as np

rng = np.random.default_rng(0)
TT, RK, CH = 16, 16, 128
KB = RK // 16


def bf16(x):  # round to nearest even, as fromf
    b = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    b = (b + 0x7FFF + ((b >> 16) & 1)) & 0xFFFF0000
    return b.astype(np.uint32).view(np.float32)


xs = bf16(rng.standard_normal((TT, RK + 32)).astype(np.float32))  # staged row: dt_low | B | C (bf16 values)
W = rng.standard_normal((CH, RK)).astype(np.float32)
dts = np.full((TT, CH + 8), np.nan, np.float32)
for warp in range(CH // 32):
    wc0 = warp * 32
    # fragments per lane
    A = {}
    Bh = {}
    Bl = {}
    for lane in range(32):
        grp, tig = lane >> 2, lane & 3
        for kb in range(KB):
            k0 = kb * 16 + 2 * tig
            A[lane, kb] = [
                (xs[grp, k0], xs[grp, k0 + 1]),
                (xs[grp + 8, k0], xs[grp + 8, k0 + 1]),
                (xs[grp, k0 + 8], xs[grp, k0 + 9]),
                (xs[grp + 8, k0 + 8], xs[grp + 8, k0 + 9]),
            ]
            for nb in range(4):
                for j in range(2):
                    wp = W[wc0 + nb * 8 + grp, kb * 16 + 2 * tig + 8 * j : kb * 16 + 2 * tig + 8 * j + 2]
                    h = bf16(wp)
                    lo = bf16(wp - h)
                    Bh[lane, kb, nb, j] = tuple(h)
                    Bl[lane, kb, nb, j] = tuple(lo)
    # mma semantics: rebuild the matrices from the fragments (documented layouts), multiply
    acc = np.zeros((32, 4, 4), np.float64)
    for kb in range(KB):
        Am = np.zeros((16, 16))
        for lane in range(32):
            grp, tig = lane >> 2, lane & 3
            r = A[lane, kb]
            Am[grp, 2 * tig : 2 * tig + 2] = r[0]
            Am[grp + 8, 2 * tig : 2 * tig + 2] = r[1]
            Am[grp, 2 * tig + 8 : 2 * tig + 10] = r[2]
            Am[grp + 8, 2 * tig + 8 : 2 * tig + 10] = r[3]
        for nb in range(4):
            for Bs in (Bl, Bh):
                Bm = np.zeros((16, 8))
                for lane in range(32):
                    grp, tig = lane >> 2, lane & 3
                    Bm[2 * tig : 2 * tig + 2, grp] = Bs[lane, kb, nb, 0]
                    Bm[2 * tig + 8 : 2 * tig + 10, grp] = Bs[lane, kb, nb, 1]
                D = Am @ Bm
                for lane in range(32):
                    grp, tig = lane >> 2, lane & 3
                    acc[lane, nb] += [
                        D[grp, 2 * tig],
                        D[grp, 2 * tig + 1],
                        D[grp + 8, 2 * tig],
                        D[grp + 8, 2 * tig + 1],
                    ]
    for lane in range(32):
        grp, tig = lane >> 2, lane & 3
        for nb in range(4):
            c = wc0 + nb * 8 + 2 * tig
            dts[grp, c : c + 2] = acc[lane, nb, :2]
            dts[grp + 8, c : c + 2] = acc[lane, nb, 2:]
want = xs[:, :RK].astype(np.float64) @ W.T.astype(np.float64)
got = dts[:, :CH]
err = np.abs(got - want).max() / np.abs(want).max()
print(f"max error relative to max |dt|: {err:.2e} (float64 sums: the split of W_dt only)")
assert not np.isnan(got).any() and err < 1e-5, "fragment indexing or the W_dt split is wrong"
