"""Acceptance of issue 16: an ONNX MLP trained outside the built-in recipes (784-128-64-10, the
test's own NumPy SGD loop, seed 7) on a labelled ``.npz`` data set goes import -> compress ->
calibrate -> pack -> the simulated accelerator, bit exact against sw.golden; the command line
and the Python API run the same stages."""
import dataclasses
import json

import numpy as np
import onnx
import pytest

from onnx_models import mlp_onnx, train_mlp
from sw.compress import main
from sw.dataset import to_uint8
from sw.golden import IntModel, float_infer, infer
from sw.modelfile import load_model

N_TRAIN, N_TEST = 6000, 1000


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The ONNX file (trained 3 epochs on 6,000 images) and the data set (float ``pixel / 255``,
    images 28 x 28)."""
    from sw.dataset import load_mnist_dataset
    mnist = load_mnist_dataset()
    xtr = to_uint8(mnist.x_train[:N_TRAIN]).reshape(-1, 28, 28)
    xte = to_uint8(mnist.x_test[:N_TEST]).reshape(-1, 28, 28)
    params = train_mlp(xtr, mnist.y_train[:N_TRAIN])
    d = tmp_path_factory.mktemp("onnx")
    onnx.save(mlp_onnx(params), str(d / "mlp128.onnx"))
    np.savez(d / "digits.npz", x_train=xtr / np.float32(255), y_train=mnist.y_train[:N_TRAIN],
             x_test=xte / np.float32(255), y_test=mnist.y_test[:N_TEST])
    return d


@pytest.fixture(scope="module")
def compressed(files):
    """``python -m sw.compress --onnx ... --data ... --pack`` (the iCEBreaker's 2 PEs)."""
    out = files / "out"
    argv = ["--onnx", str(files / "mlp128.onnx"), "--data", str(files / "digits.npz"),
            "--out", str(out), "--pack", "--no-sensitivity", "--quiet", "--seed", "3"]
    assert main(argv) == 0
    return out


def test_cli_writes_model_report_and_images(compressed, files, capsys):
    m = load_model(compressed / "mlp128.npz")
    assert m.arch == "mlp128" and [l.name for l in m.layers] == ["fc1", "fc2", "fc3"]
    assert [l.shape for l in m.layers] == [(128, 784), (64, 128), (10, 64)]
    assert m.integer is not None and (m.integer.idx_bits, m.integer.gap_bits) == (4, 5)
    dens = [float((l.index != 0).mean()) for l in m.layers]
    assert dens == pytest.approx([0.08, 0.2, 0.66], abs=0.01)     # default_density by size
    assert m.metrics["input_scale"] == pytest.approx(1 / 255)
    assert m.metrics["onnx_layers"]["fc2"] == "/fc2/MatMul (MatMul)"
    # the float and integer errors recorded are those of the stored model on the test data
    data = np.load(files / "digits.npz")
    u = np.rint(data["x_test"].reshape(N_TEST, -1) * 255).astype(np.int64)
    y = data["y_test"]
    err = float((np.argmax(float_infer(m, u / 256.0)[-1], 1) != y).mean())
    assert m.metrics["error"] == pytest.approx(err, abs=1.5 / N_TEST)
    ierr = float((infer(IntModel.from_model(m), u).prediction != y).mean())
    assert m.metrics["integer_error"] == pytest.approx(ierr)
    assert ierr < 0.15 and m.metrics["dense_error"] < 0.1
    rep = json.loads((compressed / "mlp128_report.json").read_text())
    assert rep["metrics"]["ratio"] == pytest.approx(m.metrics["ratio"]) and m.metrics["ratio"] > 20
    assert "| fc1 |" in (compressed / "mlp128_report.md").read_text()
    man = json.loads((compressed / "mlp128_pack" / "manifest.json").read_text())
    assert man["n_pes"] == 2 and man["board"] == "icebreaker"
    assert man["column_code"] == "fixed"            # the board's gateware has no Huffman decoder
    print(f"imported 784-128-64-10 MLP: dense {100 * m.metrics['dense_error']:.2f}%, compressed "
          f"float {100 * err:.2f}%, integer {100 * ierr:.2f}% test error on {N_TEST} images, "
          f"{m.metrics['ratio']:.1f}x")


@pytest.mark.sim
def test_imported_model_on_the_simulated_accelerator(compressed, files):
    """The compressed, calibrated model on the accelerator (Verilator, 4 PEs, random stalls):
    every logit bit equals sw.golden's on test images; the accuracy on them is reported."""
    from hw.bench import bench_config
    from tb.accelerator.run import run_case
    from tb.accelerator.vectors import case_from_int_model
    im = IntModel.from_model(load_model(compressed / "mlp128.npz"))
    data = np.load(files / "digits.npz")
    x = np.rint(data["x_test"][:8].reshape(8, -1) * 255).astype(np.int64)
    y = data["y_test"][:8]
    # the gateware of test_hw_accelerator's LeNet-300-100 run (same widths; Verilator builds
    # it once): tables grown to 1024 symbols
    cfg = bench_config(im, 4)
    cfg = dataclasses.replace(cfg, symbol_depth=max(cfg.symbol_depth, 1024))
    case = case_from_int_model(im, x, cfg, labels=y)
    stats = run_case("onnx_mlp128", case, p_valid=0.8, p_ready=0.7, seed=5)
    pred = [s["prediction"] for s in stats["inferences"]]
    golden = infer(im, x)
    assert pred == case["argmax"] == golden.prediction.tolist()
    assert case["logits"] == golden.logits.tolist()
    acc = float((np.array(pred) == y).mean())
    print(f"simulated accelerator: {len(pred)} test images bit exact, accuracy {100 * acc:.1f}%")
    assert acc >= 0.75


def test_api_returns_model_and_report(files):
    """sw.api.compress: the same stages, nothing written with out=None."""
    from sw.api import compress
    lines = []
    res = compress(files / "mlp128.onnx", data=files / "digits.npz", density={"fc1": 0.1},
                   bits=3, prune_steps=1, prune_epochs=0.5, finetune_epochs=0,
                   subset=2000, no_sensitivity=True, quiet=True, log=lines.append)
    assert res.path is None and res.packed is None
    assert [l.idx_bits for l in res.model.layers] == [3, 3, 3]
    assert res.model.integer is not None and res.model.integer.idx_bits == 3
    assert float((res.model.layers[0].index != 0).mean()) == pytest.approx(0.1, abs=0.002)
    assert res.report["metrics"]["error"] == res.model.metrics["error"]
    assert any(line.startswith("RESULT mlp128") for line in lines)


@pytest.mark.parametrize("data, extra, msg", [
    ("none.npz", [], "cannot read data set"),
    ("digits.npz", ["--density", "fc9=0.1"], "unknown layers"),
    ("digits.npz", ["--prune-epochs", "-1"], "prune steps and epochs >= 0"),
    ("digits.npz", ["--input-scale", "0.5"], "8-bit"),
])
def test_cli_errors(files, data, extra, msg, capsys):
    argv = ["--onnx", str(files / "mlp128.onnx"), "--data", str(files / data),
            "--out", str(files / "bad"), "--quiet", "--no-sensitivity"] + extra
    assert main(argv) == 1
    assert msg in capsys.readouterr().err


def test_cli_refuses_features_and_float_only(files, tmp_path, capsys):
    np.savez(tmp_path / "small.npz", x_train=np.zeros((20, 10), np.uint8),
             y_train=np.zeros(20, int), x_test=np.zeros((5, 10), np.uint8),
             y_test=np.zeros(5, int))
    assert main(["--onnx", str(files / "mlp128.onnx"), "--data", str(tmp_path / "small.npz"),
                 "--quiet"]) == 1
    assert "10 features" in capsys.readouterr().err
    assert main(["--model", "lenet300", "--float-only"]) == 1
    assert "--float-only" in capsys.readouterr().err


def test_conv_model_float_pipeline_and_export(files, tmp_path):
    """A convolutional ONNX model (conv 5x5, ReLU, 2x2 max pooling, fc) through the same stages
    (calibrated: the accelerator runs conv + ReLU + 2x2 max-pool), then exported again: the
    exported graph takes the data's values (pixel / 255) and onnxruntime agrees with sw.nn."""
    from onnx_models import chain
    from onnx import helper
    from sw.onnx_export import export_onnx, run_onnx, to_nn_model
    r = np.random.default_rng(4)
    inits = {"cw": r.normal(0, 0.3, (4, 1, 5, 5)).astype(np.float32),
             "cb": r.normal(0, 0.1, 4).astype(np.float32),
             "fw": r.normal(0, 0.05, (10, 4 * 12 * 12)).astype(np.float32),
             "fb": np.zeros(10, np.float32)}
    mk = helper.make_node
    nodes = [mk("Conv", ["input", "cw", "cb"], ["c"], name="conv", kernel_shape=[5, 5]),
             mk("Relu", ["c"], ["r"], name="relu"),
             mk("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
             mk("Flatten", ["p"], ["f"], name="flat"),
             mk("Gemm", ["f", "fw", "fb"], ["out"], name="fc", transB=1)]
    onnx.save(chain(nodes, inits, ["N", 1, 28, 28], ["N", 10]), str(tmp_path / "cnn.onnx"))
    out = tmp_path / "out"
    assert main(["--onnx", str(tmp_path / "cnn.onnx"), "--data", str(files / "digits.npz"),
                 "--out", str(out), "--subset", "300", "--prune-steps", "1", "--prune-epochs",
                 "0", "--finetune-epochs", "0", "--no-sensitivity", "--quiet"]) == 0
    m = load_model(out / "cnn.npz")
    # conv + ReLU + 2x2 max-pool runs on the accelerator: calibrated like an fc model
    assert [l.kind for l in m.layers] == ["conv", "fc"] and m.integer is not None
    assert m.layers[0].meta["in_shape"] == [1, 28, 28] and m.layers[0].meta["pool"] == 2
    assert m.layers[0].relu and not m.layers[1].relu
    nn = to_nn_model(m)
    data = np.load(files / "digits.npz")
    v = data["x_test"][:200].reshape(200, -1)
    ours = nn.predict(np.rint(v * 255) / np.float32(256))
    proto = export_onnx(m, input_scale=m.metrics["input_scale"])
    assert np.array_equal(np.argmax(run_onnx(proto, v), 1), ours)


def test_cli_refused_graph_names_the_node(tmp_path, capsys):
    """A refused graph: one error line naming the node, the limit and its kind (no traceback),
    before any data is read."""
    from test_sw_onnx import _refusal
    proto, *_ = _refusal("sigmoid")
    onnx.save(proto, str(tmp_path / "sig.onnx"))
    assert main(["--onnx", str(tmp_path / "sig.onnx"), "--data", str(tmp_path / "none.npz")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: node 'act0' (Sigmoid): activation Sigmoid") and \
        err.strip().endswith("[hardware limit]") and "Traceback" not in err


def test_float_only_compresses_what_the_accelerator_cannot_run(files, tmp_path, capsys):
    """A hidden layer of 1,100 neurons (over the accelerator's 1,024): refused naming the node,
    compressed in float with --float-only (no integer section, no packing)."""
    from onnx_models import chain
    from onnx import helper
    r = np.random.default_rng(5)
    inits = {"w1": r.normal(0, 0.05, (1100, 784)).astype(np.float32),
             "b1": np.zeros(1100, np.float32),
             "w2": r.normal(0, 0.05, (10, 1100)).astype(np.float32),
             "b2": np.zeros(10, np.float32)}
    mk = helper.make_node
    nodes = [mk("Gemm", ["input", "w1", "b1"], ["h"], name="wide", transB=1),
             mk("Relu", ["h"], ["a"], name="relu"),
             mk("Gemm", ["a", "w2", "b2"], ["out"], name="head", transB=1)]
    onnx.save(chain(nodes, inits, ["N", 784], ["N", 10]), str(tmp_path / "wide.onnx"))
    argv = ["--onnx", str(tmp_path / "wide.onnx"), "--data", str(files / "digits.npz"),
            "--out", str(tmp_path), "--subset", "200", "--prune-steps", "1", "--prune-epochs",
            "0", "--finetune-epochs", "0", "--no-sensitivity", "--quiet", "--pack"]
    assert main(argv) == 1
    assert "node 'wide' (Gemm): 784 -> 1100 features" in capsys.readouterr().err
    assert main(argv[:-1] + ["--float-only"]) == 0
    m = load_model(tmp_path / "wide.npz")
    assert m.integer is None and m.layers[0].shape == (1100, 784)
    assert not (tmp_path / "wide_pack").exists()
