"""Reference decoder: inference from the packed images equals the golden model bit for bit."""
from pathlib import Path

import numpy as np
import pytest

from contract.memmap import DESC_WORD, DESC_WORDS
from sw.golden import IntLayer, IntModel, images_to_uint8, infer, load_mnist, random_int_model
from sw.pack import PackLimits, pack
from sw.refdecoder import (RefDecodeError, infer_packed, infer_packed_events,
                           infer_packed_layers, read_descriptors)

BIG = PackLimits(max_layers=8, max_rows_per_pe=4096, max_features=4096, symbol_depth=4096)
ROOT = Path(__file__).resolve().parent.parent
LENET = ROOT / "models" / "lenet300.npz"


def inputs(n, n_in, seed, density=0.3):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, n_in)) * (rng.random((n, n_in)) < density)
    x[0] = 0      # all-zero input
    x[1] = 255    # everything saturated
    return x


@pytest.mark.parametrize("n_pes", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("seed", range(3))
def test_batch_equals_golden(n_pes, seed):
    im = random_int_model([120, 70, 33, 10], density=0.15, seed=seed)
    x = inputs(200, 120, seed)
    pk = pack(im, n_pes, "sim", limits=BIG)
    gold = infer(im, x)
    assert np.array_equal(infer_packed(pk, x), gold.logits)
    layers = infer_packed_layers(pk, x)
    for a, b in zip(layers, gold.activations, strict=True):
        assert np.array_equal(a, b)
    # The hidden layers do saturate and do produce zeros.
    hidden = np.concatenate([a.ravel() for a in gold.activations[:-1]])
    assert (hidden == 255).any() and (hidden == 0).any()


@pytest.mark.parametrize("n_pes", [1, 2, 3, 4, 8, 20])
def test_events_equal_golden(n_pes):
    im = random_int_model([90, 48, 10], density=0.2, seed=10 + n_pes)
    x = inputs(4, 90, n_pes)
    pk = pack(im, n_pes, "sim", limits=BIG)
    gold = infer(im, x)
    from sw.golden import ideal_cycles
    cs = ideal_cycles(im, x, n_pes)
    for i in range(len(x)):
        logits, work = infer_packed_events(pk, x[i])
        assert np.array_equal(logits, gold.logits[i])
        # Symbols decoded per PE = the golden model's per-PE work (non-zeros + fillers).
        assert np.array_equal(work, cs.pe_work[i])
    assert infer_packed(pk, x[2]).shape == (10,)


def test_skip_table_above_16_pes():
    """Above 16 PEs a skip table entry is two words (PEs 16.. in the second): a table that
    keeps PE 17's non-empty column from it is refused, and the right one decodes."""
    im = random_int_model([90, 48, 10], density=0.2, seed=5)
    pk = pack(im, 20, "sim", limits=BIG)
    x = inputs(3, 90, 5)
    assert np.array_equal(infer_packed(pk, x), infer(im, x).logits)
    skip = pk.images[2 * 20 + 5]
    assert len(skip) == 2 * (90 + 48)
    j = next(j for j in range(90) if skip[2 * j + 1] & 2 == 0)      # layer 0, PE 17 has it
    skip[2 * j + 1] |= np.uint16(2)
    with pytest.raises(RefDecodeError, match=f"layer 0 PE 17: .*skips column {j}"):
        infer_packed(pk, x)


def test_long_gaps_small_gap_bits():
    # gap_bits = 1: almost every gap needs fillers.
    im = random_int_model([50, 64, 10], density=0.05, seed=3, gap_bits=1)
    x = inputs(30, 50, 3, density=0.8)
    for n_pes in (1, 3):
        pk = pack(im, n_pes, "sim", limits=BIG)
        assert sum(l["fillers"] for l in pk.manifest["layers"]) > 0
        assert np.array_equal(infer_packed(pk, x), infer(im, x).logits)
        assert np.array_equal(infer_packed_events(pk, x[5])[0], infer(im, x).logits[5])


def test_16bit_activations_and_short_codes():
    im = random_int_model([40, 30, 10], density=0.3, seed=4, act_bits=16, huff_max_len=7)
    x = inputs(20, 40, 4)
    pk = pack(im, 2, "sim", limits=BIG)
    assert pk.manifest["params"]["act_bits"] == 16
    assert max(l["max_code_len"] for l in pk.manifest["layers"]) <= 7
    assert np.array_equal(infer_packed(pk, x), infer(im, x).logits)


def test_empty_rows_and_layer():
    l1 = IntLayer(np.zeros((8, 5), dtype=np.uint8), np.zeros(16, dtype=np.int64),
                  np.arange(8) * 100 - 300, 2, 1, relu=True, last=False)
    l2 = IntLayer(np.ones((3, 8), dtype=np.uint8), np.array([0, 7] + [0] * 14),
                  np.array([5, -5, 0]), 0, 3, relu=False, last=True)
    im = IntModel([l1, l2])
    x = inputs(5, 5, 0)
    for n_pes in (1, 2, 8):
        pk = pack(im, n_pes, "sim", limits=BIG)
        assert np.array_equal(infer_packed(pk, x), infer(im, x).logits)


def test_corrupt_images():
    im = random_int_model([40, 30, 10], density=0.3, seed=5)
    x = inputs(3, 40, 5)
    pk = pack(im, 2, "sim", limits=BIG)
    # No descriptor with the last flag.
    bad = pack(im, 2, "sim", limits=BIG)
    bad.images[2 + 4][DESC_WORDS + DESC_WORD["flags"]] &= ~np.uint16(2)
    with pytest.raises(RefDecodeError, match="last"):
        read_descriptors(bad)
    # A pointer moved by one bit splits a code (or runs past the rows).
    bad = pack(im, 2, "sim", limits=BIG)
    ptr_base = int(bad.images[0][0])
    ptrs = bad.images[2 + 5]            # PE 0's pointer memory
    col = next(j for j in range(1, 40) if ptrs[ptr_base + j] != ptrs[ptr_base + j + 1])
    ptrs[ptr_base + col] += 1
    with pytest.raises(RefDecodeError):
        infer_packed(bad, x)
    # Decreasing pointers.
    bad = pack(im, 2, "sim", limits=BIG)
    bad.images[2 + 5][ptr_base + 40] = 0
    with pytest.raises(RefDecodeError, match="pointer"):
        infer_packed(bad, x)
    # A column skip table that keeps a non-empty column from its PE (the hardware would drop
    # that column's weights); a table that skips nothing is only slower.
    for events in (False, True):
        bad = pack(im, 2, "sim", limits=BIG)
        skip = bad.images[2 * 2 + 5]
        j = 40 + next(j for j in range(30) if skip[40 + j] & 2 == 0)   # layer 1, PE 1 has it
        skip[j] |= np.uint16(2)
        with pytest.raises(RefDecodeError, match=f"layer 1 PE 1: .*skips column {j - 40}"):
            infer_packed_events(bad, x[0]) if events else infer_packed(bad, x)
    none = pack(im, 2, "sim", limits=BIG)
    none.images[2 * 2 + 5][:] = 0
    assert np.array_equal(infer_packed(none, x), infer(im, x).logits)
    # Wrong input size.
    with pytest.raises(RefDecodeError, match="input"):
        infer_packed(pk, np.zeros((1, 41), dtype=np.int64))
    # Flipping stream bits never goes unnoticed: error or different logits.
    rng = np.random.default_rng(0)
    stream_base = int(pk.images[0][1])
    detected = 0
    for _ in range(20):
        bad = pack(im, 2, "sim", limits=BIG)
        addr = stream_base + int(rng.integers(0, 20))
        bad.images[0][addr] ^= np.uint16(1 << int(rng.integers(0, 16)))
        try:
            out = infer_packed(bad, x)
        except RefDecodeError:
            detected += 1
        else:
            detected += not np.array_equal(out, infer(im, x).logits) or \
                not np.array_equal(infer_packed_layers(bad, inputs(50, 40, 9))[0],
                                   infer(im, inputs(50, 40, 9)).activations[0])
    assert detected >= 15


@pytest.fixture(scope="module")
def lenet():
    if not LENET.exists():
        pytest.skip("models/lenet300.npz not built yet")
    from sw.modelfile import load_model
    m = load_model(LENET)
    if m.integer is None:
        pytest.skip("models/lenet300.npz has no integer section")
    return IntModel.from_model(m)


@pytest.fixture(scope="module")
def mnist_test():
    return images_to_uint8(load_mnist()["test"][0]), load_mnist()["test"][1]


def test_lenet300_subset(lenet, mnist_test):
    x, _ = mnist_test
    for n_pes in (1, 4):
        pk = pack(lenet, n_pes, "sim", limits=BIG)
        assert np.array_equal(infer_packed(pk, x[:500]), infer(lenet, x[:500]).logits)
        assert np.array_equal(infer_packed_events(pk, x[7])[0], infer(lenet, x[7]).logits[0])


@pytest.mark.slow
@pytest.mark.parametrize("n_pes", [1, 2, 3, 4, 8])
def test_lenet300_all_test_images(lenet, mnist_test, n_pes):
    x, y = mnist_test
    pk = pack(lenet, n_pes, "sim", limits=BIG)
    got = infer_packed(pk, x)
    assert np.array_equal(got, infer(lenet, x).logits)
    assert (np.argmax(got, axis=1) != y).mean() < 0.02


def test_cli(tmp_path, capsys):
    from sw import refdecoder
    from sw.modelfile import save_model
    im = random_int_model([784, 40, 10], density=0.1, seed=8)
    save_model(tmp_path / "m.npz", im.to_model())
    pack(im, 3, "sim", limits=BIG).save(tmp_path / "pk")
    assert refdecoder.main([str(tmp_path / "pk"), "--model", str(tmp_path / "m.npz"),
                            "--events", "2"]) == 0
    out = capsys.readouterr().out
    assert "bit for bit on all 10000 images: True" in out
    other = random_int_model([784, 40, 10], density=0.1, seed=9)
    save_model(tmp_path / "o.npz", other.to_model())
    assert refdecoder.main([str(tmp_path / "pk"), "--model", str(tmp_path / "o.npz")]) == 3
    assert refdecoder.main([str(tmp_path / "missing")]) == 1
