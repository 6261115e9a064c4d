"""FIRB: the same inverted residual bottleneck built layer by layer and fused, under
Verilator with random idle and back-pressure: both bit-exact, both at the modelled
steady state, and the fused one with only the depthwise line buffer (a ring); the
buffer accounting equals the memories of the elaborated Verilog both ways."""

import re
from dataclasses import replace

import numpy as np
import pytest

from compiler.sesl import plan
from compiler.sesl.compile import run_stages
from compiler.sesl.firb import buffer_comparison, fuse_bottlenecks, unfuse
from compiler.sesl.rtl import run_pipeline_rtl
from hw.engines.firb import FirbStage
from hw.sesl.config import RING_SLACK, PipelineConfig
from hw.sesl.pipeline import SeslPipeline
from sim.rtl import elaborate_verilog
from tests.sesl.fixtures import bottleneck_pipeline, random_pipeline


def test_fused_config_keeps_only_the_depthwise_line_buffer():
    plain, fused = bottleneck_pipeline(), bottleneck_pipeline(fused=True)
    assert [st.firb for st in fused.stages] == ["dw", "dw", "dw", ""]
    assert [st.ring for st in fused.stages] == [False, True, False, False]
    lbl = sum(st.line_buffer_bits for st in plain.stages)
    kept = sum(st.line_buffer_bits for st in fused.stages)
    dw = fused.stage("dw")
    assert kept == dw.line_buffer_bits < lbl
    # the ring: the 3x3 window's two rows plus KW + 1 pixels, plus the slack
    _, _, w = dw.in_shapes[0]
    assert dw.line_words == 2 * w + 4 + RING_SLACK < dw.line_rows * w
    cmp = buffer_comparison(fused)
    assert cmp == buffer_comparison(plain)
    (row,) = cmp["bottlenecks"]
    assert row["fused"]["expand_in"] == row["fused"]["project_in"] == 0
    assert row["fused"]["skip_fifo"] == row["layer_by_layer"]["skip_fifo"] > 0
    assert row["fused"]["depthwise_in"] == dw.line_words * dw.in_channels * 8
    assert row["fused_bits"] < row["layer_by_layer_bits"]
    with pytest.raises(ValueError, match="expand must be an unbuffered"):
        FirbStage(plain.stages[0], plain.stages[1], plain.stages[2])


def _verilog_buffer_bits(cfg):
    """Bits of the RAMs of the elaborated pipeline that are not ROMs, plus the one-beat
    output register of every FIFO."""
    text = elaborate_verilog(SeslPipeline(cfg))
    total = 0
    for width, name, depth in re.findall(r"reg \[(\d+):0\] (\S+) \[(\d+):0\];", text):
        if name in ("wrom", "prom"):
            continue
        assert name in ("lbuf", "storage"), name
        total += (int(width) + 1) * (int(depth) + 1 + (name == "storage"))
    return total


@pytest.mark.parametrize("make", [bottleneck_pipeline, random_pipeline])
def test_buffer_accounting_equals_the_elaborated_memories(make):
    cfg = make()
    cmp = buffer_comparison(cfg)
    plain = PipelineConfig(**{**cfg.__dict__, "stages": tuple(unfuse(cfg.stages))})
    fused = PipelineConfig(**{**cfg.__dict__,
                              "stages": tuple(fuse_bottlenecks(plain.stages))})
    assert _verilog_buffer_bits(plain) == cmp["model_layer_by_layer_bits"]
    assert _verilog_buffer_bits(fused) == cmp["model_fused_bits"]


def test_ring_line_buffers_random_backpressure():
    """Every window stage at least two rows tall of the all-kinds pipeline (3x3 conv,
    depthwise and max pool of stride 2, 2x2 average pool, a 3x4 fully connected window)
    with a ring line buffer: bit-exact under idle and back-pressure, four frames."""
    base = random_pipeline(2)
    stages = tuple(replace(st, ring=True) if st.is_window and st.kernel[0] >= 2 else st
                   for st in base.stages)
    cfg = PipelineConfig(**{**base.__dict__, "stages": stages})
    assert sum(st.ring for st in stages) == 6
    x = np.random.default_rng(5).integers(-128, 128, size=(4,) + cfg.input_shape)
    run = run_pipeline_rtl(cfg, x, p_idle=0.3, p_stall=0.4, seed=4, build_name="sesl-ring")
    assert run.finished, f"stalled after {run.beats} output pixels"
    assert np.array_equal(run.outputs, run_stages(cfg, x))


def test_ring_needs_a_window_two_rows_tall():
    st = bottleneck_pipeline().stage("expand")
    with pytest.raises(ValueError, match="ring line buffer needs"):
        replace(st, ring=True)


@pytest.mark.parametrize("fused", [False, True])
def test_bottleneck_rtl_both_ways(fused):
    cfg = bottleneck_pipeline(fused=fused)
    x = np.random.default_rng(3).integers(-128, 128, size=(4,) + cfg.input_shape)
    name = "sesl-firb" if fused else "sesl-bottleneck"
    stressed = run_pipeline_rtl(cfg, x, p_idle=0.3, p_stall=0.3, seed=2, build_name=name)
    assert stressed.finished
    assert np.array_equal(stressed.outputs, run_stages(cfg, x))
    timed = run_pipeline_rtl(cfg, x, build_name=name)
    model = plan.model_summary(cfg)
    assert timed.steady_cycles() == pytest.approx(model["cycles_per_frame"], rel=0.05)


@pytest.mark.parametrize("stride,words", [(1, lambda w: 2 * w + 4), (2, lambda w: 3 * w + 5)])
def test_ring_words_are_the_least_that_keeps_the_producer_one_pixel_ahead(stride, words):
    """A 3x3 depthwise ring: ``need(q+1) - oldest(q) + 1`` at its worst step (the row end
    at stride 2, where the next window reaches two rows further) plus RING_SLACK (0)."""
    for w in (8, 16):
        st = replace(bottleneck_pipeline().stage("dw"), in_shapes=((12, 2 * w, w),),
                     out_shape=(12, 2 * w // stride, w // stride), stride=(stride, stride),
                     ring=True)
        assert RING_SLACK == 0
        assert st.ring_words == words(w) < st.line_rows * w
