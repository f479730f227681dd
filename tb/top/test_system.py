"""End to end: the host runtime (sw.host, in a cocotb bridge thread) uploads a packed model to
SimTop with the real accelerator over the simulated UART pins, runs images and compares every
logit with sw.golden.

Parameters (:func:`tb.bench.params`): ``n_pes``, ``clock_hz``, ``divisor``, ``timeout``,
``images``, ``latency`` (of the simulated host link, s) and either ``model`` (a calibrated
dcmodel file: MNIST test images) or ``sizes``/``density``/``seed``/``n_indices``
(sw.golden.random_int_model with random sparse inputs); with ``flash_image`` (a file: the
packed model's ``sw.flashimage`` image) and ``flash_offset`` the board loads the model from a
behavioural SPI flash at power-up instead (SimTop built with that ``flash_offset``), and the host
only checks STATUS before it runs the images.
"""
import time

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.task import bridge
from cocotb.triggers import ClockCycles

from contract.protocol import FlashState
from sw.transport import SimTransport
from tb.bench import params
from tb.top.spiflash import SpiFlash

N_PES = params().get("n_pes", 4)
CLOCK_HZ = params().get("clock_hz", 12_000_000)
DIVISOR = params().get("divisor", 4)
TIMEOUT = params().get("timeout", 4000)
IMAGES = params().get("images", 4)
CLK_PS = 2 * round(0.5e12 / CLOCK_HZ)


def model_and_inputs():
    from sw.golden import IntModel, images_to_uint8, load_mnist, random_int_model
    path = params().get("model")
    if path:
        from sw.modelfile import load_model
        int_model = IntModel.from_model(load_model(path))
        test_x, test_y = load_mnist()["test"]
        return int_model, images_to_uint8(test_x[:IMAGES]), test_y[:IMAGES]
    sizes = params().get("sizes", [48, 24, 10])
    density = params().get("density", 0.3)
    seed = params().get("seed", 1)
    int_model = random_int_model(sizes, density=density, seed=seed,
                                 n_indices=params().get("n_indices"))
    rng = np.random.default_rng(seed + 100)
    x = rng.integers(0, 256, size=(IMAGES, sizes[0])) * (rng.random((IMAGES, sizes[0])) < 0.4)
    x[0] = 0                      # an all-zero input (sparse frame with no pairs)
    if IMAGES > 1:
        x[1] = 255                # a dense, saturating one
    return int_model, x.astype(np.int64), None


@cocotb.test()
async def host_uploads_and_matches_golden(dut):
    from sw.host import Board, pack_for_board, run_benchmark
    cocotb.start_soon(Clock(dut.clk, CLK_PS, unit="ps").start())
    flash_path = params().get("flash_image")
    if flash_path:
        with open(flash_path, "rb") as f:
            # before the reset ends: the loader starts reading at power-up
            flash = SpiFlash(dut.o_flash_cs_n, dut.o_flash_sclk, dut.o_flash_copi,
                             dut.i_flash_cipo, f.read(), params()["flash_offset"])
    dut.i_rx.value = 1
    dut.rst.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 4)
    tr = SimTransport(dut, CLOCK_HZ, DIVISOR)
    tr.latency = params().get("latency", 0.01)
    int_model, x, labels = model_and_inputs()

    @bridge
    def host():
        board = Board(tr, board_timeout=4 * TIMEOUT / CLOCK_HZ)
        st = board.status()
        assert st.n_pes == N_PES, st.summary()
        t0 = time.monotonic()
        if flash_path:
            # the host's first STATUS waited in the receive FIFO while the loader ran
            assert st.fields["flash"] == FlashState.LOADED, st.summary()
            assert st.flag("loaded"), st.summary()
            words = 0
        else:
            words = board.upload(pack_for_board(st, int_model, "sim"))
        upload_s = time.monotonic() - t0
        st = board.status()
        assert st.in_features == int_model.in_features, st.summary()
        logs = []
        res = run_benchmark(board, int_model, x, labels, st.n_pes, log=logs.append)
        # Dense frames too for the first images.
        res_dense = run_benchmark(board, int_model, x[:2], None, st.n_pes, log=logs.append,
                                  sparse=False)
        # Coded requests streamed with several in flight.
        res_stream = run_benchmark(board, int_model, x, labels, st.n_pes, log=logs.append,
                                   stream=True)
        return words, upload_s, res, res_dense, res_stream, logs, board.status()

    words, upload_s, res, res_dense, res_stream, logs, st = await host()
    if flash_path:
        flash.close()
        assert flash.reads == 1 and flash.ignored == 0, "the loader read the flash once"
    cocotb.log.info(f"uploaded {words} words ({upload_s:.1f} s wall); {res.summary()}")
    assert not logs, "\n".join(logs[:5])
    assert res.mismatches == 0 and res_dense.mismatches == 0 and res_stream.mismatches == 0
    assert res_stream.cycles == res.cycles, "streaming changed the accelerator's work"
    assert st.accel_error == 0, f"accelerator error flags {st.accel_error}"
    assert all(c > 0 for c in res.cycles)
