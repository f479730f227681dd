"""Cycle profile of the accelerator: where each PE's cycles go, per layer.

::

    python -m hw.profile [--model models/lenet300.npz] [--pes 4] [--image I] [--images K]
                         [--pointer-ports P] [--balance data|greedy|none]

The accelerator (``gateware.accelerator.Accelerator`` with ``hw.bench.bench_config``, hidden neurons
renumbered by ``sw.balance.balance_model`` as for the board) is simulated with Amaranth's Python
simulator: the packed model is written through ``i_load``, MNIST test images ``I .. I+K-1`` go
through ``i_input`` back to back (``input_lanes`` values per word) and every logit is compared
with ``sw.golden.infer`` (:class:`ProfileError` on any difference).

Per layer the window runs from the cycle the sequencer's ``o_start`` is high to the cycle before
the next layer's ``o_start`` (the last layer: to the cycle the central unit's ``o_done`` is high),
so the layers of an inference tile it. Each PE is classified over its *own* window: from the
cycle its column engine acts on the layer's start to the cycle before it acts on the next one
(the last layer: to ``o_done``). Without the early start (``AcceleratorConfig.early``) that is
the layer's window; with it a PE still busy with layer L acts on L + 1's start at its
hand-over, so its windows are shifted against the sequencer's (``LayerProfile.span``). A PE's
requantization engine works on layer L while its column engine runs layer L + 1 (gateware.pe): the
classes describe the column engine, so layer L's requantization is hidden in layer L + 1's
window except where the column engine waits for it.
Every cycle of every PE in the window falls in exactly one class (:data:`CLASSES`):

``start``    the start pulse and the header reads (column engine idle or in its header state
             before its RUN state)
``decode``   the decoder fires (one joint symbol, filler or not, leaves the table compare)
``table``    the decoder loads the layer's Huffman limits while it has a segment to decode
``words``    a segment (current, or pending and next) waits for its stream words
``stale``    the decoder re-reads a stale peek (bits arrived in the same cycle)
``other``    a segment is there but nothing of the above explains the missing decode
``segment``  no segment in the decoder but one in flight behind it: pointer fetch, segment and
             word queues, or an activation in the FIFO not yet taken
``input``    nothing in flight up to the decoder and the activation FIFO is empty (waiting for
             the broadcast; the accumulate pipeline may still be finishing)
``drain``    the ``end`` token is at the FIFO head, waiting for the accumulate pipeline (or for
             the requantization engine to finish the previous layer)
``requant``  after the hand-over, the column engine idle while this layer is requantized
``barrier``  after the hand-over, nothing to do: waiting for the other PEs (the next layer's
             start) or the central unit's ``o_done``

``decode`` counts the symbols a PE decodes in its RUN state. :func:`check_profile` (run by
:func:`profile_int_model`) insists that every PE's classes add up to its window and that
the symbols decoded in the window equal the golden per-PE work (non-zeros and fillers,
``sw.golden.ideal_cycles(...).pe_work``), all of them in RUN. The ideal bound of the layer is
``ceil(MACs / N)``, of a conv layer the sum of that over its output positions
(``sw.golden.ideal_cycles(...).layer_ideal``, docs/ARCHITECTURE.md section 6).
"""
import argparse
import sys
from dataclasses import dataclass

import numpy as np
from amaranth import Cat, Module, Signal, Value
from amaranth.hdl import Fragment
from amaranth.sim import Simulator

from boards import get_board
from gateware.accelerator import Accelerator
from hw.bench import _model, board_features
from hw.simcase import bench_config, case_from_int_model
from sw.balance import METHODS, balance_model
from sw.cli import ToolError, add_column_code, command, huffman_of
from sw.golden import ideal_cycles, images_to_uint8, infer, load_mnist

__all__ = ["ProfileError", "CLASSES", "LayerProfile", "Profile", "profile_int_model",
           "check_profile", "format_profile", "build_parser", "main"]

#: Cycle classes, in the order of the printed columns.
CLASSES = ("start", "decode", "table", "words", "stale", "other", "segment", "input", "drain",
           "requant", "barrier")

# PE states (gateware.pe.ProcessingElement): column engine IDLE, HDR, RUN = 0, 1, 2;
# requantization engine RIDLE, REQ, ENDT = 0, 1, 2. The classes need RUN and RIDLE.
_RUN = 2
_RIDLE = 0

# per-PE bits sampled every cycle (names of ProcessingElement._probe, "d_" = HuffmanDecoder._probe,
# "act_*" = the PE's i_act port); "start": the column engine acts on a layer start
_PE_FIELDS = ("start", "state", "rstate", "pi_busy", "pr_valid", "segq_level", "wf_active",
              "seg_valid", "d_fire", "d_from_pend", "d_cur_valid", "d_pend_valid", "d_have_bits",
              "d_s_ok", "d_loading", "d_rem_zero", "act_valid", "act_end")


class ProfileError(ToolError):
    """The profile cannot run or the accelerator's logits differ from the golden model."""


@dataclass
class LayerProfile:
    """One layer, summed over the profiled images.

    Attributes
    ----------
    cycles : int
        Window cycles (``o_start`` to ``o_done``, both included).
    ideal : int
        ``sum ceil(MACs / N)`` (section 6; conv layers: per output position).
    macs : int
    work : numpy.ndarray
        int ``(N,)`` golden symbols per PE (``pe_work``).
    classes : numpy.ndarray
        int ``(N, len(CLASSES))`` cycles per PE and class; each row sums to ``cycles``.
    run : numpy.ndarray
        int ``(N,)`` cycles each PE spent in its RUN state.
    symbols : numpy.ndarray
        int ``(N,)`` cycles the decoder fired in the window (any state; equals ``work``).
    end_token : numpy.ndarray
        int ``(N,)`` cycle (from the PE's layer start) the ``end`` token reached each PE's FIFO
        head: the central unit's broadcast was over.
    span : numpy.ndarray
        int ``(N,)`` cycles of each PE's window: from the cycle its column engine acts on the
        layer's start to the cycle before it acts on the next one (the last layer: to
        ``o_done``). Equal to ``cycles`` unless the early start (``config.early``) lets a PE
        begin a layer after the sequencer's ``o_start``.
    """
    cycles: int
    ideal: int
    macs: int
    work: np.ndarray
    classes: np.ndarray
    run: np.ndarray
    symbols: np.ndarray
    end_token: np.ndarray
    span: np.ndarray

    def count(self, name):
        """int ``(N,)`` cycles of class ``name`` per PE."""
        return self.classes[:, CLASSES.index(name)]


@dataclass
class Profile:
    """Result of :func:`profile_int_model`.

    ``layers`` sums every image; ``per_image`` holds the layers of each image (same type);
    ``inference`` the accelerator's ``o_cycles`` per image (first input to final logit) and
    ``ideal`` the golden bound per image; ``logits`` int ``(n, out)``.
    """
    n_pes: int
    layers: list
    per_image: list
    inference: list
    ideal: list
    logits: np.ndarray
    load_words: int = 0     # words written through i_load
    sim_cycles: int = 0     # cycles recorded (first offered input word to the final o_done)
    early: bool = False     # the configuration's early start (PE windows differ from o_start)


def _classify(rec, windows):
    """Class index per PE and cycle of PE ``p``'s window ``windows[p] = (s, d)`` (cycles
    ``s..d``) from the recorded field arrays.

    Returns per PE (lists): int ``(d - s + 1,)`` indices into :data:`CLASSES`, the RUN mask,
    the decoder fire mask (same shape), and int ``(N,)`` the first cycle (from ``s``) with the
    ``end`` token at the PE's FIFO head."""
    n_pes = len(windows)
    out, runs, fires = [None] * n_pes, [None] * n_pes, [None] * n_pes
    end_at = np.zeros(n_pes, dtype=np.int64)
    C = {n: i for i, n in enumerate(CLASSES)}
    for p, (s, d) in enumerate(windows):
        g = {k: rec[f"{p}_{k}"][s:d + 1] for k in _PE_FIELDS}
        b = {k: v.astype(bool) for k, v in g.items()}
        st = g["state"]
        run = st == _RUN
        # before the column engine's RUN state in this window: start pulse and header; after
        # it (the layer was handed over): its requantization, then the barrier
        seen = np.maximum.accumulate(run)
        cls = np.full(st.shape, C["barrier"])
        cls[~seen] = C["start"]
        cls[seen & ~run & (g["rstate"] != _RIDLE)] = C["requant"]
        # RUN
        fire = b["d_fire"]
        has = b["d_from_pend"] | (b["d_cur_valid"] & ~b["d_rem_zero"])
        pend = ~has & b["d_pend_valid"]
        busy = has | pend
        upstream = (b["pi_busy"] | b["pr_valid"] | (g["segq_level"] > 0) | b["wf_active"]
                    | b["seg_valid"] | (b["act_valid"] & ~b["act_end"]))
        nf = run & ~fire
        sel = [
            (run & fire, "decode"),
            (nf & busy & b["d_loading"], "table"),
            (nf & pend & ~b["d_loading"], "words"),
            (nf & has & ~b["d_loading"] & ~b["d_have_bits"], "words"),
            (nf & has & ~b["d_loading"] & b["d_have_bits"] & ~b["d_s_ok"], "stale"),
            (nf & has & ~b["d_loading"] & b["d_have_bits"] & b["d_s_ok"], "other"),
            (nf & ~busy & upstream, "segment"),
            (nf & ~busy & ~upstream & ~b["act_valid"], "input"),
            (nf & ~busy & ~upstream & b["act_valid"] & b["act_end"], "drain"),
        ]
        cover = sum(mask.astype(np.int64) for mask, _ in sel)
        if not np.array_equal(cover, run.astype(np.int64)):
            raise ProfileError(f"PE {p}: RUN cycles not classified exactly once")
        for mask, name in sel:
            cls[mask] = C[name]
        out[p] = cls
        runs[p] = run
        fires[p] = fire
        ends = np.flatnonzero(b["act_valid"] & b["act_end"])
        if len(ends) == 0:
            raise ProfileError(f"PE {p} saw no end token between cycles {s} and {d}")
        end_at[p] = ends[0]
    return out, runs, fires, end_at


def _simulate(cfg, loads, inputs):
    """Load the accelerator, then run ``inputs`` back to back; returns the recorded fields
    (dict of int arrays, one entry per cycle from the first offered input word to the final
    ``o_done``), the logits ``(n, out)`` and the ``o_cycles`` of each image."""
    dut = Accelerator(cfg)
    frag = Fragment.get(dut, None)          # elaborates every PE: their _probe dicts exist now
    m = Module()
    m.submodules.acc = frag
    parts = [("start", dut._seq.o_start), ("done", dut._central.o_done),
             ("in_ready", dut.i_input.ready), ("logit_valid", dut.o_logit.valid),
             ("logit_last", dut.o_logit.payload.last)]
    for p, pe in enumerate(dut._pes):
        probe = dict(pe._probe)
        probe.update({"d_" + k: v for k, v in pe._dec._probe.items()})
        probe["act_valid"] = pe.i_act.valid
        probe["act_end"] = pe.i_act.payload.end
        parts += [(f"{p}_{k}", probe[k]) for k in _PE_FIELDS]
    sigs = [Value.cast(s) for _, s in parts]
    widths = [len(s) for s in sigs]
    packed = Signal(sum(widths))
    m.d.comb += packed.eq(Cat(*sigs))

    sim = Simulator(m)
    sim.add_clock(1e-6)
    K = cfg.input_lanes
    words = []                              # (lanes, last) of every image, back to back
    for x in inputs:
        n = len(x)
        for k in range(0, n, K):
            words.append(([int(x[j]) if j < n else 0 for j in range(k, k + K)], k + K >= n))
    trace = []
    logits = []
    cycles = []
    n_img = len(inputs)

    async def tb(ctx):
        for mem, addr, d in loads:
            ctx.set(dut.i_load.valid, 1)
            ctx.set(dut.i_load.payload, {"mem": mem, "addr": addr, "data": d})
            # the accelerator takes loads only while idle (not during the clearing sweep
            # after reset): hold the word until it is taken, as the stream rules say
            while not ctx.get(dut.i_load.ready):
                await ctx.tick()
            await ctx.tick()
        ctx.set(dut.i_load.valid, 0)
        await ctx.tick().repeat(10)
        ctx.set(dut.o_logit.ready, 1)
        w = 0
        cur = []
        read_cycles = False
        limit = 200_000 * n_img
        while True:
            if w < len(words):
                ctx.set(dut.i_input.valid, 1)
                ctx.set(dut.i_input.payload, {"value": words[w][0], "last": int(words[w][1])})
            else:
                ctx.set(dut.i_input.valid, 0)
            v = ctx.get(packed)
            trace.append(v)
            if read_cycles:                 # o_cycles is updated the cycle after the last logit
                cycles.append(ctx.get(dut.o_cycles))
                read_cycles = False
            if len(logits) == n_img and v & 2:
                break                       # the final layer's barrier
            if w < len(words) and v & 4:
                w += 1
            if v & 8:
                val = ctx.get(dut.o_logit.payload.value)     # acc_bits, two's complement
                cur.append(val - ((val >> (cfg.acc_bits - 1)) << cfg.acc_bits))
                if v & 16:
                    logits.append(cur)
                    cur = []
                    read_cycles = True
            if len(trace) >= limit:
                raise ProfileError(f"no final o_done after {limit} cycles")
            await ctx.tick()
        err = ctx.get(dut.o_error.as_value())
        if err:
            raise ProfileError(f"accelerator error flags {err:#x}")

    sim.add_testbench(tb)
    sim.run()

    tr = np.array(trace, dtype=object)
    rec = {}
    off = 0
    names = [n for n, _ in parts]
    for name, wd in zip(names, widths):
        mask = (1 << wd) - 1
        rec[name] = np.array([(int(t) >> off) & mask for t in tr], dtype=np.int64)
        off += wd
    return rec, np.array(logits, dtype=np.int64), cycles


def profile_int_model(int_model, x, n_pes, config=None):
    """Profile ``int_model`` (already balanced if it is to be) on inputs ``x`` (int ``(n, in)``).

    ``config``: an ``AcceleratorConfig`` (default ``hw.bench.bench_config(int_model, n_pes)``).
    Raises :class:`ProfileError` when a logit differs from ``sw.golden.infer``.
    """
    cfg = config or bench_config(int_model, n_pes)
    x = np.atleast_2d(np.asarray(x, dtype=np.int64))
    case = case_from_int_model(int_model, x, cfg)
    res = infer(int_model, x)
    cs = ideal_cycles(int_model, x, cfg.n_pes, result=res)
    n_layers = len(int_model.layers)
    rec, logits, o_cycles = _simulate(cfg, case["loads"], case["inputs"])
    golden = np.asarray(res.logits, dtype=np.int64)
    if logits.shape != golden.shape or not np.array_equal(logits, golden):
        bad = [i for i in range(len(golden))
               if i >= len(logits) or not np.array_equal(logits[i], golden[i])]
        raise ProfileError(f"logits differ from sw.golden.infer on input(s) {bad}: "
                           f"{logits.tolist()} vs {golden.tolist()}")
    starts = np.flatnonzero(rec["start"])
    dones = np.flatnonzero(rec["done"])
    if len(starts) != len(x) * n_layers or len(dones) != len(x):
        raise ProfileError(f"{len(starts)} layer starts and {len(dones)} inference ends for "
                           f"{len(x)} input(s) of {n_layers} layers")
    N = cfg.n_pes
    # each PE's own layer starts (with the early start a PE may act on a start later than the
    # sequencer's o_start, at its hand-over of the previous layer)
    pe_starts = [np.flatnonzero(rec[f"{p}_start"]) for p in range(N)]
    for p, ps in enumerate(pe_starts):
        if len(ps) != len(starts) or np.any(ps < starts):
            raise ProfileError(f"PE {p} acted on {len(ps)} layer starts, the sequencer issued "
                               f"{len(starts)}")
    per_image = []
    total = [None] * n_layers
    for i in range(len(x)):
        layers = []
        for li in range(n_layers):
            k = i * n_layers + li
            s = int(starts[k])
            d = int(dones[i]) if li == n_layers - 1 else int(starts[k + 1]) - 1
            if d < s:
                raise ProfileError(f"barrier at {d} before the layer start at {s}")
            windows = [(int(ps[k]), d if li == n_layers - 1 else int(ps[k + 1]) - 1)
                       for ps in pe_starts]
            if any(pd < ps_ for ps_, pd in windows):
                raise ProfileError(f"image {i} layer {li}: a PE window ends before it starts")
            cls, run, fire, end_at = _classify(rec, windows)
            counts = np.stack([np.bincount(c, minlength=len(CLASSES)) for c in cls])
            macs = int(cs.macs[i, li])
            lp = LayerProfile(cycles=d - s + 1, ideal=int(cs.layer_ideal[i, li]), macs=macs,
                              work=cs.pe_work[i, li].astype(np.int64).copy(),
                              classes=counts, run=np.array([r.sum() for r in run]),
                              symbols=np.array([f.sum() for f in fire]), end_token=end_at,
                              span=np.array([pd - ps_ + 1 for ps_, pd in windows]))
            layers.append(lp)
            if total[li] is None:
                total[li] = LayerProfile(0, 0, 0, np.zeros(N, np.int64),
                                         np.zeros_like(counts), np.zeros(N, np.int64),
                                         np.zeros(N, np.int64), np.zeros(N, np.int64),
                                         np.zeros(N, np.int64))
            t = total[li]
            t.cycles += lp.cycles
            t.ideal += lp.ideal
            t.macs += lp.macs
            t.work += lp.work
            t.classes += lp.classes
            t.run += lp.run
            t.symbols += lp.symbols
            t.end_token += lp.end_token
            t.span += lp.span
        per_image.append(layers)
    prof = Profile(n_pes=N, layers=total, per_image=per_image, inference=list(o_cycles),
                   ideal=[int(v) for v in cs.ideal], logits=logits,
                   load_words=len(case["loads"]), sim_cycles=len(rec["start"]),
                   early=cfg.early)
    check_profile(prof)
    return prof


def check_profile(prof):
    """Raise :class:`ProfileError` unless, in every layer of every image and in the sums, every
    PE's classes add up to its window (``span``; the layer's cycles without the early start),
    the decoder fired ``work`` times (the golden
    per-PE symbols) and only in RUN (``decode`` == ``symbols``)."""
    groups = [(f"image {i} layer {li}", lp) for i, ls in enumerate(prof.per_image)
              for li, lp in enumerate(ls)]
    groups += [(f"sum layer {li}", lp) for li, lp in enumerate(prof.layers)]
    for name, lp in groups:
        sums = lp.classes.sum(axis=1)
        if not np.array_equal(sums, lp.span):
            raise ProfileError(f"{name}: classes per PE sum to {sums.tolist()}, not "
                               f"{lp.span.tolist()}")
        if not np.array_equal(lp.symbols, lp.work):
            raise ProfileError(f"{name}: symbols decoded {lp.symbols.tolist()}, golden work "
                               f"{lp.work.tolist()}")
        if not np.array_equal(lp.count("decode"), lp.symbols):
            raise ProfileError(f"{name}: {lp.symbols.tolist()} symbols but "
                               f"{lp.count('decode').tolist()} in RUN")


def format_profile(prof, title=""):
    """Plain-text tables (one per layer) of a :class:`Profile`."""
    lines = []
    n_img = len(prof.per_image)
    if title:
        lines.append(title)
    inf, ide = sum(prof.inference), sum(prof.ideal)
    lines.append(f"N={prof.n_pes}, {n_img} image(s): {inf} cycles (o_cycles: first input to "
                 f"final logit{', summed over the images' if n_img > 1 else ''}), ideal {ide}, "
                 f"ratio {inf / max(ide, 1):.3f}")
    if n_img > 1:
        lines.append("Per layer: sums over the images (end token at: sum of the offsets).")
    lines.append("Per PE: cycle the end token reached its FIFO head (from the layer start), cycles "
                 "in RUN, symbols decoded, then every cycle of the layer in one class.")
    short = {"start": "start", "decode": "decode", "table": "table", "words": "words",
             "stale": "stale", "other": "other", "segment": "seg", "input": "input",
             "drain": "drain", "requant": "req", "barrier": "barrier"}
    hdr = ("| PE | end token at | RUN | symbols | " + " | ".join(short[c] for c in CLASSES)
           + " |")
    for li, lp in enumerate(prof.layers):
        lines.append("")
        window = "o_start..o_done" if li == len(prof.layers) - 1 else "o_start..next o_start"
        lines.append(f"Layer {li}: {lp.cycles} cycles ({window}), ideal {lp.ideal} "
                     f"({lp.macs} MACs / {prof.n_pes}), ratio {lp.cycles / max(lp.ideal, 1):.3f}; "
                     f"golden symbols per PE {lp.work.tolist()}; "
                     + (f"every PE's classes sum to {lp.cycles}"
                        if np.all(lp.span == lp.cycles) else
                        f"each PE's classes sum to its own window (it acts on the start when it "
                        f"has handed over the previous layer: early start): {lp.span.tolist()}"))
        lines.append("")
        lines.append(hdr)
        lines.append("|" + "---|" * (4 + len(CLASSES)))
        for p in range(prof.n_pes):
            lines.append(f"| {p} | {lp.end_token[p]} | {lp.run[p]} | {lp.symbols[p]} | "
                         + " | ".join(str(v) for v in lp.classes[p]) + " |")
    return "\n".join(lines)


def build_parser():
    """The command line's options (``python -m hw.profile``)."""
    ap = argparse.ArgumentParser(prog="python -m hw.profile", description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="models/lenet300.npz")
    ap.add_argument("--pes", type=int, default=None,
                    help="PE count (default: the board's, or 4)")
    ap.add_argument("--board", default=None,
                    help="profile this board's configuration (boards/NAME.py feature profile)")
    ap.add_argument("--image", type=int, default=0, help="first MNIST test image")
    ap.add_argument("--images", type=int, default=1, help="number of images")
    ap.add_argument("--pointer-ports", type=int, default=None, choices=(1, 2),
                    help="read ports of each PE's pointer memory (default: the "
                         "AcceleratorConfig default, 2)")
    add_column_code(ap)
    ap.add_argument("--balance", choices=METHODS, default="data",
                    help="hidden-neuron order as sw.pack / hw.bench --balance (default data)")
    return ap


@command
def main(argv=None):
    a = build_parser().parse_args(argv)
    im, name = _model(a.model, False)
    features = board_features(a.board, pointer_ports=a.pointer_ports,
                              huffman=huffman_of(a.column_code))
    if a.pes is None:
        a.pes = get_board(a.board).default_pes if a.board else 4
    if a.pes < 1 or a.images < 1:
        raise ProfileError("--pes and --images must be >= 1")
    xs, _ = load_mnist()["test"]
    if not 0 <= a.image or a.image + a.images > len(xs):
        raise ProfileError(f"images {a.image}..{a.image + a.images - 1} outside the test set")
    x = images_to_uint8(xs[a.image:a.image + a.images])
    im = balance_model(im, a.pes, a.balance)[0]
    prof = profile_int_model(im, x, a.pes, bench_config(im, a.pes, **features))
    print(format_profile(prof, f"{name}, MNIST test image(s) {a.image}.."
                               f"{a.image + a.images - 1}, bit-exact vs sw.golden.infer"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
