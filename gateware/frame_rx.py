"""Frame receiver of the protocol engine: finds frames, checks their headers, streams LOAD words
into the accelerator and writes INFER inputs into the input buffer."""
from amaranth import Module, Signal, Mux, Cat
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from contract.memmap import DESC_WORD, MEM_ID_BITS
from contract.protocol import PROTOCOL_VERSION, SOF, Cmd, Err
from gateware.config import AcceleratorConfig, LoadWrite

__all__ = ["FrameReceiver", "A_DISCARD", "A_PING", "A_LOAD", "A_DENSE", "A_SPARSE", "A_RESET",
           "A_CODED"]

#: What a frame's payload is for (``o_action``), decided when its length is complete.
A_DISCARD, A_PING, A_LOAD, A_DENSE, A_SPARSE, A_RESET, A_CODED = range(7)

# Byte positions inside a payload (``phase``): LOAD 0 mem, 1-2 address, 3-4 word; sparse 1-2
# index, 3 value; coded 5 the sequence byte, 6 tokens and literals; PING 7 the host's version.
P_SEQ, P_TOKEN, P_VERSION = 5, 6, 7


class FrameReceiver(wiring.Component):
    """Parses one frame ``SOF cmd len payload crc`` per ``i_resume``.

    Bytes before ``SOF`` are dropped. The header decides the action (``o_action``) or a header
    error (``o_hdr_err``: UNKNOWN_CMD, BAD_LENGTH, NOT_LOADED); the payload of a bad header is
    skipped by its length. LOAD words go out on ``o_load`` as they complete (``o_words``
    counts them); a LOAD of word 0 (``in_features``) of the layer descriptor memory
    (``config.mem_layers``) also sets ``o_in_features``, and so does one of word ``in_values``
    with a value other than 0 (the packer writes it after word 0: a conv layer 0 takes the
    ``C * H * W`` image). INFER_DENSE values are written into the input buffer as they arrive;
    INFER_SPARSE pairs are expanded into it one value per clock (zeros up to the pair's index,
    then its value) and the vector is completed with zeros; so are INFER_CODED tokens (a token
    byte ``z << 3 | l``: ``z`` zeros, then the ``l`` literal bytes that follow it; values past
    ``in_features`` set ``o_bad_input``, a payload that ends inside a literal run
    ``o_bad_len``). A PING may carry the host's protocol version; another one than
    ``PROTOCOL_VERSION`` gives the header error VERSION. Every byte after ``SOF`` (CRC bytes
    included) is stepped into the engine's CRC register (``o_crc_step``), so a good frame leaves
    the residue zero.

    The receiver then holds ``o_done`` until ``i_resume``: the engine checks the frame, runs
    the inference and sends the response meanwhile, with further bytes waiting in the receive
    FIFO. A timeout of the watchdog ends the frame early (``o_done`` with the rest unread).

    Parameters
    ----------
    config : AcceleratorConfig

    Attributes
    ----------
    i_rx : In(stream.Signature(8))
        Received bytes.
    i_resume : In(1)
        Leave ``o_done`` and hunt for the next frame.
    o_sof : Out(1)
        One-clock pulse: a frame starts (the engine clears its per-frame state and the CRC).
    o_done : Out(1)
        The frame is complete (or was abandoned); the outputs below describe it.
    o_hunting : Out(1)
        Waiting for a ``SOF``.
    o_cmd : Out(8)
    o_seq : Out(8)
        INFER_CODED's sequence byte (bit 7: the host wants the logits); 0x80 for the other
        frames.
    o_action : Out(3)
        ``A_*``.
    o_hdr_err : Out(8)
        Error code from the header, 0 if none.
    o_bad_len : Out(1)
        A sparse payload ended inside a pair.
    o_bad_input : Out(1)
        A sparse index out of range or not ascending.
    o_words : Out(16)
        LOAD words written.
    o_in_features : Out(range(max_features + 1))
        Layer 0's input count, learnt from the last LOAD of its descriptor.
    o_loaded : Out(1)
        ``0 < o_in_features <= max_features``.
    o_load : Out(stream.Signature(LoadWrite))
        Memory writes for the accelerator's ``i_load``.
    o_wen : Out(1)
    o_windex : Out(range(max_features + 1))
    o_wvalue : Out(act_bits)
        Input buffer writes (:class:`gateware.input_buffer.InputBuffer`).
    o_crc_step : Out(1)
        Shift ``i_rx.payload`` into the CRC.
    o_watch, o_wait_rx, o_progress : Out(1)
        Watchdog drive (:class:`gateware.watchdog.Watchdog`): waiting for the host
        (``o_wait_rx``) or for the accelerator to take a LOAD word.
    i_rx_expired, i_accel_expired : In(1)
        Watchdog expiry: abandon the frame.
    """

    def __init__(self, config=AcceleratorConfig()):
        self.config = config
        fw = config.max_features.bit_length()
        super().__init__({
            "i_rx": In(stream.Signature(8)),
            "i_resume": In(1),
            "o_sof": Out(1), "o_done": Out(1), "o_hunting": Out(1),
            "o_cmd": Out(8), "o_seq": Out(8), "o_action": Out(3), "o_hdr_err": Out(8),
            "o_bad_len": Out(1), "o_bad_input": Out(1),
            "o_words": Out(16), "o_in_features": Out(fw), "o_loaded": Out(1),
            "o_load": Out(stream.Signature(LoadWrite)),
            "o_wen": Out(1), "o_windex": Out(fw), "o_wvalue": Out(config.act_bits),
            "o_crc_step": Out(1),
            "o_watch": Out(1), "o_wait_rx": Out(1), "o_progress": Out(1),
            "i_rx_expired": In(1), "i_accel_expired": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        rx = self.i_rx
        fw = cfg.max_features.bit_length()
        cmd, action = self.o_cmd, self.o_action
        in_features, loaded = self.o_in_features, self.o_loaded
        len_lo = Signal(8)
        remaining = Signal(16)              # payload bytes still to receive
        phase = Signal(3)                   # P_* / LOAD and sparse positions
        mem = Signal(MEM_ID_BITS)
        word = Signal(16)                   # LOAD start address / sparse index
        low = Signal(8)                     # LOAD data low byte / sparse value
        # LOAD: words written; INFER: input buffer position (the low bits). One counter serves
        # both (a frame is one or the other).
        cnt = self.o_words
        pos = cnt[:fw]
        pos_next = Signal(fw)
        at_end = Signal()                   # pos == in_features (updated with pos)
        is_infer = (action == A_DENSE) | (action == A_SPARSE) | (action == A_CODED)
        # Coded input: literals still to come in the current run, zeros still to write.
        lits = Signal(3)
        zeros = Signal(5)

        take = Signal()                     # consume the current rx byte
        byte = rx.payload
        taken = Signal()
        m.d.comb += [rx.ready.eq(take), taken.eq(take & rx.valid), pos_next.eq(pos + 1)]
        expired = self.i_rx_expired | self.i_accel_expired

        def step_pos():
            m.d.sync += [pos.eq(pos_next), at_end.eq(pos_next == in_features)]

        def rx_state(next_state):
            # A header or CRC byte: consumed into the CRC, or the frame times out.
            m.d.comb += [take.eq(1), self.o_watch.eq(1), self.o_wait_rx.eq(1),
                         self.o_progress.eq(rx.valid), self.o_crc_step.eq(rx.valid)]
            if next_state is not None:
                with m.If(rx.valid):
                    m.next = next_state
            with m.If(self.i_rx_expired):
                m.next = "DONE"

        expanding = Signal()
        direct = Signal()                   # PAYLOAD: the received byte is the value written
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
            self.o_windex.eq(pos),
            self.o_wvalue.eq(Mux(direct, byte, Mux(hit & expanding, low, 0))),
        ]

        with m.FSM():
            with m.State("HUNT"):
                m.d.comb += [take.eq(1), self.o_hunting.eq(1)]
                with m.If(rx.valid & (byte == SOF)):
                    m.d.comb += self.o_sof.eq(1)
                    m.d.sync += [self.o_hdr_err.eq(0), self.o_bad_input.eq(0),
                                 self.o_bad_len.eq(0), cnt.eq(0), at_end.eq(0),
                                 action.eq(A_DISCARD), self.o_seq.eq(0x80), lits.eq(0)]
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
                        with m.If(full_len <= 1):
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
                    with m.Case(Cmd.INFER_CODED):
                        with m.If(~loaded):
                            m.d.comb += new_err.eq(Err.NOT_LOADED)
                        with m.Elif(full_len == 0):
                            m.d.comb += new_err.eq(Err.BAD_LENGTH)
                        with m.Else():
                            m.d.comb += new_action.eq(A_CODED)
                    with m.Default():
                        m.d.comb += new_err.eq(Err.UNKNOWN_CMD)
                with m.If(rx.valid):
                    m.d.sync += [
                        remaining.eq(full_len), action.eq(new_action),
                        self.o_hdr_err.eq(new_err),
                    ]
                    with m.Switch(cmd):
                        with m.Case(Cmd.INFER_SPARSE):
                            m.d.sync += phase.eq(1)
                        with m.Case(Cmd.INFER_CODED):
                            m.d.sync += phase.eq(P_SEQ)
                        with m.Case(Cmd.PING):
                            m.d.sync += phase.eq(P_VERSION)
                        with m.Default():
                            m.d.sync += phase.eq(0)
                    with m.If(full_len != 0):
                        m.next = "PAYLOAD"
                    with m.Elif(new_action == A_SPARSE):
                        m.next = "PAD"          # all-zero sparse input: only padding
                    with m.Else():
                        m.next = "CRC0"
                rx_state(None)                  # last: a timeout wins over the next state

            with m.State("PAYLOAD"):
                m.d.comb += [self.o_watch.eq(1), self.o_wait_rx.eq(~rx.valid)]
                sink_ready = Signal()
                word_done = (action == A_LOAD) & (phase == 4)
                with m.Switch(action):
                    with m.Case(A_LOAD):
                        m.d.comb += [
                            self.o_load.valid.eq(rx.valid & word_done),
                            sink_ready.eq(~word_done | self.o_load.ready),
                        ]
                    with m.Case(A_DENSE):
                        m.d.comb += [self.o_wen.eq(rx.valid), sink_ready.eq(1)]
                    with m.Case(A_CODED):
                        m.d.comb += [
                            self.o_wen.eq(rx.valid & (phase == P_TOKEN) & (lits != 0) & ~at_end),
                            sink_ready.eq(1),
                        ]
                    with m.Default():
                        m.d.comb += sink_ready.eq(1)
                m.d.comb += [take.eq(sink_ready), self.o_progress.eq(taken),
                             self.o_crc_step.eq(taken), direct.eq(1)]
                token = (phase == P_TOKEN) & (lits == 0)
                lits_after = Signal(3)
                m.d.comb += lits_after.eq(Mux(token, byte[:3], lits - 1))
                last_byte = remaining == 1
                with m.If(taken):
                    m.d.sync += remaining.eq(remaining - 1)
                    with m.Switch(phase):
                        with m.Case(0):
                            m.d.sync += [mem.eq(byte), phase.eq(1)]
                        with m.Case(1):
                            m.d.sync += [word[:8].eq(byte), phase.eq(2)]
                        with m.Case(2):
                            m.d.sync += [word[8:].eq(byte), phase.eq(3)]
                        with m.Case(3):
                            m.d.sync += [low.eq(byte), phase.eq(Mux(action == A_LOAD, 4, 1))]
                        with m.Case(P_SEQ):
                            m.d.sync += [self.o_seq.eq(byte), phase.eq(P_TOKEN)]
                        with m.Case(P_TOKEN):
                            m.d.sync += lits.eq(lits_after)
                            with m.If(token):
                                m.d.sync += zeros.eq(byte[3:])
                            with m.Elif(at_end):
                                m.d.sync += self.o_bad_input.eq(1)     # a literal past the end
                            with m.Else():
                                step_pos()
                        with m.Case(P_VERSION):
                            with m.If((byte != PROTOCOL_VERSION) & (self.o_hdr_err == 0)):
                                m.d.sync += self.o_hdr_err.eq(Err.VERSION)
                        with m.Case(4):
                            m.d.sync += [cnt.eq(cnt + 1), phase.eq(3)]
                            # layer 0's in_features, or its in_values when not 0 (a conv
                            # layer 0: the image, C * H * W values; written after word 0)
                            value = Cat(low, byte)
                            with m.If((mem == cfg.mem_layers)
                                      & ((load_addr == 0)
                                         | ((load_addr == DESC_WORD["in_values"])
                                            & (value != 0)))):
                                m.d.sync += [
                                    in_features.eq(value),
                                    loaded.eq((value != 0) & (value <= cfg.max_features)),
                                ]
                    with m.If(action == A_DENSE):
                        step_pos()
                    with m.If((action == A_SPARSE) & (phase == 3)):
                        m.next = "EXPAND"
                    with m.Elif(token & (byte[3:] != 0)):
                        m.next = "ZEROS"
                    with m.Elif(last_byte):
                        with m.If(action == A_SPARSE):
                            m.d.sync += self.o_bad_len.eq(1)     # a partial (index, value) pair
                        with m.If((action == A_CODED) & (phase == P_TOKEN) & (lits_after != 0)):
                            m.d.sync += self.o_bad_len.eq(1)     # literals missing
                        with m.If(is_infer):
                            m.next = "PAD"
                        with m.Else():
                            m.next = "CRC0"
                with m.If(expired):
                    m.next = "DONE"

            with m.State("EXPAND"):
                m.d.comb += expanding.eq(1)
                # Write zeros up to the pair's index, then its value (one entry per clock). An
                # index that is out of range or not ascending is never met before the end.
                done = Signal()
                with m.If(at_end):
                    m.d.sync += self.o_bad_input.eq(1)
                    m.d.comb += done.eq(1)
                with m.Else():
                    m.d.comb += [self.o_wen.eq(1), done.eq(hit)]
                    step_pos()
                with m.If(done):
                    with m.If(remaining == 0):
                        m.next = "PAD"
                    with m.Else():
                        m.next = "PAYLOAD"

            with m.State("ZEROS"):
                # A coded zero run, one value per clock.
                with m.If(at_end):
                    m.d.sync += self.o_bad_input.eq(1)
                with m.Else():
                    m.d.comb += self.o_wen.eq(1)
                    m.d.sync += zeros.eq(zeros - 1)
                    step_pos()
                with m.If(at_end | (zeros == 1)):
                    with m.If(remaining == 0):
                        with m.If(lits != 0):
                            m.d.sync += self.o_bad_len.eq(1)     # literals missing
                        m.next = "PAD"
                    with m.Else():
                        m.next = "PAYLOAD"

            with m.State("PAD"):
                # Complete the buffered vector with zeros (sparse tail).
                with m.If(at_end):
                    m.next = "CRC0"
                with m.Else():
                    m.d.comb += self.o_wen.eq(1)
                    step_pos()

            with m.State("CRC0"):
                rx_state("CRC1")

            with m.State("CRC1"):
                rx_state("DONE")

            with m.State("DONE"):
                m.d.comb += self.o_done.eq(1)
                with m.If(self.i_resume):
                    m.next = "HUNT"
        return m
