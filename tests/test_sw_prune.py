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


# ---- dead neurons ----------------------------------------------------------------------------

def _dead_case(seed):
    """A random 3-layer integer model whose classifier reads few hidden neurons, as a model
    file, and random inputs."""
    from sw.golden import random_int_model
    im = random_int_model([60, 40, 30, 10], density=0.08, seed=seed)
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(50, 60))
    x[x < 120] = 0
    return im.to_model(), x


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_drop_dead_neurons_keeps_every_logit(seed):
    """The integer model with the dead neurons dropped gives the same logits on every input,
    its hidden layers have no non-zero output that no weight reads, and a second pass drops
    nothing (the input model is unchanged)."""
    from sw.golden import IntModel, infer
    from sw.prune import drop_dead_neurons
    cm, x = _dead_case(seed)
    before = [l.index.copy() for l in cm.layers]
    out, dropped = drop_dead_neurons(cm)
    assert dropped                              # the case has dead neurons at all
    assert all(np.array_equal(b, l.index) for b, l in zip(before, cm.layers))
    ref = infer(IntModel.from_model(cm), x, trace="inputs")
    got = infer(IntModel.from_model(out), x, trace="inputs")
    assert np.array_equal(ref.logits, got.logits)
    for l, nxt_in in zip(out.layers[1:], got.inputs[1:]):
        unread = ~(l.index != 0).any(axis=0)
        assert not nxt_in[:, unread].any()      # a dead neuron's output is 0
    ref_unread = sum(int(a[:, ~(l.index != 0).any(axis=0)].astype(bool).sum())
                     for l, a in zip(cm.layers[1:], ref.inputs[1:]))
    assert ref_unread > 0                       # ... and was not before
    assert drop_dead_neurons(out)[1] == {}


def test_drop_dead_neurons_counts_and_clears_the_rows():
    """A neuron that only fed a dead neuron is dead too (the pass runs backwards); the rows'
    weights and biases (float and integer) are cleared, the live rows are untouched."""
    from sw.prune import drop_dead_neurons
    cm, _ = _dead_case(4)
    l1, l2, l3 = cm.layers
    l3.index[:, 5] = 0                          # neuron 5 of l2 is dead ...
    l2.index[5, :] = 0
    l2.index[:, 7] = 0
    l2.index[5, 7] = 1                          # ... and is the only reader of neuron 7 of l1
    l1.bias[7] = l1.bias_q[7] = 3
    l2.bias[5] = l2.bias_q[5] = 3
    out, dropped = drop_dead_neurons(cm)
    o1, o2, o3 = out.layers
    assert not o2.index[5].any() and o2.bias[5] == 0 and o2.bias_q[5] == 0
    assert not o1.index[7].any() and o1.bias[7] == 0 and o1.bias_q[7] == 0
    assert np.array_equal(o3.index, l3.index)
    live2 = (l3.index != 0).any(axis=0)
    assert np.array_equal(o2.index[live2], l2.index[live2])
    assert dropped[l2.name] == int((~live2 & ((l2.index != 0).any(axis=1)
                                              | (l2.bias != 0))).sum())
    assert dropped[l1.name] >= 1


def test_committed_mlp1024_has_no_dead_neurons():
    """models/mlp1024.npz was written with its dead neurons dropped (sw.compress does it)."""
    from pathlib import Path
    from sw.modelfile import load_model
    from sw.prune import drop_dead_neurons
    path = Path(__file__).resolve().parent.parent / "models" / "mlp1024.npz"
    assert drop_dead_neurons(load_model(path))[1] == {}
