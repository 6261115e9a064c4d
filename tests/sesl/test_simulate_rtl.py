"""``convforge simulate --rtl``: RTL and ISS on the same input, compared bit for bit,
exit status 1 on a mismatch (SESL outputs run the pipeline's RTL; any mode's compare
path is exercised with a backend that corrupts one output value)."""

import numpy as np
import onnx
import pytest

from compiler import compile as cc
from compiler.cli import main
from examples import models


@pytest.fixture(scope="module")
def dpd_sesl(tmp_path_factory):
    root = tmp_path_factory.mktemp("sesl-sim")
    onnx.save(models.dpd_cnn(), root / "dpd.onnx")
    out = root / "out"
    assert main(["compile", str(root / "dpd.onnx"), "--mode", "sesl", "--budget-dsp", "64",
                 "-o", str(out), "-q"]) == 0
    return out


def test_simulate_rtl_of_a_sesl_output_equals_the_iss(dpd_sesl, capsys):
    assert main(["simulate", str(dpd_sesl), "--rtl", "--seed", "4"]) == 0
    out = capsys.readouterr().out
    assert "rtl == iss: outputs equal bit for bit" in out




def test_simulate_reports_a_mismatch_and_exits_1(dpd_sesl, tmp_path, monkeypatch, capsys):
    arch = tmp_path / "arch.json"
    arch.write_text(cc.ArchConfig().to_json())
    onnx.save(models.mobilenet_v2_small(), tmp_path / "m.onnx")
    out = tmp_path / "seml"
    assert main(["compile", str(tmp_path / "m.onnx"), "--arch", str(arch), "-o", str(out),
                 "-q"]) == 0
    manifest = cc.load_image(out)[3]
    spec = manifest["outputs"][0]

    def corrupt(arch_, program, ddr):
        cycles, details = cc.BACKENDS["iss"](arch_, program, ddr)
        ddr[spec["offset"]] = np.uint8((int(ddr[spec["offset"]]) + 1) & 0xFF)
        return cycles, details

    monkeypatch.setitem(cc.BACKENDS, "corrupt", corrupt)
    assert main(["simulate", str(out), "--backend", "corrupt"]) == 1
    text = capsys.readouterr().out
    assert "corrupt != iss" in text and "differs at" in text
    monkeypatch.setitem(cc.BACKENDS, "same", cc.BACKENDS["iss"])
    assert main(["simulate", str(out), "--backend", "same"]) == 0
    assert "same == iss" in capsys.readouterr().out
