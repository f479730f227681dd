"""Sipeed Tang Primer 20K (GW2A-LV18PG256C8/I7) on its dock: 27 MHz oscillator, the dock's
USB-UART (BL702) on T13 (FPGA rx) / M11 (FPGA tx).

Pins as in ``amaranth_boards.tang_primer_20k`` (dock LEDs L16 / L14, active low; SPI flash on
the MSPI pins cs M9 / clk L10 / cipo P10 / copi R10, released to user logic by gowin_pack's
``--mspi_as_gpio``). 27 MHz runs from the oscillator (no PLL) and divides 3 Mbaud exactly (9
clocks per bit). The model image sits at 2 MiB of the flash, above the bitstream, and is loaded
at power-up.
"""
from boards.board import Board, Clock, Led, Memory, Profile, Programmer, SPIFlash, UART

_LVCMOS33 = {"IO_TYPE": "LVCMOS33"}

BOARD = Board(
    name="tang_primer_20k", id=4, family="gowin", device="GW2A-LV18PG256C8/I7",
    chip="GW2A-18C", description="Sipeed Tang Primer 20K (Gowin GW2A-18)",
    clock=Clock(pin="H11", osc_hz=27_000_000, design_hz=27_000_000, resource="clk27",
                attrs=_LVCMOS33),
    uart=UART(rx="T13", tx="M11", baud=3_000_000, attrs={**_LVCMOS33, "PULL_MODE": "UP"}),
    leds=(Led("led_g", "L16", invert=True, attrs=_LVCMOS33),
          Led("led_r", "L14", invert=True, attrs=_LVCMOS33)),
    flash=SPIFlash(cs_n="M9", clk="L10", copi="R10", cipo="P10", attrs=_LVCMOS33,
                   load_model=True, model_offset=0x200000),
    memory=Memory(bram_blocks=46, bram_bits=18432, luts=20736, dsps=48),
    # the iCEBreaker's lean profile with fixed-width column entries at 8 PEs: a PE is 1,546
    # LUT4 and 5 BSRAM (data 2, pointers 2, accumulators) against 3,600 and 6 with the Huffman
    # decoder (hw.area), so 8 fit where 4 Huffman PEs used 91 % of the logic. The output banks
    # (64 entries, the rows cut to LeNet-300-100) in distributed RAM would take 128 of the
    # 648 RAM16SDP4 sites and the placer found no legal place for them at 94 % of the logic:
    # 3 of the 8 stay in block RAM (46 / 46 BSRAM)
    profile=Profile(fifo_depth=4, input_lanes=1, requant_overlap=False, column_skip=False,
                    pointer_ports=1, stream_words=1, huffman=False, block_ram_banks=3),
    default_pes=8,
    # the bitstream into the flash too (-f), so the board starts with the model at power-up
    programmer=Programmer(board="tangprimer20k", flash=True),
)
