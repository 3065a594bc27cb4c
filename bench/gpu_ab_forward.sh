#!/usr/bin/env bash
# On the device: the forward benchmark for an older tree and this one, alternating, in one
# call (timings compare only within one machine). Make the older tree here first, e.g.
#     mkdir -p .gpu/base && git archive REV caduceus_cli bench/bench_forward.py | tar x -C .gpu/base
# then run(carry=[".gpukern/ss", ".whl", ".gpu"], command="bash bench/gpu_ab_forward.sh 2").
# Writes $OUT/base{r}.json and $OUT/new{r}.json for r = 1..ROUNDS (default 2).
# CASES=0,1 (indices into bench_forward.py's GPU cases: 0,1 the 131k rows) times only those.
source bench/gpu_setup.sh
cases=()
[ -n "${CASES:-}" ] && cases=(--cases "$CASES")
for r in $(seq 1 "${1:-2}"); do
    PYTHONPATH=/tmp/site python3 .gpu/base/bench/bench_forward.py --device cuda --repeats 7 "${cases[@]}" \
        --out "$OUT/base$r.json" 2>&1 | tail -5
    python3 bench/bench_forward.py --device cuda --repeats 7 "${cases[@]}" --out "$OUT/new$r.json" 2>&1 | tail -5
done
