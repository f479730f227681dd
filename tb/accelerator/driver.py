"""cocotb driver of the accelerator ports (docs/ARCHITECTURE.md section 5).

Usage inside a cocotb test (the DUT is ``gateware.accelerator.Accelerator`` converted to Verilog, or
any wrapper exposing the same ports under a name ``prefix``)::

    drv = AcceleratorDriver(dut, AcceleratorConfig(n_pes=4), p_valid=0.8, p_ready=0.7, seed=1)
    await drv.reset()                       # starts the clock, pulses rst
    await drv.load(packed.load_words())     # (mem, addr, data) words, one per accepted cycle
    res = await drv.infer(x)                # x: in_features ints 0..2^A-1
    res.logits, res.argmax, res.cycles, res.error

Inputs are driven after the falling edge and handshakes are evaluated in the read-only phase
before the next rising edge, so a transfer is counted exactly when the DUT sees it. With
``p_valid`` / ``p_ready`` < 1 the driver inserts random idle cycles on ``i_load``/``i_input``
and random back-pressure on ``o_logit`` (the shared stream drivers of :mod:`tb.stream`). Protocol
checks on every cycle: ``i_load.ready`` is low while ``o_busy``; ``o_logit`` ``valid`` never drops
and its payload never changes before a transfer (stream rules).

Once every input word of an inference is accepted and no logit is offered there is nothing to
drive: the driver then waits for ``o_logit.valid`` to rise (and for any change of
``i_load.ready`` or ``o_busy``, to keep the load-port check) instead of stepping every cycle, so
Verilator runs the long compute phases (a conv layer's passes) without a Python call per cycle.
Cycle counts come from the simulation time and are the same either way.
"""
import random
from dataclasses import dataclass

from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, Edge, FallingEdge, First, ReadOnly, RisingEdge, Timer
from cocotb.utils import get_sim_time

from gateware.config import LoadWrite, input_layout, logit_layout
from tb.pe.layouts import pack_fields, unpack_fields
from tb.stream import StreamSink, StreamSource, random_pauses

__all__ = ["AcceleratorDriver", "Inference", "DriverError", "pack_input_words"]


def pack_input_words(config, x, fill=0):
    """``i_input`` payloads (integers) of the input vector ``x``: ``K = input_lanes`` values
    per word, lane 0 = lowest index, ``last`` on the final word. Lanes of the final word past
    ``len(x) - 1`` get ``fill`` (the hardware ignores them)."""
    k_lanes = config.input_lanes
    layout = input_layout(config)
    amask = (1 << config.act_bits) - 1
    n_words = -(-len(x) // k_lanes)
    words = []
    for w in range(n_words):
        vals = [int(v) & amask for v in x[w * k_lanes:(w + 1) * k_lanes]]
        vals += [fill & amask] * (k_lanes - len(vals))
        packed = sum(v << (config.act_bits * j) for j, v in enumerate(vals))
        words.append(pack_fields(layout, value=packed, last=int(w == n_words - 1)))
    return words


class DriverError(AssertionError):
    """The DUT broke a port rule or did not answer in time."""


@dataclass
class Inference:
    """Result of :meth:`AcceleratorDriver.infer`.

    Attributes
    ----------
    logits : list of int
        Signed logit values in the order received.
    indices : list of int
        ``index`` field of each logit (must be 0, 1, ...).
    argmax : int
        ``o_argmax`` after the inference.
    cycles : int
        ``o_cycles`` after the inference (first input transfer to final logit transfer).
    wall_cycles : int
        Clock cycles the driver spent from the first offered input to the final logit.
    error : int
        ``o_error`` (all flags as one integer) after the inference.
    """
    logits: list
    indices: list
    argmax: int
    cycles: int
    wall_cycles: int
    error: int


class AcceleratorDriver:
    """Drive ``i_load`` / ``i_input`` and collect ``o_logit`` of an accelerator DUT.

    Parameters
    ----------
    dut : cocotb handle
        Design with ``clk``, ``rst`` and the accelerator ports.
    config : gateware.config.AcceleratorConfig
        Gives the payload layouts (``act_bits``, ``acc_bits``).
    p_valid : float
        Probability that a load/input word is offered in a cycle (1.0 = back to back).
    p_ready : float
        Probability that ``o_logit.ready`` is high in a cycle.
    seed : int
        Seed of the stall pattern.
    prefix : str
        Prepended to every port name (``prefix + "i_load__valid"``...).
    """

    def __init__(self, dut, config, *, p_valid=1.0, p_ready=1.0, seed=0, prefix=""):
        self.dut = dut
        self.cfg = config
        self.p_valid = p_valid
        self.p_ready = p_ready
        self.rng = random.Random(seed)
        self.prefix = prefix
        self.period_ns = 10
        self.logit_layout = logit_layout(config)
        # one generator for every stall, drawn in the order the ports are stepped
        self.loader = StreamSource(dut, prefix + "i_load", pause=random_pauses(p_valid, self.rng))
        self.input = StreamSource(dut, prefix + "i_input", pause=random_pauses(p_valid, self.rng))
        self.logit = StreamSink(dut, prefix + "o_logit", pause=random_pauses(p_ready, self.rng))

    def _sig(self, name):
        return getattr(self.dut, self.prefix + name)

    async def reset(self, period_ns=10, start_clock=True):
        """Start the clock (unless ``start_clock`` is false) and hold ``rst`` for 3 cycles."""
        d = self.dut
        self.period_ns = period_ns
        if start_clock:
            Clock(d.clk, period_ns, unit="ns").start()
        d.rst.value = 1
        for port in (self.loader, self.input, self.logit):
            port.clear()
        await ClockCycles(d.clk, 3)
        await FallingEdge(d.clk)
        d.rst.value = 0

    def _check_busy(self):
        if int(self._sig("o_busy").value) and int(self._sig("i_load__ready").value):
            raise DriverError("i_load.ready is high while o_busy")

    async def load(self, words, timeout=5000):
        """Write ``(mem, addr, data)`` words over ``i_load``; returns the cycles spent.

        Raises
        ------
        DriverError
            if one word is not accepted within ``timeout`` cycles.
        """
        loader = self.loader
        loader.send(pack_fields(LoadWrite, mem=mem, addr=addr, data=data)
                    for mem, addr, data in words)
        cycles = waited = 0
        while not loader.idle:
            await FallingEdge(self.dut.clk)
            cycles += 1
            loader.drive()
            await ReadOnly()
            self._check_busy()
            if loader.sample():
                waited = 0
                continue
            waited += 1
            if waited > timeout:
                f = unpack_fields(LoadWrite, loader.offered if loader.offered is not None
                                  else loader.queue[0])
                raise DriverError(f"load word ({f['mem']}, {f['addr']}) not accepted in "
                                  f"{timeout} cycles")
        await FallingEdge(self.dut.clk)
        loader.valid.value = 0
        return cycles

    async def _quiet(self, budget):
        """From the read-only phase of a cycle in which nothing transferred and every input
        was accepted: wait (at most ``budget`` cycles) until ``o_logit.valid`` is high, checking
        the load-port rule whenever ``i_load.ready`` or ``o_busy`` changes; returns in the
        rising edge's time step, before the next falling edge."""
        valid = self._sig("o_logit__valid")
        watch = (self._sig("i_load__ready"), self._sig("o_busy"))
        deadline = get_sim_time("ns") + budget * self.period_ns
        while not int(valid.value):
            left = deadline - get_sim_time("ns")
            if left <= 0:
                return
            await First(RisingEdge(valid), *(Edge(s) for s in watch), Timer(left, unit="ns"))
            await ReadOnly()
            self._check_busy()

    async def infer(self, x, n_logits=None, timeout=1_000_000):
        """Send one input vector and collect its logits (until ``last``).

        Parameters
        ----------
        x : sequence of int
            Input activations (unsigned ``act_bits``), sent ``input_lanes`` per word
            (:func:`pack_input_words`); ``last`` is set on the final word.
        n_logits : int, optional
            Expected logit count; more than that without ``last`` is an error.
        timeout : int
            Cycles before :class:`DriverError`.
        """
        d = self.dut
        items = pack_input_words(self.cfg, x)
        self.input.send(items)
        first = self.input.sent
        acc = self.cfg.acc_bits
        logits, indices = [], []
        done = False
        t_first = None
        cyc = 0
        while cyc < timeout:
            await FallingEdge(d.clk)
            now = get_sim_time("ns")
            t_first = now if t_first is None else t_first
            cyc = round((now - t_first) / self.period_ns)   # cycles before this one
            self.input.drive()
            self.logit.drive()
            await ReadOnly()
            self._check_busy()
            self.input.sample()
            word = self.logit.sample()
            if word is None and self.input.idle:
                await self._quiet(timeout - cyc)
            elif word is not None:
                f = unpack_fields(self.logit_layout, word)
                v = f["value"]
                logits.append(v - (1 << acc) if v >> (acc - 1) else v)
                indices.append(f["index"])
                if f["last"]:
                    done = True
                    break
                if n_logits is not None and len(logits) >= n_logits:
                    raise DriverError(f"more than {n_logits} logits without last")
        k = self.input.sent - first
        if not done:
            raise DriverError(f"no final logit within {timeout} cycles ({len(logits)} logits, "
                              f"{k}/{len(items)} inputs accepted)")
        if k != len(items):
            raise DriverError(f"final logit before all inputs were accepted ({k}/{len(items)})")
        await FallingEdge(d.clk)
        self.input.valid.value = 0
        self.logit.stop()
        await FallingEdge(d.clk)
        return Inference(logits=logits, indices=indices, argmax=int(self._sig("o_argmax").value),
                         cycles=int(self._sig("o_cycles").value), wall_cycles=cyc + 1,
                         error=int(self._sig("o_error").value))
