"""sw.nn layers (numerical vs analytic gradients), masks, models, and sw.train."""
import numpy as np
import pytest

from sw.nn import (Conv2D, Dense, MaxPool2, NNError, ReLU, build_model, lenet5,
                   softmax_cross_entropy)
from sw.train import SGD, TrainConfig, TrainError, augment_shift, lr_at, train


@pytest.fixture(scope="module")
def mnist_small():
    """2,000 training and 500 test MNIST images (deterministic subset); skips without data."""
    from sw.mnist import MnistNotFoundError, load_mnist
    try:
        return load_mnist(subset=2000, test_subset=500, seed=0)
    except MnistNotFoundError as e:
        pytest.skip(str(e))


def _as64(layer):
    layer.W = layer.W.astype(np.float64)
    layer.b = np.random.default_rng(5).normal(size=layer.b.shape)
    return layer


def _numeric(f, a, eps=1e-6, n=25, seed=0):
    """Central differences of scalar f() w.r.t. n random entries of array a."""
    rng = np.random.default_rng(seed)
    flat = a.reshape(-1)
    picks = rng.choice(flat.size, size=min(n, flat.size), replace=False)
    out = []
    for i in picks:
        old = flat[i]
        flat[i] = old + eps
        hi = f()
        flat[i] = old - eps
        lo = f()
        flat[i] = old
        out.append((hi - lo) / (2 * eps))
    return picks, np.array(out)


def _check_layer(layer, x):
    rng = np.random.default_rng(1)
    y = layer.forward(x, train=True)
    r = rng.normal(size=y.shape)
    dx = layer.backward(r)

    def loss():
        return float((layer.forward(x) * r).sum())
    picks, num = _numeric(loss, x)
    assert np.allclose(dx.reshape(-1)[picks], num, rtol=1e-5, atol=1e-7)
    if hasattr(layer, "W"):
        dW, db = layer.dW.copy(), layer.db.copy()
        picks, num = _numeric(loss, layer.W)
        assert np.allclose(dW.reshape(-1)[picks], num, rtol=1e-5, atol=1e-7)
        picks, num = _numeric(loss, layer.b)
        assert np.allclose(db.reshape(-1)[picks], num, rtol=1e-5, atol=1e-7)


def test_dense_gradients():
    rng = np.random.default_rng(0)
    _check_layer(_as64(Dense("d", 7, 5, rng)), rng.normal(size=(4, 7)))


def test_conv_gradients():
    rng = np.random.default_rng(0)
    _check_layer(_as64(Conv2D("c", 3, 4, 3, rng)), rng.normal(size=(2, 3, 6, 5)))


def test_maxpool_gradients():
    rng = np.random.default_rng(0)
    # distinct values so the max is unique (the gradient is defined)
    x = rng.permutation(2 * 3 * 6 * 4).reshape(2, 3, 6, 4).astype(np.float64) / 10.0
    _check_layer(MaxPool2(), x)
    y = MaxPool2().forward(x)
    assert np.array_equal(y, x.reshape(2, 3, 3, 2, 2, 2).max(axis=(3, 5)))


def test_relu_gradients():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 6))
    x[np.abs(x) < 1e-3] = 0.5  # keep away from the kink
    _check_layer(ReLU(), x)


def test_conv_matches_direct_convolution():
    rng = np.random.default_rng(3)
    c = Conv2D("c", 2, 3, 3, rng)
    x = rng.normal(size=(1, 2, 5, 6)).astype(np.float32)
    y = c.forward(x)
    ref = np.zeros((1, 3, 3, 4))
    for o in range(3):
        for i in range(3):
            for j in range(4):
                ref[0, o, i, j] = (x[0, :, i:i + 3, j:j + 3] * c.W[o]).sum() + c.b[o]
    assert np.allclose(y, ref, atol=1e-5)


def test_softmax_cross_entropy_gradient():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(6, 10))
    lab = rng.integers(0, 10, 6)
    loss, g = softmax_cross_entropy(z, lab)
    picks, num = _numeric(lambda: softmax_cross_entropy(z, lab)[0], z, n=30)
    assert np.allclose(g.reshape(-1)[picks], num, rtol=1e-5, atol=1e-8)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    assert loss == pytest.approx(-np.log(p[np.arange(6), lab]).mean())


def test_whole_lenet5_gradient():
    m = lenet5(0)
    for l in m.weight_layers:
        _as64(l)
    rng = np.random.default_rng(2)
    x = rng.random((2, 784))
    lab = np.array([3, 7])

    def loss():
        h = x
        for l in m.layers:
            h = l.forward(h)
        return softmax_cross_entropy(h, lab)[0]
    h = x
    for l in m.layers:
        h = l.forward(h, train=True)
    m.backward(softmax_cross_entropy(h, lab)[1])
    for name in ("conv1", "ip1"):
        l = m.layer(name)
        dW = l.dW.copy()
        picks, num = _numeric(loss, l.W, n=10)
        assert np.allclose(dW.reshape(-1)[picks], num, rtol=1e-4, atol=1e-9)


def test_mask_applied_in_forward_and_gradient():
    rng = np.random.default_rng(0)
    d = Dense("d", 6, 4, rng)
    mask = rng.random((4, 6)) > 0.5
    full = d.W.copy()
    d.set_mask(mask)
    assert np.all(d.W[~mask] == 0)
    d.W[~mask] = 1.0  # even if W is disturbed, the forward pass uses W * mask
    x = rng.normal(size=(3, 6)).astype(np.float32)
    assert np.allclose(d.forward(x, train=True), x @ (d.W * mask).T + d.b)
    d.backward(np.ones((3, 4), dtype=np.float32))
    assert np.all(d.dW[~mask] == 0) and np.any(d.dW[mask] != 0)
    with pytest.raises(NNError):
        d.set_mask(np.ones((6, 4), bool))
    assert full.shape == d.W.shape


def test_sgd_keeps_pruned_weights_zero():
    m = build_model("lenet300", 0)
    rng = np.random.default_rng(0)
    for l in m.weight_layers:
        l.set_mask(rng.random(l.W.shape) > 0.7)
    x = rng.random((64, 784)).astype(np.float32)
    y = rng.integers(0, 10, 64)
    train(m, x, y, TrainConfig(epochs=2, batch=16, weight_decay=1e-3), log=None)
    for l in m.weight_layers:
        assert np.all(l.W[~l.mask] == 0)
        assert np.any(l.W[l.mask] != 0)


def test_training_learns_mnist_subset(mnist_small):
    m = build_model("lenet300", 0)
    tr, te = mnist_small.train, mnist_small.test
    before = m.error(te.images, te.labels)
    hist = train(m, tr.images, tr.labels, TrainConfig(epochs=4, lr=0.1, batch=50), log=None,
                 x_val=te.images, y_val=te.labels)
    assert len(hist) == 4 and hist[-1]["loss"] < hist[0]["loss"]
    assert m.error(te.images, te.labels) < 0.25 < before


def test_training_is_deterministic(mnist_small):
    tr = mnist_small.train
    ws = []
    for _ in range(2):
        m = build_model("lenet300", 7)
        train(m, tr.images[:200], tr.labels[:200], TrainConfig(epochs=1, batch=50, shift=1),
              log=None)
        ws.append(m.layer("ip1").W)
    assert np.array_equal(ws[0], ws[1])


def test_lr_schedules_and_bad_config():
    c = TrainConfig(lr=0.1, lr_final=0.01)
    assert lr_at(c, 0, 100) == pytest.approx(0.1)
    assert lr_at(c, 100, 100) == pytest.approx(0.001)
    s = TrainConfig(lr=0.1, lr_final=0.1, schedule="step")
    assert [round(lr_at(s, i, 90), 6) for i in (0, 30, 60, 89)] == [0.1, 0.01, 0.001, 0.001]
    with pytest.raises(TrainError):
        TrainConfig(schedule="nope").check()
    with pytest.raises(TrainError):
        train(build_model("lenet300"), np.zeros((3, 784)), np.zeros(2, int), TrainConfig())
    with pytest.raises(NNError):
        build_model("alexnet")


def test_augment_shift_moves_pixels():
    x = np.zeros((50, 784), np.float32)
    x[:, 14 * 28 + 14] = 1.0
    out = augment_shift(x, 2, np.random.default_rng(0))
    pos = out.reshape(50, 28, 28).argmax(axis=2).max(axis=1)
    assert out.sum() == 50 and set(pos) <= set(range(12, 17)) and len(set(pos)) > 1
    assert augment_shift(x, 0, None) is x


def test_model_forward_shapes():
    x = np.zeros((3, 784), np.float32)
    assert build_model("lenet5").forward(x).shape == (3, 10)
    assert build_model("lenet300").forward(x).shape == (3, 10)
    mlp = build_model("mlp1024")
    assert mlp.forward(x).shape == (3, 10) and mlp.n_weights() == 784 * 1024 + 1024 * 1024 + 10240
    with pytest.raises(NNError):
        build_model("lenet300").forward(np.zeros((3, 100)))
    m = build_model("lenet300")
    p = m.get_params()
    m2 = build_model("lenet300", 1)
    m2.set_params(p)
    assert np.array_equal(m2.forward(np.ones((1, 784))), m.forward(np.ones((1, 784))))
    assert SGD(m).momentum == 0.9
