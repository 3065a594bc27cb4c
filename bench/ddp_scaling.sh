#!/usr/bin/env bash
# DDP scaling of `caduceus pretrain` (shipped configuration) on 1 and 2 GPUs of one host.
#   bash bench/ddp_scaling.sh FASTA OUTDIR
# Prints aggregate training tokens/s per GPU count (from each run's summary.json).
set -euo pipefail
fa=$1; out=$2
for n in 1 2; do
  torchrun --standalone --nproc-per-node "$n" -m caduceus_cli pretrain "$fa" -o "$out/ddp$n" \
    --seq-len 1024 --d-model 128 --n-layer 4 --batch-size 64 --steps 80 --eval-every 100000 \
    --save-every 100000 > "$out/ddp$n.log" 2>&1
  python3 - "$out/ddp$n/summary.json" "$n" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"gpus {sys.argv[2]}: {s['tokens']} tokens in {s['wall_s']:.1f} s = {s['tokens'] / s['wall_s'] / 1e6:.3f} M tokens/s (world {s['world_size']})")
PY
done
