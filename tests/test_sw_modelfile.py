"""dcmodel v1 file format: round trip and clear errors on bad files."""
import io
import json
import zipfile

import numpy as np
import pytest

from sw.modelfile import (CompressedModel, IntegerParams, LayerRecord, ModelFormatError,
                          load_model, save_model)


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
