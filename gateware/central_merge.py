"""The central unit's output banks and their merge (docs/ARCHITECTURE.md sections 5 and 7;
part of :class:`gateware.central.CentralUnit`)."""
from amaranth import Module, Signal, Const, Mux
from amaranth.lib import wiring, data, memory
from amaranth.lib.wiring import In, Out

from .config import broadcast_layout

__all__ = ["BankMerge", "HeadQueue", "bank_entry_layout", "bank_depth", "times_constant"]


def bank_depth(config):
    """Entries of each PE's output bank: the most non-zero outputs one PE has in a layer."""
    return min(config.max_rows_per_pe, -(-config.max_features // config.n_pes))


def times_constant(value, k):
    """``value * k`` for a constant ``k >= 1`` as a sum of shifted copies of ``value``: yosys
    maps a multiplication by a constant that is not a power of two to a DSP block (one per
    output bank with N = 10), where this is one adder per set bit of ``k`` past the first."""
    return sum(value << s for s in range(k.bit_length()) if k >> s & 1)


def bank_entry_layout(config, bank_depth):
    """One bank entry: the PE-local ``row`` and the activation ``value``."""
    return data.StructLayout({"row": max(1, (bank_depth - 1).bit_length()),
                              "value": config.act_bits})


class HeadQueue(wiring.Component):
    """A bank's two-entry head queue in the merge: first in, first out, in flip-flops.

    The timing of ``lib.fifo.SyncFIFO(depth=2)`` (an entry pushed in one cycle is the head from
    the next on, also into an empty queue), but the head is a register: the ``SyncFIFO``'s
    head is an asynchronous read of its two-entry memory (distributed RAM on the ECP5 and
    Gowin), and that read stood in front of the merge's compare chain on the OrangeCrab's
    and the 16-PE ULX3S build's critical paths; on Gowin the memory also took 4 RAM16SDP4
    of a CFU's LUTs.

    Parameters
    ----------
    width : int
        Bits of an entry.

    Attributes
    ----------
    w_en : In(1)
        Push ``w_data`` (only while ``level < 2``, or ``level == 2`` with a pop: the merge's
        read credit keeps it so).
    w_data : In(width)
    r_en : In(1)
        Pop the head (when there is one).
    r_rdy : Out(1)
        There is a head (``level != 0``).
    r_data : Out(width)
        The head (a register).
    level : Out(range(3))
        Entries held (a register).
    """

    depth = 2

    def __init__(self, width):
        super().__init__({"w_en": In(1), "w_data": In(width), "r_en": In(1), "r_rdy": Out(1),
                          "r_data": Out(width), "level": Out(range(3))})

    def elaborate(self, platform):
        m = Module()
        second = Signal.like(self.w_data, name="second")
        pop = Signal()
        push = Signal()
        m.d.comb += [self.r_rdy.eq(self.level != 0), pop.eq(self.r_en & self.r_rdy),
                     push.eq(self.w_en & ((self.level != 2) | pop))]
        with m.Switch(self.level):
            with m.Case(0):
                with m.If(push):
                    m.d.sync += self.r_data.eq(self.w_data)
            with m.Case(1):
                with m.If(push & pop):
                    m.d.sync += self.r_data.eq(self.w_data)
                with m.Elif(push):
                    m.d.sync += second.eq(self.w_data)
            with m.Case(2):
                with m.If(pop):
                    m.d.sync += [self.r_data.eq(second), second.eq(self.w_data)]
        m.d.sync += self.level.eq(self.level + push - pop)
        return m


class BankMerge(wiring.Component):
    """N output banks, written by the collector, merged into broadcast words.

    Bank ``p`` holds PE ``p``'s non-zero outputs of the last hidden layer in ascending row order
    (each PE writes its own bank: no merge stall). The next layer's broadcast merges the N
    sorted lists, smallest row first (global row ``local * N + p``), so columns arrive in
    ascending order; with ``bcast_width == 2`` it takes the heads of the two lowest-numbered
    banks that have one, as soon as they have it (bank order). A bank is written and read
    concurrently (an entry is read only once written: read pointer below write pointer). With
    N > 2 each bank has a 2-entry head queue so the merge can take from the same bank on
    consecutive cycles; with N <= 2 the bank's read port is the head (the next entry is read in
    the cycle the head is taken), which takes one cycle off the merge latency and saves the
    queues' logic (about 65 iCE40 logic cells a bank), but puts the merge decision in front of
    the banks' read enables: a short path with one or two banks.

    Parameters
    ----------
    config : gateware.config.AcceleratorConfig
        Uses ``n_pes``, ``bcast_width``, ``feature_bits`` and ``act_bits``.
    bank_depth : int
        Entries per bank.

    Attributes
    ----------
    i_we : In(N)
        Bit ``p``: append ``i_wdata[p]`` to bank ``p`` (only while ``o_room[p]``).
    i_wdata : In(bank_entry_layout(config, bank_depth)).array(N)
        The entries to append.
    o_room : Out(N)
        Bit ``p``: bank ``p`` has room for another entry (a register compare).
    i_clear : In(1)
        Empty the banks (for the next layer's outputs; an append in the same cycle is kept).
    i_start : In(1)
        A merge starts from the banks' first entries.
    i_active : In(1)
        The broadcast is in its merge phase (nothing is read or handed over otherwise).
    i_ended : In(N)
        Bit ``p``: PE ``p``'s ``end`` token of the layer in the banks has been collected (its
        bank is complete).
    i_can_take : In(1)
        The broadcast side takes words this cycle.
    o_take : Out(1).array(bcast_width)
        Word ``k`` (``o_take_data[k]``) is handed over this cycle (word 1 only with word 0).
        With one word per cycle only once every bank has a head or is exhausted (so the
        smallest row is known).
    o_take_data : Out(broadcast_layout(config)).array(bcast_width)
        ``(global row, value)`` of the handed-over heads; zero while not ``i_active``.
    o_exhausted : Out(1)
        Every bank is read to its end and complete. The first word is handed over 3 cycles
        after ``i_start`` (2 with N <= 2).
    """

    #: Up to this many banks the read ports are the heads (no head queues).
    READ_PORT_HEADS = 2

    def __init__(self, config, bank_depth):
        self.cfg = config
        self.bank_depth = bank_depth
        n, w = config.n_pes, config.bcast_width
        bl = broadcast_layout(config)
        super().__init__({
            "i_we": In(n),
            "i_wdata": In(bank_entry_layout(config, bank_depth)).array(n),
            "o_room": Out(n),
            "i_clear": In(1),
            "i_start": In(1),
            "i_active": In(1),
            "i_ended": In(n),
            "i_can_take": In(1),
            "o_take": Out(1).array(w),
            "o_take_data": Out(bl).array(w),
            "o_exhausted": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        N, W, A, FB = cfg.n_pes, cfg.bcast_width, cfg.act_bits, cfg.feature_bits
        bdepth = self.bank_depth
        entry = bank_entry_layout(cfg, bdepth)
        bbuf, ended, can_take = self.i_active, self.i_ended, self.i_can_take
        take, take_data = self.o_take[0], self.o_take_data[0]
        banks = []
        for p in range(N):
            # (the first config.block_ram_banks in block RAM: a board short of logic but not
            # of block RAM; the others to the tool, distributed RAM when they are small)
            attrs = {"ram_style": "block"} if p < cfg.block_ram_banks else None
            mem = memory.Memory(shape=entry, depth=bdepth, init=[], attrs=attrs)
            m.submodules[f"bank{p}"] = mem
            bank = dict(wr=mem.write_port(), rd=mem.read_port(),
                        wp=Signal(range(bdepth + 1), name=f"wp{p}"),
                        rp=Signal(range(bdepth + 1), name=f"rp{p}"),
                        inflight=Signal(name=f"inflight{p}"))
            if N > self.READ_PORT_HEADS:
                bank["q"] = q = HeadQueue(entry.size)
                m.submodules[f"head{p}"] = q
            banks.append(bank)

        # ---- write side (the collector) ------------------------------------------------
        with m.If(self.i_clear):
            m.d.sync += [b["wp"].eq(0) for b in banks]
        for p, b in enumerate(banks):
            wr = b["wr"]
            m.d.comb += [wr.addr.eq(b["wp"]), wr.data.eq(self.i_wdata[p]),
                         self.o_room[p].eq(b["wp"] < bdepth)]
            with m.If(self.i_we[p]):
                m.d.comb += wr.en.eq(1)
                m.d.sync += b["wp"].eq(b["wp"] + 1)

        # ---- read side: heads --------------------------------------------------------------
        heads = []
        present = Signal(N)
        exhausted = Signal(N)
        pop = Signal(N)
        for p, b in enumerate(banks):
            rd = b["rd"]
            issue = Signal(name=f"issue{p}")
            if N <= self.READ_PORT_HEADS:
                # One or two banks: the read port's output register is the head. ``inflight`` means
                # rd.data holds an entry not yet broadcast; the next read is issued in the
                # cycle the head is taken (or while there is none), and rd.data holds otherwise.
                m.d.comb += [
                    issue.eq(bbuf & (b["rp"] < b["wp"]) & (~b["inflight"] | pop[p])),
                    present[p].eq(b["inflight"]),
                    exhausted[p].eq((b["rp"] == b["wp"]) & ~b["inflight"] & ended[p]),
                ]
                with m.If(issue):
                    m.d.sync += b["inflight"].eq(1)
                with m.Elif(pop[p]):
                    m.d.sync += b["inflight"].eq(0)
                head = data.View(entry, rd.data)
            else:
                q = b["q"]
                m.d.comb += [
                    # the read lands in q next cycle, after this cycle's pop: credit counts it
                    issue.eq(bbuf & (b["rp"] < b["wp"])
                             & (q.level + b["inflight"] - pop[p] < q.depth)),
                    q.w_en.eq(b["inflight"]), q.w_data.eq(rd.data),
                    q.r_en.eq(pop[p]),
                    present[p].eq(q.r_rdy),
                    exhausted[p].eq((b["rp"] == b["wp"]) & ~b["inflight"] & ~q.r_rdy
                                    & ended[p]),
                ]
                m.d.sync += b["inflight"].eq(issue)
                head = data.View(entry, q.r_data)
            m.d.comb += [rd.addr.eq(b["rp"]), rd.en.eq(issue)]
            with m.If(issue):
                m.d.sync += b["rp"].eq(b["rp"] + 1)
            heads.append((head.row, head.value))        # (local row: global local * N + p)

        def global_row(local, p):
            """Global row ``local * N + p`` of bank ``p``'s local row ``local``."""
            return times_constant(local, N) + p

        # ---- merge -------------------------------------------------------------------------
        if W == 1:
            # smallest present head, by a tree of compares (depth log2 N, not N - 1). Bank q's
            # global row local * N + q is below a lower-numbered bank p's exactly when its local
            # row is (ties go to p), so the tree compares local rows (no adder in it, fewer
            # bits; each compare has the lower banks' candidate on its left) and only the
            # winner's global row is worked out.
            level = [(present[p], Const(p, range(N)), heads[p][0], heads[p][1])
                     for p in range(N)]
            depth = 0
            while len(level) > 1:
                depth += 1
                paired = []
                for i in range(0, len(level) - 1, 2):
                    (f_lo, b_lo, r_lo, v_lo), (f_hi, b_hi, r_hi, v_hi) = level[i:i + 2]
                    name = f"{depth}_{i // 2}"
                    hi_wins = f_hi & (~f_lo | (r_hi < r_lo))
                    f_c, b_c = Signal(name=f"sf{name}"), Signal(range(N), name=f"sb{name}")
                    r_c, v_c = Signal(len(r_lo), name=f"sr{name}"), Signal(A, name=f"sv{name}")
                    m.d.comb += [f_c.eq(f_lo | f_hi), b_c.eq(Mux(hi_wins, b_hi, b_lo)),
                                 r_c.eq(Mux(hi_wins, r_hi, r_lo)),
                                 v_c.eq(Mux(hi_wins, v_hi, v_lo))]
                    paired.append((f_c, b_c, r_c, v_c))
                if len(level) % 2:
                    paired.append(level[-1])
                level = paired
            found, best, best_row, best_val = level[0]
            with m.If(bbuf):
                ok = (present | exhausted).all() & found & can_take
                m.d.comb += [
                    take.eq(ok),
                    take_data.col.eq(global_row(best_row, best)),
                    take_data.value.eq(best_val),
                    pop.eq(Mux(ok, 1 << best, 0)),
                ]
        else:
            # two words per cycle: the heads of the two lowest-numbered present banks, as soon
            # as they are there (bank order, not column order)
            first = Signal(N)
            second = Signal(N)
            others = Signal(N)
            m.d.comb += [first.eq(present & -present), others.eq(present & ~first),
                         second.eq(others & -others)]
            for k, onehot in enumerate((first, second)):
                row = Signal(FB, name=f"bank_row{k}")
                val = Signal(A, name=f"bank_value{k}")
                m.d.comb += [row.eq(0), val.eq(0)]
                for p in range(N):
                    with m.If(onehot[p]):
                        m.d.comb += [row.eq(global_row(heads[p][0], p)), val.eq(heads[p][1])]
                with m.If(bbuf):
                    m.d.comb += [self.o_take_data[k].col.eq(row),
                                 self.o_take_data[k].value.eq(val)]
            with m.If(bbuf):
                ok = present.any() & can_take
                m.d.comb += [
                    take.eq(ok),
                    self.o_take[1].eq(ok & (second != 0)),
                    pop.eq(Mux(ok, first | second, 0)),
                ]
        m.d.comb += self.o_exhausted.eq(exhausted.all())

        with m.If(self.i_start):
            m.d.sync += [b["rp"].eq(0) for b in banks]
        return m
