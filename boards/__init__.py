"""Boards: capacities (:mod:`boards.registry`) and Amaranth platforms for bitstream builds.

To add a board: add a :class:`boards.registry.BoardSpec` to ``BOARDS`` in ``registry.py``, write
``boards/<name>.py`` with a platform class (subclass of the ``amaranth_boards`` platform, with a
``spec`` attribute), and register it in ``PLATFORMS`` below as ``"module:Class"``.
"""
import importlib

from boards.registry import BOARDS, BoardSpec, get_board

__all__ = ["BOARDS", "BoardSpec", "get_board", "PLATFORMS", "get_platform", "BoardError"]

#: Board name -> "module:Class" of its Amaranth platform (imported on demand).
PLATFORMS = {
    "icebreaker": "boards.icebreaker:ICEBreakerPlatform",
}


class BoardError(ValueError):
    """Unknown board, or a board without an Amaranth platform (e.g. ``sim``)."""


def get_platform(name):
    """The platform class of board ``name``.

    Raises
    ------
    BoardError
        naming the boards that can be built.
    """
    try:
        target = PLATFORMS[name]
    except KeyError:
        known = ", ".join(sorted(PLATFORMS))
        hint = " (a simulation-only board)" if name in BOARDS else ""
        raise BoardError(f"no bitstream platform for board {name!r}{hint}; buildable boards: "
                         f"{known}") from None
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)
