"""Memory images for the accelerator (docs/ARCHITECTURE.md section 4, bit level in FORMATS.md).

:func:`pack` turns a calibrated integer model into 16-bit memory images: two private memories per
PE (data: layer headers, Huffman-coded sparse columns, biases; pointers: the column pointer
tables, read through their own port) and the shared
memories (codebook, Huffman ``limit``/``base``/``symbols`` tables, layer descriptors). It proves
that no accumulator can overflow and refuses (:class:`PackError`) any model the hardware or
the board cannot hold.

Command line::

    python -m sw.pack MODEL --pes N --board NAME [--out DIR]
"""
import argparse
import io
import json
import math
import sys
import dataclasses
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from boards import get_board
from contract.config import AcceleratorConfig
from contract.memmap import (ADDR_BITS, COLSKIP_MAX_PES, CONV_LIMITS, DESC_FIELDS, DESC_WORDS,
                             FLAG_CONV, FLAG_FMAP_BUF, FLAG_FMAP_IN, FLAG_LAST, FLAG_PTR2,
                             FLAG_RELU, HEADER_WORD, HEADER_WORDS, MEM_ID_BITS, SHARED_MEMORIES,
                             colskip_mem, colskip_table_words, colskip_words, fixed_entry_bits,
                             fmap_bank_words, is_pe_memory,
                             mem_names, pointer_mem, shared_mem)
from contract.widths import WIDTH_KEYS, WORD_BITS
from sw.balance import BalanceError, METHODS, balance_model
from sw.cli import add_column_code, command, huffman_of
from sw.golden import (GoldenError, IntModel, accumulator_bounds, conv_geometry, ideal_cycles,
                       images_to_uint8, load_mnist)
from sw.huffman import HuffmanCode, HuffmanError, bits_to_words
from sw.modelfile import CompressedModel, load_model
from sw.sparse import encode_columns

__all__ = ["PackError", "PackLimits", "WIDTH_KEYS", "PackedImages", "pack", "sized_limits",
           "accumulator_rows", "FixedCode",
           "fmap_maps", "fmap_words", "layer_descriptors",
           "mem_names", "pointer_mem", "colskip_mem", "colskip_table", "is_pe_memory",
           "build_parser", "main", "FLAG_RELU", "FLAG_LAST", "FLAG_PTR2", "DESC_WORDS",
           "HEADER_WORDS"]

MANIFEST_VERSION = 4      # 2: pointer tables in their own per-PE memories (ids N+5..2N+4)
#                           3: column skip table (id 2N+5)
#                           4: 16-word layer descriptors (conv geometry, issue 17)


class PackError(ValueError):
    """The model cannot be packed for the requested PE count / board (message says why)."""


#: The limits of the default gateware (``contract.config.AcceleratorConfig()``).
_DEFAULT_CONFIG = AcceleratorConfig()


@dataclass(frozen=True)
class PackLimits:
    """Hardware limits the images must respect (defaults = ``contract.config.AcceleratorConfig()``).

    Attributes
    ----------
    max_layers : int
        Layer descriptors the hardware holds.
    max_rows_per_pe : int
        Accumulator entries per PE, all layers together.
    max_features : int
        Largest in/out feature count of a layer.
    symbol_depth : int
        Entries of the joint-symbol table (all layers).
    max_logits : int
        Largest final-layer width (the logit index is 8 bits).
    pe_mem_words : int or None
        Words of each of a PE's two memories (data, pointers) in the gateware; ``None``: the
        board's ``pe_mem_words`` (the smaller of the two applies).
    fmap_depth : int
        Entries of each feature-map bank (``AcceleratorConfig.fmap_depth``; 0: the gateware
        has no feature-map buffers and runs no conv layer).
    huffman : bool
        The gateware decodes Huffman-coded columns (``AcceleratorConfig.huffman``); ``False``:
        the columns are written as fixed-width entries (:class:`FixedCode`) and the Huffman
        tables stay empty.
    act_bits, weight_bits, acc_bits, idx_bits, gap_bits, huff_max_len : int or None
        Widths the gateware is built with (``contract.config.AcceleratorConfig``); the model's
        must be equal (:func:`pack` raises :class:`PackError` otherwise). ``None``: not checked (any
        width; the gateware is built for the model, as :func:`sized_limits` sets them).
    """
    max_layers: int = _DEFAULT_CONFIG.max_layers
    max_rows_per_pe: int = _DEFAULT_CONFIG.max_rows_per_pe
    max_features: int = _DEFAULT_CONFIG.max_features
    symbol_depth: int = _DEFAULT_CONFIG.symbol_depth
    max_logits: int = 256
    pe_mem_words: int = None
    fmap_depth: int = _DEFAULT_CONFIG.fmap_depth
    huffman: bool = True
    act_bits: int = None
    weight_bits: int = None
    acc_bits: int = None
    idx_bits: int = None
    gap_bits: int = None
    huff_max_len: int = None

    @classmethod
    def from_config(cls, cfg):
        """Limits (and widths) of a ``contract.config.AcceleratorConfig``."""
        return cls(max_layers=cfg.max_layers, max_rows_per_pe=cfg.max_rows_per_pe,
                   max_features=cfg.max_features, symbol_depth=cfg.symbol_depth,
                   pe_mem_words=cfg.pe_mem_depth, fmap_depth=cfg.fmap_depth,
                   huffman=cfg.huffman, **{k: getattr(cfg, k) for k in WIDTH_KEYS})

    def widths(self):
        """``{name: width}`` of the widths that are fixed (not ``None``)."""
        return {k: getattr(self, k) for k in WIDTH_KEYS if getattr(self, k) is not None}


def accumulator_rows(model, n_pes):
    """Accumulator rows each of ``n_pes`` PEs needs for ``model`` (a ``CompressedModel`` or
    ``IntModel``), all layers together: rows are interleaved ``r mod N``, so the count does not
    depend on the neuron order (balancing)."""
    im = _as_int_model(model)
    return [sum(-(-(l.out_features - p) // n_pes) for l in im.layers) for p in range(n_pes)]


def sized_limits(model, n_pes, limits=None, balance=True):
    """``limits`` with ``max_rows_per_pe``, ``symbol_depth`` and (conv models) ``fmap_depth``
    grown (doubling; ``fmap_depth`` from 0 to the power of two the largest feature map needs per
    bank) to what ``model`` needs on ``n_pes`` PEs and the widths (``idx_bits``, ``gap_bits``... see
    :data:`WIDTH_KEYS`) set to the model's (the gateware can be built with these; ``hw.build``
    and ``hw.bench`` do). Other limits are kept; :func:`pack` still checks everything.
    ``balance``: the row order as :func:`pack` gets it (same values).
    """
    im = _as_int_model(model)
    limits = limits or PackLimits()
    try:
        im = balance_model(im, int(n_pes), balance)[0]
    except BalanceError as e:
        raise PackError(str(e)) from None
    rows = max(accumulator_rows(im, n_pes))
    symbols = sum(len(np.unique(encode_columns(l.index, n_pes, im.gap_bits, im.idx_bits)
                                .all_symbols())) for l in im.layers)

    def grow(size, need):
        while size < need:
            size *= 2
        return size
    fmap = fmap_words(im, n_pes)
    fmap_depth = grow(max(1, limits.fmap_depth), fmap) if fmap else limits.fmap_depth
    return dataclasses.replace(limits, max_rows_per_pe=grow(limits.max_rows_per_pe, rows),
                               symbol_depth=grow(limits.symbol_depth, symbols),
                               fmap_depth=fmap_depth,
                               **{k: int(getattr(im, k)) for k in WIDTH_KEYS})


def fmap_maps(im):
    """The feature maps a conv model keeps on chip: ``[(what, (C, H, W), replicated)...]``,
    every conv layer's input map (layer 0's: the model input, which the gateware stores
    *replicated*, whole in every bank, so its patches read N neighbours at once) and its pooled
    output map (channel ``c`` in bank ``c mod N``)."""
    maps = []
    for i, l in enumerate(im.layers):
        if l.conv:
            if i == 0:
                maps.append(("the input map of layer 0", tuple(l.in_shape), True))
            maps.append((f"the pooled output map of layer {i} ({l.name})", tuple(l.out_shape),
                         False))
    return maps


def _map_bank_words(shape, replicated, n_pes):
    """Entries per bank of a map: ``C * H * W`` replicated, else ``ceil(C / N) * H * W``."""
    return fmap_bank_words(*shape, 1 if replicated else n_pes)


def fmap_words(im, n_pes):
    """Entries of one feature-map bank the largest map of ``im`` needs on ``n_pes`` PEs (0: no
    conv layer; docs/ARCHITECTURE.md section 4)."""
    return max((_map_bank_words(shape, rep, n_pes) for _, shape, rep in fmap_maps(im)),
               default=0)


def colskip_table(col_ptrs):
    """Column skip table image (docs/FORMATS.md): per layer, per input column one entry whose
    bit ``p`` is set when PE ``p``'s share of the column is empty; layers back to back. An entry
    is ``colskip_words(N)`` 16-bit words (one up to 16 PEs), word ``w`` holding PEs
    ``16w..16w+15``.

    ``col_ptrs[i][p]`` is PE ``p``'s column pointer array (``in + 1`` offsets, any unit) of
    layer ``i``. Needs at most :data:`COLSKIP_MAX_PES` PEs.
    """
    parts = []
    for ptrs in col_ptrs:
        if len(ptrs) > COLSKIP_MAX_PES:
            raise PackError(f"the column skip table holds at most {COLSKIP_MAX_PES} PEs, "
                            f"not {len(ptrs)}")
        n_words = colskip_words(len(ptrs))
        words = np.zeros((len(ptrs[0]) - 1, n_words), dtype=np.int64)
        for p, ptr in enumerate(ptrs):
            empty = (np.diff(np.asarray(ptr, dtype=np.int64)) == 0).astype(np.int64)
            words[:, p // 16] |= empty << (p % 16)
        parts.append(words.reshape(-1))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


@dataclass
class PackedImages:
    """Memory images and manifest.

    Attributes
    ----------
    n_pes : int
    images : dict[int, numpy.ndarray]
        Memory id -> uint16 words from address 0 (only the used part; the rest of the memory is
        zero).
    manifest : dict
        JSON-serialisable description (see docs/FORMATS.md).
    """
    n_pes: int
    images: dict
    manifest: dict = field(default_factory=dict)

    @property
    def names(self):
        return mem_names(self.n_pes)

    def image(self, name):
        """Image of the memory called ``name`` (``"pe0"``, ``"codebook"``...)."""
        for k, nm in self.names.items():
            if nm == name:
                return self.images[k]
        raise KeyError(name)

    def load_words(self, skip_zeros=False):
        """Yield ``(mem, addr, data)`` for every word to write over the load port.

        Parameters
        ----------
        skip_zeros : bool
            Omit zero words (valid only when the memories are cleared before loading).
        """
        for mem in sorted(self.images):
            img = self.images[mem]
            for addr, word in enumerate(img.tolist()):
                if skip_zeros and word == 0:
                    continue
                yield mem, addr, word

    def save(self, directory):
        """Write ``NAME.hex`` ($readmemh: 4 hex digits a line), ``images.npz``,
        ``manifest.json`` into ``directory``."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        for mem, nm in self.names.items():
            img = self.images[mem]
            (d / f"{nm}.hex").write_text("".join(f"{int(w):04x}\n" for w in img))
        np.savez(d / "images.npz", **{nm: self.images[mem] for mem, nm in self.names.items()})
        (d / "manifest.json").write_text(json.dumps(self.manifest, indent=1) + "\n")

    @classmethod
    def load(cls, directory):
        """Read images and manifest written by :meth:`save`."""
        d = Path(directory)
        try:
            manifest = json.loads((d / "manifest.json").read_text())
            n = int(manifest["n_pes"])
            # (from bytes: np.load leaves the file open when the zip is damaged)
            with np.load(io.BytesIO((d / "images.npz").read_bytes()), allow_pickle=False) as z:
                images = {mem: z[nm].astype(np.uint16) for mem, nm in mem_names(n).items()}
        except (OSError, KeyError, ValueError, TypeError, EOFError, zipfile.BadZipFile,
                zlib.error) as e:
            raise PackError(f"cannot read packed images from {d}: {type(e).__name__}: {e}") \
                from None
        return cls(n, images, manifest)


def _as_int_model(model):
    if isinstance(model, IntModel):
        return model
    if isinstance(model, CompressedModel):
        try:
            conv_geometry(model)       # (a conv layer the hardware cannot run: say that first)
        except GoldenError as e:
            raise PackError(str(e)) from None
        if model.integer is None:
            raise PackError("model has no integer section (calibrate it first: "
                            "python -m sw.golden MODEL --calibrate --out MODEL)")
        try:
            return IntModel.from_model(model)
        except GoldenError as e:
            raise PackError(str(e)) from None
    raise PackError(f"cannot pack a {type(model).__name__}; need IntModel or CompressedModel")


def _u16(values):
    v = np.asarray(values, dtype=np.int64)
    return (v & 0xFFFF).astype(np.uint16)


def pack(int_model, n_pes, board="sim", limits=None, x=None, balance=False):
    """Pack a model into memory images.

    The stages: the model is checked against the board and the gateware limits
    (:func:`_check_limits`) and renumbered (``balance``), its accumulators proven not to overflow
    (:func:`_accumulator_proof`), each layer's columns encoded and Huffman-coded
    (:func:`_encode_layers`, :func:`_layer_streams`), the PE memories laid out
    (:func:`_pe_images`) and the shared tables written (:func:`_shared_images`); the manifest
    describes the result.

    Parameters
    ----------
    int_model : sw.golden.IntModel or sw.modelfile.CompressedModel
        Calibrated model (a CompressedModel must have its integer section).
    n_pes : int
        PE count N.
    board : str or boards.Board
        Board whose memory capacities are checked (a ``boards/`` file name: ``"icebreaker"``,
        ``"ulx3s"``, ``"sim"``...).
    limits : PackLimits, optional
        Hardware limits (default: the ``contract.config.AcceleratorConfig`` defaults, with the
        board profile's ``huffman``: Huffman-coded columns or fixed-width entries).
    x : array_like, optional
        Input vectors (e.g. MNIST test bytes) for the ideal-cycle statistics in the manifest.
    balance : bool or str
        Renumber hidden neurons so the PEs get equal work (:func:`sw.balance.balance_model`; the
        logits are bit-identical, hidden activations come out in the new order): ``"data"``
        (or ``True``: greedy refined on the default calibration set, greedy when the model has
        none), ``"greedy"``, or ``"none"`` (or ``False``). The manifest's ``row_order`` says
        which (``balanced``, ``method``, ``calibration``) and lists, per layer, the original
        neuron of each packed row.

    Returns
    -------
    PackedImages

    Raises
    ------
    PackError
        With a message naming the limit that is exceeded.
    """
    im = _as_int_model(int_model)
    try:
        spec = get_board(board) if isinstance(board, str) else board
    except ValueError as e:
        raise PackError(str(e)) from None
    # (without limits: the default gateware's, with the board's column code)
    limits = limits or PackLimits(huffman=spec.profile.huffman)
    N = int(n_pes)
    pe_cap = _check_board(N, n_pes, spec, limits)
    try:
        im, row_order, balanced = balance_model(im, N, balance)
    except BalanceError as e:
        raise PackError(str(e)) from None
    rows_local = _check_limits(im, N, limits)
    proof = _accumulator_proof(im)
    enc, codes = _encode_layers(im, N, limits)
    streams, ptr_words = _layer_streams(im, N, enc, codes)
    pe_images, ptr_images, pe_usage = _pe_images(im, N, streams, ptr_words, rows_local, pe_cap,
                                                 spec)
    images = {p: pe_images[p] for p in range(N)}
    shared, caps = _shared_images(im, N, codes, ptr_words, limits)
    images.update(shared)
    for p in range(N):
        images[pointer_mem(N, p)] = ptr_images[p]
    if N <= COLSKIP_MAX_PES:
        images[colskip_mem(N)] = _u16(colskip_table([[pe.col_ptr for pe in e.pes]
                                                     for e in enc]))
        caps[colskip_mem(N)] = colskip_table_words(N, limits.max_layers, limits.max_features)

    manifest = _manifest(im, N, spec, limits, images, mem_names(N), caps, pe_cap, pe_usage,
                         streams, enc, codes, ptr_words, proof, rows_local)
    manifest["row_order"] = {"balanced": balanced["method"] != "none", **balanced,
                             "layers": [[int(r) for r in o] for o in row_order]}
    if x is not None:
        manifest["ideal_cycles"] = ideal_cycles(im, x, N).summary()
        manifest["ideal_cycles"]["images"] = int(np.asarray(x).shape[0])
    ebr = manifest["totals"]["ebr_blocks_tables"]
    if ebr > spec.ebr_blocks:
        raise PackError(f"shared tables need {ebr} EBR blocks (replicated per PE); board "
                        f"{spec.name} has {spec.ebr_blocks}")
    return PackedImages(N, images, manifest)


def _check_board(N, n_pes, spec, limits):
    """Refuse a PE count the board or the memory ids cannot take; returns the words of each PE
    memory (the smaller of the board's and the gateware's)."""
    if N < 1:
        raise PackError(f"n_pes must be >= 1, not {n_pes}")
    if N > spec.max_pes:
        raise PackError(f"board {spec.name} supports at most {spec.max_pes} PEs, not {N}")
    if colskip_mem(N) >= 1 << MEM_ID_BITS:
        raise PackError(f"{N} PEs need more than {1 << MEM_ID_BITS} memory ids (mem is "
                        f"{MEM_ID_BITS} bits)")
    pe_cap = min(int(spec.pe_mem_words), 1 << ADDR_BITS)
    if limits.pe_mem_words is not None:
        pe_cap = min(pe_cap, int(limits.pe_mem_words))
    return pe_cap


def _check_limits(im, N, limits):
    """Refuse a (renumbered) model whose widths or sizes the gateware does not have; returns
    ``rows_local[layer][p]``, the rows of each layer in PE ``p``."""
    wrong = [f"{k}={getattr(im, k)} (the gateware has {v})"
             for k, v in limits.widths().items() if getattr(im, k) != v]
    if wrong:
        raise PackError("the model's widths differ from the gateware's: " + ", ".join(wrong)
                        + "; build the gateware for the model (hw.build sizes it from the model "
                          "file) or calibrate the model with the gateware's widths")
    if im.weight_bits > WORD_BITS:
        raise PackError(f"weight_bits={im.weight_bits}: codebook words are {WORD_BITS} bits")
    n_layers = len(im.layers)
    if n_layers > limits.max_layers:
        raise PackError(f"model has {n_layers} layers; the hardware holds {limits.max_layers}")
    for i, l in enumerate(im.layers):
        if max(l.in_features, l.out_features) > limits.max_features:
            raise PackError(f"layer {i} ({l.name}) is {l.in_features}->{l.out_features}; "
                            f"the hardware supports at most {limits.max_features} features")
    _check_conv_limits(im, N, limits)
    if im.out_features > limits.max_logits:
        raise PackError(f"{im.out_features} logits exceed the {limits.max_logits} the logit "
                        "index can address")
    rows_local = [[-(-(l.out_features - p) // N) for p in range(N)] for l in im.layers]
    rows_total = [sum(r[p] for r in rows_local) for p in range(N)]
    if max(rows_total) > limits.max_rows_per_pe:
        raise PackError(f"PE {int(np.argmax(rows_total))} needs {max(rows_total)} accumulator "
                        f"rows (all layers); the hardware has {limits.max_rows_per_pe} per PE "
                        f"(too many rows for {N} PEs)")
    return rows_local


def _check_conv_limits(im, N, limits):
    """Refuse conv layers the gateware cannot run: no feature-map buffers, a map larger than a
    bank, a geometry past ``CONV_LIMITS`` (stride, padding and pooling are checked when the model
    file becomes an integer model)."""
    maps = fmap_maps(im)
    if not maps:
        return
    convs = [f"{i} ({l.name})" for i, l in enumerate(im.layers) if l.conv]
    if not limits.fmap_depth:
        raise PackError(f"layer(s) {', '.join(convs)} are conv layers and the gateware has no "
                        f"feature-map buffers (fmap_depth 0); build it with fmap_depth >= "
                        f"{fmap_words(im, N)} for {N} PEs (hw.build / hw.bench size it from the "
                        "model)")
    dim, kmax = CONV_LIMITS["max_dim"], CONV_LIMITS["max_kernel"]
    for i, l in enumerate(im.layers):
        if not l.conv:
            continue
        c, h, w = l.in_shape
        _, oh, ow = l.conv_out_shape
        if max(h, w, oh, ow) > dim:
            raise PackError(f"layer {i} ({l.name}): a {h}x{w} input map (conv output {oh}x{ow}) "
                            f"exceeds the hardware's {dim}x{dim} feature maps")
        if max(l.kernel) > kmax:
            raise PackError(f"layer {i} ({l.name}): a {l.kernel[0]}x{l.kernel[1]} kernel exceeds "
                            f"the hardware's {kmax}x{kmax}")
        if l.input_size >= 1 << WORD_BITS:
            raise PackError(f"layer {i} ({l.name}): its {l.input_size}-value input map does not "
                            f"fit the descriptor's {WORD_BITS}-bit in_values")
    for what, shape, rep in maps:
        need = _map_bank_words(shape, rep, N)
        if need > limits.fmap_depth:
            rule = "C*H*W: replicated" if rep else "ceil(C/N)*H*W"
            raise PackError(f"{what}, {shape[0]}x{shape[1]}x{shape[2]}, needs {need} entries "
                            f"per feature-map bank on {N} PEs ({rule}); the gateware has "
                            f"{limits.fmap_depth} (build it with fmap_depth >= {need}, or use more "
                            "PEs)")


def _accumulator_proof(im):
    """The accumulator-overflow proof of section 1, one entry per layer for the manifest."""
    acc_limit = 1 << (im.acc_bits - 1)
    proof = []
    for i, b in enumerate(accumulator_bounds(im)):
        worst = int(b.max(initial=0))
        if worst >= acc_limit:
            r = int(np.argmax(b))
            raise PackError(f"layer {i} ({im.layers[i].name}) row {r}: accumulator could reach "
                            f"{worst} >= 2^{im.acc_bits - 1}; recalibrate with a smaller "
                            "codebook scale")
        proof.append({"layer": i, "max_abs_acc": worst, "limit": acc_limit,
                      "headroom_bits": float(np.log2(acc_limit / max(worst, 1)))})
    return proof


class FixedCode:
    """Fixed-width column entries, the code of gateware without the Huffman decoder
    (``PackLimits.huffman`` off; EIE's format): every joint symbol ``gap << idx_bits | idx``
    takes ``bits`` bits (``contract.memmap.fixed_entry_bits``: 8 or 16), right-aligned, MSB
    first in the stream, so an entry never straddles a memory word. The part of
    :class:`sw.huffman.HuffmanCode`'s interface the packer uses; it has no table entries.
    """

    def __init__(self, bits):
        self.bits = int(bits)
        self.lengths = np.array([self.bits], dtype=np.int64)   # (the manifest's max_code_len)

    def __len__(self):
        return 0

    def symbol_lengths(self, symbols):
        """int64 ``bits`` for each symbol of ``symbols``."""
        return np.full(len(symbols), self.bits, dtype=np.int64)

    def encode(self, symbols):
        """uint8 0/1 bits of the symbols, ``bits`` each, MSB first."""
        s = np.asarray(symbols, dtype=np.int64).ravel()
        shifts = np.arange(self.bits - 1, -1, -1)
        return ((s[:, None] >> shifts) & 1).astype(np.uint8).ravel()


def _encode_layers(im, N, limits):
    """Sparse column encoding of every layer for ``N`` PEs and one Huffman code per layer
    (section 3), or the fixed-width entries of gateware without the Huffman decoder;
    refuses more joint symbols than the symbol table holds."""
    enc, codes = [], []
    for i, l in enumerate(im.layers):
        e = encode_columns(l.index, N, im.gap_bits, im.idx_bits)
        if not limits.huffman:
            enc.append(e)
            codes.append(FixedCode(fixed_entry_bits(im.idx_bits, im.gap_bits)))
            continue
        try:
            code = HuffmanCode.from_symbols(e.all_symbols(), im.huff_max_len)
        except HuffmanError as err:
            raise PackError(f"layer {i} ({l.name}): {err}") from None
        enc.append(e)
        codes.append(code)
    n_symbols = [len(c) for c in codes]
    if sum(n_symbols) > limits.symbol_depth:
        raise PackError(f"the layers use {sum(n_symbols)} distinct joint symbols "
                        f"({', '.join(map(str, n_symbols))}); the symbol table holds "
                        f"{limits.symbol_depth} (build the gateware with symbol_depth >= "
                        f"{sum(n_symbols)}, or calibrate with fewer gap_bits)")
    return enc, codes


def _layer_streams(im, N, enc, codes):
    """Per PE and layer the column pointers (bit offsets) and the coded stream:
    ``streams[p][layer] = (ptr, words, n_bits, pe_columns)``; and per layer its pointer width in
    words (1 when every PE's stream is shorter than 2^16 bits, else 2)."""
    streams = [[None] * len(im.layers) for _ in range(N)]
    ptr_words = []
    for i, (e, code) in enumerate(zip(enc, codes)):
        biggest = 0
        for p, pe in enumerate(e.pes):
            lens = code.symbol_lengths(pe.symbols)
            csum = np.concatenate([[0], np.cumsum(lens)])
            ptr = csum[pe.col_ptr]
            bits = code.encode(pe.symbols)
            streams[p][i] = (ptr, bits_to_words(bits), int(len(bits)), pe)
            biggest = max(biggest, int(ptr[-1]))
        if biggest >= 1 << (2 * WORD_BITS):
            raise PackError(f"layer {i}: stream of {biggest} bits overflows a 32-bit pointer")
        ptr_words.append(1 if biggest < 1 << WORD_BITS else 2)
    return streams, ptr_words


def _pe_images(im, N, streams, ptr_words, rows_local, pe_cap, spec):
    """PE ``p``'s two memories: the data memory holds the headers, the streams and the biases;
    the pointer memory (its own read port, section 4) the pointer tables of all layers. Returns
    the data images, the pointer images and each PE's use in words (for the manifest)."""
    n_layers = len(im.layers)
    pe_images, ptr_images, pe_usage = [], [], []
    for p in range(N):
        addr = HEADER_WORDS * n_layers
        paddr = 0
        header = np.zeros(HEADER_WORDS * n_layers, dtype=np.int64)
        parts = []
        ptr_parts = []
        for i in range(n_layers):
            ptr, words, nbits, _ = streams[p][i]
            if ptr_words[i] == 1:
                ptab = ptr
            else:            # hi word first
                ptab = np.stack([ptr >> WORD_BITS, ptr & 0xFFFF], axis=1).ravel()
            header[HEADER_WORDS * i:HEADER_WORDS * (i + 1)] = [paddr, addr, 0, rows_local[i][p]]
            ptr_parts.append(ptab)
            parts.append(words)
            paddr += len(ptab)
            addr += len(words)
        bias_base0 = addr
        for i, l in enumerate(im.layers):
            header[HEADER_WORDS * i + HEADER_WORD["bias_base"]] = addr
            parts.append(l.bias_q[p::N])
            addr += rows_local[i][p]
        if addr > pe_cap:
            raise PackError(f"PE {p} memory overflow: its streams and biases need {addr} words, "
                            f"board {spec.name} / hardware has {pe_cap} per PE (use more PEs or "
                            "prune harder)")
        if paddr > pe_cap:
            raise PackError(f"PE {p} pointer memory overflow: its pointer tables need {paddr} "
                            f"words, board {spec.name} / hardware has {pe_cap} per PE (use more "
                            "PEs)")
        if np.any(header >= 1 << ADDR_BITS):
            raise PackError(f"PE {p}: a header address does not fit {ADDR_BITS} bits")
        img = _u16(np.concatenate([header] + [np.asarray(q, dtype=np.int64) for q in parts]))
        pimg = _u16(np.concatenate([np.asarray(q, dtype=np.int64) for q in ptr_parts]))
        assert len(img) == addr and len(pimg) == paddr
        pe_images.append(img)
        ptr_images.append(pimg)
        pe_usage.append({"header": int(len(header)), "pointers": int(paddr),
                         "streams": int(sum(len(streams[p][i][1]) for i in range(n_layers))),
                         "biases": int(addr - bias_base0), "total": int(addr + paddr)})
    return pe_images, ptr_images, pe_usage


def layer_descriptors(im):
    """Per layer the descriptor fields (:data:`contract.memmap.DESC_FIELDS`, section 4) that
    follow from the model alone: all but ``sym_base``, ``n_symbols`` and the ``ptr_words2``
    flag (0 here), which follow from the coded streams."""
    out = []
    buf = 0                   # the feature-map buffer holding the next conv layer's input
    prev = None
    for l in im.layers:
        fields = dict.fromkeys(DESC_FIELDS, 0)
        flags = (FLAG_RELU if not l.last else 0) | (FLAG_LAST if l.last else 0)
        fields.update({"in_features": l.in_features, "out_features": l.out_features,
                       "shift": l.shift, "bias_shift": l.bias_shift,
                       "in_values": l.input_size})
        if l.conv or (prev is not None and prev.conv):
            flags |= FLAG_FMAP_IN | (FLAG_FMAP_BUF if buf else 0)
            c, h, w = l.in_shape if l.conv else prev.out_shape
            fields.update({"in_channels": c, "in_height": h, "in_width": w})
        if l.conv:
            flags |= FLAG_CONV
            _, oh, ow = l.conv_out_shape
            fields.update({"pool": CONV_LIMITS["pool"], "kernel_h": l.kernel[0],
                           "kernel_w": l.kernel[1], "out_height": oh, "out_width": ow})
            buf = 1 - buf
        fields["flags"] = flags
        out.append(fields)
        prev = l
    return out


def _shared_images(im, N, codes, ptr_words, limits):
    """The shared memories (section 4: codebook, Huffman ``limit``/``base``/``symbols``, layer
    descriptors): ``{mem: image}`` in memory id order and ``{mem: capacity in words}``."""
    n_layers = len(im.layers)
    L_max = im.huff_max_len
    cb_size = 1 << im.idx_bits
    codebook = np.zeros(n_layers * cb_size, dtype=np.int64)
    limit_img = np.zeros(n_layers * L_max, dtype=np.int64)
    base_img = np.zeros(n_layers * L_max, dtype=np.int64)
    sym_parts = []
    desc = np.zeros(DESC_WORDS * n_layers, dtype=np.int64)
    descriptors = layer_descriptors(im)
    sym_base = 0
    for i, (l, code) in enumerate(zip(im.layers, codes)):
        codebook[i * cb_size:(i + 1) * cb_size] = l.cb_q
        if limits.huffman:
            lim, base, syms = code.tables()
            limit_img[i * L_max:(i + 1) * L_max] = lim
            base_img[i * L_max:(i + 1) * L_max] = base
        else:                   # fixed-width entries: no Huffman tables
            syms = np.zeros(0, dtype=np.int64)
        sym_parts.append(syms)
        fields = descriptors[i] | {"flags": descriptors[i]["flags"]
                                   | (FLAG_PTR2 if ptr_words[i] == 2 else 0),
                                   "sym_base": sym_base, "n_symbols": len(syms)}
        desc[DESC_WORDS * i:DESC_WORDS * (i + 1)] = [fields[name] for name in DESC_FIELDS]
        sym_base += len(syms)
    symbols = np.concatenate(sym_parts) if sym_parts else np.zeros(0, dtype=np.int64)
    if not limits.huffman:
        limit_img = base_img = np.zeros(0, dtype=np.int64)
    shared = {"codebook": (codebook, limits.max_layers * cb_size),
              "huff_limit": (limit_img, limits.max_layers * L_max),
              "huff_base": (base_img, limits.max_layers * L_max),
              "huff_symbols": (symbols, limits.symbol_depth),
              "layers": (desc, DESC_WORDS * limits.max_layers)}
    assert tuple(shared) == SHARED_MEMORIES
    images, caps = {}, {}
    for name, (words, capacity) in shared.items():
        images[shared_mem(N, name)] = _u16(words)
        caps[shared_mem(N, name)] = capacity
    return images, caps


def _blocks(words, words_per_block=256):
    """Block RAMs of ``words_per_block`` 16-bit words (the board family's; iCE40 EBR: 256) for a
    memory of ``words`` words."""
    return -(-int(words) // words_per_block)


def _manifest(im, N, spec, limits, images, names, caps, pe_cap, pe_usage, streams, enc, codes,
              ptr_words, proof, rows_local):
    memories = {}
    for mem, img in images.items():
        cap = pe_cap if is_pe_memory(mem, N) else caps[mem]
        memories[names[mem]] = {"mem": mem, "words_used": int(len(img)), "capacity_words": cap,
                                "bytes": int(2 * len(img))}
    pe_bytes = sum(2 * len(img) for mem, img in images.items() if is_pe_memory(mem, N))
    shared_ids = [shared_mem(N, name) for name in SHARED_MEMORIES]
    shared_bytes = sum(2 * len(images[m]) for m in shared_ids)
    total = pe_bytes + shared_bytes
    dense_weights = sum(l.in_features * l.out_features for l in im.layers)
    dense_bias = sum(l.out_features for l in im.layers)
    dense_bytes = 4 * (dense_weights + dense_bias)
    # Tables replicated per PE (section 7): codebook, limit, base, symbols; descriptors once.
    per_block = spec.facts.bram_words16
    ebr_blocks = N * sum(_blocks(len(images[m]), per_block) for m in shared_ids[:4]) + _blocks(
        len(images[shared_mem(N, "layers")]), per_block)
    layers = []
    for i, (l, e, code) in enumerate(zip(im.layers, enc, codes)):
        nnz = int((l.index != 0).sum())
        fillers = sum(pe.n_fillers for pe in e.pes)
        bits = [streams[p][i][2] for p in range(N)]
        layers.append({
            "name": l.name, "in_features": l.in_features, "out_features": l.out_features,
            "relu": bool(l.relu), "last": bool(l.last), "shift": int(l.shift),
            "bias_shift": int(l.bias_shift), "nonzeros": nnz, "fillers": int(fillers),
            "density": nnz / max(1, l.in_features * l.out_features),
            "n_symbols": len(code), "max_code_len": int(code.lengths.max(initial=0)),
            "ptr_words": ptr_words[i], "stream_bits_per_pe": bits,
            "stream_bits_total": int(sum(bits)),
            "bits_per_nonzero": float(sum(bits) / max(1, nnz)),
            "nonzeros_per_pe": [int(len(pe.symbols) - pe.n_fillers) for pe in e.pes],
            "fillers_per_pe": [int(pe.n_fillers) for pe in e.pes],
            "rows_local": rows_local[i],
            "cb_q": [int(v) for v in l.cb_q],
        } | ({"kind": "conv", "in_shape": [int(v) for v in l.in_shape],
              "kernel": [int(v) for v in l.kernel], "positions": int(l.positions),
              "out_shape": [int(v) for v in l.out_shape]} if l.conv else {"kind": "fc"}))
    return {
        "format": "dcpack", "version": MANIFEST_VERSION,
        "params": {"act_bits": im.act_bits, "weight_bits": im.weight_bits,
                   "acc_bits": im.acc_bits, "idx_bits": im.idx_bits, "gap_bits": im.gap_bits,
                   "huff_max_len": im.huff_max_len},
        "n_pes": N, "board": spec.name, "n_layers": len(im.layers),
        # how the column streams are coded: "huffman", or "fixed" (entries of
        # contract.memmap.fixed_entry_bits bits, for gateware without the Huffman decoder)
        "column_code": "huffman" if limits.huffman else "fixed",
        "limits": {"max_layers": limits.max_layers,
                   "max_rows_per_pe": limits.max_rows_per_pe,
                   "max_features": limits.max_features, "symbol_depth": limits.symbol_depth,
                   "pe_mem_words": pe_cap, "fmap_depth": limits.fmap_depth},
        "fmap_words": fmap_words(im, N),
        "mem_ids": {nm: mem for mem, nm in names.items()},
        "memories": memories,
        "pe_usage_words": pe_usage,
        "layers": layers,
        "accumulator_proof": proof,
        "totals": {
            "pe_bytes": pe_bytes, "shared_bytes": shared_bytes, "total_bytes": total,
            "dense_float32_bytes": dense_bytes,
            "compression_ratio": dense_bytes / max(1, total),
            "board_spram_bytes": 2 * 2 * pe_cap * spec.max_pes,
            "board_ebr_bytes": spec.ebr_bits // 8,
            "ebr_blocks_tables": ebr_blocks, "board_ebr_blocks": spec.ebr_blocks,
            "spram_fraction_used": pe_bytes / (2 * 2 * pe_cap * N),
            "breakdown_bytes": {k: 2 * sum(u[k] for u in pe_usage)
                                for k in ("header", "pointers", "streams", "biases")}
            | {"tables": shared_bytes},
            # the column skip table only speeds the broadcast up (it follows from the pointer
            # tables; a configuration without it runs the same images): not in total_bytes
            "colskip_bits": N * int(len(images.get(colskip_mem(N), []))) // colskip_words(N),
        },
    }


def build_parser():
    """The command line's options (``python -m sw.pack``)."""
    ap = argparse.ArgumentParser(prog="python -m sw.pack", description=__doc__.split("\n")[0])
    ap.add_argument("model", help="calibrated dcmodel .npz")
    ap.add_argument("--pes", type=int, default=None, help="PE count (default: board's)")
    ap.add_argument("--board", default="icebreaker", help="board name (a file in boards/)")
    ap.add_argument("--out", default=None, help="output directory (default: out/pack)")
    defaults = PackLimits()
    ap.add_argument("--max-layers", type=int, default=defaults.max_layers,
                    help="layer descriptors the hardware holds")
    ap.add_argument("--max-rows", type=int, default=None,
                    help="accumulator rows per PE, all layers (default: %d, doubled until the "
                         "model fits, as hw.build sizes the gateware)" % defaults.max_rows_per_pe)
    ap.add_argument("--max-features", type=int, default=defaults.max_features,
                    help="largest layer width the hardware supports")
    ap.add_argument("--symbol-depth", type=int, default=None,
                    help="joint-symbol table entries, all layers (default: %d, doubled until "
                         "the model fits)" % defaults.symbol_depth)
    ap.add_argument("--fmap-depth", type=int, default=None,
                    help="entries of each feature-map bank (conv layers; default: the power of "
                         "two the model's largest map needs, 0 without conv layers)")
    ap.add_argument("--idx-bits", type=int, default=None,
                    help="cluster-index width of the gateware (default: the model's)")
    ap.add_argument("--gap-bits", type=int, default=None,
                    help="relative-index (gap) width of the gateware (default: the model's; "
                         "a model with another width is refused)")
    add_column_code(ap)
    ap.add_argument("--balance", choices=METHODS, default="data",
                    help="renumber hidden neurons so every PE gets the same work (the logits "
                         "are identical): data = greedy refined on the first 2000 MNIST "
                         "training images (default; greedy for non-MNIST models), greedy = on "
                         "the rows' non-zero counts, none = keep the neuron order")
    ap.add_argument("--no-balance", action="store_const", const="none", dest="balance",
                    help="same as --balance none")
    ap.add_argument("--no-cycles", action="store_true",
                    help="skip the ideal-cycle statistics over the MNIST test set")
    return ap


@command
def main(argv=None):
    """Command line: pack MODEL for N PEs on a board and write the images."""
    args = build_parser().parse_args(argv)
    defaults = PackLimits()
    spec = get_board(args.board)
    n = args.pes or spec.default_pes
    model = load_model(args.model)
    x = None
    if not args.no_cycles and model.layers and math.prod(model.input_shape) == 784:
        x = images_to_uint8(load_mnist()["test"][0])
    limits = PackLimits(max_layers=args.max_layers,
                        max_rows_per_pe=args.max_rows or defaults.max_rows_per_pe,
                        max_features=args.max_features,
                        symbol_depth=args.symbol_depth or defaults.symbol_depth,
                        huffman=(spec.profile.huffman if args.column_code is None
                                 else huffman_of(args.column_code)))
    if args.max_rows is None or args.symbol_depth is None or args.fmap_depth is None:
        grown = sized_limits(model, n, limits, balance=args.balance)
        limits = dataclasses.replace(
            limits, max_rows_per_pe=args.max_rows or grown.max_rows_per_pe,
            symbol_depth=args.symbol_depth or grown.symbol_depth,
            fmap_depth=grown.fmap_depth if args.fmap_depth is None else args.fmap_depth)
    else:
        limits = dataclasses.replace(limits, fmap_depth=args.fmap_depth)
    fixed = {k: getattr(args, k) for k in ("idx_bits", "gap_bits")
             if getattr(args, k) is not None}
    limits = dataclasses.replace(limits, **fixed)
    packed = pack(model, n, spec, limits=limits, x=x, balance=args.balance)
    out = Path(args.out or "out/pack")
    packed.save(out)
    m = packed.manifest
    t = m["totals"]
    p = m["params"]
    print(f"packed {args.model} for {n} PEs on {spec.name} -> {out} (gateware limits: "
          f"{limits.max_rows_per_pe} accumulator rows per PE, "
          + (f"{limits.symbol_depth} Huffman symbols" if limits.huffman else
             f"fixed-width {fixed_entry_bits(p['idx_bits'], p['gap_bits'])}-bit entries")
          + f" of {p['idx_bits']} index + {p['gap_bits']} gap bits"
          + (f", feature-map banks of {limits.fmap_depth} entries" if limits.fmap_depth else "")
          + ")")
    for nm, info in m["memories"].items():
        print(f"  {nm:13s} {info['words_used']:6d} / {info['capacity_words']:6d} words "
              f"({info['bytes']} bytes)")
    for l in m["layers"]:
        if l["kind"] == "conv":
            print(f"  layer {l['name']}: conv {l['out_features']}x{l['in_shape'][0]}x"
                  f"{l['kernel'][0]}x{l['kernel'][1]} on a {'x'.join(map(str, l['in_shape']))} "
                  f"map, {l['positions']} positions, pooled to "
                  f"{'x'.join(map(str, l['out_shape']))}")
        print(f"  layer {l['name']}: {l['nonzeros']} non-zeros, {l['fillers']} fillers, "
              f"{l['n_symbols']} symbols, max code {l['max_code_len']} bits, "
              f"{l['bits_per_nonzero']:.2f} stream bits/non-zero, ptr_words {l['ptr_words']}, "
              f"stream bits per PE {l['stream_bits_per_pe']}")
    print(f"total {t['total_bytes']} bytes (PE memories {t['pe_bytes']}, shared "
          f"{t['shared_bytes']}) vs dense float32 {t['dense_float32_bytes']} bytes: "
          f"compression {t['compression_ratio']:.1f}x")
    print("  bytes by kind: " + ", ".join(f"{k} {v}" for k, v in t["breakdown_bytes"].items()))
    # family-neutral words: the PE memories are SPRAM on the iCE40, block RAM elsewhere
    print(f"PE memories {100 * t['spram_fraction_used']:.1f} % used ({n} PEs' data and pointer "
          f"memories); shared tables {t['ebr_blocks_tables']} blocks of 256 x 16 bits (the "
          f"board has {t['board_ebr_blocks']} block RAMs)")
    for pr in m["accumulator_proof"]:
        print(f"  layer {pr['layer']}: max |acc| {pr['max_abs_acc']} < {pr['limit']} "
              f"({pr['headroom_bits']:.2f} bits headroom)")
    if "ideal_cycles" in m:
        c = m["ideal_cycles"]
        print(f"ideal cycles over {c['images']} test images: mean {c['ideal_mean']:.1f}, "
              f"max {c['ideal_max']}; PE bound mean {c['pe_bound_mean']:.1f}; imbalance "
              f"{c['imbalance_mean']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
