"""embed: variants, sequences (tiled), regions; Parquet / .npy / .safetensors outputs; RC invariance."""

import numpy as np
import pyarrow.parquet as pq
import pysam
import pytest
import torch

from caduceus_cli.errors import InputFileError, OptionError
from caduceus_cli.inference.engine import WindowEngine
from caduceus_cli.inference.tiling import tiles
from caduceus_cli.io.embeddings import index_path
from caduceus_cli.io.vcf import VariantReader
from caduceus_cli.model.loading import load_model
from caduceus_cli.pipelines.embed import KEY_COLUMNS, EmbedOptions, embed, read_embeddings
from caduceus_cli.tokenizer import encode
from tests.conftest import DATA, GOLDEN, mirrored_snvs

PS = str(GOLDEN / "caduceus_ps_d64_n2")
PH = str(GOLDEN / "caduceus_ph_d64_n2")


@pytest.fixture(scope="module")
def slice_seq():
    with pysam.FastaFile(str(DATA / "chr22_slice.fa.gz")) as fa:
        return fa.fetch("22", 20_100_000, 20_104_000).upper()


def test_tiles_cover_each_position_once():
    for n, W in [(5, 8), (8, 8), (9, 8), (17, 8), (100, 7)]:
        covered = np.zeros(n, int)
        for start, lo, hi in tiles(n, W):
            assert 0 <= start <= lo < hi <= start + W and start + min(W, n) <= n
            covered[lo:hi] += 1
        assert (covered == 1).all()


@pytest.mark.parametrize("model", [PS, PH])
def test_variant_embedding_identical_on_both_strands(model, slice_seq, tmp_path):
    """A variant on the RC copy of the reference (mirrored position, complemented alleles): same features."""
    fwd, rev, on_fwd, on_rev = mirrored_snvs(slice_seq, (1001, 2345, 3001), tmp_path)
    head = "chromosome\tposition\tref\talt\tlabel\n"
    (tmp_path / "f.tsv").write_text(head + "".join(f"s\t{p}\t{r}\t{a}\t1\n" for p, r, a in on_fwd))
    (tmp_path / "r.tsv").write_text(head + "".join(f"s\t{p}\t{r}\t{a}\t1\n" for p, r, a in on_rev))
    opts = EmbedOptions(window=401, flank=50)  # odd window: the variant is the exact centre on both strands
    embed(str(tmp_path / "f.tsv"), str(tmp_path / "f.parquet"), model, str(fwd), opts)
    embed(str(tmp_path / "r.tsv"), str(tmp_path / "r.parquet"), model, str(rev), opts)
    _, xf, spec = read_embeddings(str(tmp_path / "f.parquet"))
    _, xr, _ = read_embeddings(str(tmp_path / "r.parquet"))
    assert xf.shape == (3, spec.dim) and not np.isnan(xf).any()
    np.testing.assert_allclose(xf, xr, rtol=1e-4, atol=1e-5)
    assert np.abs(xf[0] - xf[1]).max() > 1e-3  # different variants, different features


def key_types(path) -> dict[str, str]:
    """The key columns of an embedding Parquet file and their Arrow types."""
    return {f.name: str(f.type) for f in pq.read_schema(str(path)) if f.name != "embedding"}


def test_vcf_rows_per_alt_in_order_with_flags(tmp_path):
    out = tmp_path / "v.parquet"
    summary = embed(
        str(DATA / "chr20_vt_indels.vcf.gz"),
        str(out),
        PS,
        str(DATA / "chr20_slices.fa.gz"),
        EmbedOptions(window=256, flank=40, chunk_sites=64),
    )
    cols, X, spec = read_embeddings(str(out))
    reader = VariantReader(str(DATA / "chr20_vt_indels.vcf.gz"))  # plain gzip: read as a stream
    expected = [(v.pos1, a) for v, _ in reader for a in (v.alts or (None,))]
    reader.close()
    assert list(zip(cols["pos"], cols["alt"], strict=True)) == expected == expected[: summary.rows]
    assert spec.kind == "variant" and spec.dim == 2 * 64 and X.shape == (len(expected), 128)
    flagged = [i for i, f in enumerate(cols["flag"]) if f and ("REF_MISMATCH" in f or "SYMBOLIC" in f)]
    assert all(np.isnan(X[i]).all() for i in flagged)
    assert (~np.isnan(X).any(axis=1)).sum() >= len(expected) - len(flagged)
    assert key_types(out) == KEY_COLUMNS["variant-vcf"]  # what an empty output is given


def test_sequence_pooling_and_per_token_outputs(slice_seq, tmp_path):
    fa = tmp_path / "s.fa"
    seqs = {"short": slice_seq[:100], "exact": slice_seq[200:456], "long": slice_seq[1000:1700]}
    fa.write_text("".join(f">{k} description\n{v}\n" for k, v in seqs.items()))
    opts = EmbedOptions(window=256, batch_size=4)
    embed(str(fa), str(tmp_path / "mean.parquet"), PS, None, opts)
    embed(str(fa), str(tmp_path / "tok.npy"), PS, None, EmbedOptions(window=256, pool="none"))
    embed(str(fa), str(tmp_path / "tok.safetensors"), PS, None, EmbedOptions(window=256, pool="none", rc_mode="both"))
    embed(str(fa), str(tmp_path / "centre.parquet"), PS, None, EmbedOptions(window=256, pool="centre", flank=20))
    cols, means, spec = read_embeddings(str(tmp_path / "mean.parquet"))
    assert cols["id"] == list(seqs) and cols["length"] == [100, 256, 700] and cols["n_windows"] == [1, 1, 3]
    tok = np.load(tmp_path / "tok.npy")
    index = pq.read_table(index_path(str(tmp_path / "tok.npy"))).to_pydict()
    assert tok.shape == (1056, 64) and index["offset"] == [0, 100, 356]
    for i, (off, n) in enumerate(zip(index["offset"], index["length"], strict=True)):
        np.testing.assert_allclose(means[i], tok[off : off + n].mean(0), rtol=1e-5, atol=1e-6)
    # per-token features equal a direct forward of the window that covers them
    engine = WindowEngine(load_model(PS), torch.device("cpu"))
    long_seq = seqs["long"]
    with torch.inference_mode():
        direct = engine.token_features(torch.from_numpy(encode(long_seq[444:700]))[None])[0].numpy()  # last tile
        first = engine.token_features(torch.from_numpy(encode(long_seq[:256]))[None])[0].numpy()
    np.testing.assert_allclose(tok[356 + 512 : 356 + 700], direct[512 - 444 :], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(tok[356 : 356 + 256], first, rtol=1e-4, atol=1e-5)
    from safetensors.numpy import load_file

    both = load_file(str(tmp_path / "tok.safetensors"))
    assert both["short"].shape == (100, 128)
    np.testing.assert_allclose((both["short"][:, :64] + both["short"][:, 64:]) / 2, tok[:100], rtol=1e-4, atol=1e-5)
    centre = read_embeddings(str(tmp_path / "centre.parquet"))[1]
    short_tok = tok[:100]
    np.testing.assert_allclose(centre[0], short_tok[30:71].mean(0), rtol=1e-4, atol=1e-5)


def test_bed_regions_match_fasta_of_the_same_sequence(tmp_path):
    bed = tmp_path / "r.bed"
    bed.write_text("22\t20100000\t20100300\tpromA\n22\t20200000\t20200150\n")
    ref = str(DATA / "chr22_slice.fa.gz")
    opts = EmbedOptions(window=256, layer=1)
    embed(str(bed), str(tmp_path / "bed.parquet"), PH, ref, opts)
    with pysam.FastaFile(ref) as fa:
        (tmp_path / "r.fa").write_text(
            f">promA\n{fa.fetch('22', 20100000, 20100300)}\n>x\n{fa.fetch('22', 20200000, 20200150)}\n"
        )
    embed(str(tmp_path / "r.fa"), str(tmp_path / "fa.parquet"), PH, None, opts)
    cols, xb, spec = read_embeddings(str(tmp_path / "bed.parquet"))
    _, xf, _ = read_embeddings(str(tmp_path / "fa.parquet"))
    assert key_types(tmp_path / "bed.parquet") == KEY_COLUMNS["region"]
    assert key_types(tmp_path / "fa.parquet") == KEY_COLUMNS["sequence"]
    assert cols["id"] == ["promA", "22:20200001-20200150"] and cols["start"] == [20100000, 20200000]
    assert spec.kind == "region" and spec.layer == 1
    np.testing.assert_allclose(xb, xf, rtol=1e-5, atol=1e-6)
    (tmp_path / "bad.bed").write_text("22\t51304500\t51304600\n")
    with pytest.raises(InputFileError, match="runs past the end of 22"):
        embed(str(tmp_path / "bad.bed"), str(tmp_path / "x.parquet"), PH, ref, opts)
    assert not (tmp_path / "x.parquet").exists()


def test_embed_option_errors(tmp_path):
    fa = tmp_path / "s.fa"
    fa.write_text(">a\nACGTACGT\n")
    with pytest.raises(OptionError, match="--layer 9: this model has layers 0..2"):
        embed(str(fa), str(tmp_path / "o.parquet"), PS, None, EmbedOptions(window=64, layer=9))
    with pytest.raises(OptionError, match="--rc-mode sideways"):
        embed(str(fa), str(tmp_path / "o.parquet"), PS, None, EmbedOptions(window=64, rc_mode="sideways"))
    with pytest.raises(OptionError, match="--pool none is for sequences"):
        embed(
            str(DATA / "chr20_vt_indels.vcf.gz"),
            str(tmp_path / "o.npy"),
            PS,
            str(DATA / "chr20_slices.fa.gz"),
            EmbedOptions(pool="none"),
        )
    with pytest.raises(InputFileError, match="need the reference genome"):
        embed(str(DATA / "chr20_vt_indels.vcf.gz"), str(tmp_path / "o.parquet"), PS, None, EmbedOptions(window=64))
    with pytest.raises(OptionError, match=r"\.npy \(streamed\) or \.safetensors"):
        embed(str(fa), str(tmp_path / "o.parquet"), PS, None, EmbedOptions(window=64, pool="none"))
    with pytest.raises(OptionError, match=r"-o .*o\.npy: embed writes Parquet here"):
        embed(str(fa), str(tmp_path / "o.npy"), PS, None, EmbedOptions(window=64))
    with pytest.raises(OptionError, match="--window 0: must be between 1 and"):
        embed(str(fa), str(tmp_path / "o.parquet"), PS, None, EmbedOptions(window=0))
    with pytest.raises(OptionError, match=r"--flank 65: must be between 0 and the window \(64 bp\)"):
        embed(str(fa), str(tmp_path / "o.parquet"), PS, None, EmbedOptions(window=64, flank=65))
    assert not list(tmp_path.glob("o.*"))


def test_no_rows_still_give_a_parquet_file(tmp_path):
    src = tmp_path / "e.vcf"
    src.write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
    out = tmp_path / "e.parquet"
    r = embed(str(src), str(out), PS, str(DATA / "chr22_slice.fa.gz"), EmbedOptions(window=64))
    columns, X, spec = read_embeddings(str(out))
    assert r.rows == 0 and X.shape == (0, r.dim) and spec.window == 64
    assert key_types(out) == KEY_COLUMNS["variant-vcf"] and all(len(v) == 0 for v in columns.values())


def test_a_default_flank_beyond_the_window_is_kept():
    """A probe trained with a short window stores the paper's flank (768): applying it stays possible; only a
    --flank given by the user is checked against the window."""
    from caduceus_cli.inference.spec import spec_for

    model = load_model(PS, device="cpu")
    assert spec_for(model, "sha", "variant", window=64, default_flank=768).flank == 768
    with pytest.raises(OptionError, match="--flank 768: must be between 0 and the window"):
        spec_for(model, "sha", "variant", window=64, flank=768)
