"""1BitSquared iCEBreaker: iCE40UP5K-SG48, 12 MHz oscillator, FT2232H channel B as the UART.

Pins as in ``amaranth_boards.icebreaker``. Two PEs, the most the 4 SPRAMs allow (each PE's data
and pointer memories take one each), fit the UP5K's 5,280 logic cells with fixed-width column
entries (``huffman=False``, EIE's format: a PE is about 1,050 LUT4, where the Huffman decoder
alone is 1,276; the SPRAMs hold the larger streams easily, LeNet-300-100 takes 18.5k of their 64k
words). With Huffman decoding one PE fits (``--pes 1 --column-code huffman``). The feature
profile spends no logic on what one PE does not need (docs/HARDWARE.md has the measurements:
a 2-deep broadcast FIFO instead of 4 saves 89 logic cells and costs one PE 0.04 % cycles, 1-entry
segment queues instead of 2 save 188 and cost 1.3 %: the board is bound by its UART, not by the
PE; input lanes / requantization overlap / column skip / a second pointer port / 32-bit stream
words cost logic cells or SPRAMs the board does not have). The model is kept in the SPI flash
above the bitstream (``load_model``: the flash loader reads it at power-up, 177 logic cells;
docs/PROTOCOL.md, "Model in flash").
"""
from boards.board import Board, Clock, Led, Memory, Profile, Programmer, SPIFlash, UART

_LVCMOS = {"IO_STANDARD": "SB_LVCMOS"}

BOARD = Board(
    name="icebreaker", id=1, family="ice40", device="iCE40UP5K", package="SG48",
    description="1BitSquared iCEBreaker (iCE40UP5K)",
    # 24 MHz from the PLL: the project's timing target, and 3 Mbaud divides it exactly.
    clock=Clock(pin="35", osc_hz=12_000_000, design_hz=24_000_000, resource="clk12",
                attrs={"GLOBAL": True, **_LVCMOS}),
    uart=UART(rx="6", tx="9", baud=3_000_000, attrs={"IO_STANDARD": "SB_LVTTL", "PULLUP": 1}),
    leds=(Led("led_r", "11", invert=True, attrs=_LVCMOS),
          Led("led_g", "37", invert=True, attrs=_LVCMOS)),
    flash=SPIFlash(cs_n="16", clk="15", copi="14", cipo="17", wp_n="12", hold_n="13",
                   attrs=_LVCMOS, load_model=True),
    memory=Memory(bram_blocks=30, bram_bits=4096, luts=5280, dsps=8, large_ram_blocks=4,
                  large_ram_words=16384),
    profile=Profile(fifo_depth=2, input_lanes=1, requant_overlap=False, column_skip=False,
                    pointer_ports=1, stream_words=1, segment_queue_depth=1, huffman=False),
    default_pes=2,
    programmer=Programmer(board="ice40_generic", flash=True),
)
