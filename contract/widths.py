"""Integer widths of docs/ARCHITECTURE.md section 1 and their defaults (the one place)."""

__all__ = ["WIDTH_KEYS", "WIDTH_DEFAULTS", "WIDTH_RANGES", "WORD_BITS", "HUFF_MAX_LEN_LIMIT",
           "BIAS_BITS", "SHIFT_BITS"]

#: Integer widths a model defines and the gateware is built with, in the order of section 1.
WIDTH_KEYS = ("act_bits", "weight_bits", "acc_bits", "idx_bits", "gap_bits", "huff_max_len")

#: Their defaults: A_BITS (unsigned activations), W_BITS (signed codebook values), ACC_BITS
#: (signed accumulator), IDX_BITS (bw, weight index), GAP_BITS (bg, relative row index) and
#: HUFF_MAX_LEN (longest Huffman code).
WIDTH_DEFAULTS = {
    "act_bits": 8,
    "weight_bits": 16,
    "acc_bits": 32,
    "idx_bits": 4,
    "gap_bits": 4,
    "huff_max_len": 12,
}

#: Longest Huffman code any configuration supports (``huff_max_len <= 15``).
HUFF_MAX_LEN_LIMIT = 15

#: The values each width may take (inclusive ranges; the golden model computes with any of
#: them, a model file holding others is refused). A joint symbol (gap and index) also has to
#: fit a word: ``idx_bits + gap_bits <= 16``.
WIDTH_RANGES = {
    "act_bits": (1, 16),
    "weight_bits": (2, 16),
    "acc_bits": (8, 48),
    "idx_bits": (1, 8),
    "gap_bits": (0, 15),
    "huff_max_len": (1, HUFF_MAX_LEN_LIMIT),
}

#: Width of every memory word (images, Huffman stream words, pointer words).
WORD_BITS = 16

#: Integer bias ``bias_q`` width (signed).
BIAS_BITS = 16

#: Width of the descriptor's ``shift`` and ``bias_shift`` fields (0..31).
SHIFT_BITS = 5
