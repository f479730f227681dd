"""ONNX in and out: import (folding, refusals), export checked by onnxruntime, data mapping."""
import numpy as np
import onnx
import pytest
from onnx import helper

from onnx_models import chain, mlp_onnx, mlp_predict, train_mlp
from sw.dataset import DataError, find_input_scale, load_npz, to_uint8
from sw.modelfile import load_model
from sw.nn import Conv2D, Dense
from sw.onnx_export import export_onnx, main as export_main, run_onnx, to_nn_model
from sw.onnx_import import OnnxImportError, fold_input_scale, import_onnx

ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent
mk = helper.make_node
rng = np.random.default_rng(0)


@pytest.fixture(scope="module")
def mnist():
    from sw.dataset import load_mnist_dataset
    return load_mnist_dataset()


@pytest.fixture(scope="module")
def mlp(mnist):
    """A 784-128-64-10 MLP trained by the test's own loop on 6,000 images (seed 7, 3 epochs)."""
    x = to_uint8(mnist.x_train[:6000]).reshape(-1, 28, 28)
    params = train_mlp(x, mnist.y_train[:6000])
    return params, mlp_onnx(params)


def _f32(*shape):
    return rng.normal(0, 0.3, shape).astype(np.float32)


# -- import ------------------------------------------------------------------------------------

def test_import_folds_normalisation_batchnorm_bias(mlp, mnist):
    """Sub/Div, BatchNormalization, MatMul + Add, Dropout and the final Softmax: the imported
    float model computes the ONNX graph's logits (onnxruntime) and the trained MLP's
    predictions; moved to the byte / 256 input it still does."""
    params, proto = mlp
    imp = import_onnx(proto)
    m = imp.model
    assert [type(l).__name__ for l in m.layers] == ["Reshape", "Flatten", "Dense", "ReLU",
                                                    "Dense", "ReLU", "Dense"]
    assert imp.sources == {"fc1": "/fc1/Gemm (Gemm)", "fc2": "/fc2/MatMul (MatMul)",
                           "fc3": "/fc3/Gemm (Gemm)"}
    assert len(imp.folded) == 6
    u = to_uint8(mnist.x_test[:500])
    v = (u / 255.0).astype(np.float32)
    # logits of the graph without its Softmax
    logits_proto = onnx.ModelProto()
    logits_proto.CopyFrom(proto)
    del logits_proto.graph.node[-1]
    logits_proto.graph.output[0].name = "logits"
    ref = run_onnx(logits_proto, v.reshape(-1, 1, 28, 28))
    np.testing.assert_allclose(m.forward(v), ref, rtol=1e-4, atol=1e-4)
    fold_input_scale(m, 1 / 255)
    got = m.forward(u / np.float32(256))
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    assert (np.argmax(got, 1) == mlp_predict(params, u.reshape(-1, 28, 28))).mean() > 0.998


def _conv_net(pad_norm=True):
    """Per-channel normalisation, Conv, BatchNormalization, MaxPool, Relu, Reshape, Gemm."""
    inits = {"m": np.array([0.2, 0.4], np.float32).reshape(1, 2, 1, 1),
             "s": np.array([0.5, 2.0], np.float32).reshape(1, 2, 1, 1),
             "cw": _f32(4, 2, 3, 3), "cb": _f32(4),
             "g": np.abs(_f32(4)) + 0.5, "b": _f32(4), "mu": _f32(4), "var": np.abs(_f32(4)) + 1,
             "shape": np.array([0, -1], np.int64), "fw": _f32(5, 4 * 4 * 4), "fb": _f32(5)}
    nodes = [mk("Sub", ["input", "m"], ["a"], name="sub"),
             mk("Div", ["a", "s"], ["b0"], name="div"),
             mk("Conv", ["b0", "cw", "cb"], ["c"], name="conv", kernel_shape=[3, 3]),
             mk("BatchNormalization", ["c", "g", "b", "mu", "var"], ["d"], name="bn",
                epsilon=0.1),
             mk("MaxPool", ["d"], ["e"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
             mk("Relu", ["e"], ["f"], name="relu"),
             mk("Reshape", ["f", "shape"], ["g0"], name="reshape"),
             mk("Gemm", ["g0", "fw", "fb"], ["out"], name="fc", transB=1)]
    return chain(nodes, inits, ["N", 2, 10, 10], ["N", 5])


def test_import_conv_net_matches_onnxruntime():
    """A small conv net (valid 3x3 conv, BN folded into it, per-channel input normalisation
    folded into its columns) gives onnxruntime's logits; it is float-only (no hardware check)."""
    proto = _conv_net()
    imp = import_onnx(proto)
    kinds = [type(l).__name__ for l in imp.model.layers]
    assert kinds == ["Reshape", "Conv2D", "MaxPool2", "ReLU", "Flatten", "Dense"]
    x = np.random.default_rng(1).random((64, 2, 10, 10)).astype(np.float32)
    np.testing.assert_allclose(imp.model.forward(x.reshape(64, -1)), run_onnx(proto, x),
                               rtol=1e-4, atol=1e-4)
    # and back out: export of the imported model, checked by onnxruntime again
    again = run_onnx(export_onnx(imp.model), x.reshape(64, -1))
    np.testing.assert_allclose(again, run_onnx(proto, x), rtol=1e-4, atol=1e-4)


def _fc(n_in, n_out, name, x, y, **kw):
    return mk("Gemm", [x, f"{name}.W", f"{name}.b"], [y], name=name, transB=1, **kw), \
        {f"{name}.W": _f32(n_out, n_in), f"{name}.b": _f32(n_out)}


def _mlp_nodes(widths, act="Relu", last_act=None):
    nodes, inits, cur = [], {}, "input"
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        n, w = _fc(a, b, f"fc{i}", cur, f"h{i}")
        nodes.append(n)
        inits.update(w)
        cur = f"h{i}"
        if i < len(widths) - 2 or last_act:
            nodes.append(mk(last_act if i == len(widths) - 2 else act, [cur], [cur + "a"],
                            name=f"act{i}"))
            cur += "a"
    return nodes, inits


def _refusal(kind):
    """(graph, node name, op, limit) of each refusal kind."""
    if kind == "sigmoid":
        nodes, inits = _mlp_nodes([8, 6, 3], act="Sigmoid")
        return chain(nodes, inits, ["N", 8], ["N", 3]), "act0", "Sigmoid", "hardware"
    if kind == "no_relu":
        nodes, inits = _mlp_nodes([8, 6, 3])
        del nodes[1]
        nodes[1].input[0] = "h0"
        return chain(nodes, inits, ["N", 8], ["N", 3]), "fc0", "Gemm", "hardware"
    if kind == "final_relu":
        nodes, inits = _mlp_nodes([8, 6, 3], last_act="Relu")
        return chain(nodes, inits, ["N", 8], ["N", 3]), "fc1", "Gemm", "hardware"
    if kind == "too_wide":
        nodes, inits = _mlp_nodes([8, 2048, 3])
        return chain(nodes, inits, ["N", 8], ["N", 3]), "fc0", "Gemm", "hardware"
    if kind == "too_deep":
        nodes, inits = _mlp_nodes([8, 8, 8, 8, 8, 3])
        return chain(nodes, inits, ["N", 8], ["N", 3]), "fc4", "Gemm", "hardware"
    if kind == "too_many_classes":
        nodes, inits = _mlp_nodes([8, 16, 300])
        return chain(nodes, inits, ["N", 8], ["N", 300]), "fc1", "Gemm", "hardware"
    conv = {"cw": _f32(3, 1, 3, 3)}
    if kind in ("conv_stride", "conv_pad", "conv_group", "conv_dilation"):
        attrs = {"conv_stride": {"strides": [2, 2]}, "conv_pad": {"pads": [1, 1, 1, 1]},
                 "conv_group": {"group": 3}, "conv_dilation": {"dilations": [2, 2]}}[kind]
        if kind == "conv_group":
            conv = {"cw": _f32(3, 1, 3, 3)}
            node = mk("Conv", ["input", "cw"], ["c"], name="c1", **attrs)
            return chain([node], conv, ["N", 3, 8, 8], ["N", 3, 6, 6]), "c1", "Conv", \
                "software"
        node = mk("Conv", ["input", "cw"], ["c"], name="c1", **attrs)
        return chain([node], conv, ["N", 1, 8, 8], ["N", 3, 4, 4]), "c1", "Conv", "software"
    if kind == "pool3":
        node = mk("MaxPool", ["input"], ["p"], name="p1", kernel_shape=[3, 3], strides=[3, 3])
        return chain([node], {}, ["N", 1, 9, 9], ["N", 1, 3, 3]), "p1", "MaxPool", "software"
    if kind == "branch":
        n0, w0 = _fc(8, 8, "fc0", "input", "h0")
        n1, w1 = _fc(8, 8, "fc1", "h0", "h1")
        nodes = [n0, n1, mk("Add", ["h0", "h1"], ["s"], name="residual")]
        return chain(nodes, {**w0, **w1}, ["N", 8], ["N", 8]), "fc1", "Gemm", "software"
    if kind == "softmax_mid":
        nodes, inits = _mlp_nodes([8, 6, 3])
        nodes[1] = mk("Softmax", ["h0"], ["h0a"], name="sm", axis=1)
        return chain(nodes, inits, ["N", 8], ["N", 3]), "sm", "Softmax", "software"
    if kind == "unsupported":
        nodes, inits = _mlp_nodes([8, 6, 3])
        nodes.insert(0, mk("Transpose", ["input"], ["t"], name="tr", perm=[0, 1]))
        nodes[1].input[0] = "t"
        return chain(nodes, inits, ["N", 8], ["N", 3]), "tr", "Transpose", "software"
    if kind == "shape_arithmetic":
        nodes, inits = _mlp_nodes([8, 6, 3])
        inits["two"] = np.array([1, 1], np.int64)
        nodes = [mk("Shape", ["input"], ["shp"], name="shape"),
                 mk("Mul", ["shp", "two"], ["shp2"], name="times"),
                 mk("Reshape", ["input", "shp2"], ["r"], name="rs")] + nodes
        nodes[3].input[0] = "r"
        return chain(nodes, inits, ["N", 8], ["N", 3]), "times", "Mul", "software"
    if kind == "per_pixel_before_conv":
        inits = {"k": _f32(1, 1, 8, 8), **conv}
        nodes = [mk("Mul", ["input", "k"], ["a"], name="scale"),
                 mk("Conv", ["a", "cw"], ["c"], name="c1")]
        return chain(nodes, inits, ["N", 1, 8, 8], ["N", 3, 6, 6]), "c1", "Conv", "software"
    raise KeyError(kind)


REFUSALS = ["sigmoid", "no_relu", "final_relu", "too_wide", "too_deep", "too_many_classes",
            "conv_stride", "conv_pad", "conv_group", "conv_dilation", "pool3", "branch",
            "softmax_mid", "unsupported", "shape_arithmetic", "per_pixel_before_conv"]


@pytest.mark.parametrize("kind", REFUSALS)
def test_import_refusals_name_the_node_and_limit(kind):
    proto, node, op, limit = _refusal(kind)
    with pytest.raises(OnnxImportError) as e:
        import_onnx(proto)
    msg = str(e.value)
    assert f"node {node!r} ({op})" in msg, msg
    assert msg.endswith(f"[{limit} limit]"), msg
    assert (e.value.node, e.value.op, e.value.limit) == (node, op, limit)
    reason = {"conv_group": "group=3", "shape_arithmetic": "constants", "branch": "branches",
              "sigmoid": "only activation is ReLU", "too_deep": "at most 4 layers"}
    assert reason.get(kind, "") in msg, msg


def test_import_pytorch_view_flatten():
    """PyTorch's ``x.view(x.size(0), -1)`` (Shape, Gather, Unsqueeze, Concat, Reshape) and a
    Constant node: evaluated, the model matches onnxruntime."""
    inits = {"i0": np.array(0, np.int64), "ax": np.array([0], np.int64)}
    n0, w0 = _fc(2 * 4 * 4, 3, "fc0", "flat", "out")
    nodes = [mk("Shape", ["input"], ["s"], name="shape"),
             mk("Gather", ["s", "i0"], ["b"], name="gather", axis=0),
             mk("Unsqueeze", ["b", "ax"], ["bu"], name="unsq"),
             mk("Constant", [], ["m1"], name="const",
                value=onnx.numpy_helper.from_array(np.array([-1], np.int64))),
             mk("Concat", ["bu", "m1"], ["target"], name="concat", axis=0),
             mk("Reshape", ["input", "target"], ["flat"], name="view"), n0]
    proto = chain(nodes, {**inits, **w0}, ["N", 2, 4, 4], ["N", 3])
    m = import_onnx(proto).model
    x = np.random.default_rng(2).random((7, 2, 4, 4)).astype(np.float32)
    np.testing.assert_allclose(m.forward(x.reshape(7, -1)), run_onnx(proto, x), rtol=1e-5,
                               atol=1e-6)


def test_hardware_limits_come_from_the_packer():
    """The limits are sw.pack's (the gateware's defaults): a larger limit admits the model,
    and hardware=False skips the check (float compression only)."""
    import dataclasses
    from sw.pack import PackLimits
    proto, *_ = _refusal("too_wide")
    import_onnx(proto, limits=dataclasses.replace(PackLimits(), max_features=2048))
    import_onnx(proto, hardware=False)
    assert PackLimits().max_features == 1024


def test_import_bad_files(tmp_path):
    with pytest.raises(OnnxImportError, match="not found"):
        import_onnx(tmp_path / "none.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\x00junk" * 10)
    with pytest.raises(OnnxImportError, match="cannot read ONNX|invalid ONNX"):
        import_onnx(tmp_path / "junk.onnx")


# -- export ------------------------------------------------------------------------------------

def _export_agrees(name, mnist, n):
    path = ROOT / "models" / f"{name}.npz"
    nn = to_nn_model(load_model(path))
    x = mnist.x_test[:n]
    ours = nn.predict(x)
    theirs = np.argmax(run_onnx(export_onnx(nn), x), axis=1)
    assert len(ours) == n and np.array_equal(ours, theirs)
    # the float model is the committed one: its error is the recorded metric
    if n == 10000:
        err = float((ours != mnist.y_test).mean())
        assert err == pytest.approx(load_model(path).metrics["error"], abs=1e-9)
    return nn


def test_export_lenet300_onnxruntime_agrees_on_all_test_images(mnist):
    nn = _export_agrees("lenet300", mnist, 10000)
    assert [type(l) for l in nn.weight_layers] == [Dense] * 3


def test_export_lenet5_onnxruntime_agrees(mnist):
    nn = _export_agrees("lenet5", mnist, 1000)
    assert [type(l) for l in nn.weight_layers] == [Conv2D, Conv2D, Dense, Dense]


@pytest.mark.slow
def test_export_lenet5_onnxruntime_agrees_on_all_test_images(mnist):
    _export_agrees("lenet5", mnist, 10000)


def test_export_roundtrip_and_mutation(mnist):
    """Export -> import gives the same logits; a changed weight in the exported graph is seen
    (the comparison can fail)."""
    nn = to_nn_model(load_model(ROOT / "models" / "lenet300.npz"))
    proto = export_onnx(nn)
    back = import_onnx(proto).model
    x = mnist.x_test[:300]
    assert np.array_equal(back.forward(x), nn.forward(x))
    w = [t for t in proto.graph.initializer if t.name == "ip3.W"][0]
    arr = onnx.numpy_helper.to_array(w).copy()
    arr[:, :] = 0
    arr[3, :] = 1
    w.CopyFrom(onnx.numpy_helper.from_array(arr, "ip3.W"))
    assert not np.array_equal(np.argmax(run_onnx(proto, x), 1), nn.predict(x))


def test_export_cli(tmp_path, capsys):
    out = tmp_path / "l300.onnx"
    assert export_main([str(ROOT / "models" / "lenet300.npz"), "--out", str(out)]) == 0
    assert out.exists() and "wrote" in capsys.readouterr().out
    assert export_main([str(tmp_path / "none.npz"), "--out", str(out)]) == 1
    assert "error:" in capsys.readouterr().err


# -- data --------------------------------------------------------------------------------------

def test_input_scale_found_or_refused():
    u = np.arange(256, dtype=np.uint8).reshape(2, 128)
    assert find_input_scale({"x": u}) == 1.0
    assert find_input_scale({"x": u / np.float32(255)}) == pytest.approx(1 / 255)
    assert find_input_scale({"x": u / np.float32(256)}) == pytest.approx(1 / 256)
    assert find_input_scale({"x": u.astype(np.float32)}) == 1.0
    assert find_input_scale({"x": u * np.float32(0.01)}, 0.01) == 0.01
    with pytest.raises(DataError, match="negative"):
        find_input_scale({"x_train": (u / 255.0 - 0.5)})
    with pytest.raises(DataError, match="8-bit"):
        find_input_scale({"x_train": np.linspace(0, 1, 1000)})
    with pytest.raises(DataError, match="8-bit"):
        find_input_scale({"x_train": u * 0.01}, 0.02)
    with pytest.raises(DataError, match="8-bit"):
        find_input_scale({"x_train": np.array([[0, 300]])})


def test_load_npz(tmp_path):
    u = np.random.default_rng(0).integers(0, 256, (30, 4, 5)).astype(np.uint8)
    y = np.arange(30) % 3
    p = tmp_path / "d.npz"
    np.savez(p, x_train=u / np.float32(255), y_train=y, x_test=u[:10] / np.float32(255),
             y_test=y[:10])
    d = load_npz(p)
    assert d.features == 20 and d.classes == 3 and d.sample_shape == (4, 5)
    assert np.array_equal(d.test_uint8(), u[:10].reshape(10, 20))
    np.savez(p, x_train=u, y_train=y, x_test=u, y_test=y)
    assert np.array_equal(load_npz(p, input_scale=1 / 255).train_uint8(), u.reshape(30, 20))
    np.savez(p, x_train=u, y_train=y)
    with pytest.raises(DataError, match="lacks arrays"):
        load_npz(p)
    np.savez(p, x_train=u, y_train=y[:5], x_test=u, y_test=y)
    with pytest.raises(DataError, match="y_train"):
        load_npz(p)
    np.savez(p, x_train=u, y_train=y - 1.5, x_test=u, y_test=y)
    with pytest.raises(DataError, match="integer class labels"):
        load_npz(p)
    p.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="cannot read"):
        load_npz(p)
