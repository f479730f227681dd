"""The shared stream drivers of the benches (tb/stream.py) on Verilator: words in order under
random stalls, the stream-rule checks of the sink, and a wrong expected word fails."""
import itertools
import random

import pytest

from tb.runner import SimulationFailed, run_bench
from tb.stream import random_pauses
from tb.stream_check.harness import StreamHarness

WORDS = [random.Random(3).randrange(1 << 16) for _ in range(60)]


def _run(testcase, **params):
    return run_bench(StreamHarness(), toplevel="stream_harness",
                     test_module="tb.stream_check.test_stream", name=f"stream_{testcase}",
                     testcase=testcase, params=params)


@pytest.mark.sim
@pytest.mark.parametrize("p_valid,p_ready", [(1.0, 1.0), (0.5, 0.4)])
def test_stream_words_in_order(p_valid, p_ready):
    result = _run("fifo_words_in_order", words=WORDS, expect=WORDS, p_valid=p_valid,
                  p_ready=p_ready, seed=2)
    assert result["words"] == len(WORDS)
    if p_valid == 1.0:              # back to back through the FIFO: one word per cycle
        assert result["cycles"] <= len(WORDS) + 3, result
    else:                           # the stalls really happened
        assert result["cycles"] > 1.5 * len(WORDS), result


@pytest.mark.sim
def test_stream_wrong_word_fails():
    """One expected word off by one bit: the bench fails."""
    expect = list(WORDS)
    expect[30] ^= 1 << 4
    with pytest.raises(SimulationFailed, match="received words"):
        _run("fifo_words_in_order", words=WORDS, expect=expect, p_valid=0.5, p_ready=0.4,
             seed=2)


@pytest.mark.sim
def test_stream_sink_checks_rules():
    _run("sink_checks_stream_rules")


def test_random_pauses():
    """p >= 1 never pauses and draws nothing; otherwise pauses with probability 1 - p."""
    rng = random.Random(1)
    state = rng.getstate()
    assert not any(itertools.islice(random_pauses(1.0, rng), 100))
    assert rng.getstate() == state
    share = sum(itertools.islice(random_pauses(0.7, rng), 10_000)) / 10_000
    assert 0.27 < share < 0.33
