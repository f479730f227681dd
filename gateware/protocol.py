"""Framed UART command protocol (docs/PROTOCOL.md): the protocol engine (gateware).

Frame: ``SOF cmd len_lo len_hi payload[len] crc_hi crc_lo``; the CRC is CRC-16/CCITT-FALSE
(polynomial 0x1021, initial value 0xFFFF, no reflection) over ``cmd``, ``len`` and the payload.
The board answers every frame it recognises (one that starts with ``SOF``) with exactly one
response frame: ``STATUS``, ``ACK``, ``RESULT`` or ``ERROR``.

:class:`ProtocolEngine` joins its parts along their stream boundaries:
:class:`~gateware.frame_rx.FrameReceiver` (frames in, LOAD words out, input values into)
:class:`~gateware.input_buffer.InputBuffer` (-> the accelerator's input stream),
:class:`~gateware.response.ResultBuffer` (the accelerator's logits),
:class:`~gateware.response.ResponseEmitter` (response frames out) and
:class:`~gateware.watchdog.Watchdog` (host and accelerator timeouts); the engine itself checks a
received frame, sequences the inference and picks the response. The constants, :func:`crc16`,
:func:`encode_frame` and the status layout (``contract.protocol``, shared with the host) are
re-exported here.
"""
from amaranth import Module, Signal, Mux
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from contract.protocol import (CRC_INIT, ERROR_NAMES, PROTOCOL_VERSION, SOF, STATUS_FIELDS,
                               STATUS_FLAGS, STATUS_LENGTH, Cmd, Err, Resp, crc16, encode_frame)
from gateware.config import AcceleratorConfig, LoadWrite, input_layout, logit_layout
from gateware.crc import crc16_next
from gateware.frame_rx import A_CODED, A_DENSE, A_PING, A_RESET, A_SPARSE, FrameReceiver
from gateware.input_buffer import InputBuffer
from gateware.response import R_ACK, R_ERROR, R_RESULT, R_STATUS, ResponseEmitter, ResultBuffer
from gateware.watchdog import Watchdog, watch_limit as _watch_limit

__all__ = [
    "PROTOCOL_VERSION", "SOF", "Cmd", "Resp", "Err", "ERROR_NAMES", "STATUS_FIELDS",
    "STATUS_LENGTH", "STATUS_FLAGS", "crc16", "encode_frame", "ProtocolEngine",
]


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
    rx_buffer : int
        Bytes of the receive FIFO in front of ``i_rx``, reported by STATUS (the host keeps at
        most this many request bytes unanswered).
    board_id : int
        STATUS ``board_id``: the board file's ``id`` the gateware was built for (0: none, a
        simulation; the host then recognises the board by clock and divisor).

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
    o_resp_done : Out(1)
        One-cycle pulse: a response frame has been sent.
    i_flash_state : In(3)
        STATUS ``flash`` (``gateware.flash_loader.FlashState``; 0 without a loader).
    """

    def __init__(self, config=AcceleratorConfig(), *, clock_hz=12_000_000, divisor=4,
                 timeout=None, accel_timeout=1 << 24, max_logits=16, rx_buffer=32,
                 board_id=0):
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
        self.rx_buffer = rx_buffer
        self.board_id = board_id
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
            "o_resp_done": Out(1),
            "i_flash_state": In(3),
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

    def status_constants(self):
        """The STATUS fields fixed when the gateware is built (``STATUS_FIELDS`` but the
        ``ResponseEmitter.DYNAMIC_FIELDS``)."""
        cfg = self.config
        return {
            "version": PROTOCOL_VERSION, "n_pes": cfg.n_pes, "act_bits": cfg.act_bits,
            "weight_bits": cfg.weight_bits, "acc_bits": cfg.acc_bits, "idx_bits": cfg.idx_bits,
            "gap_bits": cfg.gap_bits, "huff_max_len": cfg.huff_max_len,
            "max_layers": cfg.max_layers, "max_features": cfg.max_features,
            "pe_mem_log2": cfg.pe_mem_depth.bit_length() - 1,
            "max_rows_per_pe": cfg.max_rows_per_pe, "symbol_depth": cfg.symbol_entries,
            "fifo_depth": cfg.fifo_depth, "max_logits": self.max_logits,
            "clock_hz": self.clock_hz, "divisor": self.divisor, "rx_buffer": self.rx_buffer,
            "board_id": self.board_id, "fmap_depth": cfg.fmap_depth,
        }

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        m.submodules.receiver = rcv = FrameReceiver(cfg)
        m.submodules.inbuf = inbuf = InputBuffer(cfg)
        m.submodules.results = results = ResultBuffer(cfg, self.max_logits)
        m.submodules.watchdog = wd = Watchdog(self.timeout, self.accel_timeout)
        m.submodules.emitter = emit = ResponseEmitter(self.max_logits, self.status_constants())

        # Streams to and from the outside.
        wiring.connect(m, wiring.flipped(self.i_rx), rcv.i_rx)
        wiring.connect(m, rcv.o_load, wiring.flipped(self.o_load))
        wiring.connect(m, inbuf.o_input, wiring.flipped(self.o_input))
        wiring.connect(m, wiring.flipped(self.i_logit), results.i_logit)
        wiring.connect(m, emit.o_tx, wiring.flipped(self.o_tx))
        m.d.comb += [
            inbuf.i_wen.eq(rcv.o_wen), inbuf.i_windex.eq(rcv.o_windex),
            inbuf.i_wvalue.eq(rcv.o_wvalue), inbuf.i_length.eq(rcv.o_in_features),
            results.i_raddr.eq(emit.o_logit_addr),
            emit.i_logit_data.eq(results.o_rdata),
            self.o_loaded.eq(rcv.o_loaded),
            self.o_active.eq(~rcv.o_hunting),
        ]

        # One CRC register serves reception and (after the frame) transmission. Received frames
        # are checked by their residue: the CRC over cmd, len, payload and the big-endian CRC
        # itself is zero.
        crc = Signal(16, init=CRC_INIT)
        crc_bad = Signal()
        m.d.comb += crc_bad.eq(crc != 0)
        with m.If(rcv.o_crc_step):
            m.d.sync += crc.eq(crc16_next(crc, self.i_rx.payload))
        with m.If(emit.o_crc_step):
            m.d.sync += crc.eq(crc16_next(crc, emit.o_crc_byte))

        # Watchdog: the receiver watches the host (and the accelerator's load port), the
        # sequencer below the accelerator.
        watch = Signal()
        progress = Signal()
        m.d.comb += [
            wd.i_watch.eq(rcv.o_watch | watch), wd.i_wait_rx.eq(rcv.o_wait_rx),
            wd.i_progress.eq(rcv.o_progress | progress),
            rcv.i_rx_expired.eq(wd.o_rx_expired), rcv.i_accel_expired.eq(wd.o_accel_expired),
        ]

        # Error flags of the current frame.
        f_timeout = Signal()
        f_framing = Signal()
        f_accel_timeout = Signal()
        overrun = Signal()                  # sticky until reported by a response
        # Sticky status flags, cleared by the PING that reports them.
        s_framing = Signal()
        s_overrun = Signal()
        s_accel_timeout = Signal()
        err_code = Signal(8)
        sent_status = Signal()              # the response being sent is STATUS
        kind_r = Signal(2)                  # its kind (R_*), decided in RESPOND
        got_last = Signal()                 # WAIT_LOGITS: the final logit was taken
        action = rcv.o_action
        is_infer = Signal()
        m.d.comb += is_infer.eq((action == A_DENSE) | (action == A_SPARSE) | (action == A_CODED))

        # Accelerator status is registered (timing isolation); the reset is a registered pulse.
        accel_error = Signal(8)
        accel_busy = Signal()
        m.d.sync += [accel_error.eq(self.i_accel_error), accel_busy.eq(self.i_accel_busy),
                     self.o_accel_reset.eq(0)]

        with m.If(rcv.o_sof):
            m.d.sync += [crc.eq(CRC_INIT), f_timeout.eq(0), f_framing.eq(0),
                         f_accel_timeout.eq(0)]
            m.d.comb += results.i_clear.eq(1)

        # The final logit's transfer (only collected in WAIT_LOGITS) is registered before it
        # moves the state: the accelerator's logit valid / last -> engine state path was a
        # critical path of the iCEBreaker build (one clock per response, no accelerator cycle).
        m.d.sync += got_last.eq(results.o_last)

        with m.FSM():
            with m.State("RECEIVE"):
                with m.If(rcv.o_done):
                    m.next = "CHECK"

            with m.State("CHECK"):
                # Only a complete, intact input vector reaches the accelerator.
                with m.If(is_infer & ~crc_bad & ~rcv.o_bad_input & ~rcv.o_bad_len & ~f_framing
                          & ~overrun & ~f_timeout & ~f_accel_timeout):
                    m.d.comb += inbuf.i_start.eq(1)
                    m.next = "STREAM"
                with m.Else():
                    m.next = "RESPOND"

            with m.State("STREAM"):
                m.d.comb += [watch.eq(1), progress.eq(self.o_input.valid & self.o_input.ready)]
                with m.If(self.o_input.valid & self.o_input.ready & self.o_input.payload.last):
                    m.next = "WAIT_LOGITS"
                with m.If(wd.o_accel_expired):
                    m.next = "RESPOND"

            with m.State("WAIT_LOGITS"):
                m.d.comb += [watch.eq(1), progress.eq(self.i_logit.valid),
                             results.i_collect.eq(1)]
                with m.If(got_last):
                    m.next = "WAIT_IDLE"
                with m.If(wd.o_accel_expired):
                    m.next = "RESPOND"

            with m.State("WAIT_IDLE"):
                m.d.comb += watch.eq(1)
                with m.If(~accel_busy):
                    m.next = "RESPOND"
                with m.If(wd.o_accel_expired):
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
                with m.Elif(rcv.o_hdr_err != 0):
                    m.d.comb += code.eq(rcv.o_hdr_err)
                with m.Elif(rcv.o_bad_len):
                    m.d.comb += code.eq(Err.BAD_LENGTH)
                with m.Elif(rcv.o_bad_input):
                    m.d.comb += code.eq(Err.BAD_INPUT)
                with m.Elif(results.o_error):
                    m.d.comb += code.eq(Err.OUTPUT)
                with m.Elif(is_infer & (accel_error != 0)):
                    m.d.comb += code.eq(Err.ACCEL_ERROR)
                m.d.sync += [err_code.eq(code), overrun.eq(0), crc.eq(CRC_INIT),
                             self.o_error.eq(code != 0)]
                kind = Signal(2)
                m.d.sync += [kind_r.eq(kind), sent_status.eq(kind == R_STATUS)]
                with m.If(f_accel_timeout):
                    m.d.sync += [self.o_accel_reset.eq(1), s_accel_timeout.eq(1)]
                with m.If(code != 0):
                    m.d.comb += kind.eq(R_ERROR)
                with m.Elif(action == A_PING):
                    m.d.comb += kind.eq(R_STATUS)
                with m.Elif(is_infer):
                    m.d.comb += kind.eq(R_RESULT)
                with m.Else():
                    m.d.comb += kind.eq(R_ACK)
                    with m.If(action == A_RESET):
                        m.d.sync += self.o_accel_reset.eq(1)
                m.next = "START"

            with m.State("START"):
                # The response starts from the registered code and kind: the error priority
                # chain -> kind -> the emitter's length was a deep path of the iCEBreaker build
                # (one clock per response, no accelerator cycle).
                m.d.comb += [emit.i_start.eq(1), emit.i_kind.eq(kind_r)]
                m.next = "SEND"

            with m.State("SEND"):
                with m.If(emit.o_done):
                    m.d.comb += rcv.i_resume.eq(1)
                    m.next = "RECEIVE"
                    with m.If(sent_status):
                        m.d.sync += [s_framing.eq(0), s_overrun.eq(0), s_accel_timeout.eq(0)]

        # Every watching state leaves when the watchdog expires.
        with m.If(wd.o_rx_expired):
            m.d.sync += f_timeout.eq(1)
        with m.If(wd.o_accel_expired):
            m.d.sync += f_accel_timeout.eq(1)
        # Error inputs are sampled after the FSM so a pulse is never lost to a same-cycle clear.
        with m.If(self.i_rx_frame_error):
            m.d.sync += [s_framing.eq(1), f_framing.eq(1)]
        with m.If(self.i_rx_overrun):
            m.d.sync += [s_overrun.eq(1), overrun.eq(1)]

        flags = Signal(8)
        fl = STATUS_FLAGS
        m.d.comb += [
            flags[fl["framing_error"]].eq(s_framing),
            flags[fl["overrun"]].eq(s_overrun),
            flags[fl["accel_timeout"]].eq(s_accel_timeout),
            flags[fl["accel_error"]].eq(accel_error != 0),
            flags[fl["accel_busy"]].eq(accel_busy),
            flags[fl["loaded"]].eq(rcv.o_loaded),
            emit.i_words.eq(rcv.o_words), emit.i_err_code.eq(err_code),
            emit.i_cmd.eq(rcv.o_cmd), emit.i_accel_error.eq(accel_error),
            emit.i_in_features.eq(rcv.o_in_features), emit.i_flags.eq(flags),
            # the compact result (seq bit 7 clear) has no logits
            emit.i_n_logits.eq(Mux(rcv.o_seq[7], results.o_count, 0)),
            emit.i_seq.eq(rcv.o_seq), emit.i_argmax.eq(self.i_argmax),
            emit.i_cycles.eq(self.i_cycles), emit.i_crc.eq(crc),
            emit.i_flash.eq(self.i_flash_state), self.o_resp_done.eq(emit.o_done),
        ]
        return m
