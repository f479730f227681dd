"""1BitSquared iCEBreaker (iCE40UP5K-SG48): the Amaranth platform for bitstream builds.

Pins come from ``amaranth_boards.icebreaker`` (UART on the FT2232H channel B: rx pin 6, tx pin 9;
red/green user LEDs); capacities come from ``boards.registry`` (``get_board("icebreaker")``).
The break-off PMOD's LEDs are added as ``led`` 2..6 when ``break_off_pmod=True``.
"""
from amaranth_boards.icebreaker import ICEBreakerPlatform as _ICEBreakerPlatform

from boards.registry import get_board

__all__ = ["ICEBreakerPlatform"]


class ICEBreakerPlatform(_ICEBreakerPlatform):
    """iCEBreaker platform with the project's board data.

    Parameters
    ----------
    break_off_pmod : bool
        Also declare the LEDs and buttons of the break-off PMOD (PMOD2).
    toolchain : str
        ``"IceStorm"`` (yosys + nextpnr-ice40 + icepack, default) or ``"iCECube2"``.

    Attributes
    ----------
    spec : boards.registry.BoardSpec
        Capacities (PE count, SPRAM/EBR, LUTs, clock).
    """
    spec = get_board("icebreaker")

    def __init__(self, *, break_off_pmod=False, toolchain="IceStorm"):
        super().__init__(toolchain=toolchain)
        if break_off_pmod:
            self.add_resources(self.break_off_pmod)
