"""SplitCNN and the hybrid compile output (no RTL): steps, balance, budget, ISS == golden."""

import itertools
import json

import numpy as np
import pytest

from compiler.cli import main
from compiler.compile import simulate
from compiler.errors import ConvForgeError, MappingError
from compiler.hybrid.compile import compile_hybrid
from compiler.hybrid.split import HybridBudget, seml_candidates, split_cnn, valid_cuts
from compiler.runner import run_golden_int
from compiler.sesl.plan import stage_dsp
from examples import models
from tests.sesl.fixtures import quantized

REPORT_KEYS = {"mode", "clock_mhz", "cycles_per_frame", "frames_per_s", "latency_cycles",
               "mac_units", "mac_utilization", "resources", "layers", "buffer_bits",
               "split", "budget", "splitcnn"}
BUDGET = HybridBudget(300, source="--budget-dsp 300")


@pytest.fixture(scope="module")
def mv2():
    return quantized("mobilenet_v2_small")


@pytest.fixture(scope="module")
def mv2_split(mv2):
    return split_cnn(mv2, BUDGET)


def test_cuts_are_single_tensors_and_keep_residual_blocks_whole(mv2):
    cuts = valid_cuts(mv2)
    assert cuts and cuts[0][0] == 1
    for k, cut in cuts:
        produced = {layer.output for layer in mv2.layers[:k]}
        read = {t for layer in mv2.layers[k:] for t in layer.inputs}
        assert produced & read == {cut}
    # no cut inside a residual block: the tensor a later add reads stays inside
    adds = [i for i, layer in enumerate(mv2.layers) if layer.kind.value == "add"]
    assert adds
    for i in adds:
        fork = mv2.layers[i].inputs[0]
        start = next(j for j, layer in enumerate(mv2.layers) if layer.output == fork)
        assert not any(start < k <= i for k, _ in cuts if k <= i and k > start + 1)


def test_splitcnn_moves_layers_while_throughput_improves(mv2, mv2_split):
    r = mv2_split
    steps = r.steps
    assert steps[0]["sesl_layers"] == 0 and steps[0]["improves"] is None
    assert r.best.k > 0 and not r.pure_seml
    accepted = [s for s in steps[1:] if s["improves"]]
    # every accepted step is faster than the one before; the search stops at the first
    # step that is not
    fps = [steps[0]["frames_per_s"]] + [s["frames_per_s"] for s in accepted]
    assert all(b > a for a, b in itertools.pairwise(fps))
    assert steps[-1]["improves"] is False or len(accepted) == len(steps) - 1
    assert r.best.k == accepted[-1]["sesl_layers"]
    assert r.reason
    # the layers move one at a time (a residual block as a whole)
    ks = [s["sesl_layers"] for s in steps]
    assert ks == sorted(ks) and len(set(ks)) == len(ks)


def test_best_split_balances_and_respects_the_budget(mv2, mv2_split):
    best = mv2_split.best
    assert best.dsp <= BUDGET.dsp
    assert sum(stage_dsp(st) for st in best.pipeline.stages) == best.sesl_use["dsp"]
    assert best.cycles_per_frame == max(best.sesl_cycles, best.seml_cycles)
    assert best.latency_cycles == best.sesl_latency + best.seml_cycles
    # the prefix was folded towards the core's time: giving the core the next larger
    # candidate would leave the prefix no DSPs for a faster split
    assert mv2_split.best.frames_per_s() > mv2_split.baseline.frames_per_s()
    # the SEML baseline is the fastest core that fits on its own
    for arch, use in seml_candidates(BUDGET):
        assert use["dsp"] <= BUDGET.dsp


def test_hybrid_output_simulates_equal_to_golden(mv2, tmp_path):
    out = tmp_path / "hyb"
    report = compile_hybrid(models.mobilenet_v2_small(), BUDGET, out, qgraph=mv2,
                            verify=True)
    assert REPORT_KEYS <= set(report)
    assert report["mode"] == "hybrid"
    split = report["split"]
    assert split["sesl_layers"] > 0 and split["cut"]
    b = report["budget"]["split"]
    assert b["sesl_dsp"] + b["seml_dsp"] <= 300
    assert report["resources"]["dsp"] == b["sesl_dsp"] + b["seml_dsp"]
    assert report["frames_per_s"] == pytest.approx(
        report["clock_mhz"] * 1e6 / report["cycles_per_frame"])
    parts = report["parts"]
    assert report["cycles_per_frame"] == max(parts["sesl"]["cycles_per_frame"],
                                             parts["seml"]["cycles_per_frame"])
    assert report["latency_cycles"] == (parts["sesl"]["latency_cycles"]
                                        + parts["seml"]["cycles_per_frame"])
    assert {p["part"] for p in report["layers"]} == {"sesl", "seml"}
    for name in ("program.bin", "weights.bin", "arch.json", "pipeline.json", "report.txt"):
        assert (out / name).is_file()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["mode"] == "hybrid"
    assert manifest["handoff"]["name"] == split["cut"]
    assert "SplitCNN steps" in (out / "report.txt").read_text()
    name = mv2.inputs[0]
    for seed in (1, 2):
        x = np.random.default_rng(seed).integers(-128, 128, size=(1,) + mv2.shape(name))
        got = simulate(out, x)
        want = run_golden_int(mv2, {name: x}).outputs
        for t, ref in want.items():
            assert np.array_equal(got.outputs[t], ref.reshape(got.outputs[t].shape))
    with pytest.raises(ConvForgeError, match="backend"):
        simulate(out, backend="no-such-backend")


def test_pure_seml_when_no_prefix_fits_next_to_the_core(mv2):
    smallest = seml_candidates(HybridBudget(10_000))[0][1]["dsp"]
    r = split_cnn(mv2, HybridBudget(smallest + 2, source="tight"))
    assert r.pure_seml and r.best.k == 0
    assert r.reason.startswith("pure SEML:") and "does not fit" in r.reason


def test_pure_seml_below_the_minimum_gain(mv2):
    r = split_cnn(mv2, BUDGET, min_gain=100.0)
    assert r.pure_seml
    assert "pure SEML" in r.reason and "x the SEML baseline" in r.reason


def test_budget_too_small_for_any_core_is_refused(mv2):
    with pytest.raises(MappingError, match="No SEML core fits the budget.*--budget-dsp"):
        split_cnn(mv2, HybridBudget(20, source="--budget-dsp 20"))


def test_cli_compile_and_simulate_hybrid(tmp_path, capsys):
    import onnx

    path = tmp_path / "m.onnx"
    onnx.save(models.mobilenet_v2_small(), str(path))
    out = tmp_path / "out"
    assert main(["compile", str(path), "--mode", "hybrid", "--budget-dsp", "300", "-o",
                 str(out), "-q"]) == 0
    assert json.loads((out / "report.json").read_text())["mode"] == "hybrid"
    assert main(["simulate", str(out)]) == 0
    assert "output" in capsys.readouterr().out
    assert main(["compile", str(path), "--mode", "hybrid", "-o", str(tmp_path / "x")]) == 2
    assert "exactly one of --board NAME or --budget-dsp N" in capsys.readouterr().err
    assert main(["compile", str(path), "--mode", "hybrid", "--budget-dsp", "300",
                 "--target-fps", "5", "-o", str(tmp_path / "y")]) == 2
    assert "--target-fps" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_vgg_style_model_gets_pure_seml_and_a_working_output(tmp_path):
    from compiler.hybrid.compile import import_quantized

    # 110 DSPs: the smallest SEML core takes 106, and no prefix fits beside it
    budget = HybridBudget(110, source="--budget-dsp 110")
    qgraph = import_quantized(models.vgg(), budget.base)
    report = compile_hybrid(models.vgg(), budget, tmp_path / "vgg", qgraph=qgraph)
    split = report["split"]
    assert split["pure_seml"] and split["sesl_layers"] == 0 and split["cut"] is None
    assert split["reason"].startswith("pure SEML:") and "does not fit" in split["reason"]
    assert report["parts"]["sesl"] is None
    assert not (tmp_path / "vgg" / "pipeline.json").exists()
    assert "answer: pure SEML" in (tmp_path / "vgg" / "report.txt").read_text()
    name = qgraph.inputs[0]
    x = np.random.default_rng(4).integers(-128, 128, size=(1,) + qgraph.shape(name))
    got = simulate(tmp_path / "vgg", x)
    for t, ref in run_golden_int(qgraph, {name: x}).outputs.items():
        assert np.array_equal(got.outputs[t], ref.reshape(got.outputs[t].shape))
