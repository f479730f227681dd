"""Simulation cases of the whole accelerator: configuration, load words, inputs and golden logits.

Used by the flow tools (``hw.bench``, ``hw.profile``) and the accelerator testbench
(``tb/accelerator``). A case is a JSON-serialisable dict (written by :func:`save_case`, read by
the cocotb test)::

    {"config": {AcceleratorConfig fields}, "loads": [[mem, addr, data]...],
     "inputs": [[x0, x1, ...]...], "logits": [[...]...], "argmax": [...],
     "ideal": [...], "labels": [...] or null}

:func:`random_case` draws a random sparse integer model (``sw.golden.random_int_model``);
:func:`model_case` uses a calibrated model file and MNIST test images.
"""
import dataclasses
import json

import numpy as np

from contract.config import AcceleratorConfig
from hw.build import sized_config
from sw.golden import IntModel, ideal_cycles, images_to_uint8, infer, load_mnist, random_int_model
from sw.modelfile import load_model
from sw.pack import PackLimits, pack

__all__ = ["sim_config", "bench_config", "random_case", "model_case", "case_from_int_model",
           "save_case", "load_case", "config_from_case"]


def sim_config(n_pes, **kw):
    """``AcceleratorConfig`` for fast random-model simulations (4096-word PE memories)."""
    kw.setdefault("pe_mem_depth", 4096)
    kw.setdefault("symbol_depth", 512)
    return AcceleratorConfig(n_pes=n_pes, **kw)


#: The broadcast FIFO depth of a conv model's configuration unless one is given: a conv pass
#: is short (LeNet-5's conv1 about 20 cycles on 8 PEs), and with 8 entries a PE busy with one
#: pass's heavy columns soon stalls the broadcast to the others (LeNet-5, MNIST test images
#: 0-1, N = 8: 8 / 16 / 32 entries 23,964.5 / 23,247 / 23,026.5 cycles; N = 4: 42,838.5 /
#: 42,419 at 8 / 16), docs/HARDWARE.md.
CONV_FIFO_DEPTH = 16


def bench_config(int_model, n_pes, **features):
    """``AcceleratorConfig(n_pes)`` built for ``int_model`` as it is packed (already balanced
    if it is to be): the model's widths (``idx_bits``, ``gap_bits``... ``sw.pack.WIDTH_KEYS``),
    accumulator rows and symbol table grown (powers of two) when the model needs more than the
    defaults (e.g. LeNet-300-100 on one PE; 5-bit gaps need a 1024-entry symbol table); a
    model with conv layers gets :data:`CONV_FIFO_DEPTH`-deep broadcast FIFOs unless
    ``fifo_depth`` is given.

    ``features`` are ``AcceleratorConfig`` fields (a board's ``Profile.config_fields()`` and
    the like); ``None`` leaves a field at its default, as does 0 for ``fifo_depth`` and
    ``input_lanes``."""
    unknown = set(features) - {f.name for f in dataclasses.fields(AcceleratorConfig)}
    if unknown:
        raise TypeError(f"bench_config: no AcceleratorConfig field {sorted(unknown)}")
    given = {k: v for k, v in features.items() if v is not None}
    for name in ("fifo_depth", "input_lanes"):
        if not given.get(name, 1):
            del given[name]
    if "fifo_depth" not in given and any(layer.conv for layer in int_model.layers):
        given["fifo_depth"] = CONV_FIFO_DEPTH
    base = AcceleratorConfig(n_pes=n_pes, **given)
    return sized_config(int_model, base, balance=False)


def case_from_int_model(int_model, x, config, labels=None):
    """Pack ``int_model`` for ``config`` and compute the golden logits of inputs ``x``.

    Parameters
    ----------
    int_model : sw.golden.IntModel
    x : numpy.ndarray
        int ``(n, in_features)`` inputs.
    config : AcceleratorConfig
    labels : array_like, optional
        True classes (reported by the benchmark).
    """
    packed = pack(int_model, config.n_pes, board="sim", limits=PackLimits.from_config(config))
    x = np.asarray(x, dtype=np.int64)
    res = infer(int_model, x)
    cs = ideal_cycles(int_model, x, config.n_pes, result=res)
    return {
        "config": dataclasses.asdict(config),
        "loads": [[int(a), int(b), int(c)] for a, b, c in packed.load_words(True)],
        "inputs": x.tolist(),
        "logits": res.logits.tolist(),
        "argmax": res.prediction.tolist(),
        "ideal": cs.ideal.tolist(),
        "pe_bound": cs.pe_bound.tolist(),
        "labels": None if labels is None else [int(v) for v in labels],
    }


def random_case(n_pes, sizes, density, seed, n_inputs=4, *, act_density=0.4, config=None,
                **model_kw):
    """Random sparse model and inputs: input 0 is all zero, input 1 all 255 (saturation).

    ``model_kw`` goes to ``random_int_model`` (``saturate``, ``long_gaps``, ``n_indices``...).
    """
    cfg = config or sim_config(n_pes)
    im = random_int_model(sizes, density, seed, act_bits=cfg.act_bits, idx_bits=cfg.idx_bits,
                          gap_bits=cfg.gap_bits, huff_max_len=cfg.huff_max_len, **model_kw)
    rng = np.random.default_rng(seed + 500)
    amax = (1 << cfg.act_bits) - 1
    x = rng.integers(1, amax + 1, size=(n_inputs, sizes[0]))
    x = x * (rng.random((n_inputs, sizes[0])) < act_density)
    x[0] = 0
    if n_inputs > 1:
        x[1] = amax
    return case_from_int_model(im, x, cfg)


def model_case(path, n_pes, n_images, offset=0, config=None):
    """A calibrated model file (e.g. models/lenet300.npz) on MNIST test images
    ``offset .. offset + n_images - 1``; ``config`` defaults to :func:`bench_config` (the
    model's widths, tables grown to fit)."""
    im = IntModel.from_model(load_model(path))
    xs, ys = load_mnist()["test"]
    x = images_to_uint8(xs[offset:offset + n_images])
    if config is None:                # gateware built for the model (widths, tables)
        config = bench_config(im, n_pes)
    return case_from_int_model(im, x, config, labels=ys[offset:offset + n_images])


def config_from_case(case):
    """The ``AcceleratorConfig`` a case was made for."""
    return AcceleratorConfig(**case["config"])


def save_case(case, path):
    """Write a case as JSON."""
    with open(path, "w") as f:
        json.dump(case, f)


def load_case(path):
    """Read a case written by :func:`save_case`."""
    with open(path) as f:
        return json.load(f)
