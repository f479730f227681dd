"""PLL primitives of the supported FPGA families: settings calculators and instances.

``ice40_pll_params`` / ``ecp5_pll_params`` find divider settings for an output frequency;
:class:`PLL` instantiates the family's primitive (``SB_PLL40_PAD`` on iCE40, ``EHXPLLL`` on
ECP5) on the board's clock pin and gives the output clock and its lock signal.
"""
from amaranth import Signal, Instance, Const
from amaranth.lib import io

__all__ = ["PLLError", "PLL_FAMILIES", "ice40_pll_params", "ecp5_pll_params", "PLL"]

#: Families with a PLL primitive here.
PLL_FAMILIES = ("ice40", "ecp5")


class PLLError(ValueError):
    """No PLL setting makes the requested clock (message names the closest)."""


def _unreachable(family, ref_hz, out_hz, best_hz):
    closest = f" (closest {best_hz / 1e6:.3f} MHz)" if best_hz else ""
    return PLLError(f"the {family} PLL cannot make {out_hz / 1e6:g} MHz from "
                    f"{ref_hz / 1e6:g} MHz{closest}")


def ice40_pll_params(ref_hz, out_hz, tolerance=0.01):
    """``SB_PLL40`` settings (DIVR, DIVF, DIVQ, FILTER_RANGE, achieved Hz) for ``out_hz``.

    Follows the constraints used by icepll: PFD 10..133 MHz, VCO 533..1066 MHz, output 16..275 MHz.

    Raises
    ------
    PLLError
        if no setting is within ``tolerance`` (relative) of ``out_hz``.
    """
    best = None
    for divr in range(16):
        pfd = ref_hz / (divr + 1)
        if not 10e6 <= pfd <= 133e6:
            continue
        for divf in range(128):
            vco = pfd * (divf + 1)
            if not 533e6 <= vco <= 1066e6:
                continue
            for divq in range(1, 7):
                fout = vco / (1 << divq)
                if not 16e6 <= fout <= 275e6:
                    continue
                err = abs(fout - out_hz)
                if best is None or err < best[0]:
                    best = (err, divr, divf, divq, pfd, fout)
    if best is None or best[0] > tolerance * out_hz:
        raise _unreachable("iCE40", ref_hz, out_hz, best and best[5])
    _, divr, divf, divq, pfd, fout = best
    filter_range = next(i for i, lim in enumerate((17e6, 26e6, 44e6, 66e6, 101e6, 1e12), 1)
                        if pfd < lim)
    return divr, divf, divq, filter_range, fout


def ecp5_pll_params(ref_hz, out_hz, tolerance=0.0):
    """``EHXPLLL`` settings (CLKI_DIV, CLKFB_DIV, CLKOP_DIV, achieved Hz) for ``out_hz`` with
    CLKOP fed back (``fout = ref * CLKFB_DIV / CLKI_DIV``, VCO = ``fout * CLKOP_DIV``).

    Follows ecppll's limits: PFD 3.125..400 MHz, VCO 400..800 MHz, output 10..400 MHz. The
    default ``tolerance`` of 0 asks for the exact frequency (the UART divides it exactly).

    Raises
    ------
    PLLError
        if no setting is within ``tolerance`` (relative) of ``out_hz``.
    """
    best = None
    for clki_div in range(1, 129):
        pfd = ref_hz / clki_div
        if not 3.125e6 <= pfd <= 400e6:
            continue
        for clkfb_div in range(1, 81):
            fout = pfd * clkfb_div
            if not 10e6 <= fout <= 400e6:
                continue
            for clkop_div in range(1, 129):
                if 400e6 <= fout * clkop_div <= 800e6:
                    err = abs(fout - out_hz)
                    if best is None or err < best[0]:
                        best = (err, clki_div, clkfb_div, clkop_div, fout)
                    break
    if best is None or best[0] > tolerance * out_hz + 1e-3:
        raise _unreachable("ECP5", ref_hz, out_hz, best and best[4])
    _, clki_div, clkfb_div, clkop_div, fout = best
    return clki_div, clkfb_div, clkop_div, fout


class PLL:
    """The family's PLL on the board's clock pin (:meth:`add_to` puts it into a module as
    submodule ``pll``, so the iCE40 netlist is the one the board was measured with).

    Parameters
    ----------
    family : str
        ``"ice40"`` or ``"ecp5"``.
    clk_port : amaranth.lib.io.PortLike
        The oscillator's pin, requested with ``dir="-"`` (the iCE40UP's PLL must take it straight
        from the pad).
    ref_hz, out_hz : int
        Oscillator and wanted output frequency.

    Attributes
    ----------
    clk : Signal(1)
        Output clock (``out_hz_actual``).
    lock : Signal(1)
        High while the PLL is locked.
    out_hz_actual : float
        The frequency the settings make.
    """

    def __init__(self, family, clk_port, ref_hz, out_hz):
        if family not in PLL_FAMILIES:
            raise PLLError(f"no PLL primitive for the {family} family here (families with one: "
                           f"{', '.join(PLL_FAMILIES)}); run the design from the oscillator")
        self.family = family
        self.clk_port = clk_port
        self.ref_hz = ref_hz
        # (named as the board top's signals were before the PLL moved here: same netlist)
        self.clk = Signal(name="pll_clk")
        self.lock = Signal(name="lock")
        if family == "ice40":
            self._params = ice40_pll_params(ref_hz, out_hz)
            self.out_hz_actual = self._params[-1]
        else:
            self._params = ecp5_pll_params(ref_hz, out_hz)
            self.out_hz_actual = self._params[-1]

    def add_to(self, m):
        """Add the primitive (and the ECP5's input buffer) to module ``m``."""
        if self.family == "ice40":
            divr, divf, divq, filter_range, _ = self._params
            m.submodules.pll = Instance(
                "SB_PLL40_PAD",
                p_FEEDBACK_PATH="SIMPLE", p_PLLOUT_SELECT="GENCLK",
                p_DIVR=divr, p_DIVF=divf, p_DIVQ=divq, p_FILTER_RANGE=filter_range,
                i_PACKAGEPIN=self.clk_port.io, i_RESETB=Const(1), i_BYPASS=Const(0),
                o_PLLOUTGLOBAL=self.clk, o_LOCK=self.lock,
            )
            return
        clki_div, clkfb_div, clkop_div, fout = self._params
        m.submodules.pll_clk_buf = clk_buf = io.Buffer("i", self.clk_port)
        m.submodules.pll = Instance(
            "EHXPLLL",
            a_FREQUENCY_PIN_CLKI=f"{self.ref_hz / 1e6:g}",
            a_FREQUENCY_PIN_CLKOP=f"{fout / 1e6:g}",
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
            a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
            p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
            p_CLKI_DIV=clki_div, p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=clkop_div,
            p_CLKOP_CPHASE=clkop_div // 2, p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP",
            p_CLKFB_DIV=clkfb_div,
            i_RST=Const(0), i_STDBY=Const(0), i_CLKI=clk_buf.i, i_CLKFB=self.clk,
            i_PHASESEL0=Const(0), i_PHASESEL1=Const(0), i_PHASEDIR=Const(1),
            i_PHASESTEP=Const(1), i_PHASELOADREG=Const(1), i_PLLWAKESYNC=Const(0),
            i_ENCLKOP=Const(0),
            o_CLKOP=self.clk, o_LOCK=self.lock,
        )
