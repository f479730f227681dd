"""Model from the SPI flash at power-up: reads the stored image (``sw.flashimage``) with the
flash's READ command and replays its LOAD frames into the protocol engine."""
from amaranth import Module, Signal, Cat, C
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from contract.protocol import FLASH_HEADER, FLASH_MAGIC, FlashState

__all__ = ["FlashLoader"]


class FlashLoader(wiring.Component):
    """Reads ``FLASH_HEADER`` bytes and then the stored frames from a SPI flash (mode 0, READ
    0x03 with a 24-bit address, SCLK = clock / 2) after a release from deep power-down (0xAB).

    The frames go to the protocol engine's receiver exactly as if they had come over the UART
    (each is CRC-checked there); their responses are counted, not sent. The image is loaded
    when the engine answered as many frames as the header says, none of them with an error.
    The engine's watchdog ends a truncated frame, so the loader never hangs.

    Parameters
    ----------
    offset : int
        Byte address of the image in the flash.
    wake_clocks : int
        Clocks to wait after the release from deep power-down (tRES1, 3 us for most flashes).

    Attributes
    ----------
    o_cs_n, o_sclk, o_copi : Out(1)
        SPI flash pins (chip select low active, clock, controller out).
    i_cipo : In(1)
        Flash data out (sampled while SCLK is high).
    o_rx : Out(stream.Signature(8))
        Frame bytes for the engine's ``i_rx`` while ``o_busy``.
    i_resp_done : In(1)
        The engine finished sending a response.
    i_resp_error : In(1)
        That response was an ERROR frame.
    i_engine_idle : In(1)
        The engine waits for a frame (nothing half received).
    o_busy : Out(1)
        Loading: the engine's input and output belong to the loader.
    o_state : Out(3)
        :class:`FlashState`.
    """
    o_cs_n: Out(1, init=1)
    o_sclk: Out(1)
    o_copi: Out(1)
    i_cipo: In(1)
    o_rx: Out(stream.Signature(8))
    i_resp_done: In(1)
    i_resp_error: In(1)
    i_engine_idle: In(1)
    o_busy: Out(1, init=1)
    o_state: Out(3, init=FlashState.LOADING)

    def __init__(self, offset, wake_clocks=128):
        if not 0 <= offset < 1 << 24:
            self._MustUse__silence = True   # a refused component is not an unused one
            raise ValueError(f"flash offset must be below 16 MiB, not {offset}")
        self.offset = offset
        self.wake_clocks = wake_clocks
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        # Shift register for the bits going out (MSB first) and coming in.
        out = Signal(32)
        nbits = Signal(range(33))           # bits left to shift in the current transfer
        inbyte = Signal(8)
        wait = Signal(range(self.wake_clocks + 1))
        header = Signal(8 * (FLASH_HEADER - len(FLASH_MAGIC)))
        hdr_left = Signal(range(FLASH_HEADER + 1), init=FLASH_HEADER)
        magic_ok = Signal(init=1)
        frames = header[:16]
        length = header[16:]
        fed = Signal(24)                    # frame bytes handed to the engine
        woke = Signal()                     # the release from power-down has been sent
        answered = Signal(16)
        failed = Signal()
        with m.If(self.i_resp_done):
            m.d.sync += answered.eq(answered + 1)
            with m.If(self.i_resp_error):
                m.d.sync += failed.eq(1)
        m.d.comb += self.o_copi.eq(out[31])

        def shift_byte(next_state):
            # One byte in: SCLK low (data set up by the flash on the falling edge), then high
            # (sample); eight times.
            with m.If(~self.o_sclk):
                m.d.sync += self.o_sclk.eq(1)
            with m.Else():
                m.d.sync += [self.o_sclk.eq(0), inbyte.eq(Cat(self.i_cipo, inbyte[:7])),
                             nbits.eq(nbits - 1)]
                with m.If(nbits == 1):
                    m.next = next_state

        with m.FSM():
            with m.State("WAKE"):
                # Release from deep power-down: 0xAB, then tRES1 with the chip deselected.
                m.d.sync += [self.o_cs_n.eq(0), out.eq(0xAB << 24), nbits.eq(8)]
                m.next = "SEND"
            with m.State("SEND"):
                with m.If(~self.o_sclk):
                    m.d.sync += self.o_sclk.eq(1)
                with m.Else():
                    m.d.sync += [self.o_sclk.eq(0), out.eq(out << 1), nbits.eq(nbits - 1)]
                    with m.If(nbits == 1):
                        with m.If(~woke):
                            m.d.sync += [self.o_cs_n.eq(1), wait.eq(self.wake_clocks),
                                         woke.eq(1)]
                            m.next = "WAIT"
                        with m.Else():
                            m.d.sync += nbits.eq(8)
                            m.next = "HEADER"
            with m.State("WAIT"):
                m.d.sync += wait.eq(wait - 1)
                with m.If(wait == 1):
                    m.d.sync += [self.o_cs_n.eq(0), out.eq(0x03 << 24 | self.offset),
                                 nbits.eq(32)]
                    m.next = "SEND"
            with m.State("HEADER"):
                shift_byte("HEADER_BYTE")
            with m.State("HEADER_BYTE"):
                m.d.sync += [hdr_left.eq(hdr_left - 1), nbits.eq(8)]
                magic_at = FLASH_HEADER - hdr_left  # byte index
                for i, b in enumerate(FLASH_MAGIC):
                    with m.If((magic_at == i) & (inbyte != b)):
                        m.d.sync += magic_ok.eq(0)
                with m.If(hdr_left <= FLASH_HEADER - len(FLASH_MAGIC)):
                    m.d.sync += header.eq(Cat(header[8:], inbyte))
                with m.If(hdr_left == 1):
                    m.next = "CHECK"
                with m.Else():
                    m.next = "HEADER"
            with m.State("CHECK"):
                with m.If(~magic_ok):
                    m.d.sync += self.o_state.eq(FlashState.BLANK)
                    m.next = "DONE"
                with m.Elif(length == 0):
                    m.next = "FINISH"
                with m.Else():
                    m.next = "READ"
            with m.State("READ"):
                shift_byte("FEED")
            with m.State("FEED"):
                m.d.comb += self.o_rx.valid.eq(1)
                with m.If(self.o_rx.ready):
                    m.d.sync += [fed.eq(fed + 1), nbits.eq(8)]
                    with m.If(fed + 1 == length):
                        m.next = "FINISH"
                    with m.Else():
                        m.next = "READ"
            with m.State("FINISH"):
                # Every byte is with the engine: wait until it has handled the last frame.
                m.d.sync += self.o_cs_n.eq(1)
                with m.If(self.i_engine_idle & ~self.i_resp_done):
                    with m.If(failed | (answered != frames)):
                        m.d.sync += self.o_state.eq(FlashState.CORRUPT)
                    with m.Else():
                        m.d.sync += self.o_state.eq(FlashState.LOADED)
                    m.next = "DONE"
            with m.State("DONE"):
                m.d.sync += [self.o_cs_n.eq(1), self.o_busy.eq(0)]
        m.d.comb += self.o_rx.payload.eq(inbyte)
        return m
