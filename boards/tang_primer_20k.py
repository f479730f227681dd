"""Sipeed Tang Primer 20K (GW2A-LV18PG256C8/I7) on its dock: 27 MHz oscillator, the dock's
USB-UART (BL702) on T13 (FPGA rx) / M11 (FPGA tx).

Pins as in ``amaranth_boards.tang_primer_20k`` (dock LEDs L16 / L14, active low). 27 MHz runs
from the oscillator (no PLL) and divides 3 Mbaud exactly (9 clocks per bit).
"""
from boards.board import Board, Clock, Led, Memory, Profile, Programmer, UART

_LVCMOS33 = {"IO_TYPE": "LVCMOS33"}

BOARD = Board(
    name="tang_primer_20k", id=4, family="gowin", device="GW2A-LV18PG256C8/I7",
    chip="GW2A-18C", description="Sipeed Tang Primer 20K (Gowin GW2A-18)",
    clock=Clock(pin="H11", osc_hz=27_000_000, design_hz=27_000_000, resource="clk27",
                attrs=_LVCMOS33),
    uart=UART(rx="T13", tx="M11", baud=3_000_000, attrs={**_LVCMOS33, "PULL_MODE": "UP"}),
    leds=(Led("led_g", "L16", invert=True, attrs=_LVCMOS33),
          Led("led_r", "L14", invert=True, attrs=_LVCMOS33)),
    memory=Memory(bram_blocks=46, bram_bits=18432, luts=20736, dsps=48),
    profile=Profile(fifo_depth=4, input_lanes=4, requant_overlap=True, column_skip=True,
                    pointer_ports=2, stream_words=1),
    default_pes=8,
    programmer=Programmer(board="tangprimer20k"),
)
