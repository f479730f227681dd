"""Pack and unpack Amaranth ``StructLayout`` payloads as the flat integers cocotb sees."""

__all__ = ["pack_fields", "unpack_fields"]


def pack_fields(layout, **values):
    """Integer of ``layout`` with the named fields set (others 0); values are masked."""
    word = 0
    for name, field in layout:
        v = int(values.pop(name, 0))
        word |= (v & ((1 << field.width) - 1)) << field.offset
    if values:
        raise KeyError(f"fields not in the layout: {sorted(values)}")
    return word


def unpack_fields(layout, word):
    """``dict`` field name -> unsigned integer value of ``word``."""
    word = int(word)
    return {name: (word >> field.offset) & ((1 << field.width) - 1) for name, field in layout}
