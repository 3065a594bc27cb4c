"""Rebuild the small real-data copies used by tests/ and examples/ from ../shared/data.

Provenance (see ../shared/data/README.md): GRCh37 chr20 from vt-examples 0.57721+ds-3 (MIT);
chr22:20,000,001-21,000,000 from hisat2 2.2.1-4 examples; VCFs from python-pysam-tests 0.20.0
(MIT), vt-examples (MIT) and drop-seq-testdata 2.5.2 (10 donors, chr22 slice); E. coli K-12 MG1655
bases 1-100,000 (ecoli_slice.fa.gz, the non-human class of the fine-tuning tests) from ragout-examples 2.3-4
(BSD-3), other/MG1655-K12.fasta.gz.
Sequence outside the kept regions is N, so coordinates stay those of GRCh37.
"""

import gzip
from pathlib import Path

import pysam

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parents[1] / "examples"
FLANK = 4_096


def write_fasta(path: Path, name: str, seq: str) -> None:
    plain = path.with_suffix("")
    with open(plain, "w") as fh:
        fh.write(f">{name}\n")
        for i in range(0, len(seq), 60):
            fh.write(seq[i : i + 60] + "\n")
    pysam.tabix_compress(str(plain), str(path), force=True)
    plain.unlink()
    pysam.faidx(str(path))


def chr20_slices() -> None:
    positions = []
    for v in ("chr20_pysam_20.vcf.gz", "chr20_vt_indels.vcf.gz", "chr20_platypus_5.vcf.gz"):
        with gzip.open(SHARED / "vcf" / v, "rt") as fh:
            positions += [int(line.split("\t")[1]) - 1 for line in fh if not line.startswith("#")]
    with pysam.FastaFile(str(SHARED / "grch37" / "20.fa.gz")) as fa:
        n = fa.get_reference_length("20")
        seq = bytearray(b"N" * n)
        for p in positions:
            s, e = max(0, p - FLANK), min(n, p + FLANK)
            seq[s:e] = fa.fetch("20", s, e).encode()
    write_fasta(HERE / "chr20_slices.fa.gz", "20", seq.decode())
    for v in ("chr20_pysam_20.vcf.gz", "chr20_vt_indels.vcf.gz", "chr20_platypus_5.vcf.gz"):
        (HERE / v).write_bytes((SHARED / "vcf" / v).read_bytes())


def chr22_slice(dest: Path) -> None:
    with pysam.FastaFile(str(SHARED / "grch37" / "22_20000001-21000000.fa")) as fa:
        core = fa.fetch(fa.references[0])
    write_fasta(dest, "22", "N" * 20_000_000 + core)


def chr22_vcf(dest: Path, n: int | None) -> None:
    src = pysam.VariantFile(str(SHARED / "vcf" / "chr22_20-21M_10donors.vcf"))
    plain = dest.with_suffix("")
    with pysam.VariantFile(str(plain), "w", header=src.header) as out:
        for i, rec in enumerate(src):
            if n is not None and i >= n:
                break
            out.write(rec)
    pysam.tabix_compress(str(plain), str(dest), force=True)
    plain.unlink()
    pysam.tabix_index(str(dest), preset="vcf", force=True)


def ecoli_slice(dest: Path, length: int = 100_000) -> None:
    """The first ``length`` bp of E. coli K-12 MG1655 (contig ``K-12-MG1655``): the second class of the
    fine-tuning tests (human chr20 windows vs E. coli windows)."""
    with pysam.FastxFile(str(SHARED / "other" / "MG1655-K12.fasta.gz")) as fh:
        rec = next(iter(fh))
    write_fasta(dest, rec.name, rec.sequence[:length].upper())


def labelled_example(dest: Path, every: int = 8, flank: int = 32) -> None:
    """SNVs of the 10-donor VCF with a synthetic, sequence-context label for the probe demo.

    label = 1 when the GC fraction of the reference +/- ``flank`` bp around the SNV is above
    the median of the set. It is not biology: it is a label a probe can learn from the
    sequence, so the embed -> finetune -> score-vcf pipeline can be shown end to end.
    """
    src = pysam.VariantFile(str(SHARED / "vcf" / "chr22_20-21M_10donors.vcf"))
    snvs = [r for r in src if r.alts and len(r.alts) == 1 and len(r.ref) == 1 and r.alts[0] in ("A", "C", "G", "T")]
    snvs = snvs[::every]
    with pysam.FastaFile(str(EXAMPLES / "chr22_slice.fa.gz")) as fa:
        gc = [sum(b in "GC" for b in fa.fetch("22", r.pos - 1 - flank, r.pos + flank).upper()) for r in snvs]
    cut = sorted(gc)[len(gc) // 2]
    with open(dest, "w") as fh:
        fh.write("chromosome\tposition\tref\talt\tlabel\n")
        for r, g in zip(snvs, gc, strict=True):
            fh.write(f"chr{r.chrom}\t{r.pos}\t{r.ref}\t{r.alts[0]}\t{int(g > cut)}\n")


if __name__ == "__main__":
    chr20_slices()
    chr22_slice(HERE / "chr22_slice.fa.gz")
    chr22_vcf(HERE / "chr22_10donors.vcf.gz", None)
    ecoli_slice(HERE / "ecoli_slice.fa.gz")
    EXAMPLES.mkdir(exist_ok=True)
    chr22_slice(EXAMPLES / "chr22_slice.fa.gz")
    chr22_vcf(EXAMPLES / "chr22_example.vcf.gz", 50)
    labelled_example(EXAMPLES / "chr22_labelled_snvs.tsv")
