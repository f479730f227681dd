"""Compressed model file, format ``dcmodel`` version 1 (docs/ARCHITECTURE.md section 2).

A NumPy ``.npz`` (zip) holding ``header.json`` (UTF-8 JSON as a uint8 array) and, per layer
``NAME``: ``NAME.index`` (uint8, weight shape, 0 = pruned), ``NAME.codebook`` (float32,
``2^idx_bits`` entries, ``[0] == 0``), ``NAME.bias`` (float32, ``out``) and, once calibrated,
``NAME.cb_q`` / ``NAME.bias_q`` (int32). The header records a SHA-256 digest of every array's
bytes; :func:`load_model` checks magic, version, digests, shapes, dtypes and index ranges and
raises :class:`ModelFormatError` naming the problem.
"""
import hashlib
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from contract.widths import WIDTH_DEFAULTS, WIDTH_KEYS

__all__ = ["FORMAT", "VERSION", "ModelFormatError", "LayerRecord", "IntegerParams",
           "CompressedModel", "save_model", "load_model", "array_digest", "INTEGER_WIDTH_KEYS"]

FORMAT = "dcmodel"
VERSION = 1
HEADER = "header.json"
#: Width parameters of section 1 stored in the integer section.
INTEGER_WIDTH_KEYS = WIDTH_KEYS
_LAYER_INT_KEYS = ("shift", "bias_shift", "s_in", "s_out")


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


def _check_int(value, what, lo, hi):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
            or not lo <= int(value) <= hi:
        _fail(f"{what} must be an integer in {lo}..{hi}, got {value!r}")
    return int(value)


def _validate(model):
    """Check a :class:`CompressedModel` for consistency; raise :class:`ModelFormatError`."""
    if not isinstance(model.arch, str) or not model.arch:
        _fail(f"arch must be a non-empty string, got {model.arch!r}")
    if not model.layers:
        _fail("model has no layers")
    names = set()
    for i, l in enumerate(model.layers):
        where = f"layer {i} ({getattr(l, 'name', '?')!r})"
        if not isinstance(l.name, str) or not l.name or "." in l.name or "/" in l.name \
                or l.name == "header":
            _fail(f"{where}: invalid name (non-empty, no '.' or '/')")
        if l.name in names:
            _fail(f"{where}: duplicate layer name")
        names.add(l.name)
        if l.kind not in ("fc", "conv"):
            _fail(f"{where}: kind must be 'fc' or 'conv', got {l.kind!r}")
        ib = _check_int(l.idx_bits, f"{where}: idx_bits", 1, 8)
        idx = l.index
        if not isinstance(idx, np.ndarray) or idx.dtype != np.uint8:
            _fail(f"{where}: index must be a uint8 array")
        want_nd = 2 if l.kind == "fc" else 4
        if idx.ndim != want_nd:
            _fail(f"{where}: {l.kind} index must have {want_nd} dimensions, has shape {idx.shape}")
        if idx.size and int(idx.max()) >= (1 << ib):
            _fail(f"{where}: index value {int(idx.max())} out of range for idx_bits={ib}")
        cb = l.codebook
        if not isinstance(cb, np.ndarray) or cb.dtype != np.float32 or cb.shape != (1 << ib,):
            _fail(f"{where}: codebook must be float32 of shape ({1 << ib},), got "
                  f"{getattr(cb, 'dtype', type(cb))} {getattr(cb, 'shape', '')}")
        if cb[0] != 0.0:
            _fail(f"{where}: codebook[0] must be 0.0 (index 0 = pruned), got {cb[0]}")
        if not np.all(np.isfinite(cb)):
            _fail(f"{where}: codebook has non-finite values")
        b = l.bias
        if not isinstance(b, np.ndarray) or b.dtype != np.float32 or b.shape != (idx.shape[0],):
            _fail(f"{where}: bias must be float32 of shape ({idx.shape[0]},), got "
                  f"{getattr(b, 'dtype', type(b))} {getattr(b, 'shape', '')}")
        if not isinstance(l.meta, dict):
            _fail(f"{where}: meta must be a dict")
    ip = model.integer
    if ip is None:
        return
    for k in INTEGER_WIDTH_KEYS:
        _check_int(getattr(ip, k), f"integer.{k}", 1, 64)
    if len(ip.layers) != len(model.layers):
        _fail(f"integer section has {len(ip.layers)} layer entries for {len(model.layers)} layers")
    for i, (l, il) in enumerate(zip(model.layers, ip.layers)):
        where = f"layer {i} ({l.name!r}) integer section"
        if not isinstance(il, dict) or any(k not in il for k in _LAYER_INT_KEYS):
            _fail(f"{where}: needs keys {', '.join(_LAYER_INT_KEYS)}")
        _check_int(il["shift"], f"{where}: shift", 0, 31)
        _check_int(il["bias_shift"], f"{where}: bias_shift", 0, 31)
        if l.idx_bits != ip.idx_bits:
            _fail(f"{where}: idx_bits {l.idx_bits} differs from integer.idx_bits {ip.idx_bits}")
        for nm, arr, shape in (("cb_q", l.cb_q, (1 << l.idx_bits,)),
                               ("bias_q", l.bias_q, (l.index.shape[0],))):
            if not isinstance(arr, np.ndarray) or arr.dtype != np.int32 or arr.shape != shape:
                _fail(f"{where}: {nm} must be int32 of shape {shape}, got "
                      f"{getattr(arr, 'dtype', type(arr))} {getattr(arr, 'shape', '')}")
        if l.cb_q[0] != 0:
            _fail(f"{where}: cb_q[0] must be 0")
        wlim = 1 << (ip.weight_bits - 1)
        if l.cb_q.min() < -wlim or l.cb_q.max() >= wlim:
            _fail(f"{where}: cb_q exceeds signed {ip.weight_bits}-bit range")
        if l.bias_q.size and (l.bias_q.min() < -32768 or l.bias_q.max() > 32767):
            _fail(f"{where}: bias_q exceeds signed 16-bit range")


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

    The model is validated first (:class:`ModelFormatError` on inconsistencies); the file name
    is used as given (no ``.npz`` is appended).
    """
    _validate(model)
    arrs = _arrays(model)
    layers_h = []
    for l in model.layers:
        h = dict(l.meta)
        h.update({"name": l.name, "kind": l.kind, "shape": list(l.shape),
                  "idx_bits": int(l.idx_bits), "relu": bool(l.relu)})
        layers_h.append(h)
    header = {
        "format": FORMAT, "version": VERSION, "arch": model.arch,
        "input_shape": [int(s) for s in model.input_shape], "layers": layers_h,
        "metrics": model.metrics,
        "integer": None if model.integer is None else model.integer.to_json(),
        "sha256": {k: array_digest(a) for k, a in arrs.items()},
    }
    try:
        blob = json.dumps(header, indent=1, sort_keys=True, default=_json_default).encode("utf-8")
    except (TypeError, ValueError) as e:
        raise ModelFormatError(f"header is not JSON-serialisable: {e}") from None
    payload = {HEADER: np.frombuffer(blob, dtype=np.uint8)}
    payload.update(arrs)
    buf = io.BytesIO()
    np.savez_compressed(buf, **payload)
    Path(path).write_bytes(buf.getvalue())


def _read_arrays(path):
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ModelFormatError(f"cannot read model file {path}: {e}") from None
    if not data.startswith(b"PK"):
        _fail(f"{path} is not a dcmodel file (not a zip/npz archive)")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, Exception) as e:  # zlib.error, EOFError, ValueError...
        raise ModelFormatError(f"{path} is corrupt or truncated: {type(e).__name__}: {e}") \
            from None


def load_model(path):
    """Read and verify a ``dcmodel`` v1 file.

    Returns
    -------
    CompressedModel

    Raises
    ------
    ModelFormatError
        Not a zip, truncated, corrupt, wrong magic or version, digest mismatch, missing or
        unexpected arrays, wrong shapes, dtypes or index ranges.
    """
    arrs = _read_arrays(path)
    raw = arrs.pop(HEADER, None)
    if raw is None:
        _fail(f"{path}: no {HEADER} (not a dcmodel file)")
    if raw.dtype != np.uint8 or raw.ndim != 1:
        _fail(f"{path}: {HEADER} must be a 1-D uint8 array")
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFormatError(f"{path}: {HEADER} is not valid UTF-8 JSON: {e}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        _fail(f"{path}: format is {header.get('format') if isinstance(header, dict) else None!r}"
              f", expected {FORMAT!r}")
    if header.get("version") != VERSION:
        _fail(f"{path}: dcmodel version {header.get('version')!r} is not supported "
              f"(this reader supports version {VERSION})")
    for key in ("arch", "input_shape", "layers", "sha256"):
        if key not in header:
            _fail(f"{path}: header lacks {key!r}")
    digests = header["sha256"]
    if not isinstance(digests, dict):
        _fail(f"{path}: header sha256 must be a mapping")
    for name, a in arrs.items():
        if name not in digests:
            _fail(f"{path}: array {name!r} has no digest in the header")
        if array_digest(a) != digests[name]:
            _fail(f"{path}: SHA-256 mismatch for array {name!r} (file corrupted or edited)")
    for name in digests:
        if name not in arrs:
            _fail(f"{path}: array {name!r} listed in the header is missing")
    layers_h = header["layers"]
    if not isinstance(layers_h, list):
        _fail(f"{path}: header layers must be a list")
    integer_h = header.get("integer")
    layers = []
    used = set()
    for i, h in enumerate(layers_h):
        if not isinstance(h, dict) or not all(k in h for k in ("name", "kind", "shape",
                                                                 "idx_bits")):
            _fail(f"{path}: layer {i} header needs name, kind, shape, idx_bits")
        name = h["name"]
        needed = ["index", "codebook", "bias"] + (["cb_q", "bias_q"] if integer_h else [])
        got = {}
        for suffix in needed:
            key = f"{name}.{suffix}"
            if key not in arrs:
                _fail(f"{path}: layer {name!r} lacks array {key!r}")
            got[suffix] = arrs[key]
            used.add(key)
        if list(got["index"].shape) != list(h["shape"]):
            _fail(f"{path}: layer {name!r} index shape {list(got['index'].shape)} differs from "
                  f"header shape {h['shape']}")
        meta = {k: v for k, v in h.items()
                if k not in ("name", "kind", "shape", "idx_bits", "relu")}
        layers.append(LayerRecord(
            name=name, kind=h["kind"], index=got["index"], codebook=got["codebook"],
            bias=got["bias"], idx_bits=h["idx_bits"], relu=bool(h.get("relu", True)), meta=meta,
            cb_q=got.get("cb_q"), bias_q=got.get("bias_q")))
    extra = sorted(set(arrs) - used)
    if extra:
        _fail(f"{path}: unexpected arrays {extra}")
    integer = None
    if integer_h is not None:
        if not isinstance(integer_h, dict):
            _fail(f"{path}: integer section must be a mapping or null")
        missing = [k for k in INTEGER_WIDTH_KEYS + ("layers",) if k not in integer_h]
        if missing:
            _fail(f"{path}: integer section lacks {missing}")
        integer = IntegerParams(**{k: integer_h[k] for k in INTEGER_WIDTH_KEYS},
                                layers=list(integer_h["layers"]))
    model = CompressedModel(arch=header["arch"], input_shape=list(header["input_shape"]),
                            layers=layers, metrics=header.get("metrics") or {},
                            integer=integer)
    try:
        _validate(model)
    except ModelFormatError as e:
        raise ModelFormatError(f"{path}: {e}") from None
    return model
