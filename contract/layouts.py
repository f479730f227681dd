"""Field tables of the stream payloads between the blocks (docs/ARCHITECTURE.md sections 5, 7).

Each table is an ordered ``{field: width}`` dict (the first field in the low bits). The gateware
turns them into ``amaranth.lib.data.StructLayout``s (``gateware/config.py``); testbenches and
tools pack and unpack words with the same tables. Functions take an
:class:`contract.config.AcceleratorConfig` where widths depend on it.
"""
from contract.memmap import ADDR_BITS, CONV_DIM_BITS, CONV_KERNEL_BITS, DESC_FLAGS, MEM_ID_BITS
from contract.widths import SHIFT_BITS, WORD_BITS

__all__ = ["LOAD_WRITE_FIELDS", "LOGIT_INDEX_BITS", "COLUMN_BITS", "ROW_BITS", "logit_fields",
           "broadcast_fields", "pe_output_fields", "layer_config_fields"]

#: One word written into a memory image (memory id, word address, data), section 4.
LOAD_WRITE_FIELDS = {"mem": MEM_ID_BITS, "addr": ADDR_BITS, "data": WORD_BITS}

#: Width of a final-layer output index (so at most 256 logits).
LOGIT_INDEX_BITS = 8
#: Width of an input column index in the broadcast.
COLUMN_BITS = 16
#: Width of a (PE-local) row index in a PE's output.
ROW_BITS = 16


def logit_fields(cfg):
    """One final-layer accumulator (signed ``acc_bits``) with its output index."""
    return {"index": LOGIT_INDEX_BITS, "value": cfg.acc_bits, "last": 1}


def broadcast_fields(cfg):
    """Central unit -> PE: non-zero activation ``value`` of input column ``col``; ``end`` marks
    the end of a layer's inputs."""
    return {"col": COLUMN_BITS, "value": cfg.act_bits, "end": 1}


def pe_output_fields(cfg):
    """PE -> central unit: result ``value`` of local row ``row`` (PE ``p``'s row ``i`` is global
    row ``p + N * i``); ``end`` is the PE's completion token for the layer."""
    return {"row": ROW_BITS, "value": cfg.acc_bits, "end": 1}


def layer_config_fields(cfg):
    """Decoded layer descriptor (:data:`contract.memmap.DESC_FIELDS`; the ``flags`` word split
    into its bits, every bit of :data:`contract.memmap.DESC_FLAGS`), as wide as the
    configuration needs: feature counts up to ``max_features``, ``sym_base`` below
    ``symbol_depth``; the packer refuses models that need more. ``index`` is the layer number.
    With feature-map buffers (``cfg.fmap_depth > 0``) the conv geometry follows (``in_values``
    up to 16 bits, heights and widths :data:`contract.memmap.CONV_DIM_BITS`, kernel sides
    :data:`contract.memmap.CONV_KERNEL_BITS`; ``pool`` is always 2 and not kept)."""
    fields = {
        "index": max(1, (cfg.max_layers - 1).bit_length()),
        "in_features": cfg.max_features.bit_length(),     # 0..max_features
        "out_features": cfg.max_features.bit_length(),
        **{flag: 1 for flag in DESC_FLAGS},
        "shift": SHIFT_BITS,
        "bias_shift": SHIFT_BITS,
        "sym_base": max(1, (cfg.symbol_depth - 1).bit_length()),
    }
    if cfg.fmap_depth:
        fields.update({
            "in_values": WORD_BITS,
            "in_channels": cfg.max_features.bit_length(),
            "in_height": CONV_DIM_BITS, "in_width": CONV_DIM_BITS,
            "kernel_h": CONV_KERNEL_BITS, "kernel_w": CONV_KERNEL_BITS,
            "out_height": CONV_DIM_BITS, "out_width": CONV_DIM_BITS,
            # not descriptor words: the sequencer's per pass of a conv layer (the output
            # position, not the layer's first pass, the PEs' accumulator bank, which alternates
            # with every pass and layer)
            "pos_y": CONV_DIM_BITS, "pos_x": CONV_DIM_BITS, "repeat": 1, "bank": 1,
        })
    return fields
