"""Test vectors for the whole accelerator: the case building lives with the flow tools
(``hw.simcase``, used by ``hw.bench`` and ``hw.profile``); re-exported here for the testbenches."""
from hw.simcase import (bench_config, case_from_int_model, config_from_case, load_case,
                        model_case, random_case, save_case, sim_config)

__all__ = ["sim_config", "bench_config", "random_case", "model_case", "case_from_int_model",
           "save_case", "load_case", "config_from_case"]
