# score-vcf on the GPU at the paper's window (131,072 bp): run on the device machine from the repo root.
#   bash bench/gpu_score.sh OUT_DIR
# Model: a PS d256 x 16 network with random weights (the published 131k checkpoint's shape; the hub is
# unreachable from the device), saved with save_model. VCF: every 8th record of the real 10-donor chr22
# calls (311 records) against the chr22 slice.
set -e
OUT=${1:-/tmp/score_out}
mkdir -p "$OUT"
python3 - "$OUT" <<'PY'
import sys, pysam, torch
from caduceus_cli import CaduceusConfig, CaduceusForMaskedLM, save_model
out = sys.argv[1]
torch.manual_seed(0)
save_model(CaduceusForMaskedLM(CaduceusConfig(d_model=256, n_layer=16, rcps=True)), f"{out}/ps-d256-n16")
src = pysam.VariantFile("tests/data/chr22_10donors.vcf.gz")
with pysam.VariantFile(f"{out}/sample.vcf", "w", header=src.header) as dst:
    for i, rec in enumerate(src):
        if i % 8 == 0:
            dst.write(rec)
PY
python3 bench/bench_score.py --vcf "$OUT/sample.vcf" --ref tests/data/chr22_slice.fa.gz --model "$OUT/ps-d256-n16" \
    --window 131072 --batch-size 8 --out "$OUT/score_h100.json"
