"""The README quick start, timed end to end and by phase, alternating this tree with another checkout.

Each run is a fresh process doing what ``caduceus score-vcf examples/chr22_example.vcf.gz --ref
examples/chr22_slice.fa.gz -o scored.vcf.gz`` does, with the package imported from the tree under
test (``python -m`` would import the one in the working directory whatever ``PYTHONPATH`` says,
so the runs go through ``caduceus_cli.cli.app.main`` with the tree first on ``sys.path``). Phases:
start-up (process start to the first model forward), the forwards (their summed time), and exit
(from ``atexit`` to the process's end, measured by this parent), and the cyclic collector's
collections before exit (``gc.callbacks``: their number and summed time). The outputs of the two trees are
compared as decompressed text without the ``##caduceus`` header lines (command line, version).

    git worktree add /tmp/base <commit>     # or: git archive <commit> | tar -x -C /tmp/base
    python bench/ab_quickstart.py --base /tmp/base --runs 5 --out bench/results/quickstart_ab.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()

# Runs in the child: the tree first on sys.path, forwards timed, phases written at exit.
CHILD = r"""
import atexit, json, os, sys, time
tree, out, phases = sys.argv[1:4]
sys.path.insert(0, tree)
with open("/proc/self/stat") as f:
    start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
with open("/proc/uptime") as f:
    uptime = float(f.read().split()[0])
started = time.time() - (uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
import caduceus_cli.model.caduceus as mc
forward = mc.CaduceusForMaskedLM.forward
marks = {"forward_s": 0.0, "forwards": 0}
def timed(self, *a, **k):
    t = time.time()
    marks.setdefault("first_forward", t)
    try:
        return forward(self, *a, **k)
    finally:
        marks["forward_s"] += time.time() - t
        marks["forwards"] += 1
mc.CaduceusForMaskedLM.forward = timed
import gc
marks["collections"], marks["gc_s"] = 0, 0.0
def collected(phase, info, t=[0.0]):
    if phase == "start":
        t[0] = time.perf_counter()
    else:
        marks["collections"] += 1
        marks["gc_s"] += time.perf_counter() - t[0]
gc.callbacks.append(collected)
def done():
    marks["atexit"] = time.time()
    marks["started"] = started
    with open(phases, "w") as f:
        json.dump(marks, f)
atexit.register(done)
ex = os.path.join(tree, "examples")
sys.argv = ["caduceus", "score-vcf", os.path.join(ex, "chr22_example.vcf.gz"), "--ref",
            os.path.join(ex, "chr22_slice.fa.gz"), "-o", out]
from caduceus_cli.cli.app import main
main()
"""


def _run(tree: Path, work: Path, tag: str) -> dict:
    out, phases = work / f"{tag}.vcf.gz", work / f"{tag}.json"
    before = os.times()
    t0 = time.time()
    subprocess.run(
        [sys.executable, "-c", CHILD, str(tree), str(out), str(phases)],
        check=True,
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ended = time.time()
    after = os.times()
    m = json.loads(phases.read_text())
    text = gzip.decompress(out.read_bytes()).decode()
    body = "\n".join(line for line in text.splitlines() if not line.startswith("##caduceus"))
    return {
        "wall_s": ended - t0,
        "cpu_s": (after.children_user - before.children_user) + (after.children_system - before.children_system),
        "startup_s": m["first_forward"] - m["started"],
        "forward_s": m["forward_s"],
        "forwards": m["forwards"],
        "exit_s": ended - m["atexit"],
        "gc_s": m["gc_s"],
        "collections": m["collections"],
        "total_s": ended - m["started"],
        "output": body,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", type=Path, required=True, help="the other checkout")
    ap.add_argument("--runs", type=int, default=5, help="runs per tree, alternating")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    trees = {"this": HERE.parents[1], "base": args.base.resolve()}
    runs: dict[str, list[dict]] = {k: [] for k in trees}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            for key, tree in trees.items():
                runs[key].append(_run(tree, Path(tmp), f"{key}{i}"))
                print(f"{key} run {i + 1}: {runs[key][-1]['total_s']:.2f} s", file=sys.stderr)
    same = len({r.pop("output") for rs in runs.values() for r in rs}) == 1
    fields = ["total_s", "startup_s", "forward_s", "exit_s", "gc_s", "collections", "cpu_s"]
    summary = {
        key: {f: {"min": min(r[f] for r in rs), "median": statistics.median(r[f] for r in rs)} for f in fields}
        for key, rs in runs.items()
    }
    print("| tree | total s | start-up s | forwards s | exit s | GC s (in the run) | collections | CPU s |")
    print("|---|---|---|---|---|---|---|---|")
    for key in trees:
        cells = " | ".join(f"{summary[key][f]['median']:.2f} ({summary[key][f]['min']:.2f})" for f in fields)
        print(f"| {key} | {cells} |")
    print(f"medians (minima); outputs identical: {'yes' if same else 'NO'}")
    if args.out:
        meta = {"load_avg": os.getloadavg(), "runs": args.runs, "base": str(trees["base"]), "same_output": same}
        args.out.write_text(json.dumps({"meta": meta, "summary": summary, "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
