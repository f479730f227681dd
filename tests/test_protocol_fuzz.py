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
import json
import os

import pytest

from gateware.config import AcceleratorConfig

# the UART-level run shares tests/test_reliability.py's top (same parameters: one build)
CLOCK_HZ, DIVISOR, TIMEOUT, ACCEL_TIMEOUT = 12_000_000, 4, 2000, 3000
VERILATOR_ARGS = ["--output-split", "0", "--output-split-cfuncs", "0"]


def _run(level, frames, seed, config, build, mutate=False, lenet=None, report=None,
         accel_timeout=ACCEL_TIMEOUT):
    from tb.runner import run_testbench
    if level == "stream":
        from tb.top.stream_top import StreamTop
        top = StreamTop(config, clock_hz=CLOCK_HZ, divisor=DIVISOR, timeout=TIMEOUT,
                        accel_timeout=accel_timeout)
    else:
        from gateware.top import SimTop
        top = SimTop(config, clock_hz=CLOCK_HZ, baud=CLOCK_HZ // DIVISOR, timeout=TIMEOUT,
                     accel_timeout=accel_timeout)
    env = {"FUZZ_LEVEL": level, "FUZZ_FRAMES": frames, "FUZZ_SEED": seed,
           "FUZZ_MUTATE": int(mutate), "FUZZ_CLOCK_HZ": CLOCK_HZ, "FUZZ_DIVISOR": DIVISOR,
           "FUZZ_TIMEOUT": TIMEOUT, "FUZZ_ACCEL_TIMEOUT": accel_timeout,
           "FUZZ_CONFIG": json.dumps(dataclasses.asdict(config))}
    if lenet:
        env["FUZZ_LENET"] = os.path.abspath(lenet)
    if report:
        env["FUZZ_REPORT"] = str(report)
    run_testbench(top, toplevel="fuzz_top" if level == "stream" else "sim_top",
                  test_module="tb.top.test_fuzz", build_name=build, build_args=VERILATOR_ARGS,
                  extra_env=env)


@pytest.mark.sim
def test_fuzz_byte_level(tmp_path):
    _run("stream", 400, 1, AcceleratorConfig(n_pes=1), "fuzz_stream", report=tmp_path / "r")
    print((tmp_path / "r").read_text())


@pytest.mark.sim
def test_fuzz_uart_level(tmp_path):
    _run("uart", 150, 2, AcceleratorConfig(n_pes=1), "top_n1", report=tmp_path / "r")
    print((tmp_path / "r").read_text())


@pytest.mark.sim
def test_fuzz_mutated_expectation_fails(tmp_path):
    """A check that cannot fail is a defect: with every expected logit off by one bit the fuzz
    reports violations."""
    from tb.runner import SimulationFailed
    with pytest.raises(SimulationFailed, match="invariant violations"):
        _run("stream", 40, 3, AcceleratorConfig(n_pes=1), "fuzz_stream", mutate=True,
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
