"""The contract between the layers (docs/ARCHITECTURE.md): plain Python, no Amaranth.

One place for every fact that the gateware (``gateware/``), the packer and the golden model
(``sw/``) and the host (``sw.host``) must agree on:

- :mod:`contract.widths`: the integer widths of section 1 and their defaults;
- :mod:`contract.config`: :class:`AcceleratorConfig`, the parameters the gateware is built with;
- :mod:`contract.memmap`: memory ids, the layer descriptor and the PE header (section 4);
- :mod:`contract.layouts`: field tables of the stream payloads (section 5);
- :mod:`contract.protocol`: frame format, commands, responses, error codes, STATUS, CRC
  (docs/PROTOCOL.md).

The gateware turns the field tables into ``amaranth.lib.data`` layouts; ``sw`` packs and
unpacks words with them. This package imports nothing but the standard library.
"""
from contract.config import AcceleratorConfig
from contract.widths import WIDTH_DEFAULTS, WIDTH_KEYS

__all__ = ["AcceleratorConfig", "WIDTH_DEFAULTS", "WIDTH_KEYS"]
