"""Load balancing across PEs by renumbering hidden neurons.

Rows are interleaved over the PEs (global row ``r`` lives in PE ``r mod N``, docs/ARCHITECTURE.md
section 3), so a PE's work for an input is the number of stored entries (fillers included) in
its rows of the columns whose activation is non-zero. With the neurons in training order some
PEs get the dense rows (docs/COMPRESSION.md, "Load balance", has the figures).

A hidden layer's neurons can be renumbered freely: permuting the rows of layer ``L`` (weights
indices and biases) and the columns of layer ``L + 1`` the same way computes exactly the same
logits, bit for bit. Every layer but the last (whose row order is the logit order) is
renumbered; each PE keeps exactly the ``ceil((out - p) / N)`` rows the interleaving gives it.
Two methods:

``greedy`` (:func:`balance_permutation`, no data)
    longest-processing-time-first partitioning of the rows' stored non-zero counts; rows keep
    their relative order inside a PE.
``data`` (:func:`refine_permutation`, calibration inputs)
    the greedy result refined on calibration inputs. The work of PE ``p`` for input ``i`` is
    ``L[p, i] = sum of W[r, i]`` over its rows, ``W[r, i]`` = stored non-zeros of row ``r`` in
    the columns where input ``i`` is non-zero, and the cycle bound of a layer is
    ``sum_i max_p L[p, i]``: a fixed split of the row *totals* still leaves large per-input
    peaks. Three steps:

    1. which rows go to which PE: an iterated local search over row swaps between PEs.
       Steepest-descent swaps minimise ``sum_{p,i} L[p, i]^2`` (closed-form swap deltas from the
       row Gram matrix ``W W^T``, all pairs at once), then :data:`REFINE_ROUNDS` rounds of
       :data:`PERTURB_SWAPS` random swaps (fixed seed: deterministic) followed by the same
       descent, a round kept when it does not raise ``sum_i max_p L[p, i]``;
    2. the order of the rows inside each PE: a PE column needs a filler entry for every
       ``2^gap_bits`` zeros between two stored entries (or above the first), which the
       training order leaves plenty of. :func:`_filler_order` places the rows one by one, each
       time the row that ends the most urgent zero runs (columns close to needing a filler,
       weighted by how often their input is non-zero);
    3. a safety net: the candidates (steps 1 + 2, step 1 alone, the greedy PEs + step 2, the
       greedy order) are compared by the real per-PE work, fillers included
       (``sw.sparse.encode_columns``), on the calibration inputs, and the first best kept, so
       the data method never loses to greedy on its calibration set.

    The layers are independent (a layer's work does not depend on the previous layer's
    renumbering), so all calibration activations come from one :func:`sw.golden.infer` run.
    A conv layer is refined on the non-empty patches of its calibration maps (each output
    position is one pass of the PEs); one that feeds another conv layer skips step 2 (its
    row order is the next layer's channel order; measured faster: see
    :func:`balance_permutations`).

Every caller that must agree on the row order (``sw.pack``, ``hw.bench``, ``hw.profile``,
``hw.build``, ``sw.host.pack_for_board``) goes through :func:`balance_model` and its default
calibration set (:func:`default_calibration`): the first :data:`CALIBRATION_IMAGES` MNIST
*training* images (never the test images, they are what we report on) when the model has 784
inputs and MNIST is installed (nothing is downloaded), else none, and then ``data`` falls back
to ``greedy``.

``python -m sw.balance MODEL --pes 1,2,4,8`` prints the PE-work bound of each method per PE
count; docs/COMPRESSION.md ("Load balance") keeps the figures of ``models/lenet300.npz``.

Command line::

    python -m sw.balance MODEL [--pes 1,2,4,8] [--images 100]
"""
import argparse
import dataclasses
import functools
import sys
import time

import numpy as np

from sw.cli import command
from sw.golden import (GoldenError, IntModel, conv_patches, ideal_cycles, images_to_uint8, infer,
                       load_mnist)
from sw.modelfile import load_model
from sw.sparse import encode_columns

__all__ = ["BalanceError", "METHODS", "CALIBRATION_IMAGES", "REFINE_ROUNDS", "PERTURB_SWAPS",
           "balance_permutation", "refine_permutation", "balance_permutations", "permute_model",
           "balance_rows", "balance_method", "default_calibration", "balance_model",
           "build_parser", "main"]

#: Balancing methods: keep the order, greedy on non-zero counts, greedy refined on data.
METHODS = ("none", "greedy", "data")
#: Size of the default calibration set (the first MNIST training images).
CALIBRATION_IMAGES = 2000
#: Perturbation rounds of the data refinement.
REFINE_ROUNDS = 50
#: Random row swaps per perturbation round.
PERTURB_SWAPS = 3
MNIST_INPUTS = 784
#: Patches (output positions over the calibration maps) a conv layer is balanced on at most.
CONV_CALIBRATION_PATCHES = 40000


class BalanceError(ValueError):
    """A permutation, calibration set or balancing method does not fit the model."""


def balance_permutation(weights, n_pes):
    """Row order that balances ``weights`` over ``n_pes`` interleaved PEs.

    Parameters
    ----------
    weights : array_like of float, shape (rows,)
        Work of each row (e.g. its stored non-zeros).
    n_pes : int
        PE count N.

    Returns
    -------
    numpy.ndarray of int64, shape (rows,)
        ``perm`` with new row ``r`` = old row ``perm[r]``; new row ``r`` lands in PE ``r mod N``.
        Deterministic (ties go to the lower row and the lower PE).
    """
    w = np.asarray(weights, dtype=np.float64)
    rows = len(w)
    if n_pes < 1:
        raise BalanceError(f"n_pes must be >= 1, not {n_pes}")
    slots = [len(range(p, rows, n_pes)) for p in range(n_pes)]
    load = np.zeros(n_pes)
    members = [[] for _ in range(n_pes)]
    for r in np.argsort(-w, kind="stable"):
        best = None
        for p in range(n_pes):
            if len(members[p]) < slots[p] and (best is None or load[p] < load[best]):
                best = p
        members[best].append(int(r))
        load[best] += w[r]
    return _members_perm(members, rows, n_pes)


def _members_perm(members, rows, n_pes):
    perm = np.empty(rows, dtype=np.int64)
    for p in range(n_pes):
        for i, r in enumerate(sorted(members[p])):
            perm[p + n_pes * i] = r
    return perm


def _pes_from_perm(perm, n_pes):
    """``pe[old row]``: the PE a permutation puts each original row in."""
    pe = np.empty(len(perm), dtype=np.int64)
    pe[np.asarray(perm, dtype=np.int64)] = np.arange(len(perm)) % n_pes
    return pe


def _perm_from_pes(pe, n_pes):
    """The permutation that puts original row ``r`` in PE ``pe[r]``, rows in their original
    order inside a PE (``pe`` must give every PE its interleaved row count)."""
    perm = np.empty(len(pe), dtype=np.int64)
    for p in range(n_pes):
        members = np.flatnonzero(pe == p)
        perm[p + n_pes * np.arange(len(members))] = members
    return perm


def _filler_order(sub, freq, span):
    """Local row order of one PE that leaves few filler entries.

    ``sub`` bool ``(rows, in)`` non-zero pattern of the PE's rows, ``freq`` ``(in,)`` in how
    many calibration inputs each column's input is non-zero, ``span = 2^gap_bits``. A column
    needs a filler for every ``span`` zeros in a row between two of its stored entries (or above
    its first), so rows are placed one at a time, each time the unplaced row with the most
    urgent columns: column ``j`` weighs ``freq[j] * exp(min(gap_j - span + 1, 0) / tau)``,
    ``tau = max(1, span / 8)``, while it has unplaced non-zeros, ``gap_j`` being the zero run it
    would end (the exponential rounded to 20 fractional bits, so every score is an exact integer
    and no BLAS summation order can break a tie differently). Ties go to the lower row.
    Returns int64 ``(rows,)`` indices into ``sub``.
    """
    rows = sub.shape[0]
    sub_f = sub.astype(np.float64)
    tau = max(1.0, span / 8)
    placed = np.zeros(rows, dtype=bool)
    last = np.full(sub.shape[1], -1)
    remaining = sub_f.sum(axis=0)
    order = np.empty(rows, dtype=np.int64)
    for t in range(rows):
        gap = t - last - 1
        weight = np.round(np.exp(np.minimum(gap - span + 1, 0) / tau) * (1 << 20))
        urgency = np.where(remaining > 0, freq * weight, 0)
        score = sub_f @ urgency
        score[placed] = -1
        r = int(np.argmax(score))
        order[t] = r
        placed[r] = True
        remaining -= sub_f[r]
        last = np.where(sub[r], t, last)
    return order


def _ordered_perm(index, pe, n_pes, freq, span):
    """:func:`_perm_from_pes` with every PE's rows in :func:`_filler_order`."""
    perm = np.empty(len(pe), dtype=np.int64)
    for p in range(n_pes):
        members = np.flatnonzero(pe == p)
        order = _filler_order(index[members] != 0, freq, span)
        perm[p + n_pes * np.arange(len(members))] = members[order]
    return perm


def _swap_descent(W, WW, pe, n_pes):
    """Steepest-descent row swaps between PEs minimising ``sum_{p,i} L[p, i]^2``.

    ``W`` float64 ``(rows, n)`` integer-valued row work, ``WW = W @ W.T``, ``pe`` int64
    ``(rows,)`` PE of each row (modified in place and returned). Swapping row ``r`` (PE ``a``)
    with row ``s`` (PE ``b``) changes the objective by
    ``2 (G[s, a] - G[r, a] + G[r, b] - G[s, b]) + 2 |W_r - W_s|^2`` with ``G = W @ L.T``.
    """
    rows = len(pe)
    L = np.stack([W[pe == p].sum(axis=0) for p in range(n_pes)])
    G = W @ L.T
    d = np.diag(WW)
    dist = d[:, None] + d[None, :] - 2 * WW
    for _ in range(rows * rows):          # the objective is an integer that strictly falls
        own = G[np.arange(rows), pe]
        cross = G[:, pe]                  # cross[s, r] = G[s, PE of r]
        delta = 2 * (cross.T + cross - own[None, :] - own[:, None]) + 2 * dist
        delta[pe[:, None] == pe[None, :]] = 0
        k = int(np.argmin(delta))
        r, s = divmod(k, rows)
        if delta[r, s] > -0.5:
            break
        a, b = pe[r], pe[s]
        change = WW[:, s] - WW[:, r]
        G[:, a] += change
        G[:, b] -= change
        pe[r], pe[s] = b, a
    return pe


def _sum_of_max(W, pe, n_pes):
    return float(np.stack([W[pe == p].sum(axis=0) for p in range(n_pes)]).max(axis=0).sum())


def _layer_bound(index, perm, nz, n_pes, gap_bits, idx_bits):
    """``sum_i max_p`` of the symbols (fillers included) each PE decodes for the rows of
    ``index`` in ``perm`` order, ``nz`` float64 ``(n, in)`` non-zero mask of the inputs."""
    per_pe = encode_columns(index[perm], n_pes, gap_bits, idx_bits).entries_per_pe()
    return float((nz @ per_pe.astype(np.float64)).max(axis=1).sum())


def refine_permutation(index, nz, n_pes, perm=None, *, gap_bits=None, idx_bits=None,
                       rounds=REFINE_ROUNDS, swaps=PERTURB_SWAPS, seed=0, order=True):
    """Row order of one layer refined on calibration inputs (module doc, method ``data``).

    Parameters
    ----------
    index : numpy.ndarray
        ``(out, in)`` cluster indices of the layer (0 = pruned).
    nz : array_like of bool, shape (n, in)
        Which calibration input activations of the layer are non-zero.
    n_pes : int
        PE count N.
    perm : array_like of int, shape (out,), optional
        Starting order (default: :func:`balance_permutation` of the row non-zero counts).
    gap_bits, idx_bits : int, optional
        Encoding widths; when given, the candidates (refined PEs with the rows of every PE in
        :func:`_filler_order` if ``order``, refined PEs with the rows in original order, the
        PEs of ``perm`` in filler order if ``order``, and ``perm`` itself) are compared by the
        real per-PE work with fillers on the calibration inputs and the first best returned, so
        the result is never worse than ``perm`` there.
    rounds, swaps, seed : int
        Perturbation rounds, random swaps per round, seed of the random swaps.
    order : bool
        Also reorder the rows inside each PE to save fillers (needs ``gap_bits``).

    Returns
    -------
    numpy.ndarray of int64, shape (out,)
        Same convention as :func:`balance_permutation`; deterministic.
    """
    index = np.asarray(index)
    rows = index.shape[0]
    nz = np.asarray(nz).astype(np.float64)
    if perm is None:
        perm = balance_permutation((index != 0).sum(axis=1), n_pes)
    perm = np.asarray(perm, dtype=np.int64)
    if rows < 2 or nz.shape[0] == 0:
        return perm
    start = _pes_from_perm(perm, n_pes)
    best = start
    if n_pes > 1:
        W = (index != 0).astype(np.float64) @ nz.T
        WW = W @ W.T
        cur = _swap_descent(W, WW, start.copy(), n_pes)
        cur_v = _sum_of_max(W, cur, n_pes)
        best, best_v = cur.copy(), cur_v
        rng = np.random.default_rng(seed)
        for _ in range(rounds):
            trial = cur.copy()
            for _ in range(swaps):
                r, s = rng.integers(rows, size=2)
                trial[r], trial[s] = trial[s], trial[r]
            trial = _swap_descent(W, WW, trial, n_pes)
            v = _sum_of_max(W, trial, n_pes)
            if v <= cur_v:
                cur, cur_v = trial, v
                if v < best_v:
                    best, best_v = trial.copy(), v
    if gap_bits is None or idx_bits is None:
        return _perm_from_pes(best, n_pes)
    freq = nz.sum(axis=0)
    candidates = [_perm_from_pes(best, n_pes), perm]
    if order:
        span = 1 << gap_bits
        candidates[:0] = [_ordered_perm(index, best, n_pes, freq, span)]
        candidates[2:2] = [_ordered_perm(index, start, n_pes, freq, span)]
    bounds = [_layer_bound(index, c, nz, n_pes, gap_bits, idx_bits) for c in candidates]
    return candidates[int(np.argmin(bounds))]


def _check_calibration(int_model, calibration):
    x = np.asarray(calibration)
    n_in = int_model.in_features
    if x.ndim != 2 or x.shape[1] != n_in:
        raise BalanceError(f"calibration inputs must be (n, {n_in}) activations, got shape "
                           f"{x.shape}")
    if x.shape[0] < 1:
        raise BalanceError("calibration set is empty")
    if not np.issubdtype(x.dtype, np.integer):
        raise BalanceError(f"calibration inputs must be integer activations (got {x.dtype}); "
                           "use sw.golden.images_to_uint8() for MNIST floats")
    if x.min() < 0 or x.max() >= (1 << int_model.act_bits):
        raise BalanceError(f"calibration inputs must be in 0..{(1 << int_model.act_bits) - 1}")
    return x.astype(np.int64)


def balance_permutations(int_model, n_pes, calibration=None):
    """One row permutation per layer (identity for the last layer), see :func:`balance_rows`."""
    if n_pes < 1:
        raise BalanceError(f"n_pes must be >= 1, not {n_pes}")
    layers = int_model.layers
    perms = [balance_permutation((l.index != 0).sum(axis=1), n_pes) for l in layers[:-1]]
    if calibration is not None:
        x = _check_calibration(int_model, calibration)
        inputs = infer(int_model, x, trace="inputs").inputs
        # A conv layer's columns see patches: its calibration inputs are the non-empty
        # patches of the calibration maps, one pass each. A conv layer that feeds another
        # keeps its rows in their order inside each PE (no filler order): its rows are that
        # layer's input channels, whose order sets how the patch words meet the PEs there; on
        # LeNet-5 at 8 PEs conv1 refined with the filler order took 659 cycles off conv1 but
        # added 1,273 to conv2 (MNIST test images 0-1, docs/HARDWARE.md).
        perms = [refine_permutation(l.index,
                                    _calibration_patches(l, inputs[i]) if l.conv
                                    else inputs[i] != 0, n_pes, perms[i],
                                    gap_bits=int_model.gap_bits, idx_bits=int_model.idx_bits,
                                    seed=i, order=not (l.conv and layers[i + 1].conv))
                 for i, l in enumerate(layers[:-1])]
    return perms + [np.arange(layers[-1].out_features, dtype=np.int64)]


def _calibration_patches(layer, inputs):
    """Non-zero masks ``(n, C * KH * KW)`` of the non-empty patches of a conv layer's
    calibration input maps ``inputs`` ``(images, C * H * W)``: every output position is a pass
    whose PE work is that of an fc layer with the patch as its input (an empty patch costs no
    PE any work). The first ``CONV_CALIBRATION_PATCHES // positions`` maps (at least one), so
    the masks stay small."""
    k = max(1, CONV_CALIBRATION_PATCHES // layer.positions)
    maps = np.asarray(inputs[:k]).reshape((-1,) + tuple(layer.in_shape)) != 0
    nz = conv_patches(maps, layer.kernel).reshape(-1, layer.in_features)
    return nz[nz.any(axis=1)]


def _column_permutation(layer, nxt, perm):
    """Layer ``nxt``'s columns in the order of ``layer``'s rows ``perm``: a row of a conv layer
    is an output channel, which feeds a block of the next layer's columns (its ``KH * KW``
    kernel entries, or the pooled map's ``OH/2 * OW/2`` values for the fc layer after it)."""
    block = nxt.in_features // layer.out_features
    return (perm[:, None] * block + np.arange(block)[None, :]).ravel()


def permute_model(int_model, perms):
    """The model with layer ``i``'s rows (and layer ``i + 1``'s columns) in ``perms[i]`` order
    (a conv layer's rows are its output channels: the next layer's columns move by channel).

    Raises
    ------
    BalanceError
        if a permutation has the wrong length or is not a permutation, or the last layer's is
        not the identity (that would reorder the logits).
    """
    layers = list(int_model.layers)
    if len(perms) != len(layers):
        raise BalanceError(f"{len(perms)} permutations for {len(layers)} layers")
    for i, perm in enumerate(perms):
        perm = np.asarray(perm, dtype=np.int64)
        n = layers[i].out_features
        if perm.shape != (n,) or not np.array_equal(np.sort(perm), np.arange(n)):
            raise BalanceError(f"layer {i}: not a permutation of its {n} rows")
        if i == len(layers) - 1:
            if not np.array_equal(perm, np.arange(n)):
                raise BalanceError("the last layer's rows are the logits; they keep their order")
            continue
        layers[i] = dataclasses.replace(layers[i], index=layers[i].index[perm],
                                        bias_q=layers[i].bias_q[perm])
        nxt = layers[i + 1]
        layers[i + 1] = dataclasses.replace(
            nxt, index=nxt.index[:, _column_permutation(layers[i], nxt, perm)])
    return dataclasses.replace(int_model, layers=layers)


def balance_rows(int_model, n_pes, calibration=None):
    """``(balanced model, permutations)``: same logits, PE work spread evenly (module doc).

    Parameters
    ----------
    int_model : sw.golden.IntModel
    n_pes : int
        PE count N.
    calibration : array_like of int, shape (n, in_features), optional
        Calibration input activations (e.g. MNIST training bytes): the greedy order is refined
        on them (method ``data``). Without, the greedy order (method ``greedy``).

    Raises
    ------
    BalanceError
        ``n_pes < 1`` or calibration inputs of the wrong shape, type or range.
    """
    perms = balance_permutations(int_model, n_pes, calibration)
    return permute_model(int_model, perms), perms


@functools.lru_cache(maxsize=1)
def _mnist_train_bytes():
    try:
        images = load_mnist()["train"][0][:CALIBRATION_IMAGES]
    except GoldenError:
        return None
    x = images_to_uint8(images)
    x.setflags(write=False)
    return x


def default_calibration(int_model):
    """The calibration inputs of method ``data``: int64 ``(2000, 784)`` bytes of the first
    :data:`CALIBRATION_IMAGES` MNIST training images when ``int_model`` has 784 inputs and MNIST
    is installed, else ``None`` (read-only, cached)."""
    if int_model.in_features != MNIST_INPUTS:
        return None
    return _mnist_train_bytes()


def balance_method(balance):
    """Normalise a ``balance`` argument: ``False`` -> ``"none"``, ``True`` -> ``"data"``, or one
    of :data:`METHODS`; :class:`BalanceError` otherwise."""
    if balance is False or balance is None:
        return "none"
    if balance is True:
        return "data"
    if balance in METHODS:
        return balance
    raise BalanceError(f"unknown balancing method {balance!r} (one of {', '.join(METHODS)})")


def balance_model(int_model, n_pes, method="data"):
    """The row order every caller that must agree on it uses (pack, bench, profile, build).

    Parameters
    ----------
    int_model : sw.golden.IntModel
    n_pes : int
    method : str or bool
        ``"none"``, ``"greedy"`` or ``"data"`` (see :func:`balance_method`); ``"data"`` uses
        :func:`default_calibration` and falls back to ``"greedy"`` when there is none.

    Returns
    -------
    (IntModel, list of numpy.ndarray, dict)
        The model, the row permutation of each layer and ``{"method": method used,
        "calibration": description of the calibration set or None}``.
    """
    method = balance_method(method)
    if method == "none":
        perms = [np.arange(l.out_features, dtype=np.int64) for l in int_model.layers]
        return int_model, perms, {"method": "none", "calibration": None}
    cal = default_calibration(int_model) if method == "data" else None
    if cal is None:
        method = "greedy"
    model, perms = balance_rows(int_model, n_pes, cal)
    desc = None if cal is None else f"MNIST train images 0..{len(cal) - 1}"
    return model, perms, {"method": method, "calibration": desc}


def build_parser():
    """The command line's options (``python -m sw.balance``)."""
    ap = argparse.ArgumentParser(prog="python -m sw.balance",
                                 description="pe_bound / ideal on MNIST test images per PE count "
                                             "and balancing method")
    ap.add_argument("model", help="calibrated dcmodel .npz")
    ap.add_argument("--pes", default="1,2,4,8", help="comma-separated PE counts")
    ap.add_argument("--images", type=int, default=100, help="MNIST test images 0..n-1")
    return ap


@command
def main(argv=None):
    """Command line: ``pe_bound / ideal`` on MNIST test images per PE count and method."""
    a = build_parser().parse_args(argv)
    im = IntModel.from_model(load_model(a.model))
    x = images_to_uint8(load_mnist()["test"][0][:a.images])
    pes = [int(p) for p in a.pes.split(",")]
    for n in pes:
        line = [f"N={n}:"]
        for method in METHODS:
            t = time.perf_counter()
            model, _, info = balance_model(im, n, method)
            dt = time.perf_counter() - t
            st = ideal_cycles(model, x, n)
            line.append(f"{info['method']} {st.pe_bound.sum() / st.ideal.sum():.4f} "
                        f"({dt:.1f} s)")
        print("  ".join(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
