"""Compressed model file, format ``dcmodel`` version 1 (docs/ARCHITECTURE.md section 2).

A NumPy ``.npz`` (zip) holding ``header.json`` (UTF-8 JSON as a uint8 array) and, per layer
``NAME``: ``NAME.index`` (uint8, weight shape, 0 = pruned), ``NAME.codebook`` (float32,
``2^idx_bits`` entries, ``[0] == 0``), ``NAME.bias`` (float32, ``out``) and, once calibrated,
``NAME.cb_q`` / ``NAME.bias_q`` (int32). The header records a SHA-256 digest of every array's
bytes; :func:`load_model` checks magic, version, every header field's JSON type and range, that
the layers chain (``input_shape`` -> first layer -> ... -> last), digests, shapes, dtypes and
index ranges, and raises :class:`ModelFormatError` naming the field or array
(``layers[1].shape: ...``); :func:`save_model` runs the same checks before writing.
"""
import hashlib
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from contract.widths import WIDTH_DEFAULTS, WIDTH_KEYS, WIDTH_RANGES

__all__ = ["FORMAT", "VERSION", "ModelFormatError", "LayerRecord", "IntegerParams",
           "CompressedModel", "save_model", "load_model", "array_digest", "INTEGER_WIDTH_KEYS",
           "INTEGER_WIDTH_RANGES"]

FORMAT = "dcmodel"
VERSION = 1
HEADER = "header.json"
#: Width parameters of section 1 stored in the integer section.
INTEGER_WIDTH_KEYS = WIDTH_KEYS
_LAYER_INT_KEYS = ("shift", "bias_shift", "s_in", "s_out")
#: Accepted range of each width (``contract.widths.WIDTH_RANGES``).
INTEGER_WIDTH_RANGES = WIDTH_RANGES


class ModelFormatError(ValueError):
    """The model file (or in-memory model) is not a valid ``dcmodel`` v1 model."""


@dataclass
class LayerRecord:
    """One weight layer of a compressed model.

    Attributes
    ----------
    name : str
        Layer name (array name prefix, no ``.``).
    kind : str
        ``"fc"`` (index shape ``(out, in)``) or ``"conv"`` (``(oc, ic, kh, kw)``).
    index : numpy.ndarray
        uint8 cluster index per weight, 0 = pruned.
    codebook : numpy.ndarray
        float32 ``[2^idx_bits]`` shared weights, ``codebook[0] == 0``.
    bias : numpy.ndarray
        float32 ``[out]``.
    idx_bits : int
        Index width (1..8).
    relu : bool
        ReLU after this layer (false for the classifier layer).
    meta : dict
        Further JSON-serialisable header fields (stride, pooling, per-layer statistics...).
    cb_q : numpy.ndarray or None
        int32 ``[2^idx_bits]`` integer codebook (signed ``weight_bits``), set by calibration.
    bias_q : numpy.ndarray or None
        int32 ``[out]`` integer bias (signed 16-bit), set by calibration.
    """
    name: str
    kind: str
    index: np.ndarray
    codebook: np.ndarray
    bias: np.ndarray
    idx_bits: int = WIDTH_DEFAULTS["idx_bits"]
    relu: bool = True
    meta: dict = field(default_factory=dict)
    cb_q: np.ndarray = None
    bias_q: np.ndarray = None

    @property
    def shape(self):
        return tuple(int(s) for s in self.index.shape)

    def weights(self):
        """Dense float32 weights ``codebook[index]``."""
        return self.codebook[self.index.astype(np.int64)]


@dataclass
class IntegerParams:
    """Integer section (section 1 parameters and per-layer calibration).

    Attributes
    ----------
    act_bits, weight_bits, acc_bits, idx_bits, gap_bits, huff_max_len : int
        Widths of section 1.
    layers : list of dict
        Per layer ``{"shift": S, "bias_shift": int, "s_in": float, "s_out": float}``.
    """
    act_bits: int = WIDTH_DEFAULTS["act_bits"]
    weight_bits: int = WIDTH_DEFAULTS["weight_bits"]
    acc_bits: int = WIDTH_DEFAULTS["acc_bits"]
    idx_bits: int = WIDTH_DEFAULTS["idx_bits"]
    gap_bits: int = WIDTH_DEFAULTS["gap_bits"]
    huff_max_len: int = WIDTH_DEFAULTS["huff_max_len"]
    layers: list = field(default_factory=list)

    def to_json(self):
        d = {k: int(getattr(self, k)) for k in INTEGER_WIDTH_KEYS}
        d["layers"] = [{"shift": int(l["shift"]), "bias_shift": int(l["bias_shift"]),
                        "s_in": float(l["s_in"]), "s_out": float(l["s_out"])}
                       for l in self.layers]
        return d


@dataclass
class CompressedModel:
    """A compressed network as stored in a ``dcmodel`` file.

    Attributes
    ----------
    arch : str
        ``"lenet300"`` or ``"lenet5"`` (other names allowed for tests).
    input_shape : list of int
    layers : list of LayerRecord
        In execution order.
    metrics : dict
        JSON-serialisable results (errors, sizes, ratios).
    integer : IntegerParams or None
        Present once calibrated; then every layer has ``cb_q`` and ``bias_q``.
    """
    arch: str
    input_shape: list
    layers: list
    metrics: dict = field(default_factory=dict)
    integer: IntegerParams = None

    def layer(self, name):
        for l in self.layers:
            if l.name == name:
                return l
        raise KeyError(name)


def array_digest(a):
    """SHA-256 hex digest of an array's bytes (C order, native little-endian dtype)."""
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _fail(msg):
    raise ModelFormatError(msg)


def _show(value):
    """``value`` as the error messages name it: its JSON type and (shortened) text."""
    if value is None:
        kind = "null"
    elif isinstance(value, bool):
        kind = "a boolean"
    elif isinstance(value, (int, float)):
        kind = "a number"
    elif isinstance(value, str):
        kind = "a string"
    elif isinstance(value, list):
        kind = "a list"
    elif isinstance(value, dict):
        kind = "an object"
    else:
        kind = f"a {type(value).__name__}"
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{kind} ({text})"


def _want_int(value, field_name, lo, hi=None):
    """``value`` if it is a JSON integer in ``lo..hi`` (``hi`` None: no upper bound)."""
    span = f"{lo}..{hi}" if hi is not None else f">= {lo}"
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(f"{field_name}: expected an integer {span}, got {_show(value)}")
    if value < lo or (hi is not None and value > hi):
        _fail(f"{field_name}: {value} is out of range (expected {span})")
    return value


def _want_scale(value, field_name):
    """``value`` if it is a finite positive JSON number (an activation scale)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _fail(f"{field_name}: expected a positive number, got {_show(value)}")
    if isinstance(value, float) and not math.isfinite(value) or value <= 0:
        _fail(f"{field_name}: {_show(value)} is not a finite positive number")
    return value


def _want(value, kind, field_name, what):
    """``value`` if it is an instance of ``kind`` (``what`` names the expected JSON type)."""
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        _fail(f"{field_name}: expected {what}, got {_show(value)}")
    return value


def _want_key(obj, key, where):
    """``obj[key]``; ``where`` names ``obj`` (empty: the header itself)."""
    if key not in obj:
        _fail(f"{where + '.' if where else ''}{key}: missing")
    return obj[key]


def _want_shape(value, field_name, ndim, what):
    """A list of ``ndim`` positive integers (``what`` names the dimensions)."""
    if not isinstance(value, list) or ndim is not None and len(value) != ndim:
        _fail(f"{field_name}: expected a list {what}, got {_show(value)}")
    for k, v in enumerate(value):
        _want_int(v, f"{field_name}[{k}]", 1)
    return value


def _out_shape(act, shape, meta, field_name, source):
    """Activation shape after a layer of weight shape ``shape`` given its input ``act``.

    ``act`` is the previous layer's output shape (or ``input_shape``): ``(n,)`` flat or
    ``(c, h, w)`` from a conv layer. An fc layer takes the flattened activation; a conv layer
    takes the shape its ``in_shape`` gives (the same values), else ``(c, h, w)`` as it is and a
    flat activation as ``c`` square channels (LeNet-5's ``input_shape [784]`` is one 28 x 28
    channel). ``source`` names where ``act`` comes from.
    """
    size = math.prod(act)
    if len(shape) == 2:
        if shape[1] != size:
            _fail(f"{field_name}.shape: {shape[1]} inputs (shape[1]) differ from the {size} "
                  f"values of {source}")
        return (shape[0],)
    oc, ic, kh, kw = shape
    if "in_shape" in meta:
        act = tuple(_want_shape(meta["in_shape"], f"{field_name}.in_shape", 3,
                                "[channels, height, width] of positive integers"))
        if math.prod(act) != size:
            _fail(f"{field_name}.in_shape: {list(act)} holds {math.prod(act)} values, "
                  f"{source} gives {size}")
    if len(act) == 3:
        c, h, w = act
        if c != ic:
            _fail(f"{field_name}.shape: {ic} input channels (shape[1]) differ from the {c} "
                  f"channels of {source}")
    else:
        side = math.isqrt(size // ic)
        if size % ic or side * side * ic != size:
            _fail(f"{field_name}.shape: the {size} values of {source} are not {ic} square "
                  f"input channel(s) (shape[1])")
        h = w = side
    stride = _want_int(meta.get("stride", 1), f"{field_name}.stride", 1)
    padding = _want_int(meta.get("padding", 0), f"{field_name}.padding", 0)
    pool = _want_int(meta.get("pool", 1), f"{field_name}.pool", 1)
    if "relu_before_pool" in meta:
        _want(meta["relu_before_pool"], bool, f"{field_name}.relu_before_pool", "true or false")
    if h + 2 * padding < kh or w + 2 * padding < kw:
        _fail(f"{field_name}.shape: kernel {kh}x{kw} is larger than the {h}x{w} input "
              f"(padding {padding}) from {source}")
    oh, ow = (h + 2 * padding - kh) // stride + 1, (w + 2 * padding - kw) // stride + 1
    if oh % pool or ow % pool:
        _fail(f"{field_name}.pool: {pool} does not divide the {oh}x{ow} convolution output")
    return (oc, oh // pool, ow // pool)


def _check_layer(h, i, names):
    """Types and ranges of header ``layers[i]``; returns its weight shape."""
    where = f"layers[{i}]"
    _want(h, dict, where, "an object")
    name = _want(_want_key(h, "name", where), str, f"{where}.name", "a string")
    if not name or "." in name or "/" in name or name == "header":
        _fail(f"{where}.name: {name!r} is not a layer name (non-empty, no '.' or '/', "
              "not 'header')")
    if name in names:
        _fail(f"{where}.name: duplicate layer name {name!r}")
    names.add(name)
    kind = _want_key(h, "kind", where)
    if kind not in ("fc", "conv"):
        _fail(f"{where}.kind: expected \"fc\" or \"conv\", got {_show(kind)}")
    if kind == "fc":
        shape = _want_shape(_want_key(h, "shape", where), f"{where}.shape", 2,
                            "[out_features, in_features] of positive integers")
    else:
        shape = _want_shape(_want_key(h, "shape", where), f"{where}.shape", 4,
                            "[out_channels, in_channels, kh, kw] of positive integers")
    _want_int(_want_key(h, "idx_bits", where), f"{where}.idx_bits", 1, 8)
    if "relu" in h:
        _want(h["relu"], bool, f"{where}.relu", "true or false")
    return shape


def _check_integer(ih, layers_h):
    """Types, ranges and layer count of the header's ``integer`` section."""
    _want(ih, dict, "integer", "an object or null")
    for key, (lo, hi) in INTEGER_WIDTH_RANGES.items():
        _want_int(_want_key(ih, key, "integer"), f"integer.{key}", lo, hi)
    if ih["idx_bits"] + ih["gap_bits"] > 16:
        _fail(f"integer.gap_bits: idx_bits + gap_bits = {ih['idx_bits'] + ih['gap_bits']} "
              "exceeds 16 (a joint symbol is at most 16 bits)")
    entries = _want(_want_key(ih, "layers", "integer"), list, "integer.layers", "a list")
    if len(entries) != len(layers_h):
        _fail(f"integer.layers: {len(entries)} entries for {len(layers_h)} layers")
    for i, (il, h) in enumerate(zip(entries, layers_h)):
        where = f"integer.layers[{i}]"
        _want(il, dict, where, "an object")
        for key in ("shift", "bias_shift"):
            _want_int(_want_key(il, key, where), f"{where}.{key}", 0, 31)
        for key in ("s_in", "s_out"):
            _want_scale(_want_key(il, key, where), f"{where}.{key}")
        if h["idx_bits"] != ih["idx_bits"]:
            _fail(f"layers[{i}].idx_bits: {h['idx_bits']} differs from integer.idx_bits "
                  f"{ih['idx_bits']}")


def _check_header(header):
    """Validate a decoded ``header.json`` (without ``format``/``version``, checked first).

    Checks every field's JSON type and range and that the layers chain: ``input_shape`` feeds
    the first layer, each layer's inputs are the previous layer's outputs (conv layers through
    their stride, padding and pooling). Raises :class:`ModelFormatError` naming the field.
    """
    arch = _want(_want_key(header, "arch", ""), str, "arch", "a string")
    if not arch:
        _fail("arch: empty string")
    act = tuple(_want_shape(_want_key(header, "input_shape", ""), "input_shape", None,
                            "of positive integers"))
    if not 1 <= len(act) <= 3:
        _fail(f"input_shape: expected 1 to 3 dimensions, got {_show(list(act))}")
    layers_h = _want(_want_key(header, "layers", ""), list, "layers", "a list")
    if not layers_h:
        _fail("layers: the model has no layers")
    names = set()
    source = f"input_shape {list(act)}"
    for i, h in enumerate(layers_h):
        shape = _check_layer(h, i, names)
        act = _out_shape(act, shape, h, f"layers[{i}]", source)
        source = f"layers[{i}] (output {list(act)})"
    if header.get("metrics") is not None:
        _want(header["metrics"], dict, "metrics", "an object or null")
    if header.get("integer") is not None:
        _check_integer(header["integer"], layers_h)
    if "sha256" in header:
        digests = _want(header["sha256"], dict, "sha256", "an object")
        for name, digest in digests.items():
            if not isinstance(digest, str) or len(digest) != 64 \
                    or any(c not in "0123456789abcdef" for c in digest):
                _fail(f"sha256[{name!r}]: expected 64 lower-case hex digits, got "
                      f"{_show(digest)}")


def _check_arrays(model):
    """Dtypes, shapes and value ranges of the arrays of a model whose header is valid."""
    ip = model.integer
    for l in model.layers:
        idx = l.index
        if not isinstance(idx, np.ndarray) or idx.dtype != np.uint8:
            _fail(f"{l.name}.index: must be a uint8 array, got {getattr(idx, 'dtype', type(idx))}")
        want = 2 if l.kind == "fc" else 4
        if idx.ndim != want:
            _fail(f"{l.name}.index: {l.kind} index must have {want} dimensions, has shape "
                  f"{idx.shape}")
        ib = l.idx_bits
        if idx.size and int(idx.max()) >= (1 << ib):
            _fail(f"{l.name}.index: value {int(idx.max())} out of range for idx_bits={ib}")
        cb = l.codebook
        if not isinstance(cb, np.ndarray) or cb.dtype != np.float32 or cb.shape != (1 << ib,):
            _fail(f"{l.name}.codebook: must be float32 of shape ({1 << ib},), got "
                  f"{getattr(cb, 'dtype', type(cb))} {getattr(cb, 'shape', '')}")
        if cb[0] != 0.0:
            _fail(f"{l.name}.codebook: codebook[0] must be 0.0 (index 0 = pruned), got {cb[0]}")
        if not np.all(np.isfinite(cb)):
            _fail(f"{l.name}.codebook: has non-finite values")
        b = l.bias
        if not isinstance(b, np.ndarray) or b.dtype != np.float32 or b.shape != (idx.shape[0],):
            _fail(f"{l.name}.bias: must be float32 of shape ({idx.shape[0]},), got "
                  f"{getattr(b, 'dtype', type(b))} {getattr(b, 'shape', '')}")
        if ip is None:
            continue
        for nm, arr, shape in (("cb_q", l.cb_q, (1 << ib,)), ("bias_q", l.bias_q, b.shape)):
            if not isinstance(arr, np.ndarray) or arr.dtype != np.int32 or arr.shape != shape:
                _fail(f"{l.name}.{nm}: must be int32 of shape {shape}, got "
                      f"{getattr(arr, 'dtype', type(arr))} {getattr(arr, 'shape', '')}")
        if l.cb_q[0] != 0:
            _fail(f"{l.name}.cb_q: cb_q[0] must be 0")
        wlim = 1 << (ip.weight_bits - 1)
        if l.cb_q.min() < -wlim or l.cb_q.max() >= wlim:
            _fail(f"{l.name}.cb_q: exceeds the signed {ip.weight_bits}-bit range "
                  "(integer.weight_bits)")
        if l.bias_q.size and (l.bias_q.min() < -32768 or l.bias_q.max() > 32767):
            _fail(f"{l.name}.bias_q: exceeds the signed 16-bit range")


def _integer_json(ip):
    """The integer section as written (no coercion: a wrong type is reported, not rounded)."""
    d = {k: getattr(ip, k) for k in INTEGER_WIDTH_KEYS}
    d["layers"] = [{k: il[k] for k in _LAYER_INT_KEYS if k in il} if isinstance(il, dict)
                   else il for il in ip.layers]
    return d


def _header_json(model):
    """The header ``save_model`` writes for ``model`` (without digests), as plain JSON."""
    layers_h = []
    for l in model.layers:
        if not isinstance(l.meta, dict):
            _fail(f"layer {l.name!r}: meta must be a dict")
        h = dict(l.meta)
        h.update({"name": l.name, "kind": l.kind,
                  "shape": list(getattr(l.index, "shape", ())),
                  "idx_bits": l.idx_bits, "relu": l.relu})
        layers_h.append(h)
    header = {"format": FORMAT, "version": VERSION, "arch": model.arch,
              "input_shape": list(model.input_shape), "layers": layers_h,
              "metrics": model.metrics,
              "integer": None if model.integer is None else _integer_json(model.integer)}
    try:
        return json.loads(json.dumps(header, sort_keys=True, default=_json_default))
    except (TypeError, ValueError) as e:
        raise ModelFormatError(f"header is not JSON-serialisable: {e}") from None


def _arrays(model):
    arrs = {}
    for l in model.layers:
        arrs[f"{l.name}.index"] = l.index
        arrs[f"{l.name}.codebook"] = l.codebook
        arrs[f"{l.name}.bias"] = l.bias
        if model.integer is not None:
            arrs[f"{l.name}.cb_q"] = l.cb_q
            arrs[f"{l.name}.bias_q"] = l.bias_q
    return arrs


def _json_default(obj):
    """NumPy scalars and arrays in metrics/meta become plain JSON numbers and lists."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


def save_model(path, model):
    """Write ``model`` (:class:`CompressedModel`) to ``path`` as a ``dcmodel`` v1 ``.npz``.

    The model is validated first (:class:`ModelFormatError` naming the field, as
    :func:`load_model` would report it); the file name is used as given (no ``.npz`` is
    appended).
    """
    if not model.layers:
        _fail("layers: the model has no layers")
    header = _header_json(model)
    _check_header(header)
    _check_arrays(model)
    arrs = _arrays(model)
    header["sha256"] = {k: array_digest(a) for k, a in arrs.items()}
    blob = json.dumps(header, indent=1, sort_keys=True).encode("utf-8")
    payload = {HEADER: np.frombuffer(blob, dtype=np.uint8)}
    payload.update(arrs)
    buf = io.BytesIO()
    np.savez_compressed(buf, **payload)
    Path(path).write_bytes(buf.getvalue())


def _read_arrays(path):
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ModelFormatError(f"cannot read the model file: {e.strerror or e}") from None
    if not data.startswith(b"PK"):
        _fail("not a dcmodel file (not a zip/npz archive)")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as e:  # noqa: BLE001 - any failure to decode the archive is corruption
        # Seen from damaged files: zipfile.BadZipFile (CRC, header mismatch), zlib.error,
        # EOFError, ValueError (npy header, object arrays refused without pickle),
        # RuntimeError ("encrypted" flag), NotImplementedError (compression method),
        # struct.error, UnicodeDecodeError, KeyError, MemoryError/OverflowError (huge sizes).
        raise ModelFormatError(f"corrupt or truncated: {type(e).__name__}: {e}") from None


def load_model(path):
    """Read and verify a ``dcmodel`` v1 file.

    Returns
    -------
    CompressedModel

    Raises
    ------
    ModelFormatError
        Not a zip, truncated, corrupt, wrong magic or version, a header field of the wrong JSON
        type or out of range (the message names the field, e.g. ``layers[1].shape``), layers
        that do not chain, digest mismatch, missing or unexpected arrays, wrong shapes, dtypes
        or index ranges.
    """
    try:
        return _load(path)
    except ModelFormatError as e:
        raise ModelFormatError(f"{path}: {e}") from None


def _load(path):
    arrs = _read_arrays(path)
    raw = arrs.pop(HEADER, None)
    if raw is None:
        _fail(f"no {HEADER} (not a dcmodel file)")
    if raw.dtype != np.uint8 or raw.ndim != 1:
        _fail(f"{HEADER} must be a 1-D uint8 array")
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFormatError(f"{HEADER} is not valid UTF-8 JSON: {e}") from None
    except RecursionError:
        raise ModelFormatError(f"{HEADER} nests too deeply") from None
    if not isinstance(header, dict):
        _fail(f"{HEADER}: expected an object, got {_show(header)}")
    if header.get("format") != FORMAT:
        _fail(f"format: expected \"{FORMAT}\", got {_show(header.get('format'))}")
    version = _want_int(header.get("version"), "version", 1)
    if version != VERSION:
        _fail(f"version: dcmodel version {version} is not supported (this reader supports "
              f"version {VERSION})")
    _check_header(header)
    digests = _want_key(header, "sha256", "")
    for name, a in arrs.items():
        if name not in digests:
            _fail(f"sha256: array {name!r} has no digest in the header")
        if array_digest(a) != digests[name]:
            _fail(f"sha256[{name!r}]: SHA-256 mismatch for array {name!r} (file corrupted or "
                  "edited)")
    for name in digests:
        if name not in arrs:
            _fail(f"sha256: array {name!r} listed in the header is missing")
    integer_h = header.get("integer")
    layers = []
    used = set()
    for i, h in enumerate(header["layers"]):
        name = h["name"]
        needed = ["index", "codebook", "bias"] + (["cb_q", "bias_q"] if integer_h else [])
        got = {}
        for suffix in needed:
            key = f"{name}.{suffix}"
            if key not in arrs:
                _fail(f"layers[{i}]: layer {name!r} lacks array {key!r}")
            got[suffix] = arrs[key]
            used.add(key)
        if list(got["index"].shape) != h["shape"]:
            _fail(f"layers[{i}].shape: {h['shape']} differs from the shape "
                  f"{list(got['index'].shape)} of array {name + '.index'!r}")
        meta = {k: v for k, v in h.items()
                if k not in ("name", "kind", "shape", "idx_bits", "relu")}
        layers.append(LayerRecord(
            name=name, kind=h["kind"], index=got["index"], codebook=got["codebook"],
            bias=got["bias"], idx_bits=h["idx_bits"], relu=h.get("relu", True), meta=meta,
            cb_q=got.get("cb_q"), bias_q=got.get("bias_q")))
    extra = sorted(set(arrs) - used)
    if extra:
        _fail(f"unexpected arrays {extra} (no layer of the header uses them)")
    integer = None
    if integer_h is not None:
        integer = IntegerParams(**{k: integer_h[k] for k in INTEGER_WIDTH_KEYS},
                                layers=[{k: il[k] for k in _LAYER_INT_KEYS}
                                        for il in integer_h["layers"]])
    model = CompressedModel(arch=header["arch"], input_shape=list(header["input_shape"]),
                            layers=layers, metrics=header.get("metrics") or {},
                            integer=integer)
    _check_arrays(model)
    return model
