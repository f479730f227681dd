"""Protocol: host-side codec (pure Python) and the gateware on the simulated UART pins."""
import pytest

from gateware.config import AcceleratorConfig
from gateware.protocol import SOF, Cmd, ProtocolEngine, _watch_limit, crc16, encode_frame
from gateware.top import SimTop
from tb.runner import run_bench
from gateware.mock_accel import MockAccelerator, mock_logits

CLOCK_HZ, BAUD, TIMEOUT = 12_000_000, 3_000_000, 2000


def test_crc16_check_value():
    assert crc16(b"123456789") == 0x29B1
    assert crc16(b"") == 0xFFFF


def test_encode_frame_layout():
    f = encode_frame(Cmd.LOAD, b"\x01\x02\x03")
    assert f[0] == SOF and f[1] == Cmd.LOAD and f[2:4] == b"\x03\x00" and f[4:7] == b"\x01\x02\x03"
    assert crc16(f[1:-2]) == f[-2] << 8 | f[-1]
    with pytest.raises(ValueError, match="65535"):
        encode_frame(Cmd.LOAD, bytes(70000))
    with pytest.raises(ValueError):
        encode_frame(300)


def test_engine_rejects_bad_parameters():
    with pytest.raises(ValueError, match="timeouts"):
        ProtocolEngine(timeout=3)
    with pytest.raises(ValueError, match="max_logits"):
        ProtocolEngine(max_logits=0)
    with pytest.raises(TypeError):
        ProtocolEngine(config={"n_pes": 4})
    with pytest.raises(ValueError, match="power-of-two input_lanes"):
        ProtocolEngine(AcceleratorConfig(input_lanes=3))


def test_status_reports_board_and_feature_maps():
    """STATUS carries the board file's id (0 in simulation) and the feature-map banks' depth
    (0: fc layers only), so the host recognises the board and refuses a conv model that the
    gateware cannot run; every other fixed field is there too."""
    from contract.protocol import STATUS_FIELDS
    from gateware.response import ResponseEmitter
    fc = ProtocolEngine(AcceleratorConfig(n_pes=2, input_lanes=4))
    conv = ProtocolEngine(AcceleratorConfig(n_pes=2, input_lanes=4, fmap_depth=1024),
                          board_id=2)
    for engine in (fc, conv):
        engine._MustUse__silence = True     # never elaborated
    assert (fc.status_constants()["board_id"], fc.status_constants()["fmap_depth"]) == (0, 0)
    assert (conv.status_constants()["board_id"], conv.status_constants()["fmap_depth"]) \
        == (2, 1024)
    fixed = {name for name, _ in STATUS_FIELDS} - set(ResponseEmitter.DYNAMIC_FIELDS)
    assert set(conv.status_constants()) == fixed


def test_watch_limit_rounding():
    """The watchdog expires at a count with at most four set bits, 7/8 .. 1 of the limit."""
    assert _watch_limit(600_000) == 599_040          # default 50 ms frame timeout at 12 MHz
    assert _watch_limit(1 << 24) == 0xF00000
    assert _watch_limit(2000) == 1920 and _watch_limit(16) == 15
    for clocks in [16, 17, 100, 2000, 4000, 20000, 40000, 600_000, 12_345_678, (1 << 32) - 1]:
        limit = _watch_limit(clocks)
        assert bin(limit).count("1") <= 4
        assert 7 * (clocks - 1) / 8 < limit <= clocks - 1, clocks


def test_mock_reference():
    w = [2] + [0] * 14 + [3]
    # h = rotl(1, 1) ^ 2 = 0; sum = 3
    assert mock_logits(w, [1, 2]) == [(2 << 16) + 3, 4, 5]
    assert mock_logits([-1] + [0] * 14 + [1], [0]) == [-65536]


@pytest.mark.sim
def test_protocol_cocotb_24mhz_divider_8():
    """Same protocol at another clock/divider (24 MHz, 3 Mbaud = 8 clocks per bit), one input
    value per accelerator input word (``input_lanes=1``; the other test has 4)."""
    top = SimTop(AcceleratorConfig(n_pes=2, input_lanes=1), clock_hz=24_000_000, baud=BAUD,
                 accelerator=MockAccelerator, timeout=2 * TIMEOUT, accel_timeout=40000)
    run_bench(top, toplevel="sim_top_mock", test_module="tb.top.test_protocol",
              name="top_mock_24_k1",
              testcase=["ping_reports_parameters", "load_and_infer_dense_and_sparse",
                        "truncated_frames_time_out_and_resync", "random_byte_gaps"],
              params={"clock_hz": 24_000_000, "divisor": 8, "timeout": 2 * TIMEOUT,
                      "n_pes": 2})


@pytest.mark.sim
def test_protocol_cocotb():
    top = SimTop(AcceleratorConfig(n_pes=4, input_lanes=4), clock_hz=CLOCK_HZ, baud=BAUD,
                 accelerator=MockAccelerator, timeout=TIMEOUT, accel_timeout=20000)
    run_bench(top, toplevel="sim_top_mock", test_module="tb.top.test_protocol",
              name="top_mock_k4",
              params={"clock_hz": CLOCK_HZ, "divisor": 4, "timeout": TIMEOUT, "n_pes": 4})



@pytest.mark.sim
def test_flash_boot_cocotb():
    """The model is loaded from a simulated SPI flash at power-up: good, blank, corrupt and
    truncated images (tb/top/test_flash.py), at the ULX3S's model offset (3 MiB)."""
    from boards import get_board
    offset = get_board("ulx3s").flash.model_offset
    top = SimTop(AcceleratorConfig(n_pes=2, input_lanes=1), clock_hz=CLOCK_HZ, baud=BAUD,
                 accelerator=MockAccelerator, timeout=TIMEOUT, accel_timeout=20000,
                 flash_offset=offset)
    run_bench(top, toplevel="sim_top_mock", test_module="tb.top.test_flash",
              name="top_mock_flash",
              params={"clock_hz": CLOCK_HZ, "divisor": 4, "timeout": TIMEOUT, "n_pes": 2,
                      "flash_offset": offset})
