"""cocotb testbench of gateware.pe.ProcessingElement against the golden model (sw.golden + sw.pack).

Parameters (:func:`tb.bench.params`): ``case`` (a case of :mod:`tb.pe.vectors`: load words, layer
descriptors, per input and layer the broadcast activations and the exact expected outputs of
this PE), ``p_valid`` / ``p_ready`` (probability that the activation driver offers a word / the
output sink is ready in a cycle; 1.0 = no stalls, used for the cycle measurements) and ``seed``
(of the stall pattern). ``pe_matches_golden`` saves its cycle counts as the bench result.

``pe_matches_golden``: every output word (row, value, order, end token) is compared; ``o_error``
must stay low. ``pe_flags_error``: the case is broken on purpose (e.g. a decreasing column
pointer); ``o_error`` must be low after the loads and high once its layers ran (outputs are not
compared).
"""
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly

from gateware.config import AcceleratorConfig, LoadWrite, broadcast_layout, layer_config_layout, pe_output_layout
from tb.bench import check_sequence, params, save_result
from tb.pe.layouts import pack_fields, unpack_fields
from tb.stream import StreamSink, StreamSource, random_pauses


class TB:
    """Clock, reset, load port and the stream drivers of one PE (:mod:`tb.stream`): ``act``
    feeds ``i_act`` (idle cycles with ``p_valid``), ``out`` takes ``o_out`` (back-pressure with
    ``p_ready``), both from one seeded generator."""

    def __init__(self, dut, case, p_valid=1.0, p_ready=1.0, seed=1):
        self.dut = dut
        self.case = case
        self.cfg = AcceleratorConfig(**case["config"])
        self.p_valid = p_valid
        self.p_ready = p_ready
        self.rng = random.Random(seed)
        self.loader = StreamSource(dut, "i_load")
        self.act = StreamSource(dut, "i_act", pause=random_pauses(p_valid, self.rng))
        self.out = StreamSink(dut, "o_out", pause=random_pauses(p_ready, self.rng))

    @classmethod
    def from_params(cls, dut, stalls=True):
        """The bench of the run's parameters (without stalls unless ``stalls``)."""
        p = params()
        if not stalls:
            return cls(dut, p["case"])
        return cls(dut, p["case"], p.get("p_valid", 1.0), p.get("p_ready", 1.0),
                   p.get("seed", 1))

    async def reset(self):
        cocotb.start_soon(Clock(self.dut.clk, 10, unit="ns").start())
        d = self.dut
        d.rst.value = 1
        for port in (self.loader, self.act, self.out):
            port.clear()
        d.i_start.value = 0
        d.i_layer.value = 0
        await ClockCycles(d.clk, 3)
        await FallingEdge(d.clk)
        d.rst.value = 0

    async def load(self):
        await self.loader.run(self.dut.clk, [pack_fields(LoadWrite, mem=mem, addr=addr, data=data)
                                             for mem, addr, data in self.case["loads"]])

    async def start(self, desc):
        """One ``i_start`` pulse with ``desc`` on ``i_layer`` (from a falling edge to the next)."""
        d = self.dut
        await FallingEdge(d.clk)
        d.i_layer.value = pack_fields(layer_config_layout(self.cfg), **desc)
        d.i_start.value = 1
        await FallingEdge(d.clk)
        d.i_start.value = 0

    def global_row(self, local):
        """The global row of this PE's local row ``local`` (the PE reports local rows)."""
        return self.case["index"] + self.cfg.n_pes * local

    async def run_layer(self, desc, acts, timeout=200000):
        """Start a layer, broadcast ``acts`` then ``end``, collect outputs until ``end``.

        Returns the outputs ``[[row, value]...]`` and the cycle counts: ``column_cycles`` from
        ``i_start`` to the accepted ``end`` token, ``total_cycles`` to the output ``end``.
        """
        d = self.dut
        bl = broadcast_layout(self.cfg)
        ol = pe_output_layout(self.cfg)
        await self.start(desc)
        self.act.send([pack_fields(bl, col=c, value=v) for c, v in acts]
                      + [pack_fields(bl, end=1)])
        got = []
        log = {}
        for cyc in range(1, timeout):
            self.act.drive()
            self.out.drive()
            await ReadOnly()
            if self.act.sample() and self.act.idle:
                log["column_cycles"] = cyc
            word = self.out.sample()
            if word is not None:
                f = unpack_fields(ol, word)
                if f["end"]:
                    log["total_cycles"] = cyc
                    break
                got.append([self.global_row(f["row"]), f["value"]])
            await FallingEdge(d.clk)
        else:
            raise AssertionError(f"layer {desc['index']}: no end token after {timeout} cycles")
        await FallingEdge(d.clk)
        self.act.valid.value = 0
        self.out.stop()
        if "column_cycles" not in log:
            raise AssertionError(f"layer {desc['index']}: output end before the input end")
        return got, log


@cocotb.test()
async def pe_matches_golden(dut):
    """Every output of every layer and input equals sw.golden (bit exact)."""
    tb = TB.from_params(dut)
    case = tb.case
    await tb.reset()
    await tb.load()
    stats = []
    for n, inp in enumerate(case["inputs"]):
        for li, desc in enumerate(case["layers"]):
            vec = inp[li]
            got, log = await tb.run_layer(desc, vec["acts"])
            assert int(dut.o_error.value) == 0, f"input {n} layer {li}: o_error set"
            check_sequence(got, vec["expect"], f"input {n} layer {li} outputs")
            stats.append({"input": n, "layer": li, "acts": len(vec["acts"]),
                          "symbols": vec["symbols"], "macs": vec["macs"],
                          "rows": sum(1 for _ in range(case["index"], desc["out_features"],
                                                       case["n_pes"])),
                          **log})
    assert int(dut.o_error.value) == 0
    save_result(stats)


@cocotb.test()
async def pe_flags_error(dut):
    """A broken case sets ``o_error``: low after the loads, high after its
    layers (every layer of every input, outputs not compared)."""
    tb = TB.from_params(dut, stalls=False)
    case = tb.case
    await tb.reset()
    await tb.load()
    assert int(dut.o_error.value) == 0, "o_error set by the loads"
    for inp in case["inputs"]:
        for desc, vec in zip(case["layers"], inp):
            await tb.run_layer(desc, vec["acts"])
    assert int(dut.o_error.value) == 1, "o_error not set"


@cocotb.test()
async def pe_early_start(dut):
    """Early start (``config.early``): layer L + 1's start comes while the column engine still
    works on layer L (in the cycle L's end token is first offered; ``i_layer`` switches to
    L + 1's descriptor at once), L + 1's activations follow the end token at once, and the
    outputs of both layers (read concurrently from ``o_out``) equal sw.golden. A start is only
    issued while ``o_col_idle`` says one may wait (else from the first cycle it does); after
    it, ``o_col_idle`` is low until the PE acts on it. Random valid/ready stalls."""
    tb = TB.from_params(dut)
    case = tb.case
    await tb.reset()
    await tb.load()
    cfg = tb.cfg
    assert cfg.early, "the case's configuration has no early start"
    bl = broadcast_layout(cfg)
    ol = pe_output_layout(cfg)
    lcl = layer_config_layout(cfg)
    end_word = pack_fields(bl, end=1)
    layers = case["layers"]
    queued = 0
    d = dut
    for n, inp in enumerate(case["inputs"]):
        # (layer, broadcast word) in stream order: every layer's activations, then its end token
        stream = []
        for li, desc in enumerate(layers):
            stream += [(li, pack_fields(bl, col=c, value=v)) for c, v in inp[li]["acts"]]
            stream.append((li, end_word))
        await tb.start(layers[0])
        tb.act.send(word for _, word in stream)
        first = tb.act.sent                 # stream[k] is the word offered: k = sent - first
        got = [[] for _ in layers]
        out_layer = 0
        started = 1                         # layers started so far
        due = False                         # the next layer's start is to be issued
        for cyc in range(200000):
            tb.act.drive()
            k = tb.act.sent - first
            if (tb.act.offered == end_word and started == stream[k][0] + 1
                    and started < len(layers)):
                due = True                  # layer `started` may start from now on
            # a start is issued only while o_col_idle (no start waiting: after a layer without
            # activations the previous start may still wait for a cycle)
            start_now = due and int(d.o_col_idle.value) == 1
            if start_now:
                due = False
                d.i_layer.value = pack_fields(lcl, **layers[started])
                d.i_start.value = 1
            tb.out.drive()
            await ReadOnly()
            tb.act.sample()
            word = tb.out.sample()
            if word is not None:
                f = unpack_fields(ol, word)
                if f["end"]:
                    out_layer += 1
                    if out_layer == len(layers):
                        break
                else:
                    got[out_layer].append([tb.global_row(f["row"]), f["value"]])
            await FallingEdge(d.clk)
            d.i_start.value = 0
            if start_now:
                started += 1
                # the start waits for the hand-over of the running layer, unless it is done
                if int(d.o_col_idle.value) == 0:
                    queued += 1
        else:
            raise AssertionError(f"input {n}: no final end token")
        await FallingEdge(d.clk)
        tb.act.valid.value = 0
        tb.out.stop()
        for li, vec in enumerate(inp):
            assert got[li] == vec["expect"], (
                f"input {n} layer {li}: {len(got[li])} outputs, expected {len(vec['expect'])}")
        assert int(dut.o_error.value) == 0, f"input {n}: o_error set"
    assert queued > 0, "no start ever waited for a hand-over"


@cocotb.test()
async def pe_second_waiting_start_errors(dut):
    """Early start: a second start while one is waiting (``o_col_idle`` low) sets ``o_error``."""
    tb = TB.from_params(dut, stalls=False)
    case = tb.case
    await tb.reset()
    await tb.load()
    d = dut
    lcl = layer_config_layout(tb.cfg)
    for _ in range(3):                      # a start, one that waits, one too many
        await FallingEdge(d.clk)
        d.i_layer.value = pack_fields(lcl, **case["layers"][0])
        d.i_start.value = 1
    await FallingEdge(d.clk)
    d.i_start.value = 0
    await ClockCycles(d.clk, 2)
    assert int(d.o_col_idle.value) == 0, "the waiting start does not show on o_col_idle"
    assert int(d.o_error.value) == 1, "o_error not set"
