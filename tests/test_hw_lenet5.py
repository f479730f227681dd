"""The compressed LeNet-5 (models/lenet5.npz: two conv layers with ReLU and 2 x 2 max-pool,
two fc layers) on the accelerator (Verilator) on MNIST test images, every logit bit against
sw.golden, at N = 1, 2, 4, 8 (20 images each, 10 at N = 8, under ``-m slow``, and 3 at N = 8 in
the default suite; 200 more under ``-m slow``). Cycle figures:
``python -m hw.bench --model models/lenet5.npz`` (docs/HARDWARE.md)."""
import pytest

from hw.simcase import model_case
from tb.accelerator.run import run_case
from tb.runner import ROOT

LENET5 = ROOT / "models" / "lenet5.npz"


def _lenet5(n_pes, n_images, offset, **stalls):
    if not LENET5.exists():
        pytest.skip(f"{LENET5.relative_to(ROOT)} not built yet (python -m sw.compress)")
    case = model_case(LENET5, n_pes, n_images, offset)
    assert case["config"]["fmap_depth"] > 0
    stats = run_case(f"lenet5_{n_pes}_{n_images}_{offset}", case, **stalls)
    assert [s["prediction"] for s in stats["inferences"]] == case["argmax"]
    return case, stats


@pytest.mark.sim
# N = 8 on 3 images in the default suite (10 images took 141-172 s, the suite's longest test,
# with the clean-checkout CI at 850-1,053 s of its 900); N = 8 on 10 and N = 1, 2 and 4 on 20
# images (170-200 s each) under -m slow.
@pytest.mark.parametrize("n_pes, n_images", [pytest.param(1, 20, marks=pytest.mark.slow),
                                             pytest.param(2, 20, marks=pytest.mark.slow),
                                             pytest.param(4, 20, marks=pytest.mark.slow),
                                             pytest.param(8, 10, marks=pytest.mark.slow),
                                             (8, 3)])
def test_lenet5_mnist(n_pes, n_images):
    """MNIST test images from #0, with random input idles and logit back-pressure."""
    _lenet5(n_pes, n_images, 0, p_valid=0.9, p_ready=0.8, seed=n_pes)


@pytest.mark.sim
@pytest.mark.slow
@pytest.mark.parametrize("n_pes", [1, 2, 4, 8])
def test_lenet5_mnist_many(n_pes):
    """200 more MNIST test images (slow)."""
    _lenet5(n_pes, 200, 20)
