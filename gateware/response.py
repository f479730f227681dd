"""Response side of the protocol engine: the result buffer that collects the accelerator's logits
and the emitter that sends response frames byte by byte."""
from amaranth import Module, Signal, Mux, Cat, Const
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from contract.protocol import SOF, STATUS_FIELDS, STATUS_LENGTH, Resp
from gateware.config import AcceleratorConfig, logit_layout

__all__ = ["ResultBuffer", "ResponseEmitter", "R_STATUS", "R_ACK", "R_RESULT", "R_ERROR"]

#: Response kinds of :class:`ResponseEmitter` (``i_kind``).
R_STATUS, R_ACK, R_RESULT, R_ERROR = range(4)


class ResultBuffer(wiring.Component):
    """Collects the final layer's outputs of one inference (``max_logits`` x 32 bits, one EBR).

    Parameters
    ----------
    config : AcceleratorConfig
    max_logits : int
        Depth (1..255).

    Attributes
    ----------
    i_logit : In(stream.Signature(logit_layout(config)))
        The accelerator's ``o_logit``; taken every clock while ``i_collect``.
    i_collect : In(1)
        Accept logits.
    i_clear : In(1)
        Forget the buffered logits and the error (a new frame starts).
    o_count : Out(range(max_logits + 1))
        Logits buffered.
    o_error : Out(1)
        Since the clear: more logits than ``max_logits``, or a logit index out of order.
    o_last : Out(1)
        The logit flagged ``last`` is taken this clock.
    i_raddr : In(range(max_logits + 1))
        Read address; ``o_rdata`` holds the logit on the next clock.
    o_rdata : Out(32)
        Sign-extended logit.
    """

    def __init__(self, config=AcceleratorConfig(), max_logits=16):
        self.config = config
        self.max_logits = max_logits
        cw = range(max_logits + 1)
        super().__init__({
            "i_logit": In(stream.Signature(logit_layout(config))),
            "i_collect": In(1),
            "i_clear": In(1),
            "o_count": Out(cw),
            "o_error": Out(1),
            "o_last": Out(1),
            "i_raddr": In(cw),
            "o_rdata": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        # ``no_rw_check``: logits are written (collection) and read (response) at different
        # times, so yosys need not emulate read-during-write.
        m.submodules.mem = mem = Memory(shape=32, depth=self.max_logits, init=[],
                                        attrs={"no_rw_check": 1})
        wr = mem.write_port()
        rd = mem.read_port()
        lg = self.i_logit
        m.d.comb += [
            wr.addr.eq(self.o_count), wr.data.eq(lg.payload.value),
            rd.addr.eq(self.i_raddr), self.o_rdata.eq(rd.data),
            lg.ready.eq(self.i_collect),
            self.o_last.eq(self.i_collect & lg.valid & lg.payload.last),
        ]
        with m.If(self.i_collect & lg.valid):
            with m.If(self.o_count < self.max_logits):
                m.d.comb += wr.en.eq(1)
                m.d.sync += self.o_count.eq(self.o_count + 1)
            with m.Else():
                m.d.sync += self.o_error.eq(1)
            with m.If(lg.payload.index != self.o_count):
                m.d.sync += self.o_error.eq(1)
        with m.If(self.i_clear):
            m.d.sync += [self.o_count.eq(0), self.o_error.eq(0)]
        return m


class ResponseEmitter(wiring.Component):
    """Sends one response frame (``SOF code len payload crc``) per ``i_start``.

    Where each byte comes from (a constant or one byte of an input) is a table in one EBR,
    addressed by the response kind and the byte's position; the byte is registered before it
    goes out and into the CRC, so a byte takes three clocks (table read, multiplexer, send) plus
    the transmitter's handshake. The CRC register belongs to the engine (the frame receiver uses
    it between responses): the emitter steps it with ``o_crc_byte`` and reads it back.

    Parameters
    ----------
    max_logits : int
        Result buffer depth (RESULT carries ``4 n + 6`` payload bytes).
    status_constants : dict
        Values of the STATUS fields that are fixed when the gateware is built (every field of
        ``STATUS_FIELDS`` except ``in_features``, ``flags`` and ``accel_error``).

    Attributes
    ----------
    i_start : In(1)
        Send a response of kind ``i_kind`` (sampled with it; ignored while ``o_busy``). The
        engine resets its CRC register to 0xFFFF on the same clock.
    i_kind : In(2)
        ``R_STATUS``, ``R_ACK``, ``R_RESULT`` or ``R_ERROR``.
    i_words : In(16)
        ACK payload (LOAD words written).
    i_err_code, i_cmd, i_accel_error : In(8)
        ERROR payload (``accel_error`` also in STATUS).
    i_in_features : In(16)
    i_flags : In(8)
    i_flash : In(3)
        STATUS bytes that change.
    i_n_logits : In(range(max_logits + 1))
        RESULT: logits to send (0 for the compact result).
    o_logit_addr : Out(range(max_logits + 1))
        Result buffer read address; ``i_logit_data`` is its (synchronous) read data.
    i_logit_data : In(32)
    i_argmax : In(8)
    i_cycles : In(32)
        RESULT tail.
    i_seq : In(8)
        RESULT: the request's sequence byte.
    o_tx : Out(stream.Signature(8))
        Frame bytes.
    o_crc_byte : Out(8)
        Byte to shift into the CRC when ``o_crc_step``.
    o_crc_step : Out(1)
    i_crc : In(16)
        The CRC register.
    o_busy : Out(1)
        A response is being sent.
    o_done : Out(1)
        The frame's last byte is taken this clock.
    """

    #: STATUS fields that change at run time (the others are ``status_constants``).
    DYNAMIC_FIELDS = ("in_features", "flags", "accel_error", "flash")

    def __init__(self, max_logits, status_constants):
        for name, size in STATUS_FIELDS:
            if name in self.DYNAMIC_FIELDS:
                continue
            value = status_constants.get(name)
            if value is None or not 0 <= value < 1 << (8 * size):
                self._MustUse__silence = True   # a refused component is not an unused one
                raise ValueError(f"status field {name}={value} is missing or does not fit")
        self.max_logits = max_logits
        self.status_constants = dict(status_constants)
        cw = range(max_logits + 1)
        super().__init__({
            "i_start": In(1), "i_kind": In(2),
            "i_words": In(16), "i_err_code": In(8), "i_cmd": In(8), "i_accel_error": In(8),
            "i_in_features": In(16), "i_flags": In(8), "i_flash": In(3),
            "i_n_logits": In(cw), "o_logit_addr": Out(cw), "i_logit_data": In(32),
            "i_argmax": In(8), "i_cycles": In(32), "i_seq": In(8),
            "o_tx": Out(stream.Signature(8)),
            "o_crc_byte": Out(8), "o_crc_step": Out(1), "i_crc": In(16),
            "o_busy": Out(1), "o_done": Out(1),
        })

    # Byte sources of the table.
    (S_CONST, S_REM, S_CRC, S_INF, S_FLAGS, S_AERR, S_ERR, S_CMD, S_WORDS, S_N, S_ARGMAX,
     S_CYCLES, S_LOGIT, S_SEQ, S_FLASH) = range(15)

    def _table(self):
        """The 256 x 16 table: ``{kind, idx}`` -> ``cst | src << 8 | bsel << 12 | last << 14 |
        payload << 15``. ``idx = k`` for the header and the fixed payloads (byte k < 62);
        RESULT: seq and n at 4 and 5, logit bytes at 40 + k % 4, its tail at 32 + rem
        (rem = 5 .. 1); the CRC at 62 / 63 (after the payload, rem = 0)."""
        S = self
        status_src = dict(zip(self.DYNAMIC_FIELDS, (S.S_INF, S.S_FLAGS, S.S_AERR, S.S_FLASH)))
        status_table = []
        for name, size in STATUS_FIELDS:
            for i in range(size):
                if name in status_src:
                    status_table.append((status_src[name], i, 0))
                else:
                    status_table.append((S.S_CONST, 0,
                                         self.status_constants[name] >> (8 * i) & 0xFF))

        def entry(src_=S.S_CONST, bsel_=0, cst_=0, last_=0, payload_=1):
            return cst_ | src_ << 8 | bsel_ << 12 | last_ << 14 | payload_ << 15

        resp_code = {R_STATUS: Resp.STATUS, R_ACK: Resp.ACK, R_RESULT: Resp.RESULT,
                     R_ERROR: Resp.ERROR}
        rom = [0] * 256
        for r, code in resp_code.items():
            rows = {0: entry(cst_=SOF, payload_=0), 1: entry(cst_=code, payload_=0),
                    2: entry(S.S_REM, 0, payload_=0), 3: entry(S.S_REM, 1, payload_=0),
                    62: entry(S.S_CRC, payload_=0), 63: entry(S.S_CRC, last_=1, payload_=0)}
            if r == R_STATUS:
                for i, (s_src, s_byte, s_const) in enumerate(status_table):
                    rows[4 + i] = entry(s_src, s_byte, s_const)
            elif r == R_ACK:
                rows[4], rows[5] = entry(S.S_WORDS, 0), entry(S.S_WORDS, 1)
            elif r == R_ERROR:
                rows[4], rows[5], rows[6] = entry(S.S_ERR), entry(S.S_CMD), entry(S.S_AERR)
            else:
                rows[4], rows[5] = entry(S.S_SEQ), entry(S.S_N)
                rows[32 + 5] = entry(S.S_ARGMAX)
                for t in range(1, 5):
                    rows[32 + t] = entry(S.S_CYCLES, (4 - t) & 3)
                for b in range(4):
                    rows[40 + b] = entry(S.S_LOGIT, (b - 6) & 3)
            for idx, value in rows.items():
                rom[r << 6 | idx] = value
        return rom

    def elaborate(self, platform):
        m = Module()
        S = self
        tx = self.o_tx
        kind = Signal(2)
        kw = max(4 * self.max_logits + 13, STATUS_LENGTH + 6).bit_length()    # frame bytes
        k = Signal(kw)                      # byte index inside the response frame
        rem = Signal(kw)                    # payload bytes still to send (the length before)
        crc2 = Signal()                     # the CRC's high byte has been sent
        tx_byte = Signal(8)
        # Table read in SEL (valid in PREP and SEND): the source src, the byte bsel of a
        # multi-byte source or the constant cst, and flags.
        src = Signal(4)
        bsel = Signal(2)
        cst = Signal(8)
        last = Signal()                     # the frame's last byte
        in_payload = Signal()
        laddr = self.o_logit_addr           # the logit being sent

        m.submodules.rom = rom = Memory(shape=16, depth=256, init=self._table())
        rom_r = rom.read_port()
        idx = Signal(6)
        body = (k[2:] != 0) & (kind == R_RESULT) & (k[1:] != 2)      # k >= 6
        with m.If((k[2:] != 0) & (rem == 0)):
            m.d.comb += idx.eq(62 | crc2)
        with m.Elif(body & (rem <= 5)):
            m.d.comb += idx.eq(32 | rem[:3])
        with m.Elif(body):
            m.d.comb += idx.eq(40 | k[:2])
        with m.Else():
            m.d.comb += idx.eq(k[:6])
        m.d.comb += [
            rom_r.addr.eq(Cat(idx, kind)),
            cst.eq(rom_r.data[:8]), src.eq(rom_r.data[8:12]), bsel.eq(rom_r.data[12:14]),
            last.eq(rom_r.data[14]), in_payload.eq(rom_r.data[15]),
            tx.payload.eq(tx_byte), self.o_crc_byte.eq(tx_byte),
        ]

        def byte_of(value, index):
            value = Cat(value, Const(0, 32 - len(value)))
            return value.word_select(index, 8)

        sources = {
            S.S_CONST: cst, S.S_REM: byte_of(rem, bsel[0]), S.S_CRC: self.i_crc[8:],
            S.S_INF: byte_of(self.i_in_features, bsel[0]), S.S_FLAGS: self.i_flags,
            S.S_AERR: self.i_accel_error, S.S_ERR: self.i_err_code, S.S_CMD: self.i_cmd,
            S.S_WORDS: byte_of(self.i_words, bsel[0]), S.S_N: self.i_n_logits,
            S.S_ARGMAX: self.i_argmax, S.S_CYCLES: self.i_cycles.word_select(bsel, 8),
            S.S_LOGIT: self.i_logit_data.word_select(bsel, 8), S.S_SEQ: self.i_seq,
            S.S_FLASH: self.i_flash,
        }
        mux_out = 0
        for code, value in sources.items():
            mux_out = Mux(src == code, value, 0) | mux_out

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.i_start):
                    lengths = {R_STATUS: STATUS_LENGTH, R_ACK: 2, R_ERROR: 3}
                    with m.Switch(self.i_kind):
                        for r, n in lengths.items():
                            with m.Case(r):
                                m.d.sync += rem.eq(n)
                        with m.Case(R_RESULT):
                            m.d.sync += rem.eq(4 * self.i_n_logits + 7)
                    m.d.sync += [kind.eq(self.i_kind), k.eq(0), crc2.eq(0)]
                    m.next = "SEL"
            with m.State("SEL"):
                m.d.comb += self.o_busy.eq(1)
                m.next = "PREP"
            with m.State("PREP"):
                # Register the byte: keeps the byte multiplexer out of the CRC path.
                m.d.comb += self.o_busy.eq(1)
                m.d.sync += tx_byte.eq(mux_out)
                m.next = "SEND"
            with m.State("SEND"):
                m.d.comb += [self.o_busy.eq(1), tx.valid.eq(1)]
                with m.If(tx.ready):
                    m.d.comb += self.o_crc_step.eq((k != 0) & ~last)
                    m.d.sync += k.eq(k + 1)
                    with m.If(in_payload):
                        m.d.sync += rem.eq(rem - 1)
                    # The result's logits are read in order.
                    with m.If(src == S.S_N):
                        m.d.sync += laddr.eq(0)
                    with m.Elif((src == S.S_LOGIT) & (bsel == 3)):
                        m.d.sync += laddr.eq(laddr + 1)
                    # The CRC's high byte goes through the CRC too, which leaves the low byte
                    # in the high half.
                    with m.If(src == S.S_CRC):
                        m.d.sync += crc2.eq(1)
                    with m.If(last):
                        m.d.comb += self.o_done.eq(1)
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "SEL"
        return m
