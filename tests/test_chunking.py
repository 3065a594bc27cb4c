"""The cut rule, shards, regions and the parts folder, without the model."""

from __future__ import annotations

import gzip
import random
from pathlib import Path

import pysam
import pytest

from caduceus_cli.choices import OutputType
from caduceus_cli.errors import InputFileError, OptionError
from caduceus_cli.inference.chunking import RUN_LIMIT, Chunker, Shard, chunk_ends, chunk_key, split_ranges
from caduceus_cli.inference.distributed import Ranks
from caduceus_cli.inference.planner import WindowLayout
from caduceus_cli.io.checkpoint import BGZF_EOF, Checkpoint
from caduceus_cli.io.regions import Regions, parse_region
from caduceus_cli.io.vcf import VariantReader

DATA = Path(__file__).parent / "data"
DONORS = DATA / "chr22_10donors.vcf.gz"


def _chunks_by_rule(keys: list, size: int) -> list[list]:
    """The cut rule written out naively: buffer; at >= size records cut before the trailing run of the last key."""
    out, buf = [], []
    for k in keys:
        buf.append(k)
        if len(buf) >= size:
            cut = len(buf)
            while cut and buf[cut - 1] == buf[-1]:
                cut -= 1
            if cut == 0 and len(buf) < RUN_LIMIT * size:
                continue
            cut = cut or len(buf)
            out.append(buf[:cut])
            buf = buf[cut:]
    if buf:
        out.append(buf)
    return out


@pytest.mark.parametrize("size", [1, 3, 8])
def test_chunk_ends_follow_the_rule_and_restart_at_any_cut(size):
    rng = random.Random(size)
    keys = sorted(rng.choice(range(40)) for _ in range(300)) + [99] * (RUN_LIMIT * size + 5)
    ends = chunk_ends(keys, size)
    naive = _chunks_by_rule(keys, size)
    assert ends == [sum(len(c) for c in naive[: i + 1]) for i in range(len(naive))]
    assert ends[-1] == len(keys)
    for start in ends[:-1]:  # a run that starts at a cut cuts the rest where a whole run does
        assert [start + e for e in chunk_ends(keys[start:], size)] == [e for e in ends if e > start]
    if size > 1:  # a position's records stay together unless their run is too long
        for e in ends[:-1]:
            assert keys[e - 1] != keys[e] or e - ends[ends.index(e) - 1] >= RUN_LIMIT * size


def test_chunk_key_is_the_tile_for_shared_windows():
    centred, shared = WindowLayout(1024), WindowLayout(1024, core=512)
    assert chunk_key(centred, "22", 1000) == ("22", 1000)
    assert chunk_key(shared, "22", 1000) == chunk_key(shared, "22", 600) != chunk_key(shared, "22", 1100)


def test_split_ranges_whole_chunks_balanced():
    ends = list(range(10, 1001, 10))
    ranges = split_ranges(ends, 3)
    assert ranges[0][0] == 0 and ranges[-1][1] == 1000
    assert all(a == b for (_, a), (b, _) in zip(ranges, ranges[1:], strict=False))
    assert all(e in ends for _, e in ranges) and max(e - s for s, e in ranges) - min(e - s for s, e in ranges) <= 10
    assert split_ranges([5], 3) == [(0, 5), (5, 5), (5, 5)]  # more shards than chunks: some are empty
    assert split_ranges([], 2) == [(0, 0), (0, 0)]


def test_shard_and_chunker_errors():
    assert Shard.parse("2/8") == Shard(2, 8) and str(Shard(2, 8)) == "2/8"
    for bad in ("0/3", "4/3", "3", "a/b"):
        with pytest.raises(OptionError, match="--chunk"):
            Shard.parse(bad)
    with pytest.raises(OptionError):
        Chunker(0)


def test_regions_parse_merge_and_overlap():
    assert (parse_region("22:101-200").start, parse_region("22:101-200").end) == (100, 200)
    assert parse_region("22:1,000-2,000").start == 999
    r = Regions.parse(["22:101-200,22:150-300", "X"])
    assert [(iv.chrom, iv.start, iv.end) for iv in r.intervals if iv.chrom == "22"] == [("22", 100, 300)]
    assert r.overlaps("22", 99, 101) and not r.overlaps("22", 99, 100) and r.overlaps("X", 5, 6)
    assert not r.overlaps("21", 150, 151)
    for bad in ("22:0-5", "22:9-5", ":5"):
        with pytest.raises(OptionError):
            parse_region(bad)
    assert Regions.parse([], None) is None


def test_regions_read_through_the_index_or_the_stream(tmp_path):
    regions = Regions.parse(["22:20100000-20150000,22:20140000-20200000", "22:20500000-20500500"])
    with VariantReader(DONORS, regions) as reader:
        fetched = [(v.chrom, v.pos1, v.ref, v.alts) for v in reader.variants()]
    plain = tmp_path / "plain.vcf"
    plain.write_bytes(gzip.decompress(DONORS.read_bytes()))  # no index: filtered as a stream
    with VariantReader(plain, regions) as reader:
        streamed = [(v.chrom, v.pos1, v.ref, v.alts) for v in reader.variants()]
    with pysam.VariantFile(str(DONORS)) as vf:
        expected = [
            (r.chrom, r.pos, r.ref, r.alts)
            for r in vf
            if (20099999 < r.stop and r.start < 20200000) or (20499999 < r.stop and r.start < 20500500)
        ]
    assert fetched == streamed == expected and len(expected) > 50


def test_checkpoint_parts_todo_and_assembly(tmp_path):
    out = str(tmp_path / "o.vcf.gz")
    ck = Checkpoint(out)
    header = "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
    run = {"input_sha256": "x", "range": [0, 6]}
    assert ck.start(run, header, resume=False) is False
    for first, end in ((0, 2), (4, 6)):
        w = ck.writer(first)
        w.write("".join(f"22\t{i + 1}\t.\tA\tC\t.\t.\t.\n" for i in range(first, end)))
        w.stats.records = end - first
        w.close(end)
    assert ck.todo(0, 6) == [(2, 4)] and ck.todo(0, None) == [(2, 4), (6, None)]
    with pytest.raises(InputFileError, match="--resume"):
        Checkpoint(out).start(run, header, resume=False)
    with pytest.raises(InputFileError, match="input_sha256"):
        Checkpoint(out).start(run | {"input_sha256": "y"}, header, resume=True)
    with pytest.raises(InputFileError, match="records 2-4 have no part"):
        ck.assemble(0, 6, OutputType.VCF_GZ)
    w = ck.writer(2)
    w.write("".join(f"22\t{i + 1}\t.\tA\tC\t.\t.\t.\n" for i in (2, 3)))
    w.stats.records = 2
    w.close(4)
    assert ck.assemble(0, 6, OutputType.VCF_GZ).records == 6
    assert not ck.dir.exists() and Path(out + ".tbi").exists()
    raw = Path(out).read_bytes()
    assert raw.endswith(BGZF_EOF) and raw.count(BGZF_EOF) == 1
    with pysam.VariantFile(out) as vf:
        assert [r.pos for r in vf] == [1, 2, 3, 4, 5, 6]


def test_ranks_from_env():
    assert Ranks.from_env({}) == Ranks()
    r = Ranks.from_env({"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"})
    assert (r.rank, r.world, r.many, r.label()) == (1, 2, True, "rank 2/2 ")
    assert r.device("cpu") == "cpu"
