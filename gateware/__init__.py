"""The accelerator's gateware (Amaranth 0.5).

Layering: modules here import Amaranth and the contract module only; the flow tools (``hw.build``,
``hw.bench``, ``hw.profile``, ``hw.area``) import this package, never the other way round.
"""
