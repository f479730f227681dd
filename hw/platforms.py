"""Amaranth platforms made from board data (``boards/<name>.py``) and the family's flow
(``hw/families/``): the board's clock, UART and LED pins as resources, the family's vendor
platform as the base class."""
from amaranth.build import Attrs, Clock, Pins, PinsN, Resource, Subsignal
from amaranth_boards.resources import SPIFlashResources, UARTResource

from boards import BOARDS, get_board
from hw.families import get_family

__all__ = ["BoardError", "platform_class", "get_platform", "buildable_boards"]


class BoardError(ValueError):
    """Unknown board, or a board without a bitstream flow (e.g. ``sim``)."""


def buildable_boards():
    """Names of the boards with a bitstream flow."""
    return [name for name, b in BOARDS.items() if b.family != "sim"]


def _resources(board):
    clock = board.clock
    resources = [
        Resource(clock.resource, 0, Pins(clock.pin, dir="i"), Clock(clock.osc_hz),
                 Attrs(**clock.attrs)),
        UARTResource(0, rx=board.uart.rx, tx=board.uart.tx, attrs=Attrs(**board.uart.attrs)),
    ]
    for led in board.leds:
        pins = (PinsN if led.invert else Pins)(led.pin, dir="o")
        resources.append(Resource(led.role, 0, pins, Attrs(**led.attrs)))
    if board.flash is not None:
        f = board.flash
        if f.clk is not None:
            resources += SPIFlashResources(0, cs_n=f.cs_n, clk=f.clk, copi=f.copi, cipo=f.cipo,
                                           wp_n=f.wp_n, hold_n=f.hold_n,
                                           attrs=Attrs(**f.attrs))
        else:
            # the clock is the configuration clock pin, reached through a primitive
            # (gateware.top.BoardTop: ECP5 USRMCLK), not a resource
            pins = [Subsignal("cs", PinsN(f.cs_n, dir="o")),
                    Subsignal("copi", Pins(f.copi, dir="o")),
                    Subsignal("cipo", Pins(f.cipo, dir="i"))]
            pins += [Subsignal(name, PinsN(pin, dir="o"))
                     for name, pin in (("wp", f.wp_n), ("hold", f.hold_n)) if pin]
            resources.append(Resource("spi_flash_1x", 0, *pins, Attrs(**f.attrs)))
    return resources


def platform_class(board):
    """The Amaranth platform class of ``board`` (a name or a ``boards.Board``); its ``board``
    attribute is the board data, ``flow`` the :class:`hw.families.Family`."""
    board = get_board(board)
    if board.family == "sim":
        raise BoardError(f"no bitstream platform for board {board.name!r} (a simulation-only "
                         f"board); buildable boards: {', '.join(buildable_boards())}")
    family = get_family(board.family)
    fields = {
        "resources": _resources(board),
        "connectors": [],
        "default_clk": board.clock.resource,
        "board": board,
        "flow": family,
        **family.platform_fields(board),
        **family.platform_overrides(board),
    }
    name = "".join(part.capitalize() for part in board.name.split("_")) + "Platform"
    return type(name, (family.platform_base(),), fields)


def get_platform(name):
    """:func:`platform_class` for a board name.

    Raises
    ------
    BoardError
        naming the boards that can be built.
    """
    try:
        board = get_board(name)
    except ValueError:
        raise BoardError(f"no bitstream platform for board {name!r}; buildable boards: "
                         f"{', '.join(buildable_boards())}") from None
    return platform_class(board)
