"""Mini-batch SGD with momentum, weight decay and a learning-rate schedule (fixed seeds).

:func:`train` runs epochs over shuffled mini-batches and calls an *updater* after every
back-propagation. The default :class:`SGD` updates every weight layer's ``W`` (masked: pruned
weights keep a zero gradient and stay zero) and ``b``; ``sw.quantize.CentroidSGD`` instead
updates shared centroids. Progress is printed with plain ``print`` (no tqdm).
"""
import math
import time
from dataclasses import dataclass

import numpy as np

from sw.nn import softmax_cross_entropy

__all__ = ["TrainError", "TrainConfig", "SGD", "lr_at", "train", "augment_shift"]

SCHEDULES = ("cosine", "step", "constant", "inv")


class TrainError(ValueError):
    """Bad training hyper-parameters."""


@dataclass
class TrainConfig:
    """Training hyper-parameters.

    Attributes
    ----------
    epochs : float
        Passes over the training set (fractional allowed).
    lr : float
        Initial learning rate.
    lr_final : float
        Fraction of ``lr`` reached at the end (cosine) or per-step factor (step).
    schedule : str
        ``"cosine"`` (from ``lr`` to ``lr * lr_final``), ``"step"`` (x ``lr_final`` after each
        third of the run), ``"inv"`` (Caffe: ``lr (1 + 1e-4 it)^-0.75``) or ``"constant"``.
    momentum : float
    weight_decay : float
        L2 coefficient on weights (not biases).
    batch : int
    shift : int
        Random translation augmentation of up to ``shift`` pixels (0 = off).
    seed : int
        Shuffling / augmentation seed.
    log_every : int
        Print progress every this many iterations (0 = only per epoch).
    """
    epochs: float = 20
    lr: float = 0.05
    lr_final: float = 0.01
    schedule: str = "cosine"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch: int = 100
    shift: int = 0
    seed: int = 0
    log_every: int = 0

    def check(self):
        if self.schedule not in SCHEDULES:
            raise TrainError(f"schedule must be one of {SCHEDULES}, not {self.schedule!r}")
        if not (self.epochs > 0 and self.lr > 0 and self.batch >= 1 and 0 <= self.momentum < 1
                and self.weight_decay >= 0 and self.shift >= 0 and self.lr_final > 0):
            raise TrainError(f"invalid training configuration {self}")


def lr_at(cfg, it, total):
    """Learning rate at iteration ``it`` of ``total``."""
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "inv":
        return cfg.lr * (1.0 + 1e-4 * it) ** -0.75
    if cfg.schedule == "step":
        return cfg.lr * cfg.lr_final ** min(2, int(3 * it / max(1, total)))
    frac = it / max(1, total)
    lo = cfg.lr * cfg.lr_final
    return lo + 0.5 * (cfg.lr - lo) * (1.0 + math.cos(math.pi * frac))


class SGD:
    """Momentum SGD with L2 weight decay over a model's weight layers.

    Pruned weights (``mask`` false) get no decay and no momentum, so they stay exactly zero.
    """

    def __init__(self, model, momentum=0.9, weight_decay=5e-4):
        self.model = model
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.vW = {l.name: np.zeros_like(l.W) for l in model.weight_layers}
        self.vb = {l.name: np.zeros_like(l.b) for l in model.weight_layers}

    def step(self, lr):
        for l in self.model.weight_layers:
            g = l.dW + np.float32(self.weight_decay) * l.W
            if l.mask is not None:
                g *= l.mask
            v = self.vW[l.name]
            v *= np.float32(self.momentum)
            v -= np.float32(lr) * g
            l.W += v
            vb = self.vb[l.name]
            vb *= np.float32(self.momentum)
            vb -= np.float32(lr) * l.db
            l.b += vb


def augment_shift(x, max_shift, rng):
    """Translate each 28 x 28 image by a random integer offset in ``[-max_shift, max_shift]``.

    Pixels shifted in are 0. ``x`` is ``(n, 784)``; returns a new array of the same shape.
    """
    if max_shift <= 0:
        return x
    n = len(x)
    s = max_shift
    pad = np.zeros((n, 28 + 2 * s, 28 + 2 * s), dtype=x.dtype)
    pad[:, s:s + 28, s:s + 28] = x.reshape(n, 28, 28)
    dy = rng.integers(0, 2 * s + 1, size=n)
    dx = rng.integers(0, 2 * s + 1, size=n)
    rows = dy[:, None] + np.arange(28)[None, :]
    cols = dx[:, None] + np.arange(28)[None, :]
    out = pad[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
    return out.reshape(n, 784)


def train(model, x, y, cfg, updater=None, x_val=None, y_val=None, log=print, tag="train"):
    """Train ``model`` in place.

    Parameters
    ----------
    model : sw.nn.Model
    x : numpy.ndarray
        float32 ``(n, 784)`` images.
    y : numpy.ndarray
        int labels ``(n,)``.
    cfg : TrainConfig
    updater : object, optional
        Has ``step(lr)``; default :class:`SGD` with ``cfg.momentum``/``cfg.weight_decay``.
    x_val, y_val : numpy.ndarray, optional
        Evaluated (error printed) after every epoch.
    log : callable or None
        Progress printer (``None`` = silent).
    tag : str
        Prefix of the progress lines.

    Returns
    -------
    list of dict
        Per epoch ``{"epoch", "loss", "train_err", "val_err", "lr", "seconds"}``.
    """
    cfg.check()
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    if len(x) != len(y) or len(x) == 0:
        raise TrainError(f"need matching non-empty images/labels, got {len(x)}/{len(y)}")
    if updater is None:
        updater = SGD(model, cfg.momentum, cfg.weight_decay)
    rng = np.random.default_rng(cfg.seed)
    n = len(x)
    per_epoch = max(1, math.ceil(n / cfg.batch))
    total = max(1, int(round(cfg.epochs * per_epoch)))
    history = []
    it = 0
    epoch = 0
    t0 = time.time()
    while it < total:
        order = rng.permutation(n)
        loss_sum, wrong, seen = 0.0, 0, 0
        for start in range(0, n, cfg.batch):
            if it >= total:
                break
            sel = order[start:start + cfg.batch]
            xb = augment_shift(x[sel], cfg.shift, rng)
            logits = model.forward(xb, train=True)
            loss, g = softmax_cross_entropy(logits, y[sel])
            model.backward(g)
            lr = lr_at(cfg, it, total)
            updater.step(lr)
            loss_sum += loss * len(sel)
            wrong += int((logits.argmax(axis=1) != y[sel]).sum())
            seen += len(sel)
            it += 1
            if log and cfg.log_every and it % cfg.log_every == 0:
                log(f"[{tag}] it {it}/{total} loss {loss_sum / seen:.4f} lr {lr:.4g}")
        epoch += 1
        rec = {"epoch": epoch, "loss": loss_sum / max(1, seen),
               "train_err": wrong / max(1, seen), "lr": lr_at(cfg, it, total),
               "seconds": time.time() - t0, "val_err": None}
        if x_val is not None:
            rec["val_err"] = model.error(x_val, y_val)
        history.append(rec)
        if log:
            v = "" if rec["val_err"] is None else f" val_err {100 * rec['val_err']:.2f}%"
            log(f"[{tag}] epoch {epoch} loss {rec['loss']:.4f} train_err "
                f"{100 * rec['train_err']:.2f}%{v} lr {rec['lr']:.4g} ({rec['seconds']:.0f}s)")
    return history
