# amaranth: UnusedElaboratable=no
"""The hybrid as one RTL top (hw/hybrid/top.py) on the small MobileNetV2 under Verilator,
DDR a cocotbext-axi memory: frames streamed back to back, the SESL prefix writing frame
n+1 into one hand-off buffer while the SEML core runs frame n from the other; every output
equal to the golden runner bit for bit, the frame interval and the first frame's latency
against the model, and the same outputs with random input gaps and DDR stalls."""

import numpy as np
import pytest

from compiler.hybrid.compile import compile_hybrid, load_hybrid
from compiler.hybrid.rtl import run_hybrid_rtl
from compiler.hybrid.split import HybridBudget
from compiler.runner import run_golden_int
from examples import models
from hw.hybrid.top import HybridTop
from tests.sesl.fixtures import quantized

pytestmark = [pytest.mark.rtl, pytest.mark.slow]
FRAMES = 5


@pytest.fixture(scope="module")
def hybrid_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("hybrid-top") / "mv2"
    report = compile_hybrid(models.mobilenet_v2_small(), HybridBudget(300), out,
                            qgraph=quantized("mobilenet_v2_small"))
    return out, report


def _golden(manifest, x):
    name = manifest["inputs"][0]["name"]
    return [run_golden_int(quantized("mobilenet_v2_small"), {name: x[f:f + 1]}).outputs
            for f in range(x.shape[0])]


def _check_outputs(run, want):
    assert len(run.outputs) == len(want)
    for f, ref in enumerate(want):
        for name, y in ref.items():
            assert np.array_equal(run.outputs[f][name].reshape(y.shape), y), (f, name)


def test_hybrid_top_streams_frames_at_the_model_rate(hybrid_out):
    out, report = hybrid_out
    _, _, _, manifest, cfg = load_hybrid(out)
    x = np.random.default_rng(21).integers(-128, 128, size=(FRAMES,) + tuple(cfg.input_shape))
    run = run_hybrid_rtl(out, x, seed=2)
    _check_outputs(run, _golden(manifest, x))
    regs = run.registers
    assert regs["FRAMES_IN"] == regs["FRAMES_OUT"] == FRAMES
    assert regs["HYBRID_STATUS"] & 0b1101 == 0b0001           # done, no error
    assert regs["CORE_ERROR"] == 0
    # frames overlap: throughput 1 / max(T_SESL, T_SEML), latency their sum
    model = report["cycles_per_frame"]
    measured = run.steady_cycles()
    assert abs(measured - model) <= 0.10 * model, (measured, model)
    # the host sees the same interval in FIRST_DONE / LAST_DONE
    by_regs = (regs["LAST_DONE"] - regs["FIRST_DONE"]) / (FRAMES - 1)
    assert abs(by_regs - measured) <= 1, (by_regs, measured)
    latency = run.latencies()[0]
    assert abs(latency - report["latency_cycles"]) <= 0.10 * report["latency_cycles"], \
        (latency, report["latency_cycles"])
    # not the sequential sum: the parts run at once (run one after the other, a frame
    # would take the whole latency; overlapped, the shorter part is hidden)
    shorter = report["latency_cycles"] - model
    assert shorter > 0.1 * report["latency_cycles"]
    assert measured < report["latency_cycles"] - shorter / 2, (measured, model, shorter)


def test_hybrid_top_with_input_gaps_and_ddr_stalls(hybrid_out):
    out, _ = hybrid_out
    _, _, _, manifest, cfg = load_hybrid(out)
    x = np.random.default_rng(22).integers(-128, 128, size=(4,) + tuple(cfg.input_shape))
    run = run_hybrid_rtl(out, x, seed=7, p_idle=0.3, p_pause=0.3)
    _check_outputs(run, _golden(manifest, x))
    assert run.registers["FRAMES_OUT"] == 4


def test_hybrid_top_stops_on_a_core_error(hybrid_out):
    """The core refuses a misaligned PROG_BASE: the run stops after the prefix's first
    frame with the core's error code, irq high, no frame out, nothing hangs."""
    from compiler.hybrid.rtl import IMAGE_A
    from hw.isa import ErrorCode

    out, _ = hybrid_out
    _, _, _, _, cfg = load_hybrid(out)
    x = np.random.default_rng(23).integers(-128, 128, size=(3,) + tuple(cfg.input_shape))
    run = run_hybrid_rtl(out, x, prog_base=IMAGE_A + 4)
    regs = run.registers
    assert run.outputs == [] and regs["FRAMES_OUT"] == 0 and regs["FRAMES_IN"] >= 1
    assert regs["CORE_ERROR"] == ErrorCode.BAD_MAGIC.value
    assert regs["HYBRID_STATUS"] & 0b0111 == 0b0101          # done, not busy, error


def test_hybrid_top_parameters(hybrid_out):
    out, _ = hybrid_out
    arch, _, _, _, cfg = load_hybrid(out)
    with pytest.raises(TypeError, match="PipelineConfig"):
        HybridTop(arch, arch)
    with pytest.raises(TypeError, match="ArchConfig"):
        HybridTop(cfg, cfg)


def test_elaborate_writes_the_hybrid_top(hybrid_out, tmp_path, capsys):
    from compiler.cli import main

    out, _ = hybrid_out
    assert main(["elaborate", "--compiled", str(out), "-o", str(tmp_path / "v")]) == 0
    text = (tmp_path / "v" / "convforge_hybrid.v").read_text()
    assert "module convforge_hybrid(" in text and "s_axil_awaddr" in text
    assert (tmp_path / "v" / "pipeline.json").exists() and (tmp_path / "v" / "arch.json").exists()
    assert "convforge_hybrid" in capsys.readouterr().out
