"""inference.passes: packing masked spans into forwards, and the cluster windows of a tile's extra passes."""

import gzip
import subprocess
import sys

import numpy as np
import pysam
import pytest

from caduceus_cli.errors import OptionError
from caduceus_cli.inference.passes import DEFAULT_CLUSTER, Pass, crops, default_cluster, pack, run_passes
from caduceus_cli.inference.runtime import Runtime
from caduceus_cli.pipelines.score_vcf import ScoreOptions, score_vcf
from caduceus_cli.tokenizer import MASK, encode
from tests.conftest import DATA, GOLDEN

REF = DATA / "chr22_slice.fa.gz"


def test_pack_keeps_snvs_together_and_indel_spans_apart():
    def spans(*xs):  # (start, end, indel's) -> pack's input, none kept out
        return [(s, e, i, False) for s, e, i in xs]

    snvs = spans((10, 11, False), (12, 13, False), (40, 41, False))
    assert pack(snvs, 0, 64) == [([(10, 11), (12, 13), (40, 41)], True)]  # SNVs: min_spacing 0
    assert pack(snvs, 5, 64) == [([(10, 11), (40, 41)], True), ([(12, 13)], False)]
    more = snvs + spans((100, 107, True), (150, 157, True), (200, 230, False))
    # the indel span at 100 is 59 bp after the SNV at 40: a second pass; 150 is 109 bp after 40: the first;
    # the MNV at 200 is 43 bp after 157 but 93 after 107: the second
    assert pack(more, 0, 64) == [([(10, 11), (12, 13), (40, 41), (150, 157)], True), ([(100, 107), (200, 230)], False)]
    overlapping = spans((5, 12, True), (5, 12, True), (5, 20, True))
    assert pack(overlapping, 0, 64) == [([(5, 12)], True), ([(5, 20)], False)]  # overlaps apart


def test_pack_keeps_spans_out_of_the_first_pass():
    """A kept-out span never joins the first pass; the others still fill it first."""
    got = pack([(0, 7, True, True), (100, 101, False, False), (300, 307, True, False)], 0, 64)
    assert got == [([(0, 7)], False), ([(100, 101), (300, 307)], True)]
    got = pack([(0, 1, False, False), (100, 107, True, True), (300, 301, False, False)], 0, 64)
    assert got == [([(0, 1), (300, 301)], True), ([(100, 107)], False)]


def test_default_cluster_window():
    assert default_cluster(131_072) == DEFAULT_CLUSTER == 16_384
    assert default_cluster(1_024) == 1_024  # shorter windows: every pass runs whole
    assert default_cluster(131_072, 8_192) == 8_192
    for bad in (2, 200_000):
        with pytest.raises(OptionError, match="--cluster-window"):
            default_cluster(131_072, bad)


def test_crops_centre_cluster_windows_on_runs_of_spans():
    seq = "A" * 4_000
    spans = ((100, 107), (150, 157), (1_000, 1_010), (3_990, 3_997))
    assert crops(Pass(seq, spans, first=True), 400) == [(0, 4_000, spans)]  # the first pass runs whole
    got = crops(Pass(seq, spans, first=False), 400)
    assert got == [(0, 400, spans[:2]), (805, 400, spans[2:3]), (3_600, 400, spans[3:])]
    for start, length, part in got:  # every span inside its window, with cluster // 4 of context where the
        for s, e in part:  # pass's window allows it
            assert start <= s and e <= start + length
            assert min(s - start, start + length - e) >= 100 or start in (0, 4_000 - 400)
    assert crops(Pass(seq, spans, first=False), 1_400) == [(0, 4_000, spans)]  # 3 x 1,400 >= W: whole
    assert crops(Pass(seq, ((100, 400),), first=False), 400) == [(0, 4_000, ((100, 400),))]  # span > half
    assert crops(Pass(seq, spans, first=False), 4_000) == [(0, 4_000, spans)]
    near_start = ((0, 1), (100, 290))  # two runs (290 bp > 200 from 0), both windows moved to [0, 400): one
    assert crops(Pass(seq, near_start, first=False), 400) == [(0, 400, near_start)]


@pytest.fixture(scope="module")
def engine():
    rt = Runtime(str(GOLDEN / "caduceus_ps_d64_n2"), ScoreOptions(window=512, batch_size=1))
    yield rt.engine
    rt.close()


def masked(engine, window: str, spans) -> np.ndarray:
    """log P over ACGT at ``spans`` of ``window``, all masked in one forward: (k, 4)."""
    ids = encode(window)  # (W,)
    for s, e in spans:
        ids[s:e] = MASK
    positions = np.concatenate([np.arange(s, e) for s, e in spans])  # (k,)
    return engine.masked_logprobs_at(ids[None], [positions])[0]


def true_sum(lp: np.ndarray, bases: str) -> float:
    """Sum over rows of ``lp`` (k, 4) of log P of the true base."""
    return float(sum(float(row["ACGT".index(b)]) for row, b in zip(lp, bases, strict=True)))


def close(a, b):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


def test_run_passes_reads_each_cluster_window_as_its_own_forward(engine):
    with pysam.FastaFile(str(REF)) as fa:
        seq = fa.fetch("22", 20_107_000, 20_107_512).upper()
        other = fa.fetch("22", 20_108_000, 20_108_512).upper()
    first = Pass(seq, ((10, 11), (200, 207), (400, 402)), first=True)
    extra = Pass(seq, ((20, 27), (300, 301), (310, 312)), first=False)
    third = Pass(other, ((450, 457),), first=False)
    fourth = Pass(other, ((5, 6), (260, 261)), first=True)
    before = engine.tokens_run, engine.windows_run
    # batch size 1: whole windows one per forward, cluster windows 512 // 128 = 4 per forward
    got = run_passes(engine, [first, extra, third, fourth], encode, 128)
    assert (engine.tokens_run - before[0], engine.windows_run - before[1]) == (2 * 512 + 3 * 128, 5)
    close(got[0], masked(engine, seq, first.spans))
    close(got[3], masked(engine, other, fourth.spans))
    # runs (20, 27) and (300, 312): windows of 128 centred on them, [0, 128) and [242, 370)
    close(
        got[1],
        np.concatenate([masked(engine, seq[:128], [(20, 27)]), masked(engine, seq[242:370], [(58, 59), (68, 70)])]),
    )
    assert got[1].shape == (7 + 1 + 2, 4)
    close(got[2], masked(engine, other[384:], [(66, 73)]))  # (450, 457) near the end: the window's last 128
    close(run_passes(engine, [extra], encode, 512)[0], masked(engine, seq, extra.spans))  # cluster = W: whole
    with pytest.raises(ValueError, match="at least one span"):
        run_passes(engine, [Pass(seq, (), first=True)], encode, 128)


def test_an_indels_two_plls_come_from_passes_of_one_kind(engine):
    """An SNV 20 bp before an insertion sends the insertion's reference span to a second pass, which runs in a
    cluster window; its alternate span, alone in the tile's first alternate pass, follows it there."""
    from caduceus_cli.inference.featurise import Featuriser
    from caduceus_cli.inference.planner import SitePlanner, WindowLayout
    from caduceus_cli.inference.spec import spec_for
    from caduceus_cli.io.variant import Variant
    from tests.test_planner import FakeReference

    with pysam.FastaFile(str(REF)) as fa:
        seq = fa.fetch("22", 20_107_000, 20_107_400).upper()
    planner = SitePlanner(FakeReference(seq), WindowLayout(200, core=100))  # tile 2: core [200, 300), from 150
    alt_base = "A" if seq[220] != "A" else "C"
    snv = planner.plan(Variant("s", 221, seq[220], (alt_base,), index=0))
    ins = planner.plan(Variant("s", 241, seq[240], (seq[240] + "GC",), index=1))
    a = ins.alleles[0]
    assert a.window_key == snv.alleles[0].window_key == ("s", 150) and a.centre == 90
    spec = spec_for(engine.model, "x", "variant", window=200, flank=20)
    got = {}
    for cluster in (200, 64):
        f = Featuriser(engine, spec, features=False, cluster=cluster)
        got[cluster] = [s.llr[0] for s in f.run([snv, ins], shared=True)]
    ref_seq, alt_seq = a.ref_seq, a.seq
    # reference span [88, 94), alternate span [88, 96): whole windows, or 64-bp windows centred on them
    whole = masked(engine, alt_seq, [(88, 96)]), masked(engine, ref_seq, [(88, 94)])
    cropped = masked(engine, alt_seq[60:124], [(28, 36)]), masked(engine, ref_seq[59:123], [(29, 35)])
    for cluster, (lp_alt, lp_ref) in ((200, whole), (64, cropped)):
        want = true_sum(lp_alt, alt_seq[88:96]) - true_sum(lp_ref, ref_seq[88:94])
        assert got[cluster][1] == pytest.approx(want, abs=1e-4)
    snv_lp = masked(engine, ref_seq, [(70, 71)])[0]  # the SNV: the tile's first pass, whole, alone
    want_snv = float(snv_lp["ACGT".index(alt_base)] - snv_lp["ACGT".index(seq[220])])
    assert got[64][0] == pytest.approx(want_snv, abs=1e-5) and got[200][0] == pytest.approx(want_snv, abs=1e-5)


def test_an_indel_split_between_a_whole_and_a_cropped_pass_is_scored_alone(engine):
    """A 41-bp deletion 20 bp after an insertion: its alternate span goes to a later, cropped pass; its
    reference span (47 bp, longer than half a 64-bp cluster window) to a later pass that runs whole; kept
    out of the first passes it stays split, so it is scored on its own (whole windows, as with batch_indels
    off), and the insertion's passes are those of the tile without it."""
    from caduceus_cli.inference.featurise import Featuriser
    from caduceus_cli.inference.planner import SitePlanner, WindowLayout
    from caduceus_cli.inference.spec import spec_for
    from caduceus_cli.io.variant import Variant
    from tests.test_planner import FakeReference

    with pysam.FastaFile(str(REF)) as fa:
        seq = fa.fetch("22", 20_107_000, 20_107_400).upper()
    planner = SitePlanner(FakeReference(seq), WindowLayout(200, core=100))  # tile 2: core [200, 300), from 150
    ins = planner.plan(Variant("s", 221, seq[220], (seq[220] + "GC",), index=0))
    dele = planner.plan(Variant("s", 241, seq[240:282], (seq[240],), index=1))
    a = dele.alleles[0]
    assert a.window_key == ins.alleles[0].window_key == ("s", 150) and len(a.ref) - len(a.alt) == 41
    spec = spec_for(engine.model, "x", "variant", window=200, flank=20)
    cropped = Featuriser(engine, spec, features=False, cluster=64)
    alone = Featuriser(engine, spec, features=False, cluster=64, batch_indels=False)
    pp = cropped.prepare([ins, dele], shared=True)
    i = ins.alleles[0]
    assert pp.tiles.alone == [1] and list(pp.tiles.scored) == [("s", 150, i.centre, i.ref, i.alt)]
    got, want = cropped.run([ins, dele], shared=True), alone.run([ins, dele], shared=True)
    assert got[1].llr == want[1].llr and got[0].llr == want[0].llr


def test_cluster_window_option_is_checked_in_one_line(tmp_path):
    root = DATA.parents[1]
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "caduceus_cli",
            "score-vcf",
            str(root / "examples" / "chr22_example.vcf.gz"),
            "--ref",
            str(root / "examples" / "chr22_slice.fa.gz"),
            "--windows",
            "shared",
            "--cluster-window",
            "2",
            "-o",
            str(tmp_path / "o.vcf.gz"),
        ],
        capture_output=True,
        text=True,
    )
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and "--cluster-window 2: must be between 4 and the window (1024)" in lines[-1]
    assert "Traceback" not in p.stderr and not (tmp_path / "o.vcf.gz").exists()


def test_cluster_windows_cut_work_and_keep_scores_close(tmp_path):
    """The first 240 real chr22 calls, shipped model, 1,024 bp tiles: cluster windows of 256 bp run the
    tiles' extra passes for fewer tokens; CAD_LLR stays close to the whole-window passes'."""
    with gzip.open(DATA / "chr22_10donors.vcf.gz", "rt") as fh:
        lines = fh.read().splitlines(keepends=True)
    src = tmp_path / "calls.vcf"
    src.write_text("".join([x for x in lines if x.startswith("#")] + [x for x in lines if not x.startswith("#")][:240]))
    got = {}
    for cluster in (1_024, 256):
        out = tmp_path / f"c{cluster}.vcf"
        opts = ScoreOptions(window=1_024, batch_size=16, windows="shared", scores=("llr",), cluster_window=cluster)
        summary = score_vcf(str(src), str(REF), str(out), None, opts)
        with pysam.VariantFile(str(out)) as vf:
            llr = [x for r in vf for x in (r.info.get("CAD_LLR") or ())]
            got[cluster] = (summary, llr, "cluster windows 256 bp" in str(vf.header))
    (whole, a, tagged_whole), (small, b, tagged) = got[1_024], got[256]
    assert whole.tokens_run == whole.windows_run * 1_024 and not tagged_whole
    assert small.tokens_run < 0.95 * whole.tokens_run and tagged  # the header says what ran
    assert small.tokens_run < small.windows_run * 1_024  # some forwards ran in 256-bp windows
    assert [x is None for x in a] == [x is None for x in b]
    pairs = np.array([(x, y) for x, y in zip(a, b, strict=True) if x is not None])  # (n, 2)
    assert len(pairs) > 200
    assert np.corrcoef(pairs.T)[0, 1] >= 0.99
    assert np.mean(pairs[:, 0] == pairs[:, 1]) > 0.5  # what the first passes score is untouched
