"""Protocol fuzz on the simulated board with the real accelerator (issue 12, point 4a).

tb/top/fuzz.py makes the frames (valid, mutated, truncated, wrong lengths, garbage between
frames, floods, RESET/LOAD/INFER interleaved, complete and aborted uploads) and checks every
response: exactly one per frame start, no hang (bounded waits), the response the frame calls for,
and every RESULT after a complete valid upload bit-exact with sw.golden.

Default suite: a few hundred frames on the byte-level bench (tb/top/stream_top.py: the protocol
engine's byte stream, no UART) and a shorter run through the UART pins of SimTop; a run with a
mutated expectation must fail. ``-m slow``: FUZZ_FRAMES (default 10,000) frames on the byte-level
bench, with LeNet-300-100 for a few MNIST RESULTs first; it prints the frame count and the
violation count.
"""
import dataclasses
import os

import pytest

from gateware.config import AcceleratorConfig

# the UART-level run shares tests/test_reliability.py's top (same parameters: one build)
CLOCK_HZ, DIVISOR, TIMEOUT, ACCEL_TIMEOUT = 12_000_000, 4, 2000, 3000


def _run(level, frames, seed, config, build, mutate=False, lenet=None, report=None,
         accel_timeout=ACCEL_TIMEOUT):
    from tb.runner import run_bench
    if level == "stream":
        from tb.top.stream_top import StreamTop
        top = StreamTop(config, clock_hz=CLOCK_HZ, divisor=DIVISOR, timeout=TIMEOUT,
                        accel_timeout=accel_timeout)
    else:
        from gateware.top import SimTop
        top = SimTop(config, clock_hz=CLOCK_HZ, baud=CLOCK_HZ // DIVISOR, timeout=TIMEOUT,
                     accel_timeout=accel_timeout)
    params = {"level": level, "frames": frames, "seed": seed, "mutate": mutate,
              "clock_hz": CLOCK_HZ, "divisor": DIVISOR, "timeout": TIMEOUT,
              "accel_timeout": accel_timeout, "config": dataclasses.asdict(config)}
    if lenet:
        params["lenet"] = os.path.abspath(lenet)
    if report:
        params["report"] = str(report)
    run_bench(top, toplevel="fuzz_top" if level == "stream" else "sim_top",
              test_module="tb.top.test_fuzz", name=build, params=params)


# (the default suite runs half the cases, the whole count under -m slow: CI time)
@pytest.mark.sim
@pytest.mark.parametrize("cases", [200, pytest.param(400, marks=pytest.mark.slow)])
def test_fuzz_byte_level(tmp_path, cases):
    _run("stream", cases, 1, AcceleratorConfig(n_pes=1), "fuzz_stream", report=tmp_path / "r")
    print((tmp_path / "r").read_text())


@pytest.mark.sim
@pytest.mark.parametrize("cases", [150, pytest.param(300, marks=pytest.mark.slow)])
def test_fuzz_uart_level(tmp_path, cases):
    _run("uart", cases, 2, AcceleratorConfig(n_pes=1), "top_n1", report=tmp_path / "r")
    print((tmp_path / "r").read_text())


@pytest.mark.sim
def test_fuzz_mutated_expectation_fails(tmp_path):
    """A check that cannot fail is a defect: with every expected logit off by one bit the fuzz
    reports violations."""
    from tb.runner import SimulationFailed
    with pytest.raises(SimulationFailed, match="invariant violations"):
        _run("stream", 80, 3, AcceleratorConfig(n_pes=1), "fuzz_stream", mutate=True,
             report=tmp_path / "r")
    assert " 0 invariant violations" not in (tmp_path / "r").read_text()


@pytest.mark.slow
def test_fuzz_long(tmp_path):
    """FUZZ_FRAMES (default 10,000) frames on the byte-level bench, LeNet-300-100 first."""
    from hw.build import size_config
    frames = int(os.environ.get("FUZZ_FRAMES", "10000"))
    model = "models/lenet300.npz"
    config = size_config(model, AcceleratorConfig(n_pes=1))
    _run("stream", frames, int(os.environ.get("FUZZ_SEED", "7")), config, "fuzz_stream_lenet",
         lenet=model, report=tmp_path / "r", accel_timeout=1 << 16)
    text = (tmp_path / "r").read_text()
    print(text)
    assert " 0 invariant violations" in text and frames <= int(text.split(": ")[1].split()[0])
