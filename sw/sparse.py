"""Relative-index sparse column format with filler zeros, rows interleaved over PEs.

docs/ARCHITECTURE.md section 3: global row ``r`` lives in PE ``r mod N`` as local row ``r // N``.
For each PE and input column the non-zero weights are stored in ascending local-row order as
joint symbols ``(gap << idx_bits) | index``; ``gap`` counts the zero local rows skipped since the
previous entry (since local row -1 for the first). A gap above ``2^gap_bits - 1`` is split by
filler entries ``(2^gap_bits - 1, 0)`` each advancing ``2^gap_bits`` rows (EIE).
"""
from dataclasses import dataclass

import numpy as np

__all__ = ["SparseError", "PEColumns", "SparseLayer", "encode_columns", "decode_columns",
           "encode_column", "decode_column", "decode_pe_columns", "joint_symbol", "split_symbol"]


class SparseError(ValueError):
    """Bad index matrix, widths or an encoded stream that does not decode."""


def joint_symbol(gap, index, idx_bits):
    """Joint symbol ``(gap << idx_bits) | index`` (works element-wise on arrays)."""
    return (np.asarray(gap, dtype=np.int64) << idx_bits) | np.asarray(index, dtype=np.int64)


def split_symbol(symbol, idx_bits):
    """Inverse of :func:`joint_symbol`: returns ``(gap, index)``."""
    s = np.asarray(symbol, dtype=np.int64)
    return s >> idx_bits, s & ((1 << idx_bits) - 1)


def encode_column(column, gap_bits):
    """EIE relative-index encoding of one dense column of weight indices.

    Parameters
    ----------
    column : array_like of int
        Dense column (0 = zero weight), in row order.
    gap_bits : int
        Width of the zero-run field.

    Returns
    -------
    v : numpy.ndarray
        int64 stored indices (0 for fillers).
    z : numpy.ndarray
        int64 zero-run counts before each entry.
    """
    col = np.asarray(column, dtype=np.int64).ravel()
    rows = np.flatnonzero(col)
    span = 1 << gap_bits
    prev = np.concatenate([[-1], rows[:-1]])
    gaps = rows - prev - 1
    n_fill = gaps // span
    rem = gaps % span
    total = int((n_fill + 1).sum())
    v = np.zeros(total, dtype=np.int64)
    z = np.full(total, span - 1, dtype=np.int64)
    pos = np.cumsum(n_fill + 1) - 1
    v[pos] = col[rows]
    z[pos] = rem
    return v, z


def decode_column(v, z, n_rows):
    """Dense column of length ``n_rows`` from ``(v, z)`` of :func:`encode_column`."""
    v = np.asarray(v, dtype=np.int64)
    z = np.asarray(z, dtype=np.int64)
    rows = np.cumsum(z + 1) - 1
    if len(rows) and (rows[-1] >= n_rows or np.any(z < 0)):
        raise SparseError(f"encoded column runs past its {n_rows} rows")
    col = np.zeros(n_rows, dtype=np.int64)
    col[rows] = v
    return col


@dataclass
class PEColumns:
    """One PE's share of a layer in CSC form.

    Attributes
    ----------
    symbols : numpy.ndarray
        int64 joint symbols of all columns, column after column.
    col_ptr : numpy.ndarray
        int64 ``[in_features + 1]`` offsets into ``symbols``; column ``j`` is
        ``symbols[col_ptr[j]:col_ptr[j+1]]``.
    rows_local : int
        Local rows of this PE (``ceil((out - p) / N)``).
    n_fillers : int
        Filler entries among ``symbols``.
    """
    symbols: np.ndarray
    col_ptr: np.ndarray
    rows_local: int
    n_fillers: int

    def column(self, j):
        """Joint symbols of column ``j``."""
        return self.symbols[self.col_ptr[j]:self.col_ptr[j + 1]]


@dataclass
class SparseLayer:
    """A layer's index matrix split over ``n_pes`` PEs (see :func:`encode_columns`)."""
    pes: list
    n_pes: int
    out_features: int
    in_features: int
    gap_bits: int
    idx_bits: int

    def entries_per_pe(self):
        """int ``(in_features, n_pes)``: the symbols (entries, fillers included) each PE stores
        for each column, i.e. the decoder cycles it spends on the column."""
        return np.stack([np.diff(pe.col_ptr) for pe in self.pes], axis=1)

    def all_symbols(self):
        """Concatenation of every PE's symbols (for building the layer's Huffman code)."""
        if not self.pes:
            return np.zeros(0, dtype=np.int64)
        return np.concatenate([pe.symbols for pe in self.pes])


def _check_widths(gap_bits, idx_bits):
    if not 0 <= gap_bits <= 15 or not 1 <= idx_bits <= 8 or gap_bits + idx_bits > 16:
        raise SparseError(f"unsupported widths gap_bits={gap_bits}, idx_bits={idx_bits} "
                          "(need 0..15, 1..8, sum <= 16)")


def encode_columns(index_matrix, n_pes, gap_bits, idx_bits):
    """Split an ``(out, in)`` index matrix over ``n_pes`` PEs and encode every column.

    Parameters
    ----------
    index_matrix : array_like of int, shape (out, in)
        Weight cluster indices, 0 = pruned, ``< 2^idx_bits``.
    n_pes : int
        Number of PEs N (rows interleaved ``r mod N``).
    gap_bits : int
        Zero-run field width (``GAP_BITS``).
    idx_bits : int
        Index field width (``IDX_BITS``).

    Returns
    -------
    SparseLayer
    """
    _check_widths(gap_bits, idx_bits)
    idx = np.asarray(index_matrix)
    if idx.ndim != 2:
        raise SparseError(f"index matrix must be 2-D (out, in), got shape {idx.shape}")
    if n_pes < 1:
        raise SparseError(f"n_pes must be >= 1, not {n_pes}")
    idx = idx.astype(np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= (1 << idx_bits)):
        raise SparseError(f"indices must be in 0..{(1 << idx_bits) - 1}")
    out_f, in_f = idx.shape
    span = 1 << gap_bits
    filler = (span - 1) << idx_bits
    pes = []
    for p in range(n_pes):
        sub = idx[p::n_pes, :]
        rows_local = sub.shape[0]
        # nonzero of the transpose: sorted by column, then local row.
        cols, rows = np.nonzero(sub.T)
        vals = sub[rows, cols]
        first = np.ones(len(cols), dtype=bool)
        first[1:] = cols[1:] != cols[:-1]
        prev = np.empty(len(rows), dtype=np.int64)
        prev[first] = -1
        prev[~first] = rows[:-1][~first[1:]]
        gaps = rows - prev - 1
        n_fill = gaps // span
        rem = gaps % span
        per = n_fill + 1
        total = int(per.sum())
        sym = np.full(total, filler, dtype=np.int64)
        pos = np.cumsum(per) - 1
        sym[pos] = (rem << idx_bits) | vals
        col_counts = np.bincount(cols, weights=per, minlength=in_f).astype(np.int64)
        col_ptr = np.concatenate([[0], np.cumsum(col_counts)]).astype(np.int64)
        pes.append(PEColumns(sym, col_ptr, rows_local, int(n_fill.sum())))
    return SparseLayer(pes, n_pes, out_f, in_f, gap_bits, idx_bits)


def decode_pe_columns(symbols, col_ptr, rows_local, idx_bits):
    """Dense ``(rows_local, in)`` index matrix of one PE from its CSC symbols.

    Raises :class:`SparseError` if a column runs past ``rows_local`` (fillers decode as index
    0, which adds nothing).
    """
    symbols = np.asarray(symbols, dtype=np.int64)
    col_ptr = np.asarray(col_ptr, dtype=np.int64)
    in_f = len(col_ptr) - 1
    if in_f < 0 or col_ptr[0] != 0 or col_ptr[-1] != len(symbols) or np.any(np.diff(col_ptr) < 0):
        raise SparseError("column pointers are not a non-decreasing cover of the symbols")
    gap, index = split_symbol(symbols, idx_bits)
    counts = np.diff(col_ptr)
    cols = np.repeat(np.arange(in_f), counts)
    step = gap + 1
    csum = np.cumsum(step)
    # Subtract the cumulative sum at each column start to restart at local row -1.
    start_sum = np.concatenate([[0], csum])[col_ptr[:-1]]
    rows = csum - np.repeat(start_sum, counts) - 1
    out = np.zeros((rows_local, in_f), dtype=np.int64)
    if len(rows) and rows.max() >= rows_local:
        bad = int(cols[np.argmax(rows >= rows_local)])
        raise SparseError(f"column {bad} runs past the {rows_local} local rows")
    keep = index != 0
    out[rows[keep], cols[keep]] = index[keep]
    return out


def decode_columns(layer):
    """Dense ``(out, in)`` index matrix from a :class:`SparseLayer` (exact inverse)."""
    out = np.zeros((layer.out_features, layer.in_features), dtype=np.int64)
    for p, pe in enumerate(layer.pes):
        out[p::layer.n_pes, :] = decode_pe_columns(pe.symbols, pe.col_ptr, pe.rows_local,
                                                   layer.idx_bits)
    return out
