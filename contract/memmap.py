"""Memory map of the packed images (docs/ARCHITECTURE.md section 4): memory ids, the layer
descriptor and the PE header.

Memories are :data:`contract.widths.WORD_BITS`-bit words, named by a memory id (``mem``, 8 bits
on the load port) and a word address. With N PEs:

========================  ================  =====================================================
mem                       name              contents
========================  ================  =====================================================
``0 .. N-1``              ``pe{p}``         PE p's data memory: headers, streams, biases
``N+0 .. N+4``            shared tables     ``codebook``, ``huff_limit``, ``huff_base``,
                                            ``huff_symbols``, ``layers`` (:data:`SHARED_MEMORIES`)
``N+5 .. 2N+4``           ``ptr{p}``        PE p's pointer memory
``2N+5``                  ``colskip``       the central unit's column skip table
========================  ================  =====================================================
"""

__all__ = ["MEM_ID_BITS", "ADDR_BITS", "SHARED_MEMORIES", "shared_mem", "pointer_mem",
           "colskip_mem", "colskip_words", "colskip_table_words", "fixed_entry_bits",
           "n_mem_ids", "mem_names",
           "is_pe_memory", "COLSKIP_MAX_PES",
           "DESC_FIELDS", "DESC_WORDS", "DESC_WORD", "DESC_FLAGS", "FLAG_RELU", "FLAG_LAST",
           "FLAG_PTR2", "FLAG_CONV", "FLAG_FMAP_IN", "FLAG_FMAP_BUF", "CONV_FIELDS",
           "CONV_LIMITS", "CONV_DIM_BITS", "CONV_KERNEL_BITS", "fmap_bank_words",
           "fmap_address", "HEADER_FIELDS", "HEADER_WORDS", "HEADER_WORD"]

#: Width of a memory id on the load port (so at most 256 memory ids: ``2N+6 <= 256``).
MEM_ID_BITS = 8
#: Width of a word address on the load port.
ADDR_BITS = 16

#: The memories every PE shares (each PE holds a replica of the first four), in id order from
#: ``N`` on.
SHARED_MEMORIES = ("codebook", "huff_limit", "huff_base", "huff_symbols", "layers")

#: Largest PE count with a column skip table: bit p of an entry is PE p, one 16-bit word per
#: entry up to 16 PEs, a power of two of them above (:func:`colskip_words`).
COLSKIP_MAX_PES = 64


def colskip_words(n_pes):
    """16-bit words per column skip table entry (1 up to 16 PEs, 2 up to 32, 4 up to 64): word
    ``w`` of entry ``e`` is at address ``e * colskip_words + w`` and holds PEs ``16w..16w+15``."""
    words = 1
    while 16 * words < n_pes:
        words *= 2
    return words


def colskip_table_words(n_pes, max_layers, max_features):
    """Load words of the whole column skip table: an entry per layer and input column
    (``max_layers * max_features``), :func:`colskip_words` words each; addresses at or past it
    are outside the table."""
    return max_layers * max_features * colskip_words(n_pes)


def fixed_entry_bits(idx_bits, gap_bits):
    """Bits of one stored entry with fixed-width column codes (``AcceleratorConfig.huffman``
    off, EIE's format): the joint symbol ``gap << idx_bits | idx`` right-aligned in a byte when
    it fits one (two entries a word, the first in the high byte), else in a whole word. A
    column pointer stays a bit offset into the PE's stream, so it is a multiple of this."""
    return 8 if idx_bits + gap_bits <= 8 else 16


def shared_mem(n_pes, name):
    """Memory id of the shared memory ``name`` (one of :data:`SHARED_MEMORIES`): ``N + k``."""
    return n_pes + SHARED_MEMORIES.index(name)


def pointer_mem(n_pes, p):
    """Memory id of PE ``p``'s pointer memory (``N+5+p``; ``pointer_mem(N, N)`` is one past the
    last pointer memory)."""
    return n_pes + len(SHARED_MEMORIES) + p


def colskip_mem(n_pes):
    """Memory id of the column skip table (``2N+5``, one past the last pointer memory)."""
    return pointer_mem(n_pes, n_pes)


def n_mem_ids(n_pes):
    """Memory ids in use: ``0 .. n_mem_ids - 1`` (``2N+6``)."""
    return colskip_mem(n_pes) + 1


def mem_names(n_pes):
    """``dict`` memory id -> name: ``pe0..`` (ids ``0..N-1``, the PEs' data memories),
    ``codebook``, ``huff_limit``, ``huff_base``, ``huff_symbols``, ``layers`` (``N..N+4``),
    ``ptr0..`` (``N+5..2N+4``, the PEs' pointer memories), ``colskip`` (``2N+5``, the central
    unit's column skip table)."""
    names = {p: f"pe{p}" for p in range(n_pes)}
    for name in SHARED_MEMORIES:
        names[shared_mem(n_pes, name)] = name
    for p in range(n_pes):
        names[pointer_mem(n_pes, p)] = f"ptr{p}"
    names[colskip_mem(n_pes)] = "colskip"
    return names


def is_pe_memory(mem, n_pes):
    """Memory id ``mem`` is a PE's data or pointer memory (as deep as ``pe_mem_depth``)."""
    return mem < n_pes or pointer_mem(n_pes, 0) <= mem < pointer_mem(n_pes, n_pes)


#: Layer descriptor (memory ``layers``, :data:`DESC_WORDS` words per layer at
#: ``DESC_WORDS * L``): the field held by each word, in word order. Words 7..15 describe a conv
#: layer's geometry (zero for an fc layer, except ``in_values`` = ``in_features`` and, on the fc
#: layer that reads a feature map, ``in_channels``/``in_height``/``in_width`` of that map).
DESC_FIELDS = ("in_features", "out_features", "flags", "shift", "bias_shift", "sym_base",
               "n_symbols", "pool", "in_values", "in_channels", "in_height", "in_width",
               "kernel_h", "kernel_w", "out_height", "out_width")
DESC_WORDS = len(DESC_FIELDS)
#: Field name -> word index of the descriptor.
DESC_WORD = {name: k for k, name in enumerate(DESC_FIELDS)}
#: The conv geometry words of the descriptor (decoded only by a gateware with feature-map
#: buffers, ``AcceleratorConfig.fmap_depth > 0``).
CONV_FIELDS = DESC_FIELDS[DESC_WORD["pool"]:]
#: Bits of the descriptor's ``flags`` word: ``relu`` (ReLU + requantize), ``last`` (emit the
#: logits), ``ptr_words2`` (pointers are two words), ``conv`` (a conv layer: one pass per output
#: position, ReLU and 2 x 2 max-pool into a feature-map buffer), ``fmap_in`` (the layer reads its
#: input from a feature-map buffer), ``fmap_buf`` (the buffer, 0 or 1, that holds that input; a
#: conv layer writes the other one).
DESC_FLAGS = {"relu": 0, "last": 1, "ptr_words2": 2, "conv": 3, "fmap_in": 4, "fmap_buf": 5}
FLAG_RELU = 1 << DESC_FLAGS["relu"]
FLAG_LAST = 1 << DESC_FLAGS["last"]
FLAG_PTR2 = 1 << DESC_FLAGS["ptr_words2"]
FLAG_CONV = 1 << DESC_FLAGS["conv"]
FLAG_FMAP_IN = 1 << DESC_FLAGS["fmap_in"]
FLAG_FMAP_BUF = 1 << DESC_FLAGS["fmap_buf"]

#: What the conv hardware runs (docs/ARCHITECTURE.md sections 1 and 4): stride 1, no padding,
#: a ReLU and a 2 x 2 / 2 max-pool after every conv layer; feature-map height and width (input,
#: and output before pooling) up to ``max_dim``, kernels up to ``max_kernel`` on a side.
CONV_LIMITS = {"stride": 1, "padding": 0, "pool": 2, "max_dim": 255, "max_kernel": 15}
#: Width of the descriptor's height/width fields in the decoded layer config.
CONV_DIM_BITS = 8
#: Width of the descriptor's kernel fields in the decoded layer config.
CONV_KERNEL_BITS = 4


def fmap_bank_words(channels, height, width, n_pes):
    """Entries of one feature-map bank a ``channels x height x width`` map needs with ``n_pes``
    banks (channel ``c`` in bank ``c mod N`` at ``((c div N) * height + y) * width + x``; layer
    0's input map is stored whole in every bank: ``n_pes = 1``)."""
    return -(-channels // n_pes) * height * width


def fmap_address(c, y, x, height, width, n_pes):
    """``(bank, address)`` of value ``(c, y, x)`` of a map of ``height x width`` channels."""
    return c % n_pes, ((c // n_pes) * height + y) * width + x


#: Per-layer header at the start of a PE's data memory (:data:`HEADER_WORDS` words per layer at
#: ``HEADER_WORDS * L``): pointer table base (in the pointer memory), stream base, bias base,
#: local row count.
HEADER_FIELDS = ("ptr_base", "stream_base", "bias_base", "rows_local")
HEADER_WORDS = len(HEADER_FIELDS)
#: Field name -> word index of the header.
HEADER_WORD = {name: k for k, name in enumerate(HEADER_FIELDS)}
