"""Conv layers in software (issue 17): golden model vs an independent NumPy reference and the
float path, the conv cycle bound, packer -> reference decoder round trips, and the refusals of
conv shapes the hardware cannot run."""
import dataclasses
import math

import numpy as np
import pytest

from contract.memmap import DESC_WORD, DESC_WORDS, fmap_address, fmap_bank_words
from sw.balance import balance_model
from sw.golden import (GoldenError, IntLayer, IntModel, calibrate, conv_patches, float_infer,
                       ideal_cycles, infer, random_conv_model)
from sw.modelfile import CompressedModel, LayerRecord, load_model, save_model
from sw.nn import Conv2D, Dense, Flatten, MaxPool2, Model, ReLU, Reshape
from sw.pack import PackedImages, PackError, PackLimits, pack, sized_limits
from sw.refdecoder import (RefDecodeError, infer_packed, infer_packed_events,
                           read_descriptors)
from sw.sparse import encode_columns

BIG = PackLimits(max_layers=8, max_rows_per_pe=4096, max_features=4096, symbol_depth=4096,
                 fmap_depth=4096)


def direct_reference(im, x, column_order="ckk", pool_first=False):
    """The integer arithmetic of docs/ARCHITECTURE.md section 1 written out loop by loop (no
    im2col, no matrix product), for one flat input ``x``: every layer's output (the pooled map
    flat, the logits last). ``column_order`` and ``pool_first`` let tests mutate it: a wrong
    reading of the column order must disagree with the golden."""
    a = np.asarray(x, dtype=np.int64)
    outs = []
    amax = (1 << im.act_bits) - 1
    for l in im.layers:
        s = l.shift
        rnd = (1 << (s - 1)) if s else 0
        if l.conv:
            c_in, h, w = l.in_shape
            kh, kw = l.kernel
            oc_n, oh, ow = l.conv_out_shape
            xm = a.reshape(c_in, h, w)
            wt = l.weights().reshape(oc_n, c_in, kh, kw)
            if column_order == "kkc":          # a wrong reading: channel innermost
                wt = l.weights().reshape(oc_n, kh, kw, c_in).transpose(0, 3, 1, 2)
            y = np.zeros((oc_n, oh, ow), dtype=np.int64)
            for oc in range(oc_n):
                for oy in range(oh):
                    for ox in range(ow):
                        acc = int(l.bias_acc()[oc])
                        for c in range(c_in):
                            for ky in range(kh):
                                for kx in range(kw):
                                    acc += int(wt[oc, c, ky, kx]) * int(xm[c, oy + ky, ox + kx])
                        y[oc, oy, ox] = acc if pool_first else min(max((acc + rnd) >> s, 0), amax)
            p = np.zeros((oc_n, oh // 2, ow // 2), dtype=np.int64)
            for oc in range(oc_n):
                for py in range(oh // 2):
                    for px in range(ow // 2):
                        p[oc, py, px] = max(y[oc, 2 * py + dy, 2 * px + dx]
                                            for dy in (0, 1) for dx in (0, 1))
            if pool_first:                      # pooled accumulators, then requantized
                p = np.clip((p + rnd) >> s, 0, amax)
            a = p.ravel()
        else:
            acc = l.weights() @ a + l.bias_acc()
            a = acc if l.last else np.clip((acc + rnd) >> s, 0, amax)
        outs.append(a)
    return outs


def same_layers(res, i, outs):
    """Every layer's output of input ``i`` in ``res`` (an InferResult) equals ``outs``."""
    return all(np.array_equal(r[i], o) for r, o in zip(res.activations, outs))


def inputs(n, size, seed, zero_frac=0.4):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, size)) * (rng.random((n, size)) >= zero_frac)


def adversarial_inputs(size):
    """All zero, all 255, a checkerboard of 0/255, one hot at the first and last value."""
    x = np.zeros((5, size), dtype=np.int64)
    x[1] = 255
    x[2, ::2] = 255
    x[3, 0] = 255
    x[4, -1] = 255
    return x


MODELS = {
    "small": dict(in_shape=(1, 10, 10), convs=((4, 3), (6, 3)), fc=(10,), density=0.5, seed=1),
    "lenet_like": dict(in_shape=(1, 16, 16), convs=((5, 5), (7, 3)), fc=(12, 10), density=0.3,
                       seed=2),
    "multichannel_rect": dict(in_shape=(3, 9, 12), convs=((5, 2, 3),), fc=(20, 7), density=0.4,
                              seed=3),
    "saturating": dict(in_shape=(2, 8, 8), convs=((6, 3),), fc=(9,), density=0.9, seed=4,
                       saturate=True),
    "dense_no_saturation": dict(in_shape=(1, 12, 12), convs=((3, 5),), fc=(16, 5), density=1.0,
                                seed=5, saturate=False),
    "one_index": dict(in_shape=(1, 6, 6), convs=((2, 3),), fc=(4,), density=0.6, seed=6,
                      n_indices=1),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_golden_conv_equals_direct_reference(name):
    im = random_conv_model(**MODELS[name])
    x = np.concatenate([adversarial_inputs(im.in_features), inputs(4, im.in_features, 7)])
    res = infer(im, x)
    for i in range(len(x)):
        assert same_layers(res, i, direct_reference(im, x[i])), i
    # the conv layers saturate somewhere (max-value outputs) and are zero somewhere
    unpooled = [u for u in res.unpooled if u is not None]
    assert all(u.shape[0] == len(x) for u in unpooled)
    if name == "saturating":
        assert (unpooled[0] == 255).any() and (unpooled[0] == 0).any()


def test_mutated_reference_disagrees():
    """The comparison can fail: a channel-innermost column order or pooling the accumulators
    before requantizing (equal only when the rounding never matters) disagree somewhere."""
    im = random_conv_model(in_shape=(3, 8, 8), convs=((4, 3),), fc=(6,), density=0.6, seed=9)
    x = inputs(4, im.in_features, 3, zero_frac=0.1)
    res = infer(im, x)
    assert all(same_layers(res, i, direct_reference(im, x[i])) for i in range(len(x)))
    assert not all(same_layers(res, i, direct_reference(im, x[i], column_order="kkc"))
                   for i in range(len(x)))
    # pooling first is the same function (requantization is monotonic): equal
    assert all(same_layers(res, i, direct_reference(im, x[i], pool_first=True))
               for i in range(len(x)))
    # a flipped bit of one pooled output is noticed
    outs = direct_reference(im, x[0])
    outs[0][5] ^= 1
    assert not same_layers(res, 0, outs)


def test_conv_patches_column_order():
    x = np.arange(2 * 4 * 5).reshape(1, 2, 4, 5)
    p = conv_patches(x, (2, 3))
    assert p.shape == (1, 3 * 3, 2 * 2 * 3)
    for oy in range(3):
        for ox in range(3):
            for c in range(2):
                for ky in range(2):
                    for kx in range(3):
                        assert p[0, oy * 3 + ox, (c * 2 + ky) * 3 + kx] == x[0, c, oy + ky, ox + kx]


def test_all_zero_and_max_value_layers():
    """An all-zero weight matrix gives the bias everywhere; all-max weights and inputs stay
    within the accumulator proof and saturate."""
    im = random_conv_model(in_shape=(1, 6, 6), convs=((3, 3),), fc=(4,), density=0.5, seed=11)
    conv = im.layers[0]
    zero = dataclasses.replace(conv, index=np.zeros_like(conv.index))
    im0 = dataclasses.replace(im, layers=[zero, im.layers[1]])
    res = infer(im0, adversarial_inputs(36))
    want = np.clip((conv.bias_acc() + ((1 << (conv.shift - 1)) if conv.shift else 0))
                   >> conv.shift, 0, 255)
    assert np.array_equal(res.unpooled[0], np.broadcast_to(want[None, :, None, None],
                                                           res.unpooled[0].shape))
    top = np.full_like(conv.index, 1)
    cb = np.zeros_like(conv.cb_q)
    cb[1] = (1 << 15) - 1                     # the largest codebook value
    big = dataclasses.replace(conv, index=top, cb_q=cb, bias_q=np.zeros_like(conv.bias_q),
                              shift=0)
    imb = IntModel([big, im.layers[1]])
    res = infer(imb, adversarial_inputs(36))
    assert (res.unpooled[0][1] == 255).all()          # all-255 input saturates every output
    assert (res.accumulators[0][1] == cb[1] * 255 * conv.in_features).all()
    assert same_layers(res, 1, direct_reference(imb, np.full(36, 255)))


def test_golden_follows_the_float_network():
    """A calibrated conv model against sw.nn's float path: the integer conv layer's outputs
    (times their scale) within one quantization step plus codebook rounding of the float
    conv + ReLU + pool, and the same class on nearly every input."""
    rng = np.random.default_rng(0)
    net = Model("cnn", [Reshape((1, 12, 12)), Conv2D("conv1", 1, 4, 3, rng), ReLU(), MaxPool2(),
                        Flatten(), Dense("ip1", 100, 10, rng)], (144,))
    conv, ip = net.weight_layers
    layers = []
    for l in (conv, ip):
        cb = np.concatenate([[0.0], np.linspace(-0.6, 0.6, 15)]).astype(np.float32)
        idx = np.abs(l.W.ravel()[:, None] - cb[None, 1:]).argmin(axis=1) + 1
        idx = (idx * (rng.random(idx.shape) < 0.7)).reshape(l.W.shape).astype(np.uint8)
        l.W = cb[idx]
        l.b = rng.normal(0, 0.05, l.b.shape).astype(np.float32)
        meta = {"stride": 1, "padding": 0, "pool": 2, "relu_before_pool": True,
                "in_shape": [1, 12, 12]} if l.kind == "conv" else {}
        layers.append(LayerRecord(l.name, l.kind, idx, cb, l.b.copy(), 4,
                                  relu=l.kind == "conv", meta=meta))
    cm = CompressedModel("cnn", [144], layers)
    x8 = rng.integers(0, 256, size=(400, 144)) * (rng.random((400, 144)) < 0.5)
    xf = (x8 / 256.0).astype(np.float32)
    cal = calibrate(cm, x8, percentiles=(100.0,))
    im = IntModel.from_model(cal)
    res = infer(im, x8)
    h = xf
    for layer in net.layers[:4]:
        h = layer.forward(h)
    s_out = cal.integer.layers[0]["s_out"]
    err = np.abs(res.activations[0] * s_out - h.reshape(len(h), -1))
    assert err.max() <= 1.5 * s_out
    assert np.allclose(float_infer(cm, xf)[0], h.reshape(len(h), -1), atol=1e-5)
    agree = (res.prediction == net.predict(xf)).mean()
    assert agree >= 0.97


def test_ideal_cycles_per_position():
    im = random_conv_model(**MODELS["lenet_like"])
    x = np.concatenate([adversarial_inputs(im.in_features), inputs(3, im.in_features, 1)])
    res = infer(im, x)
    for n_pes in (1, 2, 3, 4, 8):
        cs = ideal_cycles(im, x, n_pes, result=res)
        for i in range(len(x)):
            total, bound = 0, 0
            for li, l in enumerate(im.layers):
                a = res.inputs[li][i]
                nnz = l.index != 0
                enc = encode_columns(l.index, n_pes, im.gap_bits, im.idx_bits)
                per_pe = enc.entries_per_pe()
                if l.conv:
                    c, h, w = l.in_shape
                    kh, kw = l.kernel
                    _, oh, ow = l.conv_out_shape
                    xm = a.reshape(c, h, w)
                    ideal_l = bound_l = 0
                    for oy in range(oh):
                        for ox in range(ow):
                            patch = xm[:, oy:oy + kh, ox:ox + kw].ravel()
                            m_pos = int(nnz[:, patch != 0].sum())
                            ideal_l += -(-m_pos // n_pes)
                            bound_l += int(per_pe[patch != 0].sum(axis=0).max(initial=0))
                else:
                    m = int(nnz[:, a != 0].sum())
                    ideal_l = -(-m // n_pes)
                    bound_l = int(per_pe[a != 0].sum(axis=0).max(initial=0))
                assert cs.layer_ideal[i, li] == ideal_l
                assert cs.layer_pe_bound[i, li] == bound_l
                total += ideal_l
                bound += bound_l
            assert cs.ideal[i] == total and cs.pe_bound[i] == bound
    # an all-zero image costs only the bias positions: no work in the first conv layer
    assert cs.layer_ideal[0, 0] == 0


@pytest.mark.parametrize("n_pes", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("name", ["small", "lenet_like", "multichannel_rect"])
def test_pack_refdecoder_round_trip(name, n_pes):
    im = random_conv_model(**MODELS[name])
    x = np.concatenate([adversarial_inputs(im.in_features), inputs(3, im.in_features, n_pes)])
    gold = infer(im, x).logits
    pk = pack(im, n_pes, "sim", limits=BIG, balance="greedy")
    assert np.array_equal(infer_packed(pk, x), gold)
    for i in (1, 5):
        logits, work = infer_packed_events(pk, x[i])
        assert np.array_equal(logits, gold[i])
    # the descriptors carry the geometry of section 4
    descs = read_descriptors(pk)
    buf = 0
    for d, l in zip(descs, im.layers):
        assert d.in_features == l.in_features and d.out_features == l.out_features
        assert d.in_values == l.input_size
        if l.conv:
            assert d.conv and d.fmap_in and d.relu and d.pool == 2 and d.fmap_buf == buf
            assert d.in_map == tuple(l.in_shape)
            assert (d.kernel_h, d.kernel_w) == tuple(l.kernel)
            assert (d.out_height, d.out_width) == l.conv_out_shape[1:]
            buf = 1 - buf
        else:
            assert not d.conv and d.pool == 0 and (d.kernel_h, d.kernel_w) == (0, 0)
    fc_after = descs[sum(l.conv for l in im.layers)]
    assert fc_after.fmap_in and fc_after.fmap_buf == buf
    assert fc_after.in_map == im.layers[sum(l.conv for l in im.layers) - 1].out_shape
    assert all(not d.fmap_in for d in descs[sum(l.conv for l in im.layers) + 1:])


def test_corrupt_conv_descriptors_are_noticed():
    im = random_conv_model(**MODELS["small"])
    x = inputs(3, im.in_features, 1)
    gold = infer(im, x).logits
    for word, delta in (("kernel_w", 1), ("in_height", 2), ("out_height", 2), ("pool", 1),
                        ("in_values", 1), ("in_channels", 1)):
        pk = pack(im, 2, "sim", limits=BIG)
        pk.images[2 + 4][DESC_WORD[word]] += np.uint16(delta)
        with pytest.raises(RefDecodeError):
            infer_packed(pk, x)
    pk = pack(im, 2, "sim", limits=BIG)
    pk.images[2 + 4][DESC_WORDS + DESC_WORD["flags"]] ^= np.uint16(1 << 5)   # wrong buffer
    with pytest.raises(RefDecodeError, match="buffer"):
        read_descriptors(pk)
    # a wrong codebook word is not a format error but changes the logits
    pk = pack(im, 2, "sim", limits=BIG)
    pk.images[2][3] ^= np.uint16(1 << 12)
    assert not np.array_equal(infer_packed(pk, x), gold)


def test_balanced_conv_channels_keep_the_logits():
    im = random_conv_model(**MODELS["lenet_like"])
    x = inputs(4, im.in_features, 2)
    for method in ("greedy", "data"):
        b, perms, _ = balance_model(im, 3, method)
        assert not all(np.array_equal(p, np.arange(len(p))) for p in perms[:-1])
        assert np.array_equal(infer(b, x).logits, infer(im, x).logits)


def test_model_file_round_trip(tmp_path):
    im = random_conv_model(**MODELS["multichannel_rect"])
    save_model(tmp_path / "m.npz", im.to_model("cnn"))
    back = IntModel.from_model(load_model(tmp_path / "m.npz"))
    x = inputs(3, im.in_features, 4)
    assert np.array_equal(infer(back, x).logits, infer(im, x).logits)
    assert [l.in_shape for l in back.layers] == [l.in_shape for l in im.layers]


def test_feature_map_layout():
    """Bank c mod N, address ((c div N) * H + y) * W + x: every value of a map has its own
    (bank, address) and a bank holds ceil(C/N) * H * W entries."""
    for c_n, h, w, n in ((20, 12, 12, 1), (20, 12, 12, 8), (50, 4, 4, 3), (1, 28, 28, 4)):
        seen = {fmap_address(c, y, x, h, w, n) for c in range(c_n) for y in range(h)
                for x in range(w)}
        assert len(seen) == c_n * h * w
        assert max(a for _, a in seen) + 1 == fmap_bank_words(c_n, h, w, n)
        assert {b for b, _ in seen} == set(range(min(n, c_n)))


# --------------------------------------------------------------------------------------------
# Refusals


def _conv_file_model(**meta):
    im = random_conv_model(**MODELS["small"])
    cm = im.to_model("cnn")
    cm.layers[0].meta.update(meta)
    return cm


@pytest.mark.parametrize("meta, text", [
    ({"stride": 2}, "stride 2"), ({"padding": 1}, "padding 1"), ({"pool": 1}, "pool 1"),
])
def test_refuse_conv_the_hardware_cannot_run(meta, text):
    cm = _conv_file_model(**meta)
    with pytest.raises(GoldenError, match=f"layer 0 \\(conv1\\): {text} \\(hardware limit"):
        IntModel.from_model(cm)
    with pytest.raises(PackError, match=text):
        pack(cm, 1, "sim", limits=BIG)
    with pytest.raises(GoldenError, match=text):
        calibrate(cm, np.zeros((2, 100), dtype=np.int64))


def test_refuse_conv_without_relu():
    cm = _conv_file_model()
    cm.layers[0].relu = False
    with pytest.raises(PackError, match="no ReLU after the conv"):
        pack(cm, 1, "sim", limits=BIG)


def test_refuse_bad_geometry():
    im = random_conv_model(**MODELS["small"])
    conv, conv2, fc = im.layers
    with pytest.raises(GoldenError, match="not divisible by the 2x2 max-pool"):
        IntModel([dataclasses.replace(conv, in_shape=(1, 11, 10)), conv2, fc])
    with pytest.raises(GoldenError, match="columns, C\\*KH\\*KW"):
        IntModel([dataclasses.replace(conv, kernel=(3, 2)), conv2, fc])
    with pytest.raises(GoldenError, match="larger than"):
        IntModel([dataclasses.replace(conv, in_shape=(1, 2, 50), kernel=(3, 3)), conv2, fc])
    dense = IntLayer(np.ones((100, 100), dtype=np.uint8), conv.cb_q, np.zeros(100, np.int64),
                     4, 0, relu=True, last=False, name="fc0")
    with pytest.raises(GoldenError, match="first layer or follow a conv"):
        IntModel([dense, conv, conv2, fc])
    with pytest.raises(GoldenError, match="cannot be the last"):
        IntModel([dataclasses.replace(conv, relu=True, last=True)])


def test_refuse_feature_maps_the_configuration_cannot_hold():
    im = random_conv_model(**MODELS["lenet_like"])      # 1x16x16 -> 5x6x6 -> 7x2x2
    with pytest.raises(PackError, match="no feature-map buffers \\(fmap_depth 0\\).*>= 256"):
        pack(im, 1, "sim", limits=dataclasses.replace(BIG, fmap_depth=0))
    # 1 PE: the input map (256) and the 5x6x6 pooled map (180) share a 255-entry bank: no
    with pytest.raises(PackError, match="input map of layer 0, 1x16x16, needs 256 entries"):
        pack(im, 1, "sim", limits=dataclasses.replace(BIG, fmap_depth=128))
    assert sized_limits(im, 1, dataclasses.replace(BIG, fmap_depth=0)).fmap_depth == 256
    pack(im, 1, "sim", limits=dataclasses.replace(BIG, fmap_depth=256))
    wide = random_conv_model(in_shape=(1, 4, 300), convs=((2, 3),), fc=(3,), density=0.5)
    with pytest.raises(PackError, match="exceeds the hardware's 255x255"):
        pack(wide, 1, "sim", limits=dataclasses.replace(BIG, fmap_depth=4096))
    big_k = random_conv_model(in_shape=(1, 20, 20), convs=((2, 17),), fc=(3,), density=0.5)
    with pytest.raises(PackError, match="17x17 kernel exceeds the hardware's 15x15"):
        pack(big_k, 1, "sim", limits=BIG)


def test_accumulator_proof_covers_conv():
    im = random_conv_model(**MODELS["small"])
    conv = im.layers[0]
    cb = conv.cb_q.copy()
    cb[1:] = (1 << 15) - 1
    hot = dataclasses.replace(conv, cb_q=cb, index=np.ones_like(conv.index),
                              bias_q=np.full_like(conv.bias_q, 32767), bias_shift=31 - 15)
    bad = dataclasses.replace(im, layers=[hot] + im.layers[1:])
    with pytest.raises(PackError, match="layer 0 \\(conv1\\) row 0: accumulator could reach"):
        pack(bad, 1, "sim", limits=BIG)
    assert math.prod(conv.in_shape) == conv.input_size


# --------------------------------------------------------------------------------------------
# Host


class RefDecoderBoard:
    """A protocol-level board that keeps what the host uploads and answers INFER requests with
    the reference decoder run on those memories (STATUS ``in_features`` is layer 0's
    ``in_values`` word, the input size: 196 for a conv model on a 1 x 14 x 14 map)."""

    def __init__(self, status):
        self.status = status
        self.memory = {}

    def _images(self):
        n = self.status["n_pes"]
        images = {}
        for (mem, addr), word in self.memory.items():
            images.setdefault(mem, {})[addr] = word
        out = {}
        for mem in range(2 * n + 6):
            words = images.get(mem, {})
            img = np.zeros(max(words, default=-1) + 1, dtype=np.uint16)
            for addr, w in words.items():
                img[addr] = w
            out[mem] = img
        params = {k: self.status[k] for k in ("act_bits", "weight_bits", "acc_bits", "idx_bits",
                                              "gap_bits", "huff_max_len")}
        return PackedImages(n, out, {"n_pes": n, "params": params})

    def __call__(self, frame):
        import struct
        from contract.protocol import STATUS_FIELDS, Cmd, Resp, encode_frame
        from sw import incode
        n_in = self.memory.get((self.status["n_pes"] + 4, DESC_WORD["in_values"]), 0)
        cmd, payload = frame[1], frame[4:4 + (frame[2] | frame[3] << 8)]
        if cmd == Cmd.PING:
            fields = dict(self.status, in_features=n_in)
            fmt = "<" + "".join({1: "B", 2: "H", 4: "I"}[k] for _, k in STATUS_FIELDS)
            return encode_frame(Resp.STATUS, struct.pack(fmt, *(fields[k] for k, _ in
                                                               STATUS_FIELDS)))
        if cmd == Cmd.LOAD:
            mem, addr = struct.unpack("<BH", payload[:3])
            for i, w in enumerate(np.frombuffer(payload[3:], dtype="<u2")):
                self.memory[(mem, addr + i)] = int(w)
            return encode_frame(Resp.ACK, struct.pack("<H", (len(payload) - 3) // 2))
        seq = 0x80
        if cmd == Cmd.INFER_DENSE:
            x = np.frombuffer(payload, dtype=np.uint8)
        elif cmd == Cmd.INFER_CODED:
            seq, x = payload[0], np.asarray(incode.decode(payload[1:], n_in))
        else:
            x = np.zeros(n_in, dtype=np.int64)
            for i in range(0, len(payload), 3):
                idx, v = struct.unpack("<HB", payload[i:i + 3])
                x[idx] = v
        logits = infer_packed(self._images(), x.astype(np.int64))
        pred = int(np.argmax(logits))
        body = struct.pack(f"<BB{len(logits)}iBI", seq, len(logits), *logits.tolist(), pred, 9)
        return encode_frame(Resp.RESULT, body)


def test_host_runs_a_conv_model():
    """sw.host packs a conv model for the board (the feature-map banks hw.build gives it),
    uploads it and sends the input maps as it sends MNIST images: the board's logits (here the
    reference decoder on the uploaded memories) equal the golden model's."""
    from contract.protocol import PROTOCOL_VERSION
    from sw.host import Board, BoardStatus, ModelFitError, pack_for_board, run_benchmark
    from sw.transport import ScriptedTransport
    im = random_conv_model(**MODELS["small"])
    status = {"version": PROTOCOL_VERSION, "n_pes": 2, "act_bits": 8, "weight_bits": 16,
              "acc_bits": 32, "idx_bits": 4, "gap_bits": 4, "huff_max_len": 12,
              "max_layers": 4, "max_features": 1024, "pe_mem_log2": 12, "max_rows_per_pe": 256,
              "symbol_depth": 512, "fifo_depth": 8, "max_logits": 16, "clock_hz": 24_000_000,
              "divisor": 8, "in_features": 0, "flags": 1 << 5, "accel_error": 0,
              "rx_buffer": 512, "flash": 0, "board_id": 0, "fmap_depth": 128}
    fake = RefDecoderBoard(status)
    board = Board(ScriptedTransport(fake))
    packed = pack_for_board(BoardStatus(dict(status)), im, "sim")
    assert packed.manifest["limits"]["fmap_depth"] == 128       # STATUS fmap_depth
    # a gateware without feature-map buffers, or with too few words, refuses the model clearly
    for depth, match in ((0, "no feature-map buffers"), (64, "need 100 words per bank")):
        with pytest.raises(ModelFitError, match=match):
            pack_for_board(BoardStatus(dict(status, fmap_depth=depth)), im, "sim")
    board.upload(packed)
    assert board.status().in_features == im.in_features == 100
    x = np.concatenate([adversarial_inputs(100), inputs(4, 100, 8)])
    for stream in (False, True):
        res = run_benchmark(board, im, x, stream=stream)
        assert res.mismatches == 0 and res.n == len(x)


# --------------------------------------------------------------------------------------------
# The committed LeNet-5


def _lenet5():
    from pathlib import Path
    return IntModel.from_model(load_model(Path(__file__).resolve().parent.parent / "models"
                                          / "lenet5.npz"))


def _mnist_test_bytes(n=None):
    from sw.golden import images_to_uint8, load_mnist
    x, y = load_mnist()["test"]
    return images_to_uint8(x[:n]), y[:n]


def test_lenet5_packed_equals_golden():
    """The committed LeNet-5 packed for 3 PEs (balanced channels and rows): the reference
    decoder, batched and column by column, gives the golden logits."""
    im = _lenet5()
    assert [l.conv for l in im.layers] == [True, True, False, False]
    assert im.layers[1].in_shape == (20, 12, 12) and im.layers[1].out_shape == (50, 4, 4)
    x, _ = _mnist_test_bytes(20)
    gold = infer(im, x).logits
    pk = pack(im, 3, "sim", limits=sized_limits(im, 3, PackLimits(), balance="greedy"),
              balance="greedy")
    assert pk.manifest["fmap_words"] == 7 * 12 * 12      # conv1: 20 channels, 7 per bank
    assert np.array_equal(infer_packed(pk, x), gold)
    logits, work = infer_packed_events(pk, x[0])
    assert np.array_equal(logits, gold[0]) and work.sum() > 0


@pytest.mark.slow
@pytest.mark.parametrize("n_pes", [1, 4, 8])
def test_lenet5_packed_equals_golden_on_all_test_images(n_pes):
    im = _lenet5()
    x, y = _mnist_test_bytes()
    gold = infer(im, x, trace=False)
    pk = pack(im, n_pes, "sim", limits=sized_limits(im, n_pes, PackLimits()), balance="data")
    assert np.array_equal(infer_packed(pk, x), gold.logits)
    assert (gold.prediction != y).mean() <= 0.0080
