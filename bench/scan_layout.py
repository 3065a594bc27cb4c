"""Selective-scan kernel time vs input layout and the number of calls the batch is split into, GPU only.

    python bench/scan_layout.py
u, delta, z: (B, 512, 1024) bf16, channel-major views of (512, B*1024) (what the model passes) or
contiguous (what the reference passes); B, C: (B, 1, 16, 1024) contiguous. Median of 20 (CUDA events).
"""

import statistics

import torch
from mamba_ssm.ops.selective_scan_interface import selective_scan_fn


def make(b, d, L, n, channel_major):
    g = torch.Generator(device="cuda").manual_seed(0)

    def t(shape):
        return torch.randn(*shape, device="cuda", generator=g, dtype=torch.bfloat16)

    if channel_major:
        u, delta, z = (t((d, b * L)).view(d, b, L).permute(1, 0, 2) for _ in range(3))
    else:
        u, delta, z = (t((b, d, L)) for _ in range(3))
    B, C = t((b, 1, n, L)), t((b, 1, n, L))
    A = -torch.rand(d, n, device="cuda") - 0.5
    D = torch.ones(d, device="cuda")
    bias = torch.rand(d, device="cuda") - 4
    return u, delta * 0.1, A, B, C, D, z, bias


def timed(fn, reps=20):
    for _ in range(3):
        fn()
    ts = []
    for _ in range(reps):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        torch.cuda.synchronize()
        ts.append(s.elapsed_time(e))
    return statistics.median(ts)


def split_call(a, parts):
    b = a[0].shape[0]
    step = b // parts
    for i in range(parts):
        sl = slice(i * step, (i + 1) * step)
        selective_scan_fn(
            a[0][sl], a[1][sl], a[2], a[3][sl], a[4][sl], a[5], z=a[6][sl], delta_bias=a[7], delta_softplus=True
        )


d, n = 512, 16
for b, L, splits in [(512, 1024, (1, 2, 4, 8)), (256, 1024, (1, 2, 4)), (2, 131072, (1, 2))]:
    for cm in (True, False):
        args = make(b, d, L, n, cm)
        res = "  ".join(f"{k} call(s): {timed(lambda a=args, k=k: split_call(a, k)):.3f} ms" for k in splits)
        print(f"batch {b:>3} x L {L:>6} {'channel-major' if cm else 'contiguous':>14}: {res}")
