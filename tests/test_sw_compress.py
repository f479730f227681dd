"""sw.compress: the pipeline end to end on a tiny subset, CLI errors, the committed model."""
import json
from pathlib import Path

import numpy as np
import pytest

from sw.compress import main
from sw.golden import IntModel, float_infer, infer
from sw.modelfile import load_model
from sw.sparse import encode_columns

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--model", "lenet300", "--subset", "600", "--epochs", "2", "--prune-steps", "2",
        "--prune-epochs", "1", "--finetune-epochs", "1", "--no-sensitivity", "--quiet"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from sw.mnist import MnistNotFoundError, load_mnist
    try:
        data = load_mnist(subset=600)
    except MnistNotFoundError as e:
        pytest.skip(str(e))
    out = tmp_path_factory.mktemp("compress")
    assert main(TINY + ["--out", str(out), "--density", "ip1=0.1,ip2=0.2,ip3=0.5"]) == 0
    return out, data


def test_tiny_pipeline_writes_loadable_model(tiny, capsys):
    out, data = tiny
    m = load_model(out / "lenet300.npz")
    assert m.arch == "lenet300" and [l.name for l in m.layers] == ["ip1", "ip2", "ip3"]
    # lenet300 defaults to 5-bit gaps (the paper's fc choice; fewer filler cycles)
    assert m.integer is not None and m.integer.idx_bits == 4 and m.integer.gap_bits == 5
    dens = [float((l.index != 0).mean()) for l in m.layers]
    assert dens == pytest.approx([0.1, 0.2, 0.5], abs=0.002)
    for l in m.layers:
        assert l.idx_bits == 4 and l.codebook[0] == 0 and l.index.max() <= 15
    # the float error in the metrics is that of the stored shared-weight model
    x, y = data.test.images, data.test.labels
    err = float((np.argmax(float_infer(m, x)[-1], axis=1) != y).mean())
    assert m.metrics["error"] == pytest.approx(err, abs=1.5 / len(y))
    res = infer(IntModel.from_model(m), data.test.uint8())
    assert m.metrics["integer_error"] == pytest.approx(float((res.prediction != y).mean()))
    # joint alphabet within the 1024-entry symbol table for every PE count and row order
    lim = m.metrics["symbol_limit"]
    assert lim["max_symbols"] == 1024 and lim["gap_bits"] == 5 and lim["pes"] == [1, 2, 4, 8]
    assert set(lim["symbols_after"]) == {f"N={n}{b}" for n in (1, 2, 4, 8)
                                         for b in ("", " balanced")}
    n_sym = sum(len(np.unique(encode_columns(l.index, 1, 5, 4).all_symbols()))
                for l in m.layers)
    assert n_sym == lim["symbols_after"]["N=1"] <= 1024
    rep = json.loads((out / "lenet300_report.json").read_text())
    assert rep["metrics"]["ratio"] == pytest.approx(m.metrics["ratio"])
    assert rep["storage"]["joint"]["ratio"] == pytest.approx(m.metrics["ratio"])
    assert "| ip1 |" in (out / "lenet300_report.md").read_text()


def test_tiny_model_packs(tiny):
    from sw.pack import pack
    out, _ = tiny
    m = load_model(out / "lenet300.npz")
    man = pack(m, 4, board="sim").manifest
    rep = json.loads((out / "lenet300_report.json").read_text())
    assert man["totals"]["total_bytes"] == rep["storage"]["joint_4pe"]["total_bytes"]


@pytest.mark.parametrize("args, msg", [
    (["--density", "ip9=0.1"], "unknown layers"),
    (["--density", "ip1=2"], "density of ip1"),
    (["--bits", "ip1=9"], "bits of ip1"),
    (["--bits", "x"], "--bits must be"),
    (["--subset", "3"], "--subset"),
    (["--density", "ip1"], "name=value"),
    (["--gap-bits", "0"], "--gap-bits"),
    (["--bits", "8", "--gap-bits", "9"], "exceed 16"),
    (["--symbol-pes", "1,x"], "--symbol-pes"),
])
def test_cli_errors(args, msg, capsys, tmp_path):
    assert main(["--out", str(tmp_path)] + args) == 1
    assert msg in capsys.readouterr().err


LENET = ROOT / "models" / "lenet300.npz"


@pytest.mark.skipif(not LENET.exists(), reason="models/lenet300.npz not built yet")
def test_committed_lenet300_meets_targets():
    from sw.mnist import load_mnist
    from sw.report import model_storage
    m = load_model(LENET)
    assert all(l.idx_bits == 4 for l in m.layers) and m.integer.gap_bits == 5
    te = load_mnist().test
    err = float((np.argmax(float_infer(m, te.images)[-1], axis=1) != te.labels).mean())
    assert err <= 0.016 and m.metrics["error"] == pytest.approx(err, abs=1e-4)
    res = infer(IntModel.from_model(m), te.uint8())
    int_err = float((res.prediction != te.labels).mean())
    assert int_err <= 0.017 and m.metrics["integer_error"] == pytest.approx(int_err)
    st = model_storage(m, 1, "joint", m.integer.gap_bits, m.integer.huff_max_len)
    assert st["ratio"] >= 40 and st["ratio"] == pytest.approx(m.metrics["ratio"])
    assert model_storage(m, 4, "joint")["ratio"] >= 40         # the model's 5-bit gaps
    assert model_storage(m, 4, "joint") == model_storage(m, 4, "joint", 5)
    assert model_storage(m, 4, "joint")["layers"][0]["gap_bits"] == 5


@pytest.mark.slow
def test_full_lenet300_run(tmp_path):
    """The documented full run (about 5 minutes on 2 cores)."""
    assert main(["--model", "lenet300", "--out", str(tmp_path), "--quiet"]) == 0
    m = load_model(tmp_path / "lenet300.npz")
    assert m.metrics["error"] <= 0.016 and m.metrics["ratio"] >= 40
    assert m.metrics["integer_error"] <= 0.017


LENET5 = ROOT / "models" / "lenet5.npz"
LENET5_CAFFE = ROOT / "models" / "lenet5_caffe.npz"


def test_committed_lenet5_matches_its_metrics():
    """The accelerator's LeNet-5 (ReLU after the convs): its float error and ratio are the
    recorded ones, it is calibrated, and its integer model follows the float one (the full
    integer test error is checked under -m slow)."""
    from sw.mnist import load_mnist
    from sw.nn import lenet5
    from sw.report import model_storage
    m = load_model(LENET5)
    assert [l.kind for l in m.layers] == ["conv", "conv", "fc", "fc"]
    assert m.integer is not None and all(l.relu for l in m.layers[:3])
    net = lenet5()
    net.set_params({l.name: (l.weights(), l.bias, l.index != 0) for l in m.layers})
    te = load_mnist().test
    err = net.error(te.images, te.labels)
    assert err == pytest.approx(m.metrics["error"], abs=1e-4) and err <= 0.0080
    assert model_storage(m, 1, "joint")["ratio"] == pytest.approx(m.metrics["ratio"])
    assert m.metrics["ratio"] >= 39 and m.metrics["integer_error"] <= 0.0080
    im = IntModel.from_model(m)
    x8 = np.clip(np.rint(te.images[:500] * 256.0), 0, 255).astype(np.int64)
    agree = (infer(im, x8, trace=False).prediction == net.predict(te.images[:500])).mean()
    assert agree >= 0.99


@pytest.mark.slow
def test_committed_lenet5_integer_error():
    """Issue 17: integer LeNet-5 test error <= 0.80 % on all 10,000 test images."""
    from sw.mnist import load_mnist
    m = load_model(LENET5)
    te = load_mnist().test
    x8 = np.clip(np.rint(te.images * 256.0), 0, 255).astype(np.int64)
    err = float((infer(IntModel.from_model(m), x8, trace=False).prediction != te.labels).mean())
    assert err == pytest.approx(m.metrics["integer_error"], abs=1e-9) and err <= 0.0080


def test_caffe_lenet5_is_refused_by_the_integer_model():
    """Caffe's LeNet-5 (no ReLU after the convs, the paper's network) is compressed in float
    only: the integer model refuses it, naming the hardware limit."""
    from sw.golden import GoldenError
    from sw.onnx_export import to_nn_model
    from sw.mnist import load_mnist
    m = load_model(LENET5_CAFFE)
    assert m.integer is None and not m.layers[0].relu
    with pytest.raises(GoldenError, match="no ReLU after the conv \\(hardware limit"):
        IntModel.from_model(m)
    te = load_mnist().test
    assert to_nn_model(m).error(te.images[:2000], te.labels[:2000]) <= 0.02
