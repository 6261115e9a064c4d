"""Whole example models as SESL pipelines under Verilator: four frames back to back with
random input idle and output back-pressure, every frame bit-exact with the golden
runner, bounded wait; steady-state cycles per frame and first-frame latency within 5 %
of the cycle model."""

import numpy as np
import pytest

from compiler.runner import run_golden_int
from compiler.sesl import plan
from compiler.sesl.rtl import run_pipeline_rtl
from tests.sesl.fixtures import BUILDERS, pipeline, quantized

FRAMES = 4


@pytest.mark.slow
@pytest.mark.parametrize("name,firb", [(name, False) for name in sorted(BUILDERS)]
                         + [("mobilenet_v2_small", True)])
def test_model_pipeline_rtl(name, firb):
    """``firb``: the small MobileNetV2 with its four inverted residual bottlenecks fused
    (one FIRB stage each, the depthwise line buffer a ring)."""
    graph = quantized(name)
    cfg = pipeline(name, firb)
    assert sum(bool(st.firb) for st in cfg.stages) == (11 if firb else 0)
    x = np.random.default_rng(11).integers(-128, 128, size=(FRAMES,) + cfg.input_shape)
    want = run_golden_int(graph, {graph.inputs[0]: x}).outputs[graph.outputs[0]]
    build = f"sesl-model-{cfg.name}"
    stressed = run_pipeline_rtl(cfg, x, p_idle=0.25, p_stall=0.25, seed=3, build_name=build)
    assert stressed.finished, f"{name}: stalled after {stressed.beats} output pixels"
    assert np.array_equal(stressed.outputs, want.reshape(stressed.outputs.shape))
    timed = run_pipeline_rtl(cfg, x, build_name=build)
    assert timed.finished and np.array_equal(timed.outputs, stressed.outputs)
    model = plan.model_summary(cfg)
    assert timed.steady_cycles() == pytest.approx(model["cycles_per_frame"], rel=0.05)
    assert timed.frame_done[0] + 1 == pytest.approx(model["latency_cycles"], rel=0.05)
