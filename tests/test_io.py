"""The IO layer: Variant values from VCFs and tables, counting from the index, writers, atomic outputs."""

import gzip

import pysam
import pytest

from caduceus_cli.choices import OutputType
from caduceus_cli.errors import InputFileError, OptionError
from caduceus_cli.io.atomic import AtomicOutput
from caduceus_cli.io.tables import read_variant_table
from caduceus_cli.io.variant import Variant, allele_class
from caduceus_cli.io.vcf import VariantReader, count_records
from caduceus_cli.io.writers import Annotation, TsvWriter, VcfWriter, add_header_lines, output_format
from tests.conftest import DATA


def test_variant_coordinates_and_allele_classes():
    v = Variant("22", 20000950, "T", ("G", "<DEL>"), None, 3)
    assert v.pos0 == 20000949 and v.n_alts == 2 and v.label() == "22:20000950"
    with pytest.raises(AttributeError):
        v.pos1 = 1  # frozen
    assert [allele_class("A", a) for a in ("G", "GT", "<DEL>", "*", "A[1:5[", "R")] == [
        "snv",
        "indel",
        "symbolic",
        "symbolic",
        "symbolic",
        "symbolic",
    ]
    assert allele_class("AC", "GT") == "mnv"


def test_reader_builds_variants_in_input_order():
    path = str(DATA / "chr22_10donors.vcf.gz")
    with VariantReader(path) as reader:
        pairs = list(reader)
    lines = [x.split("\t") for x in gzip.open(path, "rt") if not x.startswith("#")]
    assert len(pairs) == len(lines) == 2485
    for i in (0, 1, 1000, 2484):
        v, rec = pairs[i]
        assert v.index == i and (v.chrom, str(v.pos1), v.ref, ",".join(v.alts)) == (
            lines[i][0],
            lines[i][1],
            lines[i][3],
            lines[i][4],
        )
        assert v.id == (None if lines[i][2] == "." else lines[i][2]) and rec.pos == v.pos1


def test_count_records_reads_the_index_only(tmp_path):
    assert count_records(str(DATA / "chr22_10donors.vcf.gz")) == 2485  # .tbi beside it
    assert count_records(str(DATA / "chr20_pysam_20.vcf.gz")) is None  # no index: no total, no extra pass
    assert count_records("-") is None


def test_tables_build_variants_with_row_index(tmp_path):
    t = tmp_path / "t.tsv"
    t.write_text("chromosome\tposition\tref\talt\tlabel\n22\t20000950\tt\tg\t1\nchr22\t20001006\tG\tA\t0\n")
    table = read_variant_table(str(t))
    assert table.variants == [
        Variant("22", 20000950, "T", ("G",), None, 0),
        Variant("chr22", 20001006, "G", ("A",), None, 1),
    ]
    assert table.where(1) == f"{t}: row 2 (chr22:20001006 G>A)"


def _one_record(tmp_path):
    src = tmp_path / "in.vcf"
    src.write_text(
        '##fileformat=VCFv4.2\n##contig=<ID=22>\n##INFO=<ID=DP,Number=1,Type=Integer,Description="depth">\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n'
        "22\t100\tv1\tA\tG,T\t.\t.\tDP=3\n22\t200\t.\tC\t.\t.\t.\t.\n"
    )
    reader = VariantReader(str(src))
    add_header_lines(reader.header, {"version": "x"}, ("CAD_LLR", "CAD_COS"))
    return reader, [rec for _, rec in reader]


def test_vcf_writer_annotates_a_copy_and_indexes(tmp_path):
    reader, recs = _one_record(tmp_path)
    out = tmp_path / "o.vcf.gz"
    w = VcfWriter(str(out), OutputType.VCF_GZ, reader.header)
    w.write(recs[0], Annotation((0.5, None), (0.25, None), ("SYMBOLIC",)))
    w.write(recs[1], Annotation((), (), ()))
    w.close(True)
    assert "CAD_LLR" not in recs[0].info  # the caller's record is untouched
    with pysam.VariantFile(str(out)) as vf:
        got = list(vf.fetch("22", 99, 100))
    assert got[0].info["CAD_LLR"] == (0.5, None) and got[0].info["CAD_FLAG"] == ("SYMBOLIC",)
    assert got[0].info["DP"] == 3 and (tmp_path / "o.vcf.gz.tbi").exists()
    reader.close()


def test_tsv_writer_one_row_per_alt(tmp_path):
    reader, recs = _one_record(tmp_path)
    out = tmp_path / "o.tsv"
    w = TsvWriter(str(out), {"version": "x"}, ("CAD_LLR", "CAD_COS", "CAD_PROB"))
    w.write(recs[0], Annotation((0.5, None), (0.25, None), ("SYMBOLIC",), (0.9, None)))
    w.write(recs[1], Annotation((), (), (), ()))
    w.close(True)
    lines = out.read_text().splitlines()
    assert lines[0] == "# caduceus_version=x"
    assert lines[2:] == [
        "22\t100\tv1\tA\tG\t0.5\t0.25\tSYMBOLIC\t0.9",
        "22\t100\tv1\tA\tT\t.\t.\tSYMBOLIC\t.",
        "22\t200\t.\tC\t.\t.\t.\t.\t.",
    ]
    reader.close()


def test_output_format_and_atomic_output(tmp_path):
    assert [output_format(p, None) for p in ("-", "a.vcf", "a.vcf.gz", "a.bcf", "a.tsv.gz")] == [
        OutputType.VCF,
        OutputType.VCF,
        OutputType.VCF_GZ,
        OutputType.BCF,
        OutputType.TSV,
    ]
    assert output_format("a.vcf", "tsv") == OutputType.TSV
    with pytest.raises(OptionError, match="-O q: expected one of v, z, b, tsv"):
        output_format("a.vcf", "q")
    a = AtomicOutput(str(tmp_path / "x.txt"))
    with open(a.tmp, "w") as fh:
        fh.write("partial")
    a.abort()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(InputFileError, match="output folder .* does not exist"):
        AtomicOutput(str(tmp_path / "no" / "x.txt"))


def test_output_edge_cases_through_the_cli(tmp_path):
    """Unsorted records: written in full, left unindexed with a warning; -O z to stdout is bgzip;
    an output folder that cannot be written is one line, exit 3, nothing left behind."""
    import subprocess
    import sys

    from tests.conftest import GOLDEN

    src = tmp_path / "unsorted.vcf"
    src.write_text(
        "##fileformat=VCFv4.2\n##contig=<ID=22>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
        "22\t20001006\tb\tG\tA\t.\t.\t.\n22\t20000950\ta\tT\tG\t.\t.\t.\n"
    )
    base = [
        sys.executable,
        "-m",
        "caduceus_cli",
        "score-vcf",
        str(src),
        "--ref",
        str(DATA / "chr22_slice.fa.gz"),
        "--model",
        str(GOLDEN / "caduceus_ps_d64_n2"),
        "--window",
        "64",
        "-q",
    ]
    p = subprocess.run(base + ["-o", str(tmp_path / "o.vcf.gz")], capture_output=True, text=True)
    assert p.returncode == 0 and "not indexed: its records are not sorted" in " ".join(p.stderr.split())
    with pysam.VariantFile(str(tmp_path / "o.vcf.gz")) as vf:
        assert [r.id for r in vf] == ["b", "a"]
    assert not (tmp_path / "o.vcf.gz.tbi").exists()
    z = subprocess.run(base + ["-O", "z", "-o", "-"], capture_output=True)
    assert z.returncode == 0 and z.stdout[:2] == b"\x1f\x8b"
    assert [x.split("\t")[2] for x in gzip.decompress(z.stdout).decode().splitlines() if x[0] != "#"] == ["b", "a"]
    not_a_folder = tmp_path / "file.txt"
    not_a_folder.write_text("x")
    bad = subprocess.run(base + ["-o", str(not_a_folder / "o.vcf")], capture_output=True, text=True)
    assert bad.returncode == 3 and "cannot write in" in bad.stderr and "Traceback" not in bad.stderr
    assert sorted(x.name for x in tmp_path.iterdir()) == ["file.txt", "o.vcf.gz", "unsorted.vcf"]


@pytest.mark.parametrize("declared", ["all", "some", "none"])
def test_bgzip_vcf_to_bcf_keeps_every_record_and_declares_their_contigs(tmp_path, declared):
    """One pass when the header declares the records' contigs, else they are added first: the BCF
    holds every record in order either way."""
    from caduceus_cli.io.writers import bgzip_vcf_to_bcf

    head = {"all": "##contig=<ID=chr1>\n##contig=<ID=chr2>\n", "some": "##contig=<ID=chr2>\n", "none": ""}[declared]
    body = "".join(f"{c}\t{p}\t.\tA\tG\t.\tPASS\t.\n" for c, p in [("chr1", 5), ("chr1", 9), ("chr2", 3), ("chrX", 7)])
    if declared == "all":
        head += "##contig=<ID=chrX>\n"
    text = tmp_path / "in.vcf.gz"
    with pysam.BGZFile(str(text), "wb") as fh:
        fh.write(f"##fileformat=VCFv4.2\n{head}#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n{body}".encode())
    bcf = tmp_path / "out.bcf"
    bgzip_vcf_to_bcf(str(text), str(bcf))
    with pysam.VariantFile(str(bcf)) as got:
        assert {"chr1", "chr2", "chrX"} <= set(got.header.contigs)
        assert [(r.chrom, r.pos) for r in got] == [("chr1", 5), ("chr1", 9), ("chr2", 3), ("chrX", 7)]


def test_the_reader_knows_every_field_score_vcf_writes():
    """A file scored before is recognised by the fields the writers declare (their values are cleared)."""
    from caduceus_cli.io.vcf import OWN_INFO, is_own_field
    from caduceus_cli.io.writers import INFO_FIELDS

    assert set(OWN_INFO) == set(INFO_FIELDS)
    assert is_own_field("CAD_DELTA_expr") and not is_own_field("CADD_PHRED")
