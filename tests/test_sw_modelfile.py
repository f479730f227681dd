"""dcmodel v1 file format: round trip and clear errors on bad files."""
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from sw.modelfile import (CompressedModel, IntegerParams, LayerRecord, ModelFormatError,
                          load_model, save_model)

MODELS = Path(__file__).resolve().parent.parent / "models"


def make_model(integer=True, seed=0):
    rng = np.random.default_rng(seed)
    layers = []
    sizes = [(20, 30), (10, 20)]
    for i, (o, n) in enumerate(sizes):
        cb = np.concatenate([[0.0], rng.normal(size=15)]).astype(np.float32)
        l = LayerRecord(name=f"ip{i + 1}", kind="fc",
                        index=rng.integers(0, 16, size=(o, n)).astype(np.uint8),
                        codebook=cb, bias=rng.normal(size=o).astype(np.float32), idx_bits=4,
                        relu=i == 0, meta={"density": 0.5})
        if integer:
            l.cb_q = np.concatenate([[0], rng.integers(-30000, 30000, 15)]).astype(np.int32)
            l.bias_q = rng.integers(-32768, 32768, o).astype(np.int32)
        layers.append(l)
    ip = IntegerParams(layers=[{"shift": 10, "bias_shift": 3, "s_in": 0.1, "s_out": 0.2}] * 2) \
        if integer else None
    return CompressedModel(arch="lenet300", input_shape=[30], layers=layers,
                           metrics={"test_error": 0.0158}, integer=ip)


def assert_same(a, b):
    assert a.arch == b.arch and a.input_shape == b.input_shape and a.metrics == b.metrics
    for x, y in zip(a.layers, b.layers, strict=True):
        assert (x.name, x.kind, x.idx_bits, x.relu, x.meta) == (y.name, y.kind, y.idx_bits,
                                                                 y.relu, y.meta)
        for k in ("index", "codebook", "bias", "cb_q", "bias_q"):
            u, v = getattr(x, k), getattr(y, k)
            assert (u is None and v is None) or (u.dtype == v.dtype and np.array_equal(u, v))
    assert (a.integer is None) == (b.integer is None)
    if a.integer is not None:
        assert a.integer.to_json() == b.integer.to_json()


@pytest.mark.parametrize("integer", [False, True])
def test_roundtrip(tmp_path, integer):
    m = make_model(integer)
    p = tmp_path / "m.npz"
    save_model(p, m)
    assert_same(m, load_model(p))


def test_not_zip(tmp_path):
    p = tmp_path / "m.npz"
    p.write_text("hello, not a model")
    with pytest.raises(ModelFormatError, match="not a dcmodel file"):
        load_model(p)
    with pytest.raises(ModelFormatError, match="cannot read"):
        load_model(tmp_path / "missing.npz")


@pytest.mark.parametrize("frac", [0.0, 0.1, 0.5, 0.9, 0.99])
def test_truncated(tmp_path, frac):
    p = tmp_path / "m.npz"
    save_model(p, make_model())
    data = p.read_bytes()
    p.write_bytes(data[:int(len(data) * frac)])
    with pytest.raises(ModelFormatError):
        load_model(p)


def test_flipped_bytes(tmp_path):
    p = tmp_path / "m.npz"
    save_model(p, make_model())
    data = p.read_bytes()
    rng = np.random.default_rng(0)
    failures = 0
    for pos in rng.choice(len(data), size=40, replace=False):
        bad = bytearray(data)
        bad[pos] ^= 0x5A
        p.write_bytes(bytes(bad))
        try:
            m = load_model(p)
        except ModelFormatError:
            failures += 1
        else:
            # A flip in unused zip metadata may be harmless; the content must then be intact.
            assert_same(make_model(), m)
    assert failures > 20


def test_pickled_member_is_refused(tmp_path):
    # An object array (a pickle) is never unpickled: the file is reported as corrupt.
    p = tmp_path / "m.npz"
    save_model(p, make_model())
    rewrite(p, lambda a: a.__setitem__("ip1.bias", np.array([{"x": 1}], dtype=object)))
    with pytest.raises(ModelFormatError, match="corrupt or truncated: ValueError: Object arrays"):
        load_model(p)


def test_damaged_member_data(tmp_path):
    # A flipped byte inside a compressed member: zlib or the zip CRC catches it.
    p = tmp_path / "m.npz"
    save_model(p, make_model())
    data = bytearray(p.read_bytes())
    with zipfile.ZipFile(p) as z:
        info = z.getinfo("ip1.index.npy")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    data[start + info.compress_size // 2] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(ModelFormatError, match=r"corrupt or truncated: (BadZipFile|error)"):
        load_model(p)


def rewrite(path, edit):
    """Re-write the npz after ``edit(arrays_dict)`` (keeps the old header unless edited)."""
    with np.load(path) as z:
        arrs = {k: z[k] for k in z.files}
    edit(arrs)
    buf = io.BytesIO()
    np.savez(buf, **arrs)
    path.write_bytes(buf.getvalue())


def edit_header(arrs, fn):
    h = json.loads(arrs["header.json"].tobytes())
    fn(h)
    arrs["header.json"] = np.frombuffer(json.dumps(h).encode(), dtype=np.uint8)


@pytest.mark.parametrize("edit,match", [
    (lambda a: a.__setitem__("ip1.bias", a["ip1.bias"] + 1), "SHA-256 mismatch"),
    (lambda a: a.pop("ip2.codebook"), "missing"),
    (lambda a: a.pop("header.json"), "no header.json"),
    (lambda a: a.__setitem__("extra", np.zeros(3)), "no digest"),
    (lambda a: edit_header(a, lambda h: h.__setitem__("version", 2)), "version 2"),
    (lambda a: edit_header(a, lambda h: h.__setitem__("format", "other")), "format"),
    (lambda a: edit_header(a, lambda h: h["layers"][0].__setitem__("shape", [30, 20])),
     "shape"),
    (lambda a: a.__setitem__("header.json", np.frombuffer(b"{not json", dtype=np.uint8)),
     "JSON"),
])
def test_bad_content(tmp_path, edit, match):
    p = tmp_path / "m.npz"
    save_model(p, make_model())
    rewrite(p, edit)
    with pytest.raises(ModelFormatError, match=match):
        load_model(p)


def test_wrong_shape_with_valid_digest(tmp_path):
    # A consistent file (digests match) whose arrays have the wrong shape/dtype/range.
    from sw.modelfile import array_digest

    def fix(arrs, name, value):
        arrs[name] = value
        edit_header(arrs, lambda h: h["sha256"].__setitem__(name, array_digest(value)))

    cases = [("ip1.codebook", np.zeros(8, dtype=np.float32), "ip1.codebook: must be float32"),
             ("ip1.bias", np.zeros(20, dtype=np.float64), "ip1.bias: must be float32"),
             ("ip1.index", np.full((20, 30), 16, dtype=np.uint8), "out of range"),
             ("ip1.cb_q", np.ones(16, dtype=np.int32), r"cb_q\[0\]"),
             ("ip2.bias_q", np.full(10, 40000, dtype=np.int32), "16-bit")]
    for name, value, match in cases:
        p = tmp_path / "m.npz"
        save_model(p, make_model())
        rewrite(p, lambda a: fix(a, name, value))
        with pytest.raises(ModelFormatError, match=match):
            load_model(p)


def test_save_validates(tmp_path):
    m = make_model()
    m.layers[0].codebook[0] = 1.0
    with pytest.raises(ModelFormatError, match="codebook\\[0\\]"):
        save_model(tmp_path / "m.npz", m)
    m = make_model()
    m.layers[1].name = "ip1"
    with pytest.raises(ModelFormatError, match="duplicate"):
        save_model(tmp_path / "m.npz", m)
    m = make_model()
    m.integer.layers = m.integer.layers[:1]
    with pytest.raises(ModelFormatError, match=r"integer.layers: 1 entries for 2 layers"):
        save_model(tmp_path / "m.npz", m)


def test_is_plain_npz(tmp_path):
    p = tmp_path / "m.npz"
    save_model(p, make_model())
    assert zipfile.is_zipfile(p)
    with np.load(p) as z:
        h = json.loads(z["header.json"].tobytes())
    assert h["format"] == "dcmodel" and h["version"] == 1
    assert set(h["sha256"]) == {f"ip{i}.{k}" for i in (1, 2)
                                for k in ("index", "codebook", "bias", "cb_q", "bias_q")}


def test_numpy_metrics(tmp_path):
    m = make_model()
    m.metrics = {"err": np.float32(0.5), "n": np.int64(3), "v": np.arange(3)}
    m.layers[0].meta = {"density": np.float64(0.25)}
    save_model(tmp_path / "m.npz", m)
    back = load_model(tmp_path / "m.npz")
    assert back.metrics == {"err": 0.5, "n": 3, "v": [0, 1, 2]}
    assert back.layers[0].meta == {"density": 0.25}
    m.metrics = {"bad": object()}
    with pytest.raises(ModelFormatError, match="JSON"):
        save_model(tmp_path / "m.npz", m)


# --- malformed headers: every field's JSON type and range, and the layers' chaining ---------

def read_raw(path):
    """``(header dict, arrays dict)`` of a model file, without any checking."""
    with np.load(path) as z:
        arrs = {k: z[k] for k in z.files}
    return json.loads(arrs.pop("header.json").tobytes()), arrs


def write_raw(path, header, arrs):
    """Write ``header`` and ``arrs`` as a model file with valid digests, bypassing save_model."""
    from sw.modelfile import array_digest
    if isinstance(header, dict) and isinstance(header.get("sha256"), dict):
        header["sha256"] = {k: array_digest(a) for k, a in arrs.items()}
    blob = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **{"header.json": blob}, **arrs)
    path.write_bytes(buf.getvalue())


def _set(path, value):
    """Header edit: set the field at ``path`` (a tuple of keys / indices) to ``value``."""
    def edit(h, arrs):
        obj = h
        for k in path[:-1]:
            obj = obj[k]
        obj[path[-1]] = value
    return edit


def _drop(path):
    def edit(h, arrs):
        obj = h
        for k in path[:-1]:
            obj = obj[k]
        del obj[path[-1]]
    return edit


def _fc_unchained(h, arrs):
    # ip2 takes 25 inputs from ip1's 20 outputs: arrays, digests and header agree with each
    # other, only the chaining is wrong (the old loader accepted this file).
    arrs["ip2.index"] = np.ascontiguousarray(np.pad(arrs["ip2.index"], ((0, 0), (0, 5))))
    h["layers"][1]["shape"] = [10, 25]


def _fc_input_shape(h, arrs):
    h["input_shape"] = [29]


# (edit, field named in the message, further text of the message); the fc model of
# make_model() (ip1 20x30 -> ip2 10x20, integer section).
FC_CASES = {
    "format-number": (_set(("format",), 5), "format"),
    "version-string": (_set(("version",), "1"), "version"),
    "version-bool": (_set(("version",), True), "version"),
    "arch-missing": (_drop(("arch",)), "arch: missing"),
    "arch-number": (_set(("arch",), 300), "arch"),
    "arch-empty": (_set(("arch",), ""), "arch"),
    "input_shape-number": (_set(("input_shape",), 30), "input_shape"),
    "input_shape-string-item": (_set(("input_shape",), ["30"]), "input_shape[0]"),
    "input_shape-zero": (_set(("input_shape",), [0]), "input_shape[0]"),
    "input_shape-empty": (_set(("input_shape",), []), "input_shape"),
    "input_shape-4d": (_set(("input_shape",), [1, 1, 1, 30]), "input_shape"),
    "layers-number": (_set(("layers",), 2), "layers"),
    "layers-object": (_set(("layers",), {"ip1": {}}), "layers"),
    "layers-empty": (_set(("layers",), []), "layers"),
    "layer-number": (_set(("layers", 1), 7), "layers[1]"),
    "layer-name-number": (_set(("layers", 1, "name"), 2), "layers[1].name"),
    "layer-name-dot": (_set(("layers", 1, "name"), "ip.2"), "layers[1].name"),
    "layer-name-duplicate": (_set(("layers", 1, "name"), "ip1"), "layers[1].name"),
    "layer-kind-missing": (_drop(("layers", 0, "kind")), "layers[0].kind: missing"),
    "layer-kind-unknown": (_set(("layers", 0, "kind"), "dense"), "layers[0].kind"),
    "layer-shape-number": (_set(("layers", 0, "shape"), 600), "layers[0].shape"),
    "layer-shape-1d": (_set(("layers", 0, "shape"), [20]), "layers[0].shape"),
    "layer-shape-string-item": (_set(("layers", 0, "shape"), [20, "30"]), "layers[0].shape[1]"),
    "layer-shape-negative": (_set(("layers", 0, "shape"), [20, -30]), "layers[0].shape[1]"),
    "layer-shape-float": (_set(("layers", 0, "shape"), [20.0, 30]), "layers[0].shape[0]"),
    "layer-idx_bits-string": (_set(("layers", 0, "idx_bits"), "4"), "layers[0].idx_bits"),
    "layer-idx_bits-float": (_set(("layers", 0, "idx_bits"), 4.0), "layers[0].idx_bits"),
    "layer-idx_bits-range": (_set(("layers", 0, "idx_bits"), 9), "layers[0].idx_bits"),
    "layer-idx_bits-vs-integer": (_set(("layers", 1, "idx_bits"), 5), "layers[1].idx_bits"),
    "layer-relu-string": (_set(("layers", 0, "relu"), "yes"), "layers[0].relu"),
    "metrics-list": (_set(("metrics",), [0.5]), "metrics"),
    "integer-number": (_set(("integer",), 8), "integer"),
    "integer-list": (_set(("integer",), [8, 16]), "integer"),
    "integer-act_bits-string": (_set(("integer", "act_bits"), "8"), "integer.act_bits"),
    "integer-act_bits-missing": (_drop(("integer", "act_bits")), "integer.act_bits: missing"),
    "integer-weight_bits-range": (_set(("integer", "weight_bits"), 1), "integer.weight_bits"),
    "integer-acc_bits-range": (_set(("integer", "acc_bits"), 64), "integer.acc_bits"),
    "integer-huff_max_len-range": (_set(("integer", "huff_max_len"), 16),
                                   "integer.huff_max_len"),
    "integer-gap_bits-sum": (_set(("integer", "gap_bits"), 13), "integer.gap_bits"),
    "integer-layers-number": (_set(("integer", "layers"), 2), "integer.layers"),
    "integer-layers-count": (lambda h, a: h["integer"]["layers"].pop(), "integer.layers"),
    "integer-layer-number": (_set(("integer", "layers", 1), 10), "integer.layers[1]"),
    "integer-shift-string": (_set(("integer", "layers", 0, "shift"), "10"),
                             "integer.layers[0].shift"),
    "integer-shift-range": (_set(("integer", "layers", 0, "shift"), 32),
                            "integer.layers[0].shift"),
    "integer-bias_shift-range": (_set(("integer", "layers", 1, "bias_shift"), -1),
                                 "integer.layers[1].bias_shift"),
    "integer-bias_shift-missing": (_drop(("integer", "layers", 1, "bias_shift")),
                                   "integer.layers[1].bias_shift: missing"),
    "integer-s_in-list": (_set(("integer", "layers", 0, "s_in"), [0.1]),
                          "integer.layers[0].s_in"),
    "integer-s_out-zero": (_set(("integer", "layers", 1, "s_out"), 0),
                           "integer.layers[1].s_out"),
    "integer-s_out-inf": (_set(("integer", "layers", 1, "s_out"), float("inf")),
                          "integer.layers[1].s_out"),
    "integer-s_in-huge-int": (_set(("integer", "layers", 0, "s_in"), -10 ** 400),
                              "integer.layers[0].s_in"),
    "sha256-list": (_set(("sha256",), ["00"]), "sha256"),
    "chain-fc": (_fc_unchained, "layers[1].shape"),
    "chain-input_shape": (_fc_input_shape, "layers[0].shape"),
}


@pytest.mark.parametrize("case", sorted(FC_CASES))
def test_malformed_header(tmp_path, case):
    edit, field_name = FC_CASES[case]
    p = tmp_path / "m.npz"
    save_model(p, make_model())
    h, arrs = read_raw(p)
    edit(h, arrs)
    write_raw(p, h, arrs)
    with pytest.raises(ModelFormatError) as exc:
        load_model(p)
    assert f"{p}: {field_name}" in str(exc.value)


def test_malformed_header_details(tmp_path):
    p = tmp_path / "m.npz"
    save_model(p, make_model())
    h, arrs = read_raw(p)
    write_raw(p, [h], arrs)
    with pytest.raises(ModelFormatError, match=r"header.json: expected an object, got a list"):
        load_model(p)
    # The digests of sha256 are checked as strings before any array is compared.
    save_model(p, make_model())
    h, arrs = read_raw(p)
    h["sha256"]["ip1.index"] = 5
    blob = np.frombuffer(json.dumps(h).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **{"header.json": blob}, **arrs)
    p.write_bytes(buf.getvalue())
    with pytest.raises(ModelFormatError, match=r"sha256\['ip1.index'\]: expected 64"):
        load_model(p)
    # Chaining messages say what differs from what.
    save_model(p, make_model())
    h, arrs = read_raw(p)
    _fc_unchained(h, arrs)
    write_raw(p, h, arrs)
    with pytest.raises(ModelFormatError, match=r"layers\[1\].shape: 25 inputs \(shape\[1\]\) "
                                               r"differ from the 20 values of layers\[0\]"):
        load_model(p)
    h["input_shape"] = [29]
    h["layers"][1]["shape"] = [10, 20]
    arrs["ip2.index"] = np.ascontiguousarray(arrs["ip2.index"][:, :20])
    write_raw(p, h, arrs)
    with pytest.raises(ModelFormatError, match=r"layers\[0\].shape: 30 inputs .* 29 values of "
                                               r"input_shape \[29\]"):
        load_model(p)


def _conv_channels(h, arrs):
    # conv2 takes 19 channels from conv1's 20: consistent arrays, wrong chaining.
    arrs["conv2.index"] = np.ascontiguousarray(arrs["conv2.index"][:, :19])
    h["layers"][1]["shape"] = [50, 19, 5, 5]


def _conv_to_fc(h, arrs):
    h["layers"][1]["pool"] = 1      # conv2 then gives 50 x 8 x 8 = 3200 values, ip1 takes 800


# The committed LeNet-5 (conv1 20x1x5x5, pool 2 -> conv2 50x20x5x5, pool 2 -> ip1 500x800 ->
# ip2 10x500, input_shape [784]).
CONV_CASES = {
    "conv-shape-3d": (_set(("layers", 0, "shape"), [20, 1, 5]), "layers[0].shape"),
    "conv-stride-string": (_set(("layers", 0, "stride"), "1"), "layers[0].stride"),
    "conv-stride-zero": (_set(("layers", 0, "stride"), 0), "layers[0].stride"),
    "conv-padding-negative": (_set(("layers", 1, "padding"), -1), "layers[1].padding"),
    "conv-pool-list": (_set(("layers", 0, "pool"), [2, 2]), "layers[0].pool"),
    "conv-pool-not-dividing": (_set(("layers", 0, "pool"), 5), "layers[0].pool"),
    "conv-relu_before_pool-number": (_set(("layers", 0, "relu_before_pool"), 0),
                                     "layers[0].relu_before_pool"),
    "conv-chain-channels": (_conv_channels, "layers[1].shape"),
    "conv-chain-to-fc": (_conv_to_fc, "layers[2].shape"),
    "conv-input-not-square": (_set(("input_shape",), [780]), "layers[0].shape"),
    "conv-input-too-small": (_set(("input_shape",), [16]), "layers[0].shape"),
    "conv-input-channels": (_set(("input_shape",), [3, 28, 28]), "layers[0].shape"),
    "conv-in_shape-number": (_set(("layers", 1, "in_shape"), 2880), "layers[1].in_shape"),
    "conv-in_shape-values": (_set(("layers", 1, "in_shape"), [20, 12, 11]),
                             "layers[1].in_shape"),
    "conv-in_shape-channels": (_set(("layers", 1, "in_shape"), [10, 24, 12]),
                               "layers[1].shape"),
}


@pytest.mark.parametrize("case", sorted(CONV_CASES))
def test_malformed_conv_header(tmp_path, case):
    edit, field_name = CONV_CASES[case]
    h, arrs = read_raw(MODELS / "lenet5_caffe.npz")     # (no in_shape in its header)
    edit(h, arrs)
    p = tmp_path / "m.npz"
    write_raw(p, h, arrs)
    with pytest.raises(ModelFormatError) as exc:
        load_model(p)
    assert f"{p}: {field_name}" in str(exc.value)


def test_conv_input_shapes(tmp_path):
    # The flat [784] of the committed file and the explicit [1, 28, 28] are the same input;
    # a conv layer's in_shape (as sw.compress records it) reshapes what it gets.
    h, arrs = read_raw(MODELS / "lenet5_caffe.npz")     # (no in_shape in its header)
    h["input_shape"] = [1, 28, 28]
    h["layers"][0]["in_shape"] = [1, 28, 28]
    h["layers"][1]["in_shape"] = [20, 12, 12]
    p = tmp_path / "m.npz"
    write_raw(p, h, arrs)
    assert load_model(p).input_shape == [1, 28, 28]
    h["input_shape"] = [784]
    h["layers"][0]["in_shape"] = [1, 14, 56]     # not square: 1 x 14 x 56 -> 20 x 5 x 26
    h["layers"][1]["in_shape"] = [20, 10, 13]    # the same 2600 values -> 50 x 6 x 9
    h["layers"][1]["pool"] = 1
    arrs["ip1.index"] = np.ascontiguousarray(np.pad(arrs["ip1.index"], ((0, 0), (0, 1900))))
    h["layers"][2]["shape"] = [500, 2700]
    write_raw(p, h, arrs)
    assert load_model(p).layers[0].meta["in_shape"] == [1, 14, 56]


@pytest.mark.parametrize("name", ["lenet300", "lenet5"])
def test_committed_models_load_identically(tmp_path, name):
    # Every header field and array of the committed file reaches the model unchanged, and
    # saving it again writes the same header and arrays.
    path = MODELS / f"{name}.npz"
    h, arrs = read_raw(path)
    m = load_model(path)
    assert (m.arch, m.input_shape, m.metrics) == (h["arch"], h["input_shape"], h["metrics"])
    assert len(m.layers) == len(h["layers"])
    for l, lh in zip(m.layers, h["layers"]):
        assert {"name": l.name, "kind": l.kind, "shape": list(l.shape), "idx_bits": l.idx_bits,
                "relu": l.relu, **l.meta} == lh
        for k in ("index", "codebook", "bias", "cb_q", "bias_q"):
            a = getattr(l, k)
            if f"{l.name}.{k}" in arrs:
                ref = arrs[f"{l.name}.{k}"]
                assert a.dtype == ref.dtype and np.array_equal(a, ref)
            else:
                assert a is None and h["integer"] is None
    assert (m.integer.to_json() if m.integer else None) == h["integer"]
    save_model(tmp_path / "again.npz", m)
    h2, arrs2 = read_raw(tmp_path / "again.npz")
    assert h2 == h and arrs2.keys() == arrs.keys()
    assert all(np.array_equal(arrs[k], arrs2[k]) for k in arrs)


# --- model-file fuzz: damaged copies of the committed models ---------------------------------

def _zip_structure(data):
    """Byte ranges of the zip's own records (local headers, central directory, end record)."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        infos = z.infolist()
    ranges = [(i.header_offset, i.header_offset + 30 + len(i.filename.encode()) + len(i.extra))
              for i in infos]
    end_of_data = max(i.header_offset + 30 + len(i.filename.encode()) + len(i.extra)
                      + i.compress_size for i in infos)
    ranges.append((end_of_data, len(data)))
    return ranges


def _damaged_copies(data, count, rng):
    """``count`` damaged copies of ``data``: 1-3 flipped bits anywhere, a flipped bit in a zip
    record, a truncation, or flips and a truncation together."""
    structure = _zip_structure(data)
    for i in range(count):
        bad = bytearray(data)
        kind = i % 4
        if kind in (0, 3):
            for pos in rng.integers(0, len(bad), int(rng.integers(1, 4))):
                bad[pos] ^= 1 << int(rng.integers(8))
        if kind == 1:
            lo, hi = structure[int(rng.integers(len(structure)))]
            bad[int(rng.integers(lo, hi))] ^= 1 << int(rng.integers(8))
        if kind in (2, 3):
            bad = bad[:int(rng.integers(0, len(bad)))]
        yield bytes(bad)


def _damaged_headers(header_blob, count, rng):
    """``count`` copies of the header JSON: flipped bits, or a random value (of any JSON type)
    put in place of a random field or list item at any depth."""
    header = json.loads(header_blob)
    values = [None, True, False, 0, 1, -1, 2, 31, 32, 2 ** 40, 10 ** 400, 0.5, -0.0,
              float("inf"), "", "x", "fc", [], [1], [1, 2], [0, 0, 0, 0], {}, {"a": 1}]
    nodes = []

    def walk(obj, path):
        items = obj.items() if isinstance(obj, dict) else enumerate(obj)
        for k, v in items:
            nodes.append(path + (k,))
            if isinstance(v, (dict, list)):
                walk(v, path + (k,))
    walk(header, ())
    for i in range(count):
        if i % 2:
            bad = bytearray(header_blob)
            for pos in rng.integers(0, len(bad), int(rng.integers(1, 4))):
                bad[pos] ^= 1 << int(rng.integers(8))
            yield bytes(bad)
        else:
            h = json.loads(header_blob)
            path = nodes[int(rng.integers(len(nodes)))]
            obj = h
            for k in path[:-1]:
                obj = obj[k]
            obj[path[-1]] = values[int(rng.integers(len(values)))]
            yield json.dumps(h).encode()


def _check_loads_cleanly(path, reference=None):
    """The file gives ModelFormatError or a model; with ``reference``, that very model. A model
    must also be valid for everything downstream: it saves again, and a calibrated fc model
    gives an integer model or GoldenError."""
    from sw.golden import GoldenError, IntModel
    try:
        m = load_model(path)
    except ModelFormatError:
        return "error"
    if reference is not None:
        assert_same(reference, m)
        return "identical"
    save_model(path.with_suffix(".again.npz"), m)
    if m.integer is not None:
        try:
            IntModel.from_model(m)
        except GoldenError:
            pass
    return "loaded"


def _fuzz(tmp_path, name, n_files, n_headers, seed):
    path = MODELS / f"{name}.npz"
    data = path.read_bytes()
    reference = load_model(path)
    rng = np.random.default_rng(seed)
    p = tmp_path / "fuzz.npz"
    outcomes = {"error": 0, "identical": 0, "loaded": 0}
    for bad in _damaged_copies(data, n_files, rng):
        p.write_bytes(bad)
        outcomes[_check_loads_cleanly(p, reference)] += 1
    h, arrs = read_raw(path)
    blob = json.dumps(h).encode()
    for bad in _damaged_headers(blob, n_headers, rng):
        buf = io.BytesIO()
        np.savez(buf, **{"header.json": np.frombuffer(bad, dtype=np.uint8)}, **arrs)
        p.write_bytes(buf.getvalue())
        outcomes[_check_loads_cleanly(p)] += 1
    # Most damage is detected (a flip in zip metadata that nothing reads may be harmless).
    assert outcomes["error"] > (n_files + n_headers) // 2, outcomes
    return outcomes


@pytest.mark.parametrize("name", ["lenet300", "lenet5"])
def test_fuzz_committed_models(tmp_path, name):
    _fuzz(tmp_path, name, n_files=200, n_headers=100, seed=12)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lenet300", "lenet5"])
def test_fuzz_committed_models_long(tmp_path, name):
    outcomes = _fuzz(tmp_path, name, n_files=10000, n_headers=5000, seed=1212)
    print(f"{name}: {sum(outcomes.values())} damaged files: {outcomes}")
