"""Byte transports between the host runtime and a board.

:class:`Transport` is the interface ``sw.host`` talks to: ``write(bytes)``, ``read(n, timeout)``.
:class:`SerialTransport` is a real serial port (pyserial); :class:`SimTransport` is the simulation
top (``gateware.top.SimTop``) running under cocotb: bytes are driven bit by bit on its ``i_rx``
pin and sampled from ``o_tx``, and the blocking host code runs in a cocotb ``bridge`` thread.
:class:`ScriptedTransport` replays scripted responses (host tests without a board).
"""
import os
import time
from collections import deque
from pathlib import Path

__all__ = ["TransportError", "TransportTimeout", "Transport", "SerialTransport",
           "SimTransport", "ScriptedTransport", "latency_timer_path", "lower_latency_timer"]


class TransportError(IOError):
    """The link to the board failed (port cannot be opened, I/O error)."""


class TransportTimeout(TransportError):
    """Fewer bytes than requested arrived before the timeout."""

    def __init__(self, message, received=b""):
        super().__init__(message)
        self.received = bytes(received)


class Transport:
    """Interface of a byte link to a board.

    Attributes
    ----------
    baud : int
        Bit rate (10 bits per byte), used by the host to size timeouts.
    latency : float
        Extra seconds the host allows for each exchange on top of the transfer time (USB latency
        on a real port; simulated time in simulation).
    """
    baud = 3_000_000
    latency = 0.5

    def write(self, data):
        """Queue ``data`` (bytes) for transmission."""
        raise NotImplementedError

    def read(self, n, timeout):
        """Return exactly ``n`` bytes or raise :class:`TransportTimeout` after ``timeout`` s."""
        raise NotImplementedError

    def flush_input(self):
        """Discard bytes received but not read yet."""

    def sleep(self, seconds):
        """Let ``seconds`` pass on the link's clock (wall time; simulated time in simulation)."""
        time.sleep(seconds)

    def now(self):
        """The link's clock in seconds (wall time; simulated time in simulation)."""
        return time.monotonic()

    def close(self):
        """Release the link."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def latency_timer_path(port, sysfs="/sys"):
    """The Linux ftdi_sio latency timer file of serial device ``port`` (symbolic links such as
    ``/dev/serial/by-id/...`` are followed): ``<sysfs>/bus/usb-serial/devices/<tty>/latency_timer``.
    """
    tty = os.path.basename(os.path.realpath(port))
    return Path(sysfs) / "bus" / "usb-serial" / "devices" / tty / "latency_timer"


def lower_latency_timer(port, ms=1, sysfs="/sys"):
    """Set the FTDI latency timer of ``port`` to ``ms`` (1..255) milliseconds if it is higher.

    The FT2232H holds received bytes until 510 have gathered or the timer expires (16 ms by
    default on Linux), so every short response would wait that long. Linux exposes the timer
    in sysfs (writing needs root or a udev rule: ``ACTION=="add", SUBSYSTEM=="usb-serial",
    DRIVERS=="ftdi_sio", ATTR{latency_timer}="1"``); on other systems pyftdi's
    ``set_latency_timer`` or the vendor driver's settings do the same.

    Returns
    -------
    str
        What happened, for the user (the timer's old and new value, or why it stays).
    """
    if not 1 <= ms <= 255:
        raise ValueError(f"latency timer must be 1..255 ms, not {ms}")
    path = latency_timer_path(port, sysfs)
    try:
        old = int(path.read_text().strip())
    except (OSError, ValueError):
        return (f"no FTDI latency timer for {port} ({path} not readable): not an ftdi_sio "
                "device or not Linux; lower it with the driver's settings if responses are slow")
    if old <= ms:
        return f"FTDI latency timer of {port}: {old} ms"
    try:
        path.write_text(f"{ms}\n")
        new = int(path.read_text().strip())
    except (OSError, ValueError) as exc:
        return (f"FTDI latency timer of {port} stays at {old} ms ({exc.__class__.__name__}: "
                f"{exc}); each response may wait that long: run `echo {ms} | sudo tee {path}`")
    return f"FTDI latency timer of {port}: lowered from {old} to {new} ms"


class SerialTransport(Transport):
    """A serial port through pyserial (e.g. the iCEBreaker's FT2232H channel B).

    Parameters
    ----------
    port : str
        Device (``/dev/ttyUSB1``, ``COM4``).
    baud : int
        Bit rate; the FT2232H does 3 Mbaud exactly.
    latency_timer_ms : int or None
        Lower the FTDI latency timer to this (:func:`lower_latency_timer`; ``None`` leaves it);
        :attr:`latency_note` says what happened.
    """
    latency = 0.5

    def __init__(self, port, baud=3_000_000, latency_timer_ms=1):
        try:
            import serial  # lazy: only a real port needs pyserial; a clear error without it
        except ImportError:
            raise TransportError("pyserial is not installed (pip install pyserial)") from None
        self.baud = baud
        try:
            self._port = serial.Serial(port, baudrate=baud, timeout=0.1, write_timeout=5)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise TransportError(f"cannot open serial port {port!r} at {baud} baud: {exc}") \
                from None
        self._serial = serial
        self.latency_note = None if latency_timer_ms is None else \
            lower_latency_timer(port, latency_timer_ms)

    def write(self, data):
        try:
            self._port.write(bytes(data))
        except (self._serial.SerialException, OSError) as exc:
            raise TransportError(f"serial write failed: {exc}") from None

    def read(self, n, timeout):
        buf = bytearray()
        deadline = time.monotonic() + timeout
        try:
            while len(buf) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TransportTimeout(
                        f"serial timeout: received {len(buf)} of {n} bytes within {timeout:.3f} s",
                        buf)
                self._port.timeout = min(left, 0.1)
                buf += self._port.read(n - len(buf))
        except (self._serial.SerialException, OSError) as exc:
            raise TransportError(f"serial read failed: {exc}") from None
        return bytes(buf)

    def flush_input(self):
        self._port.reset_input_buffer()

    def close(self):
        self._port.close()


class ScriptedTransport(Transport):
    """Test double: records what is written and answers with scripted bytes.

    Parameters
    ----------
    responder : callable
        ``responder(frame_bytes_written) -> bytes`` called on every ``write``; its result is
        appended to the receive buffer (``b""`` for silence).
    """
    latency = 0.01

    def __init__(self, responder):
        self.responder = responder
        self.written = []
        self._rx = bytearray()

    def write(self, data):
        self.written.append(bytes(data))
        self._rx += self.responder(bytes(data))

    def read(self, n, timeout):
        if len(self._rx) < n:
            got = bytes(self._rx)
            self._rx.clear()
            raise TransportTimeout(f"timeout: received {len(got)} of {n} bytes", got)
        out = bytes(self._rx[:n])
        del self._rx[:n]
        return out

    def flush_input(self):
        self._rx.clear()

    def sleep(self, seconds):
        pass


class SimTransport(Transport):
    """The simulated board: a UART model on the pins of a cocotb-simulated ``SimTop``.

    Create it inside a cocotb test (it starts a driver and a monitor task). Blocking host code
    runs in a thread started with ``cocotb.task.bridge`` and calls :meth:`write` / :meth:`read`;
    cocotb coroutines can ``await`` :meth:`awrite` / :meth:`aread` directly. Timeouts are in
    simulated seconds.

    Parameters
    ----------
    dut : cocotb handle
        The top with ``i_rx`` and ``o_tx``.
    clock_hz : int
        Frequency of the simulated ``clk``.
    divisor : int
        Clocks per bit of the board's UART.
    bit_ns : float or None
        Bit time the host side uses (default ``divisor`` clock periods); set it off-nominal to
        test baud-rate tolerance.
    gap_bits : callable or None
        ``gap_bits(byte_index) -> int`` idle bit times inserted before each transmitted byte.
    """
    latency = 0.003

    def __init__(self, dut, clock_hz, divisor, bit_ns=None, gap_bits=None):
        # lazy: cocotb (a dev dependency) is only needed, and only works, in a simulation
        import cocotb
        from cocotb.task import resume
        from cocotb.triggers import Event
        self.dut = dut
        self.baud = clock_hz / divisor
        self.bit_ps = round((bit_ns if bit_ns is not None else 1e9 * divisor / clock_hz) * 1000)
        self.rx_bit_ps = round(1e12 * divisor / clock_hz)
        self.gap_bits = gap_bits
        self._out = deque()
        self._in = bytearray()
        self.framing_errors = 0
        self._out_event = Event()
        self._in_event = Event()
        self._idle_event = Event()
        self._idle_event.set()
        self._sent = 0
        dut.i_rx.value = 1
        self._tasks = [cocotb.start_soon(self._drive()), cocotb.start_soon(self._monitor())]
        self.write = resume(self.awrite)
        self.read = resume(self.aread)
        self.wait_idle = resume(self.await_idle)
        self.sleep = resume(self.asleep)
        self.now = resume(self.anow)

    async def awrite(self, data):
        """Queue ``data`` for the board's receive pin (returns at once)."""
        self._out.extend(bytes(data))
        self._idle_event.clear()
        self._out_event.set()

    async def await_idle(self):
        """Wait until every queued byte has been driven onto the pin."""
        await self._idle_event.wait()

    async def asleep(self, seconds):
        """Let ``seconds`` of simulated time pass."""
        # lazy: cocotb (a dev dependency) is only needed, and only works, in a simulation
        from cocotb.triggers import Timer
        await Timer(max(1, round(seconds * 1e12)), unit="ps")

    async def anow(self):
        """Simulated time in seconds."""
        # lazy: cocotb (a dev dependency) is only needed, and only works, in a simulation
        from cocotb.utils import get_sim_time
        return get_sim_time("ps") * 1e-12

    async def aread(self, n, timeout):
        """Return exactly ``n`` received bytes or raise :class:`TransportTimeout`."""
        # lazy: cocotb (a dev dependency) is only needed, and only works, in a simulation
        from cocotb.triggers import Timer, First
        from cocotb.utils import get_sim_time
        deadline = get_sim_time("ps") + round(timeout * 1e12)
        while len(self._in) < n:
            left = deadline - get_sim_time("ps")
            if left <= 0:
                got = bytes(self._in)
                self._in.clear()
                raise TransportTimeout(f"simulated UART timeout: received {len(got)} of {n} "
                                       f"bytes within {timeout * 1e3:.3f} ms (sim time)", got)
            self._in_event.clear()
            await First(self._in_event.wait(), Timer(left, unit="ps"))
        out = bytes(self._in[:n])
        del self._in[:n]
        return out

    def flush_input(self):
        self._in.clear()

    def close(self):
        for task in self._tasks:
            task.cancel()

    async def _drive(self):
        # lazy: cocotb (a dev dependency) is only needed, and only works, in a simulation
        from cocotb.triggers import Timer
        while True:
            if not self._out:
                self._idle_event.set()
                self._out_event.clear()
                await self._out_event.wait()
                continue
            byte = self._out.popleft()
            if self.gap_bits is not None:
                gap = self.gap_bits(self._sent)
                if gap:
                    await Timer(gap * self.bit_ps, unit="ps")
            self._sent += 1
            frame = [0] + [(byte >> i) & 1 for i in range(8)] + [1]
            for bit in frame:
                self.dut.i_rx.value = bit
                await Timer(self.bit_ps, unit="ps")

    async def _monitor(self):
        # lazy: cocotb (a dev dependency) is only needed, and only works, in a simulation
        from cocotb.triggers import FallingEdge, Timer
        tx = self.dut.o_tx
        while True:
            await FallingEdge(tx)
            await Timer(self.rx_bit_ps // 2, unit="ps")
            if int(tx.value) != 0:
                continue  # glitch
            byte = 0
            for i in range(8):
                await Timer(self.rx_bit_ps, unit="ps")
                byte |= int(tx.value) << i
            await Timer(self.rx_bit_ps, unit="ps")
            if int(tx.value) != 1:
                self.framing_errors += 1
                continue
            self._in.append(byte)
            self._in_event.set()
