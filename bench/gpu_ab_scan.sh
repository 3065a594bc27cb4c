#!/usr/bin/env bash
# Device call: a scan kernel change against the tree it was made on, in one call. Here, first:
#   mkdir -p .gpu/base && git archive HEAD caduceus_cli bench/bench_forward.py | tar -x -C .gpu/base
#   cp bench/mufu_ceiling.py bench/scan_fused.py .gpu/base/bench/ && SKIP_WHL=1 bash bench/pack_gpu_carry.sh
#   then the change in the working tree (e.g. git apply bench/experiments/scan_staging_dbatch.patch) and
#   run(carry=[".gpukern/ss", ".gpu"], command="bash bench/gpu_ab_scan.sh")
# It runs the gpu scan tests on the change, times one direction's scan call (131k row, 128 x 1k rows;
# bench/mufu_ceiling.py --scan-only; equal output hashes: bit-identical) base / change (delta batch off) /
# change / base / change, then the 131k forwards base / change / base / change while the call's first
# ~3 minutes last. Output under $OUT.
source bench/gpu_setup.sh > "$OUT/setup.log" 2>&1
export PYTHONUNBUFFERED=1
T0=$(date +%s)
el() { echo "[$(($(date +%s) - T0))s] $*"; }
left() { [ $(($(date +%s) - T0)) -lt "$1" ]; }
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
el tests
timeout 100 python3 -m pytest -q tests/test_gpu_scan.py -m gpu -p no:cacheprovider > "$OUT/tests_gpu.log" 2>&1
echo "tests rc $?"; tail -4 "$OUT/tests_gpu.log"
el scan
for v in base new0 new base new; do
    case $v in base) P=.gpu/base/bench; E=1 ;; new) P=bench; E=1 ;; new0) P=bench; E=0 ;; esac
    CADUCEUS_SCAN_DBATCH=$E python3 $P/mufu_ceiling.py --scan-only 2>/dev/null |
        python3 -c "import json,sys; d=json.load(sys.stdin)['scan_calls']; print('$v', ' '.join(f'{k}={x:.4g}' if isinstance(x, float) else f'{k}={x}' for k, x in d.items()))"
done | tee "$OUT/scan_calls.txt"
el forward
for v in base new base new; do
    left 170 || break
    P=bench; [ $v = base ] && P=.gpu/base/bench
    python3 $P/bench_forward.py --device cuda --repeats 7 --cases 0,1 --out "$OUT/fwd_$v.json" 2>&1 | grep -E "ps16|ph16" | sed "s/^/$v /"
done | tee "$OUT/forward.txt"
el done
