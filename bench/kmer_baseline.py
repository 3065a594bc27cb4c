"""The shipped model's quality bar: bidirectional 3+3 k-mer cross-entropy on the held-out chr22 slice,
counted on the training chromosome(s).

    python bench/kmer_baseline.py --train ../shared/data/grch37/20.fa.gz --heldout ../shared/data/grch37/22_20000001-21000000.fa
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from caduceus_cli.training.baseline import kmer_counts, kmer_cross_entropy  # noqa: E402
from caduceus_cli.training.data import read_fasta_tokens  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--train", nargs="+", required=True)
ap.add_argument("--heldout", nargs="+", required=True)
ap.add_argument("--k", type=int, default=3)
ap.add_argument("--out", type=Path)
args = ap.parse_args()
train = list(read_fasta_tokens(args.train).values())
held = list(read_fasta_tokens(args.heldout).values())
counts = kmer_counts(train, args.k)
ce = kmer_cross_entropy(counts, held, args.k)
res = {
    "k_each_side": args.k,
    "train": args.train,
    "heldout": args.heldout,
    "cross_entropy_nats": ce,
    "train_positions": int(counts.sum()),
}
print(json.dumps(res, indent=2))
if args.out:
    args.out.write_text(json.dumps(res, indent=2))
