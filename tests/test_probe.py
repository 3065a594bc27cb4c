"""finetune --method probe and score-vcf --probe on real SNVs with a sequence-context label (see conftest)."""

import json
import math

import numpy as np
import pysam
import pytest

from caduceus_cli.errors import ProbeError, TableError
from caduceus_cli.pipelines.embed import EmbedOptions, read_embeddings
from caduceus_cli.pipelines.finetune_probe import FinetuneOptions, finetune_probe
from caduceus_cli.pipelines.score_vcf import ScoreOptions, score_vcf
from caduceus_cli.probe.evaluation import bucket_masks, evaluate
from caduceus_cli.probe.model import Probe, ProbeOptions
from tests.conftest import DATA, GOLDEN

EMBED = EmbedOptions(window=128, flank=32, batch_size=32)
FAST = ProbeOptions(seeds=2, train_rows=5000)


@pytest.fixture(scope="module")
def heldout_run(labelled_table, two_chrom_reference, tmp_path_factory):
    out = tmp_path_factory.mktemp("probe_run")
    report = finetune_probe(
        str(labelled_table),
        str(out),
        None,
        str(two_chrom_reference),
        EMBED,
        FinetuneOptions(test_chroms=("22",), bootstrap=200, probe=FAST),
    )
    return out, report


def test_probe_beats_chance_on_held_out_chromosome(heldout_run):
    out, report = heldout_run
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == report.n_test == 148  # every chr22 SNV is a test row
    assert metrics["auroc"] > 0.8 and metrics["auroc_ci"][0] > 0.6
    assert metrics["auprc"] > metrics["chance_auprc"] + 0.15
    assert set(metrics["buckets"]) == {"0-30k", "30k-100k", ">100k"}
    assert sum(b["n"] for b in metrics["buckets"].values()) == metrics["n"]
    assert len(metrics["per_seed_auroc"]) == 2 and all(a > 0.7 for a in metrics["per_seed_auroc"])
    for name in ("probe.joblib", "roc.png", "report.json", "predictions.tsv", "embeddings.parquet"):
        assert (out / name).stat().st_size > 0
    assert (out / "roc.png").read_bytes()[:4] == b"\x89PNG"
    assert set(report.chosen_c) <= {1.0, 5.0, 10.0}


def test_scores_are_continuous_not_hard_labels(heldout_run):
    out, _ = heldout_run
    scores = [float(line.split("\t")[-1]) for line in (out / "predictions.tsv").read_text().splitlines()[1:]]
    assert len(set(np.round(scores, 6))) > 100


def test_grouped_cv_from_embeddings_file(heldout_run, tmp_path):
    """Re-uses embed's Parquet (no model run); one chromosome -> contiguous genomic blocks as groups."""
    out, _ = heldout_run
    cols, X, spec = read_embeddings(str(out / "embeddings.parquet"))
    assert X.shape == (298, 256) and spec.window == 128 and spec.flank == 32 and spec.kind == "variant"
    report = finetune_probe(
        str(out / "embeddings.parquet"),
        str(tmp_path),
        opts=FinetuneOptions(split="cv", folds=4, bootstrap=0, probe=ProbeOptions(classifier="logreg", seeds=1)),
    )
    assert report.n_test == 298  # out-of-fold scores for every row
    assert report.metrics["auroc"] > 0.75
    assert len(report.metrics["per_fold_auroc"]) == 4


def test_probe_round_trips_into_score_vcf(heldout_run, labelled_table, two_chrom_reference, tmp_path):
    out, report = heldout_run
    probe = Probe.load(out / "probe.joblib")
    assert probe.tissues == ("Liver", "Whole_Blood") and probe.spec.window == 128
    # the table's chr22 SNVs as a VCF, plus a multi-allelic and an indel record
    rows = [x.split("\t") for x in labelled_table.read_text().splitlines()[1:] if x.startswith("chr22")]
    body = [f"22\t{r[1]}\t.\t{r[2]}\t{r[3]}\t.\t.\t." for r in rows]
    r0 = rows[0]
    other = next(b for b in "ACGT" if b not in (r0[2], r0[3]))
    body.insert(1, f"22\t{int(r0[1]) + 1}\tmulti\tN\tA,C\t.\t.\t.")  # REF N: flagged, kept
    body.insert(0, f"22\t{r0[1]}\tmulti2\t{r0[2]}\t{r0[3]},{other},{r0[2]}TT\t.\t.\t.")
    vcf = tmp_path / "in.vcf"
    vcf.write_text(
        "##fileformat=VCFv4.2\n##contig=<ID=22>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
        + "\n".join(body)
        + "\n"
    )
    scored = tmp_path / "scored.vcf"
    score_vcf(
        str(vcf),
        str(two_chrom_reference),
        str(scored),
        None,
        ScoreOptions(probe=str(out / "probe.joblib"), tissue="Liver", batch_size=32),
    )
    recs = list(pysam.VariantFile(str(scored)))
    assert len(recs) == len(body) == 150
    assert "ID=CAD_PROB,Number=A,Type=Float" in str(recs[0].header)
    assert "##caduceus_probe=<file=" in str(recs[0].header)
    assert len(recs[0].info["CAD_PROB"]) == 3 and all(0.0 <= p <= 1.0 for p in recs[0].info["CAD_PROB"])
    # the same probability as the probe applied to embed's features of those variants
    cols, X, _ = read_embeddings(str(out / "embeddings.parquet"))
    index = {(c, p, a): i for i, (c, p, a) in enumerate(zip(cols["chrom"], cols["pos"], cols["alt"], strict=True))}
    hits = [(r, index[("chr22", r.pos, r.alts[0])]) for r in recs if r.id is None]
    assert len(hits) == 148
    want = probe.probability(X[[i for _, i in hits]], ["Liver"] * len(hits))
    got = [r.info["CAD_PROB"][0] for r, _ in hits]
    assert np.allclose(got, want, atol=1e-5)


def test_score_vcf_refuses_a_probe_for_another_model_window_or_tissue(heldout_run, two_chrom_reference, tmp_path):
    out, _ = heldout_run
    vcf, ref, probe = str(DATA / "chr22_10donors.vcf.gz"), str(two_chrom_reference), str(out / "probe.joblib")
    with pytest.raises(ProbeError, match="different features.*model_sha256"):
        score_vcf(
            vcf,
            ref,
            str(tmp_path / "a.vcf"),
            str(GOLDEN / "caduceus_ps_d64_n2"),
            ScoreOptions(probe=probe, tissue="Liver"),
        )
    with pytest.raises(ProbeError, match="window 128 vs 256"):
        score_vcf(vcf, ref, str(tmp_path / "b.vcf"), None, ScoreOptions(probe=probe, tissue="Liver", window=256))
    with pytest.raises(ProbeError, match="--tissue"):
        score_vcf(vcf, ref, str(tmp_path / "c.vcf"), None, ScoreOptions(probe=probe))
    with pytest.raises(ProbeError, match="'Lung' was not in"):
        score_vcf(vcf, ref, str(tmp_path / "d.vcf"), None, ScoreOptions(probe=probe, tissue="Lung"))
    (tmp_path / "junk.joblib").write_bytes(b"not a probe")
    with pytest.raises(ProbeError, match="not a readable probe"):
        Probe.load(tmp_path / "junk.joblib")
    assert not list(tmp_path.glob("*.vcf"))  # nothing half-written


def test_bad_tables_get_clear_errors(labelled_table, two_chrom_reference, tmp_path):
    lines = labelled_table.read_text().splitlines()
    header, rows = lines[0], lines[1:]

    def run(text, name="t.tsv", **kw):
        (tmp_path / name).write_text(text)
        return finetune_probe(
            str(tmp_path / name),
            str(tmp_path / "o"),
            None,
            str(two_chrom_reference),
            EMBED,
            FinetuneOptions(test_chroms=("22",), bootstrap=0, probe=FAST),
            **kw,
        )

    no_label = "\n".join("\t".join(x.split("\t")[:4]) for x in lines) + "\n"
    with pytest.raises(TableError, match=r"missing column\(s\) label .*--columns label=YOUR_COLUMN"):
        run(no_label)
    bad_ref = rows[5].split("\t")
    bad_ref[2] = {"A": "C", "C": "G", "G": "T", "T": "A"}[bad_ref[2]]
    with pytest.raises(TableError, match=r"row 6 \(chr20:\d+ .*REF does not match"):
        run("\n".join([header, *rows[:5], "\t".join(bad_ref)]) + "\n")
    with pytest.raises(TableError, match=r"row 1 \(chr7:.*chromosome is not in the reference"):
        run(header + "\n" + "\t".join(["chr7"] + rows[0].split("\t")[1:]) + "\n")
    with pytest.raises(TableError, match="row 2: label 'maybe' is not binary"):
        run(
            header
            + "\n"
            + rows[0]
            + "\n"
            + "\t".join(rows[1].split("\t")[:4] + ["maybe"] + rows[1].split("\t")[5:])
            + "\n"
        )
    with pytest.raises(TableError, match="row 1: position 12.5 is not a 1-based integer"):
        run(header + "\n" + "\t".join(rows[0].split("\t")[:1] + ["12.5"] + rows[0].split("\t")[2:]) + "\n")
    with pytest.raises(ProbeError, match="--test-chroms 9,10 leaves no test rows .*20, 22"):
        finetune_probe(
            str(labelled_table),
            str(tmp_path / "o2"),
            None,
            str(two_chrom_reference),
            EMBED,
            FinetuneOptions(bootstrap=0, probe=FAST),
        )


def test_column_mapping_and_csv(labelled_table, tmp_path):
    rows = [x.split("\t") for x in labelled_table.read_text().splitlines()]
    rows[0] = ["chr", "pos1", "REF", "ALT", "is_causal", "tissue", "tss"]
    (tmp_path / "t.csv").write_text("\n".join(",".join(r) for r in rows[:120]) + "\n")
    from caduceus_cli.io.tables import parse_column_map, read_variant_table

    table = read_variant_table(str(tmp_path / "t.csv"), parse_column_map("label=is_causal,distance_to_nearest_tss=tss"))
    assert len(table) == 119 and table.variants[0].chrom == "chr20" and table.variants[0].pos1 == int(rows[1][1])
    assert set(table.columns["label"]) == {0, 1} and "distance_to_nearest_tss" in table.columns
    with pytest.raises(TableError, match="maps label to 'nope'"):
        read_variant_table(str(tmp_path / "t.csv"), parse_column_map("label=nope"))
    with pytest.raises(TableError, match="--columns 'foo=bar'"):
        parse_column_map("foo=bar")


def test_metrics_buckets_and_bootstrap():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 600)
    score = y + rng.normal(0, 1.0, 600)
    dist = rng.choice([0, 5_000, 30_000, 30_001, 99_999, 100_000, 100_001, 2e6], 600) * rng.choice([-1, 1], 600)
    m = evaluate(y, score, dist, n_boot=200)
    masks = bucket_masks(np.array([0, 30_000, 30_001, 100_000, 100_001, -5, math.nan]))
    assert masks["0-30k"].tolist() == [True, True, False, False, False, True, False]
    assert masks["30k-100k"].tolist() == [False, False, True, True, False, False, False]
    assert masks[">100k"].tolist() == [False, False, False, False, True, False, False]
    assert 0.7 < m["auroc"] < 0.85 and m["auroc_ci"][0] < m["auroc"] < m["auroc_ci"][1]
    assert sum(b["n"] for b in m["buckets"].values()) == 600
    one_class = evaluate(np.ones(10), np.arange(10.0))
    assert one_class["auroc"] is None and one_class["n"] == 10
