"""cocotb tests of the model in flash: SimTop (mock accelerator, flash loader) boots from a
behavioural SPI flash (tb/top/spiflash.py) holding a good, blank, corrupt or truncated image.

Parameters (:func:`tb.bench.params`): as tb/top/test_protocol.py, plus ``flash_offset``.
"""
import random
import struct

import cocotb
from cocotb.triggers import Timer

from contract.protocol import STATUS_FLAGS, FlashState
from sw.flashimage import flash_image
from tb.bench import params
from tb.top.spiflash import SpiFlash
from tb.top.test_protocol import (CLOCK_HZ, MEM_LAYERS, TIMEOUT, check_result, infer, setup,
                                  status)

OFFSET = params().get("flash_offset", 0x100000)


def mock_runs(rng, n_in):
    w = [rng.randrange(-30000, 30000) for _ in range(15)] + [0]
    return w, [(0, 0, w), (MEM_LAYERS, 0, [n_in, 10, 2, 0, 0, 0, 0, 0])]


async def boot(dut, contents):
    """Power up with ``contents`` at the offset; returns (transport, STATUS) once loaded."""
    flash = SpiFlash(dut.o_flash_cs_n, dut.o_flash_sclk, dut.o_flash_copi, dut.i_flash_cipo,
                     contents, OFFSET)
    tr = await setup(dut)
    # The host's first PING waits in the receive FIFO until the loader is done.
    for _ in range(200):
        st = await status(tr)
        if st["flash"] != FlashState.LOADING:
            break
        await Timer(20 * TIMEOUT * round(1e12 / CLOCK_HZ), unit="ps")
    flash.close()
    return tr, st, flash


@cocotb.test()
async def boots_from_flash(dut):
    rng = random.Random(21)
    n_in = 33
    w, runs = mock_runs(rng, n_in)
    tr, st, flash = await boot(dut, flash_image(runs, block_words=5))
    assert st["flash"] == FlashState.LOADED, st
    assert flash.reads == 1 and flash.ignored == 0
    assert st["in_features"] == n_in and st["flags"] >> STATUS_FLAGS["loaded"] & 1
    for _ in range(2):
        x = [rng.randrange(256) if rng.random() < 0.4 else 0 for _ in range(n_in)]
        check_result(w, x, await infer(tr, x, sparse=False, coded=True))


@cocotb.test()
async def blank_flash(dut):
    tr, st, _ = await boot(dut, b"")
    assert st["flash"] == FlashState.BLANK, st
    assert not st["flags"] >> STATUS_FLAGS["loaded"] & 1 and st["in_features"] == 0


@cocotb.test()
async def corrupt_flash(dut):
    rng = random.Random(22)
    w, runs = mock_runs(rng, 20)
    image = bytearray(flash_image(runs))
    image[20] ^= 0x10                       # a word of the first LOAD frame: its CRC fails
    tr, st, _ = await boot(dut, bytes(image))
    assert st["flash"] == FlashState.CORRUPT, st


def good_image(seed):
    rng = random.Random(seed)
    return flash_image(mock_runs(rng, 20)[1])


@cocotb.test()
async def truncated_image(dut):
    """The last frame's last CRC byte is erased flash (0xFF)."""
    tr, st, _ = await boot(dut, good_image(23)[:-1])
    assert st["flash"] == FlashState.CORRUPT, st


@cocotb.test()
async def missing_frames(dut):
    """The header counts one frame more than stored."""
    image = good_image(24)
    frames = struct.unpack("<H", image[4:6])[0]
    tr, st, _ = await boot(dut, image[:4] + struct.pack("<H", frames + 1) + image[6:])
    assert st["flash"] == FlashState.CORRUPT, st


@cocotb.test()
async def boots_again_after_bad_images(dut):
    tr, st, _ = await boot(dut, good_image(25))
    assert st["flash"] == FlashState.LOADED, st
