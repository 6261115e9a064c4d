"""``convforge compile`` / ``simulate [--rtl]`` on LSTM models."""

import json

import numpy as np
import onnx
import pytest

from compiler.cli import main
from examples.lstm_models import lstm_model
from hw.lstm.config import LstmArch

ARCH = LstmArch(n_pe=8, weight_depth=1024, max_cols=64, max_hidden=32, max_input=32)


@pytest.fixture
def model_path(tmp_path):
    path = tmp_path / "lstm.onnx"
    onnx.save(lstm_model(16, 32, 8, 2, seed=3), path)
    return path


def test_compile_and_simulate_golden(model_path, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["compile", str(model_path), "-o", str(out), "--density", "0.25"]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["mode"] == "lstm" and rep["density_target"] == 0.25
    arch = json.loads((out / "arch.json").read_text())
    assert arch["kind"] == "lstm" and arch["max_hidden"] == 32
    x = np.random.default_rng(0).standard_normal((8, 1, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert main(["simulate", str(out), "--input", str(tmp_path / "x.npy"),
                 "-o", str(tmp_path / "y.npz")]) == 0
    text = capsys.readouterr().out
    assert "SNR vs onnxruntime float" in text
    assert np.load(tmp_path / "y.npz")["h"].shape == (8, 32)


def test_dense_snr_through_cli(model_path, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["compile", str(model_path), "-o", str(out), "-q"]) == 0
    assert main(["simulate", str(out)]) == 0
    snr = float(capsys.readouterr().out.split("float: ")[1].split(" dB")[0])
    assert snr > 35


def test_cnn_arch_for_lstm_is_refused(model_path, tmp_path, capsys):
    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps({"name": "cnn"}))
    assert main(["compile", str(model_path), "-o", str(tmp_path / "o"), "--arch",
                 str(arch)]) == 2
    assert "LSTM arch" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_unsupported_lstm_is_refused(tmp_path, capsys):
    from onnx import helper

    m = lstm_model(8, 16, 4, 1)
    node = next(n for n in m.graph.node if n.op_type == "LSTM")
    node.attribute.append(helper.make_attribute("direction", "bidirectional"))
    onnx.save(m, tmp_path / "bad.onnx")
    assert main(["compile", str(tmp_path / "bad.onnx"), "-o", str(tmp_path / "o")]) == 2
    assert "direction 'bidirectional'" in capsys.readouterr().err


@pytest.mark.rtl
def test_simulate_rtl(model_path, tmp_path, capsys):
    arch = tmp_path / "arch.json"
    arch.write_text(ARCH.to_json())
    out = tmp_path / "out"
    assert main(["compile", str(model_path), "-o", str(out), "--arch", str(arch),
                 "--density", "0.1", "-q"]) == 0
    assert main(["simulate", str(out), "--rtl"]) == 0
    assert "RTL == golden: True" in capsys.readouterr().out


def test_compile_and_simulate_with_linear_layers(tmp_path, capsys):
    """Linear -> LSTM -> Linear from the command line (arch sized to the model)."""
    path = tmp_path / "lstm_fc.onnx"
    onnx.save(lstm_model(16, 32, 6, 1, seed=4, linear_in=24, linear_out=10), path)
    out = tmp_path / "out"
    assert main(["compile", str(path), "-o", str(out), "-q"]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert [lay["engine"] for lay in rep["layers"]] == ["linear", "lstm", "linear"]
    assert main(["simulate", str(out), "-o", str(tmp_path / "y.npz")]) == 0
    snr = float(capsys.readouterr().out.split("float: ")[1].split(" dB")[0])
    assert snr > 35
    assert np.load(tmp_path / "y.npz")["h"].shape == (6, 16)
