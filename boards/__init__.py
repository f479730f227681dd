"""Boards as data: one file per board (``boards/<name>.py`` defining ``BOARD``).

To add a board of a supported family (``boards.families``), copy a board file of that family and
change its data; it is found by its file name. ``hw.platforms`` turns a board into an Amaranth
platform for bitstream builds; ``hw/families/`` holds the tools of each family.
"""
import importlib
import pkgutil

from boards.board import Board, Clock, Led, Memory, Profile, Programmer, SPIFlash, UART
from boards.families import FAMILIES, get_family_facts

__all__ = ["Board", "Clock", "Led", "Memory", "Profile", "Programmer", "SPIFlash", "UART", "BOARDS",
           "get_board", "board_by_id", "FAMILIES", "get_family_facts"]

#: Modules of this package that are not board files.
_NOT_BOARDS = {"board", "families", "registry"}


def _discover():
    boards = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name in _NOT_BOARDS or info.name.startswith("_"):
            continue
        board = getattr(importlib.import_module(f"{__name__}.{info.name}"), "BOARD", None)
        if not isinstance(board, Board):
            raise TypeError(f"boards/{info.name}.py defines no BOARD = Board(...)")
        if board.name in boards:
            raise ValueError(f"board name {board.name!r} defined twice")
        get_family_facts(board.family)      # a typo in a board file fails here, not in a build
        boards[board.name] = board
    ids = [b.id for b in boards.values()]
    if len(set(ids)) != len(ids):
        raise ValueError(f"board ids are not unique: {sorted(ids)}")
    return dict(sorted(boards.items()))


#: Board name -> :class:`Board`, from the board files.
BOARDS = _discover()


def get_board(name):
    """Return the :class:`Board` called ``name`` (a ``Board`` is returned as is) or raise
    ``ValueError`` listing the choices."""
    if isinstance(name, Board):
        return name
    try:
        return BOARDS[name]
    except KeyError:
        raise ValueError(f"unknown board {name!r}; known boards: {', '.join(BOARDS)}") \
            from None


def board_by_id(board_id):
    """The :class:`Board` whose ``id`` is ``board_id`` (STATUS reports it), or ``None``."""
    return next((b for b in BOARDS.values() if b.id == board_id), None)
