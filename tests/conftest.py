"""Shared fixtures: golden model directories, small random models, data paths."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from caduceus_cli.model.caduceus import CaduceusForMaskedLM
from caduceus_cli.model.config import CaduceusConfig

DATA = Path(__file__).parent / "data"
GOLDEN = DATA / "golden"


def perturbed_model(
    rcps: bool, d_model: int = 32, n_layer: int = 2, fused: bool = True, seed: int = 0, strategy: str = "add"
) -> CaduceusForMaskedLM:
    """A random model with every parameter perturbed (norm weights and biases non-trivial)."""
    torch.manual_seed(seed)
    cfg = CaduceusConfig(
        d_model=d_model, n_layer=n_layer, rcps=rcps, fused_add_norm=fused, bidirectional_strategy=strategy
    )
    model = CaduceusForMaskedLM(cfg, backend="torch")
    with torch.no_grad():
        for p in {id(p): p for p in model.parameters()}.values():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


@pytest.fixture(params=["ps", "ph"])
def golden_dir(request) -> Path:
    return GOLDEN / f"caduceus_{request.param}_d64_n2"


def random_ids(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(7, 12, (batch, length), generator=g)


SNV_SOURCES = (("chr20_pysam_20.vcf.gz", 2), ("chr22_10donors.vcf.gz", 13))  # (file, keep every k-th SNV)


def real_snvs() -> list[tuple[str, int, str, str]]:
    """Biallelic SNVs (chrom, pos1, ref, alt) from the real chr20 and chr22 VCF copies: ~150 per chromosome."""
    from caduceus_cli.io.vcf import VariantReader

    out = []
    for name, every in SNV_SOURCES:
        with VariantReader(str(DATA / name)) as reader:
            snvs = [
                (v.chrom, v.pos1, v.ref, v.alts[0])
                for v in reader.variants()
                if len(v.alts) == 1 and len(v.ref) == 1 and v.alts[0] in ("A", "C", "G", "T")
            ]
        out += snvs[::every]
    return out


@pytest.fixture(scope="session")
def two_chrom_reference(tmp_path_factory) -> Path:
    """Contigs 20 and 22 (the real slices, N elsewhere, GRCh37 coordinates) in one indexed FASTA."""
    import pysam

    path = tmp_path_factory.mktemp("ref") / "chr20_chr22.fa"
    with open(path, "w") as fh:
        for src, contig in (("chr20_slices.fa.gz", "20"), ("chr22_slice.fa.gz", "22")):
            with pysam.FastaFile(str(DATA / src)) as fa:
                fh.write(f">{contig}\n{fa.fetch(contig)}\n")
    pysam.faidx(str(path))
    return path


@pytest.fixture(scope="session")
def labelled_table(two_chrom_reference, tmp_path_factory) -> Path:
    """Real SNVs with a label the test makes from sequence context: GC fraction of +/-32 bp above the median.

    ``tissue`` alternates between two names (no signal); ``distance_to_nearest_tss`` is a stand-in
    (distance to the middle of each slice) so every distance bucket has rows.
    """
    import csv

    import numpy as np
    import pysam

    snvs = real_snvs()
    with pysam.FastaFile(str(two_chrom_reference)) as fa:
        gc = [sum(b in "GC" for b in fa.fetch(c, p - 33, p + 32).upper()) / 65 for c, p, _, _ in snvs]
    cut = float(np.median(gc))
    mid = {"20": 31_000_000, "22": 20_500_000}
    path = tmp_path_factory.mktemp("table") / "labelled.tsv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh, delimiter="\t", lineterminator="\n")
        w.writerow(["chromosome", "position", "ref", "alt", "label", "tissue", "distance_to_nearest_tss"])
        for i, ((c, p, r, a), g) in enumerate(zip(snvs, gc, strict=True)):
            w.writerow([f"chr{c}", p, r, a, int(g > cut), ("Whole_Blood", "Liver")[i % 2], (p - mid[c]) // 4])
    return path


def mirrored_snvs(seq: str, positions: tuple[int, ...], folder: Path):
    """A sequence and its reverse complement as one-contig FASTAs ('s'), and SNVs at ``positions``
    (1-based) with their mirrored twins: returns (fwd FASTA, rev FASTA, [(pos1, ref, alt)] on each)."""
    comp = str.maketrans("ACGTN", "TGCAN")
    fwd, rev = folder / "f.fa", folder / "r.fa"
    fwd.write_text(">s\n" + seq + "\n")
    rev.write_text(">s\n" + seq.translate(comp)[::-1] + "\n")
    on_fwd, on_rev = [], []
    for pos1 in positions:
        ref = seq[pos1 - 1]
        alt = {"A": "G", "C": "T", "G": "A", "T": "C"}[ref]
        on_fwd.append((pos1, ref, alt))
        on_rev.append((len(seq) - pos1 + 1, ref.translate(comp), alt.translate(comp)))
    return fwd, rev, on_fwd, on_rev
