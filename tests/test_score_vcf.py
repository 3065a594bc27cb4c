"""score-vcf on real data (copies of ../shared/data in tests/data; see make_test_data.py)."""

import gzip
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pysam
import pytest

from caduceus_cli.errors import InputFileError, ReferenceError_
from caduceus_cli.pipelines.score_vcf import ScoreOptions, score_vcf
from tests.conftest import DATA, GOLDEN, mirrored_snvs

PS = str(GOLDEN / "caduceus_ps_d64_n2")
PH = str(GOLDEN / "caduceus_ph_d64_n2")
OPTS = ScoreOptions(window=301, flank=50, batch_size=16)


def records(path):
    with pysam.VariantFile(str(path)) as vf:
        return list(vf)


def input_keys(path):
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt") as fh:
        return [tuple(line.split("\t")[:5]) for line in fh if not line.startswith("#")]


@pytest.mark.parametrize("vcf", ["chr20_pysam_20.vcf.gz", "chr20_vt_indels.vcf.gz"])
def test_every_record_in_order_and_every_alt_annotated_or_flagged(vcf, tmp_path):
    out = tmp_path / "out.vcf.gz"
    summary = score_vcf(str(DATA / vcf), str(DATA / "chr20_slices.fa.gz"), str(out), PS, OPTS)
    got = records(out)
    keys = [(r.chrom, str(r.pos), r.id or ".", r.ref, ",".join(r.alts or ())) for r in got]
    assert keys == input_keys(DATA / vcf)
    assert summary.records == len(got)
    for r in got:
        if not r.alts:
            continue
        cos, flags = r.info.get("CAD_COS"), r.info.get("CAD_FLAG", ())
        assert len(cos) == len(r.alts)
        for i, alt in enumerate(r.alts):
            assert cos[i] is not None or flags, f"{r.chrom}:{r.pos} ALT {alt} neither scored nor flagged"
        if all(len(a) == len(r.ref) for a in r.alts) and not flags:
            assert all(x is not None for x in r.info["CAD_LLR"])
    # bgzip output is indexed and readable through the index
    with pysam.VariantFile(str(out)) as vf:
        first = got[0]
        assert any(True for _ in vf.fetch(first.chrom, first.pos - 1, first.pos))


def test_multiallelic_indels_and_symbolic(tmp_path):
    src = tmp_path / "in.vcf"
    src.write_text(
        "##fileformat=VCFv4.2\n##contig=<ID=22>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
        "22\t20000950\tm1\tT\tG,C,<DEL>\t.\t.\t.\n"
        "22\t20001006\tm2\tG\tGAC,*\t.\t.\t.\n"
        "22\t20001684\tm3\tCG\tC\t.\t.\t.\n"
        "22\t20001684\tm4\tC\tA[22:20002000[\t.\t.\t.\n"
    )
    ref = DATA / "chr22_slice.fa.gz"
    out = tmp_path / "o.vcf"
    score_vcf(str(src), str(ref), str(out), PS, OPTS)
    r = records(out)
    assert [x.id for x in r] == ["m1", "m2", "m3", "m4"]
    assert r[0].info["CAD_LLR"][0] is not None and r[0].info["CAD_LLR"][1] is not None
    assert r[0].info["CAD_LLR"][2] is None and "SYMBOLIC" in r[0].info["CAD_FLAG"]
    assert r[1].info["CAD_COS"][0] is not None and r[1].info["CAD_LLR"][0] is not None  # insertion: PLL difference
    assert r[2].info["CAD_COS"][0] is not None  # deletion
    assert r[3].info["CAD_COS"][0] is None and "SYMBOLIC" in r[3].info["CAD_FLAG"]
    # REF mismatch: C is not what chr22 has at 20000950 (T)
    bad = tmp_path / "bad.vcf"
    bad.write_text(src.read_text().replace("22\t20000950\tm1\tT\t", "22\t20000950\tm1\tC\t"))
    score_vcf(str(bad), str(ref), str(tmp_path / "b.vcf"), PS, OPTS)
    assert "REF_MISMATCH" in records(tmp_path / "b.vcf")[0].info["CAD_FLAG"]
    with pytest.raises(ReferenceError_, match="22:20000950: REF C does not match"):
        score_vcf(str(bad), str(ref), str(tmp_path / "c.vcf"), PS, ScoreOptions(window=301, strict=True))
    assert not (tmp_path / "c.vcf").exists()  # nothing half-written


def test_missing_contig_and_chr_prefix(tmp_path):
    src = tmp_path / "in.vcf"
    src.write_text(
        "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
        "chr22\t20000950\ta\tT\tG\t.\t.\t.\n"
        "chr7\t100\tb\tA\tG\t.\t.\t.\n"
        "22\t5\tc\tN\tA\t.\t.\t.\n"
    )
    out = tmp_path / "o.tsv"
    s = score_vcf(str(src), str(DATA / "chr22_slice.fa.gz"), str(out), PS, OPTS)
    rows = [line.split("\t") for line in out.read_text().splitlines() if not line.startswith("#")]
    assert rows[0][:5] == ["chrom", "pos", "id", "ref", "alt"]
    assert rows[1][2] == "a" and rows[1][5] != "."  # chr22 -> 22 reconciled
    assert rows[2][2] == "b" and rows[2][7] == "CONTIG_MISSING"
    assert "EDGE_PADDED" in rows[3][7]  # position 5: window runs past the contig start
    assert s.flags["CONTIG_MISSING"] == 1
    with pytest.raises(ReferenceError_, match="contig chr7 is not in the reference"):
        score_vcf(
            str(src),
            str(DATA / "chr22_slice.fa.gz"),
            str(tmp_path / "x.tsv"),
            PS,
            ScoreOptions(window=301, strict=True),
        )


def test_ps_scores_identical_on_reverse_complemented_reference(tmp_path):
    """A variant on an RC copy of the reference (mirrored position, complemented alleles) scores the same."""
    fa = pysam.FastaFile(str(DATA / "chr22_slice.fa.gz"))
    seq = fa.fetch("22", 20_000_000, 20_010_000).upper()
    fwd, rev, on_fwd, on_rev = mirrored_snvs(seq, (3001, 4567, 7001), tmp_path)
    head = "##fileformat=VCFv4.2\n##contig=<ID=s>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
    lines_f = [f"s\t{p}\tv{i}\t{r}\t{a}\t.\t.\t.\n" for i, (p, r, a) in enumerate(on_fwd)]
    lines_r = [f"s\t{p}\tv{i}\t{r}\t{a}\t.\t.\t.\n" for i, (p, r, a) in enumerate(on_rev)]
    (tmp_path / "f.vcf").write_text(head + "".join(lines_f))
    (tmp_path / "r.vcf").write_text(head + "".join(sorted(lines_r, key=lambda x: int(x.split()[1]))))
    opts = ScoreOptions(window=1001, flank=200)
    score_vcf(str(tmp_path / "f.vcf"), str(fwd), str(tmp_path / "f.out.vcf"), PS, opts)
    score_vcf(str(tmp_path / "r.vcf"), str(rev), str(tmp_path / "r.out.vcf"), PS, opts)
    f = {r.id: r for r in records(tmp_path / "f.out.vcf")}
    r = {x.id: x for x in records(tmp_path / "r.out.vcf")}
    for k in f:
        assert f[k].info["CAD_LLR"][0] == pytest.approx(r[k].info["CAD_LLR"][0], abs=1e-4)
        assert f[k].info["CAD_COS"][0] == pytest.approx(r[k].info["CAD_COS"][0], abs=1e-4)


def test_ph_model_and_10_donor_vcf_keep_samples(tmp_path):
    out = tmp_path / "o.vcf"
    score_vcf(
        str(DATA / "chr22_10donors.vcf.gz"),
        str(DATA / "chr22_slice.fa.gz"),
        str(out),
        PH,
        ScoreOptions(window=201, flank=30, chunk_sites=64, batch_size=32),
    )
    src, got = records(DATA / "chr22_10donors.vcf.gz"), records(out)
    assert len(got) == len(src) == 2485
    assert [r.pos for r in got] == [r.pos for r in src]
    assert [str(r).split("\t")[9:] for r in got[:50]] == [str(r).split("\t")[9:] for r in src[:50]]


def test_cli_stdin_stdout_and_errors(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "caduceus_cli",
        "score-vcf",
        "-",
        "--ref",
        str(DATA / "chr22_slice.fa.gz"),
        "--model",
        PS,
        "--window",
        "101",
        "-o",
        "-",
        "-O",
        "tsv",
        "-q",
    ]
    src = gzip.open(DATA / "chr22_10donors.vcf.gz").read()[:200_000]
    src = src[: src.rfind(b"\n") + 1]
    p = subprocess.run(cmd, input=src, capture_output=True)
    assert p.returncode == 0, p.stderr.decode()
    rows = [x for x in p.stdout.decode().splitlines() if x and not x.startswith("#")]
    assert len(rows) - 1 == sum(1 for x in src.decode().splitlines() if not x.startswith("#"))
    # missing file, truncated gzip, missing reference: one line, no traceback
    trunc = tmp_path / "t.vcf.gz"
    trunc.write_bytes((DATA / "chr22_10donors.vcf.gz").read_bytes()[:100_000])
    for args, pattern in [
        (["nope.vcf"], "nope.vcf: no such variant file"),
        ([str(trunc)], "truncated"),
        ([str(DATA / "chr20_pysam_20.vcf.gz"), "--ref", str(tmp_path / "no.fa")], "reference FASTA not found"),
    ]:
        full = [
            sys.executable,
            "-m",
            "caduceus_cli",
            "score-vcf",
            *args,
            "--model",
            PS,
            "--window",
            "101",
            "-o",
            str(tmp_path / "o.vcf.gz"),
            "-q",
        ]
        if "--ref" not in args:
            full += ["--ref", str(DATA / "chr22_slice.fa.gz")]
        p = subprocess.run(full, capture_output=True, text=True)
        assert p.returncode != 0
        assert pattern in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert not (tmp_path / "o.vcf.gz").exists()


def test_empty_vcf_gives_header_only(tmp_path):
    src = tmp_path / "e.vcf"
    src.write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
    out = tmp_path / "e.out.vcf.gz"
    s = score_vcf(str(src), str(DATA / "chr22_slice.fa.gz"), str(out), PS, OPTS)
    assert s.records == 0 and records(out) == []
    with pysam.VariantFile(str(out)) as vf:
        assert "CAD_LLR" in vf.header.info


def test_unreadable_input_is_input_error(tmp_path):
    bad = tmp_path / "bad.vcf"
    bad.write_text("this is not a vcf\n")
    with pytest.raises(InputFileError):
        score_vcf(str(bad), str(DATA / "chr22_slice.fa.gz"), str(tmp_path / "o.vcf"), PS, OPTS)


def test_bcf_output_is_indexed(tmp_path):
    out = tmp_path / "out.bcf"
    score_vcf(
        str(DATA / "chr20_vt_indels.vcf.gz"),
        str(DATA / "chr20_slices.fa.gz"),
        str(out),
        PS,
        ScoreOptions(window=101, flank=20, batch_size=32),
    )
    assert (tmp_path / "out.bcf.csi").exists()
    got = records(out)
    assert len(got) == len(input_keys(DATA / "chr20_vt_indels.vcf.gz"))
    with pysam.VariantFile(str(out)) as vf:
        hits = list(vf.fetch(got[3].chrom, got[3].pos - 1, got[3].pos))
    assert any(r.pos == got[3].pos and r.info["CAD_COS"] == got[3].info["CAD_COS"] for r in hits)


def test_output_gets_the_usual_file_mode(tmp_path):
    import os

    out = tmp_path / "o.vcf"
    score_vcf(
        str(DATA / "chr20_vt_indels.vcf.gz"),
        str(DATA / "chr20_slices.fa.gz"),
        str(out),
        PS,
        ScoreOptions(window=51, flank=10, batch_size=64),
    )
    mask = os.umask(0)
    os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~mask


def donors(tmp_path, n=30):
    """The header and first ``n`` records of the 10-donor VCF (samples kept), as plain text."""
    lines = gzip.open(DATA / "chr22_10donors.vcf.gz", "rt").read().splitlines(keepends=True)
    body = [x for x in lines if not x.startswith("#")][:n]
    path = tmp_path / "donors.vcf"
    path.write_text("".join(x for x in lines if x.startswith("#")) + "".join(body))
    return path


def test_scoring_a_scored_file_again_replaces_its_annotations(tmp_path):
    ref = str(DATA / "chr22_slice.fa.gz")
    first, again, llr_only = tmp_path / "a.vcf.gz", tmp_path / "b.vcf.gz", tmp_path / "c.vcf"
    src = str(donors(tmp_path))
    score_vcf(src, ref, str(first), PS, OPTS)
    score_vcf(str(first), ref, str(again), PS, OPTS)

    def body(path):  # the header less the command line, and every record
        opener = gzip.open if str(path).endswith(".gz") else open
        with opener(path, "rt") as fh:
            return [line for line in fh if not line.startswith("##caduceus_command")]

    assert body(again) == body(first)
    # a run with other scores keeps no value of the earlier run's, and one provenance block
    score_vcf(str(first), ref, str(llr_only), PS, replace(OPTS, scores=("llr",)))
    text = llr_only.read_text()
    assert text.count("##caduceus_window=") == 1 and text.count("##caduceus_model=") == 1
    got = records(llr_only)
    assert len(got) == len(records(first))
    assert all("CAD_COS" not in r.info for r in got) and any("CAD_LLR" in r.info for r in got)
    # a scored file whose header declares no contig (written through as it came) scores again the same way
    bare = tmp_path / "bare.vcf"
    bare.write_text("".join(x for x in open(src) if not x.startswith("##contig")))
    score_vcf(str(bare), ref, str(tmp_path / "bare1.vcf"), PS, OPTS)
    score_vcf(str(tmp_path / "bare1.vcf"), ref, str(tmp_path / "bare2.vcf"), PS, OPTS)
    assert body(tmp_path / "bare2.vcf") == body(tmp_path / "bare1.vcf")


def test_a_field_declared_otherwise_is_refused(tmp_path):
    src = tmp_path / "in.vcf"
    src.write_text(
        "##fileformat=VCFv4.2\n##contig=<ID=22>\n"
        '##INFO=<ID=CAD_LLR,Number=1,Type=String,Description="another tool">\n'
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n22\t20000950\t.\tT\tG\t.\t.\tCAD_LLR=x\n"
    )
    with pytest.raises(InputFileError, match="INFO/CAD_LLR is already declared as Number=1,Type=String"):
        score_vcf(str(src), str(DATA / "chr22_slice.fa.gz"), str(tmp_path / "o.vcf"), PS, OPTS)


def test_a_text_vcf_cut_inside_a_record_is_refused(tmp_path):
    text = donors(tmp_path).read_text()
    last = text.rstrip("\n").rfind("\n")
    cut = tmp_path / "cut.vcf"
    cut.write_text(text[: last + 60])  # the last record stops inside its INFO column
    with pytest.raises(InputFileError, match=r"cut.vcf: the last record \(22:\d+\) has 8 of 19 columns"):
        score_vcf(str(cut), str(DATA / "chr22_slice.fa.gz"), str(tmp_path / "o.vcf"), PS, OPTS)
    whole = tmp_path / "whole.vcf"
    whole.write_text(text.rstrip("\n"))  # complete, only the last line end missing: read as it is
    s = score_vcf(str(whole), str(DATA / "chr22_slice.fa.gz"), str(tmp_path / "o.vcf"), PS, OPTS)
    assert s.records == 30


def test_past_the_contig_end_and_a_wrong_build(tmp_path, caplog):
    ref = str(DATA / "chr22_slice.fa.gz")
    length = pysam.FastaFile(ref).get_reference_length("22")
    src = tmp_path / "past.vcf"
    src.write_text(
        "##fileformat=VCFv4.2\n##contig=<ID=22>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
        f"22\t{length + 10}\t.\tA\tG\t.\t.\t.\n"
    )
    with pytest.raises(ReferenceError_, match=f"position {length + 10} is past the end of 22 \\({length} bp\\)"):
        score_vcf(str(src), ref, str(tmp_path / "o.vcf"), PS, replace(OPTS, strict=True))
    # every POS moved: most REF alleles disagree, one warning names both files
    lines = donors(tmp_path).read_text().splitlines(keepends=True)
    moved = tmp_path / "moved.vcf"
    moved.write_text(
        "".join(
            x
            if x.startswith("#")
            else "\t".join([x.split("\t")[0], str(int(x.split("\t")[1]) + 7), *x.split("\t")[2:]])
            for x in lines
        )
    )
    s = score_vcf(str(moved), ref, str(tmp_path / "m.vcf"), PS, OPTS)
    assert s.flags["REF_MISMATCH"] >= 0.5 * s.records
    assert any("same genome build" in r.message and "moved.vcf" in r.message for r in caplog.records)


def test_tsv_and_parquet_rows_carry_their_own_alts_flags(tmp_path):
    src = tmp_path / "in.vcf"
    src.write_text(
        "##fileformat=VCFv4.2\n##contig=<ID=22>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
        "22\t20000950\tm1\tT\tG,<DEL>,*\t.\t.\t.\n"
        f"22\t20000950\tm2\tT\t<DEL>,T{'A' * 200}\t.\t.\t.\n"
    )
    out = tmp_path / "o.tsv"
    score_vcf(str(src), str(DATA / "chr22_slice.fa.gz"), str(out), PS, OPTS)
    rows = [x.split("\t") for x in out.read_text().splitlines() if not x.startswith("#")]
    flag = rows[0].index("CAD_FLAG")
    assert [(r[4][:2], r[flag]) for r in rows[1:]] == [
        ("G", "."),
        ("<D", "SYMBOLIC"),
        ("*", "SYMBOLIC"),
        ("<D", "SYMBOLIC"),
        ("TA", "TOO_LONG"),
    ]
    vcf = tmp_path / "o.vcf"
    score_vcf(str(src), str(DATA / "chr22_slice.fa.gz"), str(vcf), PS, OPTS)
    assert records(vcf)[0].info["CAD_FLAG"] == ("SYMBOLIC",)  # the record's flags, as before
    assert records(vcf)[1].info["CAD_FLAG"] == ("SYMBOLIC", "TOO_LONG")
    from caduceus_cli.pipelines.embed import EmbedOptions, embed, read_embeddings

    pq = tmp_path / "o.parquet"
    embed(str(src), str(pq), PS, str(DATA / "chr22_slice.fa.gz"), EmbedOptions(window=301, flank=50))
    columns, X, _ = read_embeddings(str(pq))
    assert columns["flag"] == [None, "SYMBOLIC", "SYMBOLIC", "SYMBOLIC", "TOO_LONG"]
    assert not np.isnan(X[0]).any() and np.isnan(X[1:]).all()
