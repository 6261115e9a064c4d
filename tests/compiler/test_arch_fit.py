"""``--board`` sizes the arch to the model under the board's budget."""

import json

import onnx
import pytest

from boards.database import check_fits, get_board
from compiler.cli import main
from compiler.mapping.arch_fit import model_cycles, model_profile, size_arch
from compiler.pipeline import import_model
from examples.models import dpd_cnn, resnet
from hw.arch import ArchConfig


def test_profile_names_kernels_channels_and_engines():
    prof = model_profile(import_model(resnet(64, stages=(16, 32), stem_kernel=7)))
    assert prof["conv_kernels"] == [3, 7]
    assert prof["engines"] == ["conv", "pointwise", "pool"]
    assert prof["max_conv_channels"] == 32 and prof["widest_frame"] == 70


def test_model_cycles_follow_the_arch():
    graph = import_model(resnet(32, stages=(16, 32)))
    small = model_cycles(graph, ArchConfig(conv_pi=2, conv_po=2))
    wide = model_cycles(graph, ArchConfig(conv_pi=8, conv_po=8))
    assert wide < small


def test_board_sizes_the_arch_to_a_one_d_model(tmp_path, capsys):
    """The DPD CNN's 1x5 kernels: an arch that fits ZCU102, chosen by predicted cycles and
    reported with its reasons; the program runs bit for bit (--verify)."""
    board = get_board("ZCU102")
    model = tmp_path / "dpd.onnx"
    onnx.save(dpd_cnn(kernel_size=5), str(model))
    out = tmp_path / "out"
    assert main(["compile", str(model), "--board", "ZCU102", "-o", str(out), "--verify",
                 "--quiet"]) == 0
    assert "verified" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    choice = report["arch_choice"]
    arch = ArchConfig.from_json(out / "arch.json")
    check_fits(arch, board)  # within the board, by the calibrated model
    assert choice["board"] == "ZCU102" and choice["arch"]["conv_k_max"] == arch.conv_k_max
    # lanes the model cannot fill are not bought: 4 channels at most
    assert arch.conv_pi <= 4 and arch.conv_po <= 4 and arch.pw_pi <= 1
    assert choice["predicted_compute_cycles"] <= choice["generic_3x3_cycles"]
    assert all(choice["resources"][r] <= 0.7 * board.budget[r] for r in board.budget)
    text = (out / "report.txt").read_text()
    assert "Arch sized to the model for board ZCU102" in text and "conv_k_max=" in text


def test_sizing_fits_a_small_board():
    graph = import_model(dpd_cnn(kernel_size=5))
    board = get_board("PYNQ-Z2")
    a, why = size_arch(graph, board)
    check_fits(a, board)
    assert why["candidates"] >= 1 and why["reasons"]


@pytest.mark.slow
def test_resnet18_224_compiles_for_zcu102(tmp_path):
    model = tmp_path / "resnet18.onnx"
    onnx.save(resnet(224, stages=(64, 128, 256, 512), blocks_per_stage=2, stem_kernel=7,
                     num_classes=1000), str(model))
    out = tmp_path / "out"
    assert main(["compile", str(model), "--board", "ZCU102", "-o", str(out), "--quiet"]) == 0
    report = json.loads((out / "report.json").read_text())
    stem = next(layer for layer in report["layers"] if layer["name"] == "conv1")
    assert report["arch_choice"]["board"] == "ZCU102"
    assert stem["macs"] == 64 * 3 * 49 * 112 * 112
