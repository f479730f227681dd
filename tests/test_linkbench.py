"""hw.linkbench without the simulation: request sizes, the link model and the printout."""
import numpy as np
import pytest

from hw.linkbench import link_model, main, request_sizes


def test_link_model_bounds():
    # 200-byte requests at 3 Mbaud: 1,500 requests/s on the line
    lm = link_model(200, 13, 3_000_000, 24_000_000, 6000, 784, 512, 0.0)
    assert lm.line == pytest.approx(1500)
    assert lm.board == pytest.approx(1 / ((200 + 784 + 6000) / 24e6 + 130 / 3e6))
    assert lm.bound == "line" and lm.rate == lm.line
    # a 16 ms USB latency: the window of 2.56 requests bounds it
    slow = link_model(200, 13, 3_000_000, 24_000_000, 6000, 784, 512, 0.016)
    assert slow.bound == "window" and slow.rate == pytest.approx(2.56 / (
        200 * 10 / 3e6 + 1 / lm.board + 0.016))
    # a slow accelerator bounds it
    assert link_model(200, 13, 3_000_000, 24_000_000, 60000, 784, 4096, 0).bound == "board"


def test_request_sizes():
    x = np.zeros((3, 784), dtype=np.int64)
    x[1, 100:110] = 7
    x[2] = 255
    sizes = request_sizes(x)
    assert sizes["dense"] == (790.0, 790)
    assert sizes["sparse"][1] == 6 + 3 * 784
    # coded: seq byte + tokens; an empty image is the frame and the sequence byte
    assert sizes["coded"][1] == 7 + 784 + -(-784 // 7)
    assert min(sizes["coded"]) >= 7


@pytest.mark.slow
def test_main_without_simulation(capsys):
    """(sizes of all 10,000 MNIST test images: ~30 s)"""
    import os
    if not os.path.exists("models/lenet300.npz"):
        pytest.skip("models/lenet300.npz not built yet")
    assert main(["--no-sim"]) == 0
    out = capsys.readouterr().out
    assert "coded" in out and "real board" in out and "images/s" in out
