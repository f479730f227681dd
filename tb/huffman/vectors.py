"""Test vectors for gateware.huffman.HuffmanDecoder built with sw.huffman.

A case is one code (its ``limit``/``base``/``symbols`` tables at a layer slot), a list of
segments (bit ``offset`` in the first word, ``nbits``, ``tag``, the words) and the exact expected
decoder output. Segments are cut at symbol boundaries from one encoded symbol string, may start
anywhere in a word and may be separated by skipped bits (like the columns a PE skips).
:func:`reference_decode` is the decoder's behaviour on the concatenated segment bits, including
the error rule (a code not in the table or running past its segment ends that segment).
"""
import numpy as np

from sw.huffman import HuffmanCode, bits_to_words

__all__ = ["code_for", "make_case", "reference_decode", "CODE_KINDS"]

CODE_KINDS = ("random", "single", "two", "uniform256", "maxlen", "skewed")


def code_for(kind, max_len, rng):
    """A canonical code of one of the adversarial ``CODE_KINDS``."""
    if kind == "single":
        return HuffmanCode.from_frequencies({int(rng.integers(0, 256)): 5}, max_len)
    if kind == "two":
        a, b = rng.choice(256, size=2, replace=False)
        return HuffmanCode.from_frequencies({int(a): 1, int(b): 1000}, max_len)
    if kind == "uniform256":
        return HuffmanCode.from_frequencies({s: 1 for s in range(256)}, max_len)
    if kind == "maxlen":
        # Fibonacci-like frequencies: the length limit binds and many codes get max_len bits.
        syms = rng.choice(256, size=40, replace=False)
        f, g = 1, 1
        freqs = {}
        for s in syms:
            freqs[int(s)] = f
            f, g = g, f + g
        return HuffmanCode.from_frequencies(freqs, max_len)
    if kind == "skewed":
        syms = rng.choice(256, size=int(rng.integers(3, 60)), replace=False)
        return HuffmanCode.from_frequencies({int(s): int(2 ** rng.integers(0, 20)) for s in syms},
                                            max_len)
    syms = rng.choice(256, size=int(rng.integers(2, 200)), replace=False)
    return HuffmanCode.from_frequencies({int(s): int(rng.integers(1, 1000)) for s in syms},
                                        max_len)


def reference_decode(code, segments_bits, tags):
    """Expected ``[[symbol, tag, first]...]`` and error flag for the given segments' bits."""
    limit, base, table = code.tables()
    L = code.max_len
    stream = np.concatenate([np.asarray(b, dtype=np.int64) for b in segments_bits]
                            + [np.zeros(L + 16, dtype=np.int64)])
    out = []
    error = False
    pos = 0
    for bits, tag in zip(segments_bits, tags):
        rem = len(bits)
        first = 1
        while rem > 0:
            peek = int(stream[pos:pos + L] @ (1 << np.arange(L - 1, -1, -1)))
            ln = next((l for l in range(1, L + 1) if peek < limit[l - 1]), None)
            if ln is None or ln > rem:
                error = True
                pos += rem
                break
            k = (int(base[ln - 1]) + (peek >> (L - ln))) % (1 << 16)
            out.append([int(table[k]), int(tag), first])
            first = 0
            pos += ln
            rem -= ln
    return out, error


def make_case(kind, seed, *, max_len=12, layer=1, n_symbols=300, max_seg=6, bad_segment=False,
              stream_words=1):
    """One decoder test case (JSON-serialisable dict).

    Parameters
    ----------
    kind : str
        One of ``CODE_KINDS``.
    bad_segment : bool
        Insert a segment of random bits that is not a valid code sequence (expects ``o_error``
        for the ``single`` code, whose only code is ``0``, by starting it with a ``1``).
    stream_words : int
        Memory words per decoder word (``AcceleratorConfig.stream_words``): with 2 a segment's
        words are the 32-bit pairs of 16-bit words ``a, a + 1``, ``a + 2, a + 3``... from its
        first word ``a`` on (the offset stays inside word ``a``), as the PE fetches them.
    """
    rng = np.random.default_rng(seed)
    code = code_for(kind, max_len, rng)
    limit, base, table = code.tables()
    sym_base = int(rng.integers(0, 256 - len(table) + 1)) if len(table) < 256 else 0
    seq = rng.choice(code.symbols, size=n_symbols)
    segs_bits, tags = [], []
    i = 0
    while i < n_symbols:
        k = int(rng.integers(1, max_seg + 1))
        segs_bits.append(code.encode(seq[i:i + k]))
        tags.append(int(rng.integers(0, 256)))
        i += k
    if bad_segment:
        bad = rng.integers(0, 2, size=int(rng.integers(3, 30))).astype(np.uint8)
        bad[0] = 1
        at = len(segs_bits) // 2
        segs_bits.insert(at, bad)
        tags.insert(at, 77)
    # lay the segments out in a word stream with random skipped bits between them
    stream = []
    segments = []
    pos = int(rng.integers(0, 16))
    stream.append(rng.integers(0, 2, size=pos).astype(np.uint8))
    for bits, tag in zip(segs_bits, tags):
        start = pos
        stream.append(np.asarray(bits, dtype=np.uint8))
        pos += len(bits)
        segments.append((start, len(bits), tag))
        skip = int(rng.integers(0, 40)) if rng.random() < 0.5 else 0
        stream.append(rng.integers(0, 2, size=skip).astype(np.uint8))
        pos += skip
    words = bits_to_words(np.concatenate(stream)).astype(np.int64)
    # a pair's second word may lie past the stream: random bits (never decoded)
    words = np.concatenate([words, rng.integers(0, 1 << 16, size=1)])
    W = 16 * stream_words
    seg_out = []
    for start, nbits, tag in segments:
        w0 = start // 16
        n = (start % 16 + nbits + W - 1) // W
        if stream_words == 1:
            seg_words = [int(w) for w in words[w0:w0 + n]]
        else:
            seg_words = [int(words[w0 + 2 * k]) << 16 | int(words[w0 + 2 * k + 1])
                         for k in range(n)]
        seg_out.append({"offset": start % 16, "nbits": nbits, "tag": tag, "words": seg_words})
    expect, error = reference_decode(code, segs_bits, tags)
    return {"kind": kind, "layer": layer, "sym_base": sym_base,
            "limit": [int(v) for v in limit], "base": [int(v) for v in base],
            "symbols": [int(v) for v in table], "segments": seg_out,
            "expect": expect, "error": bool(error),
            "longest_code": int(code.lengths.max())}
