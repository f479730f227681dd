"""Input coding of INFER_CODED frames (docs/PROTOCOL.md, "Coded input"): zero runs and literal
runs, decoded on the board.

An input vector (unsigned bytes) becomes a sequence of tokens. A token byte ``z << 3 | l``
stands for ``z`` zeros (0..31) followed by ``l`` literal values (0..7), which follow the token
byte as one byte each. Trailing zeros are not sent: the board pads the vector to its length.
MNIST test images take 187 bytes on average this way (dense 784, (index, value) pairs 453;
``python -m sw.incode`` prints the figures).
"""
import argparse
import sys

import numpy as np

from sw.cli import command
from sw.golden import images_to_uint8, load_mnist

__all__ = ["ZERO_BITS", "LIT_BITS", "MAX_ZEROS", "MAX_LITERALS", "CodingError", "encode",
           "decode", "FRAME_OVERHEAD", "frame_bytes", "build_parser", "main"]

#: Bits of the zero-run count (high bits of a token) and of the literal count (low bits).
ZERO_BITS, LIT_BITS = 5, 3
MAX_ZEROS, MAX_LITERALS = (1 << ZERO_BITS) - 1, (1 << LIT_BITS) - 1


class CodingError(ValueError):
    """A coded input is malformed (its values overrun the length, a literal run is cut)."""


def encode(x):
    """Token bytes of ``x`` (integers 0..255: an array, a sequence or ``bytes``)."""
    if isinstance(x, (bytes, bytearray)):
        x = np.frombuffer(bytes(x), dtype=np.uint8)
    x = np.asarray(x).ravel()
    if x.size and (x.min() < 0 or x.max() > 255):
        raise CodingError("input values must be bytes 0..255")
    nz = np.flatnonzero(x)
    end = int(nz[-1]) + 1 if nz.size else 0
    out = bytearray()
    i = 0
    while i < end:
        z = 0
        while x[i] == 0 and z < MAX_ZEROS:      # x[end - 1] != 0 stops the run before end
            z += 1
            i += 1
        start = i
        while i < end and x[i] != 0 and i - start < MAX_LITERALS:
            i += 1
        out.append(z << LIT_BITS | (i - start))
        out += bytes(int(v) for v in x[start:i])
    return bytes(out)


def decode(tokens, length):
    """The vector of ``length`` values that ``tokens`` codes (the board's decoder in Python).

    Raises
    ------
    CodingError
        if the values run past ``length`` or the tokens end inside a literal run.
    """
    out = np.zeros(length, dtype=np.int64)
    pos = 0
    i = 0
    while i < len(tokens):
        z, lit = tokens[i] >> LIT_BITS, tokens[i] & MAX_LITERALS
        i += 1
        if i + lit > len(tokens):
            raise CodingError(f"the tokens end inside a literal run of {lit}")
        if pos + z + lit > length:
            raise CodingError(f"the coded values run past the input length {length}")
        pos += z
        out[pos:pos + lit] = list(tokens[i:i + lit])
        pos += lit
        i += lit
    return out


#: Bytes of a frame besides its payload: SOF, cmd, len u16, crc u16.
FRAME_OVERHEAD = 6


def frame_bytes(kind, x):
    """Bytes of the request frame that carries ``x``: ``kind`` is ``"dense"`` (INFER_DENSE, one
    byte per value), ``"sparse"`` (INFER_SPARSE, 3 bytes per non-zero value) or ``"coded"``
    (INFER_CODED: a sequence byte and the tokens)."""
    if kind == "dense":
        return FRAME_OVERHEAD + int(np.asarray(x).size)
    if kind == "sparse":
        return FRAME_OVERHEAD + 3 * int(np.count_nonzero(x))
    if kind == "coded":
        return FRAME_OVERHEAD + 1 + len(encode(x))
    raise ValueError(f"unknown input kind {kind!r}")


def build_parser():
    """The command line's options (``python -m sw.incode``)."""
    ap = argparse.ArgumentParser(prog="python -m sw.incode",
                                 description="Bytes per MNIST test image on the link: dense, "
                                             "sparse pairs and the coded input (frames included).")
    ap.add_argument("--images", type=int, default=10_000, help="first N test images")
    return ap


@command
def main(argv=None):
    """Command line: bytes per MNIST test image, dense, sparse and coded."""
    args = build_parser().parse_args(argv)
    if args.images < 1:
        raise CodingError(f"--images must be >= 1, not {args.images}")
    test_x, _ = load_mnist()["test"]
    x8 = images_to_uint8(test_x[:args.images])
    sizes = {
        "dense (INFER_DENSE)": [frame_bytes("dense", x) for x in x8],
        "sparse pairs (INFER_SPARSE)": [frame_bytes("sparse", x) for x in x8],
        "coded (INFER_CODED)": [frame_bytes("coded", x) for x in x8],
    }
    print(f"request bytes per MNIST test image over {len(x8)} images (frame included):")
    for name, s in sizes.items():
        s = np.asarray(s)
        print(f"  {name:28s} mean {s.mean():7.1f}  worst {s.max():4d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
