"""Compressed model (float shared weights ``codebook[index]``) -> ONNX.

The exported graph computes exactly the layers of the float model (:func:`to_nn_model`):
``Gemm`` (``transB = 1``) per fully-connected layer, ``Conv`` (valid, stride 1) per convolution,
``MaxPool`` 2 x 2, ``Relu``, ``Reshape``/``Flatten``; output: the logits ``(batch, classes)``.
Pruned weights are stored as zeros (ONNX has no compressed weight format that runtimes
execute). The input is the project's ``byte / 256`` by default; with ``input_scale`` (e.g. the
``1/255`` of the data set the model was imported with, recorded in the model file's metrics)
the graph starts with a ``Mul`` so that it takes the original values ``byte * input_scale``.

Command line::

    python -m sw.onnx_export MODEL.npz --out MODEL.onnx [--input-scale S] [--check]

``--check`` runs the exported graph with onnxruntime on the MNIST test images and compares
its predictions with the float model's (``sw.nn``).
"""
import argparse
import sys
from pathlib import Path

import numpy as np

from sw.cli import EXIT_MISMATCH, command
from sw.dataset import load_mnist_dataset
from sw.modelfile import load_model
from sw.nn import Conv2D, Dense, Flatten, MaxPool2, Model, ReLU, Reshape

__all__ = ["ExportError", "to_nn_model", "export_onnx", "run_onnx", "OPSET", "build_parser",
           "main"]

#: ONNX opset of the exported graphs.
OPSET = 17
#: IR version written (onnxruntime reads IR <= 10 for any opset it supports).
IR_VERSION = 8


class ExportError(ValueError):
    """A model that cannot be exported."""


def to_nn_model(cm):
    """The float network of a :class:`sw.modelfile.CompressedModel` as a :class:`sw.nn.Model`
    (weights ``codebook[index]``).

    Convolutions: valid, stride 1; a conv layer's ``meta`` gives its input ``in_shape``
    ``[c, h, w]`` (older files: the first conv's is derived from a square image) and ``pool``
    (2: a 2 x 2 max pooling follows); ``relu`` adds a ReLU after the layer (after its pooling).
    """
    rng = np.random.default_rng(0)
    layers = []
    shape = (int(np.prod(cm.input_shape)),)
    for i, rec in enumerate(cm.layers):
        W = rec.weights().astype(np.float32)
        if rec.kind == "conv":
            oc, ic, k, _ = W.shape
            want = rec.meta.get("in_shape")
            if want is None:
                if len(shape) == 3:
                    want = shape
                else:
                    side = int(round(np.sqrt(shape[0] / ic)))
                    if ic * side * side != shape[0]:
                        raise ExportError(f"layer {rec.name}: cannot infer the input image of "
                                          f"{shape[0]} values with {ic} channels")
                    want = (ic, side, side)
            want = tuple(int(v) for v in want)
            if want != shape:
                if int(np.prod(want)) != int(np.prod(shape)):
                    raise ExportError(f"layer {rec.name}: input {want} does not match {shape}")
                layers.append(Reshape(want))
                shape = want
            layer = Conv2D(rec.name, ic, oc, k, rng)
            shape = (oc, shape[1] - k + 1, shape[2] - k + 1)
        else:
            if len(shape) != 1:
                layers.append(Flatten())
                shape = (int(np.prod(shape)),)
            if W.shape[1] != shape[0]:
                raise ExportError(f"layer {rec.name}: {W.shape[1]} inputs, previous layer gives "
                                  f"{shape[0]}")
            layer = Dense(rec.name, W.shape[1], W.shape[0], rng)
            shape = (W.shape[0],)
        layer.W, layer.b = W, rec.bias.astype(np.float32).copy()
        layer.relu = bool(rec.relu) and i < len(cm.layers) - 1
        layers.append(layer)
        if rec.kind == "conv" and int(rec.meta.get("pool", 0) or 0) == 2:
            layers.append(MaxPool2())
            shape = (shape[0], shape[1] // 2, shape[2] // 2)
        if layer.relu:
            layers.append(ReLU())
    if len(shape) != 1:
        layers.append(Flatten())
    return Model(cm.arch, layers, (int(np.prod(cm.input_shape)),))


def _onnx():
    try:
        # lazy: onnx is the optional [onnx] extra; the rest of sw runs without it
        import onnx
        from onnx import helper, numpy_helper
    except ImportError:  # pragma: no cover - tools/setup installs it
        raise ExportError("the 'onnx' package is not installed; run tools/setup") from None
    return onnx, helper, numpy_helper


def export_onnx(model, path=None, input_scale=None, name=None):
    """Build (and write to ``path``) the ONNX graph of a model.

    Parameters
    ----------
    model : sw.modelfile.CompressedModel or sw.nn.Model
    path : str or pathlib.Path, optional
    input_scale : float, optional
        The graph takes ``byte * input_scale`` (a leading ``Mul``); default: ``byte / 256``.
    name : str, optional
        Graph name (default: the model's ``arch``).

    Returns
    -------
    onnx.ModelProto
    """
    onnx, helper, nh = _onnx()
    if not isinstance(model, Model):
        model = to_nn_model(model)
    nodes, inits = [], []
    feats = int(np.prod(model.input_shape))
    cur = "input"

    def const(nm, arr):
        inits.append(nh.from_array(np.asarray(arr), nm))
        return nm

    def add(op, inputs, prefix, **attrs):
        out = f"{prefix}_out"
        nodes.append(helper.make_node(op, [cur] + inputs, [out], name=prefix, **attrs))
        return out

    if input_scale is not None and float(input_scale) * 256.0 != 1.0:
        k = np.float32(1.0 / (256.0 * float(input_scale)))
        cur = add("Mul", [const("input_to_bytes_over_256", k)], "input_scale")
    for i, l in enumerate(model.layers):
        tag = getattr(l, "name", type(l).__name__.lower())
        p = f"{tag}_{i}" if not isinstance(l, (Dense, Conv2D)) else l.name
        if isinstance(l, Dense):
            cur = add("Gemm", [const(f"{p}.W", l.weight().astype(np.float32)),
                               const(f"{p}.b", l.b.astype(np.float32))], p, transB=1)
        elif isinstance(l, Conv2D):
            cur = add("Conv", [const(f"{p}.W", l.weight().astype(np.float32)),
                               const(f"{p}.b", l.b.astype(np.float32))], p,
                      kernel_shape=[l.k, l.k], strides=[1, 1], pads=[0, 0, 0, 0])
        elif isinstance(l, MaxPool2):
            cur = add("MaxPool", [], p, kernel_shape=[2, 2], strides=[2, 2])
        elif isinstance(l, ReLU):
            cur = add("Relu", [], p)
        elif isinstance(l, Flatten):
            cur = add("Flatten", [], p, axis=1)
        elif isinstance(l, Reshape):
            cur = add("Reshape", [const(f"{p}.shape", np.array((-1,) + l.shape, np.int64))], p)
        else:
            raise ExportError(f"layer {i} ({type(l).__name__}) has no ONNX equivalent")
    classes = model.weight_layers[-1].W.shape[0]
    graph = helper.make_graph(
        nodes, name or model.arch,
        [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, ["N", feats])],
        [helper.make_tensor_value_info(cur, onnx.TensorProto.FLOAT, ["N", classes])],
        initializer=inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="deepcomp-fpga sw.onnx_export")
    proto.ir_version = IR_VERSION
    onnx.checker.check_model(proto)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        onnx.save(proto, str(path))
    return proto


def run_onnx(proto, x, batch=1000):
    """Logits of ``x`` (float32 ``(n, features)``) from onnxruntime (CPU, one thread)."""
    try:
        import onnxruntime as ort  # lazy: the optional [onnx] extra, and slow to import
    except ImportError:  # pragma: no cover - tools/setup installs it
        raise ExportError("the 'onnxruntime' package is not installed; run tools/setup") \
            from None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(proto.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    x = np.asarray(x, dtype=np.float32)
    return np.concatenate([sess.run(None, {name: x[i:i + batch]})[0]
                           for i in range(0, len(x), batch)])


def build_parser():
    """The command line's options (``python -m sw.onnx_export``)."""
    ap = argparse.ArgumentParser(prog="python -m sw.onnx_export",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("model", help="dcmodel .npz file")
    ap.add_argument("--out", required=True, help="ONNX file to write")
    ap.add_argument("--input-scale", type=float, default=None,
                    help="the graph takes byte * S (default: the model's recorded input scale, "
                         "else byte / 256)")
    ap.add_argument("--check", action="store_true",
                    help="compare onnxruntime's predictions with sw.nn's on the MNIST test set")
    return ap


@command
def main(argv=None):
    """Command line: export a model file to ONNX (optionally checked with onnxruntime; exit
    status 3 when the predictions differ)."""
    args = build_parser().parse_args(argv)
    cm = load_model(args.model)
    scale = args.input_scale
    if scale is None:
        scale = cm.metrics.get("input_scale")
    nn = to_nn_model(cm)
    proto = export_onnx(nn, args.out, input_scale=scale)
    print(f"wrote {args.out}: {len(proto.graph.node)} nodes, input (N, "
          f"{int(np.prod(nn.input_shape))}) = byte * {scale if scale else 1 / 256:g}")
    if args.check:
        data = load_mnist_dataset()
        x = data.x_test
        ours = nn.predict(x)
        xin = x if scale is None else (data.test_uint8() * np.float32(scale))
        theirs = np.argmax(run_onnx(proto, xin), axis=1)
        same = int((ours == theirs).sum())
        print(f"onnxruntime vs sw.nn: {same} of {len(x)} MNIST test predictions equal; "
              f"test error {100 * float((theirs != data.y_test).mean()):.2f}%")
        if same != len(x):
            return EXIT_MISMATCH
    return 0


if __name__ == "__main__":
    sys.exit(main())
