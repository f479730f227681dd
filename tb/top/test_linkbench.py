"""Link benchmark on the simulated board (run by ``python -m hw.linkbench``): the host runtime
uploads a model over the simulated UART pins, then streams MNIST test images with several coded
requests in flight; every result is compared with sw.golden. Simulated seconds are measured.

Parameters (:func:`tb.bench.params`): ``model`` (dcmodel file), ``images``, ``clock_hz``,
``divisor``, ``timeout`` (frame timeout, clocks), ``window`` (request bytes in flight; 0: the
board's receive buffer). The bench result is the measured figures (saved before the checks, so a
failing run still reports them).
"""
import numpy as np

import cocotb
from cocotb.task import bridge

from sw import incode
from tb.bench import params, save_result
from tb.top.board import start

CLOCK_HZ = params().get("clock_hz", 24_000_000)
DIVISOR = params().get("divisor", 8)
TIMEOUT = params().get("timeout", 8000)


@cocotb.test()
async def link_benchmark(dut):
    from sw.golden import IntModel, images_to_uint8, infer, load_mnist
    from sw.host import Board, pack_for_board, run_benchmark
    from sw.modelfile import load_model
    tr = await start(dut, CLOCK_HZ, DIVISOR)
    tr.latency = 0.01
    int_model = IntModel.from_model(load_model(params()["model"]))
    n = params().get("images", 200)
    test_x, test_y = load_mnist()["test"]
    x8, labels = images_to_uint8(test_x[:n]), test_y[:n]
    window = params().get("window") or None

    @bridge
    def host():
        board = Board(tr, board_timeout=4 * TIMEOUT / CLOCK_HZ)
        st = board.status()
        packed = pack_for_board(st, int_model, "sim")
        t0 = tr.now()
        words = board.upload(packed)
        upload_s = tr.now() - t0
        st = board.status()
        logs = []
        full = run_benchmark(board, int_model, x8, labels, st.n_pes, log=logs.append,
                             stream=True, window=window)
        # compact results (prediction and cycles only): the predictions are checked
        golden = infer(int_model, x8)
        t0 = tr.now()
        compact = board.infer_stream(x8, logits=False, window=window)
        compact_s = tr.now() - t0
        wrong = sum(int(r.prediction != p) for r, p in zip(compact, golden.prediction))
        return dict(
            images=n, words=words, upload_s=upload_s, rx_buffer=st.fields["rx_buffer"],
            window=window or st.fields["rx_buffer"], n_pes=st.n_pes,
            clock_hz=st.clock_hz, divisor=st.divisor,
            full=dict(seconds=full.seconds, mismatches=full.mismatches, correct=full.correct,
                      cycles_mean=float(np.mean(full.cycles)),
                      ideal_mean=float(np.mean(full.ideal))),
            compact=dict(seconds=compact_s, mismatches=wrong),
            request_bytes=float(np.mean([incode.frame_bytes("coded", x) for x in x8])),
            logs=logs[:5])

    out = await host()
    tr.close()
    save_result(out)
    assert out["full"]["mismatches"] == 0, out["logs"]
    assert out["compact"]["mismatches"] == 0
