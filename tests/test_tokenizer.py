import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st

from caduceus_cli import tokenizer as tk

dna = st.text(alphabet="ACGTNacgtnRYKM-*xX. ", max_size=300)


def test_ids_match_spec():
    assert tk.encode("ACGTN").tolist() == [7, 8, 9, 10, 11]
    assert tk.encode("acgtn").tolist() == [7, 8, 9, 10, 11]
    assert tk.encode("RY-*").tolist() == [tk.UNK] * 4
    assert tk.encode("AC", add_sep=True).tolist() == [7, 8, tk.SEP]
    assert list(tk.COMPLEMENT_MAP) == [0, 1, 2, 3, 4, 5, 6, 10, 9, 8, 7, 11, 12, 13, 14, 15]


@given(dna)
def test_upper_casing_is_folded_in(seq):
    assert tk.encode(seq).tolist() == tk.encode(seq.upper()).tolist()


@given(dna)
def test_rc_is_an_involution_and_matches_string_rc(seq):
    ids = tk.encode_torch(seq)
    assert torch.equal(tk.reverse_complement_ids(tk.reverse_complement_ids(ids)), ids)
    comp = {"A": "T", "C": "G", "G": "C", "T": "A", "N": "N"}
    clean = "".join(c for c in seq.upper() if c in comp)
    rc_str = "".join(comp[c] for c in reversed(clean))
    assert tk.reverse_complement_ids(tk.encode_torch(clean)).tolist() == tk.encode(rc_str).tolist()
    assert np.array_equal(tk.reverse_complement_np(tk.encode(seq)), tk.reverse_complement_ids(ids).numpy())


@given(st.text(alphabet="ACGTN", max_size=200))
def test_decode_roundtrip(seq):
    assert tk.decode(tk.encode(seq)) == seq


def test_batched_rc_acts_on_last_axis():
    ids = torch.tensor([[7, 8, 9], [10, 11, 7]])
    assert tk.reverse_complement_ids(ids).tolist() == [[8, 9, 10], [10, 11, 7]]
