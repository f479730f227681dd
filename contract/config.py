"""Parameters of the accelerator gateware: :class:`AcceleratorConfig` (plain data).

The gateware is built from one of these; the packer (``sw.pack.PackLimits.from_config``) and the
host check a model against the same numbers. The Amaranth layouts derived from it live in
``gateware/config.py``.
"""
from dataclasses import dataclass

from contract import memmap
from contract.widths import HUFF_MAX_LEN_LIMIT, WIDTH_DEFAULTS, WORD_BITS

__all__ = ["AcceleratorConfig"]


@dataclass(frozen=True)
class AcceleratorConfig:
    """Everything the gateware is parametric in.

    Attributes
    ----------
    n_pes : int
        Number of processing elements N (rows interleaved ``r mod N``).
    act_bits, weight_bits, acc_bits, idx_bits, gap_bits, huff_max_len : int
        Widths of section 1 of docs/ARCHITECTURE.md.
    pe_mem_depth : int
        Words (16-bit) of each of a PE's two private memories: the data memory (headers,
        Huffman streams, biases) and the pointer memory (column pointer tables), each with its
        own port (16384 = one iCE40 SPRAM each).
    max_layers : int
        Layer descriptors the hardware holds.
    max_rows_per_pe : int
        Accumulator entries per PE, summed over all layers.
    max_features : int
        Largest in/out feature count of any layer (sizes activation indices).
    symbol_depth : int
        Entries of the joint-symbol table (all layers together). 512 8-bit entries are one iCE40
        EBR, like 256. ``hw.build`` / ``hw.bench`` grow it (and take ``idx_bits``/``gap_bits``)
        from the model: the committed LeNet-300-100 with 5-bit gaps has up to 738 joint
        symbols (N = 1), so it gets 1024 entries of 9 bits.
    fifo_depth : int
        Depth of each PE's broadcast FIFO (EIE: 8).
    input_lanes : int
        K, the input values carried by one dense input word (``i_input``, 1..16): word ``k``
        holds values ``k*K .. k*K+K-1`` (lane 0 = lowest index). The central unit scans a word
        for non-zero values in one cycle, so it skips K zero inputs per cycle (EIE's leading
        non-zero detection).
    requant_overlap : bool
        Requantize layer L while layer L + 1 accumulates: two accumulator banks (even and odd
        layers, twice the accumulator EBR) and a second SB_MAC16 per PE; the next layer starts
        when every PE has taken the end token instead of after the last output. ``False``: one
        bank, a PE finishes its requantization before the next layer starts (the iCEBreaker
        build: the overlap does not fit, docs/HARDWARE.md).
    column_skip : bool
        The central unit holds the *column skip table* (memory id ``mem_colskip``): per layer
        and input column one bit per PE, set when the PE's column is empty (no stored weight,
        no filler). A non-zero activation is pushed only into the FIFOs of the PEs that have
        work in its column, so a PE spends no cycle on columns it has nothing in (one PE's
        share of a column is often empty with N >= 4). Each PE then has its own FIFO (with
        the table off they share one ring). Up to ``memmap.COLSKIP_MAX_PES`` (64) PEs: one
        16-bit load word per column up to 16 PEs, ``memmap.colskip_words`` above; ignored with
        more. An unloaded table (all zeros) skips nothing.
    colskip_register : bool
        With the column skip table: its read data (the PE mask of a taken word) passes a
        register before the FIFO-room check and the hand-shake back to the word sources, one
        more cycle of latency per broadcast word (about one cycle a layer: a full pipeline
        still takes a word every cycle). The ECP5's block RAM clock-to-out (5.8 ns) otherwise
        sits on the ULX3S build's critical path; ``False`` (the default) keeps the cycle.
    output_register : bool
        A two-entry FIFO between each PE's output and the collector, so that the collector's
        hand-shake (in the last layer the in-order logit turn over all N PEs and the logit
        count) reaches the PE's requantizer and its accumulator read from a register: the
        16-PE ULX3S build's critical path without it. The collector's running argmax then
        also works on a registered copy of each logit, a cycle behind (the N-way logit select
        and the signed compare were the next critical path). One more cycle at each layer's
        tail; ``False`` (the default) keeps it.
    broadcast_width : int
        Activations the central unit hands to the PE FIFOs per cycle, 1 or 2. Two need the
        column skip table (``skip_columns``; else one is used): a FIFO then takes up to two
        words per cycle, layer 0 pushes the two lowest non-zero lanes of a word per cycle and
        the hidden layers' broadcast takes the heads of two output banks per cycle (in bank
        order, no longer sorted by column: a PE does not need the order, only its reuse of the
        previous column's end pointer prefers it).
    pointer_ports : int
        Read ports of each PE's pointer memory (1 or 2). With 2 the pointer fetch reads
        ``ptr[col]`` and ``ptr[col + 1]`` in one cycle (1-word pointers; EIE's even/odd pointer
        banks in spirit) or both words of one pointer (2-word pointers), so a column costs one
        pointer-port cycle instead of up to two (or four). Same memory images; with
        ``memory == "ice40"`` the second port is a duplicate SPRAM set written in parallel (one
        more SB_SPRAM256KA per PE: the iCEBreaker build uses 1).
    early_start : bool
        With ``requant_overlap``: layer L + 1 starts as soon as layer L's broadcast is complete
        (its end token is in every PE FIFO) instead of when every PE has taken that token. A
        PE still working on layer L keeps the start waiting (one may wait) and begins L + 1 at
        its hand-over, so the PEs that finished L early already work on the columns of L + 1
        that come from finished rows (the central unit broadcasts each PE's outputs as they are
        collected) while the busiest PE finishes L, and the per-layer start costs (header,
        table load, the first columns' fetch) overlap that PE's tail.
    huffman : bool
        The PEs decode Huffman-coded columns (the default: the joint-symbol tables and the
        decoder of ``gateware.huffman``). ``False``: the columns are stored as fixed-width
        entries, EIE's own format (``memmap.fixed_entry_bits``: the joint symbol in a byte, or
        a word when ``idx_bits + gap_bits > 8``), and the PE's decoder is a slot selector of
        about 80 LUT4 instead of the Huffman decoder's 1,276 on the iCE40: the streams
        take more memory (LeNet-300-100 about 1.9x) and the PEs far less logic. The packer
        writes the images for whichever the gateware has (STATUS ``symbol_depth`` is 0 without
        the Huffman decoder).
    stream_words : int
        16-bit memory words the PE's word fetch reads and its Huffman decoder takes per cycle
        (1 or 2). With 2 the data memory has a second read port (``"ice40"``: a duplicate SPRAM
        written in parallel) and a stream word is the 32 bits of words ``a`` and ``a + 1``
        from a column's first word ``a`` on: a segment of up to 17 bits always fits one, so a
        column of one or two codes rarely needs a second cycle of the decoder's word intake
        (with 16-bit words every column that crosses a word boundary does). Same memory
        images.
    segment_queue_depth : int
        Entries of each PE's two column-segment queues (pointer fetch -> word fetch, word fetch
        -> decoder); ``0``: automatic, 2 with one PE and 4 with more (short columns need the
        fetch to run further ahead). ``1`` saves about 90 logic cells per queue on the
        iCE40 (each entry is some 26 flip-flops and a read multiplexer) for a few cycles with
        one PE (docs/HARDWARE.md, "The iCEBreaker build").
    fmap_depth : int
        Entries (``act_bits`` wide) of each of the N banks of each of the two feature-map
        buffers that conv layers read and write (docs/ARCHITECTURE.md section 4; a
        ``C x H x W`` map needs ``ceil(C / N) * H * W`` per bank). 0 (the default): no
        feature-map buffers, the gateware runs fully-connected layers only and the packer
        refuses conv layers. Otherwise a power of two; ``hw.build`` / ``hw.bench`` size it from
        the model (LeNet-5: 4096 at N = 1, 1024 at N = 4).
    block_ram_banks : int
        Of the central unit's N output banks, the first ``block_ram_banks`` are held in block
        RAM whatever their depth (yosys ``ram_style = "block"``); the others are left to the
        synthesis tool, which puts a bank of a few dozen entries (the build cuts
        ``max_rows_per_pe`` to the model) in distributed RAM. A board whose logic is nearly
        full but whose block RAM is not spends the block RAM it has left here (the Tang Primer
        20K at 8 PEs: 3). 0 (the default): every bank to the tool. No effect on behaviour.
    memory : str
        ``"lib"``: every memory is an ``amaranth.lib.memory.Memory`` (simulation, any FPGA);
        ``"ice40"``: PE memories (data and pointers) map to SB_SPRAM256KA.
    """
    n_pes: int = 4
    act_bits: int = WIDTH_DEFAULTS["act_bits"]
    weight_bits: int = WIDTH_DEFAULTS["weight_bits"]
    acc_bits: int = WIDTH_DEFAULTS["acc_bits"]
    idx_bits: int = WIDTH_DEFAULTS["idx_bits"]
    gap_bits: int = WIDTH_DEFAULTS["gap_bits"]
    huff_max_len: int = WIDTH_DEFAULTS["huff_max_len"]
    pe_mem_depth: int = 16384
    max_layers: int = 4
    max_rows_per_pe: int = 256
    max_features: int = 1024
    symbol_depth: int = 512
    fifo_depth: int = 8
    input_lanes: int = 16
    requant_overlap: bool = True
    column_skip: bool = True
    colskip_register: bool = False
    output_register: bool = False
    broadcast_width: int = 2
    pointer_ports: int = 2
    early_start: bool = True
    huffman: bool = True
    stream_words: int = 2
    segment_queue_depth: int = 0
    fmap_depth: int = 0
    block_ram_banks: int = 0
    memory: str = "lib"

    def __post_init__(self):
        if not 1 <= self.n_pes <= 64:
            raise ValueError(f"n_pes must be 1..64, not {self.n_pes}")
        if not 1 <= self.huff_max_len <= HUFF_MAX_LEN_LIMIT:
            raise ValueError(f"huff_max_len must be 1..{HUFF_MAX_LEN_LIMIT}, "
                             f"not {self.huff_max_len}")
        if self.idx_bits + self.gap_bits > WORD_BITS:
            raise ValueError("idx_bits + gap_bits must fit a 16-bit symbol word")
        if not 1 <= self.input_lanes <= 16:
            raise ValueError(f"input_lanes must be 1..16, not {self.input_lanes}")
        if self.broadcast_width not in (1, 2):
            raise ValueError(f"broadcast_width must be 1 or 2, not {self.broadcast_width}")
        if not self.bcast_width <= self.fifo_depth <= 255:
            raise ValueError(f"fifo_depth must be {self.bcast_width}..255 (at least the words "
                             f"broadcast per cycle), not {self.fifo_depth}")
        if isinstance(self.pointer_ports, bool) or self.pointer_ports not in (1, 2):
            raise ValueError(f"pointer_ports must be 1 or 2, not {self.pointer_ports!r}")
        if isinstance(self.stream_words, bool) or self.stream_words not in (1, 2):
            raise ValueError(f"stream_words must be 1 or 2, not {self.stream_words!r}")
        if not isinstance(self.huffman, bool):
            raise ValueError(f"huffman must be True or False, not {self.huffman!r}")
        if isinstance(self.segment_queue_depth, bool) or not 0 <= self.segment_queue_depth <= 16:
            raise ValueError(f"segment_queue_depth must be 0..16, not "
                             f"{self.segment_queue_depth!r}")
        if isinstance(self.block_ram_banks, bool) or not isinstance(self.block_ram_banks, int) \
                or not 0 <= self.block_ram_banks <= 64:
            raise ValueError(f"block_ram_banks must be 0..64, not {self.block_ram_banks!r}")
        if self.memory not in ("lib", "ice40"):
            raise ValueError(f"memory must be 'lib' or 'ice40', not {self.memory!r}")
        if isinstance(self.fmap_depth, bool) or not isinstance(self.fmap_depth, int) \
                or self.fmap_depth < 0 or self.fmap_depth > 65536 \
                or self.fmap_depth & (self.fmap_depth - 1):
            raise ValueError(f"fmap_depth must be 0 or a power of two <= 65536, not "
                             f"{self.fmap_depth!r}")
        if self.pe_mem_depth > 65536 or self.pe_mem_depth & (self.pe_mem_depth - 1):
            raise ValueError("pe_mem_depth must be a power of two <= 65536")

    # Memory ids of contract.memmap for this PE count.
    @property
    def mem_codebook(self):
        return memmap.shared_mem(self.n_pes, "codebook")

    @property
    def mem_huff_limit(self):
        return memmap.shared_mem(self.n_pes, "huff_limit")

    @property
    def mem_huff_base(self):
        return memmap.shared_mem(self.n_pes, "huff_base")

    @property
    def mem_huff_symbols(self):
        return memmap.shared_mem(self.n_pes, "huff_symbols")

    @property
    def mem_layers(self):
        return memmap.shared_mem(self.n_pes, "layers")

    @property
    def mem_pointers(self):
        """Memory id of PE 0's pointer memory (PE ``p``: ``mem_pointers + p``)."""
        return memmap.pointer_mem(self.n_pes, 0)

    @property
    def mem_colskip(self):
        """Memory id of the column skip table (``2N+5``; written and ignored when the table is
        off, see ``column_skip``)."""
        return memmap.colskip_mem(self.n_pes)

    @property
    def n_mem_ids(self):
        """Memory ids in use: ``0 .. n_mem_ids - 1``."""
        return memmap.n_mem_ids(self.n_pes)

    @property
    def skip_columns(self):
        """The central unit has the column skip table (``column_skip`` and ``n_pes <=
        COLSKIP_MAX_PES``)."""
        return self.column_skip and self.n_pes <= memmap.COLSKIP_MAX_PES

    @property
    def early(self):
        """Layers start early (``early_start`` and ``requant_overlap``)."""
        return self.early_start and self.requant_overlap

    @property
    def bcast_width(self):
        """Activations broadcast per cycle: ``broadcast_width`` with the column skip table,
        else 1."""
        return self.broadcast_width if self.skip_columns else 1

    @property
    def symbol_entries(self):
        """Entries of the joint-symbol table the gateware has: ``symbol_depth`` with the
        Huffman decoder, 0 with fixed-width column entries (``huffman`` off)."""
        return self.symbol_depth if self.huffman else 0

    @property
    def fixed_entry_bits(self):
        """Bits of one stored column entry without the Huffman decoder
        (``memmap.fixed_entry_bits``)."""
        return memmap.fixed_entry_bits(self.idx_bits, self.gap_bits)

    @property
    def colskip_depth(self):
        """Entries of the column skip table: every layer's input columns, layer after layer
        (``max_layers * max_features``)."""
        return self.max_layers * self.max_features

    @property
    def colskip_words(self):
        """16-bit load words per column skip table entry (``memmap.colskip_words``)."""
        return memmap.colskip_words(self.n_pes)

    @property
    def colskip_table_words(self):
        """Load words of the whole column skip table (``memmap.colskip_table_words``)."""
        return memmap.colskip_table_words(self.n_pes, self.max_layers, self.max_features)

    @property
    def conv(self):
        """The gateware runs conv layers (it has feature-map buffers: ``fmap_depth > 0``)."""
        return self.fmap_depth > 0

    @property
    def feature_bits(self):
        return max(1, (self.max_features - 1).bit_length())
