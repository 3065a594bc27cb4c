"""Indels: left-alignment (``normalise``), per-ALT placement, CAD_LLR by pseudo-log-likelihood, and the
worker thread that plans the next chunk while the model runs (``prefetch``)."""

import gzip
import math
import re
import threading

import numpy as np
import pysam
import pytest

from caduceus_cli.errors import InputFileError, OptionError, ReferenceError_
from caduceus_cli.inference.featurise import Featuriser, scored_chunks
from caduceus_cli.inference.normalise import Normalised, normalise, string_fetch
from caduceus_cli.inference.planner import SitePlanner, WindowLayout
from caduceus_cli.inference.pll import IndelPll, apply_edits, pll_spans
from caduceus_cli.inference.prefetch import prefetched
from caduceus_cli.inference.runtime import Runtime
from caduceus_cli.inference.spec import spec_for
from caduceus_cli.io.variant import Variant
from caduceus_cli.pipelines.score_vcf import ScoreOptions, score_vcf
from caduceus_cli.tokenizer import MASK, encode
from tests.conftest import DATA, GOLDEN
from tests.test_planner import FakeReference

REF = DATA / "chr22_slice.fa.gz"
EXAMPLE = DATA.parent.parent / "examples" / "chr22_example.vcf.gz"
WINDOW = 256  # the shipped model's training length is 1,024; a quarter keeps these tests short on 2 cores
HEAD = "##fileformat=VCFv4.2\n##contig=<ID=22>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"


# ---- normalise: a pure function over a reference fetch ----
#          0123456789012345678901234
CONTEXT = "GGGTCAAAAGTTCACACAGGACGTA"


@pytest.mark.parametrize(
    ("pos0", "ref", "alt", "want"),
    [
        (4, "CA", "C", (4, "CA", "C")),  # already normal
        (7, "AA", "A", (4, "CA", "C")),  # homopolymer deletion, shifted left onto the anchor C
        (8, "AG", "G", (4, "CA", "C")),  # written without the left anchor
        (4, "CAAAAG", "CAAAG", (4, "CA", "C")),  # common trailing bases trimmed
        (8, "A", "AA", (4, "C", "CA")),  # homopolymer insertion
        (15, "ACA", "A", (11, "TCA", "T")),  # dinucleotide repeat: shifted by whole units
        (3, "TCA", "TC", (4, "CA", "C")),  # common leading base trimmed, then shifted
        (19, "GACG", "GA", (20, "ACG", "A")),  # trimmed on the left: it moves right
        (9, "G", "GTC", (9, "G", "GTC")),  # nothing to shift: ALT does not end in G
        (20, "ACG", "TT", (20, "ACG", "TT")),  # complex: no common base, kept
        (0, "GG", "G", (0, "GG", "G")),  # at the contig start the anchor stays
        (7, "aa", "a", (4, "CA", "C")),  # upper-cased
        (7, "A", "T", (7, "A", "T")),  # SNVs and MNVs are left alone
    ],
)
def test_normalise(pos0, ref, alt, want):
    assert CONTEXT[pos0 : pos0 + len(ref)] == ref.upper()
    assert normalise(pos0, ref, alt, string_fetch(CONTEXT)) == Normalised(*want)


def test_normalise_fetches_more_context_as_it_shifts():
    seq = "C" + "A" * 300 + "G"
    calls = []

    def fetch(lo, hi):
        calls.append((lo, hi))
        return seq[lo:hi]

    assert normalise(300, "AG", "G", fetch, block=16) == Normalised(0, "CA", "C")
    assert calls[0] == (284, 300) and all(lo >= 0 for lo, _ in calls) and len(calls) < 10  # blocks that double


# ---- the planner places each indel ALT at its normalised position ----
PLANNER_SEQ = "ACGTTGCAAC" * 4 + "GT" + "A" * 8 + "CGTTGCAACT" * 5  # 0-based A run [42, 50)


def _plan(v, window=21, core=None):
    return SitePlanner(FakeReference(PLANNER_SEQ), WindowLayout(window, core=core)).plan(v)


@pytest.mark.parametrize("core", [None, 8])
def test_left_and_right_forms_plan_alike(core):
    forms = [Variant("s", 42, "TA", ("T",)), Variant("s", 49, "AA", ("A",)), Variant("s", 50, "AC", ("C",))]
    plans = [_plan(v, core=core) for v in forms]
    assert {p.alleles[0] for p in plans} == {plans[0].alleles[0]}  # one plan, however it is written
    a = plans[0].alleles[0]
    assert (a.start + a.centre, a.ref, a.alt, a.kind) == (41, "TA", "T", "indel")
    assert a.ref_seq[a.centre : a.centre + 2] == "TA" and a.seq[a.centre : a.centre + 8] == "T" + "A" * 7
    assert (plans[1].start, plans[1].centre, plans[1].ref_seq) == (a.start, a.centre, a.ref_seq)  # the site's window
    insertions = [Variant("s", 42, "T", ("TA",)), Variant("s", 50, "A", ("AA",))]
    assert len({_plan(v, core=core).alleles[0] for v in insertions}) == 1


def test_multiallelic_alts_are_placed_apart():
    # REF TAAAAAAAA (the T and the A run); ALT 0 an SNV at the T, ALT 1 deletes an A (left-aligned to the T),
    # ALT 2 deletes the run's last A and changes the base after it (complex: it stays where written)
    v = Variant("s", 42, "TAAAAAAAAC", ("GAAAAAAAAC", "TAAAAAAAC", "TAAAAAAAG"))
    p = _plan(v, window=31)
    snv, dele, cplx = (p.alleles[i] for i in range(3))
    assert snv.kind == "mnv" and snv.start + snv.centre == 41 and snv.ref == v.ref
    assert (dele.start + dele.centre, dele.ref, dele.alt) == (41, "TA", "T")
    assert (cplx.start + cplx.centre, cplx.ref, cplx.alt) == (49, "AC", "G")
    assert cplx.window_key != snv.window_key and p.window_key == snv.window_key  # the site keeps the VCF window
    assert p.alt_seqs == {i: a.seq for i, a in p.alleles.items()}


def test_pll_spans():
    p = _plan(Variant("s", 42, "TA", ("T",)), window=31)
    a = p.alleles[0]
    assert pll_spans(a, 3) == ((a.centre - 2, a.centre + 5), (a.centre - 2, a.centre + 4))  # 7 and 6 bases
    ins = _plan(Variant("s", 42, "T", ("TGG",)), window=31).alleles[0]
    assert pll_spans(ins, 1) == ((ins.centre, ins.centre + 2), (ins.centre, ins.centre + 4))
    with pytest.raises(OptionError, match="indel masking 'all'"):
        IndelPll(None, 3, "all")


# ---- CAD_LLR of an indel is PLL(alt) - PLL(ref), from masked forwards ----
@pytest.fixture(scope="module")
def golden_featuriser():
    rt = Runtime(str(GOLDEN / "caduceus_ps_d64_n2"), ScoreOptions(window=101, batch_size=16))
    spec = spec_for(rt.model, "x", "variant", window=101, flank=20)
    yield rt, spec
    rt.close()


@pytest.mark.parametrize("masking", ["position", "span"])
def test_indel_llr_is_the_pll_difference(golden_featuriser, masking):
    rt, spec = golden_featuriser
    with pysam.FastaFile(str(REF)) as fa:
        seq = fa.fetch("22", 20_107_300, 20_107_500).upper()
    planner = SitePlanner(FakeReference(seq), WindowLayout(101))
    plan = planner.plan(Variant("s", 111, seq[110], (seq[110] + "GC",)))  # insert GC after 0-based 110
    a = plan.alleles[0]
    got = Featuriser(rt.engine, spec, indel_flank=2, indel_masking=masking).run([plan])[0].llr[0]

    def pll(window, lo, hi):
        ids = encode(window)
        if masking == "span":
            rows, positions = [ids.copy()], [np.arange(lo, hi)]
            rows[0][lo:hi] = MASK
        else:
            rows, positions = [ids.copy() for _ in range(lo, hi)], [np.array([j]) for j in range(lo, hi)]
            for row, j in zip(rows, range(lo, hi), strict=True):
                row[j] = MASK
        lps = rt.engine.masked_logprobs_at(np.stack(rows), positions)
        flat = np.concatenate(lps)  # (hi - lo, 4)
        return sum(float(flat[t, "ACGT".index(window[j])]) for t, j in enumerate(range(lo, hi)))

    c = a.centre
    want = pll(a.seq, c - 1, c + 3 + 2) - pll(a.ref_seq, c - 1, c + 1 + 2)  # changed bases GC, 2 bp each side
    assert got == pytest.approx(want, abs=1e-5)
    assert IndelPll(rt.engine, 2, masking).forwards(a) == (2 if masking == "span" else 4 + 6)


def test_indels_of_a_tile_share_their_masked_forwards(golden_featuriser):
    rt, spec = golden_featuriser
    with pysam.FastaFile(str(REF)) as fa:
        seq = fa.fetch("22", 20_107_200, 20_107_600).upper()
    planner = SitePlanner(FakeReference(seq), WindowLayout(101, core=51))  # tile 4: core [204, 255), from 179
    ins = Variant("s", 211, seq[210], (seq[210] + "GC",), index=0)  # insert GC after 0-based 210
    dele = Variant("s", 236, seq[235:238], (seq[235],), index=1)  # delete 0-based [236, 238)
    plans = [planner.plan(ins), planner.plan(dele)]
    a, b = (p.alleles[0] for p in plans)
    assert a.window_key == b.window_key == ("s", 179) and not a.away and not b.away
    shift = len(a.alt) - len(a.ref)
    combined = seq[:211] + "GC" + seq[211:236] + seq[238:]  # both edits on the contig
    window = apply_edits(a.ref_seq, a.tail, [(a.centre, a.ref, a.alt), (b.centre, b.ref, b.alt)])
    assert window == combined[179 : 179 + 101]
    (_, _), (lo, hi) = pll_spans(b, 3)
    assert window[lo + shift : hi + shift] == b.seq[lo:hi] and window[:hi] != b.seq[:hi]
    per_forward = 1 if rt.engine.rcps else 2
    llr, forwards, lone = {}, {}, {}
    for batch, spacing in ((True, 0), (False, 0), (True, 64)):
        f = Featuriser(rt.engine, spec, features=False, batch_indels=batch, indel_spacing=spacing)
        before = rt.engine.windows_run
        llr[batch, spacing] = [s.llr[0] for s in f.run(plans, shared=True)]
        forwards[batch, spacing] = (rt.engine.windows_run - before) // per_forward
        lone[batch, spacing] = f.run(plans[:1], shared=True)[0].llr[0]
    # one reference and one alternate pass for both indels; spans 64 bp apart at least: one pass each
    assert forwards == {(True, 0): 2, (False, 0): 4, (True, 64): 4}
    assert llr[True, 64] == llr[False, 0] != llr[True, 0]  # the other indel's masked span is context
    assert llr[True, 0] == pytest.approx(llr[False, 0], abs=0.5)
    assert lone[True, 0] == lone[False, 0]  # a tile with one indel: its own windows, bytes unchanged


# ---- end to end on real chr22 calls with the shipped model ----
def _homopolymer():
    """The first run of >= 7 A or T after chr22:20,100,000 (0-based [start, end)), with the bases around it."""
    with pysam.FastaFile(str(REF)) as fa:
        seq = fa.fetch("22", 20_100_000, 20_200_000).upper()
    m = re.search(r"A{7,}|T{7,}", seq)
    return 20_100_000 + m.start(), 20_100_000 + m.end(), seq, 20_100_000


def _forms():
    """Records (POS 1-based, REF, ALT) that all write one deletion, or one insertion, of a run base."""
    s, e, seq, off = _homopolymer()
    at = lambda lo, hi: seq[lo - off : hi - off]  # noqa: E731 - 0-based reference slice
    b = at(s, s + 1)
    deletions = [
        (s, at(s - 1, s + 1), at(s - 1, s)),  # left-aligned: the base before the run is the anchor
        (e - 1, b + b, b),  # right-aligned, in the run
        (e, at(e - 1, e + 1), at(e, e + 1)),  # no left anchor: REF's first base is the one deleted
        (s - 1, at(s - 2, e + 2), at(s - 2, s) + b * (e - s - 1) + at(e, e + 2)),  # untrimmed, with context
    ]
    insertions = [
        (s, at(s - 1, s), at(s - 1, s) + b),
        (e, b, b + b),
        ((s + e) // 2, b, b + b),
        (s - 1, at(s - 2, e + 1), at(s - 2, s) + b * (e - s + 1) + at(e, e + 1)),
    ]
    return deletions, insertions


def _scored(tmp_path, name, records, **kw):
    src = tmp_path / f"{name}.vcf"
    src.write_text(HEAD + "".join(f"22\t{p}\t{name}{i}\t{r}\t{a}\t.\t.\t.\n" for i, (p, r, a) in enumerate(records)))
    out = tmp_path / f"{name}.out.vcf"
    score_vcf(str(src), str(REF), str(out), None, ScoreOptions(window=WINDOW, batch_size=16, **kw))
    with pysam.VariantFile(str(out)) as vf:
        return [
            (r.pos, r.ref, r.alts[0], r.info["CAD_LLR"][0], r.info["CAD_COS"][0], r.info.get("CAD_FLAG")) for r in vf
        ]


@pytest.mark.parametrize("windows", ["centred", "shared"])
def test_left_and_right_aligned_forms_score_identically(tmp_path, windows):
    deletions, insertions = _forms()
    for kind, forms in (("del", deletions), ("ins", insertions)):
        records = sorted(forms)
        got = _scored(tmp_path, kind, records, windows=windows, chunk_sites=1)
        assert [g[:3] for g in got] == records  # written as given
        llr, cos = {g[3] for g in got}, {g[4] for g in got}
        assert len(llr) == 1 and len(cos) == 1, f"{kind}: {got}"
        assert math.isfinite(llr.pop()) and cos.pop() > 0
        assert all(g[5] is None for g in got)


@pytest.mark.parametrize("windows", ["centred", "shared"])
def test_example_vcf_indels_get_finite_llr(tmp_path, windows):
    out = tmp_path / "o.vcf"
    score_vcf(str(EXAMPLE), str(REF), str(out), None, ScoreOptions(window=WINDOW, batch_size=16, windows=windows))
    with gzip.open(EXAMPLE, "rt") as fh:
        want = [tuple(x.split("\t")[:5]) for x in fh if not x.startswith("#")]
    with pysam.VariantFile(str(out)) as vf:
        got = list(vf)
    assert [(r.chrom, str(r.pos), r.id, r.ref, ",".join(r.alts)) for r in got] == want
    indels = [r for r in got if any(len(a) != len(r.ref) for a in r.alts)]
    assert indels
    for r in got:
        assert all(x is not None and math.isfinite(x) for x in r.info["CAD_LLR"] + r.info["CAD_COS"])


# ---- the worker thread: order, errors, early stop, bounded look-ahead ----
def test_prefetched_keeps_order_and_raises_what_the_worker_raised():
    def items():
        yield from range(5)
        raise InputFileError("x.vcf: record 6 is unreadable")

    got = []
    with pytest.raises(InputFileError, match="^x.vcf: record 6 is unreadable$"):
        for x in prefetched(items()):
            got.append(x)
    assert got == list(range(5))


def _workers():
    return [t for t in threading.enumerate() if t.name == "caduceus-prefetch"]


class _Stub:
    """A featuriser that counts the chunks it scores, and may hold the first one until released."""

    features = True  # tokenise every window, as a featuriser with CAD_COS does

    def __init__(self, hold=False):
        self.release = threading.Event()
        if not hold:
            self.release.set()
        self.runs = 0

    def prepare(self, plans, shared):
        return None

    def run(self, plans, shared, tokens, prepared):
        self.release.wait(10)
        self.runs += 1
        return [type("S", (), {"plan": p})() for p in plans]


def test_scored_chunks_look_ahead_is_bounded_and_stops_with_the_consumer():
    seq = "ACGT" * 2000
    read = []

    def items():
        for i in range(1000):
            read.append(i)
            yield Variant("s", 100 + 5 * i, seq[99 + 5 * i], ("N",), index=i), i

    planner = SitePlanner(FakeReference(seq), WindowLayout(21))
    stub = _Stub()
    chunks = scored_chunks(items(), planner, stub, chunk_sites=10)
    first = next(chunks)
    assert [payload for _, payload in first] == list(range(9))  # the last record read waits (chunking.Chunker)
    threading.Event().wait(0.5)  # the worker runs ahead while the caller holds the chunk
    assert len(read) <= 10 * 3 + 1  # this chunk, one queued, one being planned
    chunks.close()
    assert not _workers() and len(read) <= 10 * 3 + 1


def test_scored_chunks_prefetch_gives_the_same_chunks_and_errors():
    seq = "ACGT" * 200
    variants = [(Variant("s", 10 + 7 * i, seq[9 + 7 * i], ("A",), index=i), i) for i in range(60)]
    planner = SitePlanner(FakeReference(seq), WindowLayout(21))
    on = [[(s.plan, x) for s, x in c] for c in scored_chunks(iter(variants), planner, _Stub(), 8)]
    off = [[(s.plan, x) for s, x in c] for c in scored_chunks(iter(variants), planner, _Stub(), 8, prefetch=False)]
    assert on == off and [x for c in on for _, x in c] == list(range(60))
    bad = variants[:20] + [(Variant("s", 300, "N", ("A",), index=20), 20)]  # REF does not match: strict raises
    strict = SitePlanner(FakeReference(seq), WindowLayout(21, strict=True))
    got = []
    with pytest.raises(ReferenceError_, match="s:300: REF N does not match"):
        for c in scored_chunks(iter(bad), strict, _Stub(), 8):
            got += [x for _, x in c]
    assert got == list(range(14)) and not _workers()  # the chunks before the bad record
