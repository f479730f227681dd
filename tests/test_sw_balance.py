"""Row balancing: exact logits, every PE gets the same number of rows, less imbalance."""
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from sw.balance import (CALIBRATION_IMAGES, BalanceError, balance_method, balance_model,
                        balance_permutation, balance_permutations, balance_rows,
                        default_calibration, permute_model, refine_permutation)
from sw.golden import GoldenError, IntModel, ideal_cycles, infer, random_int_model
from sw.pack import PackLimits, pack, sized_limits
from sw.refdecoder import infer_packed, infer_packed_layers

BIG = PackLimits(max_layers=8, max_rows_per_pe=4096, max_features=4096, symbol_depth=4096)
LENET = Path(__file__).resolve().parent.parent / "models" / "lenet300.npz"


def skewed_model(seed=0):
    """Rows 0, 4, 8, ... (all in PE 0 of 4) are dense, the others sparse."""
    im = random_int_model([64, 40, 10], density=0.08, seed=seed)
    rng = np.random.default_rng(seed)
    idx = im.layers[0].index.copy()
    idx[::4] = rng.integers(1, 16, size=idx[::4].shape)
    layers = [type(im.layers[0])(**{**im.layers[0].__dict__, "index": idx.astype(np.uint8)}),
              *im.layers[1:]]
    return IntModel(layers, **{k: getattr(im, k) for k in
                               ("act_bits", "weight_bits", "acc_bits", "idx_bits", "gap_bits",
                                "huff_max_len")})


def test_permutation_keeps_the_interleaved_row_counts_and_balances():
    w = np.array([9, 1, 1, 1, 9, 1, 1, 1, 9, 1], dtype=float)
    perm = balance_permutation(w, 4)
    assert sorted(perm) == list(range(10))
    loads = [w[perm[p::4]].sum() for p in range(4)]
    assert max(loads) == 11          # identity order gives PE 0 rows 0, 4, 8 = 27
    assert loads != [w[p::4].sum() for p in range(4)]
    assert np.array_equal(balance_permutation(w, 4), perm)          # deterministic
    assert np.array_equal(balance_permutation(w, 1), np.arange(10))  # one PE: order kept


@pytest.mark.parametrize("n_pes", [1, 2, 3, 4, 8])
def test_balanced_model_has_identical_logits(n_pes):
    im = random_int_model([90, 50, 30, 10], density=0.2, seed=n_pes)
    bal, perms = balance_rows(im, n_pes)
    x = np.random.default_rng(n_pes).integers(0, 256, size=(64, 90))
    x[0] = 0
    assert np.array_equal(infer(bal, x).logits, infer(im, x).logits)
    assert np.array_equal(perms[-1], np.arange(10))
    # Hidden activations are the same numbers, renumbered.
    for a, b, p in zip(infer(bal, x).activations[:-1], infer(im, x).activations[:-1], perms):
        assert np.array_equal(a, b[:, p])


def test_balancing_reduces_the_busiest_pe():
    im = skewed_model()
    x = np.random.default_rng(1).integers(0, 256, size=(32, 64))
    before = ideal_cycles(im, x, 4)
    after = ideal_cycles(balance_rows(im, 4)[0], x, 4)
    assert after.pe_work[:, 0].max(axis=1).mean() < 0.8 * before.pe_work[:, 0].max(axis=1).mean()
    assert np.array_equal(after.ideal, before.ideal)


def test_permute_model_rejects_bad_permutations():
    im = random_int_model([20, 12, 5], density=0.3, seed=2)
    ok = [np.arange(12), np.arange(5)]
    with pytest.raises(BalanceError, match="permutations for"):
        permute_model(im, ok[:1])
    with pytest.raises(BalanceError, match="not a permutation"):
        permute_model(im, [np.zeros(12, dtype=int), np.arange(5)])
    with pytest.raises(BalanceError, match="logits"):
        permute_model(im, [np.arange(12), np.arange(5)[::-1]])


@pytest.mark.parametrize("n_pes", [2, 4])
def test_balanced_pack_decodes_to_the_golden_logits(n_pes):
    im = skewed_model(3)
    x = np.random.default_rng(5).integers(0, 256, size=(50, 64)) * \
        (np.random.default_rng(6).random((50, 64)) < 0.4)
    pk = pack(im, n_pes, "sim", limits=BIG, balance=True)
    assert np.array_equal(infer_packed(pk, x), infer(im, x).logits)
    order = pk.manifest["row_order"]
    assert order["balanced"] and sorted(order["layers"][0]) == list(range(40))
    hidden = infer_packed_layers(pk, x)[0]
    assert np.array_equal(hidden, infer(im, x).activations[0][:, order["layers"][0]])
    assert not pack(im, n_pes, "sim", limits=BIG).manifest["row_order"]["balanced"]


@pytest.mark.skipif(not LENET.exists(), reason="committed model missing")
def test_lenet300_balanced_for_four_pes():
    from sw.golden import images_to_uint8, load_mnist
    from sw.modelfile import load_model
    im = IntModel.from_model(load_model(LENET))
    x = images_to_uint8(load_mnist()["test"][0][:200])
    bal = balance_rows(im, 4)[0]
    assert np.array_equal(infer(bal, x).logits, infer(im, x).logits)
    before, after = ideal_cycles(im, x, 4), ideal_cycles(bal, x, 4)
    assert (after.pe_bound / after.ideal).mean() < (before.pe_bound / before.ideal).mean() - 0.04


# --------------------------------------------------------------------------------------------
# Data-driven refinement


def grouped_model(n_pes=4, groups=4, rows=32, per_group=16, nnz=12, seed=0):
    """Hidden row ``r`` reads only input group ``r mod groups`` (``nnz`` weights each, so the
    greedy order, which sees equal row counts, puts a whole group into one PE)."""
    im = random_int_model([groups * per_group, rows, 10], density=0.2, seed=seed)
    rng = np.random.default_rng(seed)
    idx = np.zeros((rows, groups * per_group), dtype=np.uint8)
    for r in range(rows):
        g = r % groups
        cols = g * per_group + rng.choice(per_group, nnz, replace=False)
        idx[r, cols] = rng.integers(1, 16, size=nnz)
    return dataclasses.replace(im, layers=[dataclasses.replace(im.layers[0], index=idx),
                                           *im.layers[1:]])


def grouped_inputs(n, groups=4, per_group=16, seed=0):
    """Inputs that each switch on one random group (the others are zero)."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, groups * per_group), dtype=np.int64)
    for i, g in enumerate(rng.integers(groups, size=n)):
        x[i, g * per_group:(g + 1) * per_group] = rng.integers(1, 256, size=per_group)
    return x


def test_refinement_spreads_input_groups_on_held_out_inputs():
    im = grouped_model()
    cal, held_out = grouped_inputs(200, seed=1), grouped_inputs(100, seed=2)
    greedy = balance_rows(im, 4)[0]
    data, perms = balance_rows(im, 4, cal)
    g, d = ideal_cycles(greedy, held_out, 4), ideal_cycles(data, held_out, 4)
    # greedy: every input loads one PE (4x the ideal in layer 0); the refinement spreads groups
    assert g.pe_work[:, 0].max(axis=1).sum() >= 3.5 * np.ceil(g.macs[:, 0] / 4).sum()
    assert d.pe_work[:, 0].max(axis=1).sum() < 0.5 * g.pe_work[:, 0].max(axis=1).sum()
    assert d.pe_bound.sum() < 0.7 * g.pe_bound.sum()
    assert np.array_equal(d.ideal, g.ideal)
    assert np.array_equal(infer(data, held_out).logits, infer(im, held_out).logits)
    for p in range(4):      # interleaved row counts kept
        assert len(perms[0][p::4]) == len(range(p, 32, 4))


@pytest.mark.parametrize("n_pes", [2, 3, 4, 8])
@pytest.mark.parametrize("seed", [0, 1])
def test_refinement_never_worse_than_greedy_on_its_calibration_set(n_pes, seed):
    im = random_int_model([90, 50, 30, 10], density=0.15, seed=seed, gap_bits=3)
    rng = np.random.default_rng(seed + 10)
    cal = rng.integers(0, 256, size=(80, 90)) * (rng.random((80, 90)) < rng.random((80, 1)))
    greedy = ideal_cycles(balance_rows(im, n_pes)[0], cal, n_pes)
    data = ideal_cycles(balance_rows(im, n_pes, cal)[0], cal, n_pes)
    for layer in range(3):    # fillers included; every layer, the logit layer unchanged
        assert data.pe_work[:, layer].max(axis=1).sum() <= \
            greedy.pe_work[:, layer].max(axis=1).sum()
    assert data.pe_bound.sum() <= greedy.pe_bound.sum()


def test_refine_permutation_keeps_a_better_start():
    """The filler-aware check returns the start order when every candidate needs more fillers:
    here the start puts the only two non-zero rows (14, 15) first in their PEs; the refinement
    without reordering (rows in original order inside a PE) moves them behind long zero runs."""
    index = np.zeros((16, 1), dtype=np.uint8)
    index[[14, 15], 0] = 1
    nz = np.ones((5, 1), dtype=bool)
    start = np.array([14, 15, *range(14)])
    refined = refine_permutation(index, nz, 2, start)                  # no widths: no check
    assert np.array_equal(refined, np.arange(16))                    # 14, 15 last in their PEs
    assert np.array_equal(refine_permutation(index, nz, 2, start, gap_bits=1, idx_bits=4,
                                             order=False), start)
    assert np.array_equal(refine_permutation(index, nz, 2, start, gap_bits=4, idx_bits=4,
                                             order=False), refined)   # no fillers: a tie
    # With the in-PE reordering the non-zero rows move to the top of their PEs by themselves.
    ordered = refine_permutation(index, nz, 2, np.arange(16), gap_bits=1, idx_bits=4)
    assert set(ordered[:2]) == {14, 15}


@pytest.mark.parametrize("n_pes", [1, 2, 4])
def test_in_pe_order_saves_fillers(n_pes):
    """Short gap fields (2 bits: a filler per 4 zeros) and sparse columns: the data method
    reorders the rows inside every PE and needs far fewer fillers, also on one PE."""
    from sw.sparse import encode_columns
    im = random_int_model([80, 64, 10], density=0.06, seed=4, gap_bits=2)
    rng = np.random.default_rng(9)
    cal = rng.integers(1, 256, size=(40, 80)) * (rng.random((40, 80)) < 0.5)
    x = rng.integers(1, 256, size=(40, 80)) * (rng.random((40, 80)) < 0.5)

    def fillers(model):
        enc = encode_columns(model.layers[0].index, n_pes, 2, model.idx_bits)
        return sum(pe.n_fillers for pe in enc.pes)
    greedy, data = balance_rows(im, n_pes)[0], balance_rows(im, n_pes, cal)[0]
    assert fillers(data) < 0.8 * fillers(greedy)      # 0.60-0.73 measured
    assert ideal_cycles(data, x, n_pes).pe_bound.sum() < \
        0.9 * ideal_cycles(greedy, x, n_pes).pe_bound.sum()
    assert np.array_equal(infer(data, x).logits, infer(im, x).logits)


@pytest.mark.parametrize("n_pes", [1, 2, 4, 8])
def test_data_balanced_model_has_identical_logits_and_is_deterministic(n_pes):
    im = random_int_model([90, 50, 30, 10], density=0.2, seed=n_pes)
    rng = np.random.default_rng(n_pes)
    cal = rng.integers(0, 256, size=(60, 90)) * (rng.random((60, 90)) < 0.4)
    x = rng.integers(0, 256, size=(64, 90)) * (rng.random((64, 90)) < 0.4)
    bal, perms = balance_rows(im, n_pes, cal)
    assert np.array_equal(infer(bal, x).logits, infer(im, x).logits)
    assert np.array_equal(perms[-1], np.arange(10))
    for a, b, p in zip(infer(bal, x).activations[:-1], infer(im, x).activations[:-1], perms):
        assert np.array_equal(a, b[:, p])
    again = balance_permutations(im, n_pes, cal.copy())
    assert all(np.array_equal(a, b) for a, b in zip(perms, again))


def test_no_calibration_is_the_greedy_order():
    im = random_int_model([90, 50, 30, 10], density=0.2, seed=3)
    perms = balance_rows(im, 4)[1]
    for p, l in zip(perms[:-1], im.layers):
        assert np.array_equal(p, balance_permutation((l.index != 0).sum(axis=1), 4))
    assert all(np.array_equal(a, b) for a, b in zip(perms, balance_model(im, 4, "greedy")[1]))


@pytest.mark.parametrize("cal, match", [
    (np.zeros((5, 89), dtype=np.int64), r"must be \(n, 90\)"),
    (np.zeros(90, dtype=np.int64), r"must be \(n, 90\)"),
    (np.zeros((2, 5, 90), dtype=np.int64), r"must be \(n, 90\)"),
    (np.zeros((0, 90), dtype=np.int64), "empty"),
    (np.zeros((5, 90)), "integer activations"),
    (np.full((5, 90), 256), r"0\.\.255"),
    (np.full((5, 90), -1), r"0\.\.255"),
])
def test_bad_calibration_is_refused(cal, match):
    im = random_int_model([90, 50, 10], density=0.2, seed=0)
    with pytest.raises(BalanceError, match=match):
        balance_rows(im, 4, cal)
    with pytest.raises(BalanceError, match=match):
        balance_rows(im, 1, cal)          # checked even where nothing is refined


def test_balance_method_names():
    assert [balance_method(b) for b in (False, None, True, "none", "greedy", "data")] == \
        ["none", "none", "data", "none", "greedy", "data"]
    with pytest.raises(BalanceError, match="unknown balancing method 'lpt'"):
        balance_method("lpt")
    with pytest.raises(BalanceError, match="n_pes"):
        balance_rows(random_int_model([20, 12, 5], density=0.3), 0)


def test_non_mnist_models_have_no_default_calibration():
    im = skewed_model()
    assert default_calibration(im) is None
    model, perms, info = balance_model(im, 4, "data")
    assert info == {"method": "greedy", "calibration": None}
    assert all(np.array_equal(a, b) for a, b in zip(perms, balance_rows(im, 4)[1]))
    model, perms, info = balance_model(im, 4, "none")
    assert model is im and info["method"] == "none"


def _mnist_or_skip():
    from sw.golden import load_mnist
    try:
        return load_mnist()
    except GoldenError:
        pytest.skip("MNIST not installed")


def test_default_calibration_is_the_first_mnist_training_images():
    from sw.golden import images_to_uint8
    d = _mnist_or_skip()
    im = random_int_model([784, 30, 10], density=0.05, seed=1)
    cal = default_calibration(im)
    assert cal.shape == (CALIBRATION_IMAGES, 784) and not cal.flags.writeable
    assert np.array_equal(cal, images_to_uint8(d["train"][0][:CALIBRATION_IMAGES]))
    assert default_calibration(im) is cal                       # loaded once
    model, perms, info = balance_model(im, 4)
    assert info == {"method": "data", "calibration": "MNIST train images 0..1999"}
    assert all(np.array_equal(a, b) for a, b in zip(perms, balance_rows(im, 4, cal)[1]))


@pytest.mark.parametrize("n_pes", [2, 4])
def test_pack_bench_and_sized_limits_agree_on_the_row_order(n_pes, monkeypatch):
    """sw.pack, sw.pack.sized_limits and hw.bench renumber through the same balance_model."""
    import hw.bench
    import sw.pack
    from sw.pack import PackError
    _mnist_or_skip()
    im = random_int_model([784, 40, 24, 10], density=0.05, seed=n_pes, gap_bits=5)
    pk = pack(im, n_pes, "sim", limits=BIG, balance=True)
    order = pk.manifest["row_order"]
    assert order["balanced"] and order["method"] == "data"
    assert order["calibration"] == "MNIST train images 0..1999"
    expect = balance_model(im, n_pes, "data")[1]
    assert order["layers"] == [[int(r) for r in p] for p in expect]
    assert order["layers"][0] != [int(r) for r in balance_rows(im, n_pes)[1][0]]  # not greedy
    seen = {}

    def spy(model, n, method):
        seen["sized_limits"] = real(model, n, method)
        return seen["sized_limits"]
    real = sw.pack.balance_model
    monkeypatch.setattr(sw.pack, "balance_model", spy)
    sized_limits(im, n_pes, BIG)          # default balance: the one hw.build packs with
    assert all(np.array_equal(a, b) for a, b in zip(seen["sized_limits"][1], expect))

    def stop(int_model, x, cfg, labels=None):
        seen["bench"] = int_model
        raise PackError("stop here")
    monkeypatch.setattr(hw.bench, "case_from_int_model", stop)
    rows = hw.bench.run_bench(im, [n_pes], 1, log=lambda *a: None)
    assert rows[0]["balance"] == "data" and rows[0]["status"].startswith("does not fit")
    for a, b in zip(seen["bench"].layers, permute_model(im, expect).layers):
        assert np.array_equal(a.index, b.index) and np.array_equal(a.bias_q, b.bias_q)


@pytest.mark.skipif(not LENET.exists(), reason="committed model missing")
def test_lenet300_data_balance_beats_greedy_on_test_images():
    """Held-out check on the committed model: MNIST test images 0-99 (never calibration)."""
    from sw.golden import images_to_uint8
    from sw.modelfile import load_model
    d = _mnist_or_skip()
    im = IntModel.from_model(load_model(LENET))
    x = images_to_uint8(d["test"][0][:100])
    data, _, info = balance_model(im, 8, "data")
    assert info["method"] == "data"
    assert np.array_equal(infer(data, x).logits, infer(im, x).logits)
    g, b = ideal_cycles(balance_rows(im, 8)[0], x, 8), ideal_cycles(data, x, 8)
    assert b.pe_bound.sum() / b.ideal.sum() < g.pe_bound.sum() / g.ideal.sum() - 0.03


@pytest.mark.parametrize("n_pes", [2, 4, 8])
def test_conv_layers_are_refined_on_their_patches(n_pes):
    """A conv layer's output channels are refined on the non-empty patches of the calibration
    maps: identical logits, never worse than the greedy order on those patches, and a
    different order than greedy's for some PE count (the refinement runs)."""
    from sw.balance import _calibration_patches
    from sw.golden import random_conv_model
    im = random_conv_model(in_shape=(1, 12, 12), convs=((12, 3),), fc=(10,), seed=n_pes)
    rng = np.random.default_rng(n_pes)
    cal = rng.integers(1, 256, size=(40, 144)) * (rng.random((40, 144)) < 0.3)
    x = rng.integers(1, 256, size=(8, 144)) * (rng.random((8, 144)) < 0.3)
    bal, perms = balance_rows(im, n_pes, cal)
    assert np.array_equal(infer(bal, x).logits, infer(im, x).logits)
    greedy = balance_permutation((im.layers[0].index != 0).sum(axis=1), n_pes)
    patches = _calibration_patches(im.layers[0], cal)
    assert 0 < len(patches) < 40 * im.layers[0].positions      # the empty ones are left out
    work = [ideal_cycles(balance_rows(im, n_pes)[0], cal, n_pes).layer_pe_bound[:, 0].sum(),
            ideal_cycles(bal, cal, n_pes).layer_pe_bound[:, 0].sum()]
    assert work[1] <= work[0]
    assert not np.array_equal(perms[0], greedy)


LENET5 = LENET.parent / "lenet5.npz"


@pytest.mark.skipif(not LENET5.exists(), reason="committed model missing")
def test_lenet5_conv_balance_beats_greedy_on_test_images():
    """Held-out check on the committed LeNet-5 at 8 PEs (MNIST test images 0-19): refining the
    conv layers on their calibration patches lowers the PE-work bound of both; conv1, whose
    rows are conv2's input channels, keeps its rows in their original order inside each PE."""
    from sw.golden import images_to_uint8
    from sw.modelfile import load_model
    d = _mnist_or_skip()
    im = IntModel.from_model(load_model(LENET5))
    x = images_to_uint8(d["test"][0][:20])
    data, perms, info = balance_model(im, 8, "data")
    assert info["method"] == "data"
    assert np.array_equal(infer(data, x).logits, infer(im, x).logits)
    greedy, greedy_perms = balance_rows(im, 8)
    conv1 = perms[0]
    assert not np.array_equal(conv1, greedy_perms[0])
    assert all(np.all(np.diff(conv1[p::8]) > 0) for p in range(8))
    g = ideal_cycles(greedy, x, 8).layer_pe_bound.sum(axis=0)
    b = ideal_cycles(data, x, 8).layer_pe_bound.sum(axis=0)
    assert b[0] < 0.95 * g[0] and b[1] < 0.98 * g[1]
