"""sw.report: size accounting vs sw.sparse / sw.huffman / sw.pack, paper table, files."""
import json

import numpy as np
import pytest

from sw.golden import random_int_model
from sw.huffman import HuffmanCode
from sw.report import (ReportError, build_report, format_markdown, layer_storage,
                       model_storage, paper_table, plot_layers, write_report)
from sw.sparse import encode_columns, split_symbol


@pytest.fixture(scope="module")
def model():
    return random_int_model([200, 60, 10], density=0.08, seed=3, n_indices=12).to_model()


def test_joint_stream_bits_match_huffman(model):
    for n_pes in (1, 3):
        for l in model.layers:
            s = layer_storage(l, n_pes, "joint", 4, 12)
            enc = encode_columns(l.index, n_pes, 4, 4)
            code = HuffmanCode.from_symbols(enc.all_symbols(), 12)
            assert s["stream_bits"] == code.encoded_bits(enc.all_symbols())
            assert s["stream_bits_per_pe"] == [code.encoded_bits(pe.symbols) for pe in enc.pes]
            assert s["entries"] == len(enc.all_symbols())
            assert s["fillers"] == sum(pe.n_fillers for pe in enc.pes)
            assert s["nonzeros"] == int((l.index != 0).sum())
            assert s["words"]["tables"] == 2 * 12 + len(code)
            assert s["words"]["pointers"] == n_pes * (l.index.shape[1] + 1) * s["ptr_words"]
            assert s["words"]["streams"] == sum(-(-b // 16) for b in s["stream_bits_per_pe"])


def test_separate_and_pq_codings(model):
    l = model.layers[0]
    enc = encode_columns(l.index, 1, 4, 4)
    gap, idx = split_symbol(enc.all_symbols(), 4)
    sep = layer_storage(l, 1, "separate", 4, 12)
    ci, cg = HuffmanCode.from_symbols(idx, 12), HuffmanCode.from_symbols(gap, 12)
    assert sep["stream_bits"] == ci.encoded_bits(idx) + cg.encoded_bits(gap)
    assert sep["index_bits_avg"] == pytest.approx(ci.encoded_bits(idx) / len(idx))
    assert sep["words"]["tables"] == 4 * 12 + len(ci) + len(cg)
    pq = layer_storage(l, 1, "pq", 4, 12)
    assert pq["stream_bits"] == 8 * len(idx) and pq["words"]["tables"] == 0
    with pytest.raises(ReportError):
        layer_storage(l, 1, "lz77")


def test_hardware_accounting_equals_packer(model):
    from sw.pack import pack
    for n_pes in (1, 2, 4):
        st = model_storage(model, n_pes, "joint", model.integer.gap_bits,
                           model.integer.huff_max_len)
        man = pack(model, n_pes).manifest
        t = man["totals"]
        assert st["total_bytes"] == t["total_bytes"]
        assert st["dense_bytes"] == t["dense_float32_bytes"]
        assert st["ratio"] == pytest.approx(t["compression_ratio"])
        b = t["breakdown_bytes"]
        for k in ("pointers", "streams", "biases", "header"):
            assert st["bytes"][k] == b[k], k
        shared = st["bytes"]["codebook"] + st["bytes"]["tables"] + st["bytes"]["descriptor"]
        assert shared == b["tables"]
        for mine, theirs in zip(st["layers"], man["layers"]):
            assert mine["stream_bits_per_pe"] == theirs["stream_bits_per_pe"]
            assert mine["fillers"] == theirs["fillers"]


def test_paper_table_and_markdown(model, tmp_path):
    rows = paper_table(model)
    assert [r["layer"] for r in rows] == ["fc1", "fc2", "total"]
    tot = rows[-1]
    assert tot["weights"] == 200 * 60 + 60 * 10
    assert tot["weight_bits_pq"] == 4 and tot["index_bits_pq"] == 4
    assert 0 < tot["weight_bits_pqh"] < 4 and 0 < tot["index_bits_pqh"] < 4.5
    assert tot["rate_pqh"] == pytest.approx(1 / model_storage(model, 1, "separate")["ratio"])
    rep = build_report(model, n_pes=2, extra={"command": "python -m sw.compress --x"})
    assert set(rep["storage"]) == {"pq", "separate", "joint", "joint_2pe"}
    md = format_markdown(rep)
    assert "| fc1 | 12000 |" in md and "weight bits P+Q" in md and "--x" in md
    mdp, jsp = write_report(rep, tmp_path / "out", "m")
    j = json.loads(jsp.read_text())
    assert j["storage"]["joint"]["total_bytes"] == rep["storage"]["joint"]["total_bytes"]
    assert mdp.read_text() == md


def test_plot_is_optional(model, tmp_path):
    note = plot_layers(model, tmp_path / "p.png")
    try:
        import matplotlib  # noqa: F401
        assert note is None and (tmp_path / "p.png").exists()
    except ImportError:
        assert "matplotlib" in note and not (tmp_path / "p.png").exists()


def test_empty_layer_counts():
    m = random_int_model([30, 8], density=0.1, seed=1).to_model()
    m.layers[0].index[:] = 0
    s = layer_storage(m.layers[0], 2, "joint")
    assert s["stream_bits"] == 0 and s["nonzeros"] == 0 and s["words"]["tables"] == 0
    assert np.isfinite(model_storage(m, 2, "separate")["ratio"])


def test_report_command_refreshes_sizes(tmp_path, capsys):
    """python -m sw.report prints the sizes; --write puts them into the model's metrics and
    report (a stale ratio is replaced, the training run's fields of the report are kept)."""
    from sw.golden import random_conv_model
    from sw.modelfile import load_model, save_model
    from sw.report import main, model_storage
    cm = random_conv_model(in_shape=(1, 10, 10), convs=((4, 3),), fc=(10,), seed=3).to_model()
    cm.metrics = {"ratio": 1.0, "error": 0.5}
    save_model(tmp_path / "m.npz", cm)
    (tmp_path / "m_report.json").write_text('{"command": "python -m sw.compress X", '
                                            '"hardware_pes": 2}')
    assert main([str(tmp_path / "m.npz")]) == 0
    assert "size [joint_4pe]" in capsys.readouterr().out
    assert load_model(tmp_path / "m.npz").metrics["ratio"] == 1.0
    assert main([str(tmp_path / "m.npz"), "--write"]) == 0
    assert "size [joint_2pe]" in capsys.readouterr().out
    m = load_model(tmp_path / "m.npz")
    assert m.metrics["ratio"] == pytest.approx(model_storage(m, 1, "joint")["ratio"])
    assert m.metrics["error"] == 0.5 and "ratio_hw_2pe" in m.metrics
    rep = json.loads((tmp_path / "m_report.json").read_text())
    assert rep["command"] == "python -m sw.compress X" and rep["metrics"] == m.metrics
    assert (tmp_path / "m_report.md").exists()
    assert main([str(tmp_path / "m.npz"), "--pes", "0"]) == 1


def test_report_command_drops_dead_neurons(tmp_path, capsys):
    """python -m sw.report --write --drop-dead clears the dead hidden neurons, records them and
    the kept fractions, and the logits stay the same; --drop-dead alone is refused."""
    from sw.golden import IntModel, infer, random_int_model
    from sw.modelfile import load_model, save_model
    from sw.report import main
    cm = random_int_model([50, 30, 20, 10], density=0.08, seed=5).to_model()
    save_model(tmp_path / "m.npz", cm)
    assert main([str(tmp_path / "m.npz"), "--drop-dead"]) == 1
    assert "give --write too" in capsys.readouterr().err
    assert main([str(tmp_path / "m.npz"), "--write", "--drop-dead"]) == 0
    m = load_model(tmp_path / "m.npz")
    dead = m.metrics["dead_neurons"]
    assert dead and all(n > 0 for n in dead.values())
    assert m.metrics["density"] == {l.name: float((l.index != 0).mean()) for l in m.layers}
    for l, nxt in zip(m.layers, m.layers[1:]):
        unread = ~(nxt.index != 0).any(axis=0)
        assert not l.index[unread].any() and not l.bias_q[unread].any()
    x = np.random.default_rng(1).integers(0, 256, size=(40, 50))
    assert np.array_equal(infer(IntModel.from_model(cm), x, trace=False).logits,
                          infer(IntModel.from_model(m), x, trace=False).logits)
    assert main([str(tmp_path / "m.npz"), "--write", "--drop-dead"]) == 0
    assert load_model(tmp_path / "m.npz").metrics["dead_neurons"] == dead   # nothing more
