"""The EIE-style accelerator: load router, central unit, N processing elements, sequencer.

::

    i_load ──► load router ──► PE 0..N-1 (data + pointer memories, codebook + Huffman replicas)
                   ├─────────► sequencer (layers memory, mem N+4)
                   └─────────► CentralUnit (column skip table, mem 2N+5)
    i_input ─► CentralUnit ══► FIFO p ──► PE p ──► CentralUnit ─► o_logit / o_argmax
                   ▲  output banks (hidden outputs -> next layer's broadcast) │
                   └──────────────── o_done (barrier) ─► sequencer ─► i_start, i_layer

See docs/ARCHITECTURE.md section 5 and docs/HARDWARE.md.
"""
from amaranth import Module, Signal, Cat, Mux
from amaranth.lib import wiring, data, fifo

from contract.memmap import DESC_WORDS

from .central import CentralUnit
from .config import accelerator_ports
from .pe import ProcessingElement
from .sequencer import LayerSequencer

__all__ = ["Accelerator", "error_layout"]


#: Sticky error flags of the accelerator (``o_error``), bit 0 first.
error_layout = data.StructLayout({
    "pe": 1,        # a PE flagged an error (invalid Huffman code, row/column out of range...)
    "input": 1,     # the input vector's ``last`` was not on input ``in_features - 1``
    "overflow": 1,  # a hidden layer output row does not fit the list buffer
    "logits": 1,    # the final layer produced a different number of logits than out_features
    "layers": 1,    # no ``last`` flag within ``max_layers`` descriptors
    "load": 1,      # a load word for a memory id > 2N+5, past the layers memory or skip table
})


class Accelerator(wiring.Component):
    """Sparse, Huffman-coded fully-connected network accelerator.

    Parameters
    ----------
    config : gateware.config.AcceleratorConfig

    Attributes
    ----------
    i_load : In(stream.Signature(LoadWrite))
        One word of a memory image (``mem`` 8 bits, ``addr`` 16 bits, ``data`` 16 bits),
        written one cycle after it is taken (no inference starts in that cycle).
        Ready while idle (no inference in progress), from the cycle after the accelerator
        became idle and not in a cycle after an input word was offered; a write for ``mem``
        ``0..N+3`` or
        ``N+5..2N+4`` (pointer memories) goes to the PEs, ``N+4`` to the layers memory of the
        sequencer, ``2N+5`` to the central unit's column skip table (dropped when the
        configuration has none).
    i_input : In(stream.Signature(input_layout(config)))
        One inference's dense input vector: ``in_features`` unsigned ``act_bits`` values in
        words of ``K = input_lanes`` (word ``k`` lane ``j`` = input ``k*K + j``), ``last`` on the
        word holding input ``in_features - 1`` (its lanes past that input are ignored). The
        first word starts an inference (when no load is offered in the same cycle); a word is
        accepted in one cycle when it holds no non-zero input, else one cycle per non-zero
        input.
    o_logit : Out(stream.Signature(logit_layout(config)))
        The final layer's accumulators (signed ``acc_bits``) with ``index`` 0.. in order and
        ``last`` on the final one.
    o_argmax : Out(8)
        Prediction (index of the largest logit, lowest index on ties) of the last completed
        inference; valid from the cycle after the final logit's transfer.
    o_busy : Out(1)
        An inference is in progress (loads are refused).
    o_cycles : Out(32)
        Cycles from the first cycle the central unit takes from the first input word (pushes
        one of its values or accepts it) to the final logit's transfer of the previous
        inference; valid from the cycle after that transfer until the next inference takes
        its first input (it counts meanwhile).
    o_error : Out(error_layout)
        Sticky error flags until reset (see :data:`error_layout`).
    """

    def __init__(self, config):
        self.cfg = config
        super().__init__(accelerator_ports(config, error_layout))

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        N = cfg.n_pes

        m.submodules.seq = seq = LayerSequencer(cfg)
        m.submodules.central = cu = CentralUnit(cfg)
        pes = []
        for p in range(N):
            pe = ProcessingElement(cfg, p)
            m.submodules[f"pe{p}"] = pe
            pes.append(pe)
        self._seq, self._central, self._pes = seq, cu, pes      # for simulation probes

        pes_idle = Signal()             # nothing in progress anywhere (loads accepted)
        m.d.comb += pes_idle.eq(Cat(pe.o_idle for pe in pes).all() & cu.o_idle)
        can_start = Signal()            # column engines and broadcast idle: a layer may start
        m.d.comb += can_start.eq(Cat(pe.o_col_idle for pe in pes).all() & cu.o_bidle)
        idle = Signal()
        m.d.comb += idle.eq(seq.o_idle & pes_idle)

        # ---- load router -------------------------------------------------------------------
        # The load port is ready one cycle after the accelerator is idle, from a register: the
        # PEs' and central unit's idle -> load hand-shake -> protocol receiver path was the
        # iCEBreaker build's critical path. Idle is left only by a start, which needs an input
        # word, so a cycle without one keeps the accelerator idle in the next cycle too.
        ld_in = self.i_load.payload
        ld_fire = Signal()
        load_ready = Signal()
        m.d.sync += load_ready.eq(idle & ~self.i_input.valid)
        m.d.comb += [
            self.i_load.ready.eq(load_ready),
            ld_fire.eq(self.i_load.valid & load_ready),
        ]
        # A taken word is written one cycle later, from registers: the load bus fans out to
        # every PE's memories and codebook, and unregistered it carried the protocol receiver's
        # and the flash loader's hand-shake logic across the whole device (the 16-PE ULX3S
        # build's critical path, 23.9 ns). No inference starts while a write is pending.
        ld = Signal.like(ld_in)
        ld_write = Signal()
        m.d.sync += [ld_write.eq(ld_fire), ld.eq(ld_in)]
        m.d.comb += [
            seq.i_we.eq(ld_write & (ld.mem == cfg.mem_layers)),
            seq.i_addr.eq(ld.addr),
            seq.i_data.eq(ld.data),
        ]
        for pe in pes:
            m.d.comb += [pe.i_load.valid.eq(ld_write), pe.i_load.payload.eq(ld)]
        if cfg.skip_columns:
            m.d.comb += [cu.i_skip_we.eq(ld_write & (ld.mem == cfg.mem_colskip)),
                         cu.i_skip_addr.eq(ld.addr), cu.i_skip_data.eq(ld.data)]
        # (without the column skip table its writes are accepted and dropped)
        # the flag is set as the word is taken (one flip-flop, not on the fan-out)
        err_load = Signal()
        layers_depth = DESC_WORDS * cfg.max_layers
        with m.If(ld_fire & ((ld_in.mem >= cfg.n_mem_ids)
                             | ((ld_in.mem == cfg.mem_layers) & (ld_in.addr >= layers_depth))
                             | ((ld_in.mem == cfg.mem_colskip)
                                & (ld_in.addr >= cfg.colskip_table_words)))):
            m.d.sync += err_load.eq(1)

        # ---- layer control -----------------------------------------------------------------
        m.d.comb += [
            seq.i_go.eq(self.i_input.valid & ~self.i_load.valid & ~ld_write),
            seq.i_pes_idle.eq(Mux(seq.o_idle, pes_idle, can_start)),
            seq.i_done.eq(cu.o_done),
            # the next layer starts when this one's broadcast is complete (early start: its end
            # token is in every FIFO) or when every PE has taken that token
            seq.i_bdone.eq(cu.o_bend if cfg.early else cu.o_bdone),
            cu.i_layer.eq(seq.o_layer),
            cu.i_start.eq(seq.o_start),
        ]
        for pe in pes:
            m.d.comb += [pe.i_layer.eq(seq.o_layer), pe.i_start.eq(seq.o_start)]

        # ---- data path ---------------------------------------------------------------------
        wiring.connect(m, wiring.flipped(self.i_input), cu.i_input)
        wiring.connect(m, cu.o_logit, wiring.flipped(self.o_logit))
        for p, pe in enumerate(pes):
            wiring.connect(m, cu.o_act[p], pe.i_act)
            if cfg.output_register:
                self._output_fifo(m, p, pe.o_out, cu.i_out[p])
            else:
                wiring.connect(m, pe.o_out, cu.i_out[p])

        # ---- status ------------------------------------------------------------------------
        m.d.comb += [
            seq.i_first.eq(cu.o_in_take),
            seq.i_last_logit.eq(self.o_logit.valid & self.o_logit.ready
                                & self.o_logit.payload.last),
            self.o_cycles.eq(seq.o_cycles),
            self.o_argmax.eq(cu.o_argmax),
            self.o_busy.eq(~seq.o_idle),
            self.o_error.pe.eq(Cat(pe.o_error for pe in pes).any()),
            self.o_error.input.eq(cu.o_error.input),
            self.o_error.overflow.eq(cu.o_error.overflow),
            self.o_error.logits.eq(cu.o_error.logits),
            self.o_error.layers.eq(seq.o_error),
            self.o_error.load.eq(err_load),
        ]
        return m

    @staticmethod
    def _output_fifo(m, p, out, collect_in):
        """PE ``p``'s output into the collector through a two-entry FIFO
        (``config.output_register``): its ``w_rdy`` and ``r_rdy`` come from the FIFO's level
        register, so neither side's hand-shake passes through the other's logic, and a full
        pipeline still moves a row a cycle."""
        q = fifo.SyncFIFO(width=len(out.payload.as_value()), depth=2)
        m.submodules[f"out_fifo{p}"] = q
        m.d.comb += [
            q.w_data.eq(out.payload), q.w_en.eq(out.valid), out.ready.eq(q.w_rdy),
            collect_in.payload.eq(q.r_data), collect_in.valid.eq(q.r_rdy),
            q.r_en.eq(collect_in.ready),
        ]
