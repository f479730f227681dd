"""Relative-index sparse format with fillers, interleaved over PEs."""
import numpy as np
import pytest

from sw.sparse import (SparseError, decode_column, decode_columns, encode_column,
                       encode_columns, split_symbol)


def test_eie_example():
    col = [0, 0, 1, 2] + [0] * 18 + [3]
    v, z = encode_column(col, 4)
    assert v.tolist() == [1, 2, 0, 3]
    assert z.tolist() == [2, 0, 15, 2]
    assert decode_column(v, z, len(col)).tolist() == col


def test_eie_example_as_joint_symbols():
    col = np.array([0, 0, 1, 2] + [0] * 18 + [3])
    layer = encode_columns(col[:, None], 1, 4, 4)
    gap, idx = split_symbol(layer.pes[0].symbols, 4)
    assert idx.tolist() == [1, 2, 0, 3] and gap.tolist() == [2, 0, 15, 2]
    assert layer.pes[0].n_fillers == 1
    assert layer.pes[0].col_ptr.tolist() == [0, 4]


@pytest.mark.parametrize("gap", [14, 15, 16, 17, 31, 32, 33, 47, 48, 100])
def test_gap_boundaries(gap):
    col = np.zeros(gap + 3, dtype=np.int64)
    col[gap] = 5
    col[-1] = 7
    v, z = encode_column(col, 4)
    assert np.all(z <= 15)
    assert int((v == 0).sum()) == gap // 16
    assert decode_column(v, z, len(col)).tolist() == col.tolist()


@pytest.mark.parametrize("n_pes", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("density", [0.0, 0.02, 0.1, 0.5, 1.0])
@pytest.mark.parametrize("gap_bits", [0, 1, 2, 4])
def test_roundtrip_random(n_pes, density, gap_bits):
    rng = np.random.default_rng(n_pes * 100 + int(density * 10) + gap_bits)
    out_f, in_f = 61, 37
    idx = rng.integers(1, 16, size=(out_f, in_f)) * (rng.random((out_f, in_f)) < density)
    idx[:, 3] = 0  # an empty column
    layer = encode_columns(idx, n_pes, gap_bits, 4)
    assert np.array_equal(decode_columns(layer), idx)
    span = 1 << gap_bits
    for p, pe in enumerate(layer.pes):
        assert pe.rows_local == -(-(out_f - p) // n_pes)
        assert len(pe.col_ptr) == in_f + 1
        gap, ix = split_symbol(pe.symbols, 4)
        assert np.all(gap < span)
        # Stored non-zeros = non-zeros of this PE's rows; everything else are fillers.
        assert int((ix != 0).sum()) == int((idx[p::n_pes] != 0).sum())
        assert int((ix == 0).sum()) == pe.n_fillers
        assert np.all(gap[ix == 0] == span - 1)
        assert pe.col_ptr[4] == pe.col_ptr[3]


def test_all_dense_no_fillers():
    idx = np.full((20, 5), 3)
    layer = encode_columns(idx, 4, 4, 4)
    for pe in layer.pes:
        assert pe.n_fillers == 0
        assert np.all(split_symbol(pe.symbols, 4)[0] == 0)
    assert np.array_equal(decode_columns(layer), idx)


def test_long_gap_count():
    idx = np.zeros((1000, 1), dtype=np.int64)
    idx[999, 0] = 9
    layer = encode_columns(idx, 1, 4, 4)
    assert layer.pes[0].n_fillers == 999 // 16
    assert np.array_equal(decode_columns(layer), idx)


def test_more_pes_than_rows():
    idx = np.array([[1, 0], [0, 2]])
    layer = encode_columns(idx, 4, 4, 4)
    assert [pe.rows_local for pe in layer.pes] == [1, 1, 0, 0]
    assert np.array_equal(decode_columns(layer), idx)


def test_errors():
    with pytest.raises(SparseError):
        encode_columns(np.zeros(5), 1, 4, 4)
    with pytest.raises(SparseError):
        encode_columns(np.full((2, 2), 16), 1, 4, 4)
    with pytest.raises(SparseError):
        encode_columns(np.ones((2, 2)), 0, 4, 4)
    layer = encode_columns(np.eye(4, dtype=np.int64), 1, 4, 4)
    layer.pes[0].rows_local = 2
    with pytest.raises(SparseError, match="runs past"):
        decode_columns(layer)
    with pytest.raises(SparseError):
        decode_column([1], [5], 3)
