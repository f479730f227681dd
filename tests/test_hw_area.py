"""hw.area: yosys statistics parsing and a real (small) synthesis."""
import pytest

from hw.area import AreaError, main, module_table, synthesise

STAT = """
=== pe ===

       12 cells
        3   SB_CARRY
        2   SB_DFFESR
        1   SB_DFF
        6   SB_LUT4

=== pe.dec ===
   SB_LUT4      4
   SB_RAM40_4K  2

=== design hierarchy ===
       10   SB_LUT4
"""


def test_module_table_both_layouts():
    t = module_table(STAT)
    assert t["pe"] == {"SB_CARRY": 3, "SB_DFFESR": 2, "SB_DFF": 1, "SB_LUT4": 6}
    assert t["pe.dec"] == {"SB_LUT4": 4, "SB_RAM40_4K": 2}
    assert t["design hierarchy"] == {"SB_LUT4": 10}


def test_unknown_part_is_a_clear_error():
    with pytest.raises(AreaError, match="unknown part"):
        synthesise("nonsense")


def test_decoder_synthesises(tmp_path, capsys):
    table = synthesise("decoder", workdir=tmp_path)
    top = table["design hierarchy"] if "design hierarchy" in table else table["decoder"]
    assert top.get("SB_LUT4", 0) > 50          # a real decoder, not an empty module
    assert main(["--part", "decoder"]) == 0
    assert "TOTAL" in capsys.readouterr().out


def test_model_sizes_the_config(tmp_path):
    """--model builds the part as hw.build would for that model (its gap width here)."""
    from hw.area import part_config
    from sw.golden import random_int_model
    from sw.modelfile import save_model
    path = tmp_path / "m.npz"
    save_model(path, random_int_model([30, 12, 10], density=0.3, seed=1, gap_bits=6).to_model())
    assert part_config(1, str(path)).gap_bits == 6
    assert part_config(1).gap_bits == 4
    with pytest.raises(AreaError, match="not found"):
        synthesise("decoder", 1, model=str(tmp_path / "none.npz"))
