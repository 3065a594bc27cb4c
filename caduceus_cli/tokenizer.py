"""Character tokenizer of Caduceus (``CADUCEUS_SPEC.md``, section Tokens).

Vectorised through a 256-entry lookup table: no Python loop per base.
"""

from __future__ import annotations

import numpy as np
import torch

CLS, SEP, BOS, MASK, PAD, RESERVED, UNK = 0, 1, 2, 3, 4, 5, 6
A, C, G, T, N = 7, 8, 9, 10, 11
VOCAB_SIZE = 16
NUCLEOTIDE_IDS = (A, C, G, T)
ID_TO_CHAR = {A: "A", C: "C", G: "G", T: "T", N: "N"}

# complement of every id (A<->T, C<->G, everything else to itself), vocab padded to 16
COMPLEMENT_MAP: tuple[int, ...] = tuple({A: T, T: A, C: G, G: C}.get(i, i) for i in range(VOCAB_SIZE))

_LUT = np.full(256, UNK, dtype=np.int64)
for _ch, _id in (("A", A), ("C", C), ("G", G), ("T", T), ("N", N)):
    _LUT[ord(_ch)] = _id
    _LUT[ord(_ch.lower())] = _id  # upper-casing folded into the table
_COMPLEMENT_T = torch.tensor(COMPLEMENT_MAP, dtype=torch.long)
_DECODE = np.array([ID_TO_CHAR.get(i, "?") for i in range(VOCAB_SIZE)])


def encode(seq: str | bytes, add_sep: bool = False) -> np.ndarray:
    """Token ids (int64, shape [L] or [L+1] with ``add_sep``) of a DNA string.

    Upper-cases first; any character other than ACGTN maps to [UNK]. ``add_sep``
    appends [SEP] as the reference tokenizer does; scoring code leaves it off so
    that the centre of a window never moves.
    """
    raw = seq.encode("latin-1") if isinstance(seq, str) else bytes(seq)
    ids = _LUT[np.frombuffer(raw, dtype=np.uint8)]
    if add_sep:
        ids = np.concatenate([ids, np.array([SEP], dtype=np.int64)])
    return ids


_LUT_U8 = _LUT.astype(np.uint8)  # every id fits a byte


def encode_u8(seq: str | bytes) -> np.ndarray:
    """``encode`` as uint8 (every id is below 256), in one table look-up: windows kept in memory."""
    raw = seq.encode("latin-1") if isinstance(seq, str) else bytes(seq)
    return _LUT_U8[np.frombuffer(raw, dtype=np.uint8)]


def encode_torch(seq: str | bytes, add_sep: bool = False) -> torch.Tensor:
    """``encode`` as a LongTensor."""
    return torch.from_numpy(encode(seq, add_sep=add_sep))


def decode(ids: np.ndarray | torch.Tensor) -> str:
    """Inverse of ``encode`` for nucleotide ids (special ids decode to '?')."""
    arr = ids.cpu().numpy() if isinstance(ids, torch.Tensor) else np.asarray(ids)
    return "".join(_DECODE[arr].tolist())


def complement_ids(ids: torch.Tensor) -> torch.Tensor:
    """Complement every id (same shape)."""
    return _COMPLEMENT_T.to(ids.device)[ids]


def reverse_complement_ids(ids: torch.Tensor) -> torch.Tensor:
    """RC of token ids [..., L]: reverse along length, then complement each id."""
    return complement_ids(ids.flip(-1))


def reverse_complement_np(ids: np.ndarray) -> np.ndarray:
    """numpy twin of ``reverse_complement_ids``."""
    return np.asarray(COMPLEMENT_MAP, dtype=np.int64)[ids[..., ::-1]]
