"""The time-parallel scan's algorithm (``scan_timepar.py``) in numpy, float64, one channel, on the CPU.

    python bench/experiments/scan_timepar_emu.py

Mirrors the kernel step by step (segments of 32 * IT positions, the slot permutation of the staged
B / C rows, each lane's run folded from zero, the 5-step inclusive shuffle scan, the carry in lane
n) and compares y with a plain sequential scan. Checks the indexing and the algebra, not the CUDA.
"""

from __future__ import annotations

import numpy as np

IT, NS = 8, 16
SEG = 32 * IT


def slot(p: int) -> int:
    lane, i = divmod(p, IT)
    return ((i >> 2) * 32 + lane) * 4 + (i & 3)


def unslot(s: int) -> int:
    return ((s >> 2) & 31) * IT + (s >> 7) * 4 + (s & 3)


def plain(dt, x, B, C, a2):
    h, y = np.zeros(NS), np.zeros(len(dt))
    for t in range(len(dt)):
        h = np.exp2(dt[t] * a2) * h + dt[t] * x[t] * B[t]
        y[t] = C[t] @ h
    return y


def shuffle_up(v: np.ndarray, off: int) -> np.ndarray:
    return np.concatenate([v[:off], v[:-off]])  # lanes below off keep their own value


def time_parallel(dt, x, B, C, a2):
    L = len(dt)
    y, carry = np.zeros(L), np.zeros(NS)
    lanes = np.arange(32)
    for s0 in range(0, L, SEG):
        staged = np.zeros((2, NS, SEG))  # B, C rows, positions in slot order (as thread v stages slot v)
        for s in range(SEG):
            q = s0 + unslot(s)
            if q < L:
                staged[0, :, s], staged[1, :, s] = B[q], C[q]
        q = s0 + lanes[:, None] * IT + np.arange(IT)[None, :]  # (32, IT) walk positions
        ok = q < L
        dtl, xl = np.where(ok, dt[np.minimum(q, L - 1)], 0.0), np.where(ok, x[np.minimum(q, L - 1)], 0.0)
        reads = np.array([[(qd * 32 + lane) * 4 + e for qd in range(IT // 4) for e in range(4)] for lane in lanes])
        acc = np.zeros((32, IT))
        for n in range(NS):
            Bl, Cl = staged[0, n][reads], staged[1, n][reads]  # (32, IT): the lanes' float4 reads
            dA, bx = np.exp2(dtl * a2[n]), Bl * dtl * xl
            H = np.zeros(32)
            for i in range(IT):
                H = dA[:, i] * H + bx[:, i]
            P = np.exp2(a2[n] * dtl.sum(1))
            off = 1
            while off < 32:
                on = lanes >= off
                H, P = np.where(on, P * shuffle_up(H, off) + H, H), np.where(on, P * shuffle_up(P, off), P)
                off *= 2
            c = carry[n]
            h = np.concatenate([[1.0], P[:-1]]) * c + np.concatenate([[0.0], H[:-1]])
            carry[n] = P[31] * c + H[31]
            for i in range(IT):
                h = dA[:, i] * h + bx[:, i]
                acc[:, i] += Cl[:, i] * h
        y[q[ok]] = acc[ok]
    return y


def main() -> None:
    assert all(slot(unslot(s)) == s for s in range(SEG))
    rng = np.random.default_rng(0)
    for L in (5, 77, 513, 1000, 4096):
        dt, x = rng.uniform(0.001, 0.3, L), rng.normal(size=L)
        B, C = rng.normal(size=(L, NS)), rng.normal(size=(L, NS))
        a2 = -np.arange(1, NS + 1) * np.exp(0.3 * rng.normal(size=NS)) * np.log2(np.e)
        want = plain(dt, x, B, C, a2)
        err = np.abs(time_parallel(dt, x, B, C, a2) - want).max() / np.abs(want).max()
        print(f"L={L}: max relative difference {err:.1e}")
        assert err < 1e-12


if __name__ == "__main__":
    main()
