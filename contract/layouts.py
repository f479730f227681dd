"""Field tables of the stream payloads between the blocks (docs/ARCHITECTURE.md sections 5, 7).

Each table is an ordered ``{field: width}`` dict (the first field in the low bits). The gateware
turns them into ``amaranth.lib.data.StructLayout``s (``gateware/config.py``); testbenches and
tools pack and unpack words with the same tables. Functions take an
:class:`contract.config.AcceleratorConfig` where widths depend on it.
"""
from contract.memmap import ADDR_BITS, MEM_ID_BITS
from contract.widths import SHIFT_BITS, WORD_BITS

__all__ = ["LOAD_WRITE_FIELDS", "LOGIT_INDEX_BITS", "COLUMN_BITS", "ROW_BITS", "GEOMETRY_BITS", "logit_fields",
           "broadcast_fields", "pe_output_fields", "layer_config_fields"]

#: One word written into a memory image (memory id, word address, data), section 4.
LOAD_WRITE_FIELDS = {"mem": MEM_ID_BITS, "addr": ADDR_BITS, "data": WORD_BITS}

#: Width of a final-layer output index (so at most 256 logits).
LOGIT_INDEX_BITS = 8
#: Width of an input column index in the broadcast.
COLUMN_BITS = 16
#: Width of a global row index in a PE's output.
ROW_BITS = 16
#: Width of a feature map's height or width, a kernel's, an output position's coordinate.
GEOMETRY_BITS = 8


def logit_fields(cfg):
    """One final-layer accumulator (signed ``acc_bits``) with its output index."""
    return {"index": LOGIT_INDEX_BITS, "value": cfg.acc_bits, "last": 1}


def broadcast_fields(cfg):
    """Central unit -> PE: non-zero activation ``value`` of input column ``col``; ``end`` marks
    the end of a layer's inputs."""
    return {"col": COLUMN_BITS, "value": cfg.act_bits, "end": 1}


def pe_output_fields(cfg):
    """PE -> central unit: result ``value`` of global row ``row``; ``end`` is the PE's
    completion token for the layer."""
    return {"row": ROW_BITS, "value": cfg.acc_bits, "end": 1}


def layer_config_fields(cfg):
    """Decoded layer descriptor (:data:`contract.memmap.DESC_FIELDS`; the ``flags`` word split
    into its bits), as wide as the configuration needs: feature counts up to
    ``max_features``, ``sym_base`` below ``symbol_depth``; the packer refuses models that need
    more. ``index`` is the layer number.

    With conv support (``cfg.conv``) also the ``conv`` and ``fmap_in`` flags, the input map's
    geometry (``fm_channels .. kernel_w``) and what the sequencer adds per pass of a conv
    layer: the output position ``pos_y``, ``pos_x``, ``repeat`` (not the layer's first pass)
    and ``bank`` (the PEs' accumulator bank: it alternates with every pass and layer)."""
    conv = {}
    if cfg.conv:
        conv = {"conv": 1, "fmap_in": 1, "fm_channels": cfg.max_features.bit_length(),
                "fm_height": GEOMETRY_BITS, "fm_width": GEOMETRY_BITS,
                "kernel_h": GEOMETRY_BITS, "kernel_w": GEOMETRY_BITS,
                "pos_y": GEOMETRY_BITS, "pos_x": GEOMETRY_BITS, "repeat": 1, "bank": 1}
    return {
        "index": max(1, (cfg.max_layers - 1).bit_length()),
        "in_features": cfg.max_features.bit_length(),     # 0..max_features
        "out_features": cfg.max_features.bit_length(),
        "relu": 1,
        "last": 1,
        "ptr_words2": 1,
        "shift": SHIFT_BITS,
        "bias_shift": SHIFT_BITS,
        "sym_base": max(1, (cfg.symbol_depth - 1).bit_length()),
        **conv,
    }
