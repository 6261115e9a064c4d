"""FIRB: the same inverted residual bottleneck built layer by layer and fused, under
Verilator with random idle and back-pressure: both bit-exact, both at the modelled
steady state, and the fused one with only the depthwise line buffer."""

import numpy as np
import pytest

from compiler.sesl import plan
from compiler.sesl.compile import run_stages
from compiler.sesl.firb import buffer_comparison
from compiler.sesl.rtl import run_pipeline_rtl
from hw.engines.firb import FirbStage
from tests.sesl.fixtures import bottleneck_pipeline


def test_fused_config_keeps_only_the_depthwise_line_buffer():
    plain, fused = bottleneck_pipeline(), bottleneck_pipeline(fused=True)
    assert [st.firb for st in fused.stages] == ["dw", "dw", "dw", ""]
    lbl = sum(st.line_buffer_bits for st in plain.stages)
    kept = sum(st.line_buffer_bits for st in fused.stages)
    assert kept == fused.stage("dw").line_buffer_bits < lbl
    cmp = buffer_comparison(fused)
    assert cmp == buffer_comparison(plain)
    (row,) = cmp["bottlenecks"]
    assert row["fused_bits"] < row["layer_by_layer_bits"]
    with pytest.raises(ValueError, match="expand must be an unbuffered"):
        FirbStage(plain.stages[0], plain.stages[1], plain.stages[2])


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
