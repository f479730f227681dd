"""Payload layouts of the accelerator's streams (docs/ARCHITECTURE.md sections 5 and 7).

The parameters (:class:`AcceleratorConfig`) and the field tables come from the contract
(``contract.config``, ``contract.layouts``); this module turns the tables into
``amaranth.lib.data`` layouts.
"""
from amaranth.lib import data, stream
from amaranth.lib.wiring import In, Out

from contract.config import AcceleratorConfig
from contract.layouts import (LOAD_WRITE_FIELDS, broadcast_fields, layer_config_fields,
                              logit_fields, pe_output_fields)

__all__ = ["AcceleratorConfig", "LoadWrite", "broadcast_layout", "pe_output_layout",
           "layer_config_layout", "input_layout", "logit_layout", "accelerator_ports"]


#: One word written into a memory image (mem id, word address, data), section 4.
LoadWrite = data.StructLayout(LOAD_WRITE_FIELDS)


def input_layout(cfg):
    """One dense input word: ``K = input_lanes`` activations (unsigned ``act_bits`` each).

    ``value[j]`` of word ``k`` is input ``k*K + j`` (lane 0 = lowest index). ``last`` is set on
    the final word of a vector, the one holding input ``in_features - 1``; its lanes past that
    input are ignored (any value).
    """
    return data.StructLayout({"value": data.ArrayLayout(cfg.act_bits, cfg.input_lanes),
                              "last": 1})


def logit_layout(cfg):
    """One final-layer accumulator (signed ``acc_bits``) with its output index."""
    return data.StructLayout(logit_fields(cfg))


def accelerator_ports(cfg, error_shape):
    """Signature members of an accelerator (section 5): the real one and the stand-in that
    builds and protocol tests use take them from here, so the two interfaces cannot drift.

    ``error_shape`` is the shape of ``o_error`` (sticky error flags), the one port whose meaning
    differs between them.
    """
    return {
        "i_load": In(stream.Signature(LoadWrite)),
        "i_input": In(stream.Signature(input_layout(cfg))),
        "o_logit": Out(stream.Signature(logit_layout(cfg))),
        "o_argmax": Out(8),
        "o_busy": Out(1),
        "o_cycles": Out(32),
        "o_error": Out(error_shape),
    }


def broadcast_layout(cfg):
    """Central unit -> PE: non-zero activation ``value`` of input column ``col``.

    ``end`` = 1 marks the end of a layer's inputs (``col``/``value`` are then ignored).
    """
    return data.StructLayout(broadcast_fields(cfg))


def pe_output_layout(cfg):
    """PE -> central unit: result of local row ``row`` (PE ``p``'s row ``i`` is global row
    ``p + N * i``).

    Hidden layers: only non-zero requantized activations (``value`` zero-extended).
    Last layer: every row's accumulator (``value`` two's complement ``acc_bits``), in local row
    order. ``end`` = 1 is the PE's completion token for the layer (``row``/``value`` ignored).
    """
    return data.StructLayout(pe_output_fields(cfg))


def layer_config_layout(cfg):
    """Decoded layer descriptor (section 4), held stable by the sequencer during a layer.

    Fields are as wide as the configuration needs (feature counts up to ``max_features``,
    ``sym_base`` below ``symbol_depth``); the packer refuses models that need more.
    """
    return data.StructLayout(layer_config_fields(cfg))
