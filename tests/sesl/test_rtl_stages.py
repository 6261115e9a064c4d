"""SESL stages under Verilator: every stage kind with random parameters and foldings
that do not divide the channel counts, random input idle and output back-pressure,
four frames back to back; and the skip FIFO sizing shown to be tight."""

import numpy as np
import pytest

from compiler.sesl import plan
from compiler.sesl.compile import run_stages
from compiler.sesl.rtl import run_pipeline_rtl
from tests.sesl.fixtures import random_pipeline, residual_pipeline

FRAMES = 4


def _frames(cfg, seed, n=FRAMES):
    return np.random.default_rng(seed).integers(-128, 128, size=(n,) + cfg.input_shape)


@pytest.mark.parametrize("seed", [1])
def test_every_stage_kind_random_backpressure(seed):
    cfg = random_pipeline(seed)
    x = _frames(cfg, seed)
    run = run_pipeline_rtl(cfg, x, p_idle=0.3, p_stall=0.4, seed=seed,
                           build_name=f"sesl-random-{seed}")
    assert run.finished, f"pipeline stalled after {run.beats} output pixels"
    assert np.array_equal(run.outputs, run_stages(cfg, x))


def test_residual_steady_state_matches_the_model():
    cfg = residual_pipeline()
    x = _frames(cfg, 7)
    run = run_pipeline_rtl(cfg, x, build_name="sesl-residual")
    assert run.finished and np.array_equal(run.outputs, run_stages(cfg, x))
    model = plan.model_summary(cfg)
    assert run.steady_cycles() == pytest.approx(model["cycles_per_frame"], rel=0.05)
    assert run.frame_done[0] + 1 == pytest.approx(model["latency_cycles"], rel=0.05)


def test_shrunk_skip_fifo_deadlocks():
    """The skip FIFO must hold the 2 * (W + 1) = 18 pixels the two 3x3 convs of the
    main branch read ahead. The computed depth adds the pixels arriving during the main
    branch's pipeline latency; shrinking the FIFO by that slack, the margin and two more
    pixels (to 16) leaves the fork unable to feed the main branch: a deadlock, caught by
    the bounded wait."""
    cfg = residual_pipeline()
    (tensor, join, depth), = cfg.fifos
    _fork, lag, _ = plan.join_lags(cfg.stages, cfg.input, cfg.input_shape)[(tensor, join)]
    assert lag == 18 and depth > lag
    small = cfg.with_fifo(tensor, join, lag - 2)
    x = _frames(cfg, 7, n=2)
    run = run_pipeline_rtl(small, x, build_name="sesl-residual-shrunk", max_cycles=20_000)
    assert not run.finished
    assert run.beats < x.shape[0] * 48
