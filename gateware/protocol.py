"""Framed UART command protocol (docs/PROTOCOL.md): the gateware, :class:`ProtocolEngine`.

The frame format, the command, response and error codes, the STATUS layout and the CRC are the
contract's (``contract.protocol``, shared with the host ``sw.host``); they are re-exported here
for the gateware's users.
"""
from amaranth import Module, Signal, Mux, Cat, Const, C
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from contract.memmap import MEM_ID_BITS
from contract.protocol import (CRC_INIT, CRC_POLY, ERROR_NAMES, PROTOCOL_VERSION, SOF,
                               STATUS_FIELDS, STATUS_FLAGS, STATUS_LENGTH, Cmd, Err, Resp, crc16,
                               encode_frame)
from gateware.config import AcceleratorConfig, LoadWrite, input_layout, logit_layout

__all__ = [
    "PROTOCOL_VERSION", "SOF", "Cmd", "Resp", "Err", "ERROR_NAMES", "STATUS_FIELDS",
    "STATUS_FLAGS", "STATUS_LENGTH", "crc16", "encode_frame", "ProtocolEngine",
]

def _crc16_byte(crc, byte):
    """Gateware: CRC-16/CCITT-FALSE register ``crc`` (16 bits) after shifting in ``byte``.

    The CRC is linear over GF(2): each output bit is the XOR of a fixed set of input bits, worked
    out here symbolically so the netlist is one XOR tree per bit.
    """
    # Symbolic bits: frozenset of input bit ids, 0..15 = crc, 16..23 = byte.
    c = [frozenset([i]) for i in range(16)]
    for i in range(8):
        c[8 + i] = c[8 + i] ^ frozenset([16 + i])
    for _ in range(8):
        top = c[15]
        shifted = [frozenset()] + c[:15]
        c = [shifted[i] ^ top if (CRC_POLY >> i) & 1 else shifted[i] for i in range(16)]
    inputs = Cat(crc, byte)
    out = []
    for terms in c:
        bit = C(0, 1)
        for t in sorted(terms):
            bit = bit ^ inputs[t]
        out.append(bit)
    return Cat(*out)


class ProtocolEngine(wiring.Component):
    """Parses command frames, drives the accelerator and sends response frames.

    Strictly request/response: one frame is handled at a time; bytes that arrive meanwhile wait
    in the receive FIFO in front of ``i_rx`` (if it overflows, the next response is
    ``ERROR BUSY``). LOAD payloads are streamed straight into the accelerator and the CRC is
    checked at the end, so a LOAD with a bad CRC may already have written words (the host resends
    the block). INFER payloads are first collected in an input buffer (``max_features`` bytes
    in words of ``input_lanes`` bytes written by byte lane; sparse pairs are expanded into it,
    zeros in between, one value per clock); only when the frame is complete and intact is the
    vector streamed into the accelerator at up to one ``input_lanes``-value word per clock, so
    ``o_cycles`` measures the accelerator and not the UART. A frame that stops for
    ``timeout`` clocks is abandoned (``ERROR TIMEOUT``); an accelerator that makes no progress
    for ``accel_timeout`` clocks is reset (``ERROR ACCEL_TIMEOUT``). Both limits are rounded down
    to four significant bits (:func:`_watch_limit`: between 7/8 of the limit and the limit).

    The number of inputs of layer 0 is learnt by snooping the LOAD that writes word 0 of the layer
    descriptor memory (``mem = N + 4``); it sets the INFER_DENSE length and the sparse expansion.

    Parameters
    ----------
    config : AcceleratorConfig
    clock_hz : int
        Clock frequency, reported by STATUS.
    divisor : int
        UART clocks per bit, reported by STATUS.
    timeout : int
        Idle clocks inside a frame before it is abandoned.
    accel_timeout : int
        Clocks without accelerator progress before it is reset.
    max_logits : int
        Depth of the result buffer (final-layer outputs per inference).

    Attributes
    ----------
    i_rx : In(stream.Signature(8))
        Received bytes.
    i_rx_frame_error, i_rx_overrun : In(1)
        One-cycle pulses from the UART receiver / receive FIFO: a byte had a bad stop bit / was
        lost.
    o_tx : Out(stream.Signature(8))
        Bytes to transmit.
    o_load : Out(stream.Signature(LoadWrite))
        Memory image writes to the accelerator (``i_load``).
    o_input : Out(stream.Signature(input_layout(config)))
        Dense input vector to the accelerator (``i_input``): ``input_lanes`` values per word
        (a power of two), ``last`` on the word of value ``in_features - 1``. The final word's
        lanes past that value are not defined.
    i_logit : In(stream.Signature(logit_layout(config)))
        Final-layer outputs from the accelerator (``o_logit``).
    i_argmax : In(8)
        The accelerator's prediction for the last inference (lowest index wins ties), read
        while the result is sent.
    i_cycles : In(32)
        Accelerator cycle count of the previous inference (read while the result is sent; the
        accelerator holds it until the next inference starts).
    i_accel_busy : In(1)
    i_accel_error : In(8)
        Accelerator error flags (zero-extended or truncated to 8 bits by the top).
    o_accel_reset : Out(1)
        One-cycle pulse (registered): reset the accelerator (RESET command or accelerator
        timeout).
    o_loaded : Out(1)
        A model's layer 0 descriptor has been written.
    o_active : Out(1)
        A frame is being handled.
    o_error : Out(1)
        The last response was an ERROR frame.
    """

    def __init__(self, config=AcceleratorConfig(), *, clock_hz=12_000_000, divisor=4,
                 timeout=None, accel_timeout=1 << 24, max_logits=16):
        try:
            self._check(config, timeout, accel_timeout, max_logits, clock_hz)
        except (TypeError, ValueError):
            self._MustUse__silence = True   # a refused component is not an unused one
            raise
        if timeout is None:
            timeout = clock_hz // 20
        self.config = config
        self.clock_hz = clock_hz
        self.divisor = divisor
        self.timeout = timeout
        self.accel_timeout = accel_timeout
        self.max_logits = max_logits
        super().__init__({
            "i_rx": In(stream.Signature(8)),
            "i_rx_frame_error": In(1),
            "i_rx_overrun": In(1),
            "o_tx": Out(stream.Signature(8)),
            "o_load": Out(stream.Signature(LoadWrite)),
            "o_input": Out(stream.Signature(input_layout(config))),
            "i_logit": In(stream.Signature(logit_layout(config))),
            "i_cycles": In(32),
            "i_argmax": In(8),
            "i_accel_busy": In(1),
            "i_accel_error": In(8),
            "o_accel_reset": Out(1),
            "o_loaded": Out(1),
            "o_active": Out(1),
            "o_error": Out(1),
        })

    @staticmethod
    def _check(config, timeout, accel_timeout, max_logits, clock_hz):
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, not {config!r}")
        if timeout is None:
            timeout = clock_hz // 20
        if not 16 <= timeout < (1 << 32) or not 16 <= accel_timeout < (1 << 32):
            raise ValueError("timeouts must be 16 .. 2**32-1 clocks")
        if not 1 <= max_logits <= 255:
            raise ValueError(f"max_logits must be 1..255, not {max_logits}")
        if config.act_bits > 8:
            raise ValueError("the protocol carries one byte per input value (act_bits <= 8)")
        if config.input_lanes & (config.input_lanes - 1):
            raise ValueError("the input buffer needs a power-of-two input_lanes, not "
                             f"{config.input_lanes}")

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        rx, tx = self.i_rx, self.o_tx
        fw = cfg.max_features.bit_length()  # feature counts 0..max_features

        # ---- frame registers --------------------------------------------------------------
        cmd = Signal(8)
        len_lo = Signal(8)
        remaining = Signal(16)              # payload bytes still to receive
        # Byte position: LOAD 0 mem, 1-2 address, 3-4 word; sparse 1-2 index, 3 value.
        phase = Signal(3)
        crc = Signal(16, init=CRC_INIT)
        mem = Signal(MEM_ID_BITS)
        word = Signal(16)                   # LOAD start address / sparse index
        low = Signal(8)                     # LOAD data low byte / sparse value
        cnt = Signal(16)                    # LOAD: words written; INFER: input buffer position
        pos = cnt[:fw]
        pos_next = Signal(fw)
        at_end = Signal()                   # pos == in_features (updated with pos)
        in_features = Signal(fw)
        loaded = Signal()                   # 0 < in_features <= max_features

        # What the payload is used for (decided when the length is complete).
        A_DISCARD, A_PING, A_LOAD, A_DENSE, A_SPARSE, A_RESET = range(6)  # A_DISCARD = 0
        action = Signal(3)
        is_infer = Signal()
        m.d.comb += is_infer.eq((action == A_DENSE) | (action == A_SPARSE))

        # Error flags of the current frame.
        hdr_err = Signal(8)                 # UNKNOWN_CMD / BAD_LENGTH / NOT_LOADED from the header
        f_timeout = Signal()
        f_framing = Signal()
        f_bad_input = Signal()
        f_bad_len = Signal()
        f_output = Signal()
        f_accel_timeout = Signal()
        overrun = Signal()                  # sticky until reported by a response
        # Sticky status flags, cleared by the PING that reports them.
        s_framing = Signal()
        s_overrun = Signal()
        s_accel_timeout = Signal()

        # ---- input buffer: the whole vector is received (and its CRC checked) first ---------
        # ``no_rw_check``: a read of the entry being written is never used (the buffers are
        # written and read in different states), so yosys need not emulate read-during-write
        # (it otherwise adds a bypass register and multiplexer around the EBR).
        # One entry holds the K = input_lanes values of one accelerator input word; a value is
        # written into its byte lane (pos mod K) of entry pos / K. While streaming, pos counts
        # words.
        K = cfg.input_lanes
        L = K.bit_length() - 1              # log2(K)
        A = cfg.act_bits
        m.submodules.inbuf = inbuf = Memory(shape=K * A, depth=-(-cfg.max_features // K),
                                            init=[], attrs={"no_rw_check": 1})
        ib_w = inbuf.write_port(granularity=A)
        ib_r = inbuf.read_port()
        ib_we = Signal()                    # write the value at pos
        ib_wbyte = Signal(A)
        # words of a vector, ceil(in_features / K) (snooped with it; K = 1: in_features itself)
        n_words = in_features if K == 1 else Signal(fw)
        m.d.comb += [ib_w.addr.eq(pos[L:]), ib_r.addr.eq(pos),
                     ib_w.en.eq(Mux(ib_we, Cat(pos[:L] == j for j in range(K)), 0)),
                     ib_w.data.eq(Cat(*[ib_wbyte] * K))]
        out_valid = Signal()
        out_last = Signal()

        # ---- result buffer ----------------------------------------------------------------
        m.submodules.logits = logits = Memory(shape=32, depth=self.max_logits, init=[],
                                              attrs={"no_rw_check": 1})
        lg_w = logits.write_port()
        lg_r = logits.read_port()
        # Logits received; while a RESULT is sent, the index of the logit being read.
        n_logits = Signal(range(self.max_logits + 1))
        m.d.comb += [lg_w.addr.eq(n_logits), lg_r.addr.eq(n_logits)]

        # ---- watchdog ---------------------------------------------------------------------
        # An up-counter cleared on progress, when nothing is watched and when the party waited
        # for changes; it expires when it has all the bits of the (rounded) limit set, which
        # first happens exactly at that count. Expiry always leaves the watching state.
        t_rx, t_accel = _watch_limit(self.timeout), _watch_limit(self.accel_timeout)
        wd = Signal(max(t_rx, t_accel).bit_length())
        progress = Signal()
        wait_rx = Signal()                  # waiting for the host (else for the accelerator)
        was_wait_rx = Signal()
        watching = Signal()
        m.d.sync += was_wait_rx.eq(wait_rx)
        with m.If(progress | ~watching | (wait_rx != was_wait_rx)):
            m.d.sync += wd.eq(0)
        with m.Else():
            m.d.sync += wd.eq(wd + 1)

        def reached(limit):
            return Cat(*(wd[i] for i in range(len(wd)) if limit >> i & 1)).all()

        rx_expired = Signal()
        accel_expired = Signal()
        m.d.comb += [
            rx_expired.eq(watching & wait_rx & was_wait_rx & reached(t_rx)),
            accel_expired.eq(watching & ~wait_rx & ~was_wait_rx & reached(t_accel)),
        ]

        # ---- response emitter state -------------------------------------------------------
        R_STATUS, R_ACK, R_RESULT, R_ERROR = range(4)
        resp = Signal(2)
        kw = (4 * self.max_logits + 12).bit_length()
        k = Signal(kw)                      # byte index inside the response frame
        rem = Signal(kw)                    # payload bytes still to send (the length before)
        crc2 = Signal()                     # the CRC's high byte has been sent
        err_code = Signal(8)
        tx_byte = Signal(8)
        tx_crc_en = Signal()                # the byte goes into the CRC
        tx_last = Signal()                  # the frame's last byte
        # Where the byte comes from: a ROM read in SEND_SEL (valid in SEND_PREP and SEND) gives
        # the source src, the byte bsel of a multi-byte source or the constant cst, and flags;
        # SEND_PREP multiplexes the byte into tx_byte.
        (S_CONST, S_REM, S_CRC, S_INF, S_FLAGS, S_AERR, S_ERR, S_CMD, S_WORDS, S_N, S_ARGMAX,
         S_CYCLES, S_LOGIT) = range(13)
        src = Signal(4)
        bsel = Signal(2)
        cst = Signal(8)
        in_payload = Signal()               # the byte is a payload byte

        # Accelerator status is registered (timing isolation); the reset is a registered pulse.
        accel_error = Signal(8)
        accel_busy = Signal()
        m.d.sync += [accel_error.eq(self.i_accel_error), accel_busy.eq(self.i_accel_busy),
                     self.o_accel_reset.eq(0)]

        # One CRC register and update network serves reception and (after RESPOND) transmission.
        # Received frames are checked by their residue: the CRC over cmd, len, payload and the
        # big-endian CRC itself is zero.
        crc_in = Signal(8)
        crc_next = Signal(16)
        m.d.comb += crc_next.eq(_crc16_byte(crc, crc_in))
        crc_bad = Signal()
        m.d.comb += crc_bad.eq(crc != 0)

        take = Signal()                     # consume the current rx byte
        m.d.comb += rx.ready.eq(take)
        byte = rx.payload
        taken = Signal()
        m.d.comb += taken.eq(take & rx.valid)

        m.d.comb += pos_next.eq(pos + 1)

        def step_pos():
            m.d.sync += [pos.eq(pos_next), at_end.eq(pos_next == in_features)]

        def rx_state(next_state):
            # A header or CRC byte: consumed into the CRC, or the frame times out.
            m.d.comb += [take.eq(1), watching.eq(1), wait_rx.eq(1), progress.eq(rx.valid)]
            with m.If(rx.valid):
                m.d.sync += crc.eq(crc_next)
                if next_state is not None:
                    m.next = next_state
            with m.If(rx_expired):
                m.next = "RESPOND"

        fsm_expand = Signal()
        m.d.comb += self.o_loaded.eq(loaded)
        # Stream payloads and buffer write data are driven outside the FSM (they only matter
        # with valid / the write enable, which the states drive), so they cost no gating.
        hit = Signal()                      # EXPAND: pos is the pair's index
        load_addr = Signal(16)              # LOAD: start address + words written
        m.d.comb += [
            hit.eq((pos == word[:fw]) & ~word[fw:].any()),
            self.o_load.payload.mem.eq(mem),
            load_addr.eq(word + cnt),
            self.o_load.payload.addr.eq(load_addr),
            self.o_load.payload.data.eq(Cat(low, byte)),
            ib_wbyte.eq(Mux(action == A_DENSE, byte, Mux(hit & fsm_expand, low, 0))),
            self.o_input.payload.value.eq(ib_r.data),
            self.o_input.payload.last.eq(out_last),
            lg_w.data.eq(self.i_logit.payload.value),
            tx.payload.eq(tx_byte),
        ]

        with m.FSM() as fsm:
            with m.State("HUNT"):
                m.d.comb += take.eq(1)
                with m.If(rx.valid & (byte == SOF)):
                    m.d.sync += [
                        crc.eq(CRC_INIT), hdr_err.eq(0), f_timeout.eq(0), f_framing.eq(0),
                        f_bad_input.eq(0), f_bad_len.eq(0), f_output.eq(0),
                        f_accel_timeout.eq(0), cnt.eq(0), at_end.eq(0), n_logits.eq(0),
                    ]
                    m.next = "CMD"

            with m.State("CMD"):
                rx_state("LEN0")
                with m.If(rx.valid):
                    m.d.sync += cmd.eq(byte)

            with m.State("LEN0"):
                rx_state("LEN1")
                with m.If(rx.valid):
                    m.d.sync += len_lo.eq(byte)

            with m.State("LEN1"):
                full_len = Cat(len_lo, byte)
                new_action = Signal(3)
                new_err = Signal(8)
                with m.Switch(cmd):
                    with m.Case(Cmd.PING):
                        with m.If(full_len == 0):
                            m.d.comb += new_action.eq(A_PING)
                        with m.Else():
                            m.d.comb += new_err.eq(Err.BAD_LENGTH)
                    with m.Case(Cmd.RESET):
                        with m.If(full_len == 0):
                            m.d.comb += new_action.eq(A_RESET)
                        with m.Else():
                            m.d.comb += new_err.eq(Err.BAD_LENGTH)
                    with m.Case(Cmd.LOAD):
                        with m.If((full_len >= 5) & full_len[0]):
                            m.d.comb += new_action.eq(A_LOAD)
                        with m.Else():
                            m.d.comb += new_err.eq(Err.BAD_LENGTH)
                    with m.Case(Cmd.INFER_DENSE):
                        with m.If(~loaded):
                            m.d.comb += new_err.eq(Err.NOT_LOADED)
                        with m.Elif(full_len[fw:].any() | (full_len[:fw] != in_features)):
                            m.d.comb += new_err.eq(Err.BAD_LENGTH)
                        with m.Else():
                            m.d.comb += new_action.eq(A_DENSE)
                    with m.Case(Cmd.INFER_SPARSE):
                        with m.If(~loaded):
                            m.d.comb += new_err.eq(Err.NOT_LOADED)
                        with m.Else():
                            m.d.comb += new_action.eq(A_SPARSE)
                    with m.Default():
                        m.d.comb += new_err.eq(Err.UNKNOWN_CMD)
                with m.If(rx.valid):
                    m.d.sync += [
                        remaining.eq(full_len), action.eq(new_action), hdr_err.eq(new_err),
                        phase.eq(cmd == Cmd.INFER_SPARSE),
                    ]
                    with m.If(full_len != 0):
                        m.next = "PAYLOAD"
                    with m.Elif(new_action == A_SPARSE):
                        m.next = "PAD"          # all-zero sparse input: only padding
                    with m.Else():
                        m.next = "CRC0"
                rx_state(None)                  # last: a timeout wins over the next state

            with m.State("PAYLOAD"):
                m.d.comb += [watching.eq(1), wait_rx.eq(~rx.valid)]
                sink_ready = Signal()
                word_done = (action == A_LOAD) & (phase == 4)
                with m.Switch(action):
                    with m.Case(A_LOAD):
                        m.d.comb += [
                            self.o_load.valid.eq(rx.valid & word_done),
                            sink_ready.eq(~word_done | self.o_load.ready),
                        ]
                    with m.Case(A_DENSE):
                        m.d.comb += [ib_we.eq(rx.valid), sink_ready.eq(1)]
                    with m.Default():
                        m.d.comb += sink_ready.eq(1)
                m.d.comb += [take.eq(sink_ready), progress.eq(taken)]
                last_byte = remaining == 1
                with m.If(taken):
                    m.d.sync += [crc.eq(crc_next), remaining.eq(remaining - 1)]
                    with m.Switch(phase):
                        with m.Case(0):
                            m.d.sync += [mem.eq(byte), phase.eq(1)]
                        with m.Case(1):
                            m.d.sync += [word[:8].eq(byte), phase.eq(2)]
                        with m.Case(2):
                            m.d.sync += [word[8:].eq(byte), phase.eq(3)]
                        with m.Case(3):
                            m.d.sync += [low.eq(byte), phase.eq(Mux(action == A_LOAD, 4, 1))]
                        with m.Default():
                            m.d.sync += [cnt.eq(cnt + 1), phase.eq(3)]
                            with m.If((mem == cfg.mem_layers) & (load_addr == 0)):
                                value = Cat(low, byte)
                                m.d.sync += [
                                    in_features.eq(value),
                                    *([] if K == 1 else [n_words.eq((value + (K - 1)) >> L)]),
                                    loaded.eq((value != 0) & (value <= cfg.max_features)),
                                ]
                    with m.If(action == A_DENSE):
                        step_pos()
                    with m.If((action == A_SPARSE) & (phase == 3)):
                        m.next = "EXPAND"
                    with m.Elif(last_byte):
                        with m.If(action == A_SPARSE):
                            m.d.sync += f_bad_len.eq(1)     # a partial (index, value) pair
                        with m.If(is_infer):
                            m.next = "PAD"
                        with m.Else():
                            m.next = "CRC0"
                with m.If(rx_expired):
                    m.next = "RESPOND"
                with m.If(accel_expired):
                    m.next = "RESPOND"

            with m.State("EXPAND"):
                m.d.comb += fsm_expand.eq(1)
                # Write zeros up to the pair's index, then its value (one entry per clock). An
                # index that is out of range or not ascending is never met before the end.
                done = Signal()
                with m.If(at_end):
                    m.d.sync += f_bad_input.eq(1)
                    m.d.comb += done.eq(1)
                with m.Else():
                    m.d.comb += [ib_we.eq(1), done.eq(hit)]
                    step_pos()
                with m.If(done):
                    with m.If(remaining == 0):
                        m.next = "PAD"
                    with m.Else():
                        m.next = "PAYLOAD"

            with m.State("PAD"):
                # Complete the buffered vector with zeros (sparse tail).
                with m.If(at_end):
                    m.next = "CRC0"
                with m.Else():
                    m.d.comb += ib_we.eq(1)
                    step_pos()

            with m.State("CRC0"):
                rx_state("CRC1")

            with m.State("CRC1"):
                rx_state("CHECK")

            with m.State("CHECK"):
                # Only a complete, intact input vector reaches the accelerator.
                m.d.sync += out_valid.eq(0)
                with m.If(is_infer & ~crc_bad & ~f_bad_input & ~f_bad_len & ~f_framing
                          & ~overrun):
                    m.d.sync += [pos.eq(0), at_end.eq(0)]     # (cnt counts LOAD words)
                    m.next = "STREAM"
                with m.Else():
                    m.next = "RESPOND"

            with m.State("STREAM"):
                # Buffer -> accelerator at up to one word (K values) per clock; pos counts
                # words. The buffer's synchronous read feeds an output register (out_valid)
                # that advances when it is empty or taken.
                advance = ~out_valid | self.o_input.ready
                m.d.comb += [
                    watching.eq(1), progress.eq(out_valid & self.o_input.ready),
                    ib_r.en.eq(advance),
                    self.o_input.valid.eq(out_valid),
                ]
                with m.If(advance):
                    with m.If(at_end):
                        m.d.sync += out_valid.eq(0)
                    with m.Else():
                        if K == 1:
                            m.d.sync += [out_valid.eq(1), out_last.eq(pos_next == in_features)]
                            step_pos()
                        else:
                            m.d.sync += [out_valid.eq(1), out_last.eq(pos_next == n_words),
                                         pos.eq(pos_next), at_end.eq(pos_next == n_words)]
                with m.If(out_valid & self.o_input.ready & out_last):
                    m.d.sync += out_valid.eq(0)
                    m.next = "WAIT_LOGITS"
                with m.If(accel_expired):
                    m.next = "RESPOND"

            with m.State("WAIT_LOGITS"):
                lg = self.i_logit.payload
                m.d.comb += [
                    watching.eq(1), progress.eq(self.i_logit.valid),
                    self.i_logit.ready.eq(1),
                ]
                with m.If(self.i_logit.valid):
                    with m.If(n_logits < self.max_logits):
                        m.d.comb += lg_w.en.eq(1)
                        m.d.sync += n_logits.eq(n_logits + 1)
                    with m.Else():
                        m.d.sync += f_output.eq(1)
                    with m.If(lg.index != n_logits):
                        m.d.sync += f_output.eq(1)
                    with m.If(lg.last):
                        m.next = "WAIT_IDLE"
                with m.If(accel_expired):
                    m.next = "RESPOND"

            with m.State("WAIT_IDLE"):
                m.d.comb += watching.eq(1)
                with m.If(~accel_busy):
                    m.next = "RESPOND"
                with m.If(accel_expired):
                    m.next = "RESPOND"

            with m.State("RESPOND"):
                code = Signal(8)
                with m.If(f_accel_timeout):
                    m.d.comb += code.eq(Err.ACCEL_TIMEOUT)
                with m.Elif(overrun):
                    m.d.comb += code.eq(Err.BUSY)
                with m.Elif(f_timeout):
                    m.d.comb += code.eq(Err.TIMEOUT)
                with m.Elif(f_framing):
                    m.d.comb += code.eq(Err.FRAMING)
                with m.Elif(crc_bad):
                    m.d.comb += code.eq(Err.BAD_CRC)
                with m.Elif(hdr_err != 0):
                    m.d.comb += code.eq(hdr_err)
                with m.Elif(f_bad_len):
                    m.d.comb += code.eq(Err.BAD_LENGTH)
                with m.Elif(f_bad_input):
                    m.d.comb += code.eq(Err.BAD_INPUT)
                with m.Elif(f_output):
                    m.d.comb += code.eq(Err.OUTPUT)
                with m.Elif(is_infer & (accel_error != 0)):
                    m.d.comb += code.eq(Err.ACCEL_ERROR)
                m.d.sync += [err_code.eq(code), overrun.eq(0), k.eq(0), crc2.eq(0),
                             crc.eq(CRC_INIT), self.o_error.eq(code != 0)]
                with m.If(f_accel_timeout):
                    m.d.sync += self.o_accel_reset.eq(1)
                    m.d.sync += s_accel_timeout.eq(1)
                with m.If(code != 0):
                    m.d.sync += [resp.eq(R_ERROR), rem.eq(3)]
                with m.Elif(action == A_PING):
                    m.d.sync += [resp.eq(R_STATUS), rem.eq(STATUS_LENGTH)]
                with m.Elif(is_infer):
                    m.d.sync += [resp.eq(R_RESULT), rem.eq(4 * n_logits + 6)]
                with m.Else():
                    m.d.sync += [resp.eq(R_ACK), rem.eq(2)]
                    with m.If(action == A_RESET):
                        m.d.sync += self.o_accel_reset.eq(1)
                m.next = "SEND_SEL"

            with m.State("SEND_SEL"):
                # Decode the byte's source (also one clock for the result buffer's read).
                m.next = "SEND_PREP"

            with m.State("SEND_PREP"):
                # Register the byte: keeps the byte multiplexer out of the CRC path.
                m.next = "SEND"

            with m.State("SEND"):
                m.d.comb += tx.valid.eq(1)
                with m.If(tx.ready):
                    m.d.sync += k.eq(k + 1)
                    with m.If(tx_crc_en):
                        m.d.sync += crc.eq(crc_next)
                    with m.If(in_payload):
                        m.d.sync += rem.eq(rem - 1)
                    # The result's logits are read in order: n_logits becomes the index.
                    with m.If(src == S_N):
                        m.d.sync += n_logits.eq(0)
                    with m.Elif((src == S_LOGIT) & (bsel == 3)):
                        m.d.sync += n_logits.eq(n_logits + 1)
                    # The CRC's high byte goes through the CRC too, which leaves the low byte
                    # in the high half.
                    with m.If(src == S_CRC):
                        m.d.sync += crc2.eq(1)
                    with m.If(tx_last):
                        m.next = "HUNT"
                        with m.If((resp == R_STATUS)):
                            m.d.sync += [s_framing.eq(0), s_overrun.eq(0),
                                         s_accel_timeout.eq(0)]
                    with m.Else():
                        m.next = "SEND_SEL"

        m.d.comb += [
            self.o_active.eq(~fsm.ongoing("HUNT")),
            crc_in.eq(Mux(fsm.ongoing("SEND"), tx_byte, rx.payload)),
        ]
        # Every watching state leaves for RESPOND when the watchdog expires.
        with m.If(rx_expired):
            m.d.sync += f_timeout.eq(1)
        with m.If(accel_expired):
            m.d.sync += f_accel_timeout.eq(1)
        # Error inputs are sampled after the FSM so a pulse is never lost to a same-cycle clear.
        with m.If(self.i_rx_frame_error):
            m.d.sync += [s_framing.eq(1), f_framing.eq(1)]
        with m.If(self.i_rx_overrun):
            m.d.sync += [s_overrun.eq(1), overrun.eq(1)]

        # ---- response bytes ---------------------------------------------------------------
        cfg_fields = {
            "version": PROTOCOL_VERSION, "n_pes": cfg.n_pes, "act_bits": cfg.act_bits,
            "weight_bits": cfg.weight_bits, "acc_bits": cfg.acc_bits, "idx_bits": cfg.idx_bits,
            "gap_bits": cfg.gap_bits, "huff_max_len": cfg.huff_max_len,
            "max_layers": cfg.max_layers, "max_features": cfg.max_features,
            "pe_mem_log2": cfg.pe_mem_depth.bit_length() - 1,
            "max_rows_per_pe": cfg.max_rows_per_pe, "symbol_depth": cfg.symbol_depth,
            "fifo_depth": cfg.fifo_depth, "max_logits": self.max_logits,
            "clock_hz": self.clock_hz, "divisor": self.divisor,
        }
        flags = Signal(8)
        fl = STATUS_FLAGS
        m.d.comb += [
            flags[fl["framing_error"]].eq(s_framing),
            flags[fl["overrun"]].eq(s_overrun),
            flags[fl["accel_timeout"]].eq(s_accel_timeout),
            flags[fl["accel_error"]].eq(accel_error != 0),
            flags[fl["accel_busy"]].eq(accel_busy),
            flags[fl["loaded"]].eq(loaded),
        ]
        for name, size in STATUS_FIELDS:
            if name in cfg_fields and cfg_fields[name] >= 1 << (8 * size):
                raise ValueError(f"status field {name}={cfg_fields[name]} does not fit")

        resp_code = {R_STATUS: Resp.STATUS, R_ACK: Resp.ACK, R_RESULT: Resp.RESULT,
                     R_ERROR: Resp.ERROR}
        # STATUS payload byte p is frame byte k = p + 4 < 32: a constant or (source, byte).
        status_src = {"in_features": S_INF, "flags": S_FLAGS, "accel_error": S_AERR}
        status_table = []
        for name, size in STATUS_FIELDS:
            for i in range(size):
                if name in status_src:
                    status_table.append((status_src[name], i, 0))
                else:
                    status_table.append((S_CONST, 0, cfg_fields[name] >> (8 * i) & 0xFF))
        # ROM address {resp, idx}: idx = k for the header and the fixed payloads (k < 32);
        # RESULT logit bytes at 40 + k % 4, its tail at 32 + rem (rem = 5 .. 1); the CRC at
        # 62 / 63 (after the payload, rem = 0).
        def entry(src_=S_CONST, bsel_=0, cst_=0, last_=0, payload_=1):
            return cst_ | src_ << 8 | bsel_ << 12 | last_ << 14 | payload_ << 15

        rom_init = [0] * 256
        for r, code in resp_code.items():
            rows = {0: entry(cst_=SOF, payload_=0), 1: entry(cst_=code, payload_=0),
                    2: entry(S_REM, 0, payload_=0), 3: entry(S_REM, 1, payload_=0),
                    62: entry(S_CRC, payload_=0), 63: entry(S_CRC, last_=1, payload_=0)}
            if r == R_STATUS:
                for i, (s_src, s_byte, s_const) in enumerate(status_table):
                    rows[4 + i] = entry(s_src, s_byte, s_const)
            elif r == R_ACK:
                rows[4], rows[5] = entry(S_WORDS, 0), entry(S_WORDS, 1)
            elif r == R_ERROR:
                rows[4], rows[5], rows[6] = entry(S_ERR), entry(S_CMD), entry(S_AERR)
            else:
                rows[4] = entry(S_N)
                rows[32 + 5] = entry(S_ARGMAX)
                for t in range(1, 5):
                    rows[32 + t] = entry(S_CYCLES, (4 - t) & 3)
                for b in range(4):
                    rows[40 + b] = entry(S_LOGIT, (b - 1) & 3)
            for idx, value in rows.items():
                rom_init[r << 6 | idx] = value
        m.submodules.resp_rom = resp_rom = Memory(shape=16, depth=256, init=rom_init)
        rom_r = resp_rom.read_port()
        idx = Signal(6)
        body = (k[2:] != 0) & (resp == R_RESULT) & (k != 4)
        with m.If((k[2:] != 0) & (rem == 0)):
            m.d.comb += idx.eq(62 | crc2)
        with m.Elif(body & (rem <= 5)):
            m.d.comb += idx.eq(32 | rem[:3])
        with m.Elif(body):
            m.d.comb += idx.eq(40 | k[:2])
        with m.Else():
            m.d.comb += idx.eq(k[:5])
        m.d.comb += [
            rom_r.addr.eq(Cat(idx, resp)),
            cst.eq(rom_r.data[:8]), src.eq(rom_r.data[8:12]), bsel.eq(rom_r.data[12:14]),
            tx_last.eq(rom_r.data[14]), in_payload.eq(rom_r.data[15]),
            tx_crc_en.eq((k != 0) & ~tx_last),
        ]

        def byte_of(value, index):
            value = Cat(value, Const(0, 32 - len(value)))
            return value.word_select(index, 8)

        sources = {
            S_CONST: cst, S_REM: byte_of(rem, bsel[0]), S_CRC: crc[8:],
            S_INF: byte_of(in_features, bsel[0]), S_FLAGS: flags, S_AERR: accel_error,
            S_ERR: err_code, S_CMD: cmd, S_WORDS: byte_of(cnt, bsel[0]), S_N: n_logits,
            S_ARGMAX: self.i_argmax, S_CYCLES: self.i_cycles.word_select(bsel, 8),
            S_LOGIT: lg_r.data.word_select(bsel, 8),
        }
        terms = [Mux(src == code, value, 0) for code, value in sources.items()]
        mux_out = terms[0]
        for t in terms[1:]:
            mux_out = mux_out | t
        with m.If(fsm.ongoing("SEND_PREP")):
            m.d.sync += tx_byte.eq(mux_out)
        return m


def _watch_limit(clocks):
    """Watchdog count for a limit of ``clocks``: ``clocks - 1`` rounded down to its four most
    significant set bits (at most 1/8 shorter), so expiry is a 4-input AND of counter bits."""
    value = clocks - 1
    keep = 0
    for i in reversed(range(value.bit_length())):
        if value >> i & 1 and bin(keep).count("1") < 4:
            keep |= 1 << i
    return keep
