"""Model from the SPI flash at power-up: reads the stored image (``sw.flashimage``) with the
flash's READ command and replays its LOAD frames into the protocol engine."""
from amaranth import Module, Signal, Cat, C
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from contract.protocol import FLASH_HEADER, FLASH_MAGIC, SOF, FlashState

__all__ = ["FlashLoader"]


class FlashLoader(wiring.Component):
    """Reads ``FLASH_HEADER`` bytes and then the stored frames from a SPI flash (mode 0, READ
    0x03 with a 24-bit address, SCLK = clock / 2) after a release from deep power-down (0xAB).

    The frames go to the protocol engine's receiver exactly as if they had come over the UART
    (each is CRC-checked there); their responses are counted, not sent. The image is loaded
    when the engine answered as many frames as the header says, none of them with an error;
    it is corrupt if a frame fails or the byte after a frame is not ``SOF`` while frames are
    missing. The engine's watchdog ends a truncated frame, so the loader never hangs.

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
        # The two commands are constants: 0xAB (release from deep power-down) in bits 39..32,
        # READ and the address in bits 31..0; ``bit`` indexes the one on COPI (MSB first), so no
        # shift register is needed.
        commands = C(0xAB << 32 | 0x03 << 24 | self.offset, 40)
        bit = Signal(range(40), init=39)
        nbits = Signal(range(9))            # bits left of the byte being read
        inbyte = Signal(8)
        wait = Signal(range(self.wake_clocks + 1))
        # The header's frame count, counted down as the engine answers.
        frames = Signal(16)
        hdr_left = Signal(range(FLASH_HEADER + 1), init=FLASH_HEADER)
        magic_ok = Signal(init=1)
        failed = Signal()
        # ``frames == 0`` and ``inbyte == SOF`` are registered beside ``frames`` and ``inbyte``
        # so that FEED's checks are a few gates: the offer they make is registered too, because
        # the engine's receiver passes it on to the accelerator's load port in the same cycle
        # (the loader's comparators on that path cost the iCEBreaker build 3 MHz).
        no_frames = Signal()
        byte_is_sof = Signal()
        offer = Signal()                    # FEED: the byte is offered to the engine
        checked = Signal()                  # ... after the checks between two frames
        with m.If(self.i_resp_done):
            m.d.sync += [frames.eq(frames - 1), no_frames.eq(frames == 1)]
            with m.If(self.i_resp_error):
                m.d.sync += failed.eq(1)
        m.d.comb += [self.o_copi.eq(commands.bit_select(bit, 1)), self.o_rx.payload.eq(inbyte),
                     self.o_rx.valid.eq(offer & (checked | ~self.i_engine_idle))]

        def shift_byte(next_state):
            # One byte in, eight times: SCLK low (the flash sets up its bit on the falling
            # edge), then high; the bit is taken as SCLK falls again.
            with m.If(~self.o_sclk):
                m.d.sync += self.o_sclk.eq(1)
            with m.Else():
                next_byte = Cat(self.i_cipo, inbyte[:7])
                m.d.sync += [self.o_sclk.eq(0), inbyte.eq(next_byte), nbits.eq(nbits - 1),
                             byte_is_sof.eq(next_byte == SOF)]
                with m.If(nbits == 1):
                    m.next = next_state

        def finish(state):
            m.d.sync += [self.o_state.eq(state), self.o_cs_n.eq(1), offer.eq(0)]
            m.next = "DONE"

        with m.FSM():
            with m.State("WAKE"):
                m.d.sync += self.o_cs_n.eq(0)
                m.next = "SEND"
            with m.State("SEND"):
                # Command bits: the flash samples COPI on the rising edge.
                with m.If(~self.o_sclk):
                    m.d.sync += self.o_sclk.eq(1)
                with m.Else():
                    m.d.sync += [self.o_sclk.eq(0), bit.eq(bit - 1)]
                    with m.If(bit == 32):
                        # tRES1 with the chip deselected, then READ
                        m.d.sync += [self.o_cs_n.eq(1), wait.eq(self.wake_clocks)]
                        m.next = "WAIT"
                    with m.If(bit == 0):
                        m.d.sync += nbits.eq(8)
                        m.next = "HEADER"
            with m.State("WAIT"):
                m.d.sync += wait.eq(wait - 1)
                with m.If(wait == 1):
                    m.d.sync += self.o_cs_n.eq(0)
                    m.next = "SEND"
            with m.State("HEADER"):
                shift_byte("HEADER_BYTE")
            with m.State("HEADER_BYTE"):
                m.d.sync += [hdr_left.eq(hdr_left - 1), nbits.eq(8),
                             frames.eq(Cat(frames[8:], inbyte)),
                             no_frames.eq(Cat(frames[8:], inbyte) == 0)]
                magic_at = FLASH_HEADER - hdr_left  # byte index
                for i, b in enumerate(FLASH_MAGIC):
                    with m.If((magic_at == i) & (inbyte != b)):
                        m.d.sync += magic_ok.eq(0)
                with m.If(hdr_left == 1):
                    with m.If(~magic_ok):
                        finish(FlashState.BLANK)
                    with m.Else():
                        m.next = "READ"
                with m.Else():
                    m.next = "HEADER"
            with m.State("READ"):
                shift_byte("FEED")
            with m.State("FEED"):
                # The image is frames back to back: between two frames (the engine idle) the
                # next byte must be SOF, unless every frame has been answered. The offer is a
                # register (``offer``), so the engine's input does not wait for this decision;
                # ``checked`` says it was made with the engine idle. An offer made while the
                # engine was busy is held back in the cycle the engine turns idle, and made
                # again with the checks (one clock per frame).
                with m.If(self.o_rx.valid & self.o_rx.ready):
                    m.d.sync += [offer.eq(0), nbits.eq(8)]
                    m.next = "READ"
                with m.Elif(self.i_engine_idle & ~self.i_resp_done):
                    with m.If(failed):
                        finish(FlashState.CORRUPT)
                    with m.Elif(no_frames):
                        finish(FlashState.LOADED)
                    with m.Elif(~byte_is_sof):
                        finish(FlashState.CORRUPT)       # missing frames or a bad length
                    with m.Else():
                        m.d.sync += [offer.eq(1), checked.eq(1)]
                with m.Else():
                    m.d.sync += [offer.eq(1), checked.eq(0)]
            with m.State("DONE"):
                m.d.comb += self.o_busy.eq(0)
        return m
