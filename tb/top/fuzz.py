"""Protocol fuzz: frame generator and the reference model that checks every response.

Pure Python (no cocotb): :func:`parse_chunk` splits a byte chunk into the frames the board's
parser will see (``SOF cmd len_lo len_hi payload[len] crc_hi crc_lo``; bytes outside a frame are
skipped; a frame cut by the end of the chunk times out, because the fuzz lets the board go idle
after every chunk); :class:`BoardModel` tracks what the board must hold (memory words written
by LOAD frames, the snooped ``in_features``, possible sticky accelerator errors) and checks each
response against its frame; :class:`FrameGenerator` makes the chunks: valid frames, RESET /
LOAD / INFER interleaved, complete and aborted uploads, corrupting loads, bit flips,
truncations, wrong lengths, garbage between frames and floods.

Invariants checked: exactly one response per frame start (in order, nothing more at the end),
never a hang (every wait is bounded), each response is the one the frame calls for (error code,
ACK word count, STATUS ``in_features`` and ``loaded``) and every RESULT after a complete, valid
upload is bit-exact with sw.golden (logits and prediction).
"""
import random
import struct
from dataclasses import dataclass, field

import numpy as np

from contract.memmap import DESC_WORD, DESC_WORDS
from gateware.protocol import (PROTOCOL_VERSION, SOF, STATUS_FIELDS, STATUS_FLAGS, Cmd, Err,
                               Resp, crc16, encode_frame)
from sw import incode

__all__ = ["Frame", "parse_chunk", "KnownModel", "BoardModel", "FrameGenerator"]

_STATUS_STRUCT = "<" + "".join({1: "B", 2: "H", 4: "I"}[n] for _, n in STATUS_FIELDS)
_STATUS_NAMES = [n for n, _ in STATUS_FIELDS]


@dataclass
class Frame:
    """A frame as the board's parser sees it."""
    cmd: int
    length: int
    payload: bytes          # the payload bytes that arrived (all of them if complete)
    complete: bool          # the CRC bytes arrived too
    crc_ok: bool = False


def parse_chunk(chunk):
    """Frames started in ``chunk`` (bytes outside frames skipped; the last may be cut)."""
    frames = []
    i, n = 0, len(chunk)
    while i < n:
        if chunk[i] != SOF:
            i += 1
            continue
        head = chunk[i + 1:i + 4]
        if len(head) < 3:
            frames.append(Frame(head[0] if head else -1, -1, b"", False))
            break
        cmd, length = head[0], head[1] | head[2] << 8
        payload = chunk[i + 4:i + 4 + length]
        crc = chunk[i + 4 + length:i + 6 + length]
        if len(payload) < length or len(crc) < 2:
            frames.append(Frame(cmd, length, bytes(payload), False))
            break
        ok = crc16(bytes(head) + bytes(payload)) == crc[0] << 8 | crc[1]
        frames.append(Frame(cmd, length, bytes(payload), True, ok))
        i += 6 + length
    return frames


@dataclass
class KnownModel:
    """A model the fuzz uploads: its integer model, packed images and golden cache."""
    name: str
    int_model: object
    packed: object
    image: dict = field(default_factory=dict)       # (mem, addr) -> word

    def __post_init__(self):
        for mem, addr, word in self.packed.load_words():
            self.image[(mem, addr)] = int(word) & 0xFFFF
        self._golden = {}

    @property
    def in_features(self):
        return self.int_model.in_features

    def golden(self, x):
        key = bytes(x)
        if key not in self._golden:
            from sw.golden import infer
            r = infer(self.int_model, np.asarray([list(x)], dtype=np.int64))
            self._golden[key] = ([int(v) for v in r.logits[0]], int(r.prediction[0]))
        return self._golden[key]

    def load_frames(self, block_words):
        """LOAD frames writing the whole image, ``block_words`` words per frame."""
        from sw.host import _runs
        frames = []
        for mem, addr, words in _runs(self.packed.load_words()):
            for s in range(0, len(words), block_words):
                chunk = np.asarray(words[s:s + block_words], dtype=np.int64) & 0xFFFF
                frames.append(encode_frame(Cmd.LOAD, struct.pack("<BH", mem, addr + s)
                                           + chunk.astype("<u2").tobytes()))
        return frames


class BoardModel:
    """What the board must answer, frame by frame.

    Parameters
    ----------
    config : gateware.config.AcceleratorConfig
    models : list of KnownModel
    mutate_expectation : bool
        Flip one bit of every expected logit (the fuzz must then report violations: a check
        that cannot fail is a defect).
    """

    def __init__(self, config, models, mutate_expectation=False):
        self.cfg = config
        self.models = models
        self.mutate = mutate_expectation
        self.in_features = 0
        self.loaded = False
        self.sticky = False         # the accelerator's sticky error flags may be set
        # per model: image addresses whose word on the board differs (unknown at start)
        self.wrong = [set(km.image) for km in models]
        self.frames = 0
        self.violations = []
        self.results_checked = {km.name: 0 for km in models}
        self.responses = {}

    # ---- memory --------------------------------------------------------------------------
    def _write(self, mem, addr, word):
        cfg = self.cfg
        if mem >= cfg.n_mem_ids or (mem == cfg.mem_layers and addr >= DESC_WORDS * cfg.max_layers) \
                or (mem == cfg.mem_colskip and addr >= cfg.colskip_depth):
            self.sticky = True      # the accelerator's ``load`` error flag
        for km, wrong in zip(self.models, self.wrong):
            want = km.image.get((mem, addr))
            if want is not None:
                if want == word:
                    wrong.discard((mem, addr))
                else:
                    wrong.add((mem, addr))
        if mem == cfg.mem_layers and (addr == 0 or addr == DESC_WORD["in_values"] and word):
            self.in_features = word
            self.loaded = 0 < word <= cfg.max_features

    def intact(self):
        """The model whose image the board holds completely (and whose inputs it expects)."""
        for km, wrong in zip(self.models, self.wrong):
            if not wrong and self.in_features == km.in_features:
                return km
        return None

    # ---- checking ------------------------------------------------------------------------
    def check(self, frame, response):
        """Apply ``frame``'s effects and check ``response`` (``(code, body)``); returns the
        violations found (strings) and records them."""
        self.frames += 1
        errs = self._check(frame, response)
        key = response[0] if response[0] != Resp.ERROR or not response[1] else \
            (Resp.ERROR, response[1][0])
        self.responses[key] = self.responses.get(key, 0) + 1
        tag = f"frame {self.frames} (cmd 0x{max(frame.cmd, 0):02x}, len {frame.length}): "
        errs = [tag + e for e in errs]
        self.violations += errs
        return errs

    def _check(self, f, response):
        code, body = response
        cfg = self.cfg
        action = None
        hdr_err = 0
        if f.length >= 0:
            if f.cmd == Cmd.RESET:
                action, hdr_err = (f.cmd, 0) if f.length == 0 else (None, Err.BAD_LENGTH)
            elif f.cmd == Cmd.PING:
                # protocol 4: one optional byte, the host's version
                if f.length == 0 or (f.length == 1 and f.payload[:1] == bytes([PROTOCOL_VERSION])):
                    action = f.cmd
                else:
                    hdr_err = Err.VERSION if f.length == 1 else Err.BAD_LENGTH
            elif f.cmd == Cmd.LOAD:
                action, hdr_err = (f.cmd, 0) if f.length >= 5 and f.length & 1 else \
                    (None, Err.BAD_LENGTH)
            elif f.cmd == Cmd.INFER_DENSE:
                if not self.loaded:
                    hdr_err = Err.NOT_LOADED
                elif f.length != self.in_features:
                    hdr_err = Err.BAD_LENGTH
                else:
                    action = f.cmd
            elif f.cmd == Cmd.INFER_SPARSE:
                action, hdr_err = (f.cmd, 0) if self.loaded else (None, Err.NOT_LOADED)
            elif f.cmd == Cmd.INFER_CODED:
                if not self.loaded:
                    hdr_err = Err.NOT_LOADED
                elif f.length == 0:
                    hdr_err = Err.BAD_LENGTH
                else:
                    action = f.cmd
            else:
                hdr_err = Err.UNKNOWN_CMD
        # LOAD words are written as they arrive (the CRC is checked at the end)
        words = 0
        if action == Cmd.LOAD and len(f.payload) >= 3:
            mem, addr = f.payload[0], f.payload[1] | f.payload[2] << 8
            for k in range((len(f.payload) - 3) // 2):
                self._write(mem, (addr + k) & 0xFFFF,
                            f.payload[3 + 2 * k] | f.payload[4 + 2 * k] << 8)
                words += 1
        # the input vector and its errors
        x, bad_len, bad_input = None, False, False
        if action == Cmd.INFER_DENSE:
            x = f.payload
        elif action == Cmd.INFER_SPARSE:
            n = self.in_features
            vec = bytearray(n)
            pos = 0
            for k in range(len(f.payload) // 3):
                idx, val = struct.unpack_from("<HB", f.payload, 3 * k)
                if bad_input or idx < pos or idx >= n:
                    bad_input = True
                else:
                    vec[idx] = val & ((1 << cfg.act_bits) - 1)
                    pos = idx + 1
            bad_len = len(f.payload) % 3 != 0
            x = bytes(vec)
        elif action == Cmd.INFER_CODED:
            x, bad_len, bad_input = self._decode(f.payload[1:])

        if not f.complete:
            expect = Err.TIMEOUT
        elif not f.crc_ok:
            expect = Err.BAD_CRC
        elif hdr_err:
            expect = hdr_err
        elif bad_len:
            expect = Err.BAD_LENGTH
        elif bad_input:
            expect = Err.BAD_INPUT
        else:
            expect = None
        if expect is not None:
            return self._expect_error(code, body, expect)
        if action == Cmd.PING:
            return self._check_status(code, body)
        if action in (Cmd.RESET, Cmd.LOAD):
            if (code, body) != (Resp.ACK, struct.pack("<H", words)):
                return [f"expected ACK({words}), got {_show(code, body)}"]
            if action == Cmd.RESET:
                self.sticky = False
            return []
        seq = f.payload[0] if action == Cmd.INFER_CODED else 0x80
        return self._check_infer(x, code, body, seq)

    def _decode(self, tokens):
        """INFER_CODED tokens as the board decodes them: (vector, bad length, bad input)."""
        n = self.in_features
        vec = bytearray(n)
        pos = lits = 0
        bad_input = False
        for b in tokens:
            if lits == 0:                       # a token: zeros, then literals
                zeros, lits = b >> incode.LIT_BITS, b & incode.MAX_LITERALS
                if pos + zeros > n:
                    bad_input = True
                pos = min(n, pos + zeros)
            else:
                if pos == n:
                    bad_input = True
                else:
                    vec[pos] = b & ((1 << self.cfg.act_bits) - 1)
                    pos += 1
                lits -= 1
        return bytes(vec), lits != 0, bad_input

    def _expect_error(self, code, body, err):
        if code != Resp.ERROR or len(body) != 3 or body[0] != err:
            return [f"expected ERROR 0x{err:02x}, got {_show(code, body)}"]
        return []

    def _check_status(self, code, body):
        if code != Resp.STATUS or len(body) != struct.calcsize(_STATUS_STRUCT):
            return [f"expected STATUS, got {_show(code, body)}"]
        st = dict(zip(_STATUS_NAMES, struct.unpack(_STATUS_STRUCT, body)))
        errs = []
        if self.loaded and st["in_features"] != self.in_features:
            errs.append(f"STATUS in_features {st['in_features']} != {self.in_features}")
        if bool(st["flags"] >> STATUS_FLAGS["loaded"] & 1) != self.loaded:
            errs.append(f"STATUS loaded flag {st['flags']:#x}, expected {self.loaded}")
        return errs

    def _check_infer(self, x, code, body, seq=0x80):
        km = self.intact()
        if code == Resp.ERROR and len(body) == 3 and body[0] == Err.ACCEL_TIMEOUT:
            self.sticky = False     # the watchdog reset the accelerator
        if km is None:
            # a partial or corrupted image: any outcome but a hang or a malformed response
            if code == Resp.RESULT and _result(body) is None:
                return [f"malformed RESULT {body.hex()}"]
            if code == Resp.ERROR and len(body) == 3 and body[0] in (
                    Err.ACCEL_ERROR, Err.ACCEL_TIMEOUT, Err.OUTPUT):
                self.sticky = self.sticky or body[0] != Err.ACCEL_TIMEOUT
                return []
            self.sticky = True
            if code == Resp.RESULT:
                return []
            return [f"INFER on a corrupted image answered {_show(code, body)}"]
        logits, pred = km.golden(x)
        if self.mutate:
            logits = [v ^ 1 for v in logits]
        if code == Resp.ERROR and self.sticky and len(body) == 3 and body[0] == Err.ACCEL_ERROR:
            return []               # flags from an earlier corrupted image, until RESET
        got = _result(body) if code == Resp.RESULT else None
        if got is None:
            return [f"INFER after a complete upload of {km.name} answered {_show(code, body)}"]
        self.results_checked[km.name] += 1
        if got[3] != seq:
            return [f"RESULT for sequence byte 0x{got[3]:02x}, expected 0x{seq:02x}"]
        if not seq & 0x80:
            logits = []                         # the compact result: no logits
        if got[:2] != (logits, pred):
            return [f"{km.name}: logits {got[0]} argmax {got[1]} != golden {logits} argmax {pred}"]
        return []


def _result(body):
    """``(logits, argmax, cycles, seq)`` of a RESULT payload (protocol 4: seq u8, n u8,
    logit i32 * n, argmax u8, cycles u32), None if malformed."""
    if len(body) < 7 or len(body) != 4 * body[1] + 7:
        return None
    n = body[1]
    return (list(struct.unpack_from(f"<{n}i", body, 2)),) \
        + struct.unpack_from("<BI", body, 2 + 4 * n) + (body[0],)


def _show(code, body):
    if code == Resp.ERROR and len(body) == 3:
        return f"ERROR 0x{body[0]:02x}"
    return f"0x{code:02x} {body[:16].hex()}{'...' if len(body) > 16 else ''}"


class FrameGenerator:
    """Random chunks of bytes for the fuzz (see the module docstring).

    Parameters
    ----------
    rng : random.Random
    model : BoardModel
        Consulted for the current state (re-upload more often when the image is broken).
    km : KnownModel
        The model uploaded and inferred.
    uart : bool
        UART-level limits: one frame per chunk, at most ``max_bytes`` bytes (the receive FIFO
        holds every byte while the board answers), no SOF in garbage; floods are separate.
    block_words : int
        Words per LOAD frame of an upload.
    """

    def __init__(self, rng, model, km, uart=False, block_words=8, max_bytes=32):
        self.rng = rng
        self.model = model
        self.km = km
        self.uart = uart
        self.block_words = block_words
        self.max_bytes = max_bytes
        self.uploads = km.load_frames(block_words)

    def set_model(self, km):
        self.km = km
        self.uploads = km.load_frames(self.block_words)

    # ---- frames --------------------------------------------------------------------------
    def input(self):
        rng, n = self.rng, self.km.in_features
        density = rng.choice([0.0, 0.1, 0.3, 0.6, 1.0])
        limit = 8 if self.uart else n
        x = bytearray(n)
        for i in rng.sample(range(n), min(limit, round(density * n))):
            x[i] = rng.choice([1, 255, rng.randrange(256)])
        return bytes(x)

    def infer(self):
        x = self.input()
        r = self.rng.random()
        if r < 0.3:
            seq = self.rng.randrange(256)       # bit 7: the logits too
            frame = encode_frame(Cmd.INFER_CODED, bytes([seq]) + incode.encode(x))
            if not self.uart or len(frame) <= self.max_bytes:
                return frame
        sparse = r < 0.65 or (self.uart and 7 + len(x) > self.max_bytes)
        if sparse:
            return encode_frame(Cmd.INFER_SPARSE, b"".join(
                struct.pack("<HB", i, v) for i, v in enumerate(x) if v))
        return encode_frame(Cmd.INFER_DENSE, x)

    def valid_frame(self):
        # (UART level: a mutated LOAD would break the image and cost a slow re-upload)
        r = self.rng.random() * (0.75 if self.uart else 1)
        if r < 0.5:
            return self.infer()
        if r < 0.6:
            return encode_frame(Cmd.PING)
        if r < 0.65:
            return encode_frame(Cmd.PING, bytes([self.rng.choice(
                [PROTOCOL_VERSION, PROTOCOL_VERSION, self.rng.randrange(256)])]))
        if r < 0.75:
            return encode_frame(Cmd.RESET)
        return self.rng.choice(self.uploads)    # rewriting a correct block is harmless

    def corrupt_load(self):
        """A well-formed LOAD writing wrong words over part of the image."""
        rng = self.rng
        mem, addr = rng.choice(sorted(self.km.image))
        n = rng.randint(1, 4 if self.uart else 12)
        words = []
        for k in range(n):
            w = self.km.image.get((mem, (addr + k) & 0xFFFF), 0)
            words.append(w ^ (1 << rng.randrange(16)) if rng.random() < 0.7
                         else rng.randrange(1 << 16))
        return encode_frame(Cmd.LOAD, struct.pack("<BH", mem, addr)
                            + struct.pack(f"<{n}H", *words))

    def stray_load(self):
        """A LOAD outside every memory (memory id, layers or skip table address range)."""
        cfg = self.model.cfg
        rng = self.rng
        mem, addr = rng.choice([(rng.randrange(cfg.n_mem_ids, 256), rng.randrange(1 << 16)),
                                (cfg.mem_layers, rng.randrange(DESC_WORDS * cfg.max_layers,
                                                               1 << 16))])
        return encode_frame(Cmd.LOAD, struct.pack("<BHH", mem, addr, rng.randrange(1 << 16)))

    def mutate(self, frame):
        rng = self.rng
        f = bytearray(frame)
        kind = rng.choice(["flip", "flip", "truncate", "length", "length_crc", "drop", "extra",
                           "crc"])
        if kind == "flip":
            i = rng.randrange(1, len(f))        # (a flipped SOF is a garbage test of its own)
            f[i] ^= 1 << rng.randrange(8)
        elif kind == "truncate":
            f = f[:rng.randrange(1, len(f))]
        elif kind in ("length", "length_crc"):
            n = (f[2] | f[3] << 8) + rng.choice([-3, -2, -1, 1, 2, 3, 0x100, rng.randrange(1 << 16)])
            n &= 0xFFFF
            f[2], f[3] = n & 0xFF, n >> 8
            if kind == "length_crc":
                crc = crc16(bytes(f[1:-2]))
                f[-2], f[-1] = crc >> 8, crc & 0xFF
        elif kind == "drop":
            del f[rng.randrange(1, len(f))]
        elif kind == "extra":
            f.insert(rng.randrange(1, len(f)), rng.randrange(256))
        else:
            f[-1] ^= 0xFF
        return bytes(f)

    def garbage(self):
        rng = self.rng
        n = rng.randint(1, 8 if self.uart else 24)
        g = bytes(rng.randrange(256) for _ in range(n))
        if self.uart:
            g = g.replace(bytes([SOF]), b"\x00")
        return g

    # ---- chunks --------------------------------------------------------------------------
    def chunks(self):
        """The next step: a list of chunks (the board goes idle after each one)."""
        rng = self.rng
        broken = self.model.intact() is not self.km
        r = rng.random()
        if broken and r < 0.5:
            return list(self.uploads)                               # complete re-upload
        if r < 0.06:
            return list(self.uploads)
        if r < 0.10 and not self.uart:                              # aborted upload
            k = rng.randrange(len(self.uploads))
            return list(self.uploads[:k]) + [self.mutate(self.uploads[k])]
        if r < 0.14 and not self.uart:      # (both cost a re-upload: UART frames are slow)
            return [self.corrupt_load()]
        if r < 0.15:
            return [self.stray_load()]
        if r < 0.40:
            return [self.infer()]
        if r < 0.45:
            return [encode_frame(Cmd.PING)]
        if r < 0.50:
            return [encode_frame(Cmd.RESET)]
        if r < 0.75:
            return [self._fit(self.mutate(self.valid_frame()))]
        if r < 0.85:                                                # garbage between frames
            return [self._fit(self.garbage() + self.valid_frame())]
        if self.uart:
            return [self._fit(self.valid_frame())]
        # flood: frames back to back, interleaving RESET / LOAD / INFER
        frames = [self.valid_frame() for _ in range(rng.randint(3, 40))]
        if rng.random() < 0.3:
            frames.insert(rng.randrange(len(frames)), self.mutate(self.valid_frame()))
        if rng.random() < 0.3:
            frames.insert(rng.randrange(len(frames)), self.garbage())
        return [b"".join(frames)]

    def _fit(self, chunk):
        return chunk[:self.max_bytes] if self.uart else chunk
