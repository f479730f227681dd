"""CRC-16/CCITT-FALSE in gateware (the host's is ``contract.protocol.crc16``)."""
from amaranth import Cat, C

from contract.protocol import CRC_POLY

__all__ = ["crc16_next"]


def crc16_next(crc, byte):
    """CRC-16/CCITT-FALSE register ``crc`` (16 bits) after shifting in ``byte`` (8 bits).

    The CRC is linear over GF(2): each output bit is the XOR of a fixed set of input bits, worked
    out here symbolically so the netlist is one XOR tree per bit.
    """
    # Symbolic bits: frozenset of input bit ids, 0..15 = crc, 16..23 = byte.
    c = [frozenset([i]) for i in range(16)]
    for i in range(8):
        c[8 + i] = c[8 + i] ^ frozenset([16 + i])
    for _ in range(8):
        top = c[15]
        shifted = [frozenset()] + c[:15]
        c = [shifted[i] ^ top if (CRC_POLY >> i) & 1 else shifted[i] for i in range(16)]
    inputs = Cat(crc, byte)
    out = []
    for terms in c:
        bit = C(0, 1)
        for t in sorted(terms):
            bit = bit ^ inputs[t]
        out.append(bit)
    return Cat(*out)
