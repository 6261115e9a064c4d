"""SESL mapping without RTL: folding, FIFO depths, cycle model, reports, CLI, refusals."""

import json

import numpy as np
import onnx
import pytest

from compiler.cli import main
from compiler.errors import MappingError
from compiler.runner import run_golden_int
from compiler.sesl import plan
from compiler.sesl.compile import build_pipeline, run_stages
from compiler.sesl.firb import buffer_comparison
from compiler.sesl.stages import graph_stages
from examples import models
from hw.sesl.config import PipelineConfig
from tests.sesl.fixtures import ARCH, BUDGET, BUILDERS, pipeline, quantized

REPORT_KEYS = {"mode", "clock_mhz", "cycles_per_frame", "frames_per_s", "latency_cycles",
               "mac_units", "resources", "layers"}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_stage_by_stage_golden_equals_golden_runner(name):
    graph = quantized(name)
    cfg = pipeline(name)
    rng = np.random.default_rng(5)
    x = rng.integers(-128, 128, size=(2,) + graph.shape(graph.inputs[0]))
    want = run_golden_int(graph, {graph.inputs[0]: x}).outputs[graph.outputs[0]]
    assert np.array_equal(run_stages(cfg, x), want)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_folding_respects_the_budget_and_balances(name):
    cfg = pipeline(name)
    assert sum(plan.stage_dsp(st) for st in cfg.stages) <= BUDGET.dsp
    summary = plan.model_summary(cfg)
    cycles = summary["cycles_per_frame"]
    # every stage at or below the bottleneck; a larger budget never makes it slower
    assert all(st.cycles_per_frame <= cycles for st in cfg.stages)
    bigger = build_pipeline(quantized(name), ARCH, plan.Budget(4 * BUDGET.dsp))
    assert plan.model_summary(bigger)["cycles_per_frame"] <= cycles


def test_small_mobilenet_mac_utilization_goal():
    assert plan.model_summary(pipeline("mobilenet_v2_small"))["mac_utilization"] >= 0.70


def test_target_fps_stops_folding_early():
    graph = quantized("mobilenet_v2_small")
    full = plan.model_summary(pipeline("mobilenet_v2_small"))
    slow = build_pipeline(graph, ARCH, BUDGET, target_fps=5000)
    s = plan.model_summary(slow)
    assert ARCH.clock_mhz * 1e6 / s["cycles_per_frame"] >= 5000
    assert s["mac_units"] < full["mac_units"]


def test_dsp_budget_too_small_names_the_layer():
    with pytest.raises(MappingError, match=r"Stage '.*'.*DSP budget \(20.*--mode seml"):
        build_pipeline(quantized("mobilenet_v2_small"), ARCH, plan.Budget(20, source="x"))


def test_memory_budget_refusal_names_layer_and_resource():
    with pytest.raises(MappingError, match=r"BRAM36.*(weights|line buffer) of layer '.*'"
                                           r".*hybrid"):
        build_pipeline(quantized("resnet_small"), ARCH, plan.Budget(10_000, 36864 * 2, "b"))


def test_skip_fifo_holds_the_main_branch_lookahead():
    cfg = pipeline("mobilenet_v2_small")
    lags = plan.join_lags(cfg.stages, cfg.input, cfg.input_shape)
    # features.1: the main branch is dw 3x3 (pad 1) -> project, 16 pixels wide: it
    # needs one row and one pixel more of the fork than the skip (W + 1 = 17)
    fork, lag, _ = lags[("features.0.relu6_out", "features.1.add")]
    assert (fork, lag) == ("features.0.relu6_out", 17)
    assert cfg.fifo_depth("features.0.relu6_out", "features.1.add") > lag
    assert cfg.fifo_depth("features.1.project_bn_out", "features.1.add") == 0


def test_latency_model_is_at_least_the_frame_and_the_pipeline_fill():
    cfg = pipeline("dpd_cnn")
    lat = plan.latency_model(cfg)["latency_cycles"]
    assert lat >= plan.model_summary(cfg)["cycles_per_frame"]
    assert lat < 2 * plan.model_summary(cfg)["cycles_per_frame"] + 100


def test_pipeline_config_round_trips_through_json():
    cfg = pipeline("resnet_small")
    assert PipelineConfig.from_json(cfg.to_json()) == cfg


def test_unsupported_kind_is_refused_by_name():
    graph = quantized("dpd_cnn").copy()
    graph.layers[1].groups = 2
    with pytest.raises(MappingError, match="conv1.*grouped.*--mode seml"):
        graph_stages(graph)


def test_firb_buffer_comparison_of_small_mobilenet():
    firb = buffer_comparison(pipeline("mobilenet_v2_small"))
    assert len(firb["bottlenecks"]) == 4
    assert firb["fused_bits"] < firb["layer_by_layer_bits"] < firb["double_buffered_bits"]
    for row in firb["bottlenecks"]:
        assert row["fused_bits"] < row["layer_by_layer_bits"]
        assert row["fused_bits"] == row["fused"]["depthwise_in"] + row["fused"]["skip_fifo"]
    assert firb["model_fused_bits"] < firb["model_layer_by_layer_bits"]


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("sesl-models")
    for name in ("dpd_cnn", "mobilenet_v2_small"):
        onnx.save(BUILDERS[name](), root / f"{name}.onnx")
    return root


def test_cli_compile_sesl_writes_report_json_and_simulates(onnx_files, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["compile", str(onnx_files / "dpd_cnn.onnx"), "--mode", "sesl",
                 "--budget-dsp", "64", "-o", str(out), "-q"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert REPORT_KEYS <= set(report) and report["mode"] == "sesl"
    assert set(report["resources"]) == {"lut", "ff", "dsp", "bram36"}
    for layer in report["layers"]:
        assert {"engine", "folding", "cycles", "mac_utilization", "fifo_depths",
                "buffer_bits"} <= set(layer)
    assert report["frames_per_s"] == pytest.approx(100e6 / report["cycles_per_frame"])
    assert main(["simulate", str(out)]) == 0
    assert "iss:" in capsys.readouterr().out
    assert main(["elaborate", "--compiled", str(out), "-o", str(tmp_path / "v")]) == 0
    assert "module convforge_sesl" in (tmp_path / "v" / "convforge_sesl.v").read_text()


def test_cli_sesl_needs_one_budget(onnx_files, tmp_path, capsys):
    assert main(["compile", str(onnx_files / "dpd_cnn.onnx"), "--mode", "sesl",
                 "--board", "PYNQ-Z2", "--budget-bram", "0", "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "BRAM36" in err and "hybrid" in err
    assert not (tmp_path / "o").exists()
    assert main(["compile", str(onnx_files / "dpd_cnn.onnx"), "--budget-dsp", "9",
                 "-o", str(tmp_path / "o")]) == 2
    assert "apply to --mode sesl" in capsys.readouterr().err


def test_seml_compile_writes_report_json(onnx_files, tmp_path):
    out = tmp_path / "seml"
    arch = tmp_path / "arch.json"
    arch.write_text(ARCH.to_json())
    assert main(["compile", str(onnx_files / "mobilenet_v2_small.onnx"), "--arch", str(arch), "-o",
                 str(out), "-q"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert REPORT_KEYS <= set(report) and report["mode"] == "seml"
    assert report["cycles_per_frame"] == json.loads(
        (out / "manifest.json").read_text())["predicted_cycles"]
    assert len(report["layers"]) >= 10


def test_mobilenet_v2_224_firb_analysis_from_the_model():
    from compiler.pipeline import PassContext, import_model
    graph = import_model(models.mobilenet_v2(), PassContext(arch=ARCH))
    stages = [s for s in _shape_stages(graph)]
    cfg = PipelineConfig("mnv2", graph.inputs[0], graph.outputs[0],
                         graph.shape(graph.inputs[0]), graph.shape(graph.outputs[0]),
                         tuple(stages), tuple(plan.fifo_depths(
                             stages, graph.inputs[0], graph.shape(graph.inputs[0]),
                             plan.steady_cycles(stages, 224 * 224))))
    firb = buffer_comparison(cfg)
    assert len(firb["bottlenecks"]) == 17
    assert firb["fused_bits"] < firb["layer_by_layer_bits"]
    # the bottlenecks' buffers fused: at most 46 % of layer by layer
    assert firb["ratio"] <= 0.46
    for row in firb["bottlenecks"]:
        assert row["fused"]["expand_in"] == row["fused"]["project_in"] == 0
        assert row["fused"]["depthwise_in"] < row["layer_by_layer"]["depthwise_in"]


def _shape_stages(graph):
    from compiler.sesl.firb import shape_stages
    return shape_stages(graph)
