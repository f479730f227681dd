"""Host runtime: talk to the accelerator board over the framed UART protocol (docs/PROTOCOL.md).

:class:`Board` wraps one :class:`sw.transport.Transport` with plain methods (``status``, ``load``,
``upload``, ``infer``); :func:`run_benchmark` streams test images and compares every result with
``sw.golden``. The same code drives a real board (``SerialTransport``) and the simulated one
(``SimTransport``, see ``tb/top``).

Command line::

    python -m sw.host --port /dev/ttyUSB1 [--baud 3000000] [--model models/lenet300.npz]
                      [--images 100] [--dense | --one-at-a-time]

The serial transport lowers the FTDI latency timer to 1 ms where it can (Linux sysfs,
``sw.transport.lower_latency_timer``) and says so; images are streamed as coded requests with
several in flight (``Board.infer_stream``).
"""
import argparse
import struct
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from boards import BOARDS, board_by_id, get_board
from contract.memmap import colskip_mem, colskip_table_words, pointer_mem, shared_mem
from contract.protocol import (ERROR_NAMES, FLASH_OFFSET, FLASH_STATES, PROTOCOL_VERSION, SOF,
                               STATUS_FIELDS, STATUS_FLAGS, STATUS_LENGTH, Cmd, Err, Resp, crc16,
                               encode_frame)
from contract.widths import WIDTH_KEYS
from sw import incode
from sw.cli import EXIT_MISMATCH, EXIT_OK, ToolError, command
from sw.flashimage import flash_image, load_runs as _runs
from sw.loader import LoaderError, flash_image_command, run_loader
from sw.golden import IntModel, ideal_cycles, images_to_uint8, infer, load_mnist
from sw.modelfile import load_model
from sw.pack import PackError, PackLimits, fmap_words, pack
from sw.transport import SerialTransport, TransportTimeout

__all__ = ["HostError", "BoardError", "BadFrameError", "BoardTimeout", "InputLengthError",
           "ModelFitError", "BoardStatus", "Inference", "Board", "check_fit", "pack_for_board",
           "board_of_status", "run_benchmark", "coded_payload", "parse_result", "program_flash",
           "build_parser", "main"]


class HostError(ToolError):
    """Base class of host runtime errors."""


class BoardError(HostError):
    """The board answered with an ERROR frame.

    Attributes
    ----------
    code : int
        One of :class:`contract.protocol.Err`.
    cmd : int
        The command the board was handling.
    detail : int
        Accelerator error flags at the time.
    """

    def __init__(self, code, cmd, detail=0):
        self.code, self.cmd, self.detail = code, cmd, detail
        name = ERROR_NAMES.get(code, f"unknown error code 0x{code:02x}")
        super().__init__(f"board error 0x{code:02x} ({name}) for command 0x{cmd:02x}"
                         + (f", accelerator flags 0x{detail:02x}" if detail else ""))


class BadFrameError(HostError):
    """A response frame was malformed (bad checksum, unexpected type or length)."""


class BoardTimeout(HostError):
    """The board did not answer in time."""


class InputLengthError(HostError):
    """An input vector does not match the model's input size or value range."""


class ModelFitError(HostError):
    """The model needs more than the board's gateware provides."""


_STATUS_STRUCT = "<" + "".join({1: "B", 2: "H", 4: "I"}[n] for _, n in STATUS_FIELDS)
assert struct.calcsize(_STATUS_STRUCT) == STATUS_LENGTH


@dataclass
class BoardStatus:
    """Decoded STATUS payload (fields of ``contract.protocol.STATUS_FIELDS`` plus decoded flags)."""
    fields: dict

    def __getattr__(self, name):
        try:
            return self.__dict__["fields"][name]
        except KeyError:
            raise AttributeError(name) from None

    def flag(self, name):
        """Value of one ``STATUS_FLAGS`` bit."""
        return bool((self.fields["flags"] >> STATUS_FLAGS[name]) & 1)

    @property
    def pe_mem_depth(self):
        return 1 << self.fields["pe_mem_log2"]

    @property
    def column_code(self):
        """How the gateware reads the columns: ``"huffman"``, or ``"fixed"`` (fixed-width
        entries) when it reports no symbol table (STATUS ``symbol_depth`` 0)."""
        return "huffman" if self.fields.get("symbol_depth", 1) else "fixed"

    def summary(self):
        f = self.fields
        return (f"protocol v{f['version']}, {f['n_pes']} PEs, A{f['act_bits']}/W{f['weight_bits']}"
                f"/ACC{f['acc_bits']}, idx {f['idx_bits']} gap {f['gap_bits']} bits, "
                f"{self.pe_mem_depth} words/PE, {f['clock_hz'] / 1e6:g} MHz, "
                f"divider {f['divisor']}, in_features {f['in_features']}, "
                f"flags 0x{f['flags']:02x}, receive buffer {f.get('rx_buffer', 0)} bytes, "
                f"flash: {FLASH_STATES.get(f.get('flash', 0), 'unknown state')}, "
                f"feature maps: {self.fmap_summary}, columns: "
                + ("Huffman-coded" if self.column_code == "huffman" else "fixed-width entries")
                + f", board id {f.get('board_id', 0)}")

    @property
    def fmap_summary(self):
        """The feature-map buffers (STATUS ``fmap_depth``) in words."""
        depth = self.fields.get("fmap_depth", 0)
        return f"{depth} words per bank" if depth else "none (fc layers only)"


@dataclass
class Inference:
    """One RESULT frame.

    Attributes
    ----------
    logits : numpy.ndarray
        int64 final-layer accumulators.
    prediction : int
        Argmax computed by the board (lowest index on ties).
    cycles : int
        Accelerator clock cycles of this inference.
    seq : int
        The request's sequence byte as echoed by the board (INFER_CODED; 0x80 otherwise).
    """
    logits: np.ndarray
    prediction: int
    cycles: int
    seq: int = 0


class Board:
    """Host-side interface to one board.

    Parameters
    ----------
    transport : sw.transport.Transport
    retries : int
        Resends of a frame after a transient error (checksum, truncation, busy, timeout).
    block_words : int
        Words per LOAD frame.
    board_timeout : float
        The gateware's idle timeout inside a frame (s); after a host-side timeout the host waits
        this long so the board resynchronises before retrying.
    """
    TRANSIENT = (Err.BAD_CRC, Err.TIMEOUT, Err.BUSY, Err.FRAMING)

    def __init__(self, transport, *, retries=2, block_words=256, board_timeout=0.06):
        self.t = transport
        self.retries = retries
        self.block_words = block_words
        self.board_timeout = board_timeout
        self._status = None

    # ---- frames --------------------------------------------------------------------------
    def _timeout(self, n_out, n_in, compute=0.0):
        return self.t.latency + compute + 2.0 * (n_out + n_in + 16) * 10 / self.t.baud

    def _read_frame(self, timeout):
        try:
            skipped = 0
            while True:
                b = self.t.read(1, timeout)[0]
                if b == SOF:
                    break
                skipped += 1
                if skipped > 4096:
                    raise BadFrameError("no start-of-frame byte in 4096 received bytes")
            head = self.t.read(3, timeout)
            length = head[1] | head[2] << 8
            rest = self.t.read(length + 2, timeout)
        except TransportTimeout as exc:
            raise BoardTimeout(f"no complete response from the board: {exc}") from None
        body = head + rest[:length]
        crc = rest[length] << 8 | rest[length + 1]
        if crc16(body) != crc:
            raise BadFrameError(f"response checksum mismatch (got 0x{crc:04x}, computed "
                                f"0x{crc16(body):04x}) for response type 0x{head[0]:02x}")
        return head[0], bytes(rest[:length])

    def exchange(self, cmd, payload=b"", expect=None, resp_len=64, compute=0.0):
        """Send one frame and return the response payload.

        Retries transient failures ``retries`` times.

        Raises
        ------
        BoardError
            for an ERROR response that persists (or is not transient).
        BadFrameError, BoardTimeout
            when the link keeps failing.
        """
        frame = encode_frame(cmd, payload)
        timeout = self._timeout(len(frame), resp_len, compute)
        for attempt in range(self.retries + 1):
            final = attempt == self.retries
            self.t.write(frame)
            try:
                code, body = self._read_frame(timeout)
            except (BoardTimeout, BadFrameError):
                if final:
                    raise
                self._resync()
                continue
            if code == Resp.ERROR:
                if len(body) != 3:
                    raise BadFrameError(f"ERROR frame with {len(body)} payload bytes (expected 3)")
                err = BoardError(body[0], body[1], body[2])
                if body[0] in self.TRANSIENT and not final:
                    self._resync()
                    continue
                raise err
            if expect is not None and code != expect:
                raise BadFrameError(f"expected response 0x{expect:02x} to command 0x{cmd:02x}, "
                                    f"got 0x{code:02x}")
            return body
        raise AssertionError("unreachable")

    def _resync(self):
        """Let the board's frame timeout expire and drop stale bytes."""
        self.t.sleep(self.board_timeout)
        self.t.flush_input()

    # ---- commands ------------------------------------------------------------------------
    def status(self):
        """PING: the board's parameters and flags (:class:`BoardStatus`).

        The PING carries the host's protocol version, which the board checks.

        Raises
        ------
        BoardError
            ``Err.VERSION`` (or ``BAD_LENGTH`` from a board older than version 4) if the board
            speaks another protocol version.
        """
        try:
            body = self.exchange(Cmd.PING, bytes([PROTOCOL_VERSION]), expect=Resp.STATUS)
        except BoardError as exc:
            if exc.code == Err.BAD_LENGTH:
                raise BoardError(Err.VERSION, Cmd.PING) from None  # a board before version 4
            raise
        if len(body) != STATUS_LENGTH:
            raise BadFrameError(f"STATUS payload has {len(body)} bytes, expected {STATUS_LENGTH}")
        values = struct.unpack(_STATUS_STRUCT, body)
        self._status = BoardStatus(dict(zip((n for n, _ in STATUS_FIELDS), values)))
        return self._status

    def reset(self):
        """Reset the accelerator (memories keep their contents)."""
        self.exchange(Cmd.RESET, expect=Resp.ACK)

    def load(self, mem, addr, words):
        """Write ``words`` (16-bit) to memory ``mem`` from word ``addr`` on (one or more frames)."""
        words = np.asarray(words, dtype=np.int64).ravel()
        if words.size and (words.min() < -32768 or words.max() > 0xFFFF):
            raise ValueError("load words must fit 16 bits")
        if not 0 <= mem <= 255 or not 0 <= addr or addr + len(words) > 65536:
            raise ValueError(f"memory {mem} address range {addr}..{addr + len(words)} invalid")
        self._status = None          # a load may change the model (in_features)
        for start in range(0, len(words), self.block_words):
            block = words[start:start + self.block_words] & 0xFFFF
            payload = struct.pack("<BH", mem, addr + start) + block.astype("<u2").tobytes()
            body = self.exchange(Cmd.LOAD, payload, expect=Resp.ACK, resp_len=8)
            if len(body) != 2 or struct.unpack("<H", body)[0] != len(block):
                raise BadFrameError(f"LOAD acknowledged {body!r}, expected {len(block)} words")

    def upload(self, packed, progress=None):
        """Write every word of ``packed`` (``sw.pack.PackedImages``); returns the word count.

        Consecutive addresses of one memory go out in one block; ``progress(done, total)`` is
        called after each block.
        """
        runs = _runs(packed.load_words())
        total = sum(len(w) for _, _, w in runs)
        done = 0
        for mem, addr, words in runs:
            for start in range(0, len(words), self.block_words):
                chunk = words[start:start + self.block_words]
                self.load(mem, addr + start, chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
        return total

    def _check_input(self, x):
        st = self._status or self.status()
        x = np.asarray(x).ravel()
        if x.size != st.in_features:
            raise InputLengthError(f"input has {x.size} values, the loaded model takes "
                                   f"{st.in_features}" if st.in_features else
                                   "no model is loaded on the board (in_features = 0)")
        if x.size and (x.min() < 0 or x.max() > min(255, (1 << st.act_bits) - 1)):
            raise InputLengthError(f"input values must be 0..{min(255, (1 << st.act_bits) - 1)}")
        return x

    def infer(self, x, sparse=None, coded=False):
        """Run one inference on ``x`` (``in_features`` unsigned activations).

        Parameters
        ----------
        sparse : bool or None
            Send (index, value) pairs of the non-zero values (INFER_SPARSE) or every value
            (INFER_DENSE); ``None`` picks the shorter frame.
        coded : bool
            Send the coded input (INFER_CODED, ``sw.incode``; full logits requested) instead.

        Raises
        ------
        InputLengthError
            if ``x`` has the wrong length or values outside 0..255.
        """
        x = self._check_input(x)
        if coded:
            cmd, payload = Cmd.INFER_CODED, coded_payload(x, 0, logits=True)
        else:
            nz = np.flatnonzero(x)
            if sparse is None:
                sparse = 3 * len(nz) < len(x)
            if sparse:
                payload = b"".join(struct.pack("<HB", int(i), int(x[i])) for i in nz)
                cmd = Cmd.INFER_SPARSE
            else:
                payload = x.astype(np.uint8).tobytes()
                cmd = Cmd.INFER_DENSE
        body = self.exchange(cmd, payload, expect=Resp.RESULT, resp_len=4 * 256 + 7,
                             compute=self.t.latency)
        return parse_result(body)

    def infer_stream(self, images, logits=True, window=None):
        """Infer every image of ``images`` with several coded requests in flight.

        Requests (INFER_CODED, a sequence number each) are sent while the bytes not yet
        answered fit the board's receive buffer (STATUS ``rx_buffer``, or ``window`` bytes),
        so the line to the board stays busy while the board computes and answers. Responses
        come back in order and carry the sequence number, which is checked. A transient error
        (checksum, BUSY, truncation) or a lost response makes the host wait out the board's
        frame timeout, drop what it received and resend every request not yet answered.

        Parameters
        ----------
        images : array_like
            ``(n, in_features)`` unsigned activations.
        logits : bool
            Ask for the logits (RESULT with ``n`` logits) or only the prediction and the cycles
            (the compact RESULT, ``n = 0``; :attr:`Inference.logits` is then empty).
        window : int or None
            Bytes in flight (default: the board's receive buffer).

        Returns
        -------
        list of Inference
        """
        st = self._status or self.status()
        images = [self._check_input(x) for x in images]
        window = st.fields.get("rx_buffer", 0) if window is None else window
        frames = [encode_frame(Cmd.INFER_CODED, coded_payload(x, i & 0x7F, logits))
                  for i, x in enumerate(images)]
        too_long = [i for i, f in enumerate(frames) if len(f) > window]
        if too_long:
            raise InputLengthError(f"image {too_long[0]} codes to {len(frames[too_long[0]])} "
                                   f"bytes, more than the board's receive buffer of {window}")
        results = [None] * len(frames)
        attempts = [0] * len(frames)
        resp_len = 4 * st.max_logits + 7 if logits else 7
        timeout = self._timeout(max(len(f) for f in frames) if frames else 0, resp_len,
                                self.t.latency)
        pending = deque()               # indices sent and not answered, in order
        in_flight = 0
        todo = deque(range(len(frames)))
        while todo or pending:
            # Fill the window (at least one request is always in flight).
            while todo and (not pending or in_flight + len(frames[todo[0]]) <= window):
                i = todo.popleft()
                self.t.write(frames[i])
                pending.append(i)
                in_flight += len(frames[i])
            i = pending.popleft()
            in_flight -= len(frames[i])
            failure = None
            try:
                code, body = self._read_frame(timeout)
            except (BoardTimeout, BadFrameError) as exc:
                failure = exc
            else:
                if code == Resp.ERROR:
                    if len(body) != 3:
                        failure = BadFrameError(f"ERROR frame with {len(body)} payload bytes")
                    else:
                        failure = BoardError(body[0], body[1], body[2])
                        if body[0] not in self.TRANSIENT:
                            raise failure
                elif code != Resp.RESULT:
                    failure = BadFrameError(f"expected RESULT, got response 0x{code:02x}")
                else:
                    r = parse_result(body)
                    if r.seq != (i & 0x7F) | (0x80 if logits else 0):
                        failure = BadFrameError(f"RESULT for request {r.seq & 0x7F} while "
                                                f"waiting for {i & 0x7F} (a response was lost)")
                    else:
                        results[i] = r
            if failure is not None:
                attempts[i] += 1
                if attempts[i] > self.retries:
                    raise failure
                # Resend everything not yet answered, in order, after the board resynchronised.
                todo.extendleft(reversed([i, *pending]))
                pending.clear()
                in_flight = 0
                self._resync()
        return results


def coded_payload(x, seq, logits=True):
    """INFER_CODED payload: the sequence byte (``seq`` 0..127, bit 7 asks for the logits) and
    the tokens of ``sw.incode``."""
    if not 0 <= seq <= 0x7F:
        raise ValueError(f"sequence number must be 0..127, not {seq}")
    return bytes([seq | (0x80 if logits else 0)]) + incode.encode(x)


def parse_result(body):
    """:class:`Inference` from a RESULT payload ``seq u8, n u8, logit i32 * n, argmax u8,
    cycles u32``."""
    if len(body) < 7 or len(body) != 4 * body[1] + 7:
        raise BadFrameError(f"RESULT payload of {len(body)} bytes is inconsistent")
    n = body[1]
    logits = np.frombuffer(body[2:2 + 4 * n], dtype="<i4").astype(np.int64)
    pred, cycles = struct.unpack("<BI", body[2 + 4 * n:])
    return Inference(logits, pred, cycles, body[0])


def check_fit(status, int_model, packed):
    """Raise :class:`ModelFitError` if ``int_model``/``packed`` exceed the board's gateware."""
    problems = []
    if status.version != PROTOCOL_VERSION:
        problems.append(f"the gateware speaks protocol version {status.version}, this host "
                        f"{PROTOCOL_VERSION} (different memory layout): rebuild the bitstream")
    for name in WIDTH_KEYS:
        if getattr(int_model, name) != status.fields[name]:
            problems.append(f"{name} is {getattr(int_model, name)} in the model, "
                            f"{status.fields[name]} in the gateware")
    if len(int_model.layers) > status.max_layers:
        problems.append(f"{len(int_model.layers)} layers > {status.max_layers}")
    widest = max(max(l.in_features, l.out_features) for l in int_model.layers)
    if widest > status.max_features:
        problems.append(f"a layer has {widest} features > {status.max_features}")
    if int_model.out_features > status.max_logits:
        problems.append(f"{int_model.out_features} outputs > result buffer of "
                        f"{status.max_logits}")
    board_code = status.column_code
    packed_code = getattr(packed, "manifest", {}).get("column_code", "huffman")
    if packed_code != board_code:
        problems.append(f"the images hold {packed_code} columns, the board's gateware decodes "
                        f"{board_code} ones (pack for the board: sw.pack --board, or "
                        f"--column-code {board_code})")
    n = status.n_pes
    images = getattr(packed, "images", {})
    for mem, image in images.items():
        mem = int(mem)
        if mem < n and len(image) > status.pe_mem_depth:
            problems.append(f"PE {mem} image has {len(image)} words > {status.pe_mem_depth}")
        if pointer_mem(n, 0) <= mem < pointer_mem(n, n) and len(image) > status.pe_mem_depth:
            problems.append(f"PE {mem - pointer_mem(n, 0)} pointer image has {len(image)} words "
                            f"> {status.pe_mem_depth}")
        if mem == shared_mem(n, "huff_symbols") and len(image) > status.symbol_depth:
            problems.append(f"{len(image)} Huffman symbols > {status.symbol_depth}")
        skip_cap = colskip_table_words(n, status.max_layers, status.max_features)
        if mem == colskip_mem(n) and len(image) > skip_cap:
            problems.append(f"column skip table of {len(image)} words > {skip_cap}")
        if mem > colskip_mem(n):
            problems.append(f"memory id {mem} does not exist with {n} PEs "
                            f"(packed for more PEs?)")
    if problems:
        raise ModelFitError("the model does not fit the board: " + "; ".join(problems))


def pack_for_board(status, int_model, board="icebreaker"):
    """Pack ``int_model`` for the gateware described by ``status`` (its PE count and limits).

    Raises
    ------
    ModelFitError
        if the packer refuses the model (too large for the memories, too many layers...) or
        the result exceeds the board (:func:`check_fit`).
    """
    # the feature-map banks the gateware has (STATUS fmap_depth; 0: fc layers only)
    fmap, fmap_depth = fmap_words(int_model, status.n_pes), status.fields["fmap_depth"]
    if fmap and not fmap_depth:
        raise ModelFitError("the model has conv layers but the board's gateware has no "
                            "feature-map buffers (fc layers only): build it for the model "
                            "(python -m hw.build --model ...)")
    if fmap > fmap_depth:
        raise ModelFitError(f"the model's feature maps need {fmap} words per bank on "
                            f"{status.n_pes} PEs; the board's gateware has {fmap_depth} "
                            f"(build it for the model: python -m hw.build --model ...)")
    limits = PackLimits(max_layers=status.max_layers, max_rows_per_pe=status.max_rows_per_pe,
                        max_features=status.max_features, symbol_depth=status.symbol_depth,
                        max_logits=status.max_logits, pe_mem_words=status.pe_mem_depth,
                        fmap_depth=fmap_depth, huffman=status.column_code == "huffman",
                        **{k: status.fields[k] for k in WIDTH_KEYS})
    try:
        # Balanced rows are faster; they can need more joint symbols than the neuron order
        # (different gaps), so a board with a small symbol table gets the unbalanced packing.
        try:
            packed = pack(int_model, status.n_pes, board=board, limits=limits, balance=True)
        except PackError:
            packed = pack(int_model, status.n_pes, board=board, limits=limits)
    except PackError as exc:
        raise ModelFitError(f"the model does not fit the board: {exc}") from None
    check_fit(status, int_model, packed)
    return packed


@dataclass
class BenchmarkResult:
    """Outcome of :func:`run_benchmark`."""
    n: int
    correct: int
    mismatches: int
    seconds: float
    cycles: list
    ideal: list
    labelled: bool = True

    @property
    def accuracy(self):
        return self.correct / max(self.n, 1)

    def summary(self):
        cyc = np.asarray(self.cycles, dtype=np.float64)
        ideal = np.asarray(self.ideal, dtype=np.float64)
        text = f"{self.n} images: "
        if self.labelled:
            text += f"accuracy {100 * self.accuracy:.2f} %, "
        text += (f"{self.mismatches} mismatches vs sw.golden, "
                f"{self.n / max(self.seconds, 1e-9):.1f} inferences/s over the link")
        if len(cyc):
            text += (f", {cyc.mean():.0f} accelerator cycles/inference "
                     f"(ideal {ideal.mean():.0f}, ratio {cyc.sum() / max(ideal.sum(), 1):.3f})")
        return text


def run_benchmark(board, int_model, images, labels=None, n_pes=None, log=None, sparse=None,
                  stream=False, window=None):
    """Infer ``images`` (uint8 ``(n, in)``) on the board and compare with ``sw.golden``.

    ``stream`` sends coded requests with several in flight (:meth:`Board.infer_stream`, logits
    requested); otherwise one request at a time (``sparse`` as in :meth:`Board.infer`). The time
    is the transport's clock (simulated time in simulation).

    Returns
    -------
    BenchmarkResult
        ``mismatches`` counts images whose logits or prediction differ from the golden model.
    """
    images = np.asarray(images)
    golden = infer(int_model, images, trace="inputs")
    ideal = ideal_cycles(int_model, images, n_pes or board.status().n_pes, result=golden).ideal
    board.status()                      # not timed
    start = board.t.now()
    if stream:
        results = board.infer_stream(images, logits=True, window=window)
    else:
        results = [board.infer(x, sparse=sparse) for x in images]
    seconds = board.t.now() - start
    correct = mismatches = 0
    cycles = []
    for i, r in enumerate(results):
        same = np.array_equal(r.logits, golden.logits[i]) and r.prediction == golden.prediction[i]
        if not same:
            mismatches += 1
            if log:
                log(f"image {i}: board {r.logits.tolist()} (argmax {r.prediction}) != golden "
                    f"{golden.logits[i].tolist()} (argmax {golden.prediction[i]})")
        if labels is not None and r.prediction == labels[i]:
            correct += 1
        cycles.append(r.cycles)
    return BenchmarkResult(len(images), correct, mismatches, seconds, cycles,
                           list(np.asarray(ideal).tolist()), labels is not None)


def board_of_status(status, name=None):
    """The ``boards.Board`` the host packs for.

    STATUS ``board_id`` (protocol 6) names the board file the gateware was built for; 0 (a
    simulation top) falls back to the design clock and UART divisor (``clock_hz``,
    ``divisor``), which differ between the board files at their default clocks. ``name``
    (``--board``) overrides (it must agree with a non-zero ``board_id``); a STATUS that matches
    no board file, or several, needs it (``HostError``).
    """
    fields = status.fields
    if fields.get("board_id"):
        reported = board_by_id(fields["board_id"])
        if reported is None and name is None:
            raise HostError(f"the board reports an unknown board id {fields['board_id']}; "
                            f"pass --board")
        if name is not None and reported is not None and reported.name != name:
            raise HostError(f"--board {name} but the board reports {reported.name}")
        return get_board(name) if name is not None else reported
    if name is not None:
        return get_board(name)
    clock, divisor = fields.get("clock_hz"), fields.get("divisor")
    matches = [b for b in BOARDS.values() if b.family != "sim" and b.clock.design_hz == clock
               and b.clock.design_hz // b.uart.baud == divisor]
    if len(matches) != 1:
        which = ", ".join(b.name for b in matches) or "none"
        raise HostError(f"cannot tell the board from STATUS ({clock / 1e6:g} MHz, divisor "
                        f"{divisor}: {which} of the board files match); pass --board")
    return matches[0]


def program_flash(path, board, offset=None, run=subprocess.run):
    """Write the flash image ``path`` into ``board``'s SPI flash at ``offset`` (default: the
    board's model offset, ``SPIFlash.model_offset``) with openFPGALoader (``sw.loader``; the
    bitstream at 0 is kept); returns the command line.

    Raises
    ------
    HostError
        the board has no flash its programmer can write at an offset, or openFPGALoader is
        missing or fails.
    """
    try:
        return run_loader(flash_image_command(board, path, offset), run=run)
    except LoaderError as exc:
        raise HostError(str(exc)) from None


def build_parser():
    """The command line's options (``python -m sw.host``)."""
    ap = argparse.ArgumentParser(prog="python -m sw.host",
                                 description="Upload a compressed model to the board and run "
                                             "MNIST test images on it.")
    ap.add_argument("--port", required=True, help="serial device, e.g. /dev/ttyUSB1")
    ap.add_argument("--board", default=None,
                    help="board file name in boards/ (default: recognised from STATUS by its "
                         "clock and UART divisor); its capacities bound the packing and its UART "
                         "rate is the default --baud (else 3 Mbaud)")
    ap.add_argument("--baud", type=int, default=None, help="UART rate (default: the board's)")
    ap.add_argument("--model", default="models/lenet300.npz", help="calibrated dcmodel file")
    ap.add_argument("--images", type=int, default=100, help="MNIST test images to run")
    ap.add_argument("--dense", action="store_true", help="always send dense input frames")
    ap.add_argument("--one-at-a-time", action="store_true",
                    help="one request at a time (dense or sparse pairs) instead of coded "
                         "requests streamed with several in flight")
    ap.add_argument("--no-upload", action="store_true", help="the model is already loaded")
    ap.add_argument("--save-flash-image", metavar="FILE",
                    help="also write the packed model as a flash image (sw.flashimage) to FILE")
    ap.add_argument("--program-flash", action="store_true",
                    help="write that image into the board's SPI flash with openFPGALoader at "
                         "the board's model offset (iCEBreaker: "
                         f"0x{FLASH_OFFSET:x}, after the bitstream); a board built with the "
                         "flash loader loads it at power-up")
    return ap


@command
def main(argv=None):
    """Command line: upload the model, run MNIST test images, compare with sw.golden (exit
    status 3 on a mismatch)."""
    args = build_parser().parse_args(argv)
    model = load_model(args.model)
    int_model = IntModel.from_model(model)
    baud = args.baud or (get_board(args.board).uart.baud if args.board else 3_000_000)
    with SerialTransport(args.port, baud) as transport:
        print(transport.latency_note)
        board = Board(transport)
        st = board.status()
        print(f"board: {st.summary()}")
        spec = board_of_status(st, args.board)
        packed = pack_for_board(st, int_model, spec)
        if args.save_flash_image or args.program_flash:
            path = args.save_flash_image or "model_flash.bin"
            image = flash_image(_runs(packed.load_words()), board.block_words)
            with open(path, "wb") as f:
                f.write(image)
            offset = spec.flash.model_offset if spec.flash is not None else FLASH_OFFSET
            print(f"flash image: {path} ({len(image)} bytes at 0x{offset:x})")
            if args.program_flash:
                print(" ".join(program_flash(path, spec)))
        if not args.no_upload:
            t0 = time.monotonic()

            def progress(done, total):
                print(f"\ruploading {done}/{total} words", end="", flush=True)
            n = board.upload(packed, progress)
            print(f"\ruploaded {n} words ({2 * n} bytes) in {time.monotonic() - t0:.2f} s")
        st = board.status()
        if st.in_features != int_model.in_features:
            raise ModelFitError(f"board reports in_features {st.in_features} after upload, "
                                f"model has {int_model.in_features}")
        test_x, test_y = load_mnist()["test"]
        x8 = images_to_uint8(test_x[:args.images])
        stream = not (args.dense or args.one_at_a_time)
        res = run_benchmark(board, int_model, x8, test_y[:args.images], st.n_pes,
                            log=print, sparse=False if args.dense else None, stream=stream)
        print(res.summary())
        return EXIT_MISMATCH if res.mismatches else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
