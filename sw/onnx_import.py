"""ONNX graph -> the project's float model (:class:`sw.nn.Model`), for ``sw.compress --onnx``.

Supported: a single chain of nodes from one float input to one output (no branches) made of

- ``Gemm`` (``transB`` 0 or 1, ``alpha``, ``beta``, optional ``C``; ``transA = 0``) and
  ``MatMul`` with a constant right operand (its ``Add`` bias is folded, see below): ``Dense``;
- ``Conv`` (2-D, square kernel, stride 1, no padding, dilation 1, one group: what
  :class:`sw.nn.Conv2D` computes) and ``MaxPool`` (2 x 2, stride 2, no padding, even input):
  :class:`sw.nn.MaxPool2`;
- ``Relu``; ``Flatten`` (``axis = 1``); ``Reshape`` to a constant shape that keeps the batch
  dimension (``0`` or ``-1`` first), or to one computed from ``Shape`` by ``Gather``,
  ``Unsqueeze``, ``Squeeze``, ``Concat``, ``Cast`` (PyTorch's ``x.view(x.size(0), -1)``);
- ``Identity`` and ``Dropout`` (inference: identity) are dropped, and so is a final ``Softmax``
  or ``LogSoftmax`` (the argmax does not change);
- elementwise ``Sub``/``Add``/``Mul``/``Div`` by a constant and ``BatchNormalization``
  (inference) are folded into the weights: after a layer (before its ``Relu``) into that layer's
  rows and bias, elsewhere (input normalisation ``(x - mean) / std``, a batch norm after a
  ``Relu``) into the next layer's columns and bias (before a convolution only per channel).

Refusals raise :class:`OnnxImportError` naming the node (name and op type) and the limit, and
whether it is a software limit (what this importer or ``sw.nn`` can represent) or a hardware
limit (what the accelerator runs; only checked for fully-connected models, which are the ones the
accelerator runs: every hidden layer ends in ``Relu``, the last has none, at most
``sw.pack.PackLimits().max_layers`` layers of at most ``max_features`` inputs / outputs and at
most ``max_logits`` classes). Convolutional models are imported for float compression only.

Layers are named ``fc1, fc2, ...`` and ``conv1, conv2, ...`` in order (the names of
``--density`` / ``--bits``); :attr:`ImportedModel.sources` gives the ONNX node of each.
"""
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sw.nn import Conv2D, Dense, Flatten, MaxPool2, Model, ReLU, Reshape
from sw.pack import PackLimits

__all__ = ["OnnxImportError", "ImportedModel", "import_onnx", "fold_input_scale",
           "check_hardware", "SUPPORTED_OPS", "SHAPE_OPS"]

SUPPORTED_OPS = ("Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "BatchNormalization", "Relu",
                 "Conv", "MaxPool", "Flatten", "Reshape", "Identity", "Dropout", "Softmax",
                 "LogSoftmax", "Constant", "Shape", "Gather", "Unsqueeze", "Squeeze", "Concat",
                 "Cast")
#: Shape computations evaluated as constants (the batch size is 0: "copy" for ``Reshape``).
SHAPE_OPS = ("Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Cast")
#: Activation functions the accelerator does not have (it requantizes with ReLU only).
_OTHER_ACTIVATIONS = ("Sigmoid", "Tanh", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "Gelu",
                      "HardSigmoid", "HardSwish", "Softplus", "Softsign", "Clip", "Mish",
                      "ThresholdedRelu", "Swish")


class OnnxImportError(ValueError):
    """An ONNX graph the importer cannot represent or the accelerator cannot run.

    Attributes
    ----------
    node : str or None
        Name of the offending node (``None`` for file-level problems).
    op : str or None
        Its op type.
    limit : str or None
        ``"software"`` or ``"hardware"``.
    """

    def __init__(self, message, node=None, op=None, limit=None):
        self.node, self.op, self.limit = node, op, limit
        where = "" if node is None and op is None else f"node {node!r} ({op}): "
        tail = "" if limit is None else f" [{limit} limit]"
        super().__init__(f"{where}{message}{tail}")


@dataclass
class ImportedModel:
    """Result of :func:`import_onnx`.

    Attributes
    ----------
    model : sw.nn.Model
        Float model whose input is the ONNX input flattened, in the ONNX model's own value range
        (:func:`fold_input_scale` moves it to the project's ``byte / 256``).
    sample_shape : tuple of int
        Shape of one ONNX input sample (without the batch dimension).
    sources : dict of str to str
        Layer name -> ``"node name (op type)"`` it came from.
    folded : list of str
        Nodes folded into weights or dropped (for the log).
    node_of : dict
        ``id(layer)`` -> ``(node name, op type)`` for the layers of :attr:`model`.
    """
    model: Model
    sample_shape: tuple
    sources: dict = field(default_factory=dict)
    folded: list = field(default_factory=list)
    node_of: dict = field(default_factory=dict)


def _onnx():
    try:
        # lazy: onnx is the optional [onnx] extra; the rest of sw runs without it
        import onnx
        from onnx import numpy_helper
    except ImportError:  # pragma: no cover - tools/setup installs it
        raise OnnxImportError("the 'onnx' package is not installed; run tools/setup "
                              "(pip install -e '.[onnx]')") from None
    return onnx, numpy_helper


def _load(source):
    onnx, _ = _onnx()
    if isinstance(source, onnx.ModelProto):
        proto = source
    else:
        try:
            proto = onnx.load_model_from_string(source) if isinstance(source, bytes) \
                else onnx.load(str(source))
        except FileNotFoundError:
            raise OnnxImportError(f"ONNX file {source} not found") from None
        except Exception as e:  # protobuf DecodeError, OSError...
            raise OnnxImportError(f"cannot read ONNX model {source}: {type(e).__name__}: {e}") \
                from None
    try:
        onnx.checker.check_model(proto)
    except Exception as e:  # onnx.checker.ValidationError
        raise OnnxImportError(f"invalid ONNX model: {str(e).splitlines()[0]}") from None
    return proto


def _attrs(node):
    onnx, _ = _onnx()
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


class _Builder:
    """Walks the chain, keeping the pending affine map ``v -> a * v + c`` of the current tensor
    (``a``, ``c`` float64 arrays of the current per-sample shape) until it can be folded."""

    def __init__(self, proto):
        _, self.nh = _onnx()
        g = proto.graph
        self.graph = g
        self.const = {t.name: self._array(t) for t in g.initializer}
        self.layers = []            # sw.nn layers
        self.sources = {}
        self.node_of = {}           # id(layer) -> (node name, op)
        self.index = 0
        self.folded = []
        self.pending = None         # (a, c) or None
        self.since_weight = None    # index of the last weight layer if only reshapes since
        self.n_fc = self.n_conv = 0

    # -- helpers ------------------------------------------------------------------------------

    def _array(self, tensor):
        """A constant tensor as NumPy (floats as float64: the folding is done in double)."""
        arr = self.nh.to_array(tensor)
        return arr.astype(np.float64) if arr.dtype.kind == "f" else arr

    def fail(self, node, msg, limit="software"):
        raise OnnxImportError(msg, node.name or f"#{self.index}", node.op_type, limit)

    def constant(self, name):
        return self.const.get(name)

    def shape_of_batch(self):
        return (1,) + self.shape

    def take_affine(self, node, a, c):
        """Compose ``v -> a * v + c`` (broadcast to the current shape) onto the pending map."""
        try:
            a = np.broadcast_to(np.asarray(a, np.float64), self.shape_of_batch())[0]
            c = np.broadcast_to(np.asarray(c, np.float64), self.shape_of_batch())[0]
        except ValueError:
            self.fail(node, f"constant operand does not broadcast to the per-sample shape "
                            f"{self.shape} (a batch-dependent constant)")
        if not (np.all(np.isfinite(a)) and np.all(np.isfinite(c))):
            self.fail(node, "constant operand gives a non-finite scale or offset (division by "
                            "zero?)")
        if self.pending is None:
            self.pending = (a.copy(), c.copy())
        else:
            pa, pc = self.pending
            self.pending = (a * pa, a * pc + c)
        self.folded.append(f"{node.name or node.op_type} ({node.op_type}) folded")

    def flush_into_previous(self):
        """Fold the pending map into the output rows of the weight layer just before (only
        reshapes in between). Returns ``False`` when there is no such layer or the map is not
        per output channel."""
        if self.pending is None:
            return True
        if self.since_weight is None:
            return False
        layer = self.layers[self.since_weight]
        a, c = self.pending
        out = layer.W.shape[0]
        if isinstance(layer, Conv2D):
            a = a.reshape(out, -1)
            c = c.reshape(out, -1)
            if not (np.all(a == a[:, :1]) and np.all(c == c[:, :1])):
                return False
            a, c = a[:, 0], c[:, 0]
        else:
            a, c = a.reshape(out), c.reshape(out)
        shape = (out,) + (1,) * (layer.W.ndim - 1)
        layer.W = (layer.W.astype(np.float64) * a.reshape(shape)).astype(np.float32)
        layer.b = (layer.b.astype(np.float64) * a + c).astype(np.float32)
        self.pending = None
        return True

    def pass_nonlinearity(self, node, per_channel_ok):
        """A ``Relu``/``MaxPool`` is next: the pending map must be folded before it or commute
        with it (positive scale, no offset)."""
        if self.pending is None or self.flush_into_previous():
            return
        a, c = self.pending
        if np.all(c == 0) and np.all(a > 0) and per_channel_ok(a):
            return
        self.fail(node, "a scale/offset (Sub/Add/Mul/Div/BatchNormalization) before this node "
                        "cannot be folded into a neighbouring layer's weights")

    def fold_into_input(self, node, layer):
        """Fold the pending map into the columns and bias of the new weight layer."""
        if self.pending is None:
            return
        a, c = self.pending
        W = layer.W.astype(np.float64)
        if isinstance(layer, Conv2D):
            ch = a.shape[0]
            a2, c2 = a.reshape(ch, -1), c.reshape(ch, -1)
            if not (np.all(a2 == a2[:, :1]) and np.all(c2 == c2[:, :1])):
                self.fail(node, "a scale/offset that varies inside a channel cannot be folded "
                                "into a convolution's shared weights (only per channel)")
            a_ch, c_ch = a2[:, 0], c2[:, 0]
            b = layer.b + (W * c_ch[None, :, None, None]).sum(axis=(1, 2, 3))
            W = W * a_ch[None, :, None, None]
        else:
            a, c = a.reshape(-1), c.reshape(-1)
            b = layer.b + W @ c
            W = W * a[None, :]
        layer.W, layer.b = W.astype(np.float32), b.astype(np.float32)
        self.pending = None

    def add_weight_layer(self, node, layer):
        # a pending map goes into the previous layer's rows if it can (a bias stays with its
        # layer), else into this layer's columns
        self.flush_into_previous()
        self.fold_into_input(node, layer)
        self.layers.append(layer)
        self.sources[layer.name] = f"{node.name or '#' + str(self.index)} ({node.op_type})"
        self.node_of[id(layer)] = (node.name or f"#{self.index}", node.op_type)
        self.since_weight = len(self.layers) - 1

    # -- ops ----------------------------------------------------------------------------------

    def op_gemm(self, node, at):
        if len(self.shape) != 1:
            self.fail(node, f"input has per-sample shape {self.shape}; Gemm needs a flat vector "
                            "(add a Flatten)")
        if at.get("transA", 0):
            self.fail(node, "transA=1 (the activations transposed) is not supported")
        B = self.constant(node.input[1])
        if B is None or B.ndim != 2:
            self.fail(node, "operand B must be a constant 2-D weight matrix (initializer)")
        W = B if at.get("transB", 0) else B.T
        if W.shape[1] != self.shape[0]:
            self.fail(node, f"weights {W.shape} do not match {self.shape[0]} inputs")
        W = W * float(at.get("alpha", 1.0))
        b = np.zeros(W.shape[0])
        if len(node.input) > 2 and node.input[2]:
            C = self.constant(node.input[2])
            if C is None:
                self.fail(node, "operand C must be a constant bias (initializer)")
            try:
                b = np.broadcast_to(C * float(at.get("beta", 1.0)), (1, W.shape[0]))[0]
            except ValueError:
                self.fail(node, f"bias of shape {C.shape} does not broadcast to "
                                f"{W.shape[0]} outputs")
        self.new_dense(node, W, b)

    def op_matmul(self, node, at):
        if self.constant(node.input[0]) is not None:
            self.fail(node, "the constant is the left operand (W @ x); only x @ W is supported")
        B = self.constant(node.input[1])
        if B is None or B.ndim != 2:
            self.fail(node, "the right operand must be a constant 2-D matrix (initializer)")
        if len(self.shape) != 1 or B.shape[0] != self.shape[0]:
            self.fail(node, f"input per-sample shape {self.shape} does not match the weights "
                            f"{B.shape} (flatten first)")
        self.new_dense(node, B.T, np.zeros(B.shape[1]))

    def new_dense(self, node, W, b):
        self.n_fc += 1
        layer = Dense(f"fc{self.n_fc}", W.shape[1], W.shape[0], np.random.default_rng(0))
        layer.W = np.asarray(W, np.float32).copy()
        layer.b = np.asarray(b, np.float32).copy()
        self.add_weight_layer(node, layer)
        self.shape = (W.shape[0],)

    def op_conv(self, node, at):
        W = self.constant(node.input[1])
        if W is None or W.ndim != 4:
            self.fail(node, "only 2-D convolutions with constant weights are supported")
        if at.get("group", 1) != 1:
            self.fail(node, f"group={at['group']}: grouped/depthwise convolutions are not "
                            "supported (sw.nn.Conv2D has one group)")
        if len(self.shape) != 3 or self.shape[0] != W.shape[1]:
            self.fail(node, f"input per-sample shape {self.shape} is not (channels={W.shape[1]}, "
                            "height, width)")
        k = W.shape[2]
        if W.shape[3] != k or list(at.get("kernel_shape", [k, k])) != [k, k]:
            self.fail(node, f"kernel {list(W.shape[2:])}: only square kernels are supported")
        if any(s != 1 for s in at.get("strides", [1, 1])):
            self.fail(node, f"strides={list(at['strides'])}: only stride 1 is supported")
        if any(d != 1 for d in at.get("dilations", [1, 1])):
            self.fail(node, f"dilations={list(at['dilations'])}: only dilation 1 is supported")
        pads = list(at.get("pads", [0, 0, 0, 0]))
        auto = at.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        if any(pads) or auto not in ("NOTSET", "VALID"):
            self.fail(node, f"padding (pads={pads}, auto_pad={auto}): only valid (unpadded) "
                            "convolutions are supported")
        c, h, w = self.shape
        if h < k or w < k:
            self.fail(node, f"kernel {k} is larger than the {h}x{w} input")
        b = np.zeros(W.shape[0])
        if len(node.input) > 2 and node.input[2]:
            b = self.constant(node.input[2])
            if b is None or b.shape != (W.shape[0],):
                self.fail(node, "bias must be a constant vector of one value per output channel")
        self.n_conv += 1
        layer = Conv2D(f"conv{self.n_conv}", c, W.shape[0], k, np.random.default_rng(0))
        layer.W = W.astype(np.float32).copy()
        layer.b = np.asarray(b, np.float32).copy()
        self.add_weight_layer(node, layer)
        self.shape = (W.shape[0], h - k + 1, w - k + 1)

    def op_maxpool(self, node, at):
        if len(self.shape) != 3:
            self.fail(node, f"input per-sample shape {self.shape} is not (channels, h, w)")
        ks = list(at.get("kernel_shape", []))
        st = list(at.get("strides", ks))
        pads = list(at.get("pads", [0, 0, 0, 0]))
        auto = at.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        if ks != [2, 2] or st != [2, 2] or any(pads) or auto not in ("NOTSET", "VALID") \
                or any(d != 1 for d in at.get("dilations", [1, 1])) or at.get("ceil_mode", 0):
            self.fail(node, f"kernel {ks}, strides {st}, pads {pads}: only 2x2 pooling with "
                            "stride 2 and no padding is supported (sw.nn.MaxPool2)")
        if len(node.output) > 1 and node.output[1]:
            self.fail(node, "the Indices output is not supported")
        c, h, w = self.shape
        if h % 2 or w % 2:
            self.fail(node, f"input {h}x{w}: 2x2 pooling needs an even height and width")
        self.pass_nonlinearity(node, lambda a: np.all(a.reshape(c, -1) == a.reshape(c, -1)[:, :1]))
        self.layers.append(MaxPool2())
        self.node_of[id(self.layers[-1])] = (node.name or f"#{self.index}", node.op_type)
        self.since_weight = None
        self.shape = (c, h // 2, w // 2)

    def op_relu(self, node, at):
        self.pass_nonlinearity(node, lambda a: True)
        prev = self.layers[-1] if self.layers else None
        if isinstance(prev, (Dense, Conv2D)):
            prev.relu = True
        self.layers.append(ReLU())
        self.node_of[id(self.layers[-1])] = (node.name or f"#{self.index}", node.op_type)
        self.since_weight = None

    def reshape_to(self, node, new):
        new = tuple(int(s) for s in new)
        if int(np.prod(new)) != int(np.prod(self.shape)):
            self.fail(node, f"reshape from {self.shape} to {new} changes the sample size")
        if new == self.shape:
            return
        if self.pending is not None:
            a, c = self.pending
            self.pending = (a.reshape(new), c.reshape(new))
        self.layers.append(Flatten() if len(new) == 1 else Reshape(new))
        self.shape = new

    def op_flatten(self, node, at):
        if at.get("axis", 1) != 1:
            self.fail(node, f"axis={at['axis']}: only Flatten(axis=1) (keep the batch "
                            "dimension) is supported")
        self.reshape_to(node, (int(np.prod(self.shape)),))

    def op_reshape(self, node, at):
        target = self.constant(node.input[1]) if len(node.input) > 1 else None
        if target is None:
            self.fail(node, "the target shape must be a constant or computed from the input's "
                            f"Shape by {', '.join(SHAPE_OPS[1:])}")
        target = [int(v) for v in np.asarray(target).reshape(-1)]
        if not target or not (target[0] in (0, -1) or (target[0] == 1 and self.batch == 1)):
            self.fail(node, f"target shape {target} does not keep the batch dimension (its "
                            "first entry must be 0 or -1)")
        rest = target[1:]
        if at.get("allowzero", 0) and 0 in rest:
            self.fail(node, "allowzero with a zero dimension is not supported")
        rest = [self.shape[i] if v == 0 and i < len(self.shape) else v
                for i, v in enumerate(rest)]
        if target[0] == -1 and -1 in rest:
            self.fail(node, f"target shape {target} has two -1 entries")
        size = int(np.prod(self.shape))
        if -1 in rest:
            known = int(np.prod([v for v in rest if v != -1]))
            if known <= 0 or size % known:
                self.fail(node, f"target shape {target} does not fit {self.shape}")
            rest = [size // known if v == -1 else v for v in rest]
        if not rest:
            self.fail(node, f"target shape {target} drops the features")
        self.reshape_to(node, rest)

    def op_affine(self, node, at):
        ins = list(node.input)
        consts = [self.constant(n) for n in ins]
        if len(ins) != 2 or sum(c is None for c in consts) != 1:
            self.fail(node, f"{node.op_type} of two computed tensors (a branch, e.g. a residual "
                            "connection) is not supported; only a constant operand is folded")
        first_is_x = consts[0] is None
        k = consts[1] if first_is_x else consts[0]
        if k.dtype.kind not in "fiu":
            self.fail(node, "constant operand must be numeric")
        k = k.astype(np.float64)
        op = node.op_type
        if op == "Add":
            self.take_affine(node, 1.0, k)
        elif op == "Sub" and first_is_x:
            self.take_affine(node, 1.0, -k)
        elif op == "Sub":
            self.take_affine(node, -1.0, k)
        elif op == "Mul":
            self.take_affine(node, k, 0.0)
        elif op == "Div":
            if not first_is_x:
                self.fail(node, "constant / x is not linear and cannot be folded")
            if np.any(k == 0):
                self.fail(node, "division by zero in the constant operand")
            self.take_affine(node, 1.0 / k, 0.0)

    def op_batchnormalization(self, node, at):
        if at.get("training_mode", 0) or len([o for o in node.output if o]) > 1:
            self.fail(node, "training-mode batch normalization is not supported (export the "
                            "model in eval mode)")
        params = [self.constant(n) for n in node.input[1:5]]
        if len(params) != 4 or any(p is None for p in params):
            self.fail(node, "scale, B, mean and var must be constants")
        scale, bias, mean, var = (p.astype(np.float64).reshape(-1) for p in params)
        ch = self.shape[0]
        if scale.size != ch:
            self.fail(node, f"{scale.size} parameters for {ch} channels")
        a = scale / np.sqrt(var + float(at.get("epsilon", 1e-5)))
        c = bias - mean * a
        shape = (ch,) + (1,) * (len(self.shape) - 1)
        self.take_affine(node, a.reshape(shape), c.reshape(shape))

    def fold_shape_op(self, node, cur, consumers):
        """Evaluate a shape computation (PyTorch's ``x.view(x.size(0), -1)``: ``Shape``,
        ``Gather``, ``Unsqueeze``, ``Concat``...) into a constant; the batch size is ``0``
        (``Reshape``'s "copy this dimension"). ``False`` when an input is not constant."""
        op, at = node.op_type, _attrs(node)
        out = node.output[0]
        if op == "Shape":
            if node.input[0] != cur:
                self.fail(node, "Shape of a tensor other than the chain's current one")
            full = np.array((0,) + tuple(self.shape), np.int64)
            self.const[out] = full[at.get("start", 0):at.get("end", len(full))]
            consumers[cur] -= 1
            return True
        ins = [self.const.get(n) if n else None for n in node.input]
        if ins[0] is None or any(v is None for v, n in zip(ins, node.input) if n):
            return False
        x = np.asarray(ins[0])
        if op == "Gather":
            val = np.take(x, np.asarray(ins[1]).astype(np.int64), axis=at.get("axis", 0))
        elif op in ("Unsqueeze", "Squeeze"):
            axes = at.get("axes", None)
            if axes is None and len(ins) > 1 and ins[1] is not None:
                axes = [int(v) for v in np.asarray(ins[1]).reshape(-1)]
            if op == "Unsqueeze":
                val = x
                for ax in sorted(a % (x.ndim + len(axes)) for a in axes):
                    val = np.expand_dims(val, ax)
            else:
                val = np.squeeze(x, axis=None if axes is None else tuple(axes))
        elif op == "Concat":
            val = np.concatenate([np.atleast_1d(np.asarray(v)) for v in ins],
                                 axis=at.get("axis", 0))
        else:  # Cast: shapes stay integers
            val = x
        self.const[out] = np.asarray(val)
        return True

    # -- driver -------------------------------------------------------------------------------

    def run(self):
        g = self.graph
        for node in g.node:           # Constant nodes are constants like initializers
            if node.op_type == "Constant":
                at = _attrs(node)
                if "value" not in at:
                    self.index = 0
                    self.fail(node, "only a Constant with a tensor 'value' is supported")
                self.const[node.output[0]] = self._array(at["value"])
        inputs = [i for i in g.input if i.name not in self.const]
        if len(inputs) != 1:
            raise OnnxImportError(f"the graph has {len(inputs)} inputs "
                                  f"({', '.join(i.name for i in inputs)}); exactly one is "
                                  "supported", limit="software")
        if len(g.output) != 1:
            raise OnnxImportError(f"the graph has {len(g.output)} outputs; exactly one is "
                                  "supported", limit="software")
        inp = inputs[0]
        tt = inp.type.tensor_type
        if tt.elem_type != 1:
            raise OnnxImportError(f"input {inp.name!r} is not float32 (element type "
                                  f"{tt.elem_type})", limit="software")
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
        if len(dims) < 2 or any(d is None or d <= 0 for d in dims[1:]):
            raise OnnxImportError(f"input {inp.name!r} has shape {dims}: needs (batch, ...) with "
                                  "fixed sizes after the batch dimension", limit="software")
        self.batch = dims[0]
        self.sample_shape = tuple(dims[1:])
        self.shape = self.sample_shape
        consumers = {}
        for node in g.node:
            for n in node.input:
                consumers[n] = consumers.get(n, 0) + 1
        for o in g.output:
            consumers[o.name] = consumers.get(o.name, 0) + 1
        cur = inp.name
        if len(self.shape) > 1:
            self.layers.append(Reshape(self.shape))
        nodes = [n for n in g.node if n.op_type != "Constant"]
        for self.index, node in enumerate(nodes):
            op = node.op_type
            if op in SHAPE_OPS and self.fold_shape_op(node, cur, consumers):
                continue
            if all(n in self.const for n in node.input if n):
                self.fail(node, f"computing on constants with {op} is not supported (only "
                                f"{', '.join(SHAPE_OPS)} are evaluated, e.g. the batch size "
                                "in x.view(x.size(0), -1))")
            if cur not in node.input:
                self.fail(node, f"does not take the chain's tensor {cur!r} (branches or "
                                "parallel paths are not supported)")
            if consumers.get(cur, 0) > 1:
                self.fail(node, f"tensor {cur!r} feeds {consumers[cur]} nodes (branches are not "
                                "supported)")
            outs = [o for o in node.output if o]
            at = _attrs(node)
            if op in ("Identity", "Dropout"):
                if len(outs) > 1 and consumers.get(outs[1], 0):
                    self.fail(node, "the Dropout mask output is used")
                self.folded.append(f"{node.name or op} ({op}) dropped")
            elif op in ("Softmax", "LogSoftmax"):
                if self.index != len(nodes) - 1:
                    self.fail(node, f"{op} is only supported as the final node (dropped: the "
                                    "accelerator outputs logits and their argmax)")
                if len(self.shape) != 1 or at.get("axis", -1) not in (-1, 1):
                    self.fail(node, f"{op} must run over the class axis of (batch, classes)")
                self.folded.append(f"{node.name or op} ({op}) dropped (argmax unchanged)")
            elif op in ("Gemm", "MatMul", "Conv", "MaxPool", "Relu", "Flatten", "Reshape",
                        "BatchNormalization"):
                getattr(self, f"op_{op.lower()}")(node, at)
            elif op in ("Add", "Sub", "Mul", "Div"):
                self.op_affine(node, at)
            elif op in _OTHER_ACTIVATIONS:
                self.fail(node, f"activation {op} is not supported: the accelerator's only "
                                "activation is ReLU (requantize and clamp), and sw.nn has only "
                                "ReLU", limit="hardware")
            else:
                self.fail(node, f"unsupported operator {op}; supported: "
                                f"{', '.join(SUPPORTED_OPS)}")
            cur = outs[0]
        if cur != g.output[0].name:
            raise OnnxImportError(f"the graph output {g.output[0].name!r} is not the end of the "
                                  "chain", limit="software")
        if not any(isinstance(l, (Dense, Conv2D)) for l in self.layers):
            raise OnnxImportError("the graph has no Gemm, MatMul or Conv layer", limit="software")
        if self.pending is not None and not self.flush_into_previous():
            raise OnnxImportError("a scale/offset after the last layer cannot be folded into it",
                                  limit="software")
        if len(self.shape) != 1:
            raise OnnxImportError(f"the output has per-sample shape {self.shape}; a classifier "
                                  "outputs (batch, classes)", limit="software")
        return self.layers


def check_hardware(imported, limits=None):
    """Raise :class:`OnnxImportError` (hardware limit) if the accelerator cannot run the model.

    Only fully-connected models are checked (convolutional ones are compressed in float only):
    every hidden layer ends in ReLU and the last does not, layer count, feature counts and
    class count within ``limits`` (``sw.pack.PackLimits``, default: the default accelerator).
    """
    limits = limits or PackLimits()
    model = imported.model
    wl = model.weight_layers
    if any(isinstance(l, Conv2D) for l in wl):
        return
    src = imported.node_of

    def fail(layer, msg):
        name, op = src[id(layer)]
        raise OnnxImportError(msg, name, op, "hardware")
    for l in model.layers:
        if isinstance(l, MaxPool2):
            fail(l, "pooling in a fully-connected model: the accelerator runs fully-connected "
                    "layers only")
    if len(wl) > limits.max_layers:
        fail(wl[limits.max_layers], f"layer {len(wl)} of {len(wl)}: the accelerator holds at "
                                    f"most {limits.max_layers} layers")
    seq = [l for l in model.layers if not isinstance(l, (Reshape,))]
    for i, l in enumerate(wl):
        if max(l.W.shape) > limits.max_features:
            fail(l, f"{l.W.shape[1]} -> {l.W.shape[0]} features: the accelerator supports at "
                    f"most {limits.max_features} inputs or outputs per layer")
        pos = seq.index(l)
        nxt = seq[pos + 1] if pos + 1 < len(seq) else None
        last = i == len(wl) - 1
        if not last and not isinstance(nxt, ReLU):
            fail(l, "hidden layer not followed by Relu: the accelerator requantizes every "
                    "hidden layer with ReLU")
        if last and nxt is not None:
            fail(l, "the last layer is followed by Relu: the accelerator outputs the raw "
                    "logits of the last layer")
    if wl[-1].W.shape[0] > limits.max_logits:
        fail(wl[-1], f"{wl[-1].W.shape[0]} classes: the logit index is 8 bits (at most "
                     f"{limits.max_logits})")


def import_onnx(source, name=None, hardware=True, limits=None):
    """Read an ONNX classifier into a :class:`sw.nn.Model`.

    Parameters
    ----------
    source : str, pathlib.Path, bytes or onnx.ModelProto
    name : str, optional
        Architecture name recorded in the model file (default: the file stem or the graph
        name).
    hardware : bool
        Check the accelerator's limits (:func:`check_hardware`) for fully-connected models.
    limits : sw.pack.PackLimits, optional

    Returns
    -------
    ImportedModel

    Raises
    ------
    OnnxImportError
        Naming the node (name and op type), the limit and whether it is a software or a
        hardware limit.
    """
    proto = _load(source)
    b = _Builder(proto)
    layers = b.run()
    if name is None:
        name = Path(source).stem if isinstance(source, (str, Path)) else \
            (proto.graph.name or "onnx")
    feats = int(np.prod(b.sample_shape))
    model = Model(name, layers, (feats,))
    imp = ImportedModel(model, b.sample_shape, b.sources, b.folded, b.node_of)
    if hardware:
        check_hardware(imp, limits)
    return imp


def fold_input_scale(model, input_scale):
    """Make ``model`` (inputs ``v = byte * input_scale``) take the project's ``byte / 256``:
    the first weight layer's weights are multiplied by ``256 * input_scale`` (in place)."""
    first = model.weight_layers[0]
    k = 256.0 * float(input_scale)
    if k != 1.0:
        first.W = (first.W.astype(np.float64) * k).astype(np.float32)
    return model
