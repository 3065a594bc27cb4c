"""CAD_DELTA (``inference.delta``): fine-tuned head on the ALT window minus on the REF window, CPU only.

A tiny PS model (d_model 16, 1 layer) is fine-tuned here for two steps on human (chr20) vs E. coli
windows of 64 bp; random-head models (PS and Ph) cover multi-class and multi-target heads. Sites are
built on real chr20 sequence as the planner builds them (ALT aligned on the left anchor, filled from the
reference), in 200 bp windows: longer than the 64 bp training length, so the allele crop is exercised.
"""

from __future__ import annotations

import numpy as np
import pysam
import pytest
import torch

from caduceus_cli.errors import OptionError
from caduceus_cli.inference.delta import DeltaScorer, allele_crop, delta_fields, head_values
from caduceus_cli.inference.planner import AllelePlan, SitePlan
from caduceus_cli.io.variant import Variant, allele_class
from caduceus_cli.model.caduceus import CaduceusForMaskedLM
from caduceus_cli.model.config import CaduceusConfig
from caduceus_cli.model.heads import HeadConfig, SequenceHeadModel, head_outputs, load_finetuned
from caduceus_cli.model.loading import save_model
from caduceus_cli.pipelines.finetune_full import FullFinetuneOptions, finetune_full
from caduceus_cli.tokenizer import encode
from caduceus_cli.training.finetune import TrainConfig
from tests.conftest import DATA

COMP = str.maketrans("ACGTN", "TGCAN")
W = 200  # scoring window; the head's training length is 64


def rc(seq: str) -> str:
    return seq.translate(COMP)[::-1]


@pytest.fixture(scope="module")
def genome() -> str:
    with pysam.FastaFile(str(DATA / "chr20_slices.fa.gz")) as fa:
        seq = fa.fetch("20").upper()
    i = next(i for i in range(0, len(seq), 1000) if "N" not in seq[i : i + 5000])
    return seq[i : i + 5000]


def allele(g: str, start: int, centre: int, ref_len: int, alt: str, chrom: str = "20") -> AllelePlan:
    """An ALT's windows as the planner makes them: aligned on the left anchor, filled from ``g``."""
    ref = g[start + centre : start + centre + ref_len]
    win = g[start : start + W + max(0, ref_len - len(alt))]
    seq = (win[:centre] + alt + win[centre + ref_len :])[:W]
    return AllelePlan(chrom, allele_class(ref, alt), start, centre, ref, alt, win[:W], seq)


def site(g: str, start: int, centre: int, ref_len: int, alts: tuple[str, ...], index: int = 0, skip=()) -> SitePlan:
    """A site planned at ``start`` + ``centre`` of ``g``; ALTs in ``skip`` get no plan (e.g. symbolic)."""
    ref = g[start + centre : start + centre + ref_len]
    alleles = {j: allele(g, start, centre, ref_len, a) for j, a in enumerate(alts) if j not in skip}
    v = Variant("20", start + centre + 1, ref, alts, index=index)
    return SitePlan(v, (), "20", start, centre, g[start : start + W], alleles)


def rc_site(p: SitePlan) -> SitePlan:
    """The same SNV/MNV site described on the other strand (windows reverse-complemented, centres mirrored)."""
    v = Variant("rc", p.variant.pos1, rc(p.variant.ref), tuple(rc(a) for a in p.variant.alts), index=p.key)
    alleles = {
        j: AllelePlan("rc", a.kind, a.start, W - a.centre - len(a.ref), rc(a.ref), rc(a.alt), rc(a.ref_seq), rc(a.seq))
        for j, a in p.alleles.items()
    }
    return SitePlan(v, (), "rc", p.start, W - p.centre - len(p.variant.ref), rc(p.ref_seq), alleles)


def mutate(g: str, i: int, k: int = 1) -> str:
    """``k`` bases at ``i`` of ``g`` changed (to the next base in ACGT order)."""
    return "".join("CGTA"["ACGT".index(b)] for b in g[i : i + k])


def snv_sites(g: str) -> list[SitePlan]:
    out = []
    for n, (start, centre) in enumerate([(0, 100), (300, 5), (600, 195), (900, 37), (900, 160)]):
        out.append(site(g, start, centre, 1, (mutate(g, start + centre),), index=n))
    out.append(site(g, 1200, 100, 2, (mutate(g, 1300, 2),), index=10))  # MNV
    b = g[1500 + 100]
    out.append(site(g, 1500, 100, 1, tuple(x for x in "ACGT" if x != b), index=11))  # tri-allelic SNV
    return out


def indel_sites(g: str) -> list[SitePlan]:
    a = g[2000 + 100]
    return [
        site(g, 2000, 100, 3, (a,), index=20),  # 2 bp deletion
        site(g, 2000, 100, 1, (a + "GT",), index=21),  # 2 bp insertion, same reference window
        site(g, 2400, 150, 1, (a + "T", "<DEL>"), index=22, skip=(1,)),  # one symbolic ALT
    ]


def crops(al: AllelePlan, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Token ids (1, n) of the reference and alternate crops of an ALT, cut here."""
    lo, n = allele_crop(len(al.ref_seq), al.centre, len(al.ref), window)
    a, m = allele_crop(len(al.seq), al.centre, len(al.alt), window)
    return encode(al.ref_seq[lo : lo + n])[None], encode(al.seq[a : a + m])[None]


def direct(model: SequenceHeadModel, al: AllelePlan, window: int) -> np.ndarray:
    """head(alt crop) - head(ref crop) through ``head_outputs``."""
    ref_ids, alt_ids = crops(al, window)
    ref, alt = head_outputs(model, ref_ids, raw=True), head_outputs(model, alt_ids, raw=True)
    return (head_values(model.head_config, alt) - head_values(model.head_config, ref))[0]


def random_head(rcps: bool, head: HeadConfig, seed: int = 0) -> SequenceHeadModel:
    torch.manual_seed(seed)
    lm = CaduceusForMaskedLM(CaduceusConfig(d_model=16, n_layer=1, rcps=rcps), backend="torch")
    model = SequenceHeadModel(lm, head)
    with torch.no_grad():
        model.head.weight.normal_(0, 3.0)  # outputs that move with the sequence
    return model.eval()


@pytest.fixture(scope="module")
def tuned(tmp_path_factory) -> SequenceHeadModel:
    """Fine-tuned for 2 steps (PS, d16 x 1, 64 bp) through ``finetune_full`` and loaded by ``load_finetuned``."""
    tmp = tmp_path_factory.mktemp("delta")
    rows = []
    for fasta, contig, tag in (("chr20_slices.fa.gz", "20", "human"), ("ecoli_slice.fa.gz", "K-12-MG1655", "ecoli")):
        with pysam.FastaFile(str(DATA / fasta)) as fa:
            seq = fa.fetch(contig).upper()
        wins = [w for w in (seq[i : i + 64] for i in range(0, len(seq) - 64, 192)) if "N" not in w][:12]
        rows += [f"{tag}{i}\t{w}\t{tag}" for i, w in enumerate(wins)]
    (tmp / "t.tsv").write_text("name\tsequence\tlabel\n" + "\n".join(rows) + "\n")
    torch.manual_seed(0)
    base = save_model(CaduceusForMaskedLM(CaduceusConfig(d_model=16, n_layer=1, rcps=True)), tmp / "base")
    train = TrainConfig(out_dir="", steps=2, batch_size=8, lr=3e-3, head_lr=3e-3, device="cpu")
    opts = FullFinetuneOptions(val_frac=0.0, test_frac=0.0, train=train)
    result = finetune_full(str(tmp / "t.tsv"), str(tmp / "run"), str(base), opts=opts)
    return load_finetuned(result.model_dir)


def test_fields():
    assert delta_fields(HeadConfig(classes=("ecoli", "human"))) == [
        (
            "CAD_DELTA",
            "Change in the log-odds of class human vs ecoli, logit human - logit ecoli (alt window - ref window, "
            "per ALT; RC-invariant head of a fine-tuned Caduceus model)",
        )
    ]
    assert [n for n, _ in delta_fields(HeadConfig(task="regression", targets=("gc",)))] == ["CAD_DELTA"]
    multi = delta_fields(HeadConfig(classes=("a", "b-c", "b_c", 'x"y')))
    assert [n for n, _ in multi] == [
        "CAD_DELTA_prob_a",
        "CAD_DELTA_prob_b_c",
        "CAD_DELTA_prob_b_c_",
        "CAD_DELTA_prob_x_y",
    ]
    assert "log-probability of class b-c" in multi[1][1] and all('"' not in d for _, d in multi)
    targets = delta_fields(HeadConfig(task="regression", targets=("gc", "expr.log")))
    assert [n for n, _ in targets] == ["CAD_DELTA_gc", "CAD_DELTA_expr.log"] and "predicted expr.log" in targets[1][1]


def test_allele_crop_centred_and_mirror_symmetric():
    assert allele_crop(200, 100, 1, 64) == (69, 63)  # SNV: 63 bp, 31 each side of the base
    assert allele_crop(200, 100, 2, 64) == (69, 64)  # 2 bp allele: 31 each side
    assert allele_crop(200, 100, 3, 64) == (70, 63)
    assert allele_crop(200, 5, 1, 64) == (0, 63) and allele_crop(200, 194, 1, 64) == (137, 63)  # shifted inside
    assert allele_crop(200, 100, 1, 0) == (0, 200) and allele_crop(64, 10, 1, 64) == (0, 64)  # whole window
    for length in (50, 64, 65, 200):
        for window in (0, 1, 2, 7, 64, 65):
            for span in (1, 2, 3, 8):
                for start in range(0, length - span + 1, 3):
                    lo, n = allele_crop(length, start, span, window)
                    assert 0 <= lo and lo + n <= length and (window <= 0 or n <= max(window, 2))
                    assert allele_crop(length, length - start - span, span, window) == (length - lo - n, n)


def test_tuned_deltas_equal_direct_head_and_are_rc_invariant(tuned, genome):
    assert tuned.head_config.window == 64 and tuned.head_config.classes == ("ecoli", "human")
    scorer = DeltaScorer(tuned, "cpu", batch_size=4)
    assert scorer.fields == delta_fields(tuned.head_config) and scorer.precision == "fp32"
    plans = snv_sites(genome) + indel_sites(genome)
    got = scorer.score(plans)
    assert [len(d) for d in got] == [p.n_alts for p in plans]
    assert got[-1][1] is None and all(d is not None and len(d) == 1 for ds in got[:-1] for d in ds)
    for p, ds in zip(plans, got, strict=True):
        for j, al in p.alleles.items():
            np.testing.assert_allclose(ds[j], direct(tuned, al, 64), rtol=1e-5, atol=1e-6)
    flat = np.array([d[0] for ds in got for d in ds if d is not None])
    assert np.abs(flat).max() > 1e-4  # the deltas are not all zero
    # the value is the log-odds of the second class: log p / (1 - p) from the softmax
    ref = encode(plans[0].ref_seq[69:132])[None]  # the SNV at 100: its 63 bp crop
    p_human = head_outputs(tuned, ref)[0, 1]
    log_odds = head_values(tuned.head_config, head_outputs(tuned, ref, raw=True))[0, 0]
    np.testing.assert_allclose(log_odds, np.log(p_human / (1 - p_human)), rtol=1e-4)
    rc_got = DeltaScorer(tuned, "cpu", batch_size=3).score([rc_site(p) for p in snv_sites(genome)])
    np.testing.assert_allclose(
        [d for ds in rc_got for d in ds], [d for ds in got[: len(rc_got)] for d in ds], rtol=1e-4, atol=2e-6
    )


def test_unscorable_plans_and_alts_give_none(tuned, genome):
    v = Variant("20", 101, "A", ("G", "T"), index=0)
    plans = [
        SitePlan(v, ("REF_MISMATCH",)),
        SitePlan(Variant("20", 5, "A", ()), ()),  # no ALT
        SitePlan(Variant("chrUn", 5, "A", ("C",)), ("CONTIG_MISSING",)),
        indel_sites(genome)[2],  # an insertion and a symbolic ALT
    ]
    scorer = DeltaScorer(tuned)
    got = scorer.score(plans)
    assert got[:3] == [[None, None], [], [None]] and got[3][0] is not None and got[3][1] is None
    assert scorer.windows_run == 2 and DeltaScorer(tuned).score(plans[:3]) == got[:3]
    assert DeltaScorer(tuned).score([]) == []
    with pytest.raises(OptionError):
        DeltaScorer(tuned, batch_size=0)


def test_reference_windows_shared_and_batch_size_free(tuned, genome):
    a = genome[500 + 80]
    tri = site(genome, 500, 80, 1, (mutate(genome, 580), a + "T"), index=0)
    split = [site(genome, 500, 80, 1, (alt,), index=i) for i, alt in ((1, mutate(genome, 580)), (2, a + "T"))]
    other = site(genome, 500, 120, 1, (mutate(genome, 620),), index=3)
    plans = [tri, *split, other]
    whole = DeltaScorer(tuned, window=0)  # every site pools the whole 200 bp tile: one reference window
    got = whole.score(plans)
    assert whole.windows_run == 1 + 3  # the tile; alternates: SNV at 80, insertion at 80, SNV at 120
    assert got[0] == [got[1][0], got[2][0]] and got[3][0] is not None
    cropped = DeltaScorer(tuned)  # crops around 80 and 120 differ: two reference windows
    got_c = cropped.score(plans)
    assert cropped.windows_run == 2 + 3 and got_c[0] == [got_c[1][0], got_c[2][0]]
    one = DeltaScorer(tuned, batch_size=1).score(plans)
    np.testing.assert_allclose([d for ds in one for d in ds], [d for ds in got_c for d in ds], rtol=1e-5, atol=1e-6)
    # ALTs of one site in different windows (an indel normalised elsewhere): each against its own reference
    mixed = site(genome, 500, 80, 1, (mutate(genome, 580), "X"), index=4)
    mixed = SitePlan(
        mixed.variant, (), "20", 500, 80, mixed.ref_seq, {**mixed.alleles, 1: allele(genome, 530, 70, 1, "GA")}
    )
    scorer = DeltaScorer(tuned)
    got_m = scorer.score([mixed])[0]
    assert scorer.windows_run == 4
    for j, al in mixed.alleles.items():
        np.testing.assert_allclose(got_m[j], direct(tuned, al, 64), rtol=1e-5, atol=1e-6)
    # whole windows: RC-invariant for indels too (the crop's mirror symmetry is tested above)
    sites = snv_sites(genome) + indel_sites(genome)[:2]
    fwd = DeltaScorer(tuned, window=0).score(sites)
    rev = DeltaScorer(tuned, window=0).score([rc_site(p) for p in sites])
    np.testing.assert_allclose([d for ds in rev for d in ds], [d for ds in fwd for d in ds], rtol=1e-4, atol=2e-6)


@pytest.mark.parametrize("rcps", [True, False])
def test_multi_output_heads(rcps, genome):
    classes = HeadConfig(classes=("a", "b", "c"), window=64)
    targets = HeadConfig(task="regression", targets=("gc", "expr"), target_mean=(0.4, 2.0), target_std=(0.1, 3.0))
    plans = snv_sites(genome)[:3] + indel_sites(genome)[:1]
    for head in (classes, targets):
        model = random_head(rcps, head, seed=int(rcps))
        scorer = DeltaScorer(model, window=64)
        assert [n for n, _ in scorer.fields] == (
            ["CAD_DELTA_prob_a", "CAD_DELTA_prob_b", "CAD_DELTA_prob_c"]
            if head is classes
            else ["CAD_DELTA_gc", "CAD_DELTA_expr"]
        )
        got = scorer.score(plans)
        for p, ds in zip(plans, got, strict=True):
            ref_ids, alt_ids = crops(p.alleles[0], 64)
            ref = head_outputs(model, ref_ids)[0]  # probabilities / targets
            alt = head_outputs(model, alt_ids)[0]
            want = np.log(alt) - np.log(ref) if head is classes else alt - ref
            assert len(ds[0]) == len(scorer.fields)
            np.testing.assert_allclose(ds[0], want, rtol=1e-4, atol=1e-5)
        rc_got = scorer.score([rc_site(p) for p in plans[:3]])
        tol = dict(rtol=0, atol=0) if not rcps else dict(rtol=1e-4, atol=1e-5)  # Ph: bit-identical
        np.testing.assert_allclose(np.array(rc_got), np.array(got[:3]), **tol)


def test_real_planner_sites(tuned):
    """Real chr20 SNVs and indels planned by ``SitePlanner`` (indels normalised) in 200 bp windows."""
    from caduceus_cli.inference.planner import SitePlanner, WindowLayout
    from caduceus_cli.io.reference import Reference
    from caduceus_cli.io.vcf import VariantReader

    variants = []
    for name in ("chr20_pysam_20.vcf.gz", "chr20_vt_indels.vcf.gz"):
        with VariantReader(str(DATA / name)) as reader:
            variants += list(reader.variants())[:12]
    variants.append(Variant("20", variants[0].pos1, variants[0].ref, (*variants[0].alts, "<DEL>"), index=99))
    ref = Reference(DATA / "chr20_slices.fa.gz")
    try:
        plans = [SitePlanner(ref, WindowLayout(window=W)).plan(v) for v in variants]
    finally:
        ref.close()
    scorable = [p for p in plans if p.alleles]
    assert len(scorable) >= 8 and any(a.kind == "indel" for p in scorable for a in p.alleles.values())
    got = DeltaScorer(tuned, batch_size=5).score(plans)
    for p, ds in zip(plans, got, strict=True):
        assert len(ds) == p.n_alts and [d is not None for d in ds] == [j in p.alleles for j in range(p.n_alts)]
        for j, al in p.alleles.items():
            np.testing.assert_allclose(ds[j], direct(tuned, al, 64), rtol=1e-5, atol=1e-6)
    assert got[-1][-1] is None and got[-1][0] == got[0][0]
