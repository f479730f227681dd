"""Framed UART command protocol (docs/PROTOCOL.md): frame format, commands, responses, error
codes, the STATUS payload and the CRC. Shared by the gateware (``gateware.protocol``) and the
host (``sw.host``).

Frame: ``SOF cmd len_lo len_hi payload[len] crc_hi crc_lo``; the CRC is CRC-16/CCITT-FALSE
(polynomial :data:`CRC_POLY` 0x1021, initial value :data:`CRC_INIT` 0xFFFF, no reflection) over
``cmd``, ``len`` and the payload. The board answers every frame it recognises (one that starts
with ``SOF``) with exactly one response frame: ``STATUS``, ``ACK``, ``RESULT`` or ``ERROR``.
"""

__all__ = [
    "PROTOCOL_VERSION", "SOF", "CRC_POLY", "CRC_INIT", "MAX_PAYLOAD", "Cmd", "Resp", "Err",
    "ERROR_NAMES", "STATUS_FIELDS", "STATUS_LENGTH", "STATUS_FLAGS", "FlashState",
    "FLASH_STATES", "FLASH_OFFSET", "FLASH_MAGIC", "FLASH_HEADER", "crc16", "encode_frame",
]

PROTOCOL_VERSION = 6      # 2: per-PE pointer memories (mem ids N+5..2N+4)
#                           3: column skip table (mem id 2N+5)
#                           4: INFER_CODED, RESULT carries a sequence byte, STATUS rx_buffer
#                              and flash, PING may carry the host's version
#                           5: 16-word layer descriptors with the conv geometry (issue 17)
#                           6: STATUS board_id and fmap_depth (the host refuses a conv model
#                              on a gateware without feature-map buffers)
SOF = 0xA5
#: CRC-16/CCITT-FALSE generator polynomial and initial value.
CRC_POLY = 0x1021
CRC_INIT = 0xFFFF
#: Longest payload of a frame (the length field is 16 bits).
MAX_PAYLOAD = 0xFFFF


class Cmd:
    """Host -> board command codes."""
    PING = 0x01           #: no payload; answered by STATUS
    LOAD = 0x02           #: mem u8, addr u16, words u16 * n; answered by ACK(words written)
    INFER_DENSE = 0x03    #: in_features bytes; answered by RESULT
    INFER_SPARSE = 0x04   #: (index u16, value u8) * k, ascending indices; answered by RESULT
    RESET = 0x05          #: no payload; resets the accelerator (memories keep), answered by ACK
    INFER_CODED = 0x06    #: seq u8 (bit 7: send the logits), tokens (sw.incode); RESULT


class Resp:
    """Board -> host response codes."""
    STATUS = 0x81
    ACK = 0x82
    RESULT = 0x83
    ERROR = 0xEE


class Err:
    """Error codes carried by an ERROR frame (payload: code, offending cmd, detail)."""
    BAD_CRC = 0x01
    UNKNOWN_CMD = 0x02
    BAD_LENGTH = 0x03
    TIMEOUT = 0x04
    BUSY = 0x05
    NOT_LOADED = 0x06
    BAD_INPUT = 0x07
    FRAMING = 0x08
    ACCEL_ERROR = 0x09
    ACCEL_TIMEOUT = 0x0A
    OUTPUT = 0x0B
    VERSION = 0x0C


ERROR_NAMES = {
    Err.BAD_CRC: "bad checksum",
    Err.UNKNOWN_CMD: "unknown command",
    Err.BAD_LENGTH: "bad payload length for this command",
    Err.TIMEOUT: "frame truncated (idle timeout inside a frame)",
    Err.BUSY: "bytes lost: the board was busy (receive overrun)",
    Err.NOT_LOADED: "no model loaded (layer 0 descriptor not written)",
    Err.BAD_INPUT: "input values past in_features (a sparse index out of range or not "
                   "ascending, coded runs too long)",
    Err.FRAMING: "UART framing error inside the frame",
    Err.ACCEL_ERROR: "the accelerator raised its error flag",
    Err.ACCEL_TIMEOUT: "the accelerator did not finish (it was reset)",
    Err.OUTPUT: "the accelerator produced more logits than the result buffer holds",
    Err.VERSION: "the board speaks another protocol version than the host (rebuild the "
                 "bitstream or update the host)",
}

#: STATUS payload, little-endian fields in order: (name, bytes).
STATUS_FIELDS = (
    ("version", 1), ("n_pes", 1), ("act_bits", 1), ("weight_bits", 1), ("acc_bits", 1),
    ("idx_bits", 1), ("gap_bits", 1), ("huff_max_len", 1), ("max_layers", 1),
    ("max_features", 2), ("pe_mem_log2", 1), ("max_rows_per_pe", 2), ("symbol_depth", 2),
    ("fifo_depth", 1), ("max_logits", 1), ("clock_hz", 4), ("divisor", 2), ("in_features", 2),
    ("flags", 1), ("accel_error", 1), ("rx_buffer", 2), ("flash", 1), ("board_id", 1),
    ("fmap_depth", 4),
)
STATUS_LENGTH = sum(n for _, n in STATUS_FIELDS)

#: Bits of the STATUS ``flags`` byte (sticky ones are cleared by the PING that reports them).
STATUS_FLAGS = {
    "framing_error": 0,     # sticky: a UART framing error was seen
    "overrun": 1,           # sticky: received bytes were lost
    "accel_timeout": 2,     # sticky: the accelerator was reset after a timeout
    "accel_error": 3,       # current: the accelerator's error output is non-zero
    "accel_busy": 4,        # current: the accelerator is busy
    "loaded": 5,            # current: a layer 0 descriptor with 0 < in_features <= max was written
}


class FlashState:
    """STATUS ``flash``: the model image in the SPI flash (``gateware.flash_loader``)."""
    NONE = 0          #: the gateware has no flash loader
    LOADING = 1       #: the image is being read
    LOADED = 2        #: every stored frame was acknowledged
    BLANK = 3         #: no image at the offset (magic missing: erased or never written)
    CORRUPT = 4       #: a frame failed (checksum, length, timeout) or frames are missing


FLASH_STATES = {0: "no flash loader", 1: "loading", 2: "loaded from flash",
                3: "blank (no model image in flash)", 4: "corrupt model image in flash"}
#: Byte address of the model image in the board's SPI flash (after the bitstream).
FLASH_OFFSET = 0x100000
#: First bytes of a stored model image.
FLASH_MAGIC = b"DCM\x01"
#: Image header: magic, frame count u16 LE; the LOAD frames follow back to back.
FLASH_HEADER = len(FLASH_MAGIC) + 2


def crc16(data_bytes, crc=CRC_INIT):
    """CRC-16/CCITT-FALSE of ``data_bytes`` (``crc16(b"123456789") == 0x29B1``)."""
    for byte in data_bytes:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ CRC_POLY) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def encode_frame(cmd, payload=b""):
    """Bytes of one frame carrying ``cmd`` (0..255) and ``payload`` (< 65536 bytes)."""
    payload = bytes(payload)
    if not 0 <= cmd <= 255:
        raise ValueError(f"command must be a byte, not {cmd}")
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds the 65535-byte frame limit")
    body = bytes([cmd, len(payload) & 0xFF, len(payload) >> 8]) + payload
    crc = crc16(body)
    return bytes([SOF]) + body + bytes([crc >> 8, crc & 0xFF])
