"""Compatibility names: the board data now lives in one file per board (see :mod:`boards`)."""
from boards import BOARDS, Board, get_board

__all__ = ["BOARDS", "BoardSpec", "get_board"]

#: The board record (was a separate capacity table before boards became data files).
BoardSpec = Board
