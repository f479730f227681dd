"""Random conv networks for the gateware tests, with their own integer reference.

docs/ARCHITECTURE.md section 1's conv arithmetic in NumPy (conv + requantize + ReLU + 2 x 2
max-pool, the fc layers after it on the flattened map), independent of the gateware; the
layers are packed by ``sw.pack`` as their ``(OC, C * KH * KW)`` matrices and the descriptors
get the conv words of section 4. Used until ``sw.golden`` runs conv models itself, and then
as a second opinion.
"""
import dataclasses
import math

import numpy as np

from contract.config import AcceleratorConfig
from contract.memmap import (DESC_WORD, DESC_WORDS, FLAG_CONV, FLAG_FMAP_BUF, FLAG_FMAP_IN,
                             shared_mem)
from sw.golden import IntLayer, IntModel
from sw.pack import PackLimits, pack

__all__ = ["random_conv_net", "conv_reference", "conv_case", "conv_config"]


@dataclasses.dataclass
class ConvNet:
    """``layers``: :class:`sw.golden.IntLayer` matrices; ``geometry[i]``: ``None`` (fc) or
    ``(C, H, W, KH, KW)`` of conv layer ``i``'s input; ``input_shape`` ``(C, H, W)``."""
    layers: list
    geometry: list
    input_shape: tuple
    act_bits: int = 8

    def fmap_in(self, i):
        """Layer ``i`` reads a feature map: a conv, or the fc right after one."""
        return self.geometry[i] is not None or (i > 0 and self.geometry[i - 1] is not None)

    def map_shape(self, i):
        """``(C, H, W)`` of layer ``i``'s input map (``fmap_in`` layers)."""
        if self.geometry[i] is not None:
            return self.geometry[i][:3]
        C, H, W, KH, KW = self.geometry[i - 1]
        oc = self.layers[i - 1].out_features
        return oc, (H - KH + 1) // 2, (W - KW + 1) // 2


def _layer(rng, n_out, n_in, density, name, last, act_bits=8):
    idx = rng.integers(1, 16, size=(n_out, n_in)) * (rng.random((n_out, n_in)) < density)
    if n_in >= 4:
        idx[:, rng.choice(n_in, size=max(1, n_in // 8), replace=False)] = 0
    cb = np.concatenate([[0], rng.integers(-3000, 3000, size=15)]).astype(np.int64)
    bias_shift = int(rng.integers(0, 12))
    bias = rng.integers(-2000, 2000, size=n_out).astype(np.int64) >> max(0, bias_shift - 7)
    worst = int(np.abs(cb[idx]).sum(axis=1).max(initial=0)) * ((1 << act_bits) - 1)
    assert worst + (2000 << bias_shift) < 1 << 31
    return IntLayer(idx.astype(np.uint8), cb, bias, 0, bias_shift, relu=not last, last=last,
                    name=name)


def random_conv_net(spec, seed, density=0.4, input_shape=(1, 12, 12)):
    """A random conv net: ``spec`` is a list of ``("conv", OC, K)`` and ``("fc", out)`` (the
    last one is the classifier); shifts set so that some outputs saturate."""
    rng = np.random.default_rng(seed)
    C, H, W = input_shape
    layers, geometry = [], []
    for k, item in enumerate(spec):
        last = k == len(spec) - 1
        if item[0] == "conv":
            _, oc, kk = item
            layers.append(_layer(rng, oc, C * kk * kk, density, f"conv{k + 1}", last))
            geometry.append((C, H, W, kk, kk))
            C, H, W = oc, (H - kk + 1) // 2, (W - kk + 1) // 2
        else:
            n_in = C * H * W
            layers.append(_layer(rng, item[1], n_in, density, f"fc{k + 1}", last))
            geometry.append(None)
            C, H, W = item[1], 1, 1
    net = ConvNet(layers, geometry, tuple(input_shape))
    # shifts: the 70th percentile of the positive accumulators on random images maps to 255
    x = rng.integers(0, 256, size=(8, int(np.prod(input_shape)))) \
        * (rng.random((8, int(np.prod(input_shape)))) < 0.5)
    for i, l in enumerate(layers):
        if l.last:
            break
        acc = conv_reference(net, x, upto=i)
        pos = acc[acc > 0]
        target = np.percentile(pos, 70) if pos.size else 1.0
        l.shift = int(np.clip(math.ceil(math.log2(max(target, 1.0) / 255)), 0, 31))
    return net


def _patches(x, kh, kw):
    """``(n, OH * OW, C * KH * KW)`` patches of maps ``x`` ``(n, C, H, W)``, column
    ``(c * KH + ky) * KW + kx``, positions in raster order."""
    n, C, H, W = x.shape
    OH, OW = H - kh + 1, W - kw + 1
    cols = np.empty((n, OH, OW, C, kh, kw), dtype=np.int64)
    for ky in range(kh):
        for kx in range(kw):
            cols[:, :, :, :, ky, kx] = x[:, :, ky:ky + OH, kx:kx + OW].transpose(0, 2, 3, 1)
    return cols.reshape(n, OH * OW, C * kh * kw)


def conv_reference(net, x, upto=None, ideal_pes=None):
    """Integer inference of ``x`` (``(n, C*H*W)`` bytes): the logits; with ``upto`` the raw
    accumulators of layer ``upto``; with ``ideal_pes`` also the ideal cycle bound per input
    (per conv position and fc layer ``ceil(M / N)``, M the non-zero weights in the columns of
    the non-zero inputs)."""
    n = x.shape[0]
    a = np.asarray(x, dtype=np.int64).reshape(n, *net.input_shape)
    ideal = np.zeros(n, dtype=np.int64)
    N = ideal_pes or 1
    for i, (l, g) in enumerate(zip(net.layers, net.geometry)):
        wts = l.weights()
        nz = (l.index != 0).sum(axis=0)                     # non-zero weights per column
        if g is not None:
            C, H, W, kh, kw = g
            pt = _patches(a, kh, kw)                        # (n, P, cols)
            acc = pt @ wts.T + l.bias_acc()                 # (n, P, OC)
            ideal += (-(-((pt != 0) @ nz) // N)).sum(axis=1)
        else:
            flat = a.reshape(n, -1)
            acc = flat @ wts.T + l.bias_acc()
            ideal += -(-((flat != 0) @ nz) // N)
        if upto == i:
            return acc
        if l.last:
            return (acc, ideal) if ideal_pes else acc
        rnd = (1 << (l.shift - 1)) if l.shift else 0
        y = np.clip((acc + rnd) >> l.shift, 0, (1 << net.act_bits) - 1)
        if g is not None:
            OH, OW = H - kh + 1, W - kw + 1
            y = y.reshape(n, OH, OW, -1)[:, :OH // 2 * 2, :OW // 2 * 2]
            y = y.reshape(n, OH // 2, 2, OW // 2, 2, -1).max(axis=(2, 4))
            a = y.transpose(0, 3, 1, 2)                     # (n, OC, PH, PW)
        else:
            a = y


def _as_int_model(net):
    """The layer matrices as an ``IntModel`` for ``sw.pack`` (they do not chain as fc layers:
    the model's own check is skipped)."""
    im = IntModel.__new__(IntModel)
    im.layers = net.layers
    for key, value in dataclasses.asdict(IntModel([_layer(np.random.default_rng(0), 2, 2,
                                                                0.5, "x", True)])).items():
        if key != "layers":
            setattr(im, key, value)
    return im


def conv_case(net, x, config):
    """A ``tb.accelerator`` case (config, load words, inputs, golden logits, ideal cycles) of
    ``net`` on the inputs ``x`` packed for ``config``."""
    N = config.n_pes
    packed = pack(_as_int_model(net), N, board="sim", limits=PackLimits.from_config(config))
    loads = [[int(a), int(b), int(c)] for a, b, c in packed.load_words(True)]
    layers_mem = shared_mem(N, "layers")
    desc = {}
    half = 0
    for i, (l, g) in enumerate(zip(net.layers, net.geometry)):
        if not net.fmap_in(i):
            continue
        C, H, W = net.map_shape(i)
        flags = FLAG_FMAP_IN | (FLAG_FMAP_BUF if half else 0)
        words = {"in_channels": C, "in_height": H, "in_width": W, "in_values": C * H * W}
        if g is not None:
            kh, kw = g[3:]
            flags |= FLAG_CONV
            words.update(kernel_h=kh, kernel_w=kw, out_height=H - kh + 1, out_width=W - kw + 1,
                         pool=2)
            half ^= 1
        desc[(i, "flags")] = flags
        for name, v in words.items():
            desc[(i, name)] = v
    out = []
    seen = set()
    for mem, addr, data in loads:
        if mem == layers_mem:
            i, k = divmod(addr, DESC_WORDS)
            name = next(f for f, w in DESC_WORD.items() if w == k)
            if (i, name) in desc:
                data = data | desc[(i, name)] if name == "flags" else desc[(i, name)]
                seen.add((i, name))
        out.append([mem, addr, data])
    for (i, name), v in desc.items():            # words the packer wrote no load for (zero)
        if (i, name) not in seen:
            out.append([layers_mem, DESC_WORDS * i + DESC_WORD[name], v])
    x = np.asarray(x, dtype=np.int64)
    logits, ideal = conv_reference(net, x, ideal_pes=N)
    return {
        "config": dataclasses.asdict(config),
        "loads": out,
        "inputs": x.tolist(),
        "logits": logits.tolist(),
        "argmax": np.argmax(logits, axis=1).tolist(),
        "ideal": ideal.tolist(),
        "labels": None,
    }


def conv_config(n_pes, **kw):
    """A small simulation configuration with conv support."""
    kw.setdefault("pe_mem_depth", 4096)
    kw.setdefault("fmap_depth", 512)
    return AcceleratorConfig(n_pes=n_pes, **kw)
