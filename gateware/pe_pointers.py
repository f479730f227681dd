"""The PE's pointer fetch: non-zero activations to column segments (docs/ARCHITECTURE.md
section 7, stage 1; part of :class:`gateware.pe.ProcessingElement`)."""
from amaranth import Module, Signal, Cat, Mux
from amaranth.lib import wiring, stream, data, fifo
from amaranth.lib.wiring import In, Out

__all__ = ["PointerFetch", "activation_layout", "column_segment_layout", "pe_tag_bits"]


def pe_tag_bits(config):
    """Width of the tag an activation carries through the PE's stages 1-4 (its ``value`` field
    here, the decoder's segment tag): the activation value, and with conv passes that overlap
    in the column engine (``config.conv`` with ``config.early``) one more bit on top, the
    accumulator bank of the activation's pass."""
    return config.act_bits + (1 if config.conv and config.early else 0)


def activation_layout(config):
    """A non-zero activation of input column ``col``: its tag (:func:`pe_tag_bits`: the value,
    with overlapping conv passes the bank above it) in ``value``."""
    return data.StructLayout({"col": 16, "value": pe_tag_bits(config)})


def column_segment_layout(config):
    """A column's bit range ``[start, end)`` of the layer's Huffman stream (bit addresses) and
    its activation's tag (:func:`pe_tag_bits`) in ``value``."""
    bits = (config.pe_mem_depth - 1).bit_length() + 4
    return data.StructLayout({"start": bits, "end": bits, "value": pe_tag_bits(config)})


class PointerFetch(wiring.Component):
    """Column pointer reads: ``ptr[col]`` and ``ptr[col + 1]`` per activation.

    ``ptr[col]`` is skipped when the previous column was ``col - 1`` (its end pointer is this
    column's start). One read port: one pointer word per cycle, so a column takes 1-2 cycles
    (2-word pointers: 2-4). Two read ports (``config.pointer_ports == 2``, the same image in both
    memories): 1-word pointers ``ptr[col]`` and ``ptr[col + 1]`` in one cycle, one cycle per
    column; 2-word pointers the high and low word of one pointer per cycle (1-2 cycles). Empty
    columns are dropped here; a column whose end is below its start is dropped with
    ``o_error``. The segments wait in a queue of ``depth`` entries; the last read of a column
    is issued only when the queue will have room for it.

    Parameters
    ----------
    config : gateware.config.AcceleratorConfig
        Uses ``pe_mem_depth``, ``pointer_ports``, ``act_bits``, ``max_features``, ``conv`` and
        ``early``.
    depth : int
        Entries of the segment queue.
    in_features_bits : int
        Width of ``i_in_features``.

    Attributes
    ----------
    i_act : In(stream.Signature(activation_layout(config)))
        Non-zero activations (no ``end`` token: the PE handles it). ``ready`` (independent of
        ``valid``) while no column is being fetched or its last read is issued this cycle; a
        column at or past ``in_features`` (or ``max_features``) is taken and dropped with
        ``o_error``. Activations are taken in the header phase too (``i_run`` low): the reads
        wait for ``i_run``.
    i_run : In(1)
        The layer header is read: pointer reads may be issued.
    i_restart : In(1)
        A layer starts: the next column's start pointer is read (no previous column).
    i_ptr_base, i_ptr_words2, i_in_features : In(log2(pe_mem_depth)), In(1), In(...)
        The layer's pointer table address, its 2-word pointers flag and its input count;
        stable while columns are fetched.
    o_addr, o_re : Out(log2(pe_mem_depth)), Out(1)
        Pointer memory read (its data on ``i_rdata`` one cycle later). Always granted.
    o_addr2 : Out(log2(pe_mem_depth))
        (two pointer ports only) the second port's address, read with ``o_re``.
    i_rdata, i_rdata2 : In(16), In(16)
        The pointer memory's read data (``i_rdata2``: two ports only).
    o_seg : Out(stream.Signature(column_segment_layout(config)))
        Non-empty column segments, from the queue (a ``SyncFIFO``): ``valid`` one cycle after
        the column's end pointer returns.
    o_issuing : Out(1)
        A column is being fetched (its reads are not all issued).
    o_returning : Out(1)
        A pointer read returns this cycle.
    o_error : Out(1)
        Pulse: a column out of range or decreasing pointers.
    """

    def __init__(self, config, depth, in_features_bits):
        self.cfg = config
        self.depth = depth
        ma = (config.pe_mem_depth - 1).bit_length()
        ports = {
            "i_act": In(stream.Signature(activation_layout(config))),
            "i_run": In(1),
            "i_restart": In(1),
            "i_ptr_base": In(ma),
            "i_ptr_words2": In(1),
            "i_in_features": In(in_features_bits),
            "o_addr": Out(ma),
            "o_re": Out(1),
            "i_rdata": In(16),
            "o_seg": Out(stream.Signature(column_segment_layout(config))),
            "o_issuing": Out(1),
            "o_returning": Out(1),
            "o_error": Out(1),
        }
        if config.pointer_ports == 2:
            ports.update({"o_addr2": Out(ma), "i_rdata2": In(16)})
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        A = pe_tag_bits(cfg)                           # the activation's tag
        MA = (cfg.pe_mem_depth - 1).bit_length()      # word address bits
        BA = MA + 4                                    # bit address bits
        FB = max(1, cfg.max_features.bit_length())     # a column index + 1
        two = cfg.pointer_ports == 2
        pw2 = self.i_ptr_words2
        error = self.o_error
        pi_busy = Signal()
        pi_col = Signal(FB)
        pi_value = Signal(A)
        # 0: reading ptr[col], 1: reading ptr[col + 1]. Two ports, 1-word pointers: 0 reads
        # both (port 1: ptr[col], port 2: ptr[col + 1]), 1 only ptr[col + 1] (port 2).
        pi_phase = Signal()
        pi_w = Signal()                 # word of a 2-word pointer (0 = high; one port only)
        prev_col1 = Signal(FB)          # col + 1 of the last column issued
        prev_valid = Signal()

        # return side registers (the read issued last cycle)
        pr_valid = Signal()
        pr_phase = Signal()
        pr_hi = Signal()                # one port: the read is a high word
        if two:
            pr_start = Signal()         # port 1 read the column's start pointer
        pr_value = Signal(A)
        hi_word = Signal(16)
        last_end = Signal(BA)           # the last pointer read: a column's start, then its end

        seg_layout = column_segment_layout(cfg)
        m.submodules.segq = segq = fifo.SyncFIFO(width=seg_layout.size, depth=self.depth)
        sq_in = data.View(seg_layout, segq.w_data)
        self._segq = segq

        # ---- issue side ------------------------------------------------------------------
        pi_last = Signal()              # the read about to be issued is the column's last
        seg_credit = Signal()
        pi_req = self.o_re
        pi_addr = self.o_addr
        if two:
            # one read per pointer (both words of a 2-word one), so one per column (1-word)
            m.d.comb += [
                pi_last.eq(pi_phase | ~pw2),
                seg_credit.eq(segq.level + (pr_valid & pr_phase) < self.depth),
                pi_req.eq(self.i_run & pi_busy & (~pi_last | seg_credit)),
                pi_addr.eq(self.i_ptr_base + ((pi_col + (pi_phase & pw2)) << pw2)),
                self.o_addr2.eq(pi_addr + 1),
            ]
            m.d.sync += pr_valid.eq(0)
            with m.If(pi_req):      # the pointer ports serve only this fetch: always granted
                # pr_phase: the read returns a column's end pointer
                m.d.sync += [
                    pr_valid.eq(1), pr_phase.eq(pi_last), pr_start.eq(~pi_phase & ~pw2),
                    pr_value.eq(pi_value), pi_phase.eq(1),
                ]
        else:
            m.d.comb += pi_last.eq(pi_phase & (~pw2 | pi_w))
            m.d.comb += seg_credit.eq(segq.level + (pr_valid & pr_phase & ~pr_hi)
                                      < self.depth)
            m.d.comb += pi_req.eq(self.i_run & pi_busy & (~pi_last | seg_credit))
            m.d.comb += pi_addr.eq(self.i_ptr_base + ((pi_col + pi_phase) << pw2) + pi_w)

            m.d.sync += pr_valid.eq(0)
            with m.If(pi_req):      # the pointer port serves only this fetch: always granted
                m.d.sync += [
                    pr_valid.eq(1), pr_phase.eq(pi_phase), pr_hi.eq(pw2 & ~pi_w),
                    pr_value.eq(pi_value),
                ]
                with m.If(pw2 & ~pi_w):
                    m.d.sync += pi_w.eq(1)
                with m.Else():
                    m.d.sync += [pi_w.eq(0), pi_phase.eq(1)]

        act = self.i_act.payload
        act_take = Signal()
        m.d.comb += [
            self.i_act.ready.eq(~pi_busy | (pi_req & pi_last)),
            act_take.eq(self.i_act.valid & self.i_act.ready),
        ]
        with m.If(pi_req & pi_last):
            m.d.sync += pi_busy.eq(0)
        with m.If(act_take):
            with m.If((act.col >= self.i_in_features) | (act.col >= cfg.max_features)):
                m.d.comb += error.eq(1)
            with m.Else():
                need = ~(prev_valid & (prev_col1 == act.col))
                m.d.sync += [
                    pi_busy.eq(1), pi_col.eq(act.col), pi_value.eq(act.value),
                    pi_phase.eq(~need), pi_w.eq(0),
                    prev_col1.eq(act.col + 1), prev_valid.eq(1),
                ]
        with m.If(self.i_restart):
            m.d.sync += prev_valid.eq(0)

        # ---- return side -----------------------------------------------------------------
        ptr_val = Signal(BA)            # the pointer read (a column's start or end)
        if two:
            # A column's start is ptr[col] on port 1 when it was read with its end (1-word
            # pointers), else the pointer read before its end (2-word pointers) or the previous
            # column's end: last_end.
            seg_start = Signal(BA)
            m.d.comb += [
                ptr_val.eq(Mux(pw2, Cat(self.i_rdata2, self.i_rdata), self.i_rdata2)),
                seg_start.eq(Mux(pr_start, self.i_rdata, last_end)),
            ]
            with m.If(pr_valid):
                m.d.sync += last_end.eq(ptr_val)
                with m.If(pr_phase):
                    with m.If(ptr_val < seg_start):
                        m.d.comb += error.eq(1)
                    with m.If(ptr_val > seg_start):
                        m.d.comb += segq.w_en.eq(1)
        else:
            # A column's start is the pointer read just before its end: ptr[col] when it was
            # read, else the previous column's end. Either way it is in last_end.
            seg_start = last_end
            m.d.comb += ptr_val.eq(Mux(pw2, Cat(self.i_rdata, hi_word), self.i_rdata))
            with m.If(pr_valid):
                with m.If(pr_hi):
                    m.d.sync += hi_word.eq(self.i_rdata)
                with m.Else():
                    m.d.sync += last_end.eq(ptr_val)
                with m.If(~pr_hi & pr_phase):
                    with m.If(ptr_val < last_end):
                        m.d.comb += error.eq(1)
                    with m.If(ptr_val > last_end):
                        m.d.comb += segq.w_en.eq(1)
        m.d.comb += [sq_in.start.eq(seg_start), sq_in.end.eq(ptr_val), sq_in.value.eq(pr_value)]
        m.d.comb += [
            self.o_seg.valid.eq(segq.r_rdy),
            self.o_seg.payload.eq(segq.r_data),
            segq.r_en.eq(self.o_seg.ready),
            self.o_issuing.eq(pi_busy),
            self.o_returning.eq(pr_valid),
        ]
        # signals the profiler (hw.profile) samples every cycle
        self._probe = dict(pi_busy=pi_busy, segq_level=segq.level, pr_valid=pr_valid)
        return m
