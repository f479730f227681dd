"""Row balancing: exact logits, every PE gets the same number of rows, less imbalance."""
from pathlib import Path

import numpy as np
import pytest

from sw.balance import BalanceError, balance_permutation, balance_rows, permute_model
from sw.golden import IntModel, ideal_cycles, infer, random_int_model
from sw.pack import PackLimits, pack
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
