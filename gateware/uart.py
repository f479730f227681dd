"""8N1 UART receiver and transmitter with byte streams.

Both sides use the same integer clock divider ``divisor`` (clocks per bit): 12 MHz / 3 Mbaud =
4. :func:`uart_divisor` computes it from a clock and a baud rate and refuses rates the divider
cannot hit within 2 %.
"""
from amaranth import Module, Signal, Mux, Cat
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["UARTError", "uart_divisor", "UARTTx", "UARTRx", "ByteFIFO"]


class UARTError(ValueError):
    """A UART parameter is out of range (divider too small, baud rate unreachable)."""


def uart_divisor(clk_hz, baud, tolerance=0.02):
    """Clocks per bit for ``baud`` at ``clk_hz``.

    Raises
    ------
    UARTError
        if the divider is below 4 or the rounded divider misses ``baud`` by more than
        ``tolerance`` (relative).
    """
    if baud <= 0 or clk_hz <= 0:
        raise UARTError(f"clock ({clk_hz} Hz) and baud rate ({baud}) must be positive")
    divisor = round(clk_hz / baud)
    if divisor < 4:
        raise UARTError(f"{clk_hz / 1e6:g} MHz is too slow for {baud} baud: need at least 4 "
                        f"clocks per bit, have {clk_hz / baud:.2f}")
    error = abs(clk_hz / divisor - baud) / baud
    if error > tolerance:
        raise UARTError(f"{baud} baud is not reachable from {clk_hz / 1e6:g} MHz: the closest "
                        f"divider {divisor} gives {clk_hz / divisor:.0f} baud "
                        f"({error * 100:.1f} % off)")
    return divisor


def _check_divisor(component, divisor):
    if not isinstance(divisor, int) or divisor < 4 or divisor > 65535:
        component._MustUse__silence = True   # a refused component is not an unused one
        raise UARTError(f"divisor must be an integer 4..65535 clocks per bit, not {divisor!r}")


class UARTTx(wiring.Component):
    """8N1 transmitter.

    Parameters
    ----------
    divisor : int
        Clocks per bit (>= 4).

    Attributes
    ----------
    i_data : In(stream.Signature(8))
        Bytes to send. ``ready`` is high while the transmitter is idle; a byte is accepted in the
        same cycle and its start bit appears on ``o_tx`` on the next clock edge.
    o_tx : Out(1)
        Serial line (idle high).
    o_busy : Out(1)
        A byte is being shifted out.
    """
    i_data: In(stream.Signature(8))
    o_tx: Out(1, init=1)
    o_busy: Out(1)

    def __init__(self, divisor):
        _check_divisor(self, divisor)
        self.divisor = divisor
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        shreg = Signal(10, init=0x3FF)          # stop . data[7:0] . start, LSB out first
        bits = Signal(range(11))
        timer = Signal(range(self.divisor))

        m.d.comb += [
            self.o_tx.eq(shreg[0]),
            self.o_busy.eq(bits != 0),
            self.i_data.ready.eq(bits == 0),
        ]
        with m.If(bits == 0):
            with m.If(self.i_data.valid):
                m.d.sync += [
                    shreg.eq(Cat(0, self.i_data.payload, 1)),
                    bits.eq(10),
                    timer.eq(self.divisor - 1),
                ]
        with m.Elif(timer == 0):
            m.d.sync += [
                shreg.eq(Cat(shreg[1:], 1)),
                bits.eq(bits - 1),
                timer.eq(self.divisor - 1),
            ]
        with m.Else():
            m.d.sync += timer.eq(timer - 1)
        return m


class UARTRx(wiring.Component):
    """8N1 receiver with majority-of-three sampling around each bit centre.

    The line is synchronised by two flip-flops; a low line while idle starts a frame. Each bit
    is sampled on the three clocks around its centre and the majority decides; a start bit that
    reads high is ignored (glitch). The receiver returns to idle in the middle of the stop bit so
    it can resynchronise to the next start bit even with a slightly fast transmitter; after a
    framing error it waits for the line to go high (a break does not produce a stream of
    errors). At 4 clocks per bit the start-bit uncertainty is a quarter bit, which leaves about
    +-2 % of baud-rate mismatch (tested; more at larger dividers); the FT2232H and the board
    oscillator are within 0.1 %.

    Parameters
    ----------
    divisor : int
        Clocks per bit (>= 4).

    Attributes
    ----------
    i_rx : In(1)
        Serial line (idle high), asynchronous to the clock.
    o_data : Out(stream.Signature(8))
        Received bytes. ``valid`` stays high until taken; a byte that completes while the previous
        one is still waiting is lost and raises ``o_overrun``.
    o_frame_error : Out(1)
        One-cycle pulse: the stop bit read low (the byte is dropped).
    o_overrun : Out(1)
        One-cycle pulse: a received byte was dropped because ``o_data`` was not taken in time.
    """
    i_rx: In(1, init=1)
    o_data: Out(stream.Signature(8))
    o_frame_error: Out(1)
    o_overrun: Out(1)

    def __init__(self, divisor):
        _check_divisor(self, divisor)
        self.divisor = divisor
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        rx = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.i_rx, rx, init=1)

        centre = self.divisor // 2
        # ``timer`` counts clocks inside a bit: 0 is the clock after the bit's (nominal) edge.
        timer = Signal(range(self.divisor))
        votes = Signal(2)                    # number of high samples among the three
        bit = Signal()
        m.d.comb += bit.eq((votes + rx) >= 2)   # third sample is the current one
        nbit = Signal(range(10))             # 0 = start, 1..8 = data, 9 = stop
        shreg = Signal(8)

        with m.If(self.o_data.ready):
            m.d.sync += self.o_data.valid.eq(0)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~rx):
                    # The line went low at most one clock ago: this is clock 0 of the start bit.
                    m.d.sync += [timer.eq(1), votes.eq(0), nbit.eq(0)]
                    m.next = "BIT"
            with m.State("BIT"):
                m.d.sync += timer.eq(Mux(timer == self.divisor - 1, 0, timer + 1))
                with m.If((timer == centre - 1) | (timer == centre)):
                    m.d.sync += votes.eq(votes + rx)
                # The stop bit is decided one clock early, on its first two samples (high if
                # either is high), so that back-to-back bytes from a slightly fast transmitter
                # do not push the next start bit later and later.
                with m.If((nbit == 9) & (timer == centre)):
                    m.next = "IDLE"
                    with m.If(~votes.any() & ~rx):
                        m.d.comb += self.o_frame_error.eq(1)
                        m.next = "WAIT_HIGH"
                    with m.Elif(self.o_data.valid & ~self.o_data.ready):
                        m.d.comb += self.o_overrun.eq(1)
                    with m.Else():
                        m.d.sync += [
                            self.o_data.payload.eq(shreg),
                            self.o_data.valid.eq(1),
                        ]
                with m.If((nbit != 9) & (timer == centre + 1)):
                    m.d.sync += votes.eq(0)
                    with m.If(nbit == 0):
                        with m.If(bit):
                            m.next = "IDLE"          # glitch, not a start bit
                    with m.Else():
                        m.d.sync += shreg.eq(Cat(shreg[1:], bit))
                    m.d.sync += nbit.eq(nbit + 1)
            with m.State("WAIT_HIGH"):
                with m.If(rx):
                    m.next = "IDLE"
        return m


class ByteFIFO(wiring.Component):
    """Byte FIFO in one block RAM (the receive buffer between the UART and the protocol engine).

    Leaner than ``amaranth.lib.fifo.SyncFIFOBuffered`` (no level counters): a write and a read
    pointer with a wrap bit each, and the RAM's registered read as the output stage.

    Parameters
    ----------
    depth : int
        Bytes held (a power of two; 512 fills one iCE40 EBR).

    Attributes
    ----------
    i_data : In(stream.Signature(8))
        Bytes in; ``ready`` is low while ``depth`` bytes are buffered.
    o_data : Out(stream.Signature(8))
        Bytes out, in order (first word falls through after two clocks).
    """
    i_data: In(stream.Signature(8))
    o_data: Out(stream.Signature(8))

    def __init__(self, depth):
        if not isinstance(depth, int) or depth < 2 or depth & (depth - 1):
            self._MustUse__silence = True   # a refused component is not an unused one
            raise ValueError(f"FIFO depth must be a power of two >= 2, not {depth!r}")
        self.depth = depth
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        bits = self.depth.bit_length() - 1
        # ``no_rw_check``: the entry being written is never the one being read (the read
        # pointer only reaches the write pointer when the FIFO is empty, and then nothing is read).
        m.submodules.mem = mem = Memory(shape=8, depth=self.depth, init=[],
                                        attrs={"no_rw_check": 1})
        wr = mem.write_port()
        rd = mem.read_port()
        w_ptr = Signal(bits + 1)
        r_ptr = Signal(bits + 1)
        empty = w_ptr == r_ptr
        full = (w_ptr[:bits] == r_ptr[:bits]) & (w_ptr[bits] != r_ptr[bits])
        fetch = ~empty & (~self.o_data.valid | self.o_data.ready)
        m.d.comb += [
            self.i_data.ready.eq(~full),
            wr.addr.eq(w_ptr[:bits]), wr.data.eq(self.i_data.payload),
            wr.en.eq(self.i_data.valid & ~full),
            rd.addr.eq(r_ptr[:bits]), rd.en.eq(fetch),
            self.o_data.payload.eq(rd.data),
        ]
        with m.If(wr.en):
            m.d.sync += w_ptr.eq(w_ptr + 1)
        with m.If(fetch):
            m.d.sync += [r_ptr.eq(r_ptr + 1), self.o_data.valid.eq(1)]
        with m.Elif(self.o_data.ready):
            m.d.sync += self.o_data.valid.eq(0)
        return m
