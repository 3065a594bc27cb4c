"""The planner on its own: windows, alternate windows, flags and keys, with a small in-memory reference."""

import subprocess
import sys
from dataclasses import dataclass

import pytest

from caduceus_cli.errors import ReferenceError_
from caduceus_cli.inference.planner import SitePlanner, WindowLayout
from caduceus_cli.io.variant import Variant

CONTIG = "ACGTTGCAAC" * 10  # 100 bp, 0-based positions


@dataclass
class Win:
    seq: str
    padded: int


class FakeReference:
    """``Reference``'s planner-facing surface over one in-memory contig 's' (also answers to 'chrs')."""

    def __init__(self, seq: str = CONTIG) -> None:
        self.seq = seq
        self.lengths = {"s": len(seq)}
        self.fetched = []

    def resolve(self, chrom):
        return "s" if chrom in ("s", "chrs") else None

    def window(self, chrom, start, length):
        self.fetched.append((chrom, start, length))
        left, right = max(0, -start), max(0, start + length - len(self.seq))
        core = self.seq[max(0, start) : min(len(self.seq), start + length)]
        return Win("N" * left + core + "N" * right, left + right)

    def describe(self):
        return "fake.fa"


def plan(v, window=21, strict=False, ref=None):
    return SitePlanner(ref or FakeReference(), WindowLayout(window, strict=strict)).plan(v)


def test_snv_window_centre_and_keys():
    pos0 = 40
    p = plan(Variant("s", pos0 + 1, CONTIG[pos0], ("A" if CONTIG[pos0] != "A" else "C",), "rs1", index=7))
    assert p.flags == () and p.chrom == "s" and p.centre == 10 and p.start == pos0 - 10
    assert p.ref_seq == CONTIG[30:51] and p.ref_seq[p.centre] == CONTIG[pos0]
    alt = p.variant.alts[0]
    assert p.alt_seqs == {0: CONTIG[30:40] + alt + CONTIG[41:51]}
    assert p.masked and p.key == 7 and p.n_alts == 1
    assert p.window_key == ("s", 30) and p.alleles[0].mask_key == ("s", 30, 10, 1)
    assert p.alleles[0].feature_key == ("s", 30, 10) and p.alleles[0].ref_seq is p.ref_seq


def test_indels_mnv_and_lowercase_alleles():
    pos0 = 40
    ref2 = CONTIG[pos0 : pos0 + 3]
    ins = plan(Variant("s", pos0 + 1, CONTIG[pos0].lower(), (CONTIG[pos0].lower() + "gg",)))
    assert ins.alt_seqs[0] == (CONTIG[30:41] + "GG" + CONTIG[41:51])[:21] and not ins.masked
    dele = plan(Variant("s", pos0 + 1, ref2, (ref2[0],)))
    assert dele.alt_seqs[0] == CONTIG[30:41] + CONTIG[43:53]  # filled from beyond the window
    assert len(dele.alt_seqs[0]) == 21
    mnv = plan(Variant("s", pos0 + 1, ref2[:2], ("GG",)))
    assert mnv.masked and mnv.alleles[0].mask_key == ("s", 30, 10, 2)


def test_flags():
    assert CONTIG[40] == "A"
    assert plan(Variant("s", 41, "T", ("G",))).flags == ("REF_MISMATCH",)
    edge = plan(Variant("s", 3, CONTIG[2], ("A" if CONTIG[2] != "A" else "C",)))
    assert edge.flags == ("EDGE_PADDED", "N_IN_WINDOW") and edge.ref_seq.startswith("N" * 8)
    sym = plan(Variant("s", 41, CONTIG[40], ("<DEL>", "*", CONTIG[40] + "A")))
    assert sym.flags == ("SYMBOLIC",) and set(sym.alt_seqs) == {2}
    assert plan(Variant("s", 41, CONTIG[40:52], ("A",))).flags == ("TOO_LONG",)
    assert plan(Variant("s", 41, CONTIG[40], ())).flags == () and not plan(Variant("s", 41, "A", ())).scorable


def test_missing_contig_warns_once_and_strict_raises(caplog):
    planner = SitePlanner(FakeReference(), WindowLayout(21))
    flags = [planner.plan(Variant("chr9", i, "A", ("G",))).flags for i in (5, 6)]
    assert flags == [("CONTIG_MISSING",)] * 2
    assert sum("contig chr9 is not in fake.fa" in r.message for r in caplog.records) == 1
    assert plan(Variant("chrs", 41, CONTIG[40], ("A",))).chrom == "s"  # renamed contigs resolve
    with pytest.raises(ReferenceError_, match="chr9:5: contig chr9 is not in the reference fake.fa"):
        plan(Variant("chr9", 5, "A", ("G",)), strict=True)
    with pytest.raises(ReferenceError_, match=r"s:41: REF C does not match the reference \(A\) in fake.fa"):
        plan(Variant("s", 41, "C", ("G",)), strict=True)


def test_planner_loads_no_model():
    """Planning imports neither torch nor the model: it is pure bookkeeping over the reference."""
    code = (
        "import sys, caduceus_cli.inference.planner, caduceus_cli.io.variant;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numba', 'pysam')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
