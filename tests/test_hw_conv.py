"""Conv networks on the accelerator (Verilator) against sw.golden, every logit bit.

Random conv models (``sw.golden.random_conv_model``: conv layers with ReLU and 2 x 2 max-pool,
then fc layers reading the pooled map), packed by ``sw.pack``, with random input idles and logit
back-pressure; inputs include an all-zero image and an all-255 one. Configurations: 1..4 PEs,
one and two broadcast words per cycle, several input channels, the iCEBreaker's feature
profile (no overlap, no column skip table, no early start, one input lane, fixed-width column
entries instead of Huffman coding); a wrong expected
logit must fail. The compressed LeNet-5 on MNIST: tests/test_hw_lenet5.py.
"""
import numpy as np
import pytest

from contract.config import AcceleratorConfig
from hw.build import sized_config
from hw.simcase import case_from_int_model
from sw.golden import random_conv_model
from tb.accelerator.run import run_case
from tb.runner import SimulationFailed

CASES = {
    # name: (n_pes, random_conv_model arguments, AcceleratorConfig features)
    "n1": (1, dict(seed=1), {}),
    "n2_two_channels": (2, dict(in_shape=(2, 10, 14), seed=2), {}),
    "n3_one_word": (3, dict(seed=3), dict(broadcast_width=1)),
    "n4_wide": (4, dict(in_shape=(3, 12, 12), convs=((9, 3), (5, 2)), fc=(10,), seed=4), {}),
    "n2_board_profile": (2, dict(seed=5), dict(requant_overlap=False, column_skip=False,
                                               early_start=False, pointer_ports=1,
                                               stream_words=1, input_lanes=1, fifo_depth=4,
                                               huffman=False)),
}


def _case(name, n_inputs=4):
    n_pes, model_kw, features = CASES[name]
    im = random_conv_model(**model_kw)
    cfg = sized_config(im, AcceleratorConfig(n_pes=n_pes, pe_mem_depth=4096, **features),
                       balance=False)
    assert cfg.conv
    rng = np.random.default_rng(model_kw["seed"])
    size = im.in_features
    x = rng.integers(1, 256, size=(n_inputs, size)) * (rng.random((n_inputs, size)) < 0.5)
    x[0] = 0
    x[1] = 255
    return case_from_int_model(im, x, cfg)


@pytest.mark.sim
# (n4_wide, about 40 s, under -m slow: CI time)
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "n4_wide" else n
                                  for n in sorted(CASES)])
def test_conv_model_bit_exact(name):
    case = _case(name)
    stats = run_case(f"conv_{name}", case, p_valid=0.7, p_ready=0.6, seed=3)
    assert [s["prediction"] for s in stats["inferences"]] == case["argmax"]


@pytest.mark.sim
def test_conv_model_detects_wrong_logit():
    case = _case("n2_two_channels")
    case["logits"][2][3] ^= 1
    with pytest.raises(SimulationFailed):
        run_case("conv_n2_two_channels", case, p_valid=0.7, p_ready=0.6, seed=3)


@pytest.mark.sim
def test_conv_model_flags_errors():
    """An image one input word short sets ``o_error.input`` (the inference still completes
    with every logit), a load for an unknown memory id ``o_error.load``."""
    run_case("conv_n1_errors", _case("n1"), testcase="accelerator_flags_errors", errors=True)


def test_conv_config_is_opt_in():
    """Conv support is a configuration option: off by default (the fc-only gateware)."""
    assert not AcceleratorConfig().conv
    assert AcceleratorConfig(fmap_depth=512).conv
    with pytest.raises(ValueError):
        AcceleratorConfig(fmap_depth=300)
