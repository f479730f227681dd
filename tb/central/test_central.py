"""cocotb testbench of gateware.central.CentralUnit with behavioural PEs.

The testbench plays the sequencer (``i_start`` / ``i_layer``; here the next layer only starts
after the previous one is completely collected: the broadcast of layer L + 1 during layer L's
collect is exercised by the accelerator tests with real PEs) and N behavioural PEs: each
consumes its FIFO with random back-pressure and, after the ``end`` token, emits random outputs
of its rows (``r mod N == p``, ascending; hidden layers: a random subset with non-zero values;
last layer: every row, random signed values with deliberate ties), with random idle cycles,
then its ``end`` token.

The dense input goes in words of ``K`` lanes (``CENTRAL_K``); the lanes past the vector's end
carry garbage. Inputs: all zero, all non-zero, zero runs around a dense middle, random density.

Checked on every inference: each PE receives exactly the non-zero inputs of layer 0 in index
order (without stalls: in one cycle per input word without non-zero inputs, else one per
non-zero input), and for a later layer exactly the previous layer's outputs of all PEs in
ascending row order, each time followed by one ``end``; ``o_bdone`` comes once per layer, after
every PE took its ``end`` (with the early start, the default, ``o_bend`` once per layer, at or
before ``o_bdone``, the broadcast side idle); ``o_done`` only on the last layer, once, after all N
``end`` tokens;
``i_input`` is not ready outside layer 0; ``o_logit`` carries every logit in index order with
``last`` on the final one and the payload held until its transfer; ``o_argmax`` is the first
index of the maximum; ``o_error`` stays 0 (and flags a wrong input length in the
``bad_length`` test: ``last`` one word early).

With ``CENTRAL_SKIP=1`` the unit has the column skip table: the testbench writes a random
table (per layer and column an N-bit mask: none, some or all PEs skip it) after the reset and
each PE must receive exactly the columns whose bit is clear (the latency bounds above allow the
table's stage: one cycle, two with ``reg``, its registered read). ``CENTRAL_WIDTH=2`` (with the
table): two words per cycle; layer 0 then takes a word in one cycle per two non-zero inputs, and a hidden layer's broadcast
comes in bank order, so it is compared as a set (each column exactly once).

Parameters (:func:`tb.bench.params`): ``n`` (PEs), ``k`` (input lanes), ``sizes``
(``[in, hidden..., out]``), ``seed``, ``inputs``, ``p_valid``, ``p_ready``, ``skip``, ``width``,
``break_order`` (expect a wrong order: the testbench must then fail), ``break_skip`` (expect
every PE to receive every column: must fail). The streams are driven by :mod:`tb.stream`, all
stalls from one seeded generator.
"""
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly

from gateware.config import (AcceleratorConfig, broadcast_layout, layer_config_layout, logit_layout,
                       pe_output_layout)
from tb.accelerator.driver import pack_input_words
from tb.bench import params
from tb.pe.layouts import pack_fields, unpack_fields
from tb.stream import StreamSink, StreamSource, random_pauses

_P = params()
N = _P.get("n", 3)
K = _P.get("k", 1)
SIZES = _P.get("sizes", [40, 30, 20, 10])
SEED = _P.get("seed", 1)
INPUTS = _P.get("inputs", 4)
P_VALID = _P.get("p_valid", 0.7)
P_READY = _P.get("p_ready", 0.6)
#: Test of the testbench: expect the PE outputs in emission order instead of sorted.
BREAK = bool(_P.get("break_order", False))
SKIP = bool(_P.get("skip", False))
#: Test of the testbench: with the skip table loaded, expect every column at every PE.
BREAK_SKIP = bool(_P.get("break_skip", False))
WIDTH = _P.get("width", 1)
#: The skip table's read data is registered (one more cycle of latency).
REG = bool(_P.get("reg", False))
CFG = AcceleratorConfig(n_pes=N, input_lanes=K, column_skip=SKIP, broadcast_width=WIDTH,
                        colskip_register=REG)
#: Cycles the skip table adds to a word's way into the FIFOs.
SKIP_LATENCY = (1 + REG) if SKIP else 0
#: The early start (``o_bend``: the layer's end token is in every FIFO) is on by default.
EARLY = CFG.early
assert CFG.bcast_width == WIDTH, "two words per cycle need the column skip table"


def _signed(v, bits):
    return v - (1 << bits) if v >> (bits - 1) else v


class TB:
    """Clock, reset, the sequencer role and N behavioural PEs around the central unit."""

    def __init__(self, dut, seed):
        self.dut = dut
        self.rng = random.Random(seed)
        self.bl = broadcast_layout(CFG)
        self.ol = pe_output_layout(CFG)
        self.ll = logit_layout(CFG)
        self.lay = layer_config_layout(CFG)
        # every pause generator draws from self.rng, in the order the ports are stepped
        self.phase = ["done"] * N       # per behavioural PE: recv -> emit -> done
        self.inp = StreamSource(dut, "i_input", pause=random_pauses(P_VALID, self.rng))
        self.acts = [StreamSink(dut, f"o_act__{p}", pause=self._recv_pauses(p))
                     for p in range(N)]
        self.outs = [StreamSource(dut, f"i_out__{p}", pause=random_pauses(P_VALID, self.rng))
                     for p in range(N)]
        self.logit = StreamSink(dut, "o_logit", pause=random_pauses(P_READY, self.rng))

    def _recv_pauses(self, p):
        """PE ``p`` is ready for its broadcast (with ``P_READY``) only while it receives."""
        while True:
            yield not (self.phase[p] == "recv" and self.chance(P_READY))

    async def reset(self):
        d = self.dut
        Clock(d.clk, 10, unit="ns").start()
        d.rst.value = 1
        d.i_start.value = 0
        d.i_layer.value = 0
        for port in (self.inp, self.logit, *self.acts, *self.outs):
            port.clear()
        if SKIP:
            d.i_skip_we.value = 0
        await ClockCycles(d.clk, 3)
        await FallingEdge(d.clk)
        d.rst.value = 0
        # the column skip table: layers back to back, bit p set = PE p skips the column
        self.skip = []
        if SKIP:
            addr = 0
            for li in range(len(SIZES) - 1):
                masks = []
                for _ in range(SIZES[li]):
                    u = self.rng.random()
                    mask = 0 if u < 0.3 else (1 << N) - 1 if u < 0.4 else \
                        sum(int(self.rng.random() < 0.5) << p for p in range(N))
                    masks.append(mask)
                    # (garbage in the bits past PE N - 1; above 16 PEs an entry is
                    # CFG.colskip_words words, PEs 16w..16w+15 in word w)
                    word = mask | (self.rng.randrange(1 << 16) << N
                                   & ((1 << 16 * CFG.colskip_words) - 1))
                    for w in range(CFG.colskip_words):
                        d.i_skip_we.value = 1
                        d.i_skip_addr.value = addr
                        d.i_skip_data.value = word >> (16 * w) & 0xFFFF
                        addr += 1
                        await FallingEdge(d.clk)
                self.skip.append(masks)
            d.i_skip_we.value = 0

    def skipped(self, li, p, col):
        """PE ``p`` does not receive column ``col`` of layer ``li``."""
        return bool(self.skip) and not BREAK_SKIP and bool(self.skip[li][col] >> p & 1)

    def chance(self, p):
        return p >= 1.0 or self.rng.random() < p

    def pe_outputs(self, layer_index, last):
        """Per PE the list of (row, value) it will emit for this layer."""
        out_f = SIZES[layer_index + 1]
        res = []
        for p in range(N):
            rows = range(p, out_f, N)
            if last:
                pick = [-7, 1000, 1000, self.rng.randrange(-2**31, 2**31)]   # ties included
                res.append([(r, self.rng.choice(pick)) for r in rows])
            else:
                keep = self.rng.random()
                res.append([(r, self.rng.randrange(1, 256)) for r in rows
                            if self.rng.random() < keep])
        return res

    async def run_layer(self, li, acts, outputs, x=None, timeout=20000):
        """Start layer ``li``; returns the logits received (last layer)."""
        d = self.dut
        last = li == len(SIZES) - 2
        # i_input must not be taken outside layer 0
        if li != 0:
            await FallingEdge(d.clk)
            d.i_input__valid.value = 1
            await ReadOnly()
            assert not int(d.i_input__ready.value), f"layer {li}: i_input ready outside layer 0"
            await FallingEdge(d.clk)
            d.i_input__valid.value = 0
        await FallingEdge(d.clk)
        d.i_layer.value = pack_fields(self.lay, index=li, in_features=SIZES[li],
                                      out_features=SIZES[li + 1], last=int(last),
                                      relu=int(not last))
        d.i_start.value = 1
        await FallingEdge(d.clk)
        d.i_start.value = 0
        expect = [[(c, v) for c, v in acts if not self.skipped(li, p, c)] for p in range(N)]
        got = [[] for _ in range(N)]
        phase = self.phase
        phase[:] = ["recv"] * N
        logits = []
        bdone = 0
        bend = 0
        items = []
        if x is not None:
            # K values per word; the lanes past the vector's end carry garbage (ignored)
            items = pack_input_words(CFG, x, fill=self.rng.randrange(256))
            self.inp.send(items)
        sent = self.inp.sent
        layer0_cycles = sum(max(1, -(-sum(1 for v in x[w:w + K] if v) // WIDTH))
                            for w in range(0, len(x), K)) if x is not None else 0
        for cyc in range(timeout):
            # drive
            self.inp.drive()
            for p in range(N):
                self.acts[p].drive()
                self.outs[p].drive()
            self.logit.drive()
            await ReadOnly()
            # sample
            self.inp.sample()
            if EARLY and int(d.o_bend.value):
                # the end token is in every FIFO: the broadcast side is free
                bend += 1
                assert bend == 1, f"layer {li}: o_bend pulsed twice"
                assert int(d.o_bidle.value), f"layer {li}: o_bend without o_bidle"
            if int(d.o_bdone.value):
                assert not EARLY or bend == 1, f"layer {li}: o_bdone before o_bend"
                assert all(ph != "recv" for ph in phase), \
                    f"layer {li}: o_bdone before every PE took its end token ({phase})"
                bdone += 1
                assert bdone == 1, f"layer {li}: o_bdone pulsed twice"
            if int(d.o_done.value):
                assert last, f"layer {li}: o_done on a hidden layer"
                assert all(ph == "done" for ph in phase), \
                    f"layer {li}: o_done before all end tokens ({phase})"
                assert bdone == 1, f"layer {li}: o_done without o_bdone"
                break
            if not last and bdone and all(ph == "done" for ph in phase) \
                    and int(d.o_idle.value):
                # hidden layer: broadcast over (o_bdone) and every output collected
                break
            for p in range(N):
                word = self.acts[p].sample()
                if word is not None:
                    f = unpack_fields(self.bl, word)
                    if f["end"]:
                        if li > 0 and WIDTH == 2:   # bank order: each column once
                            assert sorted(got[p]) == sorted(expect[p]), \
                                f"layer {li} PE {p}: broadcast {got[p]}, expected {expect[p]}"
                        else:
                            assert got[p] == expect[p], \
                                f"layer {li} PE {p}: broadcast {got[p]}, expected {expect[p]}"
                        phase[p] = "emit"
                        # (a PE reports its local row r // N)
                        self.outs[p].send([pack_fields(self.ol, row=r // N, value=v)
                                           for r, v in outputs[p]] + [pack_fields(self.ol, end=1)])
                        if li > 0 and P_READY >= 1.0:
                            # the merge delivers one word per cycle after a 4-cycle start
                            assert cyc <= len(acts) + 5 + SKIP_LATENCY, \
                                f"layer {li}: {len(acts)} words + end took {cyc + 1} cycles"
                        if li == 0 and P_READY >= 1.0 and P_VALID >= 1.0:
                            # a word without non-zero inputs takes one cycle, else one per
                            # non-zero input; the end token follows
                            # (two words per cycle: a PE still takes one per cycle)
                            bound = max(layer0_cycles, max(len(e) for e in expect) + 1)
                            assert cyc <= bound + 1 + SKIP_LATENCY, \
                                f"layer 0: {layer0_cycles} cycles of input, end at {cyc}"
                    else:
                        got[p].append((f["col"], f["value"]))
                if self.outs[p].sample() and self.outs[p].idle:
                    phase[p] = "done"
            if int(d.o_logit__valid.value):
                assert last, f"layer {li}: o_logit valid on a hidden layer"
            word = self.logit.sample()
            if word is not None:
                logits.append(unpack_fields(self.ll, word))
            await FallingEdge(d.clk)
        else:
            raise AssertionError(f"layer {li}: no o_done after {timeout} cycles ({phase})")
        await FallingEdge(d.clk)
        for p in range(N):
            self.outs[p].valid.value = 0
            self.acts[p].stop()
        self.inp.valid.value = 0
        self.logit.stop()
        xi = self.inp.sent - sent
        if x is not None:
            assert xi == len(items), f"only {xi} of {len(items)} inputs taken"
        await ReadOnly()
        assert not int(d.o_done.value), "o_done longer than one cycle"
        await FallingEdge(d.clk)
        return logits

    async def inference(self, x, bad_length=False):
        if bad_length:          # ``last`` one word early: the final input word is not sent
            x = x[:(-(-len(x) // K) - 1) * K]
        sent = x
        acts = [(j, v) for j, v in enumerate(sent) if v]
        n_layers = len(SIZES) - 1
        for li in range(n_layers):
            last = li == n_layers - 1
            outputs = self.pe_outputs(li, last)
            logits = await self.run_layer(li, acts, outputs, x=x if li == 0 else None)
            for _ in range(self.rng.randrange(3)):
                await FallingEdge(self.dut.clk)
            acts = [o for per_pe in outputs for o in per_pe]
            if not BREAK:
                acts.sort()
        flat = sorted(o for per_pe in outputs for o in per_pe)
        want = [v for _, v in flat]
        assert [f["index"] for f in logits] == list(range(len(want))), "logit indices"
        assert [_signed(f["value"], CFG.acc_bits) for f in logits] == want, "logit values"
        assert [f["last"] for f in logits] == [0] * (len(want) - 1) + [1], "last flags"
        amax = max(range(len(want)), key=lambda k: (want[k], -k))
        assert int(self.dut.o_argmax.value) == amax, \
            f"argmax {int(self.dut.o_argmax.value)}, expected {amax} of {want}"

    def make_input(self, n):
        if n == 0:
            return [0] * SIZES[0]
        if n == 1:
            return [self.rng.randrange(1, 256) for _ in range(SIZES[0])]
        if n == 2:              # MNIST-like: zero runs (whole zero words) around a dense middle
            a = self.rng.randrange(SIZES[0] // 2)
            b = self.rng.randrange(a, SIZES[0])
            return [self.rng.randrange(1, 256) if a <= j < b and self.rng.random() < 0.7 else 0
                    for j in range(SIZES[0])]
        dens = self.rng.random()
        return [self.rng.randrange(1, 256) if self.rng.random() < dens else 0
                for _ in range(SIZES[0])]


@cocotb.test()
async def central_broadcast_merge_order(dut):
    """Zero-free broadcast, sorted merge, barrier and logit order with random stalls."""
    tb = TB(dut, SEED)
    await tb.reset()
    for n in range(INPUTS):
        await tb.inference(tb.make_input(n))
        assert int(dut.o_error.value) == 0, f"input {n}: o_error {int(dut.o_error.value)}"
        assert int(dut.o_idle.value)


@cocotb.test()
async def central_flags_bad_length(dut):
    """``last`` one input early: the vector ends there and ``o_error.input`` is set."""
    tb = TB(dut, SEED + 1)
    await tb.reset()
    await tb.inference(tb.make_input(1), bad_length=True)
    assert int(dut.o_error.value) & 1, "o_error.input not set"
