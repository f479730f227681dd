"""Fixed-width column entries (``AcceleratorConfig.huffman`` off, EIE's format): the packer's
images, the reference decoder, the host's fit check and the accelerator on Verilator against
sw.golden, every logit bit (random models with byte and word entries, 16- and 32-bit stream
words, random stalls; LeNet-300-100 on MNIST)."""
import dataclasses

import numpy as np
import pytest

from contract.config import AcceleratorConfig
from contract.memmap import fixed_entry_bits, shared_mem
from sw.golden import infer, random_int_model
from sw.pack import FixedCode, PackLimits, pack
from sw.refdecoder import RefDecodeError, infer_packed, infer_packed_events
from tb.accelerator.run import run_case
from tb.accelerator.vectors import model_case, random_case, sim_config
from tb.runner import ROOT, SimulationFailed

LENET = ROOT / "models" / "lenet300.npz"
FIXED = PackLimits(huffman=False, symbol_depth=1024, max_rows_per_pe=512)


def test_fixed_entry_width():
    """A joint symbol of up to 8 bits is stored in a byte, a wider one in a word."""
    assert fixed_entry_bits(4, 4) == 8 and fixed_entry_bits(3, 2) == 8
    assert fixed_entry_bits(4, 5) == 16 and fixed_entry_bits(8, 8) == 16
    assert AcceleratorConfig(idx_bits=4, gap_bits=5, huffman=False).fixed_entry_bits == 16
    assert AcceleratorConfig(huffman=False).symbol_entries == 0
    assert AcceleratorConfig().symbol_entries == AcceleratorConfig().symbol_depth
    with pytest.raises(ValueError, match="huffman"):
        AcceleratorConfig(huffman=1)


def test_fixed_code_bits():
    """Entries MSB first, right-aligned in their width: 0xA5 and 0x003 as bytes / words."""
    assert FixedCode(8).encode([0xA5, 3]).tolist() == [1, 0, 1, 0, 0, 1, 0, 1,
                                                      0, 0, 0, 0, 0, 0, 1, 1]
    assert FixedCode(16).encode([3]).tolist() == [0] * 14 + [1, 1]
    assert FixedCode(16).symbol_lengths([1, 2, 3]).tolist() == [16, 16, 16]


@pytest.mark.parametrize("gap_bits", [4, 5])
def test_fixed_images_decode_to_the_model(gap_bits):
    """Packed with fixed entries (bytes with 4 + 4 bits, words with 4 + 5): the pointers are
    multiples of the entry, the Huffman tables are empty, and the reference decoder's two
    readers give the golden logits; the streams are whole entries of the joint symbols."""
    im = random_int_model([70, 50, 12], 0.2, 3, gap_bits=gap_bits, long_gaps=True)
    x = np.random.default_rng(3).integers(0, 256, (4, 70)) * (
        np.random.default_rng(4).random((4, 70)) < 0.4)
    width = fixed_entry_bits(im.idx_bits, gap_bits)
    for n in (1, 3):
        packed = pack(im, n, limits=FIXED)
        m = packed.manifest
        assert m["column_code"] == "fixed"
        assert all(l["max_code_len"] == width and l["n_symbols"] == 0 for l in m["layers"])
        assert all(b % width == 0 for l in m["layers"] for b in l["stream_bits_per_pe"])
        for name in ("huff_limit", "huff_base", "huff_symbols"):
            assert len(packed.images[shared_mem(n, name)]) == 0
        ref = infer(im, x).logits
        assert np.array_equal(infer_packed(packed, x), ref)
        assert np.array_equal(infer_packed_events(packed, x[1])[0], ref[1])
    huff = pack(im, 3, limits=dataclasses.replace(FIXED, huffman=True))
    assert huff.manifest["column_code"] == "huffman"
    streams = [p.manifest["totals"]["breakdown_bytes"]["streams"] for p in (huff, packed)]
    assert streams[0] < streams[1]


def test_pack_follows_the_board_column_code():
    """Without limits, ``pack`` writes the board's form: the iCEBreaker's gateware has no
    Huffman decoder, the simulation defaults and the ULX3S have."""
    im = random_int_model([40, 30, 10], 0.3, 5)
    assert pack(im, 2, board="icebreaker").manifest["column_code"] == "fixed"
    assert pack(im, 2, board="sim").manifest["column_code"] == "huffman"
    assert pack(im, 2, board="ulx3s").manifest["column_code"] == "huffman"


def test_refdecoder_rejects_split_fixed_entries():
    """A column pointer moved off an entry boundary is reported, not decoded."""
    from contract.memmap import pointer_mem
    im = random_int_model([40, 30, 10], 0.3, 5)
    packed = pack(im, 1, limits=FIXED)
    ptr = packed.images[pointer_mem(1, 0)]
    k = int(np.flatnonzero(np.diff(ptr[:41].astype(np.int64)) > 0)[0]) + 1
    ptr[k] += 4                                  # into the middle of a byte entry
    with pytest.raises(RefDecodeError, match="entr"):
        infer_packed(packed, np.zeros((1, 40), dtype=np.int64))


def test_host_refuses_mismatched_column_code():
    """Images packed with Huffman-coded columns for a board without the decoder (STATUS
    symbol_depth 0), and the other way round, are refused with both names in the message;
    the matching images pass."""
    from contract.protocol import PROTOCOL_VERSION
    from contract.widths import WIDTH_KEYS
    from sw.host import BoardStatus, ModelFitError, check_fit
    im = random_int_model([40, 30, 10], 0.3, 5)
    for board_huffman in (True, False):
        fields = dict(version=PROTOCOL_VERSION, n_pes=1, max_layers=4, max_features=1024,
                      pe_mem_log2=14, max_rows_per_pe=256, max_logits=255, fmap_depth=0,
                      symbol_depth=512 if board_huffman else 0, clock_hz=12_000_000,
                      divisor=12, in_features=0, flags=0,
                      **{k: getattr(im, k) for k in WIDTH_KEYS})
        status = BoardStatus(fields)
        assert ("Huffman" in status.summary()) == board_huffman
        for huffman in (True, False):
            packed = pack(im, 1, limits=dataclasses.replace(FIXED, huffman=huffman))
            if huffman == board_huffman:
                check_fit(status, im, packed)
                continue
            want = "huffman" if huffman else "fixed"
            with pytest.raises(ModelFitError, match=f"hold {want} columns"):
                check_fit(status, im, packed)


CASES = {
    # name: (n_pes, sizes, density, seed, config, random_int_model arguments)
    "n1_bytes": (1, [60, 40, 10], 0.25, 21, {}, {}),
    "n3_bytes_words16": (3, [50, 200, 10], 0.05, 22, {"stream_words": 1}, {}),
    "n2_words_long_gaps": (2, [64, 48, 10], 0.2, 23, {"gap_bits": 5}, {}),
    "n4_words_words16": (4, [80, 50, 10], 0.2, 24,
                         {"gap_bits": 5, "stream_words": 1, "pointer_ports": 1}, {}),
}


@pytest.mark.sim
@pytest.mark.parametrize("name", sorted(CASES))
def test_accelerator_fixed_entries_random(name):
    """Bit exact under random input idles and logit back-pressure: byte entries (two or four
    to a stream word) and word entries, with long gaps (fillers) and saturation."""
    n_pes, sizes, density, seed, cfg, kw = CASES[name]
    config = sim_config(n_pes, huffman=False, **cfg)
    case = random_case(n_pes, sizes, density, seed, n_inputs=5, config=config, **kw)
    assert case["config"]["huffman"] is False
    assert config.fixed_entry_bits == (16 if "words" in name.split("_")[1] else 8)
    stats = run_case(f"fixed_{name}", case, p_valid=0.7, p_ready=0.6, seed=seed)
    assert len(stats["inferences"]) == len(case["inputs"])


@pytest.mark.sim
def test_accelerator_fixed_entries_wrong_logit_fails():
    """One flipped expected bit fails the fixed-entry bench (the comparison is exact)."""
    n_pes, sizes, density, seed, cfg, kw = CASES["n1_bytes"]
    case = random_case(n_pes, sizes, density, seed, n_inputs=2,
                       config=sim_config(n_pes, huffman=False, **cfg), **kw)
    case["logits"][1][2] ^= 1 << 9
    with pytest.raises(SimulationFailed):
        run_case("fixed_broken", case, seed=1)


@pytest.mark.sim
@pytest.mark.skipif(not LENET.exists(), reason="models/lenet300.npz not built")
def test_accelerator_fixed_entries_lenet300():
    """LeNet-300-100 (4 + 5 bits: word entries) on 2 PEs in the iCEBreaker's lean profile
    without the Huffman decoder, on MNIST test images: bit exact."""
    from boards import get_board
    from hw.simcase import bench_config
    from sw.golden import IntModel
    from sw.modelfile import load_model
    features = get_board("icebreaker").profile.config_fields()
    features["huffman"] = False
    im = IntModel.from_model(load_model(LENET))
    config = bench_config(im, 2, **features)
    assert config.fixed_entry_bits == 16
    case = model_case(LENET, 2, 3, config=config)
    stats = run_case("fixed_lenet300", case)
    assert len(stats["inferences"]) == 3
