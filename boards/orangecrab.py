"""Good Stuff Department OrangeCrab r0.2 with the LFE5U-25F (CSFBGA285, speed 8): 48 MHz
oscillator; USB goes to the FPGA, so the UART is on the Feather header (pin 0 = FPGA rx N17,
pin 1 = FPGA tx M18) for a 3.3 V USB-UART cable.

Pins as in ``amaranth_boards.orangecrab_r0_2`` (clock A9, RGB LED: green M3, red K4, active low).
The design clock comes from the EHXPLLL: 48 MHz, 16 clocks per bit at 3 Mbaud (10 PEs place
and route at 67 MHz).
"""
from boards.board import Board, Clock, Led, Memory, Profile, Programmer, UART

_LVCMOS33 = {"IO_TYPE": "LVCMOS33"}

BOARD = Board(
    name="orangecrab", id=3, family="ecp5", device="LFE5U-25F", package="MG285", speed="8",
    description="OrangeCrab r0.2 (ECP5 LFE5U-25F)",
    clock=Clock(pin="A9", osc_hz=48_000_000, design_hz=48_000_000, resource="clk48",
                attrs=_LVCMOS33),
    uart=UART(rx="N17", tx="M18", baud=3_000_000, attrs=_LVCMOS33),
    leds=(Led("led_g", "M3", invert=True, attrs=_LVCMOS33),
          Led("led_r", "K4", invert=True, attrs=_LVCMOS33)),
    memory=Memory(bram_blocks=56, bram_bits=18432, luts=24288, dsps=28),
    # fixed-width column entries (a PE 5 DP16KD: data 2, pointers 2, accumulators), the
    # output banks in distributed RAM, and 4 input lanes: 10 PEs, 53 of the 56 DP16KD (a PE
    # 2 of the 28 DSPs: the row numbers local * N + PE take none since the PEs report local
    # rows)
    profile=Profile(fifo_depth=4, input_lanes=4, requant_overlap=False, column_skip=False,
                    pointer_ports=1, stream_words=1, huffman=False),
    default_pes=10,
    # the DFU bootloader (hold the button while plugging in)
    programmer=Programmer(board="orangecrab"),
)
