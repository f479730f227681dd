"""Model images for the board's SPI flash (docs/PROTOCOL.md, "Model in flash").

The gateware's flash loader (``gateware.flash_loader``) reads, at ``FLASH_OFFSET``, a header
(``FLASH_MAGIC``, the frame count u16 little-endian) and then replays the LOAD frames that follow
back to back into its protocol engine, exactly as if the host had sent them: each frame carries
its CRC-16, so every stored byte after the header is checked, and the count catches missing
frames. STATUS ``flash`` then says loaded, blank or corrupt.
"""
import struct

from contract.protocol import FLASH_HEADER, FLASH_MAGIC, Cmd, encode_frame

__all__ = ["FlashImageError", "flash_image", "load_runs"]


class FlashImageError(ValueError):
    """The model does not make a valid flash image (too large)."""


def load_runs(load_words):
    """Group ``(mem, addr, data)`` words into ``(mem, addr, [data...])`` consecutive runs."""
    runs = []
    for mem, addr, data in load_words:
        mem, addr, data = int(mem), int(addr), int(data) & 0xFFFF
        if runs and runs[-1][0] == mem and runs[-1][1] + len(runs[-1][2]) == addr:
            runs[-1][2].append(data)
        else:
            runs.append((mem, addr, [data]))
    return runs


def flash_image(runs, block_words=256):
    """Bytes to write at ``FLASH_OFFSET``: the header and one LOAD frame per ``block_words``
    words of each ``(mem, addr, words)`` run (``load_runs(packed.load_words())``)."""
    n_frames = sum(-(-len(words) // block_words) for _, _, words in runs)
    if n_frames >= 1 << 16:
        raise FlashImageError(f"{n_frames} frames exceed the header's 16-bit frame count")
    frames = []
    for mem, addr, words in runs:
        for start in range(0, len(words), block_words):
            block = words[start:start + block_words]
            payload = struct.pack("<BH", mem, addr + start) + \
                b"".join(struct.pack("<H", w & 0xFFFF) for w in block)
            frames.append(encode_frame(Cmd.LOAD, payload))
    header = FLASH_MAGIC + struct.pack("<H", len(frames))
    assert len(header) == FLASH_HEADER
    return header + b"".join(frames)
