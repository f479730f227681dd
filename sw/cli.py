"""One error convention for every command line of the project (``python -m sw.*``, ``hw.*``).

Each tool's ``main(argv=None)`` is decorated with :func:`command`. Bad input (a malformed or
missing model file, a model that does not fit the board, an unknown board, a serial port that
does not answer, a failed tool run) then ends the tool with one line ``error: MESSAGE`` on
stderr and exit status 1, never a traceback. Exit statuses of every tool:

- 0 (:data:`EXIT_OK`): done;
- 1 (:data:`EXIT_ERROR`): an error, told in one ``error:`` line (a message of several lines
  continues on indented lines);
- 2 (:data:`EXIT_USAGE`): the command line itself is wrong (argparse prints the usage);
- 3 (:data:`EXIT_MISMATCH`): the tool ran, but results differ from the golden model
  (``hw.bench``, ``hw.linkbench``, ``sw.host``, ``sw.refdecoder``; ``sw.onnx_export --check``:
  onnxruntime's predictions differ from ``sw.nn``'s).

The module imports nothing of the project, so software and flow tools (``hw/``) share it.
"""
import functools
import sys

__all__ = ["EXIT_OK", "EXIT_ERROR", "EXIT_USAGE", "EXIT_MISMATCH", "ToolError", "ERRORS",
           "error_line", "command", "COLUMN_CODES", "add_column_code", "huffman_of"]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_MISMATCH = 3


class ToolError(Exception):
    """Base of the project's errors that are neither ValueError nor OSError (the host's board
    errors, the build, bench, profile and area tools' errors)."""


#: What a tool reports as an error: the project's errors (``ModelFormatError``, ``PackError``,
#: ``GoldenError``, ``boards.BoardError`` ... are ValueErrors; ``TransportError`` and a missing
#: MNIST set are OSErrors, as is a missing or unreadable file) and :class:`ToolError`.
ERRORS = (ValueError, OSError, ToolError)


def error_line(exc):
    """The ``error: ...`` text of ``exc``: its message (the class name when it has none), a
    message of several lines continued on indented lines."""
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        text = f"{exc.filename}: {exc.strerror}"
    else:
        text = str(exc).strip() or type(exc).__name__
    return "error: " + "\n  ".join(text.splitlines())


def command(main):
    """Decorate a tool's ``main(argv=None) -> int``: an exception of :data:`ERRORS` becomes
    :func:`error_line` on stderr and the return value :data:`EXIT_ERROR`."""
    @functools.wraps(main)
    def run(argv=None):
        try:
            return main(argv)
        except ERRORS as exc:
            sys.stdout.flush()
            print(error_line(exc), file=sys.stderr)
            return EXIT_ERROR
    return run


#: Values of ``--column-code``: how the PEs' columns are stored (docs/ARCHITECTURE.md section 3).
COLUMN_CODES = ("huffman", "fixed")


def add_column_code(parser):
    """Add ``--column-code {huffman,fixed}`` (default ``None``: the board's) to ``parser``; the
    same option on ``sw.pack``, ``hw.build``, ``hw.area``, ``hw.bench`` and ``hw.profile``."""
    parser.add_argument("--column-code", choices=COLUMN_CODES, default=None,
                        help="the PEs decode Huffman-coded columns or fixed-width entries "
                             "(EIE's format: far smaller PEs, more memory); default: the "
                             "board's (Huffman without a board)")


def huffman_of(column_code):
    """``--column-code`` as ``AcceleratorConfig.huffman``: ``True``, ``False``, or ``None``
    when not given."""
    return None if column_code is None else column_code == "huffman"
