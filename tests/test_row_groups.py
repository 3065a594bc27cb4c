import torch

from caduceus_cli.kernels.row_groups import in_row_groups


def test_in_row_groups_covers_every_row_once_in_order():
    """5 rows of 3 tokens in groups of 2: token ranges [0, 6), [6, 12), [12, 15), each written to its
    slice of the output; None or a group size >= the rows: one call on everything."""
    rows = torch.arange(15.0).view(15, 1)
    seen = []

    def group(r: torch.Tensor, o: torch.Tensor | None) -> torch.Tensor:
        seen.append((int(r[0, 0]), r.shape[0]))
        assert o is not None and o.shape == r.shape
        o.copy_(r * 2)
        return o

    out = in_row_groups(group, rows, 3, 2, None, lambda: torch.full((15, 1), float("nan")))
    assert seen == [(0, 6), (6, 6), (12, 3)]
    assert torch.equal(out, rows * 2)
    calls = []
    whole = in_row_groups(lambda r, o: calls.append(r.shape[0]) or r, rows, 3, None, None, lambda: rows)
    assert calls == [15] and whole is rows
    assert in_row_groups(lambda r, o: calls.append(r.shape[0]) or r, rows, 3, 5, None, lambda: rows) is rows
    assert calls == [15, 15]
