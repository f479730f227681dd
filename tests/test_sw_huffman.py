"""Canonical length-limited Huffman: round trips, limits, Kraft, hardware tables."""
import heapq

import numpy as np
import pytest

from sw.huffman import (HuffmanCode, HuffmanError, bits_to_words, package_merge_lengths,
                        table_decode, words_to_bits)


def plain_huffman_cost(freqs):
    """Total bits of an unrestricted Huffman code (reference for optimality)."""
    heap = [f for f in freqs]
    heapq.heapify(heap)
    cost = 0
    while len(heap) > 1:
        a, b = heapq.heappop(heap), heapq.heappop(heap)
        cost += a + b
        heapq.heappush(heap, a + b)
    return cost


def roundtrip(code, stream):
    bits = code.encode(stream)
    assert len(bits) == code.encoded_bits(stream)
    assert np.array_equal(code.decode(bits, len(stream)), stream)
    limit, base, syms = code.tables()
    out, end = table_decode(bits, len(stream), limit, base, syms, code.max_len)
    assert np.array_equal(out, stream)
    assert end == len(bits)
    # Through 16-bit words (zero padding at the end must not disturb decoding).
    out2, _ = table_decode(words_to_bits(bits_to_words(bits)), len(stream), limit, base, syms,
                           code.max_len)
    assert np.array_equal(out2, stream)


def kraft(code):
    return sum(2.0 ** -int(l) for l in code.lengths)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("max_len", [4, 8, 12, 15])
def test_random_roundtrip(seed, max_len):
    rng = np.random.default_rng(seed)
    n_sym = int(rng.integers(2, min(200, 1 << max_len) + 1))
    alphabet = rng.choice(256, size=min(n_sym, 256), replace=False)
    p = rng.dirichlet(np.full(len(alphabet), 0.3))
    stream = rng.choice(alphabet, size=500, p=p)
    code = HuffmanCode.from_symbols(stream, max_len)
    assert code.lengths.max() <= max_len
    assert kraft(code) <= 1.0
    roundtrip(code, stream)


def test_single_symbol():
    code = HuffmanCode.from_frequencies({37: 99}, 12)
    assert code.code_lengths() == {37: 1}
    assert int(code.codes[0]) == 0
    stream = np.full(20, 37)
    bits = code.encode(stream)
    assert np.array_equal(bits, np.zeros(20))
    roundtrip(code, stream)
    limit, base, syms = code.tables()
    # An incomplete code: a 1 bit is not a valid code.
    with pytest.raises(HuffmanError):
        table_decode(np.ones(12, dtype=np.uint8), 1, limit, base, syms, 12)


def test_all_distinct_full_alphabet():
    stream = np.arange(256)
    code = HuffmanCode.from_symbols(stream, 8)
    assert set(code.lengths.tolist()) == {8}
    assert kraft(code) == 1.0
    roundtrip(code, np.random.default_rng(1).permutation(stream))


def test_too_many_symbols_rejected():
    with pytest.raises(HuffmanError, match="cannot be coded"):
        HuffmanCode.from_frequencies({i: 1 for i in range(17)}, 4)


def test_skewed_forces_limit():
    # Fibonacci frequencies give a maximal-depth unrestricted Huffman tree.
    fib = [1, 1]
    while len(fib) < 30:
        fib.append(fib[-1] + fib[-2])
    freqs = {i: f for i, f in enumerate(fib)}
    free = HuffmanCode.from_frequencies(freqs, 15)
    limited = HuffmanCode.from_frequencies(freqs, 8)
    assert limited.lengths.max() == 8
    assert free.lengths.max() == 15
    assert kraft(limited) == 1.0
    rng = np.random.default_rng(0)
    stream = rng.choice(30, size=3000, p=np.array(fib) / sum(fib))
    stream[:30] = np.arange(30)
    roundtrip(limited, stream)
    roundtrip(free, stream)


def test_optimal_when_unconstrained():
    rng = np.random.default_rng(5)
    for _ in range(20):
        f = rng.integers(1, 1000, size=int(rng.integers(2, 60)))
        lens = package_merge_lengths(f, 15)
        assert int((lens * f).sum()) == plain_huffman_cost(f.tolist())


def test_limited_is_optimal_bruteforce():
    # Compare with exhaustive search over length vectors for small alphabets.
    import itertools
    rng = np.random.default_rng(9)
    for _ in range(15):
        n = int(rng.integers(2, 6))
        f = np.sort(rng.integers(1, 50, size=n))[::-1]
        L = 3
        best = min(sum(int(a) * int(b) for a, b in zip(f, ls))
                   for ls in itertools.product(range(1, L + 1), repeat=n)
                   if sum(2.0 ** -l for l in ls) <= 1.0)
        lens = package_merge_lengths(f, L)
        assert lens.max() <= L
        assert int((lens * f).sum()) == best


def test_canonical_order_and_tables():
    code = HuffmanCode({5: 2, 1: 2, 9: 2, 3: 3, 7: 3}, 4)
    assert code.symbols.tolist() == [1, 5, 9, 3, 7]
    assert code.codes.tolist() == [0b00, 0b01, 0b10, 0b110, 0b111]
    limit, base, syms = code.tables()
    # first_code: l1=0, l2=0, l3=6, l4=16
    assert limit.tolist() == [0 << 3, 3 << 2, 8 << 1, 16]
    assert base.tolist() == [0, 0, (3 - 6) % 65536, (5 - 16) % 65536]
    assert syms.tolist() == [1, 5, 9, 3, 7]


def test_zero_frequency_symbols_and_empty():
    code = HuffmanCode.from_frequencies({1: 0, 2: 10, 3: 0}, 6)
    roundtrip(code, np.array([1, 2, 3, 2, 2]))
    empty = HuffmanCode.from_frequencies({}, 12)
    assert len(empty.encode([])) == 0
    limit, base, syms = empty.tables()
    assert limit.tolist() == [0] * 12 and len(syms) == 0
    with pytest.raises(HuffmanError):
        empty.encode([1])


def test_errors():
    code = HuffmanCode.from_frequencies({1: 3, 2: 1}, 4)
    with pytest.raises(HuffmanError, match="not in the code"):
        code.encode([3])
    with pytest.raises(HuffmanError, match="ended"):
        code.decode(code.encode([1, 2]), 3)
    with pytest.raises(HuffmanError, match="Kraft"):
        HuffmanCode({1: 1, 2: 1, 3: 1}, 4)
    with pytest.raises(HuffmanError):
        HuffmanCode.from_frequencies({1: -1, 2: 1}, 4)
    with pytest.raises(HuffmanError):
        HuffmanCode.from_frequencies({1: 1}, 16)


def test_bits_words():
    rng = np.random.default_rng(2)
    bits = rng.integers(0, 2, size=77).astype(np.uint8)
    words = bits_to_words(bits)
    assert words.dtype == np.uint16 and len(words) == 5
    assert np.array_equal(words_to_bits(words)[:77], bits)
    assert not words_to_bits(words)[77:].any()
    assert bits_to_words([1] + [0] * 15).tolist() == [0x8000]


@pytest.mark.parametrize("seed", range(5))
def test_trailing_bits_do_not_matter(seed):
    # The hardware peeks HUFF_MAX_LEN bits that may run into the next column or memory words.
    rng = np.random.default_rng(seed)
    stream = rng.choice(40, size=300, p=rng.dirichlet(np.full(40, 0.2)))
    code = HuffmanCode.from_symbols(stream, 9)
    bits = code.encode(stream)
    limit, base, syms = code.tables()
    for _ in range(5):
        junk = np.concatenate([bits, rng.integers(0, 2, size=20).astype(np.uint8)])
        out, end = table_decode(junk, len(stream), limit, base, syms, 9)
        assert np.array_equal(out, stream) and end == len(bits)
