"""Where a kernel's warps stall, per SASS instruction, from an Nsight Compute source page.

    ncu --set full -k regex:'scan_(state|full)' -c 2 -o scan python3 bench/scan_fused.py --ncu
    ncu -i scan.ncu-rep --page source --print-source sass > sass.txt
    python bench/ncu_sass_summary.py sass.txt [--kernel scan_state] [--top 40]

For each kernel in the page: the sampled stall reasons over all its instructions; the split of the
samples between the instructions run once per position (the scan's step loop: the largest executed
count that 32 instructions or more share), once per tile (executed at least 1/64 as often as the step loop) and the rest; then the step loop's
instructions in address order and the --top per-tile instructions by samples, each with its three
largest stall reasons. Columns of the page: address, source, the two sampling counts, the executed
count, ..., then 18 stall reasons for all samples and 18 for not-issued samples (ncu 2025.3).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

STALLS = (
    "barrier branch dispatch drain imc lg long_sb math membar mio misc no_inst not_sel selected short_sb sleep tex wait"
).split()


@dataclass(frozen=True)
class Row:
    address: str
    sass: str
    samples: int
    executed: int
    stalls: tuple[int, ...]  # all samples, in STALLS order


def parse(path: Path) -> dict[str, list[Row]]:
    kernels: dict[str, list[Row]] = {}
    rows: list[Row] = []
    for line in path.read_text().splitlines():
        m = re.match(r"Kernel Name\s+(\S+)", line)
        if m:
            rows = kernels.setdefault(m.group(1), [])
            continue
        m = re.match(r"^(0x[0-9a-f]+)\s+(.*?)\s{2,}(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s", line)
        if not m:
            continue
        fields = line.split()
        stalls = tuple(int(x) if x.isdigit() else 0 for x in fields[-2 * len(STALLS) : -len(STALLS)])
        rows.append(Row(m.group(1)[-5:], m.group(2), int(m.group(3)), int(m.group(6)), stalls))
    return kernels


def top_stalls(r: Row, n: int = 3) -> str:
    ranked = sorted(((v, s) for s, v in zip(STALLS, r.stalls, strict=True) if v), reverse=True)[:n]
    return " ".join(f"{s}:{v}" for v, s in ranked)


def summary(name: str, rows: list[Row], top: int) -> str:
    total = sum(r.samples for r in rows) or 1
    counts = Counter(r.executed for r in rows if r.executed)
    per_step = max(c for c, n in counts.items() if n >= 32)  # the step loop: >= 32 instructions, most executed
    per_tile = per_step // 64
    groups = {"step loop": 0, "per tile": 0, "rest": 0}
    for r in rows:
        key = "step loop" if r.executed == per_step else ("per tile" if r.executed >= per_tile else "rest")
        groups[key] += r.samples
    agg = [sum(r.stalls[i] for r in rows) for i in range(len(STALLS))]
    out = [f"== {name}: {len(rows)} instructions, {total} samples"]
    out.append("stalls: " + " ".join(f"{s} {a / total:.3f}" for s, a in zip(STALLS, agg, strict=True) if a))
    out.append("samples: " + " ".join(f"{k} {v / total:.1%}" for k, v in groups.items()))
    loop = [r for r in rows if r.executed == per_step]
    out.append(f"-- step loop ({len(loop)} instructions, executed {per_step} times each)")
    out += [f"{r.address} {r.samples:>6} {r.sass[:56]:56} {top_stalls(r)}" for r in loop]
    tile = sorted((r for r in rows if per_tile <= r.executed < per_step), key=lambda r: -r.samples)
    out.append(f"-- per tile: {len(tile)} instructions; the {top} with most samples")
    out += [f"{r.address} {r.executed:>9} {r.samples:>6} {r.sass[:56]:56} {top_stalls(r)}" for r in tile[:top]]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("page", type=Path, help="ncu --page source --print-source sass output")
    ap.add_argument("--kernel", default=None)
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    for name, rows in parse(args.page).items():
        if rows and (args.kernel is None or name == args.kernel):
            print(summary(name, rows, args.top))


if __name__ == "__main__":
    main()
