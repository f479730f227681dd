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
and random back-pressure on ``o_logit``. Protocol checks on every cycle: ``i_load.ready`` is low
while ``o_busy``; ``o_logit`` ``valid`` never drops and its payload never changes before a
transfer (stream rules).
"""
import random
from dataclasses import dataclass

from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly

from gateware.config import LoadWrite, input_layout, logit_layout
from tb.pe.layouts import pack_fields, unpack_fields

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
        self.logit_layout = logit_layout(config)

    def _sig(self, name):
        return getattr(self.dut, self.prefix + name)

    async def reset(self, period_ns=10, start_clock=True):
        """Start the clock (unless ``start_clock`` is false) and hold ``rst`` for 3 cycles."""
        d = self.dut
        if start_clock:
            Clock(d.clk, period_ns, unit="ns").start()
        d.rst.value = 1
        for name in ("i_load__valid", "i_input__valid", "o_logit__ready", "i_load__payload",
                     "i_input__payload"):
            self._sig(name).value = 0
        await ClockCycles(d.clk, 3)
        await FallingEdge(d.clk)
        d.rst.value = 0

    def _check_busy(self):
        if int(self._sig("o_busy").value) and int(self._sig("i_load__ready").value):
            raise DriverError("i_load.ready is high while o_busy")

    async def load(self, words, timeout=1000):
        """Write ``(mem, addr, data)`` words over ``i_load``; returns the cycles spent.

        Raises
        ------
        DriverError
            if one word is not accepted within ``timeout`` cycles.
        """
        valid = self._sig("i_load__valid")
        payload = self._sig("i_load__payload")
        ready = self._sig("i_load__ready")
        cycles = 0
        for mem, addr, data in words:
            word = pack_fields(LoadWrite, mem=mem, addr=addr, data=data)
            waited = 0
            while True:
                await FallingEdge(self.dut.clk)
                cycles += 1
                offer = self.p_valid >= 1.0 or self.rng.random() < self.p_valid
                valid.value = int(offer)
                payload.value = word
                await ReadOnly()
                self._check_busy()
                if offer and int(ready.value):
                    break
                waited += 1
                if waited > timeout:
                    raise DriverError(f"load word ({mem}, {addr}) not accepted in {timeout} "
                                      "cycles")
        await FallingEdge(self.dut.clk)
        valid.value = 0
        return cycles

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
        i_valid, i_payload, i_ready = (self._sig("i_input__valid"), self._sig("i_input__payload"),
                                       self._sig("i_input__ready"))
        o_valid, o_payload, o_ready = (self._sig("o_logit__valid"), self._sig("o_logit__payload"),
                                       self._sig("o_logit__ready"))
        items = pack_input_words(self.cfg, x)
        acc = self.cfg.acc_bits
        logits, indices = [], []
        k = 0
        offered = False
        pending = None          # payload of an o_logit word seen valid but not yet transferred
        done = False
        for cyc in range(timeout):
            await FallingEdge(d.clk)
            if k < len(items) and not offered:
                offered = self.p_valid >= 1.0 or self.rng.random() < self.p_valid
                i_payload.value = items[k]
            i_valid.value = int(offered)
            ready = self.p_ready >= 1.0 or self.rng.random() < self.p_ready
            o_ready.value = int(ready)
            await ReadOnly()
            self._check_busy()
            if offered and int(i_ready.value):
                k += 1
                offered = False
            if int(o_valid.value):
                word = int(o_payload.value)
                if pending is not None and word != pending:
                    raise DriverError("o_logit payload changed before its transfer")
                pending = word
                if ready:
                    pending = None
                    f = unpack_fields(self.logit_layout, word)
                    v = f["value"]
                    logits.append(v - (1 << acc) if v >> (acc - 1) else v)
                    indices.append(f["index"])
                    if f["last"]:
                        done = True
                        break
                    if n_logits is not None and len(logits) >= n_logits:
                        raise DriverError(f"more than {n_logits} logits without last")
            elif pending is not None:
                raise DriverError("o_logit valid dropped before its transfer")
        if not done:
            raise DriverError(f"no final logit within {timeout} cycles ({len(logits)} logits, "
                              f"{k}/{len(items)} inputs accepted)")
        if k != len(items):
            raise DriverError(f"final logit before all inputs were accepted ({k}/{len(items)})")
        await FallingEdge(d.clk)
        i_valid.value = 0
        o_ready.value = 0
        await FallingEdge(d.clk)
        return Inference(logits=logits, indices=indices, argmax=int(self._sig("o_argmax").value),
                         cycles=int(self._sig("o_cycles").value), wall_cycles=cyc + 1,
                         error=int(self._sig("o_error").value))
