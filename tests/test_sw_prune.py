"""sw.prune: magnitude pruning (quality x std), masked retraining, sensitivity."""
import numpy as np
import pytest

from sw.nn import Dense, build_model
from sw.prune import (PruneError, density_schedule, format_sensitivity, iterative_prune,
                      prune_layer, quality_for_density, sensitivity)
from sw.train import TrainConfig


@pytest.fixture(scope="module")
def data():
    from sw.mnist import MnistNotFoundError, load_mnist
    try:
        return load_mnist(subset=1500, test_subset=400, seed=1)
    except MnistNotFoundError as e:
        pytest.skip(str(e))


def test_threshold_is_quality_times_std():
    rng = np.random.default_rng(0)
    d = Dense("d", 50, 40, rng)
    w0 = d.W.copy()
    thr = prune_layer(d, 0.8)
    assert thr == pytest.approx(0.8 * np.std(w0.astype(np.float64)), rel=1e-6)
    assert np.array_equal(d.mask, np.abs(w0) > thr)
    assert np.all(d.W[~d.mask] == 0) and np.array_equal(d.W[d.mask], w0[d.mask])
    # second pass: std of the SURVIVING weights, and the old mask is kept
    w1 = d.W.copy()
    thr2 = prune_layer(d, 0.5)
    assert thr2 == pytest.approx(0.5 * np.std(w1[np.abs(w0) > thr].astype(np.float64)),
                                 rel=1e-6)
    assert not np.any(d.mask & (np.abs(w0) <= thr))
    with pytest.raises(PruneError):
        prune_layer(d, -1)


def test_quality_for_density_hits_target():
    rng = np.random.default_rng(1)
    d = Dense("d", 100, 60, rng)
    for target in (0.5, 0.2, 0.05):
        prune_layer(d, quality_for_density(d, target))
        assert d.density() == pytest.approx(target, abs=1.0 / d.W.size)
    assert quality_for_density(d, 0.9) == 0.0
    with pytest.raises(PruneError):
        quality_for_density(d, 0)


def test_density_schedule():
    s = density_schedule({"a": 0.04, "b": 0.25}, 2)
    assert s == [{"a": pytest.approx(0.2), "b": pytest.approx(0.5)},
                 {"a": pytest.approx(0.04), "b": pytest.approx(0.25)}]
    with pytest.raises(PruneError):
        density_schedule({"a": 1.5}, 2)
    with pytest.raises(PruneError):
        density_schedule({"a": 0.5}, 0)


def test_iterative_prune_keeps_masks_and_reaches_targets(data):
    m = build_model("lenet300", 0)
    tr, te = data.train, data.test
    from sw.train import train
    train(m, tr.images, tr.labels, TrainConfig(epochs=3, lr=0.1, batch=50), log=None)
    targets = {"ip1": 0.1, "ip2": 0.2, "ip3": 0.5}
    masks = []
    lines = []
    hist = iterative_prune(m, tr.images, tr.labels, targets, 3,
                           TrainConfig(epochs=1, lr=0.05, batch=50), te.images, te.labels,
                           log=lines.append, train_log=None)
    assert len(hist) == 3 and len(lines) == 3
    for name, t in targets.items():
        l = m.layer(name)
        assert l.density() == pytest.approx(t, abs=2.0 / l.W.size)
        assert np.all(l.W[~l.mask] == 0)
        masks.append(l.mask.copy())
    # densities decrease monotonically and masks only ever shrink
    for a, b in zip(hist, hist[1:]):
        assert all(b.density[k] < a.density[k] for k in targets)
    assert hist[-1].error_retrained < 0.5
    with pytest.raises(PruneError):
        iterative_prune(m, tr.images, tr.labels, {"conv9": 0.5}, 1, TrainConfig(), log=None)


def test_sensitivity_restores_parameters(data):
    m = build_model("lenet300", 0)
    te = data.test
    before = m.get_params()
    s = sensitivity(m, te.images, te.labels, ratios=(0.5, 0.99))
    after = m.get_params()
    for k in before:
        assert np.array_equal(before[k][0], after[k][0]) and after[k][2] is None
    assert set(s["layers"]) == {"ip1", "ip2", "ip3"} and len(s["layers"]["ip1"]) == 2
    md = format_sensitivity(s)
    assert "| ip2 |" in md and "99% pruned" in md
    with pytest.raises(PruneError):
        sensitivity(m, te.images, te.labels, ratios=(1.0,))
