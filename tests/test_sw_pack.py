"""Memory images: layout at the documented addresses, manifest, refusals."""
import json

import numpy as np
import pytest

from sw import pack as packmod
from sw.golden import IntLayer, IntModel, random_int_model
from sw.huffman import HuffmanCode, table_decode, words_to_bits
from sw.modelfile import save_model
from sw.pack import PackError, PackLimits, PackedImages, pack
from sw.sparse import encode_columns

BIG = PackLimits(max_layers=8, max_rows_per_pe=4096, max_features=4096, symbol_depth=4096)


def small_model(seed=0, sizes=(40, 24, 10), density=0.3, **kw):
    return random_int_model(list(sizes), density=density, seed=seed, **kw)


@pytest.mark.parametrize("n_pes", [1, 2, 3, 4, 20])
def test_layout_addresses(n_pes):
    im = small_model(seed=n_pes)
    pk = pack(im, n_pes, "sim", limits=BIG)
    N = n_pes
    L = im.huff_max_len
    assert sorted(pk.images) == list(range(2 * N + 6))
    assert all(img.dtype == np.uint16 for img in pk.images.values())
    # the column skip table: an entry per column, two 16-bit words above 16 PEs
    n_words = 1 if N <= 16 else 2
    skip = pk.images[2 * N + 5].astype(np.int64).reshape(-1, n_words)
    assert len(skip) == sum(l.in_features for l in im.layers)
    assert pk.manifest["totals"]["colskip_bits"] == N * len(skip)
    desc = pk.images[N + 4]
    assert len(desc) == 16 * len(im.layers)
    sym_base = 0
    for i, l in enumerate(im.layers):
        d = desc[16 * i:16 * i + 16].tolist()
        flags = (1 if not l.last else 0) | (2 if l.last else 0)
        # fc: pool 0, in_values = in_features, no conv geometry
        assert d == [l.in_features, l.out_features, flags, l.shift, l.bias_shift, sym_base,
                     d[6], 0, l.in_features] + [0] * 7
        # Codebook as 16-bit two's complement at L * 16 + index.
        cb = pk.images[N][16 * i:16 * i + 16].astype(np.int64)
        assert np.array_equal(np.where(cb >= 32768, cb - 65536, cb), l.cb_q)
        # The layer's code is the canonical code of all its symbols.
        enc = encode_columns(l.index, N, im.gap_bits, im.idx_bits)
        code = HuffmanCode.from_symbols(enc.all_symbols(), L)
        lim, base, syms = code.tables()
        assert pk.images[N + 1][L * i:L * (i + 1)].tolist() == lim.tolist()
        assert pk.images[N + 2][L * i:L * (i + 1)].tolist() == base.tolist()
        assert pk.images[N + 3][sym_base:sym_base + d[6]].tolist() == syms.tolist()
        assert d[6] == len(syms)
        for p in range(N):
            img = pk.images[p]
            pimg = pk.images[N + 5 + p]         # the PE's pointer memory
            ptr_base, stream_base, bias_base, rows_local = img[4 * i:4 * i + 4].tolist()
            assert rows_local == -(-(l.out_features - p) // N)
            ptr = pimg[ptr_base:ptr_base + l.in_features + 1].astype(np.int64)
            # bit p of the layer's skip entry j: PE p's column j is empty
            skip_l = skip[sum(k.in_features for k in im.layers[:i]):][:l.in_features, p // 16]
            assert np.array_equal(skip_l >> p % 16 & 1, (np.diff(ptr) == 0).astype(np.int64))
            # tables back to back from address 0; streams after the headers, layer after layer
            assert ptr_base == sum(k.in_features + 1 for k in im.layers[:i])
            assert stream_base == 4 * len(im.layers) + sum(
                -(-int(pk.manifest["layers"][k]["stream_bits_per_pe"][p]) // 16)
                for k in range(i))
            assert ptr[0] == 0
            bits = words_to_bits(img[stream_base:])
            pe = enc.pes[p]
            for j in range(l.in_features):
                want = pe.column(j)
                got, end = table_decode(bits, len(want), lim, base, syms, L, start=int(ptr[j]))
                assert got.tolist() == want.tolist()
                assert end == ptr[j + 1]
            bias = img[bias_base:bias_base + rows_local].astype(np.int64)
            assert np.array_equal(np.where(bias >= 32768, bias - 65536, bias), l.bias_q[p::N])
            # Biases contiguous, layer after layer.
            first_bias = img[2]
            assert bias_base - first_bias == sum(-(-(k.out_features - p) // N)
                                                 for k in im.layers[:i])
        sym_base += d[6]
    assert not np.any(skip >> N), "bits past the PE count"


def test_ptr_words_2():
    rng = np.random.default_rng(0)
    idx = rng.integers(1, 16, size=(120, 700)).astype(np.uint8)  # dense: ~84000 symbols
    l1 = IntLayer(idx, np.concatenate([[0], rng.integers(-50, 50, 15)]),
                  np.zeros(120, dtype=np.int64), 10, 0, relu=True, last=False)
    l2 = IntLayer(np.ones((3, 120), dtype=np.uint8), np.array([0, 1] + [0] * 14),
                  np.zeros(3, dtype=np.int64), 0, 0, relu=False, last=True)
    im = IntModel([l1, l2])
    pk = pack(im, 1, "sim", limits=BIG)
    layer = pk.manifest["layers"][0]
    assert layer["ptr_words"] == 2 and max(layer["stream_bits_per_pe"]) >= 65536
    assert pk.images[1 + 4][8 * 0 + 2] & 4  # layers memory is N + 4; flags bit2
    assert pk.manifest["layers"][1]["ptr_words"] == 1
    img = pk.images[0]
    ptr_base, next_base = int(img[0]), int(img[4])      # layer 1's table follows layer 0's
    ptrs = pk.images[1 + 5][ptr_base:next_base].astype(np.int64)
    assert len(ptrs) == 2 * 701
    ptr = (ptrs[0::2] << 16) | ptrs[1::2]
    assert ptr[-1] == layer["stream_bits_per_pe"][0]
    assert np.all(np.diff(ptr) > 0)


def test_manifest_and_save(tmp_path):
    im = small_model(sizes=(64, 32, 10))
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(50, 64))
    pk = pack(im, 2, "icebreaker", limits=BIG, x=x)
    m = pk.manifest
    t = m["totals"]
    # the column skip table (acceleration only, derived from the pointers) is not counted
    assert t["total_bytes"] == sum(2 * len(v) for k, v in pk.images.items() if k != 2 * 2 + 5)
    assert t["colskip_bits"] == 2 * (64 + 32)
    assert sum(t["breakdown_bytes"].values()) == t["total_bytes"]
    assert t["dense_float32_bytes"] == 4 * (64 * 32 + 32 + 32 * 10 + 10)
    assert t["compression_ratio"] == pytest.approx(t["dense_float32_bytes"] / t["total_bytes"])
    assert m["params"]["huff_max_len"] == 12 and m["n_pes"] == 2 and m["board"] == "icebreaker"
    assert m["ideal_cycles"]["images"] == 50
    for pr in m["accumulator_proof"]:
        assert pr["max_abs_acc"] < pr["limit"] == 2 ** 31
    assert m["memories"]["pe0"]["capacity_words"] == 16384
    assert m["memories"]["ptr1"]["capacity_words"] == 16384
    assert m["memories"]["ptr1"]["mem"] == 2 + 5 + 1
    assert m["pe_usage_words"][1]["pointers"] == len(pk.images[2 + 5 + 1])
    pk.save(tmp_path)
    assert json.loads((tmp_path / "manifest.json").read_text()) == json.loads(json.dumps(m))
    hexlines = (tmp_path / "pe1.hex").read_text().splitlines()
    assert [int(h, 16) for h in hexlines] == pk.images[1].tolist()
    assert all(len(h) == 4 for h in hexlines)
    back = PackedImages.load(tmp_path)
    assert all(np.array_equal(back.images[k], pk.images[k]) for k in pk.images)
    words = list(pk.load_words())
    assert len(words) == sum(len(v) for v in pk.images.values())
    for mem, addr, data in words[:50] + words[-50:]:
        assert pk.images[mem][addr] == data
    assert all(w[2] != 0 for w in pk.load_words(skip_zeros=True))


def test_refusals():
    im = small_model()
    with pytest.raises(PackError, match="at most 2 PEs"):
        pack(im, 3, "icebreaker", limits=BIG)
    with pytest.raises(PackError, match="unknown board"):
        pack(im, 1, "nope", limits=BIG)
    with pytest.raises(PackError, match="n_pes"):
        pack(im, 0, "sim", limits=BIG)
    with pytest.raises(PackError, match="symbol table"):
        pack(random_int_model([300, 100, 10], density=0.3, seed=1), 2, "sim",
             limits=PackLimits(max_rows_per_pe=1024, symbol_depth=256))
    with pytest.raises(PackError, match="accumulator rows"):
        pack(im, 1, "sim", limits=PackLimits(max_rows_per_pe=20, symbol_depth=4096))
    with pytest.raises(PackError, match="layers"):
        pack(random_int_model([10, 9, 8, 7, 6, 5], seed=0), 1, "sim",
             limits=PackLimits(symbol_depth=4096))
    with pytest.raises(PackError, match="features"):
        pack(im, 1, "sim", limits=PackLimits(max_features=30, symbol_depth=4096))
    with pytest.raises(PackError, match="no integer section"):
        m = im.to_model()
        m.integer = None
        pack(m, 1, "sim", limits=BIG)
    with pytest.raises(PackError, match="cannot be coded"):
        pack(random_int_model([40, 30, 10], density=0.3, seed=4, huff_max_len=6), 2, "sim",
             limits=BIG)
    with pytest.raises(PackError, match="cannot pack"):
        pack("model.npz", 1, "sim")


def test_refuse_memory_overflow():
    rng = np.random.default_rng(0)
    idx = rng.integers(1, 16, size=(200, 1000)).astype(np.uint8)
    l1 = IntLayer(idx, np.concatenate([[0], rng.integers(-30, 30, 15)]),
                  np.zeros(200, dtype=np.int64), 8, 0, relu=True, last=False)
    l2 = IntLayer(np.ones((2, 200), dtype=np.uint8), np.array([0, 1] + [0] * 14),
                  np.zeros(2, dtype=np.int64), 0, 0, relu=False, last=True)
    with pytest.raises(PackError, match="memory overflow"):
        pack(IntModel([l1, l2]), 1, "icebreaker", limits=BIG)


def test_refuse_accumulator_overflow():
    idx = np.full((2, 300), 1, dtype=np.uint8)
    l1 = IntLayer(idx, np.array([0, 32767] + [0] * 14), np.zeros(2, dtype=np.int64), 8, 0,
                  relu=True, last=False)
    l2 = IntLayer(np.ones((2, 2), dtype=np.uint8), np.array([0, 1] + [0] * 14),
                  np.zeros(2, dtype=np.int64), 0, 0, relu=False, last=True)
    # 300 * 32767 * 255 > 2^31
    with pytest.raises(PackError, match="accumulator could reach"):
        pack(IntModel([l1, l2]), 1, "sim", limits=BIG)
    # 256 inputs: 256 * 32767 * 255 = 2139029760 < 2^31 - 1 is accepted.
    l1.index = np.full((2, 256), 1, dtype=np.uint8)
    pack(IntModel([l1, l2]), 1, "sim", limits=BIG)


def test_empty_layer_and_single_symbol():
    # A hidden layer with no weights at all, and a last layer with one symbol.
    l1 = IntLayer(np.zeros((8, 5), dtype=np.uint8), np.zeros(16, dtype=np.int64),
                  np.arange(8), 0, 0, relu=True, last=False)
    l2 = IntLayer(np.ones((3, 8), dtype=np.uint8), np.array([0, 7] + [0] * 14),
                  np.zeros(3, dtype=np.int64), 0, 0, relu=False, last=True)
    pk = pack(IntModel([l1, l2]), 2, "sim", limits=BIG)
    assert pk.manifest["layers"][0]["n_symbols"] == 0
    assert pk.manifest["layers"][0]["stream_bits_total"] == 0
    assert pk.manifest["layers"][1]["n_symbols"] == 1
    assert pk.manifest["layers"][1]["max_code_len"] == 1


def test_cli(tmp_path, capsys):
    im = small_model(sizes=(64, 30, 10))
    p = tmp_path / "m.npz"
    save_model(p, im.to_model())
    out = tmp_path / "out"
    assert packmod.main([str(p), "--pes", "2", "--board", "sim", "--out", str(out),
                         "--symbol-depth", "4096"]) == 0
    text = capsys.readouterr().out
    assert "compression" in text
    assert (out / "manifest.json").exists() and (out / "pe1.hex").exists()
    assert (out / "images.npz").exists()
    assert packmod.main([str(p), "--pes", "2", "--board", "sim", "--out", str(out),
                         "--max-rows", "5"]) == 1
    assert "accumulator rows" in capsys.readouterr().err
    assert packmod.main([str(p), "--pes", "9", "--board", "icebreaker", "--out",
                         str(out)]) == 1


def test_limits_follow_hw_config():
    from gateware.config import AcceleratorConfig
    d = AcceleratorConfig()
    assert PackLimits().symbol_depth == d.symbol_depth
    assert PackLimits().max_rows_per_pe == d.max_rows_per_pe
    cfg = AcceleratorConfig(n_pes=2, pe_mem_depth=256, symbol_depth=4096, max_rows_per_pe=4096)
    with pytest.raises(PackError, match="memory overflow"):
        pack(small_model(sizes=(200, 100, 10), density=0.5), 2, "sim",
             limits=PackLimits.from_config(cfg))


def test_sized_limits_grow_to_the_model():
    from sw.pack import sized_limits
    im = random_int_model([64, 300, 100, 10], density=0.2, seed=3)
    with pytest.raises(PackError, match="accumulator rows"):
        pack(im, 1, "sim")                        # 410 rows > the default 256
    lim = sized_limits(im, 1)
    assert lim.max_rows_per_pe == 512 and lim.symbol_depth >= 256
    assert lim.symbol_depth & (lim.symbol_depth - 1) == 0
    pk = pack(im, 1, "sim", limits=lim, balance=True)
    assert pk.images[0][3] + pk.images[0][7] + pk.images[0][11] == 410
    assert sized_limits(im, 4).max_rows_per_pe == 256   # 103 rows per PE fit the default


def test_widths_follow_the_model_or_are_refused():
    """A gateware of fixed widths refuses a model with other widths (its stream would be
    decoded with the wrong gap/index split); sized_limits takes the model's widths."""
    import dataclasses
    from gateware.config import AcceleratorConfig
    from sw.pack import WIDTH_KEYS, sized_limits
    im = random_int_model([40, 24, 10], density=0.3, seed=1, gap_bits=5)
    fixed = PackLimits.from_config(AcceleratorConfig(n_pes=2))
    assert fixed.gap_bits == 4 and fixed.idx_bits == 4
    with pytest.raises(PackError, match=r"gap_bits=5 \(the gateware has 4\)"):
        pack(im, 2, "sim", limits=fixed)
    with pytest.raises(PackError, match=r"idx_bits=4 \(the gateware has 3\)"):
        pack(im, 2, "sim", limits=dataclasses.replace(fixed, idx_bits=3, gap_bits=5))
    lim = sized_limits(im, 2, fixed)
    assert {k: getattr(lim, k) for k in WIDTH_KEYS} == {k: getattr(im, k) for k in WIDTH_KEYS}
    assert pack(im, 2, "sim", limits=lim).manifest["params"]["gap_bits"] == 5
    assert PackLimits().widths() == {}            # unset widths: any model packs
    pack(im, 2, "sim")


def test_cli_gap_bits(tmp_path, capsys):
    im = random_int_model([40, 24, 10], density=0.3, seed=1, gap_bits=5)
    p = tmp_path / "m.npz"
    save_model(p, im.to_model())
    out = tmp_path / "out"
    assert packmod.main([str(p), "--pes", "2", "--board", "sim", "--out", str(out),
                         "--no-cycles"]) == 0
    assert "4 index + 5 gap bits" in capsys.readouterr().out
    assert packmod.main([str(p), "--pes", "2", "--board", "sim", "--out", str(out),
                         "--no-cycles", "--gap-bits", "4"]) == 1
    assert "gap_bits=5 (the gateware has 4)" in capsys.readouterr().err
