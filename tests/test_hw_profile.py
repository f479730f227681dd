"""hw.profile: cycle classification of the accelerator in the Amaranth simulator."""
import dataclasses
from pathlib import Path

import numpy as np
import pytest

import hw.profile
import sw.golden
from hw.profile import (CLASSES, ProfileError, check_profile, format_profile, main,
                        profile_int_model)
from sw.golden import ideal_cycles, infer, random_int_model


def _model_and_inputs():
    im = random_int_model([40, 30, 10], 0.3, 1)
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (2, 40)) * (rng.random((2, 40)) < 0.5)
    x[1, :5] = 0
    return im, x


@pytest.fixture(scope="module", params=[(1, True), (2, True), (2, False)],
                ids=["n1", "n2", "n2_late"])
def profiled(request):
    """(model, inputs, N, profile); the early start on (the default) or off."""
    from hw.bench import bench_config
    im, x = _model_and_inputs()
    n, early = request.param
    cfg = dataclasses.replace(bench_config(im, n), early_start=early)
    return im, x, n, profile_int_model(im, x, n, cfg)


def test_classes_add_up_and_symbols_match_golden(profiled):
    im, x, n, prof = profiled
    res = infer(im, x)
    cs = ideal_cycles(im, x, n)
    assert prof.n_pes == n
    assert np.array_equal(prof.logits, res.logits)
    assert len(prof.per_image) == 2 and all(len(ls) == 2 for ls in prof.per_image)
    for i, layers in enumerate(prof.per_image):
        for li, lp in enumerate(layers):
            assert lp.classes.shape == (n, len(CLASSES))
            # every PE's classes tile its own window (from the cycle it acts on the layer's
            # start); without the early start that is the layer's o_start window
            assert np.all(lp.classes.sum(axis=1) == lp.span)
            if not prof.early:
                assert np.all(lp.span == lp.cycles)
            assert lp.symbols.tolist() == cs.pe_work[i, li].tolist()
            assert lp.count("decode").tolist() == cs.pe_work[i, li].tolist()
            assert lp.ideal == -(-int(cs.macs[i, li]) // n)
            # the header takes its 5 cycles plus the start pulse; the last layer's
            # requantization at least a cycle per local row (a hidden layer's runs in the next
            # layer's window, behind its column work); RUN holds every decode
            assert np.all(lp.count("start") == 6)
            if li == len(layers) - 1:
                assert np.all(lp.count("requant") >= im.layers[li].index.shape[0] // n)
            assert np.all(lp.run >= lp.symbols)
            # the broadcast pushes one non-zero activation per cycle before the end token
            assert np.all(lp.end_token >= np.count_nonzero(res.inputs[li][i]))
            assert np.all(lp.end_token < lp.span)
    for li, lp in enumerate(prof.layers):
        assert lp.cycles == sum(ls[li].cycles for ls in prof.per_image)
        assert lp.symbols.tolist() == cs.pe_work[:, li].sum(axis=0).tolist()
    # layers tile the inference: the accelerator's o_cycles fits inside their sum
    for layers, c in zip(prof.per_image, prof.inference):
        assert 0 < c <= sum(lp.cycles for lp in layers)
    text = format_profile(prof)
    assert f"N={n}, 2 image(s)" in text and "Layer 1:" in text


@pytest.mark.parametrize("what", ["work", "classes", "decode"])
def test_corrupted_expectation_fails(profiled, what):
    prof = profiled[3]
    check_profile(prof)
    lp = prof.per_image[1][0]
    bad = dataclasses.replace(lp, work=lp.work.copy(), classes=lp.classes.copy(),
                              symbols=lp.symbols.copy())
    if what == "work":
        bad.work[-1] += 1
    elif what == "classes":
        bad.classes[0, CLASSES.index("input")] += 1
    else:                       # a symbol counted outside RUN
        bad.classes[0, CLASSES.index("decode")] -= 1
        bad.classes[0, CLASSES.index("barrier")] += 1
    corrupt = dataclasses.replace(prof, per_image=[prof.per_image[0], [bad, prof.per_image[1][1]]])
    with pytest.raises(ProfileError, match="image 1 layer 0"):
        check_profile(corrupt)


def test_logit_mismatch_fails(monkeypatch):
    """A golden model that disagrees with the accelerator by one in one logit is caught."""
    im, x = _model_and_inputs()
    real = sw.golden.infer

    def off_by_one(model, inputs):
        r = real(model, inputs)
        r.logits = r.logits.copy()
        r.logits[-1, 3] += 1
        return r

    monkeypatch.setattr(hw.profile, "infer", off_by_one)
    with pytest.raises(ProfileError, match=r"logits differ .* input\(s\) \[1\]"):
        profile_int_model(im, x[:2], 1)


def test_cli_missing_model(tmp_path, capsys):
    assert main(["--model", str(tmp_path / "none.npz"), "--pes", "1"]) == 1
    assert "not found" in capsys.readouterr().err


def test_cli_lenet300(capsys):
    """The committed model on MNIST test image 0, one PE: bit-exact, three layers."""
    model = Path(__file__).resolve().parent.parent / "models" / "lenet300.npz"
    if not model.exists():
        pytest.skip("models/lenet300.npz not built yet")
    try:
        sw.golden.load_mnist()
    except sw.golden.GoldenError as e:
        pytest.skip(str(e))
    assert main(["--model", str(model), "--pes", "1"]) == 0
    out = capsys.readouterr().out
    assert "bit-exact vs sw.golden.infer" in out and "N=1, 1 image(s)" in out
    assert all(f"Layer {li}:" in out for li in range(3)) and "Layer 3:" not in out
