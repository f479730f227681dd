"""The committed MLP 784-1024-1024-10 (``models/mlp1024.npz``), the model that needs the PE array.

It loads, its integer (golden) result agrees with ``sw.nn``'s float one and with the error its
report states, its report is what ``sw.report`` makes of the model file (nothing hand-written),
it fits the ULX3S's block RAM compressed where its dense weights would not, and (slow) it runs
bit exact in Verilator on the ULX3S configuration as ``hw.build`` sizes it.
"""
import json
from pathlib import Path

import numpy as np
import pytest

from sw.golden import IntModel, float_infer, images_to_uint8, infer
from sw.modelfile import load_model

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "mlp1024.npz"
REPORT_MD = ROOT / "models" / "mlp1024_report.md"
REPORT_JSON = ROOT / "models" / "mlp1024_report.json"
#: test images of the quick integer-vs-float check (the golden model's int64 products of the
#: 1.86M weights are slow: all 10,000 images run in the slow test)
QUICK = 1000

pytestmark = pytest.mark.skipif(not MODEL.exists(), reason="models/mlp1024.npz not built yet")


@pytest.fixture(scope="module")
def model():
    return load_model(MODEL)


@pytest.fixture(scope="module")
def mnist_test():
    from sw.mnist import load_mnist
    return load_mnist().test


def test_committed_mlp1024_shape_and_targets(model):
    """784-1024-1024-10, 4-bit indices, 5-bit gaps, calibrated; at least 40x everything counted,
    integer error within 0.2 % of the float one (the report's figures)."""
    assert model.arch == "mlp1024"
    assert [l.index.shape for l in model.layers] == [(1024, 784), (1024, 1024), (10, 1024)]
    assert all(l.idx_bits == 4 for l in model.layers) and model.integer.gap_bits == 5
    m = model.metrics
    assert m["ratio"] >= 40 and m["ratio_hw_4pe"] >= 40
    assert m["error"] <= 0.016 and abs(m["integer_error"] - m["error"]) <= 0.002


def test_mlp1024_float_error_is_the_reported_one(model, mnist_test):
    """sw.nn's float forward pass of the compressed weights gives the report's error on all
    10,000 test images."""
    pred = np.argmax(float_infer(model, mnist_test.images)[-1], axis=1)
    err = float((pred != mnist_test.labels).mean())
    assert model.metrics["error"] == pytest.approx(err, abs=1e-4)


def test_mlp1024_integer_matches_float(model, mnist_test):
    """On the first 1,000 test images the golden integer model (what the accelerator computes)
    predicts what sw.nn's float model predicts on at least 99.5 % of them, and the two error
    rates differ by at most 0.3 %."""
    x = mnist_test.images[:QUICK]
    y = mnist_test.labels[:QUICK]
    fpred = np.argmax(float_infer(model, x)[-1], axis=1)
    ipred = infer(IntModel.from_model(model), images_to_uint8(x)).prediction
    assert (fpred == ipred).mean() >= 0.995
    assert abs((fpred != y).mean() - (ipred != y).mean()) <= 0.003


def test_mlp1024_onnx_export(model, mnist_test):
    """The generic ONNX exporter takes the model: onnxruntime predicts what sw.nn predicts on
    the first 1,000 test images."""
    pytest.importorskip("onnxruntime")
    from sw.onnx_export import export_onnx, run_onnx
    proto = export_onnx(model)
    x = mnist_test.images[:QUICK]
    ort_pred = np.argmax(run_onnx(proto, x), axis=1)          # the graph takes byte / 256
    assert (ort_pred == np.argmax(float_infer(model, x)[-1], axis=1)).all()


@pytest.mark.slow
def test_mlp1024_integer_error_is_the_reported_one(model, mnist_test):
    """The golden integer model's error on all 10,000 test images is the report's."""
    res = infer(IntModel.from_model(model), mnist_test.uint8())
    err = float((res.prediction != mnist_test.labels).mean())
    assert model.metrics["integer_error"] == pytest.approx(err)


def test_mlp1024_report_is_the_tools(model, tmp_path):
    """The committed report (.md and .json) is what sw.report writes for the committed model file
    with the run's history: every size, ratio and error figure comes from the tool."""
    from sw.report import build_report, write_report
    committed = json.loads(REPORT_JSON.read_text())
    assert committed["command"].startswith("python -m sw.compress --model mlp1024")
    extra = {k: committed[k] for k in ("prune_history", "sensitivity_md", "command", "seconds",
                                       "plot_note") if k in committed}
    rep = build_report(model, n_pes=committed["hardware_pes"], extra=extra)
    md, js = write_report(rep, tmp_path, "mlp1024")
    assert js.read_text() == REPORT_JSON.read_text()
    assert md.read_text() == REPORT_MD.read_text()


@pytest.mark.slow
def test_mlp1024_needs_the_array_on_ulx3s(model):
    """Dense, the weights alone (even as 4-bit cluster indices) exceed all of the ULX3S's block
    RAM; compressed and packed for 8 PEs as ``hw.build`` packs them (slow: the data balance runs
    the model on 2,000 training images, twice), each PE's two memories (data, pointers) at the
    depth the build cuts them to take at most 8 of the 16-bit-wide 1024-word DP16KD each, all of
    them together 128 of the 208."""
    from boards import get_board
    from hw.build import board_config, memory_depth_for, size_config
    board = get_board("ulx3s")
    bram_bits = board.memory.bram_blocks * board.memory.bram_bits
    dense_weights = sum(l.index.size for l in model.layers)
    assert dense_weights * 4 > bram_bits
    cfg = memory_depth_for(MODEL, size_config(MODEL, board_config(board, 8)), board)
    assert cfg.pe_mem_depth <= 8192
    assert 8 * 2 * (cfg.pe_mem_depth // 1024) <= 128 < board.memory.bram_blocks


@pytest.mark.slow
@pytest.mark.sim
def test_mlp1024_bit_exact_on_ulx3s_configuration():
    """3 MNIST test images on 8 PEs in the ULX3S configuration as ``hw.build`` makes it (its
    feature profile, block-RAM memories cut to the model, tables sized for it, hidden neurons
    balanced as the build packs them): every logit bit equals sw.golden's."""
    from hw.build import board_config, memory_depth_for, size_config
    from hw.simcase import case_from_int_model
    from hw.verilator import run_case
    from sw.balance import balance_model
    from sw.mnist import load_mnist
    cfg = memory_depth_for(MODEL, size_config(MODEL, board_config("ulx3s", 8)), "ulx3s")
    im, _, _ = balance_model(IntModel.from_model(load_model(MODEL)), 8, "data")
    te = load_mnist().test
    case = case_from_int_model(im, te.uint8()[:3], cfg, labels=te.labels[:3])
    stats = run_case("mlp1024_ulx3s", case)
    assert [s["prediction"] for s in stats["inferences"]] == case["argmax"]
