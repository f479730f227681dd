"""ONNX models for the import tests, built with ``onnx.helper`` (no PyTorch).

:func:`train_mlp` trains a 784-128-64-10 MLP with its own NumPy loop (plain SGD, He
initialisation, seed 7, constant learning rate: not the built-in recipes) on inputs normalised
as ``(pixel / 255 - 0.1307) / 0.3081``; :func:`mlp_onnx` writes it as the graph a PyTorch export
of ``Normalize -> Linear -> BatchNorm1d -> ReLU -> Dropout -> Linear -> ReLU -> Linear ->
Softmax`` looks like (the second layer as ``MatMul`` + ``Add``, the first as ``Gemm`` with
``transB = 0``), with a batch norm that is not the identity and the first layer rescaled so that
the graph computes the trained function exactly.
"""
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

MEAN, STD = 0.1307, 0.3081


def normalise(u8):
    return ((u8.reshape(len(u8), -1).astype(np.float32) / 255.0) - MEAN) / STD


def train_mlp(x_u8, y, sizes=(784, 128, 64, 10), epochs=3, lr=0.1, batch=50, seed=7):
    """Weights ``[(W (in, out), b), ...]`` trained on uint8 images ``x_u8``."""
    rng = np.random.default_rng(seed)
    params = [(rng.normal(0, np.sqrt(2.0 / a), (a, b)).astype(np.float32),
               np.zeros(b, np.float32)) for a, b in zip(sizes[:-1], sizes[1:])]
    x = normalise(x_u8)
    for _ in range(epochs):
        order = rng.permutation(len(y))
        for s in range(0, len(y), batch):
            idx = order[s:s + batch]
            hs = [x[idx]]
            for i, (W, b) in enumerate(params):
                z = hs[-1] @ W + b
                hs.append(np.maximum(z, 0) if i < len(params) - 1 else z)
            p = np.exp(hs[-1] - hs[-1].max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            p[np.arange(len(idx)), y[idx]] -= 1
            g = p / len(idx)
            for i in range(len(params) - 1, -1, -1):
                W, b = params[i]
                gW, gb = hs[i].T @ g, g.sum(axis=0)
                if i:
                    g = (g @ W.T) * (hs[i] > 0)
                params[i] = (W - lr * gW, b - lr * gb)
    return params


def mlp_predict(params, x_u8):
    h = normalise(x_u8)
    for i, (W, b) in enumerate(params):
        h = h @ W + b
        if i < len(params) - 1:
            h = np.maximum(h, 0)
    return np.argmax(h, axis=1)


def mlp_onnx(params, seed=3):
    """The trained MLP as an ONNX model (input ``(N, 1, 28, 28)`` float ``pixel / 255``)."""
    rng = np.random.default_rng(seed)
    (W1, b1), (W2, b2), (W3, b3) = params
    n1 = W1.shape[1]
    eps = 1e-2
    gamma = rng.uniform(0.5, 2.0, n1).astype(np.float32)
    beta = rng.normal(0, 0.3, n1).astype(np.float32)
    mean = rng.normal(0, 0.5, n1).astype(np.float32)
    var = rng.uniform(0.05, 3.0, n1).astype(np.float32)
    # BN(h') = h  <=>  h' = (h - beta) * sqrt(var + eps) / gamma + mean
    k = np.sqrt(var + eps) / gamma
    W1p, b1p = W1 * k[None, :], (b1 - beta) * k + mean
    inits = [numpy_helper.from_array(np.asarray(a, np.float32), n) for n, a in [
        ("mean", np.full((1, 1, 1, 1), MEAN)), ("std", np.full((1, 1, 1, 1), STD)),
        ("fc1.weight", W1p), ("fc1.bias", b1p),
        ("bn.scale", gamma), ("bn.bias", beta), ("bn.mean", mean), ("bn.var", var),
        ("fc2.weight", W2), ("fc2.bias", b2), ("fc3.weight", W3.T), ("fc3.bias", b3)]]
    mk = helper.make_node
    nodes = [
        mk("Sub", ["input", "mean"], ["centred"], name="/norm/Sub"),
        mk("Div", ["centred", "std"], ["normed"], name="/norm/Div"),
        mk("Flatten", ["normed"], ["flat"], name="/Flatten", axis=1),
        mk("Gemm", ["flat", "fc1.weight", "fc1.bias"], ["h1"], name="/fc1/Gemm"),
        mk("BatchNormalization", ["h1", "bn.scale", "bn.bias", "bn.mean", "bn.var"], ["h1n"],
           name="/bn/BatchNormalization", epsilon=eps),
        mk("Relu", ["h1n"], ["a1"], name="/act1/Relu"),
        mk("Dropout", ["a1"], ["d1"], name="/drop/Dropout"),
        mk("MatMul", ["d1", "fc2.weight"], ["h2"], name="/fc2/MatMul"),
        mk("Add", ["h2", "fc2.bias"], ["h2b"], name="/fc2/Add"),
        mk("Relu", ["h2b"], ["a2"], name="/act2/Relu"),
        mk("Gemm", ["a2", "fc3.weight", "fc3.bias"], ["logits"], name="/fc3/Gemm", transB=1),
        mk("Softmax", ["logits"], ["probs"], name="/Softmax", axis=1),
    ]
    graph = helper.make_graph(
        nodes, "mlp128",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 28, 28])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 10])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def chain(nodes, inits, in_shape, out_shape, name="g"):
    """A small graph ``input -> nodes -> output`` (for the refusal tests)."""
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("input", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, out_shape)],
        initializer=[numpy_helper.from_array(np.asarray(a), n) for n, a in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model
