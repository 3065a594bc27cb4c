"""The CPU forward of the README quick start, whole and kernel by kernel, optionally against another tree.

The quick start (``score-vcf`` on the shipped example) spends its forwards on batches of 8 windows
of 1,024 bp through the shipped model (Caduceus-PS d128 x 4): each BiMamba call has 16 mixer rows
of 1,024 tokens (8 windows x 2 RC strands). This script runs that forward on 8 real windows of the
example FASTA, records the arguments of every numba kernel call and every GEMM inside it, and then
times, on those very arguments: the whole forward, the conv, the scan, the block boundary and the
four GEMMs of a layer. Each figure is the minimum and the median over ``--rounds`` rounds after a
warm-up; a sha1 of each output (the forward's logits, each kernel's output buffer) tells whether
two trees compute the same bits.

``--base DIR``: a second checkout (e.g. ``git worktree add /tmp/base HEAD~1``). Child processes
alternate between this tree and DIR (``--procs`` each), so machine load hits both alike; the table
gives each tree's best minimum and median of medians and whether all hashes agree.

    python bench/bench_cpu_kernels.py --threads 2 --rounds 9 --base /tmp/base --procs 3 \\
        --out bench/results/cpu_kernels_ab.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
WINDOWS, LENGTH = 8, 1_024


def _child(tree: Path, threads: int, rounds: int) -> dict:
    sys.path.insert(0, str(tree))
    import numpy as np
    import pysam
    import torch

    from caduceus_cli.kernels import addnorm_numba, mixer_numba
    from caduceus_cli.model.loading import load_model
    from caduceus_cli.tokenizer import encode

    torch.set_num_threads(threads)
    import numba

    numba.set_num_threads(threads)
    model = load_model(None).eval()
    with pysam.FastaFile(str(tree / "examples" / "chr22_slice.fa.gz")) as fa:
        name = fa.references[0]
        starts = np.linspace(0, fa.get_reference_length(name) - LENGTH - 1, WINDOWS + 2).astype(int)[1:-1]
        ids = np.stack([encode(fa.fetch(name, int(s), int(s) + LENGTH).upper()) for s in starts])
    batch = torch.from_numpy(ids).long()  # (8, 1024)

    calls: dict[str, tuple] = {}  # the first call of each kernel: its arguments, arrays copied
    mms: list[tuple[torch.Tensor, torch.Tensor]] = []

    def copy(a):
        if isinstance(a, np.ndarray):
            return a.copy()
        if isinstance(a, tuple):
            return tuple(copy(x) for x in a)
        return a

    def recorder(name_, fn):
        def wrapped(*args):
            calls.setdefault(name_, copy(args))
            return fn(*args)

        return wrapped

    real = {"conv": mixer_numba._conv_kernel, "scan": mixer_numba._scan_kernel}
    mixer_numba._conv_kernel = recorder("conv", real["conv"])
    mixer_numba._scan_kernel = recorder("scan", real["scan"])
    boundary = addnorm_numba._boundary_kernel
    addnorm_numba._boundary_kernel = recorder("boundary", boundary)
    torch_mm = torch.mm

    def mm(a, b, out=None):
        if len(mms) < 4:
            mms.append((a.clone(), b.clone()))
        return torch_mm(a, b, out=out)

    torch.mm = mm
    with torch.inference_mode():
        model(batch)  # warm-up (numba compile or cache load) and the recording
    torch.mm = torch_mm
    mixer_numba._conv_kernel, mixer_numba._scan_kernel = real["conv"], real["scan"]
    addnorm_numba._boundary_kernel = boundary

    def sha(*arrays) -> str:
        h = hashlib.sha1()
        for a in arrays:
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()[:16]

    conv_args, scan_args, bnd_args = calls["conv"], calls["scan"], calls["boundary"]
    gemm_names = ["in_proj", "x_proj_fwd", "x_proj_rev", "out_proj"]
    work: dict[str, tuple] = {}
    logits = {}

    def forward():  # called under inference_mode below
        logits["x"] = model(batch).logits

    work["forward"] = (forward, lambda: sha(logits["x"].numpy()))
    work["conv"] = (lambda: real["conv"](*conv_args), lambda: sha(conv_args[4]))
    xz0 = scan_args[1].copy()  # the scan overwrites z (columns [di, 2 di) of xz) with silu(z)
    prep = {"scan": lambda: np.copyto(scan_args[1], xz0)}  # every scan call sees the same inputs

    def scan_hash() -> str:
        prep["scan"]()
        real["scan"](*scan_args)
        return sha(scan_args[8])

    work["scan"] = (lambda: real["scan"](*scan_args), scan_hash)
    bnd_out = bnd_args[15] if bnd_args[12] else bnd_args[14]  # normed_out if final, else X (the other is a stub)
    work["boundary"] = (lambda: boundary(*bnd_args), lambda: sha(bnd_args[13], bnd_out))
    for gname, (a, b) in zip(gemm_names, mms, strict=True):
        res = torch.empty(a.shape[0], b.shape[1])
        work[gname] = (lambda a=a, b=b, res=res: torch_mm(a, b, out=res), lambda res=res: sha(res.numpy()))
    times: dict[str, list[float]] = {k: [] for k in work}
    with torch.inference_mode():
        for fn, _ in work.values():
            fn()
        for _ in range(rounds):
            for k, (fn, _) in work.items():
                if k in prep:
                    prep[k]()
                t0 = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t0)
    return {
        "tree": str(tree),
        "times_s": times,
        "sha1": {k: h() for k, (_, h) in work.items()},
        "shapes": {g: [list(a.shape), list(b.shape)] for g, (a, b) in zip(gemm_names, mms, strict=True)},
    }


def _spawn(tree: Path, args: argparse.Namespace) -> dict:
    cmd = [
        sys.executable,
        str(HERE),
        "--child",
        str(tree),
        "--threads",
        str(args.threads),
        "--rounds",
        str(args.rounds),
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--base", type=Path, help="another checkout to compare against, alternating processes")
    ap.add_argument("--procs", type=int, default=3, help="child processes per tree")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.threads, args.rounds)))
        return
    trees = {"this": HERE.parents[1]} | ({"base": args.base.resolve()} if args.base else {})
    runs: dict[str, list[dict]] = {k: [] for k in trees}
    for _ in range(args.procs):
        for key, tree in trees.items():
            runs[key].append(_spawn(tree, args))
    kernels = list(runs["this"][0]["times_s"])
    table = {}
    for k in kernels:
        row = {}
        for key in trees:
            mins = [min(r["times_s"][k]) for r in runs[key]]
            meds = [statistics.median(r["times_s"][k]) for r in runs[key]]
            row[key] = {"min_ms": 1e3 * min(mins), "median_ms": 1e3 * statistics.median(meds)}
        if "base" in trees:
            hashes = {r["sha1"][k] for key in trees for r in runs[key]}
            row["same_bits"] = len(hashes) == 1
            row["base_over_this"] = row["base"]["median_ms"] / row["this"]["median_ms"]
        table[k] = row
    head = (
        f"| kernel | this min / median ms | {'base min / median ms | base / this | same bits |' if args.base else ''}"
    )
    print(head)
    print("|---" * (head.count("|") - 1) + "|")
    for k, row in table.items():
        line = f"| {k} | {row['this']['min_ms']:.2f} / {row['this']['median_ms']:.2f} |"
        if args.base:
            line += f" {row['base']['min_ms']:.2f} / {row['base']['median_ms']:.2f} | {row['base_over_this']:.2f}x |"
            line += f" {'yes' if row['same_bits'] else 'NO'} |"
        print(line)
    if args.out:
        meta = {
            "machine": platform.processor() or platform.machine(),
            "cpu": _cpu_name(),
            "load_avg": os.getloadavg(),
            "threads": args.threads,
            "rounds": args.rounds,
            "procs": args.procs,
            "shapes": runs["this"][0]["shapes"],
        }
        args.out.write_text(json.dumps({"meta": meta, "table": table, "runs": runs}, indent=1))


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()
