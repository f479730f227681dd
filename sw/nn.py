"""NumPy layers, the two LeNet models of the Deep Compression paper and a larger MLP (float32).

Every layer has ``forward(x, train)`` (caching what backward needs when ``train``) and
``backward(dy) -> dx``; weight layers (:class:`Dense`, :class:`Conv2D`) hold ``W``, ``b``, their
gradients ``dW``, ``db`` and an optional pruning ``mask`` (bool, shape of ``W``). The mask is
applied in the forward pass (``W * mask``) and to the weight gradient, so pruned weights stay
exactly zero and never receive updates.

Models (Caffe definitions, as in the paper):

- LeNet-300-100: ``ip1`` 784->300, ReLU, ``ip2`` 300->100, ReLU, ``ip3`` 100->10.
- LeNet-5: ``conv1`` 20 5x5, ReLU, maxpool 2, ``conv2`` 50 5x5, ReLU, maxpool 2, ``ip1``
  800->500, ReLU, ``ip2`` 500->10 (Caffe's ``lenet_train_test.prototxt`` has no ReLU after the
  convolutions; the accelerator's activations are unsigned after every hidden layer, so ours
  has one, docs/ARCHITECTURE.md section 1).
- MLP-1024: ``ip1`` 784->1024, ReLU, ``ip2`` 1024->1024, ReLU, ``ip3`` 1024->10 (1.86M
  weights, 7x LeNet-300-100: the model that needs the PE array; its layers are as wide as the
  accelerator's ``max_features``).
"""
import numpy as np

__all__ = ["NNError", "Dense", "Conv2D", "MaxPool2", "ReLU", "Flatten", "Reshape", "Model",
           "lenet300", "lenet5", "mlp1024", "build_model", "softmax_cross_entropy", "ARCHS"]

ARCHS = ("lenet300", "lenet5", "mlp1024")


class NNError(ValueError):
    """Bad model name, input shape or parameter set."""


class _WeightLayer:
    """Common part of :class:`Dense` and :class:`Conv2D`."""
    kind = None

    def __init__(self, name, shape, fan_in, rng):
        self.name = name
        # Xavier/Glorot-uniform over fan-in (Caffe's "xavier" filler).
        lim = np.sqrt(3.0 / fan_in)
        self.W = rng.uniform(-lim, lim, size=shape).astype(np.float32)
        self.b = np.zeros(shape[0], dtype=np.float32)
        self.mask = None
        self.dW = np.zeros_like(self.W)
        self.db = np.zeros_like(self.b)
        self.relu = False

    def weight(self):
        """Effective weight ``W * mask`` (``W`` when unpruned)."""
        return self.W if self.mask is None else self.W * self.mask

    def set_mask(self, mask):
        """Install a pruning mask (bool, shape of ``W``) and zero the pruned weights."""
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != self.W.shape:
            raise NNError(f"{self.name}: mask shape {mask.shape} != weight shape {self.W.shape}")
        self.mask = mask
        self.W *= mask

    def density(self):
        """Fraction of weights kept by the mask (1.0 without a mask)."""
        return 1.0 if self.mask is None else float(self.mask.mean())

    def _mask_grad(self):
        if self.mask is not None:
            self.dW *= self.mask


class Dense(_WeightLayer):
    """Fully-connected layer ``y = x @ W.T + b``.

    Parameters
    ----------
    name : str
    n_in, n_out : int
        Input / output features; ``W`` is float32 ``(n_out, n_in)``, ``b`` float32 ``(n_out,)``.
    rng : numpy.random.Generator
    """
    kind = "fc"

    def __init__(self, name, n_in, n_out, rng):
        super().__init__(name, (n_out, n_in), n_in, rng)

    def forward(self, x, train=False):
        if x.ndim != 2 or x.shape[1] != self.W.shape[1]:
            raise NNError(f"{self.name}: expected input (n, {self.W.shape[1]}), got {x.shape}")
        w = self.weight()
        if train:
            self._x = x
            self._w = w
        return x @ w.T + self.b

    def backward(self, dy):
        self.dW = dy.T @ self._x
        self.db = dy.sum(axis=0)
        self._mask_grad()
        return dy @ self._w


class Conv2D(_WeightLayer):
    """Valid (no padding), stride-1 convolution by im2col + one matmul.

    Parameters
    ----------
    name : str
    c_in, c_out, k : int
        Input / output channels and kernel size; ``W`` is float32 ``(c_out, c_in, k, k)``.
    rng : numpy.random.Generator

    Input ``(n, c_in, h, w)`` -> output ``(n, c_out, h - k + 1, w - k + 1)``.
    """
    kind = "conv"

    def __init__(self, name, c_in, c_out, k, rng):
        super().__init__(name, (c_out, c_in, k, k), c_in * k * k, rng)
        self.k = k

    def _cols(self, x):
        n, c, h, w = x.shape
        k = self.k
        win = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))
        # win: (n, c, oh, ow, k, k) -> (n, oh, ow, c, k, k) -> (n*oh*ow, c*k*k)
        oh, ow = h - k + 1, w - k + 1
        return np.ascontiguousarray(win.transpose(0, 2, 3, 1, 4, 5)).reshape(n * oh * ow,
                                                                             c * k * k)

    def forward(self, x, train=False):
        if x.ndim != 4 or x.shape[1] != self.W.shape[1] or x.shape[2] < self.k \
                or x.shape[3] < self.k:
            raise NNError(f"{self.name}: expected input (n, {self.W.shape[1]}, h>={self.k}, "
                          f"w>={self.k}), got {x.shape}")
        n, c, h, w = x.shape
        oh, ow = h - self.k + 1, w - self.k + 1
        cols = self._cols(x)
        wf = self.weight().reshape(self.W.shape[0], -1)
        y = cols @ wf.T + self.b
        if train:
            self._cols_cache = cols
            self._wf = wf
            self._xshape = x.shape
        return y.reshape(n, oh, ow, -1).transpose(0, 3, 1, 2)

    def backward(self, dy):
        n, oc, oh, ow = dy.shape
        dyf = dy.transpose(0, 2, 3, 1).reshape(-1, oc)
        self.dW = (dyf.T @ self._cols_cache).reshape(self.W.shape)
        self.db = dyf.sum(axis=0)
        self._mask_grad()
        dcols = (dyf @ self._wf).reshape(n, oh, ow, self.W.shape[1], self.k, self.k)
        dx = np.zeros(self._xshape, dtype=dy.dtype)
        for i in range(self.k):
            for j in range(self.k):
                dx[:, :, i:i + oh, j:j + ow] += dcols[:, :, :, :, i, j].transpose(0, 3, 1, 2)
        return dx


class MaxPool2:
    """2 x 2 max pooling, stride 2 (input height and width must be even)."""
    name = "pool"

    def forward(self, x, train=False):
        n, c, h, w = x.shape
        if h % 2 or w % 2:
            raise NNError(f"maxpool needs even height/width, got {x.shape}")
        v = x.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5)
        v = v.reshape(n, c, h // 2, w // 2, 4)
        arg = v.argmax(axis=-1)
        if train:
            self._arg = arg
            self._shape = x.shape
        return np.take_along_axis(v, arg[..., None], axis=-1)[..., 0]

    def backward(self, dy):
        n, c, h, w = self._shape
        g = np.zeros((n, c, h // 2, w // 2, 4), dtype=dy.dtype)
        np.put_along_axis(g, self._arg[..., None], dy[..., None], axis=-1)
        g = g.reshape(n, c, h // 2, w // 2, 2, 2).transpose(0, 1, 2, 4, 3, 5)
        return g.reshape(n, c, h, w)


class ReLU:
    """Rectified linear unit."""
    name = "relu"

    def forward(self, x, train=False):
        if train:
            self._pos = x > 0
        return np.maximum(x, 0)

    def backward(self, dy):
        return dy * self._pos


class Reshape:
    """Reshape ``(n, ...)`` to ``(n,) + shape`` (and back in backward)."""
    name = "reshape"

    def __init__(self, shape):
        self.shape = tuple(shape)

    def forward(self, x, train=False):
        self._in = x.shape
        return x.reshape((x.shape[0],) + self.shape)

    def backward(self, dy):
        return dy.reshape(self._in)


class Flatten(Reshape):
    """``(n, c, h, w)`` -> ``(n, c*h*w)``."""
    name = "flatten"

    def __init__(self):
        super().__init__((-1,))


class Model:
    """A sequential network.

    Parameters
    ----------
    arch : str
        Architecture name (recorded in the model file).
    layers : list
        Layers in execution order.
    input_shape : tuple of int
        Shape of one input sample as stored in the model file (``(784,)`` for both LeNets:
        LeNet-5 reshapes to ``(1, 28, 28)`` itself).
    """

    def __init__(self, arch, layers, input_shape):
        self.arch = arch
        self.layers = layers
        self.input_shape = tuple(input_shape)

    @property
    def weight_layers(self):
        """:class:`Dense` / :class:`Conv2D` layers in order."""
        return [l for l in self.layers if isinstance(l, _WeightLayer)]

    def layer(self, name):
        for l in self.weight_layers:
            if l.name == name:
                return l
        raise KeyError(name)

    def forward(self, x, train=False):
        """Logits ``(n, 10)`` float32 of inputs ``(n, 784)``."""
        h = np.asarray(x, dtype=np.float32)
        for l in self.layers:
            h = l.forward(h, train)
        return h

    def backward(self, dlogits):
        """Back-propagate ``dL/dlogits``; fills every weight layer's ``dW``, ``db``."""
        g = dlogits
        for l in reversed(self.layers):
            g = l.backward(g)
        return g

    def predict(self, x, batch=2000):
        """Predicted classes (int64) in batches."""
        out = [np.argmax(self.forward(x[i:i + batch]), axis=1) for i in range(0, len(x), batch)]
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

    def error(self, x, y, batch=2000):
        """Classification error (fraction) on ``(x, y)``."""
        return float((self.predict(x, batch) != np.asarray(y)).mean())

    def get_params(self):
        """Copy of ``{name: (W, b, mask or None)}``."""
        return {l.name: (l.W.copy(), l.b.copy(), None if l.mask is None else l.mask.copy())
                for l in self.weight_layers}

    def set_params(self, params):
        """Restore parameters produced by :meth:`get_params`."""
        for l in self.weight_layers:
            if l.name not in params:
                raise NNError(f"parameters lack layer {l.name!r}")
            W, b, mask = params[l.name]
            if W.shape != l.W.shape or b.shape != l.b.shape:
                raise NNError(f"{l.name}: parameter shapes {W.shape}/{b.shape} do not match "
                              f"{l.W.shape}/{l.b.shape}")
            l.W = np.array(W, dtype=np.float32)
            l.b = np.array(b, dtype=np.float32)
            l.mask = None
            if mask is not None:
                l.set_mask(mask)

    def n_weights(self):
        return sum(l.W.size for l in self.weight_layers)


def softmax_cross_entropy(logits, labels):
    """Mean cross-entropy loss and its gradient w.r.t. the logits.

    Parameters
    ----------
    logits : numpy.ndarray
        float ``(n, classes)``.
    labels : numpy.ndarray
        int ``(n,)``.

    Returns
    -------
    loss : float
    dlogits : numpy.ndarray
        ``(n, classes)`` = ``(softmax - onehot) / n`` (float32, or float64 for float64 logits).
    """
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    s = e.sum(axis=1, keepdims=True)
    n = len(labels)
    logp = z - np.log(s)
    loss = -float(logp[np.arange(n), labels].mean())
    g = e / s
    g[np.arange(n), labels] -= 1.0
    return loss, (g / n).astype(np.result_type(logits.dtype, np.float32), copy=False)


def lenet300(seed=0):
    """LeNet-300-100 (784-300-100-10, ReLU)."""
    rng = np.random.default_rng(seed)
    ip1, ip2, ip3 = Dense("ip1", 784, 300, rng), Dense("ip2", 300, 100, rng), \
        Dense("ip3", 100, 10, rng)
    ip1.relu = ip2.relu = True
    return Model("lenet300", [ip1, ReLU(), ip2, ReLU(), ip3], (784,))


def lenet5(seed=0):
    """LeNet-5: conv 20 5x5, ReLU, pool, conv 50 5x5, ReLU, pool, fc 500 (ReLU), fc 10."""
    rng = np.random.default_rng(seed)
    c1, c2 = Conv2D("conv1", 1, 20, 5, rng), Conv2D("conv2", 20, 50, 5, rng)
    ip1, ip2 = Dense("ip1", 800, 500, rng), Dense("ip2", 500, 10, rng)
    c1.relu = c2.relu = ip1.relu = True
    return Model("lenet5", [Reshape((1, 28, 28)), c1, ReLU(), MaxPool2(), c2, ReLU(), MaxPool2(),
                            Flatten(), ip1, ReLU(), ip2], (784,))


def mlp1024(seed=0):
    """MLP 784-1024-1024-10 (ReLU), named like LeNet-300-100's layers."""
    rng = np.random.default_rng(seed)
    ip1, ip2, ip3 = Dense("ip1", 784, 1024, rng), Dense("ip2", 1024, 1024, rng), \
        Dense("ip3", 1024, 10, rng)
    ip1.relu = ip2.relu = True
    return Model("mlp1024", [ip1, ReLU(), ip2, ReLU(), ip3], (784,))


_BUILDERS = {"lenet300": lenet300, "lenet5": lenet5, "mlp1024": mlp1024}


def build_model(arch, seed=0):
    """Model by name (one of :data:`ARCHS`)."""
    if arch in _BUILDERS:
        return _BUILDERS[arch](seed)
    raise NNError(f"unknown model {arch!r}; choose one of {', '.join(ARCHS)}")
