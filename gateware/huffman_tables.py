"""The Huffman decoder's tables: their load port, the per-layer ``limit`` loader and the lookups.

Part of :class:`gateware.huffman.HuffmanDecoder` (docs/ARCHITECTURE.md section 3). Two memories
hold every layer's tables at the addresses of the packed images: ``limit`` and ``base`` (16-bit
entries, ``HUFF_MAX_LEN`` per layer, in one memory: limit first, base after it) and the symbol
table (``idx_bits + gap_bits`` per entry). At a layer start the layer's ``limit`` entries are
copied into registers (the decode loop compares its peek with all of them at once); afterwards
the memory's read port serves the lookup pipeline's ``base[len]`` reads.
"""
from amaranth import Module, Signal, Const, Mux
from amaranth.lib import wiring, stream, data
from amaranth.lib.wiring import In, Out

from .config import LoadWrite
from .memories import table_memory

__all__ = ["HuffmanTables", "TableReadSignature", "limit_layout"]


class TableReadSignature(wiring.Signature):
    """A synchronous table read, seen from the reader: ``addr`` (``addr_bits``) and ``en`` out,
    ``data`` (``data_bits``) in one cycle after a read with ``en`` high; ``data`` holds while
    ``en`` is low."""

    def __init__(self, addr_bits, data_bits):
        super().__init__({"addr": Out(addr_bits), "en": Out(1), "data": In(data_bits)})


def limit_layout(max_len):
    """The comparator limits of one layer: field ``l<n>`` is ``limit[n] >> (MAX - n)`` rounded
    up, ``n + 1`` bits (only those are compared with the top ``n`` bits of the peek)."""
    return data.StructLayout({f"l{l + 1}": l + 2 for l in range(max_len)})


class HuffmanTables(wiring.Component):
    """Huffman table memories with their load port, ``limit`` loader and lookup ports.

    Parameters
    ----------
    config : gateware.config.AcceleratorConfig
        Uses ``huff_max_len``, ``max_layers``, ``symbol_depth``, ``idx_bits``, ``gap_bits`` and
        the memory ids of the Huffman tables.

    Attributes
    ----------
    i_load : In(stream.Signature(LoadWrite))
        Table writes (``mem`` = huff_limit / huff_base / huff_symbols id, ``addr``, ``data``);
        writes past a table's end and other ids are ignored. Always ready; one write per cycle.
        Only while nothing is decoded (the lookups would read a half-written table).
    i_layer_index : In(log2(max_layers))
        Layer whose tables are used; sampled by ``i_start``.
    i_start : In(1)
        Pulse: copy the layer's ``limit`` table into ``o_limit``. ``o_loading`` is high from
        the next cycle for ``HUFF_MAX_LEN + 2`` cycles (one table read per cycle, two register
        stages behind it).
    o_loading : Out(1)
        A ``limit`` load is in progress: ``o_limit`` is not complete and the ``base`` lookup
        port is not served (its reads are ignored).
    o_limit : Out(limit_layout(HUFF_MAX_LEN))
        The layer's limits, registers. Saturated to ``2^MAX`` and forced monotone on the way
        in, so the decode loop's comparisons always form a thermometer code (a corrupt table
        cannot derail it).
    i_base_rd : In(TableReadSignature(4, 16))
        ``base[addr]`` of the started layer (``addr`` is a code length, 1..``MAX``), one cycle
        after ``en``.
    i_sym_rd : In(TableReadSignature(log2(symbol_depth), idx_bits + gap_bits))
        The symbol table entry ``addr``, one cycle after ``en``.
    """

    def __init__(self, config):
        self.cfg = config
        self.max_len = config.huff_max_len
        self.layer_bits = max(1, (config.max_layers - 1).bit_length())
        self.sym_bits = config.idx_bits + config.gap_bits
        self.sym_addr_bits = max(1, (config.symbol_depth - 1).bit_length())
        super().__init__({
            "i_load": In(stream.Signature(LoadWrite)),
            "i_layer_index": In(self.layer_bits),
            "i_start": In(1),
            "o_loading": Out(1),
            "o_limit": Out(limit_layout(self.max_len)),
            "i_base_rd": In(TableReadSignature(4, 16)),
            "i_sym_rd": In(TableReadSignature(self.sym_addr_bits, self.sym_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        MAX = self.max_len
        tbl_words = cfg.max_layers * MAX          # limit at [0, tbl_words), base after it
        sym_depth = cfg.symbol_depth

        # ---- table memories and their load port ------------------------------------------
        m.submodules.tables = tables = table_memory(16, 2 * tbl_words)
        m.submodules.symtab = symtab = table_memory(self.sym_bits, sym_depth)
        tbl_rd = tables.read_port()
        tbl_wr = tables.write_port()
        sym_rd = symtab.read_port()
        sym_wr = symtab.write_port()

        ld = self.i_load.payload
        m.d.comb += self.i_load.ready.eq(1)
        with m.If(self.i_load.valid):
            with m.If((ld.mem == cfg.mem_huff_limit) & (ld.addr < tbl_words)):
                m.d.comb += [tbl_wr.en.eq(1), tbl_wr.addr.eq(ld.addr)]
            with m.If((ld.mem == cfg.mem_huff_base) & (ld.addr < tbl_words)):
                m.d.comb += [tbl_wr.en.eq(1), tbl_wr.addr.eq(ld.addr + tbl_words)]
            with m.If((ld.mem == cfg.mem_huff_symbols) & (ld.addr < sym_depth)):
                m.d.comb += [sym_wr.en.eq(1), sym_wr.addr.eq(ld.addr)]
        m.d.comb += [tbl_wr.data.eq(ld.data), sym_wr.data.eq(ld.data[:self.sym_bits])]

        # ---- limit loader ------------------------------------------------------------------
        # limit[l] = X << (MAX - l): only its top l + 1 bits are kept and compared with the top
        # l bits of the peek (peek < X << k  <=>  peek >> k < X)
        limit = [self.o_limit[f"l{l + 1}"] for l in range(MAX)]
        loading = self.o_loading
        lcnt = Signal(range(MAX + 1))            # next table entry to read
        lrd_valid = Signal()                     # tbl_rd.data holds entry lrd_idx
        lrd_idx = Signal(range(MAX))
        lbase = Signal(range(tbl_words + 1))     # L * MAX
        bbase = Signal(range(2 * tbl_words + 1))  # tbl_words + L * MAX - 1 (base[len] at +len)
        prev_limit = Signal(MAX + 1)

        # Two stages per entry (timing): the table word is saturated and rounded into a
        # register, then forced monotone against the previous limit. `i_start` (a late signal
        # from the sequencer) only overrides the loader's control registers.
        rnd = Signal(MAX + 1)                    # rounded entry rnd_idx
        rnd_valid = Signal()
        rnd_idx = Signal(range(MAX))
        with m.If(loading):
            m.d.sync += lrd_valid.eq(lcnt < MAX)
            m.d.sync += lrd_idx.eq(lcnt)
            with m.If(lcnt < MAX):
                m.d.sync += lcnt.eq(lcnt + 1)
            # Saturate to 2^MAX and force the table monotone, so that the comparator outputs
            # always form a thermometer code (a corrupt table cannot derail the buffer).
            raw = tbl_rd.data
            sat = Signal(MAX + 1)
            low = Signal(MAX + 1)      # bits below the kept slice of entry lrd_idx
            m.d.comb += [
                sat.eq(Mux(raw > (1 << MAX), 1 << MAX, raw)),
                low.eq(Const((1 << MAX) - 1, MAX + 1) >> (lrd_idx + 1)),
            ]
            m.d.sync += [rnd.eq(sat & ~low), rnd_valid.eq(lrd_valid), rnd_idx.eq(lrd_idx)]
            with m.If(rnd_valid):
                val = Mux(rnd < prev_limit, prev_limit, rnd)
                m.d.sync += prev_limit.eq(val)
                for l in range(MAX):
                    with m.If(rnd_idx == l):
                        m.d.sync += limit[l].eq(val[MAX - l - 1:])
                with m.If(rnd_idx == MAX - 1):
                    m.d.sync += loading.eq(0)
        with m.If(self.i_start):
            m.d.sync += [
                loading.eq(1), lcnt.eq(0), lrd_valid.eq(0), rnd_valid.eq(0), prev_limit.eq(0),
                lbase.eq(self.i_layer_index * MAX),
                bbase.eq(self.i_layer_index * MAX + tbl_words - 1),
            ]

        # ---- lookup ports: the loader owns the table read port while it loads -------------
        with m.If(loading):
            m.d.comb += [tbl_rd.addr.eq(lbase + lcnt), tbl_rd.en.eq(1)]
        with m.Else():
            m.d.comb += [tbl_rd.addr.eq(bbase + self.i_base_rd.addr),
                         tbl_rd.en.eq(self.i_base_rd.en)]
        m.d.comb += [
            self.i_base_rd.data.eq(tbl_rd.data),
            sym_rd.addr.eq(self.i_sym_rd.addr),
            sym_rd.en.eq(self.i_sym_rd.en),
            self.i_sym_rd.data.eq(sym_rd.data),
        ]
        return m
