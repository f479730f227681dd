"""Every command line turns bad input into one ``error: ...`` line and exit status 1.

Each tool is called on a missing model file, a file that is not a model, a truncated model, a
header field of the wrong JSON type and layers that do not chain: in-process through ``main``
(all cases) and as ``python -m`` (one case per tool), never with a traceback.
"""
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sw.cli import EXIT_ERROR, ToolError, command, error_line

ROOT = Path(__file__).resolve().parent.parent


def _write_model(path, header, arrs):
    from sw.modelfile import array_digest
    header["sha256"] = {k: array_digest(a) for k, a in arrs.items()}
    blob = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez(path, **{"header.json": blob}, **arrs)


@pytest.fixture(scope="module")
def bad_models(tmp_path_factory):
    """name -> (path, text the error line must contain)."""
    d = tmp_path_factory.mktemp("bad_models")
    committed = (ROOT / "models" / "lenet300.npz").read_bytes()
    (d / "text.npz").write_text("not a model\n")
    (d / "truncated.npz").write_bytes(committed[:len(committed) // 2])
    with np.load(ROOT / "models" / "lenet300.npz") as z:
        arrs = {k: z[k] for k in z.files}
    header = json.loads(arrs.pop("header.json").tobytes())
    _write_model(d / "header_type.npz", dict(header, input_shape=784), arrs)
    # ip2 takes 301 inputs from ip1's 300 outputs; arrays, digests and header agree.
    arrs["ip2.index"] = np.ascontiguousarray(np.pad(arrs["ip2.index"], ((0, 0), (0, 1))))
    layers = [dict(l) for l in header["layers"]]
    layers[1]["shape"] = [100, 301]
    _write_model(d / "header_chain.npz", dict(header, layers=layers), arrs)
    return {"missing": (d / "none.npz", "none.npz"),
            "not-a-model": (d / "text.npz", "not a dcmodel file"),
            "truncated": (d / "truncated.npz", "corrupt or truncated"),
            "header-type": (d / "header_type.npz", "input_shape: expected a list"),
            "header-chain": (d / "header_chain.npz", "layers[1].shape: 301 inputs")}


@pytest.fixture(scope="module")
def packdir(tmp_path_factory):
    from sw.golden import random_int_model
    from sw.pack import pack
    d = tmp_path_factory.mktemp("packdir")
    pack(random_int_model([784, 20, 10], density=0.1, seed=1), 2, "sim").save(d)
    return d


#: tool -> argv with {model}, {tmp}, {packdir} filled in.
TOOLS = {
    "sw.golden": ["{model}"],
    "sw.pack": ["{model}", "--out", "{tmp}/pk", "--no-cycles"],
    "sw.host": ["--port", "{tmp}/no-tty", "--model", "{model}"],
    "sw.refdecoder": ["{packdir}", "--model", "{model}"],
    "sw.balance": ["{model}", "--pes", "2", "--images", "5"],
    "hw.build": ["--model", "{model}", "--out", "{tmp}/build"],
    "hw.bench": ["--model", "{model}", "--pes", "1", "--images", "1"],
    "hw.profile": ["--model", "{model}", "--pes", "1"],
    "hw.area": ["--model", "{model}", "--part", "pe", "--pes", "1"],
    "hw.linkbench": ["--model", "{model}", "--no-sim"],
    "sw.onnx_export": ["{model}", "--out", "{tmp}/m.onnx"],
    "sw.report": ["{model}"],
}


def _argv(tool, model, tmp, packdir):
    return [a.format(model=model, tmp=tmp, packdir=packdir) for a in TOOLS[tool]]


def _check_one_error_line(code, out, err, text):
    assert code == EXIT_ERROR, (code, out, err)
    assert "Traceback" not in out + err
    lines = [l for l in (out + err).splitlines() if l.startswith("error:")]
    assert len(lines) == 1 and err.count("error:") == 1, err
    assert text in lines[0], (text, lines[0])


def _main(tool):
    return importlib.import_module(tool).main


@pytest.mark.parametrize("case", ["missing", "not-a-model", "truncated", "header-type",
                                  "header-chain"])
@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_bad_model(tool, case, bad_models, packdir, tmp_path, capsys):
    path, text = bad_models[case]
    code = _main(tool)(_argv(tool, path, tmp_path, packdir))
    captured = capsys.readouterr()
    _check_one_error_line(code, captured.out, captured.err, text)


@pytest.mark.parametrize("argv,text", [
    (["{tmp}/missing"], "cannot read packed images"),
    (["{tmp}/garbage"], "BadZipFile"),
])
def test_refdecoder_bad_packdir(argv, text, tmp_path, capsys):
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "manifest.json").write_text('{"n_pes": 1}')
    (garbage / "images.npz").write_bytes(b"PK\x03\x04 not a zip")
    code = _main("sw.refdecoder")([a.format(tmp=tmp_path) for a in argv])
    captured = capsys.readouterr()
    _check_one_error_line(code, captured.out, captured.err, text)


def test_compress_errors(tmp_path, capsys):
    from sw import compress
    main = _main("sw.compress")
    (tmp_path / "file").write_text("")
    for argv, text in ((["--out", str(tmp_path / "file")], "is not a directory"),
                       (["--density", "ip9=0.1", "--out", str(tmp_path)], "unknown layers"),
                       (["--bits", "x", "--out", str(tmp_path)], "--bits")):
        _check_one_error_line(main(argv), *capsys.readouterr(), text)
    # A damaged cache file (the dense weights of an earlier run).
    argv = ["--subset", "20", "--epochs", "0.1", "--cache", str(tmp_path / "cache"),
            "--out", str(tmp_path / "out"), "--quiet", "--no-sensitivity"]
    args = compress.resolve(compress.build_parser().parse_args(argv))
    cached = compress._cache_path(args, "dense")
    cached.parent.mkdir()
    cached.write_bytes(b"PK\x03\x04 damaged")
    _check_one_error_line(main(argv), *capsys.readouterr(), "unreadable")


def test_data_and_onnx_errors(tmp_path, capsys):
    (tmp_path / "garbage").write_text("not a data set")
    (tmp_path / "damaged.npz").write_bytes(b"PK\x03\x04 damaged zip")
    for tool, argv, text in (
            ("sw.dataset", [str(tmp_path / "none.npz")], "none.npz"),
            ("sw.dataset", [str(tmp_path / "garbage")], "not an .npz archive (no zip header)"),
            ("sw.compress", ["--onnx", str(tmp_path / "none.onnx")], "not found"),
            ("sw.compress", ["--onnx", str(tmp_path / "garbage"), "--subset", "20"],
             "cannot read ONNX model"),
            ("sw.compress", ["--data", str(tmp_path / "garbage"), "--subset", "20"],
             "cannot read data set"),
            ("sw.dataset", [str(tmp_path / "damaged.npz")], "cannot read data set"),
            ("sw.incode", ["--images", "0"], "--images")):
        _check_one_error_line(_main(tool)(argv), *capsys.readouterr(), text)


def test_hw_tool_errors(tmp_path, capsys):
    for tool, argv, text in (
            ("hw.build", ["--board", "nosuchboard", "--no-model", "--out", str(tmp_path)],
             "nosuchboard"),
            ("hw.build", ["--pes", "4", "--no-model", "--out", str(tmp_path)], "1..2 PEs"),
            ("hw.bench", ["--random-model", "--pes", "0"], "--pes"),
            ("hw.profile", ["--pes", "0"], ">= 1"),
            ("hw.area", ["--part", "pe", "--lanes", "0"], "lanes"),
            ("sw.pack", ["models/lenet5_caffe.npz", "--out", str(tmp_path)],
             "no ReLU after the conv"),
            ("sw.pack", ["models/lenet5.npz", "--out", str(tmp_path), "--fmap-depth", "512",
                         "--no-cycles", "--balance", "none"], "needs 784 entries per feature-map"),
            ("sw.pack", ["models/lenet300.npz", "--pes", "4", "--board", "icebreaker",
                         "--out", str(tmp_path), "--no-cycles"], "at most 2 PEs")):
        _check_one_error_line(_main(tool)(argv), *capsys.readouterr(), text)


#: Tools that read no model file: an argv that fails and the text of the error.
OTHER_TOOLS = {"sw.compress": (["--out", "{tmp}/file"], "is not a directory"),
               "sw.dataset": (["{tmp}/file"], "cannot read data set"),
               "sw.incode": (["--images", "0"], "--images")}


@pytest.mark.parametrize("tool", sorted(TOOLS) + sorted(OTHER_TOOLS))
def test_python_m(tool, bad_models, packdir, tmp_path):
    # The real command line: `python -m TOOL ...` prints one error line, exit status 1.
    if tool in OTHER_TOOLS:
        (tmp_path / "file").write_text("")
        argv, text = OTHER_TOOLS[tool]
        argv = [a.format(tmp=tmp_path) for a in argv]
    else:
        path, text = bad_models["header-type"]
        argv = _argv(tool, path, tmp_path, packdir)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-m", tool] + argv, cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    _check_one_error_line(p.returncode, p.stdout, p.stderr, text)


def test_command_helper(capsys):
    @command
    def tool(argv=None):
        kind = argv[0]
        if kind == "value":
            raise ValueError("bad value\nsecond line")
        if kind == "os":
            open("/nonexistent/file")
        if kind == "tool":
            raise ToolError("")
        if kind == "bug":
            raise AttributeError("a bug is not an input error")
        return 0

    assert tool(["ok"]) == 0
    assert tool(["value"]) == 1
    assert capsys.readouterr().err == "error: bad value\n  second line\n"
    assert tool(["os"]) == 1
    assert capsys.readouterr().err == "error: /nonexistent/file: No such file or directory\n"
    assert tool(["tool"]) == 1
    assert capsys.readouterr().err == "error: ToolError\n"
    with pytest.raises(AttributeError):
        tool(["bug"])
    assert error_line(KeyError("k")).startswith("error: ")


def test_every_command_line_is_covered():
    # A new `python -m` tool must use the shared helper and join the tests above.
    mains = sorted(str(p.relative_to(ROOT).with_suffix("")).replace("/", ".")
                   for d in ("sw", "hw", "gateware", "contract", "boards", "tools")
                   for p in (ROOT / d).rglob("*.py")
                   if 'if __name__ == "__main__":' in p.read_text())
    assert mains == sorted(list(TOOLS) + list(OTHER_TOOLS))
    for tool in mains:
        main = _main(tool)
        assert getattr(main, "__wrapped__", None) is not None, f"{tool}.main lacks @command"
        assert callable(importlib.import_module(tool).build_parser)
