"""Integer golden model: exact arithmetic, calibration, cycle bound, random models."""
from pathlib import Path

import numpy as np
import pytest

from sw import golden
from sw.golden import GoldenError, IntModel, accumulator_bounds, infer, random_int_model
from sw.modelfile import CompressedModel, LayerRecord, load_model, save_model


def naive_infer(im, x):
    """Row-by-row Python-integer reference of section 1 (independent of numpy matmul)."""
    a = [int(v) for v in x]
    for l in im.layers:
        out = []
        for r in range(l.out_features):
            acc = int(l.bias_q[r]) << l.bias_shift
            for j in range(l.in_features):
                k = int(l.index[r, j])
                if k and a[j]:
                    acc += a[j] * int(l.cb_q[k])
            if l.last:
                m = 1 << im.acc_bits
                out.append(((acc + m // 2) % m) - m // 2)
            else:
                rnd = (1 << (l.shift - 1)) if l.shift else 0
                out.append(min(max((acc + rnd) >> l.shift, 0), (1 << im.act_bits) - 1))
        a = out
    return a


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("act_bits", [8, 16])
def test_infer_matches_naive(seed, act_bits):
    im = random_int_model([40, 33, 21, 10], density=0.3, seed=seed, act_bits=act_bits)
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(6, 40)) * (rng.random((6, 40)) < 0.6)
    x[0] = 0  # all-zero input
    x[1] = 255
    res = infer(im, x)
    for i in range(len(x)):
        assert res.logits[i].tolist() == naive_infer(im, x[i])
    assert np.array_equal(res.prediction, np.argmax(res.logits, axis=1))
    assert len(res.inputs) == len(res.activations) == 3


def test_random_model_properties():
    im = random_int_model([300, 200, 100, 10], density=0.08, seed=3)
    amax = (1 << im.act_bits) - 1
    for b in accumulator_bounds(im):
        assert b.max() < 2 ** (im.acc_bits - 1)
    # Empty columns and long gaps exist.
    assert any((l.index != 0).sum(axis=0).min() == 0 for l in im.layers)
    from sw.sparse import encode_columns
    assert any(p.n_fillers > 0 for l in im.layers
               for p in encode_columns(l.index, 2, im.gap_bits, im.idx_bits).pes)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(200, 300)) * (rng.random((200, 300)) < 0.3)
    res = infer(im, x)
    hidden = np.concatenate([a.ravel() for a in res.activations[:-1]])
    assert (hidden == amax).mean() > 0.01  # saturation happens
    assert (hidden == 0).mean() > 0.1  # ReLU zeros happen
    assert ((hidden > 0) & (hidden < amax)).mean() > 0.1


def test_int64_path_equals_float_path():
    im = random_int_model([50, 20, 10], density=0.5, seed=1)
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, size=(30, 50))
    w = im.layers[0].weights()
    assert np.array_equal(golden._matmul_exact(a, w, 0), golden._matmul_exact(a, w, 2 ** 60))
    assert np.array_equal(golden._matmul_exact(a, w, 0), a @ w.T)


def test_logits_wrap_to_acc_bits():
    l1 = golden.IntLayer(np.array([[1]], dtype=np.uint8), np.array([0, 1]), np.array([0]),
                         0, 0, relu=False, last=True)
    im = IntModel([l1], act_bits=8, weight_bits=2, acc_bits=8, idx_bits=1)
    # weight 1 * 255 = 255 -> as signed 8-bit = -1
    assert infer(im, [[255]]).logits.tolist() == [[-1]]


def test_rounding_and_ties():
    # acc = a * 1; shift 1: round half up (floor of acc + 1 >> 1).
    l1 = golden.IntLayer(np.array([[1], [1]], dtype=np.uint8),
                         np.array([0, 1] + [0] * 14), np.array([0, -1]), 1, 0,
                         relu=True, last=False)
    l2 = golden.IntLayer(np.array([[1, 0], [0, 1]], dtype=np.uint8),
                         np.array([0, 1] + [0] * 14), np.array([0, 0]), 0, 0,
                         relu=False, last=True)
    im = IntModel([l1, l2])
    res = infer(im, [[0], [1], [2], [3], [255]])
    assert res.activations[0][:, 0].tolist() == [0, 1, 1, 2, 128]
    assert res.activations[0][:, 1].tolist() == [0, 0, 1, 1, 127]
    assert res.prediction.tolist() == [0, 0, 0, 0, 0]  # ties -> lowest index


def test_input_errors():
    im = random_int_model([8, 4, 3], seed=0)
    with pytest.raises(GoldenError, match="shape"):
        infer(im, np.zeros((2, 9), dtype=np.uint8))
    with pytest.raises(GoldenError, match="integer"):
        infer(im, np.zeros((2, 8)))
    with pytest.raises(GoldenError, match="0..255"):
        infer(im, np.full((1, 8), 256))
    with pytest.raises(GoldenError):
        IntModel([im.layers[0]])  # hidden layer as the last one


def test_ideal_cycles_naive():
    im = random_int_model([60, 40, 10], density=0.2, seed=4)
    rng = np.random.default_rng(4)
    x = rng.integers(0, 256, size=(5, 60)) * (rng.random((5, 60)) < 0.4)
    x[0] = 0
    for n_pes in (1, 3, 4):
        cs = golden.ideal_cycles(im, x, n_pes)
        res = infer(im, x)
        for i in range(len(x)):
            want = 0
            for l, a in zip(im.layers, res.inputs):
                m = sum(int((l.index[:, j] != 0).sum()) for j in range(l.in_features) if a[i, j])
                want += -(-m // n_pes)
            assert cs.ideal[i] == want
        assert cs.ideal[0] == 0 or (res.inputs[1][0] != 0).any()
        assert np.all(cs.pe_bound >= cs.ideal)
        if n_pes == 1:
            # One PE: work = non-zeros + fillers of the active columns.
            assert np.all(cs.pe_work.sum(axis=2) >= cs.macs)
        s = cs.summary()
        assert s["imbalance_mean"] >= 1.0


# ---------------------------------------------------------------- calibration on MNIST

def _quantize(w, density):
    thr = np.quantile(np.abs(w), 1 - density)
    mask = np.abs(w) >= thr
    cents = np.linspace(w[mask].min(), w[mask].max(), 15)
    idx = np.zeros(w.shape, dtype=np.uint8)
    idx[mask] = np.argmin(np.abs(w[mask][:, None] - cents[None]), axis=1) + 1
    return idx, np.concatenate([[0], cents]).astype(np.float32)


@pytest.fixture(scope="module")
def mnist():
    return golden.load_mnist()


@pytest.fixture(scope="module")
def small_float_model(mnist):
    """784-64-10 shared-weight model: random sparse hidden layer, least-squares classifier."""
    rng = np.random.default_rng(0)
    x, y = mnist["train"]
    x, y = x[:4000].astype(np.float64), y[:4000]
    # Hidden units: +/- a linear classifier (relu(z) - relu(-z) = z) plus random features.
    xb = np.c_[x, np.ones(len(x))]
    lin = np.linalg.solve(xb.T @ xb + 10 * np.eye(785), xb.T @ np.eye(10)[y])  # ridge
    w1 = np.concatenate([lin[:-1].T, -lin[:-1].T, 0.05 * rng.normal(size=(44, 784))])
    idx1, cb1 = _quantize(w1, 0.3)
    b1 = np.concatenate([lin[-1], -lin[-1], np.zeros(44)]).astype(np.float32)
    h = np.maximum(x @ cb1[idx1].T + b1, 0)
    hb = np.c_[h, np.ones(len(h))]
    sol = np.linalg.solve(hb.T @ hb + 10 * np.eye(65), hb.T @ np.eye(10)[y])
    idx2, cb2 = _quantize(sol[:-1].T, 1.0)
    layers = [LayerRecord("ip1", "fc", idx1, cb1, b1, 4, True),
              LayerRecord("ip2", "fc", idx2, cb2, sol[-1].astype(np.float32), 4, False)]
    return CompressedModel("lenet300", [784], layers, {})


@pytest.mark.parametrize("act_bits", [8, 16])
def test_calibrate_tracks_float(mnist, small_float_model, act_bits, tmp_path):
    xtr, ytr = mnist["train"]
    xte, yte = mnist["test"]
    cm = golden.calibrate(small_float_model, xtr[:5000], ytr[:5000], act_bits=act_bits,
                          n_calib=3000)
    p = tmp_path / "cal.npz"
    save_model(p, cm)
    im = IntModel.from_model(load_model(p))
    assert im.act_bits == act_bits
    for b in accumulator_bounds(im):
        assert b.max() < 2 ** 31
    l1 = im.layers[0]
    # The codebook uses the 16-bit range well (top bit used) on the hidden layer for 8-bit acts.
    if act_bits == 8:
        assert np.abs(l1.cb_q).max() >= 2 ** 14
    assert np.abs(im.layers[-1].cb_q).max() >= 2 ** 10
    x8 = golden.images_to_uint8(xte[:2000])
    fpred = np.argmax(golden.float_infer(small_float_model, xte[:2000])[-1], axis=1)
    ipred = infer(im, x8).prediction
    agree = (fpred == ipred).mean()
    assert agree > 0.97, agree
    ferr = (fpred != yte[:2000]).mean()
    ierr = (ipred != yte[:2000]).mean()
    assert ferr < 0.3  # the toy model does learn something
    assert ierr < ferr + 0.02


def test_calibrate_errors(small_float_model, mnist):
    with pytest.raises(GoldenError, match="no integer section"):
        IntModel.from_model(small_float_model)
    with pytest.raises(GoldenError, match="training images"):
        golden.calibrate(small_float_model, np.zeros((3, 10)))


def test_images_to_uint8(mnist):
    x = mnist["test"][0][:10]
    b = golden.images_to_uint8(x)
    assert b.min() >= 0 and b.max() <= 255
    assert np.array_equal(b / 256.0, x.astype(np.float64))


def test_cli(small_float_model, tmp_path, capsys):
    p = tmp_path / "m.npz"
    save_model(p, small_float_model)
    out = tmp_path / "cal.npz"
    assert golden.main([str(p), "--pes", "2", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "integer model (8-bit" in text and "16-bit" in text and "ideal cycles" in text
    assert load_model(out).integer is not None
    assert golden.main([str(tmp_path / "missing.npz")]) == 1


def test_to_model_roundtrip(tmp_path):
    im = random_int_model([30, 20, 5], density=0.3, seed=2)
    p = tmp_path / "r.npz"
    save_model(p, im.to_model())
    back = IntModel.from_model(load_model(p))
    x = np.random.default_rng(0).integers(0, 256, size=(20, 30))
    assert np.array_equal(infer(back, x).logits, infer(im, x).logits)


LENET = Path(__file__).resolve().parent.parent / "models" / "lenet300.npz"


@pytest.mark.skipif(not LENET.exists(), reason="models/lenet300.npz not built yet")
def test_lenet300_integer_tracks_float(mnist):
    """The committed model's integer section: integer test error close to the float error."""
    m = load_model(LENET)
    assert m.integer is not None, "models/lenet300.npz lacks its integer section"
    im = IntModel.from_model(m)
    xte, yte = mnist["test"]
    x8 = golden.images_to_uint8(xte)
    ierr = (infer(im, x8).prediction != yte).mean()
    ferr = (np.argmax(golden.float_infer(m, xte)[-1], axis=1) != yte).mean()
    assert ierr <= ferr + 0.002, (ierr, ferr)
    for b in accumulator_bounds(im):
        assert b.max() < 2 ** (im.acc_bits - 1)


def test_random_model_n_indices():
    im = random_int_model([200, 80, 10], density=0.1, seed=21, n_indices=4)
    assert all(int(l.index.max()) <= 4 for l in im.layers)
    from sw.pack import pack
    layers = pack(im, 4, "sim").manifest["layers"]
    assert sum(l["n_symbols"] for l in layers) <= 256   # few indices: a small symbol table fits
    with pytest.raises(GoldenError):
        random_int_model([20, 10], n_indices=16)
