"""Top levels: the UART-attached accelerator core, its simulation wrapper and the board top.

``UARTCore`` is the whole design without pins: UART receiver -> receive FIFO -> protocol engine
-> accelerator, protocol engine -> UART transmitter. ``SimTop`` exposes it with plain ``i_rx`` /
``o_tx`` bit ports for cocotb; ``BoardTop`` requests the UART and LED pins from an Amaranth
platform (``dir="-"`` + ``io.Buffer``) and optionally runs the design from the family's PLL
(``gateware.pll``).
"""
from amaranth import (Module, Signal, ClockDomain, ClockSignal, ResetSignal, Shape, Value,
                      Mux, Instance, Const)
from amaranth.build import ResourceError
from amaranth.hdl import ResetInserter
from amaranth.lib import io, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from gateware.accelerator import Accelerator
from gateware.config import AcceleratorConfig, input_layout
from gateware.flash_loader import FlashLoader
from gateware.pll import PLL, PLLError, ice40_pll_params
from gateware.protocol import ProtocolEngine
from gateware.uart import ByteFIFO, UARTRx, UARTTx, uart_divisor

__all__ = ["TopError", "UARTCore", "SimTop", "BoardTop", "ice40_pll_params",
           "default_accelerator"]


#: ``TopError`` is what the flow tools catch: a PLL that cannot make the clock is one.
TopError = PLLError


def default_accelerator(config):
    """The project's accelerator (``gateware.accelerator.Accelerator``) for ``config``."""
    return Accelerator(config)


class UARTCore(wiring.Component):
    """UART + protocol + accelerator, clocked by ``sync``.

    Parameters
    ----------
    config : AcceleratorConfig
    clock_hz : int
        Frequency of ``sync`` (sets the UART divider and the default frame timeout).
    baud : int
        UART bit rate (8N1).
    accelerator : callable
        ``accelerator(config)`` returns a component with the ports of docs/ARCHITECTURE.md
        section 5 (``i_load``, ``i_input``, ``o_logit``, ``o_argmax``, ``o_busy``, ``o_cycles``,
        ``o_error``).
    timeout, accel_timeout, max_logits :
        Passed to :class:`gateware.protocol.ProtocolEngine`.
    rx_fifo_depth : int
        Bytes buffered between the receiver and the protocol engine (a power of two; one iCE40
        EBR holds 512): the host keeps up to this many request bytes in flight (STATUS
        ``rx_buffer``).
    flash_offset : int or None
        Load the model stored at this byte address of the SPI flash at power-up
        (:class:`gateware.flash_loader.FlashLoader`); ``None``: no flash loader.
    board_id : int
        The board file's ``id`` (STATUS ``board_id``; 0 in simulation).
    input_register : bool
        Put a two-word buffered FIFO (registered output, full rate) between the protocol
        engine's input buffer and the accelerator's ``i_input``, so the buffer's read does not
        reach the central unit's lane scan in the same cycle (the critical path of the ECP5
        builds at 4 and 8 PEs). Same results and cycle counts (``o_cycles`` starts at the
        accelerator); the iCEBreaker build has none (its netlist is the one measured).

    Attributes
    ----------
    i_rx : In(1)
        UART receive line (idle high).
    o_tx : Out(1)
        UART transmit line (idle high).
    o_leds : Out(3)
        bit 0: a model is loaded, bit 1: a frame is being handled, bit 2: the last response was an
        error.
    o_flash_cs_n, o_flash_sclk, o_flash_copi : Out(1)
    i_flash_cipo : In(1)
        SPI flash pins (only with ``flash_offset``).
    """

    def __init__(self, config=AcceleratorConfig(), *, clock_hz=12_000_000, baud=3_000_000,
                 accelerator=default_accelerator, timeout=None, accel_timeout=1 << 24,
                 max_logits=16, rx_fifo_depth=512, flash_offset=None, input_register=False,
                 board_id=0):
        self.config = config
        self.clock_hz = clock_hz
        self.baud = baud
        self.divisor = uart_divisor(clock_hz, baud)
        self.accelerator = accelerator
        self.timeout = timeout
        self.accel_timeout = accel_timeout
        self.max_logits = max_logits
        self.rx_fifo_depth = rx_fifo_depth
        self.input_register = input_register
        self.flash_offset = flash_offset
        self.board_id = board_id
        members = {"i_rx": In(1, init=1), "o_tx": Out(1, init=1), "o_leds": Out(3)}
        if flash_offset is not None:
            members.update({"o_flash_cs_n": Out(1, init=1), "o_flash_sclk": Out(1),
                            "o_flash_copi": Out(1), "i_flash_cipo": In(1)})
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.uart_rx = rx = UARTRx(self.divisor)
        m.submodules.uart_tx = tx = UARTTx(self.divisor)
        m.submodules.rx_fifo = fifo = ByteFIFO(self.rx_fifo_depth)
        m.submodules.protocol = proto = ProtocolEngine(
            self.config, clock_hz=self.clock_hz, divisor=self.divisor, timeout=self.timeout,
            accel_timeout=self.accel_timeout, max_logits=self.max_logits,
            rx_buffer=self.rx_fifo_depth, board_id=self.board_id)
        accel = self.accelerator(self.config)
        m.submodules.accelerator = ResetInserter(proto.o_accel_reset)(accel)

        m.d.comb += [
            rx.i_rx.eq(self.i_rx),
            self.o_tx.eq(tx.o_tx),

            proto.i_rx_frame_error.eq(rx.o_frame_error),
            proto.i_rx_overrun.eq(rx.o_overrun),
            proto.i_cycles.eq(accel.o_cycles),
            proto.i_argmax.eq(accel.o_argmax),
            proto.i_accel_busy.eq(accel.o_busy),
            proto.i_accel_error.eq(Value.cast(accel.o_error)),   # flags may be a struct
            self.o_leds.eq(proto.o_loaded | (proto.o_active << 1) | (proto.o_error << 2)),
        ]
        wiring.connect(m, rx.o_data, fifo.i_data)
        if self.flash_offset is None:
            wiring.connect(m, fifo.o_data, proto.i_rx)
            wiring.connect(m, proto.o_tx, tx.i_data)
        else:
            # At power-up the flash loader feeds the engine the stored LOAD frames and takes
            # its responses (counted, not sent); the UART's bytes wait in the FIFO meanwhile.
            m.submodules.flash = flash = FlashLoader(self.flash_offset)
            booting = flash.o_busy
            m.d.comb += [
                self.o_flash_cs_n.eq(flash.o_cs_n), self.o_flash_sclk.eq(flash.o_sclk),
                self.o_flash_copi.eq(flash.o_copi), flash.i_cipo.eq(self.i_flash_cipo),
                proto.i_rx.payload.eq(Mux(booting, flash.o_rx.payload, fifo.o_data.payload)),
                proto.i_rx.valid.eq(Mux(booting, flash.o_rx.valid, fifo.o_data.valid)),
                fifo.o_data.ready.eq(proto.i_rx.ready & ~booting),
                flash.o_rx.ready.eq(proto.i_rx.ready & booting),
                tx.i_data.payload.eq(proto.o_tx.payload),
                tx.i_data.valid.eq(proto.o_tx.valid & ~booting),
                proto.o_tx.ready.eq(tx.i_data.ready | booting),
                flash.i_resp_done.eq(proto.o_resp_done),
                flash.i_resp_error.eq(proto.o_error),
                flash.i_engine_idle.eq(~proto.o_active),
                proto.i_flash_state.eq(flash.o_state),
            ]
        wiring.connect(m, proto.o_load, accel.i_load)
        if self.input_register:
            # reset with the accelerator: no stale input word survives an accelerator reset
            width = Shape.cast(input_layout(self.config)).width
            m.submodules.input_fifo = in_fifo = ResetInserter(proto.o_accel_reset)(
                SyncFIFOBuffered(width=width, depth=2))
            m.d.comb += [
                in_fifo.w_data.eq(proto.o_input.payload),
                in_fifo.w_en.eq(proto.o_input.valid),
                proto.o_input.ready.eq(in_fifo.w_rdy),
                accel.i_input.payload.eq(in_fifo.r_data),
                accel.i_input.valid.eq(in_fifo.r_rdy),
                in_fifo.r_en.eq(accel.i_input.ready),
            ]
        else:
            wiring.connect(m, proto.o_input, accel.i_input)
        wiring.connect(m, accel.o_logit, proto.i_logit)
        return m


class SimTop(UARTCore):
    """Simulation top: :class:`UARTCore` with ``clk``/``rst`` and the ``i_rx``/``o_tx``/``o_leds``
    ports (cocotb drives ``i_rx`` bit by bit and samples ``o_tx``). Same parameters."""


class BoardTop(wiring.Component):
    """Board top level: pins, clock and :class:`UARTCore`.

    Parameters
    ----------
    config : AcceleratorConfig
        Use ``memory="ice40"`` for the iCE40 SPRAM mapping.
    clock_hz : int or None
        Design clock; ``None`` or the board oscillator frequency runs from the oscillator
        directly, anything else from the family's PLL (``gateware.pll.PLL``: iCE40
        ``SB_PLL40_PAD`` on the clock pin, nextpnr derives the output clock constraint from the
        pin's; ECP5 ``EHXPLLL``).
    baud : int
    accelerator : callable
        See :class:`UARTCore`.
    family : str
        FPGA family of the platform (``"ice40"``, ``"ecp5"``, ``"gowin"``): which PLL.
    flash_offset : int or None
        Load the model image stored at this byte address of the SPI flash at power-up (if the
        platform has a ``spi_flash_1x`` resource; ``contract.protocol.FLASH_OFFSET`` is where
        ``sw.host --program-flash`` writes it); ``None`` (default): no flash loader. A flash
        resource without a ``clk`` pin is clocked through ECP5's ``USRMCLK``. The loader
        costs about 160 logic cells; on the iCEBreaker's LeNet-300-100 build it fits now but
        its stream multiplexer lengthens the load path into the PE memory past the 24 MHz
        clock (docs/PROTOCOL.md, "Cost on the iCEBreaker").
    """

    def __init__(self, config, *, clock_hz=None, baud=3_000_000,
                 accelerator=default_accelerator, family="ice40", flash_offset=None,
                 **core_args):
        self.config = config
        self.family = family
        self.clock_hz = clock_hz
        self.baud = baud
        self.accelerator = accelerator
        self.flash_offset = flash_offset
        self.core_args = core_args
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        osc_hz = int(platform.default_clk_frequency)
        clock_hz = self.clock_hz or osc_hz
        if clock_hz != osc_hz:
            # On the UP5K the PLL's reference must come straight from its pad (pin 35 on the
            # iCEBreaker), so the clock pin is not buffered: the PLL takes the raw port.
            clk_io = platform.request(platform.default_clk, dir="-")
            pll = PLL(self.family, clk_io, osc_hz, clock_hz)
            clock_hz = int(round(pll.out_hz_actual))
            pll.add_to(m)
            pll_clk, lock = pll.clk, pll.lock
            # (nextpnr derives the output clock's constraint from the oscillator pin's through
            # the PLL's settings: SB_PLL40_PAD and EHXPLLL)
            # Hold reset until the PLL locks and then for 15 us (iCE40 BRAMs read zero ~3 us
            # after configuration).
            delay = int(15e-6 * clock_hz)
            m.domains.por = ClockDomain(reset_less=True, local=True)
            m.domains.sync = ClockDomain()
            timer = Signal(range(delay + 1))
            ready = Signal()
            m.d.comb += [ClockSignal("por").eq(pll_clk), ClockSignal("sync").eq(pll_clk)]
            with m.If(~lock):
                m.d.por += [timer.eq(0), ready.eq(0)]
            with m.Elif(timer == delay):
                m.d.por += ready.eq(1)
            with m.Else():
                m.d.por += timer.eq(timer + 1)
            m.d.comb += ResetSignal("sync").eq(~ready)
        self.actual_clock_hz = clock_hz

        flash = None
        if self.flash_offset is not None:
            try:
                flash = platform.request("spi_flash_1x", 0, dir="-")
            except ResourceError:  # the board has no SPI flash resource
                pass
        m.submodules.core = core = UARTCore(
            self.config, clock_hz=clock_hz, baud=self.baud, accelerator=self.accelerator,
            flash_offset=None if flash is None else self.flash_offset, **self.core_args)
        if flash is not None:
            # (cs, wp and hold are active-low pins: their buffers invert)
            outputs = [("cs", ~core.o_flash_cs_n), ("copi", core.o_flash_copi)]
            if hasattr(flash, "clk"):
                outputs.append(("clk", core.o_flash_sclk))
            elif self.family == "ecp5":
                # the flash clock is the configuration clock pin: user logic reaches it only
                # through USRMCLK (output enabled: USRMCLKTS low)
                m.submodules.usrmclk = Instance("USRMCLK", i_USRMCLKI=core.o_flash_sclk,
                                                i_USRMCLKTS=Const(0, 1))
            else:
                raise TopError(f"the SPI flash has no clock pin and the {self.family} family "
                               f"has no primitive for it here")
            outputs += [(name, 0) for name in ("wp", "hold") if hasattr(flash, name)]
            for name, value in outputs:
                m.submodules[f"flash_{name}"] = buf = io.Buffer("o", getattr(flash, name))
                m.d.comb += buf.o.eq(value)
            m.submodules.flash_cipo = cipo = io.Buffer("i", flash.cipo)
            m.d.comb += core.i_flash_cipo.eq(cipo.i)

        uart = platform.request("uart", 0, dir="-")
        m.submodules.rx_buf = rx_buf = io.Buffer("i", uart.rx)
        m.submodules.tx_buf = tx_buf = io.Buffer("o", uart.tx)
        m.d.comb += [core.i_rx.eq(rx_buf.i), tx_buf.o.eq(core.o_tx)]

        leds = []
        for name in ("led_g", "led_r"):
            try:
                leds.append(platform.request(name, 0, dir="-"))
            except ResourceError:  # the board has no such LED
                leds.append(None)
        for i, (led, value) in enumerate(zip(leds, (core.o_leds[0], core.o_leds[2]))):
            if led is not None:
                m.submodules[f"led_buf{i}"] = buf = io.Buffer("o", led)
                m.d.comb += buf.o.eq(value)
        return m
