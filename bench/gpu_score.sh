# score-vcf on the GPU at the paper's window (131,072 bp), three modes: run on the device machine from the repo root.
#   bash bench/gpu_score.sh OUT_DIR
# Model: a PS d256 x 16 network with random weights (the published 131k checkpoint's shape; the hub is
# unreachable from the device), saved with save_model. VCF: the real 10-donor chr22 calls (2,485 records)
# against the chr22 slice; centred windows on every 8th record (311: the paper's protocol is slow), shared
# windows (full, and CAD_LLR only) on all of them.
set -e
OUT=${1:-/tmp/score_out}
mkdir -p "$OUT"
python3 - "$OUT" <<'PY'
import sys, torch
from caduceus_cli import CaduceusConfig, CaduceusForMaskedLM, save_model
torch.manual_seed(0)
save_model(CaduceusForMaskedLM(CaduceusConfig(d_model=256, n_layer=16, rcps=True)), f"{sys.argv[1]}/ps-d256-n16")
PY
python3 bench/bench_score.py --vcf tests/data/chr22_10donors.vcf.gz --ref tests/data/chr22_slice.fa.gz \
    --model "$OUT/ps-d256-n16" --window 131072 --batch-size 8 \
    --modes "${MODES:-shared:llr+shared:llr,cos+centred:llr,cos:8}" --out "$OUT/score_h100.json"
