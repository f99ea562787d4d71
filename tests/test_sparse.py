import pytest
import torch as th
from hypothesis import given, settings
from hypothesis import strategies as st

from sb3_parsing import sparse
from sb3_parsing.sparse import ScannedObservations, any_set, matching_pairs, observed_entries, set_entries

DTYPES = [th.uint8, th.bool, th.float32, th.int64]


@settings(max_examples=60, deadline=None)
@given(
    shape=st.lists(st.integers(0, 13), min_size=1, max_size=4),
    density=st.sampled_from([0.0, 0.01, 0.3, 1.0]),
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 2**16),
)
def test_set_entries_are_nonzero(shape: list[int], density: float, dtype: th.dtype, seed: int) -> None:
    # Any size (a tail shorter than a word included), density and dtype: the same indices in the same order
    generator = th.Generator().manual_seed(seed)
    matrix = (th.rand(shape, generator=generator) < density).to(dtype) * (3 if dtype != th.bool else 1)
    expected = matrix.nonzero(as_tuple=True)
    found = set_entries(matrix)
    assert len(found) == len(expected)
    for got, want in zip(found, expected, strict=True):
        assert th.equal(got, want)


@pytest.mark.parametrize("offset", range(9))
def test_set_entries_of_a_view_that_starts_inside_a_word(offset: int) -> None:
    # A row sliced out of a batch starts at any byte: its entries are still found, at indices of the view
    data = th.zeros(4 * 19, dtype=th.uint8)
    data[[offset, offset + 7, offset + 8, offset + 18, 60]] = 1
    view = data[offset : offset + 19]
    (indices,) = set_entries(view)
    assert indices.tolist() == [0, 7, 8, 18]


def test_set_entries_of_a_nonzero_float_that_has_zero_bytes() -> None:
    # 2.0 is 0x40000000: three of its four bytes are 0, and -0.0 is a set byte but a zero value
    matrix = th.tensor([[0.0, 2.0, -0.0], [1e-38, 0.0, float("nan")]])
    rows, columns = set_entries(matrix)
    assert list(zip(rows.tolist(), columns.tolist(), strict=True)) == [(0, 1), (1, 0), (1, 2)]


@pytest.mark.parametrize("dtype", DTYPES)
def test_any_set_is_any_as_bool(dtype: th.dtype) -> None:
    matrix = (th.rand(5, 7, 33, generator=th.Generator().manual_seed(0)) < 0.02).to(dtype)
    for dim in (-1, 1, 0):
        found = any_set(matrix, dim=dim)
        assert found.dtype == th.bool
        assert th.equal(found, matrix.any(dim=dim).bool())


def test_scanned_observations_find_each_matrix_once_whatever_shape_it_is_read_as(monkeypatch: pytest.MonkeyPatch) -> None:
    generator = th.Generator().manual_seed(1)
    batch = {"text": (th.rand(3, 4, 10, generator=generator) < 0.2).byte(), "other": th.rand(3, 5, generator=generator)}
    scans = []
    flat_set_entries = sparse.flat_set_entries
    monkeypatch.setattr(sparse, "flat_set_entries", lambda matrix: scans.append(matrix) or flat_set_entries(matrix))
    scanned = ScannedObservations(batch)
    for shape in (None, (3, 4, 5, 2), (12, 10)):
        expected = (batch["text"] if shape is None else batch["text"].reshape(shape)).nonzero(as_tuple=True)
        for found in (observed_entries(scanned, "text", shape), observed_entries(batch, "text", shape)):
            assert all(th.equal(got, want) for got, want in zip(found, expected, strict=True))
    assert len(scans) == 1 + 3, "once for the scanned batch, every time for a plain dict"
    given = ScannedObservations(batch, found={"other": th.tensor([2, 7])})
    assert [index.tolist() for index in given.set_entries("other")] == [[0, 1], [2, 2]], "entries given are trusted"


def test_matching_pairs_pair_every_query_with_each_equal_key() -> None:
    queries, at = matching_pairs(th.tensor([1, 3, 3, 3, 8]), th.tensor([3, 0, 8, 3]))
    assert list(zip(queries.tolist(), at.tolist(), strict=True)) == [(0, 1), (0, 2), (0, 3), (2, 4), (3, 1), (3, 2), (3, 3)]
