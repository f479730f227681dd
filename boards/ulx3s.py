"""Radiona ULX3S with the LFE5U-85F (CABGA381, speed 6): 25 MHz oscillator, FT231X as the UART.

Pins as in ``amaranth_boards.ulx3s`` (clock G2, UART rx M1 / tx L4, LEDs B2 / C2, SPI flash
cs R2 / copi W2 / cipo V2 / wp Y2 / hold W1, its clock the configuration clock through
USRMCLK). The design clock comes from the EHXPLLL; the FT231X makes 3 MHz / n (n = 1, 1.5, 2,
...), so the UART runs at an exact 2 Mbaud: 25 clocks per bit at 50 MHz. The model image sits at
3 MiB of the flash (the uncompressed LFE5U-85F bitstream below it is 2.0 MB: 2,013,491 bytes
for the 4-PE build; the flash has at least 4 MiB) and is loaded at power-up.
"""
from boards.board import Board, Clock, Led, Memory, Profile, Programmer, SPIFlash, UART

_LVCMOS33 = {"IO_TYPE": "LVCMOS33"}

BOARD = Board(
    name="ulx3s", id=2, family="ecp5", device="LFE5U-85F", package="BG381", speed="6",
    description="Radiona ULX3S (ECP5 LFE5U-85F)",
    clock=Clock(pin="G2", osc_hz=25_000_000, design_hz=50_000_000, resource="clk25",
                attrs=_LVCMOS33),
    uart=UART(rx="M1", tx="L4", baud=2_000_000, attrs=_LVCMOS33),
    leds=(Led("led_g", "B2", attrs={**_LVCMOS33, "DRIVE": "4"}),
          Led("led_r", "C2", attrs={**_LVCMOS33, "DRIVE": "4"})),
    flash=SPIFlash(cs_n="R2", clk=None, copi="W2", cipo="V2", wp_n="Y2", hold_n="W1",
                   attrs={**_LVCMOS33, "DRIVE": "4"}, load_model=True, model_offset=0x300000),
    memory=Memory(bram_blocks=208, bram_bits=18432, luts=83640, dsps=156),
    # the simulation defaults with 4 input lanes (the 16-lane scan was the critical path at N = 4
    # and 8); the column skip table works up to 16 PEs (AcceleratorConfig.skip_columns); the
    # skip table's read is registered (its block RAM output was the 4-PE critical path at
    # 49.35 MHz); FIFOs behind the PE outputs (the collector's hand-shake reached into the PEs).
    # 8 PEs by default: placed and routed at 62.02 MHz (42 % of the LUT4s, 71 DP16KD); 16 PEs
    # (hw.area.estimate_pes' answer) place at 84 % of the LUT4s but reach 42.8-46.2 MHz, the
    # critical path moving with the placement (`--pes 16 --freq 40 --router router2`),
    # docs/HARDWARE.md
    profile=Profile(fifo_depth=8, input_lanes=4, requant_overlap=True, column_skip=True,
                    colskip_register=True, output_register=True, pointer_ports=2,
                    stream_words=2),
    default_pes=8,
    # the bitstream into the flash too (-f), so the board starts with the model at power-up
    programmer=Programmer(board="ulx3s", flash=True),
)
