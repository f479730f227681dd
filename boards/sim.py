"""Simulation-only "board": no resource limits beyond the gateware parameters (no bitstream)."""
from boards.board import Board, Clock, Memory, UART

BOARD = Board(
    name="sim", id=0, family="sim", device="verilator",
    description="Verilator simulation (no bitstream)",
    clock=Clock(pin="", osc_hz=12_000_000, design_hz=12_000_000),
    uart=UART(rx="", tx="", baud=3_000_000),
    memory=Memory(bram_blocks=1 << 20, bram_bits=1 << 10, luts=1 << 30, dsps=1 << 20,
                  large_ram_blocks=128, large_ram_words=65536),
    default_pes=4,
)
