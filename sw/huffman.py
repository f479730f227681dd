"""Canonical, length-limited Huffman codes (docs/ARCHITECTURE.md section 3).

Code lengths come from the package-merge algorithm (Larmore and Hirschberg), which gives the
optimal prefix code whose longest code is at most ``max_len`` bits. Codes are assigned
canonically in (length, symbol) order. Bit strings are NumPy ``uint8`` arrays of 0/1, MSB of each
code first; :func:`bits_to_words` packs them MSB first into 16-bit words as the hardware reads them.

Two decoders are provided: :meth:`HuffmanCode.decode` (a code-book lookup, the software view) and
:func:`table_decode` (the hardware method: ``limit``/``base``/``symbols`` tables, one symbol per
step); tests check that both agree with the encoder.
"""
import numpy as np

__all__ = ["HuffmanError", "HuffmanCode", "package_merge_lengths", "table_decode",
           "bits_to_words", "words_to_bits", "MAX_SUPPORTED_LEN"]

#: Longest code length the table format supports (limits fit 16-bit words).
MAX_SUPPORTED_LEN = 15


class HuffmanError(ValueError):
    """Bad frequencies, a symbol not in the code, or a bit stream that does not decode."""


def package_merge_lengths(weights, max_len):
    """Optimal code lengths with no code longer than ``max_len`` (package-merge).

    Parameters
    ----------
    weights : sequence of int
        Non-negative frequency of each symbol (position = symbol rank, any order).
    max_len : int
        Longest permitted code, ``1 <= max_len <= 15``.

    Returns
    -------
    numpy.ndarray
        int64 code length of each symbol, same order as ``weights``. A single symbol gets length 1;
        an empty alphabet gives an empty array.
    """
    w = np.asarray(weights, dtype=np.int64)
    n = len(w)
    if not 1 <= max_len <= MAX_SUPPORTED_LEN:
        raise HuffmanError(f"max_len must be 1..{MAX_SUPPORTED_LEN}, not {max_len}")
    if np.any(w < 0):
        raise HuffmanError("frequencies must be non-negative")
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if n == 1:
        return np.ones(1, dtype=np.int64)
    if n > (1 << max_len):
        raise HuffmanError(f"{n} symbols cannot be coded with codes of at most {max_len} bits "
                           f"(at most {1 << max_len})")
    order = np.argsort(w, kind="stable")
    leaf_w = w[order]
    eye = np.eye(n, dtype=np.int64)
    # Each item: (weight, count vector of leaves it contains). Leaves first on ties keeps the
    # result deterministic.
    leaves = [(int(leaf_w[i]), eye[i]) for i in range(n)]
    cur = leaves
    for _ in range(max_len - 1):
        packages = [(cur[i][0] + cur[i + 1][0], cur[i][1] + cur[i + 1][1])
                    for i in range(0, len(cur) - 1, 2)]
        merged = []
        i = j = 0
        while i < len(leaves) or j < len(packages):
            if j >= len(packages) or (i < len(leaves) and leaves[i][0] <= packages[j][0]):
                merged.append(leaves[i])
                i += 1
            else:
                merged.append(packages[j])
                j += 1
        cur = merged
    counts = np.zeros(n, dtype=np.int64)
    for _, vec in cur[:2 * n - 2]:
        counts += vec
    lengths = np.zeros(n, dtype=np.int64)
    lengths[order] = counts
    return lengths


class HuffmanCode:
    """A canonical prefix code over integer symbols.

    Parameters
    ----------
    lengths : dict[int, int]
        Code length (1..``max_len``) of each symbol; must satisfy the Kraft inequality.
    max_len : int
        ``HUFF_MAX_LEN`` of the decoder tables (1..15).

    Attributes
    ----------
    max_len : int
    symbols : numpy.ndarray
        int64 symbols in canonical order (by length, then symbol value) = the decoder's symbol
        table.
    lengths : numpy.ndarray
        int64 code length of each entry of ``symbols``.
    codes : numpy.ndarray
        int64 code value of each entry of ``symbols`` (``lengths[i]`` bits, MSB first).
    """

    def __init__(self, lengths, max_len):
        if not 1 <= max_len <= MAX_SUPPORTED_LEN:
            raise HuffmanError(f"max_len must be 1..{MAX_SUPPORTED_LEN}, not {max_len}")
        self.max_len = int(max_len)
        items = sorted((int(l), int(s)) for s, l in lengths.items())
        for l, s in items:
            if not 1 <= l <= max_len:
                raise HuffmanError(f"symbol {s} has code length {l}, outside 1..{max_len}")
            if s < 0:
                raise HuffmanError(f"symbols must be non-negative, got {s}")
        kraft = sum(1 << (max_len - l) for l, _ in items)
        if kraft > (1 << max_len):
            raise HuffmanError("code lengths violate the Kraft inequality")
        self.symbols = np.array([s for _, s in items], dtype=np.int64)
        self.lengths = np.array([l for l, _ in items], dtype=np.int64)
        codes = []
        code = 0
        prev = items[0][0] if items else 0
        for l, _ in items:
            code <<= l - prev
            codes.append(code)
            code += 1
            prev = l
        self.codes = np.array(codes, dtype=np.int64)
        self._lookup = {int(s): i for i, s in enumerate(self.symbols)}
        self._by_code = {(int(l), int(c)): int(s)
                         for l, c, s in zip(self.lengths, self.codes, self.symbols)}

    @classmethod
    def from_frequencies(cls, freqs, max_len):
        """Optimal length-limited canonical code for ``freqs``.

        Parameters
        ----------
        freqs : dict[int, int]
            Occurrence count of each symbol (symbols with count 0 still get a code).
        max_len : int
            Longest code allowed (``HUFF_MAX_LEN``, 1..15).
        """
        syms = sorted(int(s) for s in freqs)
        lens = package_merge_lengths([int(freqs[s]) for s in syms], max_len)
        return cls(dict(zip(syms, (int(l) for l in lens))), max_len)

    @classmethod
    def from_symbols(cls, symbols, max_len):
        """Code built from the frequencies of the symbols in the sequence ``symbols``."""
        vals, counts = np.unique(np.asarray(symbols, dtype=np.int64), return_counts=True)
        return cls.from_frequencies(dict(zip(vals.tolist(), counts.tolist())), max_len)

    def __len__(self):
        return len(self.symbols)

    def length_of(self, symbol):
        """Code length in bits of ``symbol``."""
        try:
            return int(self.lengths[self._lookup[int(symbol)]])
        except KeyError:
            raise HuffmanError(f"symbol {symbol} is not in the code") from None

    def code_lengths(self):
        """``dict`` symbol -> code length."""
        return {int(s): int(l) for s, l in zip(self.symbols, self.lengths)}

    def _positions(self, symbols):
        sym = np.asarray(symbols, dtype=np.int64).ravel()
        if len(sym) == 0:
            return np.zeros(0, dtype=np.int64)
        if len(self.symbols) == 0:
            raise HuffmanError("the code is empty; nothing can be encoded")
        pos = np.searchsorted(self.symbols, sym, sorter=self._sorter())
        pos = np.clip(pos, 0, len(self.symbols) - 1)
        idx = self._sorter()[pos]
        bad = self.symbols[idx] != sym
        if np.any(bad):
            raise HuffmanError(f"symbol {int(sym[np.argmax(bad)])} is not in the code")
        return idx

    def _sorter(self):
        if not hasattr(self, "_sorter_cache"):
            self._sorter_cache = np.argsort(self.symbols, kind="stable")
        return self._sorter_cache

    def symbol_lengths(self, symbols):
        """int64 code length of each symbol of the sequence ``symbols``."""
        return self.lengths[self._positions(symbols)]

    def encoded_bits(self, symbols):
        """Total number of bits :meth:`encode` produces for ``symbols``."""
        return int(self.lengths[self._positions(symbols)].sum())

    def encode(self, symbols):
        """Encode a sequence of symbols.

        Returns
        -------
        numpy.ndarray
            uint8 array of bits (0/1), each code MSB first, codes in sequence order.
        """
        idx = self._positions(symbols)
        lens = self.lengths[idx]
        codes = self.codes[idx]
        total = int(lens.sum())
        if total == 0:
            return np.zeros(0, dtype=np.uint8)
        owner = np.repeat(np.arange(len(idx)), lens)
        starts = np.cumsum(lens) - lens
        k = np.arange(total) - starts[owner]
        shift = lens[owner] - 1 - k
        return ((codes[owner] >> shift) & 1).astype(np.uint8)

    def decode(self, bits, count):
        """Decode ``count`` symbols from the start of ``bits`` (code-book lookup).

        Parameters
        ----------
        bits : array_like of 0/1
        count : int
            Number of symbols to decode.

        Returns
        -------
        numpy.ndarray
            int64 decoded symbols. Raises :class:`HuffmanError` if the bits run out or a code is
            not in the code book.
        """
        bits = np.asarray(bits, dtype=np.int64).ravel()
        out = np.zeros(count, dtype=np.int64)
        pos = 0
        for n in range(count):
            code = 0
            for l in range(1, self.max_len + 1):
                if pos + l > len(bits):
                    raise HuffmanError(f"bit stream ended inside symbol {n}")
                code = (code << 1) | int(bits[pos + l - 1])
                sym = self._by_code.get((l, code))
                if sym is not None:
                    out[n] = sym
                    pos += l
                    break
            else:
                raise HuffmanError(f"invalid code at bit {pos} (symbol {n})")
        return out

    def tables(self):
        """Hardware decoder tables (section 3).

        Returns
        -------
        limit : numpy.ndarray
            int64 ``[max_len]``; entry ``l - 1`` is ``(first_code[l] + count[l]) << (max_len - l)``.
        base : numpy.ndarray
            int64 ``[max_len]``; entry ``l - 1`` is ``(n_shorter[l] - first_code[l]) mod 2^16``.
        symbols : numpy.ndarray
            int64 symbols in canonical order.
        """
        L = self.max_len
        count = np.bincount(self.lengths, minlength=L + 1)[:L + 1]
        limit = np.zeros(L, dtype=np.int64)
        base = np.zeros(L, dtype=np.int64)
        first = 0
        shorter = 0
        for l in range(1, L + 1):
            if l > 1:
                first = (first + int(count[l - 1])) << 1
            limit[l - 1] = (first + int(count[l])) << (L - l)
            base[l - 1] = (shorter - first) % (1 << 16)
            shorter += int(count[l])
        return limit, base, self.symbols.copy()


def table_decode(bits, count, limit, base, symbols, max_len, start=0):
    """Decode ``count`` symbols the way the hardware does (section 3).

    Parameters
    ----------
    bits : array_like of 0/1
        The stream; bits past its end read as 0.
    count : int
        Number of symbols to decode.
    limit, base : array_like of int
        ``[max_len]`` tables of :meth:`HuffmanCode.tables` (16-bit values).
    symbols : array_like of int
        Symbol table.
    max_len : int
        ``HUFF_MAX_LEN``.
    start : int
        Bit position of the first code.

    Returns
    -------
    symbols_out : numpy.ndarray
        int64 decoded symbols.
    end : int
        Bit position after the last code.
    """
    bits = np.asarray(bits, dtype=np.int64).ravel()
    limit = [int(v) for v in limit]
    base = [int(v) for v in base]
    symbols = np.asarray(symbols, dtype=np.int64)
    L = int(max_len)
    padded = np.concatenate([bits, np.zeros(L, dtype=np.int64)])
    weights = 1 << np.arange(L - 1, -1, -1)
    out = np.zeros(count, dtype=np.int64)
    pos = int(start)
    for n in range(count):
        if pos >= len(bits):
            raise HuffmanError(f"bit stream ended before symbol {n}")
        peek = int(padded[pos:pos + L] @ weights)
        for l in range(1, L + 1):
            if peek < limit[l - 1]:
                break
        else:
            raise HuffmanError(f"code at bit {pos} is not in the table (symbol {n})")
        k = (base[l - 1] + (peek >> (L - l))) % (1 << 16)
        if k >= len(symbols):
            raise HuffmanError(f"symbol table index {k} out of range at bit {pos}")
        if pos + l > len(bits):
            raise HuffmanError(f"bit stream ended inside symbol {n}")
        out[n] = symbols[k]
        pos += l
    return out, pos


def bits_to_words(bits):
    """Pack a 0/1 bit array MSB first into uint16 words (last word zero-padded)."""
    bits = np.asarray(bits, dtype=np.uint8).ravel()
    pad = (-len(bits)) % 16
    if pad:
        bits = np.concatenate([bits, np.zeros(pad, dtype=np.uint8)])
    if len(bits) == 0:
        return np.zeros(0, dtype=np.uint16)
    weights = (1 << np.arange(15, -1, -1)).astype(np.int64)
    return (bits.reshape(-1, 16).astype(np.int64) @ weights).astype(np.uint16)


def words_to_bits(words):
    """Unpack uint16 words MSB first into a uint8 0/1 array (16 bits per word)."""
    w = np.asarray(words, dtype=np.int64).ravel()
    shifts = np.arange(15, -1, -1)
    return ((w[:, None] >> shifts) & 1).astype(np.uint8).ravel()
