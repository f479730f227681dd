"""Byte-level simulation top: the protocol engine and the accelerator without the UART.

``gateware.top.UARTCore`` minus the UART receiver and transmitter: the testbench writes received
bytes straight into the receive FIFO and takes response bytes from a transmit FIFO, one byte per
clock each way instead of ten bit times (``4 * 10`` clocks per byte at 3 Mbaud and 12 MHz), so
a protocol fuzz can run tens of thousands of frames. The receive FIFO is the design's
(``rx_fifo_depth`` bytes); the testbench writes only while it has room, so no byte is lost
(overruns are a UART-level matter, tested on ``SimTop``).
"""
from amaranth import Module, Value
from amaranth.hdl import ResetInserter
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from gateware.config import AcceleratorConfig
from gateware.protocol import ProtocolEngine
from gateware.top import default_accelerator

__all__ = ["StreamTop"]


class StreamTop(wiring.Component):
    """Receive FIFO -> protocol engine -> accelerator; protocol engine -> transmit FIFO.

    Parameters
    ----------
    config : AcceleratorConfig
    clock_hz, divisor : int
        Reported by STATUS (no UART here).
    timeout, accel_timeout, max_logits :
        Passed to :class:`gateware.protocol.ProtocolEngine`.
    rx_fifo_depth, tx_fifo_depth : int

    Attributes
    ----------
    i_rx_data : In(8)
        Byte to write into the receive FIFO.
    i_rx_we : In(1)
        Write ``i_rx_data`` this cycle (only while ``o_rx_ready``).
    o_rx_ready : Out(1)
        The receive FIFO has room.
    o_tx_data : Out(8)
        Oldest byte of the transmit FIFO (while ``o_tx_valid``).
    o_tx_valid : Out(1)
        ``o_tx_data`` holds a byte.
    i_tx_re : In(1)
        Take ``o_tx_data`` this cycle.
    """
    i_rx_data: In(8)
    i_rx_we: In(1)
    o_rx_ready: Out(1)
    o_tx_data: Out(8)
    o_tx_valid: Out(1)
    i_tx_re: In(1)

    def __init__(self, config=AcceleratorConfig(), *, clock_hz=12_000_000, divisor=4,
                 timeout=None, accel_timeout=1 << 24, max_logits=16, rx_fifo_depth=32,
                 tx_fifo_depth=4096):
        self.config = config
        self.engine_args = dict(clock_hz=clock_hz, divisor=divisor, timeout=timeout,
                                accel_timeout=accel_timeout, max_logits=max_logits)
        self.rx_fifo_depth = rx_fifo_depth
        self.tx_fifo_depth = tx_fifo_depth
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.rx_fifo = rx = SyncFIFOBuffered(width=8, depth=self.rx_fifo_depth)
        m.submodules.tx_fifo = tx = SyncFIFOBuffered(width=8, depth=self.tx_fifo_depth)
        m.submodules.protocol = proto = ProtocolEngine(self.config, **self.engine_args)
        accel = default_accelerator(self.config)
        m.submodules.accelerator = ResetInserter(proto.o_accel_reset)(accel)
        m.d.comb += [
            rx.w_data.eq(self.i_rx_data),
            rx.w_en.eq(self.i_rx_we),
            self.o_rx_ready.eq(rx.w_rdy),
            proto.i_rx.payload.eq(rx.r_data),
            proto.i_rx.valid.eq(rx.r_rdy),
            rx.r_en.eq(proto.i_rx.ready),
            tx.w_data.eq(proto.o_tx.payload),
            tx.w_en.eq(proto.o_tx.valid),
            proto.o_tx.ready.eq(tx.w_rdy),
            self.o_tx_data.eq(tx.r_data),
            tx.r_en.eq(self.i_tx_re),
            self.o_tx_valid.eq(tx.r_rdy),
            proto.i_cycles.eq(accel.o_cycles),
            proto.i_argmax.eq(accel.o_argmax),
            proto.i_accel_busy.eq(accel.o_busy),
            proto.i_accel_error.eq(Value.cast(accel.o_error)),
        ]
        wiring.connect(m, proto.o_load, accel.i_load)
        wiring.connect(m, proto.o_input, accel.i_input)
        wiring.connect(m, accel.o_logit, proto.i_logit)
        return m
