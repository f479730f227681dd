"""Conv networks on the accelerator (Verilator) against the NumPy reference of tests/convref.py,
every logit bit: two conv layers (2 x 2 max-pool each) and an fc layer reading the pooled map,
with random input idles and logit back-pressure; inputs include an all-zero image and an
all-255 one. Configurations: 1..4 PEs, the iCEBreaker's feature profile (no overlap, no column
skip table, no early start), one input lane; a wrong expected logit must fail."""
import dataclasses

import numpy as np
import pytest

from convref import conv_case, conv_config, random_conv_net
from tb.accelerator.run import run_case
from tb.runner import SimulationFailed

SPEC = [("conv", 4, 3), ("conv", 6, 3), ("fc", 12), ("fc", 10)]


def _inputs(seed, n=4, shape=(1, 12, 12)):
    rng = np.random.default_rng(seed)
    size = int(np.prod(shape))
    x = rng.integers(1, 256, size=(n, size)) * (rng.random((n, size)) < 0.5)
    x[0] = 0
    x[1] = 255
    return x


CASES = {
    # name: (config, spec, input shape, seed)
    "n1": (conv_config(1), SPEC, (1, 12, 12), 1),
    "n2_two_channels": (conv_config(2), SPEC, (2, 10, 12), 2),
    "n3": (conv_config(3, broadcast_width=1), SPEC, (1, 12, 12), 3),
    "n4_wide": (conv_config(4), [("conv", 9, 3), ("conv", 5, 2), ("fc", 10)], (3, 11, 11), 4),
    "n2_board_profile": (conv_config(2, requant_overlap=False, column_skip=False,
                                     early_start=False, pointer_ports=1, stream_words=1,
                                     input_lanes=1, fifo_depth=4), SPEC, (1, 12, 12), 5),
}


@pytest.mark.sim
@pytest.mark.parametrize("name", sorted(CASES))
def test_conv_net_bit_exact(name):
    config, spec, shape, seed = CASES[name]
    net = random_conv_net(spec, seed, input_shape=shape)
    case = conv_case(net, _inputs(seed, shape=shape), config)
    stats = run_case(f"conv_{name}", case, p_valid=0.7, p_ready=0.6, seed=seed)
    assert [s["prediction"] for s in stats["inferences"]] == case["argmax"]


@pytest.mark.sim
def test_conv_net_detects_wrong_logit():
    config, spec, shape, seed = CASES["n2_two_channels"]
    net = random_conv_net(spec, seed, input_shape=shape)
    case = conv_case(net, _inputs(seed, shape=shape), config)
    case["logits"][2][3] ^= 1
    with pytest.raises(SimulationFailed):
        run_case("conv_n2_two_channels", case, p_valid=0.7, p_ready=0.6, seed=seed)


def test_conv_reference_pools_and_flattens():
    """The reference itself: a 1 x 1 kernel of weight 1 and shift 0 passes the image through,
    so the fc layer sees the image 2 x 2 max-pooled (channel-major flattening)."""
    net = random_conv_net([("conv", 1, 1), ("fc", 4)], 0, input_shape=(1, 4, 4))
    conv, fc = net.layers
    conv.index[:] = 1
    conv.cb_q[1] = 1
    conv.bias_q[:] = 0
    conv.shift = 0
    fc.index[:] = 0
    fc.index[np.arange(4), np.arange(4)] = 1
    fc.cb_q[1] = 1
    fc.bias_q[:] = 0
    img = np.arange(16).reshape(1, 16) * 10
    from convref import conv_reference
    assert conv_reference(net, img).tolist() == [[50, 70, 130, 150]]


def test_conv_config_needs_power_of_two_fmap():
    with pytest.raises(ValueError):
        conv_config(2, fmap_depth=300)
    assert not dataclasses.replace(conv_config(2), fmap_depth=0).conv
