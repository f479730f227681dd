"""Iterative magnitude pruning with masked retraining (Han et al. 2015/2016).

Per layer the threshold is ``quality x std`` of the layer's surviving weights; weights with
``|w| <= threshold`` are removed (mask false, value 0) and the network is retrained with the
mask (pruned weights get no gradient). :func:`iterative_prune` walks a schedule of target
densities from 1 down to the final per-layer density in ``steps`` geometric steps; at each step
the quality factor is the one whose threshold keeps exactly the requested fraction (reported so
the run can be reproduced with fixed qualities via :func:`prune_layer`).
:func:`sensitivity` measures the error when a single layer is pruned to each of a list of ratios
(no retraining), the paper's per-layer sensitivity analysis.
"""
from dataclasses import dataclass, field, replace

import numpy as np

from sw.train import TrainConfig, train

__all__ = ["PruneError", "PruneStep", "prune_layer", "quality_for_density", "iterative_prune",
           "sensitivity", "density_schedule", "format_sensitivity", "drop_dead_neurons"]


class PruneError(ValueError):
    """Bad pruning targets or qualities."""


def _surviving(layer):
    w = layer.W if layer.mask is None else layer.W[layer.mask]
    return np.abs(w.astype(np.float64)).ravel()


def prune_layer(layer, quality):
    """Prune one weight layer in place with threshold ``quality * std(surviving weights)``.

    Parameters
    ----------
    layer : sw.nn.Dense or sw.nn.Conv2D
    quality : float
        Non-negative quality parameter.

    Returns
    -------
    float
        The threshold used.
    """
    if quality < 0 or not np.isfinite(quality):
        raise PruneError(f"{layer.name}: quality must be a finite non-negative number")
    w = layer.W if layer.mask is None else layer.W[layer.mask]
    thr = float(quality) * float(np.std(w.astype(np.float64))) if w.size else 0.0
    old = np.ones(layer.W.shape, dtype=bool) if layer.mask is None else layer.mask
    layer.set_mask(old & (np.abs(layer.W) > thr))
    return thr


def quality_for_density(layer, density):
    """Quality ``q`` so that ``q * std`` keeps ``density`` of ALL of the layer's weights.

    Returns 0 when the layer is already at or below ``density``.
    """
    if not 0 < density <= 1:
        raise PruneError(f"{layer.name}: density must be in (0, 1], not {density}")
    a = _surviving(layer)
    keep = int(round(density * layer.W.size))
    if keep >= a.size or a.size == 0:
        return 0.0
    std = float(np.std(layer.W if layer.mask is None else layer.W[layer.mask]))
    s = np.sort(a)
    thr = float(s[a.size - keep - 1]) if keep > 0 else float(s[-1])
    return thr / std if std > 0 else 0.0


def density_schedule(targets, steps):
    """Per-step densities, geometric from 1 to each layer's target over ``steps`` steps.

    Parameters
    ----------
    targets : dict[str, float]
        Final density per layer name.
    steps : int
        Number of prune + retrain iterations (>= 1).

    Returns
    -------
    list of dict[str, float]
    """
    if steps < 1:
        raise PruneError(f"steps must be >= 1, not {steps}")
    for k, v in targets.items():
        if not 0 < v <= 1:
            raise PruneError(f"target density of {k} must be in (0, 1], not {v}")
    return [{k: float(v ** ((i + 1) / steps)) for k, v in targets.items()} for i in range(steps)]


@dataclass
class PruneStep:
    """Record of one prune + retrain iteration."""
    step: int
    quality: dict = field(default_factory=dict)
    threshold: dict = field(default_factory=dict)
    density: dict = field(default_factory=dict)
    error_pruned: float = None
    error_retrained: float = None


def iterative_prune(model, x, y, targets, steps, cfg, x_eval=None, y_eval=None, log=print,
                    train_log="same"):
    """Iterative pruning with masked retraining after every step.

    Parameters
    ----------
    model : sw.nn.Model
        Trained dense (or partly pruned) model; modified in place.
    x, y : numpy.ndarray
        Training images / labels.
    targets : dict[str, float]
        Final density per weight-layer name (layers not listed are left dense).
    steps : int
        Number of iterations.
    cfg : sw.train.TrainConfig
        Retraining configuration used after each pruning step (``epochs = 0``: no retraining).
    x_eval, y_eval : numpy.ndarray, optional
        Images on which the error after pruning and after retraining is measured and printed.
    log : callable or None
        Printer of the per-step summaries.
    train_log : callable or None
        Printer of the retraining epochs (default: ``log``).

    Returns
    -------
    list of PruneStep
    """
    names = [l.name for l in model.weight_layers]
    unknown = sorted(set(targets) - set(names))
    if unknown:
        raise PruneError(f"unknown layers {unknown}; the model has {names}")
    history = []
    for i, dens in enumerate(density_schedule(targets, steps)):
        rec = PruneStep(step=i + 1)
        for name, d in dens.items():
            layer = model.layer(name)
            q = quality_for_density(layer, d)
            rec.quality[name] = q
            rec.threshold[name] = prune_layer(layer, q)
            rec.density[name] = layer.density()
        if x_eval is not None:
            rec.error_pruned = model.error(x_eval, y_eval)
        if cfg.epochs > 0:        # 0: one-shot pruning, no retraining
            step_cfg = TrainConfig(**{**cfg.__dict__, "seed": cfg.seed + 1000 * (i + 1)})
            train(model, x, y, step_cfg, log=log if train_log == "same" else train_log,
                  tag=f"prune {i + 1}/{steps}")
        if x_eval is not None:
            rec.error_retrained = model.error(x_eval, y_eval)
        if log:
            ds = ", ".join(f"{k} {100 * v:.2f}% (q={rec.quality[k]:.3f})"
                           for k, v in rec.density.items())
            errs = "" if x_eval is None else (f"; error pruned {100 * rec.error_pruned:.2f}% -> "
                                              f"retrained {100 * rec.error_retrained:.2f}%")
            log(f"[prune {i + 1}/{steps}] density {ds}{errs}")
        history.append(rec)
    return history


def sensitivity(model, x, y, ratios=(0.5, 0.7, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99)):
    """Error when each layer alone is pruned to each ratio (no retraining).

    Parameters
    ----------
    model : sw.nn.Model
        Not modified (parameters are restored).
    x, y : numpy.ndarray
        Evaluation images / labels.
    ratios : sequence of float
        Fractions of the layer's weights removed.

    Returns
    -------
    dict
        ``{"ratios": [...], "baseline": err, "layers": {name: [err per ratio]}}``.
    """
    saved = model.get_params()
    out = {"ratios": [float(r) for r in ratios], "baseline": model.error(x, y), "layers": {}}
    try:
        for layer in model.weight_layers:
            errs = []
            for r in ratios:
                if not 0 <= r < 1:
                    raise PruneError(f"pruning ratio must be in [0, 1), not {r}")
                model.set_params(saved)
                layer = model.layer(layer.name)
                prune_layer(layer, quality_for_density(layer, 1.0 - r))
                errs.append(model.error(x, y))
            out["layers"][layer.name] = errs
    finally:
        model.set_params(saved)
    return out


def format_sensitivity(sens):
    """Markdown table of a :func:`sensitivity` result (error % per layer and ratio)."""
    head = "| layer | " + " | ".join(f"{100 * r:.0f}% pruned" for r in sens["ratios"]) + " |"
    sep = "|---|" + "---|" * len(sens["ratios"])
    rows = [f"| {n} | " + " | ".join(f"{100 * e:.2f}%" for e in errs) + " |"
            for n, errs in sens["layers"].items()]
    return "\n".join([f"Baseline error {100 * sens['baseline']:.2f}%.", "", head, sep] + rows)


def drop_dead_neurons(model):
    """Remove the dead hidden neurons of a compressed model: those no weight reads.

    Pruning can leave a hidden neuron whose column in the next fully connected layer is
    empty: nothing uses its output, yet its bias keeps it non-zero after the ReLU, so the
    accelerator broadcasts it to every PE (and its PE computes it). Its row (weights and
    bias, float and integer) is cleared: its output is then 0 and is never broadcast. The
    logits do not change, bit for bit (the dropped output was only ever multiplied by pruned
    weights, exact zeros in both the float and the integer model). Layers are visited from the
    classifier backwards, so a neuron that only fed dropped neurons goes too. Only an fc layer
    followed by an fc layer is looked at (a conv layer's map is pooled on its way out).

    Parameters
    ----------
    model : sw.modelfile.CompressedModel

    Returns
    -------
    (CompressedModel, dict)
        A copy with the dead rows cleared (the input is not modified) and, per layer name, the
        number of neurons dropped (layers with none are left out). When any were, the copy's
        metrics record them (``dead_neurons``, added to earlier counts) and every layer's kept
        fraction (``density``).
    """
    layers = [replace(l, index=l.index.copy(), bias=l.bias.copy(),
                      bias_q=None if l.bias_q is None else l.bias_q.copy())
              for l in model.layers]
    dropped = {}
    for layer, nxt in reversed(list(zip(layers, layers[1:]))):
        if layer.kind != "fc" or nxt.kind != "fc" or nxt.index.shape[1] != layer.index.shape[0]:
            continue
        dead = ~(nxt.index != 0).any(axis=0)
        alive_before = (layer.index[dead] != 0).any(axis=1) | (layer.bias[dead] != 0)
        if layer.bias_q is not None:
            alive_before |= layer.bias_q[dead] != 0
        n = int(alive_before.sum())
        if n == 0:
            continue
        layer.index[dead] = 0
        layer.bias[dead] = 0
        if layer.bias_q is not None:
            layer.bias_q[dead] = 0
        dropped[layer.name] = n
    metrics = dict(model.metrics)
    if dropped:
        counts = dict(metrics.get("dead_neurons", {}))
        for name, n in dropped.items():
            counts[name] = counts.get(name, 0) + n
        metrics["dead_neurons"] = counts
        metrics["density"] = {l.name: float((l.index != 0).mean()) for l in layers}
    return replace(model, layers=layers, metrics=metrics), dropped
