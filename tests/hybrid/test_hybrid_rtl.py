"""A hybrid's SESL part as RTL (prefix pipeline + hand-off writer, cocotbext-axi DDR) on
the small MobileNetV2: several frames written to DDR, each equal to the golden prefix in
the SEML input layout; the measured frame interval against SplitCNN's model."""

import numpy as np
import pytest

from compiler.compile import simulate
from compiler.hybrid.compile import compile_hybrid, load_hybrid
from compiler.hybrid.rtl import run_prefix_rtl
from compiler.hybrid.split import HybridBudget
from compiler.sesl.compile import run_stages
from examples import models
from sim.iss import encode_activations
from tests.sesl.fixtures import quantized

pytestmark = [pytest.mark.rtl, pytest.mark.slow]


@pytest.fixture(scope="module")
def hybrid_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("hybrid") / "mv2"
    report = compile_hybrid(models.mobilenet_v2_small(), HybridBudget(300), out,
                            qgraph=quantized("mobilenet_v2_small"))
    return out, report


def test_prefix_rtl_frames_equal_golden_at_the_model_rate(hybrid_out):
    out, report = hybrid_out
    arch, _, _, manifest, cfg = load_hybrid(out)
    x = np.random.default_rng(11).integers(-128, 128, size=(3,) + tuple(cfg.input_shape))
    run = run_prefix_rtl(cfg, x, base=manifest["handoff"]["offset"],
                         data_bits=arch.axi_data_bits, addr_bits=arch.axi_addr_bits)
    assert len(run.tensors) == 3 and not run.error
    want = run_stages(cfg, x)
    for f in range(3):
        assert np.array_equal(run.tensors[f], encode_activations(want[f:f + 1], 8)), f
    model = report["parts"]["sesl"]["cycles_per_frame"]
    measured = run.steady_cycles()
    assert abs(measured - model) <= 0.10 * model, (measured, model)
    # with random input gaps and DDR stalls the bytes are the same
    stalled = run_prefix_rtl(cfg, x[:2], base=manifest["handoff"]["offset"],
                             data_bits=arch.axi_data_bits, addr_bits=arch.axi_addr_bits,
                             seed=4, p_idle=0.3, p_pause=0.3)
    assert len(stalled.tensors) == 2 and not stalled.error
    for f in range(2):
        assert np.array_equal(stalled.tensors[f], run.tensors[f])


def test_simulate_rtl_prefix_then_iss_equals_golden(hybrid_out, monkeypatch):
    """``simulate(..., backend="rtl")`` with the SEML part on the ISS (the SEML core's
    RTL backend replaced): the RTL prefix's DDR bytes feed the program."""
    from compiler import compile as compile_mod

    out, _ = hybrid_out
    monkeypatch.setitem(compile_mod.BACKENDS, "rtl", compile_mod.BACKENDS["iss"])
    x = np.random.default_rng(12).integers(-128, 128, size=(1, 3, 32, 32))
    got = simulate(out, x, backend="rtl")
    ref = simulate(out, x, backend="iss")
    for name, y in ref.outputs.items():
        assert np.array_equal(got.outputs[name], y)
    assert "prefix" in got.details
