"""The unrolled (fully parallel, constant-weight) SESL conv stage: constant products
built from the weights' values (none for zero, shifts for PoT, shift-add for two
digits, a multiplier otherwise), and the 1-D DPD pipeline with its skip under
Verilator (pruned APoT weights, random input idle and output back-pressure)."""

from __future__ import annotations

import itertools
import re
import warnings

import numpy as np
import pytest
from amaranth.back import rtlil
from amaranth.hdl import Module, Signal, signed
from amaranth.sim import Simulator

from compiler.sesl import plan
from compiler.sesl.compile import build_pipeline, run_stages
from hw.sesl.config import StageConfig
from hw.sesl.unrolled import UnrolledConvStage, constant_product, naf_digits


def test_naf_digits():
    for v in range(-600, 601):
        digits = naf_digits(v)
        assert sum(s * 2 ** e for s, e in digits) == v
        exps = [e for _, e in digits]
        assert all(b - a >= 2 for a, b in itertools.pairwise(exps))  # non-adjacent
    assert naf_digits(0) == [] and len(naf_digits(64)) == 1 and len(naf_digits(-7)) == 2
    assert len(naf_digits(0b1011011)) == 4


def test_constant_products_equal_the_product():
    weights = [0, 1, -1, 2, -8, 3, 7, -7, 12, -96, 5, 11, -13, 1000, -32767]
    x = Signal(signed(10))
    m = Module()
    outs = []
    for w in weights:
        p = constant_product(x, w)
        if p is None:
            assert w == 0
            outs.append(None)
            continue
        o = Signal(signed(32))
        m.d.comb += o.eq(p)
        outs.append(o)
    sim = Simulator(m)

    async def bench(ctx):
        for v in (-512, -301, -1, 0, 1, 77, 511):
            ctx.set(x, v)
            for w, o in zip(weights, outs):
                if o is not None:
                    assert ctx.get(o) == v * w, (v, w)

    sim.add_testbench(bench)
    sim.run()


def _stage(weights, c=2, m=3, k=3, w=16):
    return StageConfig(name="c", op="conv", inputs=("x",), output="y", in_shapes=((c, 1, w),),
                       out_shape=(m, 1, w), kernel=(1, k), pads=(0, k // 2, 0, k // 2),
                       weights=tuple(int(v) for v in weights), bias=(5, -3, 0)[:m],
                       m=(12345,) * m, s=(20,) * m, unrolled=True)


def _muls(st):
    text = rtlil.convert(UnrolledConvStage(st, act_bits=12, weight_bits=16, acc_bits=40))
    return len(re.findall(r"cell \$mul ", text))


def test_netlist_multipliers_follow_the_weights():
    rng = np.random.default_rng(4)
    n = 3 * 2 * 3
    general = rng.choice([5 * 2 ** 7 + 3, -1111, 4093, 739], size=n)  # >= 3 NAF digits
    assert all(len(naf_digits(v)) > 2 for v in general)
    dense = _stage(general)
    # one multiplier per weight, and one scaling multiplier per output channel
    assert _muls(dense) == n + 3 == plan.stage_dsp(dense) - 3
    pruned = general.copy()
    pruned[rng.permutation(n)[:12]] = 0
    st = _stage(pruned)
    assert _muls(st) == 6 + 3 and st.mac_units == 6
    pot = rng.choice([1, -2, 4, -64, 512, 0], size=n)
    apot = rng.choice([3, -6, 40, -516, 0, 1], size=n)
    for weights in (pot, apot):  # shifts (and adders): the scaling multipliers only
        st = _stage(weights)
        assert _muls(st) == 3 and plan.stage_dsp(st) == 2 * 3
    with pytest.raises(ValueError, match="one-row"):
        StageConfig(name="c", op="conv", inputs=("x",), output="y", in_shapes=((2, 4, 8),),
                    out_shape=(3, 4, 8), kernel=(3, 3), pads=(1, 1, 1, 1),
                    weights=(1,) * 54, unrolled=True)


def _dpd_pipeline(scheme, sparsity, seed=0):
    from compiler.passes.prune import prune
    from compiler.passes.quantize import QuantConfig, quantize
    from compiler.pipeline import import_model
    from examples.dpd.study import _onnx
    from hw.arch import ArchConfig

    rng = np.random.default_rng(seed)
    shapes = [(4, 2, 5), (4, 4, 5), (2, 4, 5)]
    row = {"params": [(rng.normal(0, 0.4, s).tolist(), rng.normal(0, 0.1, s[0]).tolist())
                      for s in shapes]}
    graph = import_model(_onnx(row, 0.5, length=24))
    graph, _ = prune(graph, sparsity)
    arch = ArchConfig(name="dpd", act_bits=12, weight_bits=12, acc_bits=40, bias_bits=40,
                      weight_scheme=scheme, pot_exp_bits=4)
    calib = rng.normal(0, 0.5, (4, 2, 1, 24)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qgraph, _ = quantize(graph, QuantConfig.from_arch(arch), {graph.inputs[0]: calib})
    return build_pipeline(qgraph, arch, plan.Budget(10_000), unroll=True)


def test_dpd_pipeline_unrolled_model():
    cfg = _dpd_pipeline("apot", 0.5)
    convs = [st for st in cfg.stages if st.op == "conv"]
    assert len(convs) == 3 and all(st.unrolled for st in convs)
    assert cfg.fifos  # the skip
    summary = plan.model_summary(cfg)
    assert summary["cycles_per_frame"] == 24 + 4  # a pixel per cycle, K - 1 pad steps
    assert summary["mac_units"] == sum(1 for st in convs for v in st.weights if v)
    with pytest.raises(Exception, match="uniform"):  # folded stages keep refusing APoT
        build_pipeline(*_quantized_apot_graph(), plan.Budget(10_000))


def _quantized_apot_graph():
    from compiler.passes.quantize import QuantConfig, quantize
    from compiler.pipeline import import_model
    from examples.models import dpd_cnn
    from hw.arch import ArchConfig

    graph = import_model(dpd_cnn(hidden_channels=2, hidden_layers=1, kernel_size=3,
                                 length=8))
    arch = ArchConfig(name="t", weight_scheme="apot")
    calib = np.random.default_rng(0).normal(0, 0.5, (2, 2, 1, 8)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qgraph, _ = quantize(graph, QuantConfig.from_arch(arch), {graph.inputs[0]: calib})
    return qgraph, arch


def test_dpd_pipeline_rtl_equals_golden():
    from compiler.sesl.rtl import run_pipeline_rtl

    cfg = _dpd_pipeline("apot", 0.5, seed=2)
    x = np.random.default_rng(3).integers(-2048, 2048, size=(4,) + cfg.input_shape)
    run = run_pipeline_rtl(cfg, x, p_idle=0.3, p_stall=0.4, seed=5,
                           build_name="sesl-unrolled-dpd")
    assert run.finished, f"pipeline stalled after {run.beats} output pixels"
    assert np.array_equal(run.outputs, run_stages(cfg, x))
    fast = run_pipeline_rtl(cfg, x, build_name="sesl-unrolled-dpd")
    assert fast.finished and np.array_equal(fast.outputs, run.outputs)
    # without idle input or back-pressure: a pixel per cycle (plus the padding steps)
    assert fast.steady_cycles() == pytest.approx(plan.model_summary(cfg)["cycles_per_frame"],
                                                 abs=1)
