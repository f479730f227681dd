"""sw.quantize: k-means inits, weight sharing, centroid gradients, symbol budget."""
import numpy as np
import pytest

from sw.nn import build_model, softmax_cross_entropy
from sw.quantize import (CentroidSGD, LayerCodebook, QuantizeError, centroid_gradients,
                         entry_gaps, init_centroids, joint_symbol_counts, kmeans_1d,
                         limit_joint_symbols, limit_joint_symbols_all, quantize_layer,
                         quantize_model)
from sw.sparse import encode_columns, split_symbol


def test_linear_init():
    w = np.array([-2.0, 0.5, 1.0, 4.0])
    assert np.allclose(init_centroids(w, 4, "linear"), [-2, 0, 2, 4])


def test_density_init_follows_cdf():
    w = np.concatenate([np.zeros(900), np.linspace(1, 10, 100)])
    c = init_centroids(w, 10, "density")
    assert np.allclose(c, np.quantile(w, (np.arange(10) + 0.5) / 10))
    assert (c == 0).sum() == 9  # dense region gets most centroids; linear would not
    assert (init_centroids(w, 10, "linear") == 0).sum() == 1


def test_random_init_picks_distinct_weights():
    rng = np.random.default_rng(0)
    w = rng.normal(size=200)
    c = init_centroids(w, 15, "random", np.random.default_rng(3))
    assert len(set(c)) == 15 and set(c) <= set(w) and np.all(np.diff(c) > 0)
    c2 = init_centroids(w, 15, "random", np.random.default_rng(4))
    assert not np.array_equal(c, c2)
    assert len(init_centroids(np.array([1.0, 1.0]), 3, "random")) == 3
    with pytest.raises(QuantizeError):
        init_centroids(w, 3, "kmeans++")
    with pytest.raises(QuantizeError):
        init_centroids(np.zeros(0), 3)


@pytest.mark.parametrize("method", ["linear", "density", "random"])
def test_kmeans_finds_separated_clusters(method):
    rng = np.random.default_rng(1)
    centres = np.array([-3.0, -1.0, 2.0, 5.0])
    w = np.concatenate([c + 0.05 * rng.normal(size=300) for c in centres])
    c, lab = kmeans_1d(w, init_centroids(w, 4, method, np.random.default_rng(0)))
    if method != "random":  # Forgy may start with two seeds in one cluster
        assert np.allclose(c, centres, atol=0.02)
    # Lloyd fixed point: every centroid is the mean of its cluster, labels are nearest
    for k in range(4):
        if (lab == k).any():
            assert c[k] == pytest.approx(w[lab == k].mean())
    assert np.array_equal(lab, np.abs(w[:, None] - c[None, :]).argmin(axis=1))


def test_quantize_layer_reserves_zero():
    rng = np.random.default_rng(2)
    W = rng.normal(size=(30, 40)).astype(np.float32)
    mask = rng.random(W.shape) > 0.8
    q = quantize_layer(W * mask, mask, bits=4)
    assert q.index.dtype == np.uint8 and q.codebook.shape == (16,) and q.codebook[0] == 0
    assert np.array_equal(q.index != 0, mask)
    assert q.index.max() <= 15
    err = np.abs(q.weights() - W * mask)[mask]
    assert err.max() < (W[mask].max() - W[mask].min()) / 14
    q2 = quantize_layer(W, None, bits=2)
    assert q2.index.max() <= 3 and np.all(q2.index[W != 0] > 0)
    empty = quantize_layer(np.zeros((3, 3)), None, bits=4)
    assert not empty.index.any() and not empty.codebook.any()
    with pytest.raises(QuantizeError):
        quantize_layer(W, None, bits=9)
    with pytest.raises(QuantizeError):
        quantize_layer(W, np.ones((2, 2), bool))


def test_centroid_gradient_is_sum_of_cluster_gradients():
    rng = np.random.default_rng(3)
    idx = rng.integers(0, 16, size=(20, 30))
    dW = rng.normal(size=(20, 30))
    g = centroid_gradients(dW, idx, 16)
    assert g[0] == 0
    for k in range(1, 16):
        assert g[k] == pytest.approx(dW[idx == k].sum())


def test_centroid_gradient_matches_numerical_derivative():
    """d loss / d c_k through W = codebook[index] equals the cluster's gradient sum."""
    m = build_model("lenet300", 0)
    rng = np.random.default_rng(0)
    for l in m.weight_layers:
        l.set_mask(rng.random(l.W.shape) > 0.9)
    books = quantize_model(m, 3)
    for l in m.weight_layers:
        l.W = l.W.astype(np.float64)
        l.b = l.b.astype(np.float64)
    x = rng.random((8, 784))
    y = rng.integers(0, 10, 8)
    loss, g = softmax_cross_entropy(m.forward(x, train=True).astype(np.float64), y)
    m.backward(g)
    l = m.layer("ip2")
    q = books["ip2"]
    grad = centroid_gradients(l.dW, q.index, 8)
    eps = 1e-6
    for k in (1, 4, 7):
        vals = []
        for s in (eps, -eps):
            cb = q.codebook.astype(np.float64)
            cb[k] += s
            l.W = cb[q.index.astype(int)]
            vals.append(softmax_cross_entropy(m.forward(x).astype(np.float64), y)[0])
        assert grad[k] == pytest.approx((vals[0] - vals[1]) / (2 * eps), rel=1e-3, abs=1e-9)


def test_centroid_sgd_step_updates_shared_weights():
    m = build_model("lenet300", 0)
    books = quantize_model(m, 4)
    rng = np.random.default_rng(4)
    for l in m.weight_layers:
        l.dW = rng.normal(size=l.W.shape).astype(np.float32)
        l.db = np.zeros_like(l.b)
    before = {n: q.codebook.copy() for n, q in books.items()}
    opt = CentroidSGD(m, books, momentum=0.0)
    opt.step(0.01)
    for l in m.weight_layers:
        q = books[l.name]
        want = before[l.name] - 0.01 * centroid_gradients(l.dW, q.index, 16)
        assert np.allclose(q.codebook, want, atol=1e-6) and q.codebook[0] == 0
        assert np.array_equal(l.W, q.codebook[q.index.astype(int)])
        assert len(np.unique(l.W)) <= 16


def test_entry_gaps_match_sparse_encoder():
    rng = np.random.default_rng(5)
    idx = (rng.random((37, 23)) > 0.9) * rng.integers(1, 16, size=(37, 23))
    idx[:, 0] = 0
    idx[36, 1] = 5  # long gap -> fillers
    for n_pes in (1, 2, 4):
        g = entry_gaps(idx, n_pes, 2)
        enc = encode_columns(idx, n_pes, 2, 4)
        syms = enc.all_symbols()
        gap, i = split_symbol(syms, 4)
        real = np.sort((gap[i != 0] << 4) | i[i != 0])
        nz = idx != 0
        assert np.array_equal(np.sort((g[nz] << 4) | idx[nz]), real)
        assert np.all(g[~nz] == -1)


def _n_symbols(books, n_pes, gap_bits):
    return sum(len(np.unique(encode_columns(q.index, n_pes, gap_bits, q.bits).all_symbols()))
               for q in books.values())


def test_limit_joint_symbols_meets_budget():
    rng = np.random.default_rng(6)
    books = {}
    for name, shape, dens in (("a", (120, 90), 0.08), ("b", (40, 120), 0.15)):
        w = rng.normal(size=shape) * (rng.random(shape) < dens)
        books[name] = quantize_layer(w, w != 0, 4)
    orig = {n: q.index.copy() for n, q in books.items()}
    before = _n_symbols(books, 4, 4)
    res = limit_joint_symbols(books, 4, 4, before - 40)
    assert res["symbols_before"] == before
    assert _n_symbols(books, 4, 4) == res["symbols_after"] == before - 40
    for n, q in books.items():
        assert np.array_equal(q.index != 0, orig[n] != 0)  # positions unchanged
        assert (q.index != orig[n]).sum() == res["moved"][n]
    # no-op when within budget
    assert limit_joint_symbols(books, 4, 4, 10 ** 6)["moved"] == {"a": 0, "b": 0}
    one = {"c": LayerCodebook(np.eye(4, dtype=np.uint8), np.arange(2, dtype=np.float32), 1)}
    with pytest.raises(QuantizeError):
        limit_joint_symbols(one, 1, 4, 0)


def test_limit_joint_symbols_all_layouts():
    """Every PE count, rows in training order and balanced (as packed), ends within budget."""
    from sw.balance import balance_rows
    from sw.golden import IntLayer, IntModel
    rng = np.random.default_rng(7)
    books = {}
    for name, shape, dens in (("a", (60, 150), 0.06), ("b", (30, 60), 0.2), ("c", (10, 30), 0.4)):
        w = rng.normal(size=shape) * (rng.random(shape) < dens)
        w[:7] *= rng.random((7, shape[1])) < 0.2          # uneven rows: balancing reorders
        books[name] = quantize_layer(w, w != 0, 4)
    orig = {n: q.index.copy() for n, q in books.items()}
    before = joint_symbol_counts(books, 5)
    assert before["N=1"] == _n_symbols(books, 1, 5)
    assert before["N=4"] == _n_symbols(books, 4, 5)
    names = list(books)
    layers = [IntLayer(index=q.index, cb_q=np.arange(16), bias_q=np.zeros(len(q.index),
                       dtype=np.int64), shift=0, bias_shift=0, relu=True,
                       last=n == names[-1], name=n) for n, q in books.items()]
    im = IntModel(layers=layers, gap_bits=5)
    for n in (2, 4):        # the balanced count is the one sw.pack sees
        bal = balance_rows(im, n)[0]
        assert not np.array_equal(bal.layers[0].index, im.layers[0].index)
        assert before[f"N={n} balanced"] == sum(
            len(np.unique(encode_columns(l.index, n, 5, 4).all_symbols())) for l in bal.layers)
    budget = max(before.values()) - 60
    res = limit_joint_symbols_all(books, 5, budget)
    assert res["symbols_before"] == before
    assert res["symbols_after"] == joint_symbol_counts(books, 5)
    assert max(res["symbols_after"].values()) <= budget
    assert sum(res["moved"].values()) > 0
    for n, q in books.items():
        assert np.array_equal(q.index != 0, orig[n] != 0)
        assert 0 < (q.index != orig[n]).sum() <= res["moved"][n]   # a weight may move twice
    assert limit_joint_symbols_all(books, 5, 10 ** 6)["moved"] == {"a": 0, "b": 0, "c": 0}
