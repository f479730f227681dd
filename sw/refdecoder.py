"""Reference decoder: inference from the packed memory images alone.

Reads only what the hardware reads (docs/ARCHITECTURE.md section 4): layer descriptors, PE
headers, pointer tables, Huffman streams (decoded with the ``limit``/``base``/``symbols`` table
method of section 3), the codebook and the biases, plus the section-1 widths and N from the
manifest's ``params``/``n_pes``. The result must equal :func:`sw.golden.infer` bit for bit.
The column skip table (if present) is checked against the pointers: a PE never sees a column
the table skips, so a skipped column must be empty (:class:`RefDecodeError` otherwise).

Two ways to run:

* :func:`infer_packed` decodes every PE's columns once into weight matrices and evaluates a whole
  batch (vectorised, for the 10,000 MNIST test images);
* :func:`infer_packed_events` walks one input the way a PE does: for each non-zero activation it
  decodes only that column's bits ``[ptr[j], ptr[j+1])`` symbol by symbol and accumulates;
  it also counts the symbols each PE decodes.
"""
import argparse
import math
import sys
import time
from dataclasses import dataclass

import numpy as np

from contract.memmap import (CONV_FIELDS, DESC_WORD, DESC_WORDS, FLAG_CONV, FLAG_FMAP_BUF,
                             FLAG_FMAP_IN, FLAG_LAST, FLAG_PTR2, FLAG_RELU, HEADER_WORDS,
                             colskip_mem, colskip_words, fixed_entry_bits, pointer_mem,
                             shared_mem)
from sw.cli import EXIT_MISMATCH, EXIT_OK, command
from sw.golden import IntModel, conv_patches, images_to_uint8, infer, load_mnist, max_pool2
from sw.huffman import HuffmanError, table_decode, words_to_bits
from sw.modelfile import load_model
from sw.pack import PackedImages

__all__ = ["RefDecodeError", "LayerDescriptor", "read_descriptors", "decode_layer",
           "infer_packed", "infer_packed_layers", "infer_packed_events"]


class RefDecodeError(ValueError):
    """The images are inconsistent (bad descriptor, pointer, Huffman code or row)."""


@dataclass
class LayerDescriptor:
    """Decoded 16-word layer descriptor (section 4; the conv geometry is 0 on fc layers)."""
    index: int
    in_features: int
    out_features: int
    relu: bool
    last: bool
    ptr_words: int
    shift: int
    bias_shift: int
    sym_base: int
    n_symbols: int
    conv: bool = False
    fmap_in: bool = False
    fmap_buf: int = 0
    pool: int = 0
    in_values: int = 0
    in_channels: int = 0
    in_height: int = 0
    in_width: int = 0
    kernel_h: int = 0
    kernel_w: int = 0
    out_height: int = 0
    out_width: int = 0

    @property
    def in_map(self):
        """``(C, H, W)`` of the input feature map (``fmap_in`` layers)."""
        return (self.in_channels, self.in_height, self.in_width)

    @property
    def pooled(self):
        """``(OC, OH/pool, OW/pool)``: a conv layer's output map."""
        return (self.out_features, self.out_height // max(1, self.pool),
                self.out_width // max(1, self.pool))


def _params(packed):
    m = packed.manifest
    try:
        p = m["params"]
        return (int(m["n_pes"]), int(p["act_bits"]), int(p["acc_bits"]), int(p["idx_bits"]),
                int(p["gap_bits"]), int(p["huff_max_len"]))
    except (KeyError, TypeError, ValueError) as e:
        raise RefDecodeError(f"manifest lacks the section-1 parameters: {e}") from None


def _word(img, addr, what):
    if not 0 <= addr < len(img):
        return 0  # memories are zero beyond the written image
    return int(img[addr])


def _signed16(v):
    v = np.asarray(v, dtype=np.int64)
    return v - ((v & 0x8000) << 1)


def read_descriptors(packed):
    """Layer descriptors up to and including the first with the ``last`` flag; the conv
    geometry and the feature-map buffer sequence are checked (:class:`RefDecodeError`)."""
    N = _params(packed)[0]
    img = packed.images[shared_mem(N, "layers")]
    out = []
    for i in range(len(img) // DESC_WORDS):
        w = dict(zip(DESC_WORD, (int(v) for v in img[DESC_WORDS * i:DESC_WORDS * (i + 1)])))
        flags = w["flags"]
        out.append(LayerDescriptor(
            i, w["in_features"], w["out_features"], bool(flags & FLAG_RELU),
            bool(flags & FLAG_LAST), 2 if flags & FLAG_PTR2 else 1, w["shift"], w["bias_shift"],
            w["sym_base"], w["n_symbols"], conv=bool(flags & FLAG_CONV),
            fmap_in=bool(flags & FLAG_FMAP_IN), fmap_buf=int(bool(flags & FLAG_FMAP_BUF)),
            **{k: w[k] for k in CONV_FIELDS}))
        if flags & FLAG_LAST:
            _check_geometry(out)
            return out
    raise RefDecodeError("no layer descriptor carries the 'last' flag")


def _check_geometry(descs):
    """Raise unless the conv descriptors describe what section 4 allows: geometry consistent
    with the columns, conv layers first, buffers alternating from 0."""
    buf, prev = 0, None
    for d in descs:
        where = f"layer {d.index}"
        if d.conv:
            c, h, w = d.in_map
            if not (d.relu and d.fmap_in and d.pool == 2 and d.kernel_h and d.kernel_w
                    and d.in_features == c * d.kernel_h * d.kernel_w
                    and d.out_height == h - d.kernel_h + 1 and d.out_width == w - d.kernel_w + 1
                    and d.out_height % 2 == 0 and d.out_width % 2 == 0
                    and d.in_values == c * h * w and not d.last):
                raise RefDecodeError(f"{where}: inconsistent conv descriptor {d}")
            if prev is not None and not prev.conv:
                raise RefDecodeError(f"{where}: a conv layer after an fc layer")
        elif d.fmap_in:
            if prev is None or not prev.conv or d.in_map != prev.pooled \
                    or d.in_features != d.in_values or d.in_values != math.prod(d.in_map):
                raise RefDecodeError(f"{where}: fc layer reading a feature map that no conv "
                                     f"layer wrote ({d})")
        elif (prev is not None and prev.conv) or d.in_values != d.in_features:
            raise RefDecodeError(f"{where}: fc layer after a conv layer without fmap_in, or "
                                 f"in_values {d.in_values} != in_features {d.in_features}")
        if d.fmap_in and d.fmap_buf != buf:
            raise RefDecodeError(f"{where}: reads feature-map buffer {d.fmap_buf}; the input "
                                 f"is in buffer {buf}")
        if d.conv:
            buf = 1 - buf
        prev = d


def _tables(packed, d):
    N, _, _, _, _, L = _params(packed)
    limit = packed.images[shared_mem(N, "huff_limit")][d.index * L:(d.index + 1) * L]
    base = packed.images[shared_mem(N, "huff_base")][d.index * L:(d.index + 1) * L]
    symbols = packed.images[shared_mem(N, "huff_symbols")][d.sym_base:d.sym_base + d.n_symbols]
    limit, base, symbols = (t.astype(np.int64) for t in (limit, base, symbols))
    if len(limit) != L or len(base) != L or len(symbols) != d.n_symbols:
        raise RefDecodeError(f"layer {d.index}: Huffman tables are truncated")
    return limit, base, symbols


def _lut(limit, base, symbols, L):
    """Length and symbol of every L-bit peek value (the table method, applied to all peeks)."""
    peek = np.arange(1 << L, dtype=np.int64)
    length = np.zeros(1 << L, dtype=np.int64)
    for l in range(L, 0, -1):
        length[peek < limit[l - 1]] = l
    k = (base[np.maximum(length, 1) - 1] + (peek >> (L - np.maximum(length, 1)))) % (1 << 16)
    ok = (length > 0) & (k < len(symbols))
    sym = np.where(ok, symbols[np.minimum(k, max(len(symbols) - 1, 0))] if len(symbols)
                   else 0, -1)
    return np.where(ok, length, 0), sym


def _header(pe_img, d):
    h = [_word(pe_img, HEADER_WORDS * d.index + k, "header") for k in range(HEADER_WORDS)]
    return h  # ptr_base, stream_base, bias_base, rows_local


def _pointers(ptr_img, d, ptr_base):
    """Pointer table of layer ``d`` at ``ptr_base`` of a PE's pointer memory image."""
    n = d.in_features + 1
    raw = np.array([_word(ptr_img, ptr_base + k, "pointer") for k in range(n * d.ptr_words)],
                   dtype=np.int64)
    ptr = raw if d.ptr_words == 1 else (raw[0::2] << 16) | raw[1::2]
    if np.any(np.diff(ptr) < 0) or ptr[0] != 0:
        raise RefDecodeError(f"layer {d.index}: pointer table is not non-decreasing from 0")
    return ptr


def _stream_bits(pe_img, stream_base, n_bits, L):
    """Bits from ``stream_base * 16`` on, ``n_bits + L`` of them (memory beyond the image = 0)."""
    n_words = -(-(n_bits + L) // 16)
    words = np.zeros(n_words, dtype=np.int64)
    avail = pe_img[stream_base:stream_base + n_words].astype(np.int64)
    words[:len(avail)] = avail
    return words_to_bits(words)


def _skip_bits(packed, descs, d, p):
    """bool ``[in_features]``: the column skip table keeps layer ``d``'s column from PE ``p``
    (all False without a table). Entries: the layers' columns back to back."""
    N = _params(packed)[0]
    table = packed.images.get(colskip_mem(N))
    if table is None:
        return np.zeros(d.in_features, dtype=bool)
    n_words = colskip_words(N)
    base = sum(e.in_features for e in descs[:d.index]) * n_words
    words = np.asarray(table, dtype=np.int64)[base:base + d.in_features * n_words]
    if len(words) != d.in_features * n_words:
        raise RefDecodeError(f"layer {d.index}: the column skip table ends at {len(table)} "
                             f"words, before the layer's columns")
    return (words.reshape(-1, n_words)[:, p // 16] >> (p % 16) & 1).astype(bool)


def _check_skip(packed, descs, d, p, ptr):
    """Raise if the column skip table keeps a non-empty column from PE ``p`` (``descs``: all
    layer descriptors, which place the layer's entries in the table)."""
    skip = _skip_bits(packed, descs, d, p)
    bad = np.flatnonzero(skip & (np.diff(ptr) != 0))
    if len(bad):
        raise RefDecodeError(f"layer {d.index} PE {p}: the column skip table skips column "
                             f"{int(bad[0])}, which has {int(ptr[bad[0] + 1] - ptr[bad[0]])} "
                             "bits of codes")


def decode_layer(packed, d, p):
    """Decode PE ``p``'s share of layer ``d`` from the images.

    Returns
    -------
    index : numpy.ndarray
        int64 ``(rows_local, in_features)`` weight indices (0 = none).
    bias : numpy.ndarray
        int64 ``[rows_local]`` signed ``bias_q``.
    n_symbols_per_col : numpy.ndarray
        int64 ``[in_features]`` symbols (non-zeros and fillers) stored in each column.
    """
    N, _, _, idx_bits, _, L = _params(packed)
    pe_img = packed.images[p]
    ptr_base, stream_base, bias_base, rows_local = _header(pe_img, d)
    ptr = _pointers(packed.images[pointer_mem(N, p)], d, ptr_base)
    _check_skip(packed, read_descriptors(packed), d, p, ptr)
    total = int(ptr[-1])
    bits = _stream_bits(pe_img, stream_base, total, L).astype(np.int64)
    fixed = _fixed_bits(packed)
    if fixed:
        starts, syms = _fixed_entries(bits, 0, total, fixed, f"layer {d.index} PE {p}")
        if np.any(ptr % fixed):
            raise RefDecodeError(f"layer {d.index} PE {p}: a column pointer splits an entry")
        return _layer_matrix(packed, d, p, pe_img, ptr, starts, syms, total, bias_base,
                             rows_local, idx_bits)
    limit, base, symbols = _tables(packed, d)
    lut_len, lut_sym = _lut(limit, base, symbols, L)
    # peek value at every bit position (L-bit sliding window).
    window = np.zeros(total, dtype=np.int64)
    for k in range(L):
        window = (window << 1) | bits[k:k + total]
    starts, syms = [], []
    pos = 0
    lut_len_l = lut_len.tolist()
    lut_sym_l = lut_sym.tolist()
    window_l = window.tolist()
    while pos < total:
        pk = window_l[pos]
        ln = lut_len_l[pk]
        if ln == 0:
            raise RefDecodeError(f"layer {d.index} PE {p}: code at bit {pos} not in the table")
        starts.append(pos)
        syms.append(lut_sym_l[pk])
        pos += ln
    if pos != total:
        raise RefDecodeError(f"layer {d.index} PE {p}: last code runs past the stream end")
    starts = np.array(starts, dtype=np.int64)
    syms = np.array(syms, dtype=np.int64)
    # Every column must start on a code boundary.
    col_start = np.searchsorted(starts, ptr[:-1])
    bad = (col_start < len(starts)) & (ptr[:-1] < total)
    if np.any(starts[np.minimum(col_start[bad], max(len(starts) - 1, 0))] != ptr[:-1][bad]):
        raise RefDecodeError(f"layer {d.index} PE {p}: a column pointer splits a code")
    return _layer_matrix(packed, d, p, pe_img, ptr, starts, syms, total, bias_base, rows_local,
                         idx_bits)


def _fixed_bits(packed):
    """Bits of a stored entry when the images hold fixed-width entries (manifest
    ``column_code == "fixed"``, ``contract.memmap.fixed_entry_bits``), else 0."""
    code = packed.manifest.get("column_code", "huffman")
    if code == "huffman":
        return 0
    if code != "fixed":
        raise RefDecodeError(f"unknown column_code {code!r} in the manifest")
    _, _, _, idx_bits, gap_bits, _ = _params(packed)
    return fixed_entry_bits(idx_bits, gap_bits)


def _fixed_entries(bits, start, end, width, where):
    """Bit positions and values of the ``width``-bit entries from bit ``start`` to ``end``."""
    if (end - start) % width or start % width:
        raise RefDecodeError(f"{where}: {end - start} stream bits from bit {start} are not "
                             f"whole {width}-bit entries")
    starts = np.arange(start, end, width, dtype=np.int64)
    chunk = np.asarray(bits[start:end], dtype=np.int64).reshape(-1, width)
    syms = chunk @ (1 << np.arange(width - 1, -1, -1, dtype=np.int64))
    return starts, syms


def _layer_matrix(packed, d, p, pe_img, ptr, starts, syms, total, bias_base, rows_local,
                  idx_bits):
    """``decode_layer``'s result from the decoded symbols and their bit positions."""
    col = np.searchsorted(ptr, starts, side="right") - 1
    gap = syms >> idx_bits
    index = syms & ((1 << idx_bits) - 1)
    step = gap + 1
    csum = np.cumsum(step)
    first = np.ones(len(col), dtype=bool)
    first[1:] = col[1:] != col[:-1]
    seg_start = np.maximum.accumulate(np.where(first, np.arange(len(col)), 0)) \
        if len(col) else np.zeros(0, dtype=np.int64)
    before = np.concatenate([[0], csum])[seg_start]
    rows = csum - before - 1
    if len(rows) and rows.max() >= rows_local:
        raise RefDecodeError(f"layer {d.index} PE {p}: a column runs past its {rows_local} rows")
    out = np.zeros((rows_local, d.in_features), dtype=np.int64)
    keep = index != 0
    out[rows[keep], col[keep]] = index[keep]
    bias = _signed16(pe_img[bias_base:bias_base + rows_local])
    if len(bias) != rows_local:
        raise RefDecodeError(f"layer {d.index} PE {p}: biases beyond the memory image")
    return out, bias, np.bincount(col, minlength=d.in_features)


def _codebook(packed, d):
    N, _, _, idx_bits, _, _ = _params(packed)
    size = 1 << idx_bits
    cb = _signed16(packed.images[N][d.index * size:(d.index + 1) * size])
    if len(cb) != size:
        raise RefDecodeError(f"layer {d.index}: codebook is truncated")
    return cb


def _requant(acc, d, act_bits, acc_bits):
    if d.last:
        m = 1 << acc_bits
        return ((acc + m // 2) % m) - m // 2
    rnd = (1 << (d.shift - 1)) if d.shift > 0 else 0
    return np.clip((acc + rnd) >> d.shift, 0, (1 << act_bits) - 1)


def infer_packed_layers(packed, x_uint8):
    """Batched inference from the images; returns the list of every layer's output (int64)."""
    N, act_bits, acc_bits, _, _, _ = _params(packed)
    a = np.asarray(x_uint8)
    if a.ndim == 1:
        a = a[None, :]
    descs = read_descriptors(packed)
    if a.ndim != 2 or a.shape[1] != descs[0].in_values:
        raise RefDecodeError(f"input must be (n, {descs[0].in_values}), got {a.shape}")
    a = a.astype(np.int64)
    outs = []
    for d in descs:
        cb = _codebook(packed, d)
        w = np.zeros((d.out_features, d.in_features), dtype=np.int64)
        bias = np.zeros(d.out_features, dtype=np.int64)
        for p in range(N):
            idx, b, _ = decode_layer(packed, d, p)
            w[p::N] = cb[idx]
            bias[p::N] = b << d.bias_shift
        if d.conv:
            a = _conv_packed(a, w, bias, d, act_bits, acc_bits)
        else:
            # Exact in float64: |partial sums| < 2^53 for any model the packer accepts.
            acc = np.rint(a.astype(np.float64) @ w.T.astype(np.float64)).astype(np.int64)
            a = _requant(acc + bias[None, :], d, act_bits, acc_bits)
        outs.append(a)
    return outs


def _conv_packed(a, w, bias, d, act_bits, acc_bits):
    """Conv layer ``d`` (section 1) with the decoded weights: patches from the flat input maps
    ``a`` by the descriptor's geometry, requantized, 2 x 2 max-pooled; flat output maps."""
    n = a.shape[0]
    out = np.zeros((n, math.prod(d.pooled)), dtype=np.int64)
    for s in range(0, n, 64):
        patches = conv_patches(a[s:s + 64].reshape((-1,) + d.in_map), (d.kernel_h, d.kernel_w))
        acc = np.rint(patches.astype(np.float64) @ w.T.astype(np.float64)).astype(np.int64)
        acc = (acc + bias).transpose(0, 2, 1).reshape(-1, d.out_features, d.out_height,
                                                      d.out_width)
        out[s:s + 64] = max_pool2(_requant(acc, d, act_bits, acc_bits)).reshape(len(acc), -1)
    return out


def infer_packed(packed, x_uint8):
    """Logits from the images alone.

    Parameters
    ----------
    packed : sw.pack.PackedImages
    x_uint8 : array_like of int, shape (n, in) or (in,)
        Input activations (MNIST pixel bytes).

    Returns
    -------
    numpy.ndarray
        int64 logits, ``(n, out)`` (or ``(out,)`` for a 1-D input).
    """
    one = np.asarray(x_uint8).ndim == 1
    logits = infer_packed_layers(packed, x_uint8)[-1]
    return logits[0] if one else logits


class _ColumnReader:
    """PE ``p``'s columns of layer ``d`` read the way the PE reads them: column ``j`` is decoded
    with :func:`sw.huffman.table_decode` from bit ``ptr[j]`` until exactly ``ptr[j+1]`` into
    ``(local row, index)`` entries (``row = prev + gap + 1``; fillers have index 0)."""

    def __init__(self, packed, descs, d, p):
        N, _, _, self.idx_bits, _, self.L = _params(packed)
        self.d, self.p = d, p
        pe_img = packed.images[p]
        ptr_base, stream_base, self.bias_base, self.rows_local = _header(pe_img, d)
        self.ptr = _pointers(packed.images[pointer_mem(N, p)], d, ptr_base)
        _check_skip(packed, descs, d, p, self.ptr)
        self.bits = _stream_bits(pe_img, stream_base, int(self.ptr[-1]), self.L)
        self.fixed = _fixed_bits(packed)
        self.tables = None if self.fixed else _tables(packed, d)
        self.bias = _signed16(pe_img[self.bias_base:self.bias_base + self.rows_local])
        self.cache = {}

    def column(self, j):
        """``(rows, indices)`` of column ``j`` (every symbol, fillers included)."""
        if j not in self.cache:
            pos, end = int(self.ptr[j]), int(self.ptr[j + 1])
            row, rows, idx = -1, [], []
            where = f"layer {self.d.index} PE {self.p} column {j}"
            fixed = iter(_fixed_entries(self.bits, pos, end, self.fixed, where)[1].tolist()
                         if self.fixed else ())
            while pos < end:
                if self.fixed:
                    sym, pos = next(fixed), pos + self.fixed
                else:
                    try:
                        (sym,), pos = table_decode(self.bits, 1, *self.tables, self.L,
                                                   start=pos)
                    except HuffmanError as e:
                        raise RefDecodeError(f"{where}: {e}") from None
                row += int(sym >> self.idx_bits) + 1
                if row >= self.rows_local:
                    raise RefDecodeError(f"layer {self.d.index} PE {self.p} column {j}: row "
                                         f"{row} beyond {self.rows_local}")
                rows.append(row)
                idx.append(int(sym) & ((1 << self.idx_bits) - 1))
            if pos != end:
                raise RefDecodeError(f"layer {self.d.index} PE {self.p} column {j}: code "
                                     "crosses the column end")
            self.cache[j] = (rows, idx)
        return self.cache[j]


def _pass(readers, cb, d, vector, N, work):
    """One column pass (a layer's input vector, or one conv position's patch): the exact
    accumulators ``[out_features]`` with the biases; ``work[p]`` counts the symbols decoded."""
    acc = np.zeros(d.out_features, dtype=np.int64)
    for p, r in enumerate(readers):
        local = np.zeros(r.rows_local, dtype=np.int64)
        for j in np.flatnonzero(vector):
            rows, idx = r.column(int(j))
            work[p] += len(rows)
            for row, i in zip(rows, idx):
                local[row] += int(vector[j]) * int(cb[i])
        acc[p::N] = local + (r.bias << d.bias_shift)
    return acc


def infer_packed_events(packed, x_vector):
    """One input, PE style: only columns with a non-zero activation are decoded.

    Each column ``j`` of PE ``p`` is decoded with :func:`sw.huffman.table_decode` from bit
    ``ptr[j]`` until exactly ``ptr[j+1]``; ``row = prev + gap + 1``,
    ``acc[row] += a[j] * cb_q[index]``. A conv layer is one such pass per output position over
    the position's patch (from the input map by the descriptor's geometry), each position's
    outputs requantized and max-pooled.

    Returns
    -------
    logits : numpy.ndarray
        int64 ``[out]``.
    symbols_decoded : numpy.ndarray
        int64 ``(layers, N)`` symbols each PE decoded (its busy cycles at one symbol a cycle).
    """
    N, act_bits, acc_bits, _, _, _ = _params(packed)
    a = np.asarray(x_vector, dtype=np.int64).ravel()
    descs = read_descriptors(packed)
    if len(a) != descs[0].in_values:
        raise RefDecodeError(f"input must have {descs[0].in_values} values, got {len(a)}")
    work = np.zeros((len(descs), N), dtype=np.int64)
    for d in descs:
        cb = _codebook(packed, d)
        readers = [_ColumnReader(packed, descs, d, p) for p in range(N)]
        if not d.conv:
            a = _requant(_pass(readers, cb, d, a, N, work[d.index]), d, act_bits, acc_bits)
            continue
        patches = conv_patches(a.reshape((1,) + d.in_map), (d.kernel_h, d.kernel_w))[0]
        y = np.zeros((d.out_features, d.out_height * d.out_width), dtype=np.int64)
        for pos, patch in enumerate(patches):
            y[:, pos] = _requant(_pass(readers, cb, d, patch, N, work[d.index]), d, act_bits,
                                 acc_bits)
        a = max_pool2(y.reshape((1, d.out_features, d.out_height, d.out_width))).ravel()
    return a, work


def build_parser():
    """The command line's options (``python -m sw.refdecoder``)."""
    ap = argparse.ArgumentParser(prog="python -m sw.refdecoder",
                                 description="inference from packed memory images")
    ap.add_argument("packdir", help="directory written by python -m sw.pack")
    ap.add_argument("--model", help="calibrated model: check logits equal sw.golden bit for bit")
    ap.add_argument("--events", type=int, default=0,
                    help="also run the per-column (PE-style) decoder on this many images")
    return ap


@command
def main(argv=None):
    """Command line: classify the MNIST test set from packed images, compare with the golden."""


    args = build_parser().parse_args(argv)
    packed = PackedImages.load(args.packdir)
    golden_model = IntModel.from_model(load_model(args.model)) if args.model else None
    x_f, y = load_mnist()["test"]
    x = images_to_uint8(x_f)
    t0 = time.time()
    logits = infer_packed(packed, x)
    dt = time.time() - t0
    err = float((np.argmax(logits, axis=1) != y).mean())
    print(f"{args.packdir}: N={packed.n_pes}, test error from the images alone "
          f"{100 * err:.2f}% on {len(y)} images ({dt:.2f} s)")
    ok = True
    if golden_model is not None:
        gold = infer(golden_model, x, trace=False)
        same = bool(np.array_equal(gold.logits, logits))
        ok &= same
        print(f"logits equal sw.golden bit for bit on all {len(y)} images: {same}")
    for i in range(args.events):
        ev, _ = infer_packed_events(packed, x[i])
        if not np.array_equal(ev, logits[i]):
            ok = False
            print(f"per-column decoder differs on image {i}")
    if args.events:
        print(f"per-column decoder checked on {args.events} images")
    return EXIT_OK if ok else EXIT_MISMATCH


if __name__ == "__main__":
    sys.exit(main())
