"""Trained quantization: per-layer k-means weight sharing and centroid fine-tuning.

For a layer with ``b`` index bits the surviving (non-pruned) weights are clustered into
``k = 2^b - 1`` shared values by 1-D k-means (Lloyd iterations). Index 0 is reserved for the
value 0 (pruned weights and the sparse format's fillers), so the codebook is
``[0, c_1, ..., c_k]`` and every surviving weight gets an index in ``1..k``.

Centroid initialisation (paper section 3.2): ``"linear"`` (evenly spaced between the smallest
and largest weight; the paper's best), ``"density"`` (evenly spaced in the weights' CDF) and
``"random"`` (Forgy: ``k`` distinct weights drawn at random).

Fine-tuning: the network is trained with ``W = codebook[index]``; the gradient of centroid ``c``
is the sum of the gradients of all weights in its cluster (:func:`centroid_gradients`), applied
by :class:`CentroidSGD` (biases are trained normally).
"""
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from sw.balance import balance_permutation
from sw.sparse import encode_columns

__all__ = ["QuantizeError", "INIT_METHODS", "init_centroids", "kmeans_1d", "LayerCodebook",
           "quantize_layer", "quantize_model", "centroid_gradients", "CentroidSGD",
           "entry_gaps", "limit_joint_symbols", "joint_symbol_counts", "limit_joint_symbols_all"]

INIT_METHODS = ("linear", "density", "random")


class QuantizeError(ValueError):
    """Bad bit width, init method or an empty layer."""


def init_centroids(w, k, method="linear", rng=None):
    """Initial centroids for 1-D k-means.

    Parameters
    ----------
    w : numpy.ndarray
        Weights to cluster (any shape, at least one value).
    k : int
        Number of clusters (>= 1).
    method : str
        ``"linear"``, ``"density"`` or ``"random"``.
    rng : numpy.random.Generator, optional
        For ``"random"`` (default seed 0).

    Returns
    -------
    numpy.ndarray
        float64 ``[k]`` centroids (sorted ascending).
    """
    w = np.asarray(w, dtype=np.float64).ravel()
    if w.size == 0:
        raise QuantizeError("cannot initialise centroids of an empty weight set")
    if k < 1:
        raise QuantizeError(f"k must be >= 1, not {k}")
    if method == "linear":
        if k == 1:
            return np.array([w.mean()])
        return np.linspace(w.min(), w.max(), k)
    if method == "density":
        # Evenly spaced in the CDF: the quantiles at (i + 0.5) / k.
        return np.quantile(w, (np.arange(k) + 0.5) / k)
    if method == "random":
        rng = rng if rng is not None else np.random.default_rng(0)
        uniq = np.unique(w)
        pick = rng.choice(uniq.size, size=min(k, uniq.size), replace=False)
        c = np.sort(uniq[pick])
        if c.size < k:  # fewer distinct weights than clusters: repeat the largest
            c = np.concatenate([c, np.full(k - c.size, c[-1])])
        return c
    raise QuantizeError(f"init method must be one of {INIT_METHODS}, not {method!r}")


def _assign(w, c):
    """Index of the nearest centroid (``c`` ascending) for every weight of ``w``."""
    if c.size == 1:
        return np.zeros(w.shape, dtype=np.int64)
    mid = 0.5 * (c[1:] + c[:-1])
    return np.searchsorted(mid, w, side="left")


def kmeans_1d(w, centroids, iters=100, tol=1e-9):
    """Lloyd's algorithm in 1-D.

    Parameters
    ----------
    w : numpy.ndarray
        Weights (flattened).
    centroids : numpy.ndarray
        Initial centroids.
    iters : int
        Maximum iterations.
    tol : float
        Stop when no centroid moves more than this.

    Returns
    -------
    centroids : numpy.ndarray
        float64 ``[k]``, ascending; an empty cluster keeps its previous centroid.
    labels : numpy.ndarray
        int64 cluster of every weight (0-based, into ``centroids``).
    """
    w = np.asarray(w, dtype=np.float64).ravel()
    c = np.sort(np.asarray(centroids, dtype=np.float64).ravel())
    k = c.size
    for _ in range(iters):
        lab = _assign(w, c)
        cnt = np.bincount(lab, minlength=k)
        s = np.bincount(lab, weights=w, minlength=k)
        new = np.where(cnt > 0, s / np.maximum(cnt, 1), c)
        new = np.sort(new)
        moved = float(np.abs(new - c).max()) if k else 0.0
        c = new
        if moved <= tol:
            break
    return c, _assign(w, c)


@dataclass
class LayerCodebook:
    """Shared weights of one layer.

    Attributes
    ----------
    index : numpy.ndarray
        uint8, weight shape; 0 = pruned, ``1..2^bits-1`` = cluster.
    codebook : numpy.ndarray
        float32 ``[2^bits]``, ``codebook[0] == 0``; unused entries hold their last centroid.
    bits : int
        Index width.
    """
    index: np.ndarray
    codebook: np.ndarray
    bits: int

    def weights(self):
        """Dense float32 weights ``codebook[index]``."""
        return self.codebook[self.index.astype(np.int64)]


def quantize_layer(W, mask, bits=4, method="linear", seed=0, iters=100):
    """Cluster a layer's surviving weights into ``2^bits - 1`` shared values.

    Parameters
    ----------
    W : numpy.ndarray
        float weights.
    mask : numpy.ndarray or None
        bool, true = weight kept (``None``: non-zero weights are kept).
    bits : int
        Index width 1..8 (``bits = 1`` gives a single shared value).
    method : str
        Centroid initialisation, one of :data:`INIT_METHODS`.
    seed : int
        Seed for ``"random"``.
    iters : int
        Maximum k-means iterations.

    Returns
    -------
    LayerCodebook
    """
    if not 1 <= bits <= 8:
        raise QuantizeError(f"bits must be 1..8, not {bits}")
    W = np.asarray(W)
    keep = (W != 0) if mask is None else np.asarray(mask, dtype=bool)
    if keep.shape != W.shape:
        raise QuantizeError(f"mask shape {keep.shape} differs from weight shape {W.shape}")
    k = (1 << bits) - 1
    index = np.zeros(W.shape, dtype=np.uint8)
    codebook = np.zeros(1 << bits, dtype=np.float32)
    w = W[keep].astype(np.float64)
    if w.size == 0:
        return LayerCodebook(index, codebook, bits)
    c0 = init_centroids(w, k, method, np.random.default_rng(seed))
    c, lab = kmeans_1d(w, c0, iters)
    codebook[1:] = c.astype(np.float32)
    index[keep] = (lab + 1).astype(np.uint8)
    return LayerCodebook(index, codebook, bits)


def quantize_model(model, bits=4, method="linear", seed=0, iters=100):
    """Quantize every weight layer of an ``sw.nn.Model`` in place.

    Parameters
    ----------
    model : sw.nn.Model
    bits : int or dict[str, int]
        Index width for all layers, or per layer name.
    method, seed, iters
        As in :func:`quantize_layer`.

    Returns
    -------
    dict[str, LayerCodebook]
        The layers' ``W`` become ``codebook[index]`` and their masks ``index != 0``.
    """
    out = {}
    for i, l in enumerate(model.weight_layers):
        b = bits.get(l.name, 4) if isinstance(bits, dict) else bits
        q = quantize_layer(l.W, l.mask, b, method, seed + i, iters)
        l.set_mask(q.index != 0)
        l.W = q.weights()
        out[l.name] = q
    return out


def centroid_gradients(dW, index, n_entries):
    """Gradient of every codebook entry: the sum of the weight gradients of its cluster.

    Parameters
    ----------
    dW : numpy.ndarray
        Gradient of the loss w.r.t. the (shared) weights.
    index : numpy.ndarray
        Cluster index of every weight (same shape).
    n_entries : int
        Codebook size ``2^bits``.

    Returns
    -------
    numpy.ndarray
        float64 ``[n_entries]``; entry 0 (the fixed zero) is always 0.
    """
    g = np.bincount(np.asarray(index, dtype=np.int64).ravel(),
                    weights=np.asarray(dW, dtype=np.float64).ravel(), minlength=n_entries)
    g[0] = 0.0
    return g


class CentroidSGD:
    """Momentum SGD on the shared centroids (and the biases) of a quantized model.

    Parameters
    ----------
    model : sw.nn.Model
        Its weight layers' ``W`` are rewritten as ``codebook[index]`` after every step.
    codebooks : dict[str, LayerCodebook]
        From :func:`quantize_model`; updated in place.
    momentum : float
    """

    def __init__(self, model, codebooks, momentum=0.9):
        self.model = model
        self.codebooks = codebooks
        self.momentum = momentum
        self.vc = {n: np.zeros(q.codebook.shape, dtype=np.float64)
                   for n, q in codebooks.items()}
        self.vb = {l.name: np.zeros_like(l.b) for l in model.weight_layers}

    def step(self, lr):
        for l in self.model.weight_layers:
            q = self.codebooks[l.name]
            g = centroid_gradients(l.dW, q.index, q.codebook.size)
            v = self.vc[l.name]
            v *= self.momentum
            v -= lr * g
            q.codebook[1:] = (q.codebook[1:].astype(np.float64) + v[1:]).astype(np.float32)
            q.codebook[0] = 0.0
            l.W = q.weights()
            vb = self.vb[l.name]
            vb *= np.float32(self.momentum)
            vb -= np.float32(lr) * l.db
            l.b += vb


def entry_gaps(index, n_pes, gap_bits):
    """Gap field of the stored entry of every non-zero weight (sparse format, section 3).

    Parameters
    ----------
    index : numpy.ndarray
        ``(out, in)`` cluster indices, 0 = pruned.
    n_pes : int
        Rows interleaved over this many PEs.
    gap_bits : int
        Gap width; longer runs are split by fillers, leaving ``run mod 2^gap_bits``.

    Returns
    -------
    numpy.ndarray
        int64 ``(out, in)``: the gap of each non-zero weight's entry (``-1`` where pruned).
    """
    idx = np.asarray(index)
    out = np.full(idx.shape, -1, dtype=np.int64)
    span = 1 << gap_bits
    for p in range(n_pes):
        sub = idx[p::n_pes]
        nz = sub != 0
        local = np.arange(sub.shape[0])[:, None]
        # previous non-zero local row in the same column (-1 if none)
        marked = np.where(nz, local, -1)
        prev_incl = np.maximum.accumulate(marked, axis=0)
        prev = np.vstack([np.full((1, sub.shape[1]), -1), prev_incl[:-1]])
        g = np.where(nz, (local - prev - 1) % span, -1)
        out[p::n_pes] = g
    return out


def limit_joint_symbols(codebooks, n_pes, gap_bits, max_symbols):
    """Remap rare ``(gap, index)`` entries so all layers together use ``<= max_symbols`` joint
    symbols (the accelerator's Huffman symbol table depth).

    Greedily, the symbol whose removal costs least (``count * (c_i - c_j)^2``, ``c_j`` the
    nearest centroid that is still used with the same gap in that layer) is removed by moving
    its weights to cluster ``j``; positions (hence gaps and fillers) do not change. Fillers are
    never touched. Fine-tune the centroids afterwards.

    Parameters
    ----------
    codebooks : dict[str, LayerCodebook]
        Fully-connected layers' codebooks (``index`` is updated in place), in layer order.
    n_pes, gap_bits : int
        Sparse-format parameters the symbols are counted for.
    max_symbols : int
        Budget of distinct joint symbols summed over the layers.

    Returns
    -------
    dict
        ``{"symbols_before", "symbols_after", "moved": {layer: weights moved}}``.

    Raises
    ------
    QuantizeError
        When the budget cannot be met (every gap already down to one index).
    """
    state = {}
    for name, q in codebooks.items():
        if q.index.ndim != 2:
            raise QuantizeError(f"{name}: symbol limiting needs (out, in) fc index matrices")
        g = entry_gaps(q.index, n_pes, gap_bits)
        k = q.codebook.size
        cnt = np.zeros((1 << gap_bits, k), dtype=np.int64)
        nz = q.index != 0
        np.add.at(cnt, (g[nz], q.index[nz].astype(np.int64)), 1)
        has_filler = bool(any(
            (np.diff(np.concatenate([[-1], np.flatnonzero(col)])) - 1 >= (1 << gap_bits)).any()
            for p in range(n_pes) for col in q.index[p::n_pes].T))
        state[name] = (g, cnt, has_filler)

    def total():
        return sum(int((c > 0).sum()) + int(f) for _, c, f in state.values())

    before = total()
    moved = {name: 0 for name in codebooks}
    cur = before
    while cur > max_symbols:
        best = None
        for name, (g, cnt, _) in state.items():
            c = codebooks[name].codebook.astype(np.float64)
            for gap, i in zip(*np.nonzero(cnt)):
                if i == 0:
                    continue
                alt = np.flatnonzero(cnt[gap] > 0)
                alt = alt[(alt != 0) & (alt != i)]
                if alt.size == 0:
                    continue
                j = int(alt[np.argmin(np.abs(c[alt] - c[i]))])
                cost = float(cnt[gap, i]) * float(c[j] - c[i]) ** 2
                if best is None or cost < best[0]:
                    best = (cost, name, int(gap), int(i), j)
        if best is None:
            raise QuantizeError(f"cannot reduce the joint alphabet below {cur} symbols "
                                f"(budget {max_symbols})")
        _, name, gap, i, j = best
        g, cnt, _ = state[name]
        q = codebooks[name]
        sel = (g == gap) & (q.index == i)
        q.index[sel] = j
        moved[name] += int(sel.sum())
        cnt[gap, j] += cnt[gap, i]
        cnt[gap, i] = 0
        cur -= 1
    return {"symbols_before": before, "symbols_after": cur, "moved": moved}


def _layout_perms(codebooks, n_pes, balanced):
    """Per layer ``(row order, column order)`` of the packed layout: identity, or the
    ``sw.balance`` renumbering of hidden neurons for ``n_pes`` PEs (rows of every layer but the
    last, and the next layer's columns the same way)."""
    names = list(codebooks)
    rows = [np.arange(codebooks[n].index.shape[0]) for n in names]
    if balanced:
        for i, n in enumerate(names[:-1]):
            rows[i] = balance_permutation((codebooks[n].index != 0).sum(axis=1), n_pes)
    cols = [np.arange(codebooks[names[0]].index.shape[1])] + rows[:-1]
    return {n: (r, c) for n, r, c in zip(names, rows, cols)}


def joint_symbol_counts(codebooks, gap_bits, pes=(1, 2, 4, 8)):
    """Distinct joint ``(gap, index)`` symbols over all layers (the symbol table entries the
    packer needs, fillers included) for every PE count in ``pes``, with the neurons in training
    order (``"N=4"``) and balanced over the PEs as the hardware packs them (``"N=4 balanced"``).

    Returns
    -------
    dict[str, int]
    """
    out = {}
    for n in pes:
        for balanced in (False, True):
            perms = _layout_perms(codebooks, n, balanced)
            total = 0
            for name, q in codebooks.items():
                r, c = perms[name]
                enc = encode_columns(q.index[np.ix_(r, c)], n, gap_bits, int(q.bits))
                total += len(np.unique(enc.all_symbols()))
            out[f"N={n}" + (" balanced" if balanced else "")] = total
    return out


def limit_joint_symbols_all(codebooks, gap_bits, max_symbols, pes=(1, 2, 4, 8), max_rounds=20):
    """:func:`limit_joint_symbols` for the worst layout: afterwards every PE count in ``pes``,
    rows in training order or balanced (:func:`joint_symbol_counts`), needs ``<= max_symbols``
    joint symbols. Each round limits the layout that needs the most; moving weights to another
    cluster keeps the non-zero pattern, so the balanced row orders do not change.

    Returns
    -------
    dict
        ``{"symbols_before": {layout: n}, "symbols_after": {layout: n},
        "moved": {layer: weight moves}}`` (a weight moved in two rounds counts twice).

    Raises
    ------
    QuantizeError
        When the budget cannot be met within ``max_rounds`` rounds.
    """
    before = joint_symbol_counts(codebooks, gap_bits, pes)
    counts = before
    moved = {name: 0 for name in codebooks}
    margin = {}   # a layout pushed over budget again by another's moves is limited tighter
    for _ in range(max_rounds):
        worst = max(counts, key=counts.get)
        if counts[worst] <= max_symbols:
            return {"symbols_before": before, "symbols_after": counts, "moved": moved}
        if worst in margin:
            margin[worst] += counts[worst] - max_symbols
        margin.setdefault(worst, 0)
        n = int(worst.split()[0][2:])
        perms = _layout_perms(codebooks, n, worst.endswith("balanced"))
        views = {name: SimpleNamespace(index=q.index[np.ix_(*perms[name])], codebook=q.codebook)
                 for name, q in codebooks.items()}
        res = limit_joint_symbols(views, n, gap_bits, max(0, max_symbols - margin[worst]))
        for name, q in codebooks.items():
            q.index[np.ix_(*perms[name])] = views[name].index
            moved[name] += res["moved"][name]
        counts = joint_symbol_counts(codebooks, gap_bits, pes)
    raise QuantizeError(f"joint symbols still {max(counts.values())} > {max_symbols} after "
                        f"{max_rounds} rounds")
