"""Stream driver and monitor with stall injection, shared by the cocotb benches.

Modelled on the AXI-Stream source and sink of verilog-axis / cocotbext-axi
(``AxiStreamSource``/``AxiStreamSink`` with ``set_pause_generator``), for Amaranth
``lib.stream`` ports: a port ``name`` of the DUT is the signals ``name__valid``,
``name__payload`` and ``name__ready``.

Timing discipline (the same in every bench): inputs are driven after the falling edge and the
handshakes are sampled in the read-only phase before the next rising edge, so a transfer is
counted exactly when the DUT sees it. Benches that act on several ports in the same cycle step
the drivers themselves, once per cycle::

    await FallingEdge(dut.clk)
    src.drive(); sink.drive()       # offer / set ready
    await ReadOnly()
    if src.sample(): ...            # True: the offered word transferred in this cycle
    word = sink.sample()            # the word that transferred, or None

Stalls come from pause generators (one value per decision, true = pause): a source draws one
when it may offer the next word (a word once offered stays offered until it transfers, as the
stream rules require), a sink draws one every cycle for ``ready``. :func:`random_pauses` gives
the usual "valid / ready with probability p" pattern; with ``p >= 1`` it draws no random
numbers.

The sink checks the stream rules on every cycle: once ``valid`` is high it stays high and the
payload stays unchanged until the transfer (:class:`StreamError` otherwise).
"""
import itertools
from collections import deque

from cocotb.triggers import FallingEdge, ReadOnly

__all__ = ["StreamSource", "StreamSink", "StreamError", "random_pauses"]


class StreamError(AssertionError):
    """The DUT broke a stream rule, or a stream did not finish in time."""


def random_pauses(p, rng):
    """Pause generator: each value is true (pause) with probability ``1 - p``.

    Parameters
    ----------
    p : float
        Probability of offering a word (source) / of ``ready`` (sink) in a cycle; ``p >= 1``
        never pauses and draws nothing from ``rng``.
    rng : random.Random
        Shared with the bench (streams stepped in a fixed order keep the pattern reproducible).
    """
    if p >= 1.0:
        return itertools.repeat(False)
    return (rng.random() >= p for _ in itertools.count())


class _Port:
    """The ``valid``/``payload``/``ready`` handles of the DUT's stream port ``name`` and a pause
    generator (default: never pause)."""

    def __init__(self, dut, name, pause):
        self.dut = dut
        self.name = name
        self.valid = getattr(dut, f"{name}__valid")
        self.payload = getattr(dut, f"{name}__payload")
        self.ready = getattr(dut, f"{name}__ready")
        self.pause = pause if pause is not None else itertools.repeat(False)


class StreamSource(_Port):
    """Drives the words queued with :meth:`send` onto the DUT's input stream ``name``.

    Parameters
    ----------
    dut : cocotb handle
    name : str
        Port name (``i_act`` for ``i_act__valid``...).
    pause : iterator of bool, optional
        Idle generator: drawn whenever a next word could be offered; true keeps ``valid`` low
        for that cycle. Default: never idle.

    Attributes
    ----------
    offered : int or None
        The word on the port while ``valid`` is high.
    sent : int
        Words transferred so far.
    """

    def __init__(self, dut, name, *, pause=None):
        super().__init__(dut, name, pause)
        self.queue = deque()
        self.offered = None
        self.sent = 0

    def clear(self):
        """Drop the queue and the offered word; ``valid`` and the payload low (for resets)."""
        self.queue.clear()
        self.offered = None
        self.valid.value = 0
        self.payload.value = 0

    def send(self, words):
        """Queue ``words`` (payload integers) for transfer."""
        self.queue.extend(words)

    @property
    def idle(self):
        """Nothing queued and nothing offered."""
        return self.offered is None and not self.queue

    def drive(self):
        """After a falling edge: offer the next word unless the pause generator says idle."""
        if self.offered is None and self.queue and not next(self.pause):
            self.offered = self.queue.popleft()
            self.payload.value = self.offered
        self.valid.value = int(self.offered is not None)

    def sample(self):
        """In the read-only phase: true if the offered word transferred in this cycle."""
        if self.offered is not None and int(self.ready.value):
            self.offered = None
            self.sent += 1
            return True
        return False

    async def run(self, clk, words, timeout=100_000):
        """Transfer ``words`` (alone on the clock: no other driver is stepped); ``valid`` is
        low again after the last transfer. Returns the cycles spent.

        Raises
        ------
        StreamError
            if the words are not all taken within ``timeout`` cycles.
        """
        self.send(words)
        for cycle in range(1, timeout + 1):
            await FallingEdge(clk)
            self.drive()
            await ReadOnly()
            self.sample()
            if self.idle:
                break
        else:
            raise StreamError(f"{self.name}: {len(self.queue) + (self.offered is not None)} "
                              f"words not taken in {timeout} cycles")
        await FallingEdge(clk)
        self.valid.value = 0
        return cycle


class StreamSink(_Port):
    """Takes words from the DUT's output stream ``name`` and checks the stream rules.

    Parameters
    ----------
    dut : cocotb handle
    name : str
        Port name (``o_out`` for ``o_out__valid``...).
    pause : iterator of bool, optional
        Back-pressure generator, drawn every cycle; true keeps ``ready`` low. Default: always
        ready.
    """

    def __init__(self, dut, name, *, pause=None):
        super().__init__(dut, name, pause)
        self.ready_now = False
        self.pending = None         # a word seen valid but not yet transferred
        self.received = 0

    def clear(self):
        """``ready`` low, no pending word (for resets)."""
        self.ready_now = False
        self.pending = None
        self.ready.value = 0

    def stop(self):
        """``ready`` low from this cycle on (until the next :meth:`drive`)."""
        self.ready_now = False
        self.ready.value = 0

    def drive(self):
        """After a falling edge: ``ready`` high unless the pause generator says back-pressure."""
        self.ready_now = not next(self.pause)
        self.ready.value = int(self.ready_now)

    def sample(self):
        """In the read-only phase: the word transferred in this cycle, or ``None``.

        Raises
        ------
        StreamError
            if ``valid`` dropped or the payload changed before a transfer.
        """
        if int(self.valid.value):
            word = int(self.payload.value)
            if self.pending is not None and word != self.pending:
                raise StreamError(f"{self.name}: payload changed before its transfer "
                                  f"({self.pending:#x} -> {word:#x})")
            if self.ready_now:
                self.pending = None
                self.received += 1
                return word
            self.pending = word
        elif self.pending is not None:
            raise StreamError(f"{self.name}: valid dropped before its transfer "
                              f"(payload {self.pending:#x})")
        return None
