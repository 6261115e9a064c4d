"""``convforge quantize``: float and QDQ models, JSON report, user errors."""

import json

import numpy as np
import onnx

from compiler.cli import main
from examples import models
from tests.compiler.test_qdq import make_qdq


def test_quantize_command_float_model(tmp_path, capsys):
    model_path = tmp_path / "dpd.onnx"
    onnx.save(models.dpd_cnn(), model_path)
    calib = tmp_path / "calib.npy"
    np.save(calib, np.random.default_rng(0).normal(0, 0.5, (6, 2, 64)).astype(np.float32))
    out = tmp_path / "report.json"
    status = main(["quantize", str(model_path), "--calib", str(calib), "--weight-scheme", "apot",
                   "--prune", "0.25", "--json", str(out)])
    assert status == 0
    text = capsys.readouterr().out
    assert "Pruning to 25.0% (layer)" in text and "final SNR (conv_out_out)" in text
    report = json.loads(out.read_text())
    assert report["weight_scheme"] == "apot" and report["calibration_samples"] == 6
    assert [row["name"] for row in report["layers"]] == ["conv0", "conv1", "conv_out"]
    assert all(row["sparsity"] >= 0.2 for row in report["layers"])
    assert report["final_snr_db"]["conv_out_out"] > 10.0


def test_quantize_command_qdq_model(tmp_path, capsys):
    model = models.dpd_cnn()
    samples = np.random.default_rng(1).normal(0, 0.5, (8, 2, 64)).astype(np.float32)
    path = make_qdq(model, tmp_path / "dpd_qdq.onnx", samples)
    assert main(["quantize", str(path)]) == 0
    text = capsys.readouterr().out
    assert "scales qdq" in text and "within 1 LSB of onnxruntime QDQ: 100.0%" in text
    assert main(["quantize", str(path), "--prune", "0.5"]) == 2
    assert "--prune does not apply to" in capsys.readouterr().err


def test_quantize_command_user_errors(tmp_path, capsys):
    model_path = tmp_path / "dpd.onnx"
    onnx.save(models.dpd_cnn(), model_path)
    assert main(["quantize", str(model_path), "--act-bits", "3"]) == 2
    assert "act_bits must be between 4 and 16 bits" in capsys.readouterr().err
    assert main(["quantize", str(model_path), "--calib", str(tmp_path / "none.npy")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["quantize", str(model_path), "--weight-scheme", "pot",
                 "--pot-exp-bits", "9"]) == 2
    assert "pot_exp_bits: exp_bits must be between 1 and 5" in capsys.readouterr().err
    assert main(["quantize", str(model_path), "--json", str(tmp_path)]) == 2
    assert f"--json {tmp_path}: cannot write it" in capsys.readouterr().err
