"""Link benchmark: images/s over the simulated UART at the line rate (every result checked
bit-exact against sw.golden) and the figure expected on a real board from a model of the link.

Command line::

    python -m hw.linkbench [--model models/lenet300.npz] [--images 200] [--board icebreaker]
                           [--baud 3000000] [--usb-latency-ms 1] [--rx-buffer 512] [--json F]

Prints the request bytes per MNIST test image (dense, sparse pairs, coded; mean and worst over
all 10,000), runs the iCEBreaker's configuration (accelerator sized for the model as
``hw.build`` does, memories simulated generically) in Verilator at the board's clock with the
host runtime streaming coded requests (``sw.host.Board.infer_stream``), and prints the measured
rate next to :func:`link_model`'s prediction for the simulated link and for a real board.
"""
import argparse
import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from boards import get_board
from contract.config import AcceleratorConfig
from gateware.top import SimTop
from hw import build
from hw.build import BuildError
from hw.verilator import SimulationFailed, run_bench
from sw.cli import EXIT_MISMATCH, EXIT_OK, ToolError, command
from sw.golden import IntModel, ideal_cycles, images_to_uint8, load_mnist
from sw.incode import frame_bytes
from sw.modelfile import load_model

__all__ = ["LinkBenchError", "LinkModel", "link_model", "request_sizes", "run_simulation",
           "build_parser", "main"]

ROOT = Path(__file__).resolve().parent.parent


class LinkBenchError(ToolError):
    """The benchmark cannot run (missing model, simulation failure)."""


@dataclass
class LinkModel:
    """Expected images/s of a streamed link and what bounds it.

    Attributes
    ----------
    line : float
        The request line alone (10 bits per byte) or the response line, whichever is slower.
    board : float
        The board alone: decoding, the accelerator and sending the response (the protocol
        engine waits for the transmitter).
    window : float
        Requests in flight (receive buffer / request bytes) over the time one request takes
        from its first byte to its response at the host (line, board, USB latency).
    rate : float
        The smallest of the three.
    """
    line: float
    board: float
    window: float

    @property
    def rate(self):
        return min(self.line, self.board, self.window)

    @property
    def bound(self):
        return min(("line", self.line), ("board", self.board), ("window", self.window),
                   key=lambda kv: kv[1])[0]


def link_model(request_bytes, response_bytes, baud, clock_hz, accel_cycles, in_features,
               rx_buffer, usb_latency_s):
    """:class:`LinkModel` for mean ``request_bytes`` and ``response_bytes`` per image.

    The board handles one request at a time: it decodes the payload (one clock per byte plus one
    per zero written, at most ``in_features``), runs the accelerator (``accel_cycles``) and sends
    the response at the line rate; the receive FIFO takes the next requests meanwhile.
    ``usb_latency_s`` is the delay a response waits on its way to the host (the FTDI latency
    timer, USB polling, the host's scheduling; 0 in simulation).
    """
    byte_s = 10 / baud
    t_request = request_bytes * byte_s
    t_response = response_bytes * byte_s
    t_board = (request_bytes + in_features + accel_cycles) / clock_hz + t_response
    in_flight = rx_buffer / request_bytes
    round_trip = t_request + t_board + usb_latency_s
    return LinkModel(line=1 / max(t_request, t_response), board=1 / t_board,
                     window=in_flight / round_trip)


def request_sizes(images):
    """``{kind: (mean, worst)}`` request frame bytes of ``images`` for dense, sparse, coded."""
    out = {}
    for kind in ("dense", "sparse", "coded"):
        sizes = np.array([frame_bytes(kind, x) for x in images])
        out[kind] = (float(sizes.mean()), int(sizes.max()))
    return out


def board_config(board, model):
    """The accelerator configuration ``hw.build`` uses for ``board`` and ``model``, with generic
    memories (simulation)."""
    spec = get_board(board)
    # the board's profile and PE count, simulated with generic memories of the board's depth
    config = dataclasses.replace(build.board_config(spec), memory="lib")
    return build.size_config(model, config), spec


def run_simulation(model, images, board="icebreaker", baud=3_000_000, rx_buffer=512,
                   window=None, log=print):
    """Run the simulated board; returns the JSON dict of ``tb/top/test_linkbench.py``."""
    try:
        config, spec = board_config(board, model)
    except (BuildError, ValueError) as exc:
        raise LinkBenchError(str(exc)) from None
    clock_hz = spec.design_clock_hz or 12_000_000
    timeout = 2000 * (clock_hz // baud)
    top = SimTop(config, clock_hz=clock_hz, baud=baud, timeout=timeout, accel_timeout=1 << 22,
                 rx_fifo_depth=rx_buffer)
    log(f"simulating {board} ({config.n_pes} PE, {clock_hz / 1e6:g} MHz, {baud / 1e6:g} "
        f"Mbaud, {rx_buffer}-byte receive buffer) with {images} images ...")
    try:
        return run_bench(top, toplevel="sim_top", test_module="tb.top.test_linkbench",
                         name=f"linkbench_{board}_{rx_buffer}",
                         params={"model": str(Path(model).resolve()), "images": images,
                                 "clock_hz": clock_hz, "divisor": top.divisor,
                                 "timeout": timeout, "window": window or 0})
    except SimulationFailed as exc:
        detail = json.dumps(exc.result, indent=1) if exc.result is not None else ""
        raise LinkBenchError(f"simulation failed: {exc}\n{detail}") from None


def build_parser():
    """The command line's options (``python -m hw.linkbench``)."""
    ap = argparse.ArgumentParser(prog="python -m hw.linkbench", description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="models/lenet300.npz")
    ap.add_argument("--images", type=int, default=200, help="images streamed in simulation")
    ap.add_argument("--board", default="icebreaker")
    ap.add_argument("--baud", type=int, default=3_000_000)
    ap.add_argument("--rx-buffer", type=int, default=512,
                    help="receive FIFO bytes of the simulated board (requests in flight)")
    ap.add_argument("--usb-latency-ms", type=float, default=1.25,
                    help="real board: delay of a response to the host (FTDI latency timer "
                         "lowered to 1 ms + USB polling and scheduling)")
    ap.add_argument("--no-sim", action="store_true", help="sizes and the link model only")
    ap.add_argument("--json", help="write the figures to this file")
    return ap


@command
def main(argv=None):
    """Command line: request sizes, the simulated link's images/s and the link model (exit
    status 3 when a simulated result differs from sw.golden)."""
    args = build_parser().parse_args(argv)
    if not Path(args.model).exists():
        raise LinkBenchError(f"model file {args.model} not found")
    int_model = IntModel.from_model(load_model(args.model))
    test_x, _ = load_mnist()["test"]
    sizes = request_sizes(images_to_uint8(test_x))
    n_out = int_model.out_features
    resp_full, resp_compact = 4 * n_out + 13, 13
    print(f"request bytes per MNIST test image ({len(test_x)} images, frame included; "
          f"sw.incode):")
    for kind, (mean, worst) in sizes.items():
        print(f"  {kind:7s} mean {mean:6.1f}  worst {worst:4d}")
    print(f"response bytes: RESULT with {n_out} logits {resp_full}, compact {resp_compact}")
    report = {"sizes": sizes, "response_bytes": {"full": resp_full, "compact": resp_compact}}
    config, spec = board_config(args.board, args.model)
    clock_hz = spec.design_clock_hz or 12_000_000
    cycles = None
    if not args.no_sim:
        sim = run_simulation(args.model, args.images, args.board, args.baud, args.rx_buffer)
        report["simulation"] = sim
        cycles = sim["full"]["cycles_mean"]
        n = sim["images"]
        print(f"simulated link ({n} images, {sim['n_pes']} PE at {sim['clock_hz'] / 1e6:g} "
              f"MHz, {args.baud / 1e6:g} Mbaud, window {sim['window']} bytes; model "
              f"uploaded: {sim['words']} words in {sim['upload_s']:.3f} s):")
        print(f"  full results:    {n / sim['full']['seconds']:7.1f} images/s, "
              f"{sim['full']['mismatches']} mismatches vs sw.golden (logits and argmax), "
              f"accuracy {100 * sim['full']['correct'] / n:.1f} %, "
              f"{cycles:.0f} accelerator cycles/image")
        print(f"  compact results: {n / sim['compact']['seconds']:7.1f} images/s, "
              f"{sim['compact']['mismatches']} wrong predictions vs sw.golden")
        model_sim = link_model(sim["request_bytes"], resp_full, args.baud, clock_hz, cycles,
                               int_model.in_features, sim["window"], 0.0)
        print(f"  the link model for these images ({sim['request_bytes']:.1f} request bytes): "
              f"{model_sim.rate:.1f} images/s ({model_sim.bound}-bound)")
    if cycles is None:
        x = images_to_uint8(test_x[:50])
        cycles = float(np.mean(ideal_cycles(int_model, x, config.n_pes).ideal)) * 1.15
    req = sizes["coded"][0]
    models = {}
    for name, latency, buffer in [("simulated link", 0.0, args.rx_buffer),
                                  ("real board", args.usb_latency_ms / 1e3, args.rx_buffer),
                                  ("real board, default 16 ms latency timer",
                                   (16 + args.usb_latency_ms - 1) / 1e3, args.rx_buffer),
                                  ("real board, 1024-byte receive buffer",
                                   args.usb_latency_ms / 1e3, 1024)]:
        for kind, resp in (("full", resp_full), ("compact", resp_compact)):
            lm = link_model(req, resp, args.baud, clock_hz, cycles,
                            int_model.in_features, buffer, latency)
            models[f"{name}, {kind}"] = lm
    print(f"link model ({args.baud / 1e6:g} Mbaud, 10 bits/byte, {req:.1f} request bytes, "
          f"{cycles:.0f} accelerator cycles at {clock_hz / 1e6:g} MHz, {args.rx_buffer}-byte "
          f"receive buffer unless stated, USB latency {args.usb_latency_ms:g} ms):")
    for name, lm in models.items():
        print(f"  {name:50s} {lm.rate:7.1f} images/s (line {lm.line:.0f}, board "
              f"{lm.board:.0f}, window {lm.window:.0f}: {lm.bound}-bound)")
    report["model"] = {k: dict(rate=v.rate, line=v.line, board=v.board, window=v.window)
                       for k, v in models.items()}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    if not args.no_sim and (report["simulation"]["full"]["mismatches"]
                            or report["simulation"]["compact"]["mismatches"]):
        return EXIT_MISMATCH
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
