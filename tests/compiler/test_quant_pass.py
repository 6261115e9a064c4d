"""The quantize and prune passes on a small hand-built graph covering every layer kind."""

import json
import math
import warnings

import numpy as np
import pytest

from compiler.errors import QuantizationError
from compiler.ir import Activation, Graph, Layer, OpKind, Tensor, run_float
from compiler.passes.prune import prune
from compiler.passes.quantize import QuantConfig, load_calibration, quantize
from compiler.quant import weight_levels
from compiler.runner import run_golden
from hw.arch import ArchConfig
from sim import golden


def _weights(rng, *shape):
    return (rng.normal(size=shape) * math.sqrt(2 / math.prod(shape[1:]))).astype(np.float32)


def toy_graph(seed=0):
    """conv+ReLU6 -> maxpool -> dw+ReLU -> pw -> add(+ReLU) -> concat -> avgpool -> GAP -> fc."""
    rng = np.random.default_rng(seed)
    g = Graph("toy", ["x"], ["y"])
    for name, shape in [("x", (3, 16, 16)), ("a", (8, 16, 16)), ("b", (8, 8, 8)),
                        ("c", (8, 8, 8)), ("d", (8, 8, 8)), ("e", (8, 8, 8)),
                        ("cat", (16, 8, 8)), ("p", (16, 4, 4)), ("f", (16, 1, 1)),
                        ("y", (10, 1, 1))]:
        g.tensors[name] = Tensor(name, shape)
    bias = lambda n: rng.normal(0, 0.3, n).astype(np.float32)
    g.layers = [
        Layer("c1", OpKind.CONV, ["x"], ["a"], kernel=(3, 3), pads=(1, 1, 1, 1),
              activation=Activation.RELU6, weight=_weights(rng, 8, 3, 3, 3), bias=bias(8)),
        Layer("mp", OpKind.MAXPOOL, ["a"], ["b"], kernel=(2, 2), stride=(2, 2)),
        Layer("dw", OpKind.DEPTHWISE, ["b"], ["c"], kernel=(3, 3), pads=(1, 1, 1, 1), groups=8,
              activation=Activation.RELU, weight=_weights(rng, 8, 1, 3, 3), bias=bias(8)),
        Layer("pw", OpKind.POINTWISE, ["c"], ["d"], weight=_weights(rng, 8, 8, 1, 1)),
        Layer("add", OpKind.ADD, ["d", "b"], ["e"], activation=Activation.RELU),
        Layer("cat", OpKind.CONCAT, ["e", "b"], ["cat"]),
        Layer("ap", OpKind.AVGPOOL, ["cat"], ["p"], kernel=(3, 3), stride=(2, 2),
              pads=(1, 1, 1, 1)),
        Layer("gap", OpKind.GAP, ["p"], ["f"]),
        Layer("fc", OpKind.FC, ["f"], ["y"], weight=_weights(rng, 10, 16), bias=bias(10)),
    ]
    return g.validate()


@pytest.fixture(scope="module")
def graph():
    return toy_graph()


@pytest.fixture(scope="module")
def samples():
    return np.random.default_rng(1).normal(size=(6, 3, 16, 16)).astype(np.float32)


def _float_out(graph, samples):
    return np.stack([run_float(graph, x)["y"] for x in samples])


MODES = [("pot", "uniform"), ("per_layer", "uniform"), ("per_channel", "uniform"),
         ("per_channel", "pot"), ("per_channel", "apot"), ("pot", "apot")]


@pytest.mark.parametrize("mode,scheme", MODES)
def test_quantize_modes(graph, samples, mode, scheme):
    cfg = QuantConfig(scale_mode=mode, weight_scheme=scheme)
    qg, _report = quantize(graph, cfg, samples)
    assert all(layer.quant is None for layer in graph.layers), "input graph untouched"
    levels = set(weight_levels(scheme, 8, 3).tolist())
    for layer in qg.layers:
        q = layer.quant
        assert q is not None and qg.tensors[layer.output].scale == q.output_scale
        if layer.weight is not None:
            assert set(np.unique(q.weight).tolist()) <= levels
            assert q.weight.shape == layer.weight.shape and q.weight.dtype == np.int64
            per_channel = q.m.shape == (layer.out_channels,)
            assert per_channel or q.m.shape == (1,)
            if mode == "pot":
                assert q.m.tolist() == [1]
                assert math.log2(q.output_scale).is_integer()
            assert np.all(q.m < 1 << 16) and np.all((0 <= q.s) & (q.s <= 63))
    if mode == "pot":
        assert all(math.log2(t.scale).is_integer() for t in qg.tensors.values())
    result = run_golden(qg, samples)
    snr = golden.snr_db(_float_out(graph, samples), result.outputs["y"] * qg.tensors["y"].scale)
    floor = {"uniform": 25.0, "apot": 18.0, "pot": 8.0}[scheme]
    assert snr > floor, f"{mode}/{scheme}: {snr:.1f} dB"


def test_activation_clamps(graph, samples):
    qg, _ = quantize(graph, QuantConfig(scale_mode="pot"), samples)
    c1 = qg.layer("c1").quant
    assert c1.lo == 0 and c1.hi == round(6 / c1.output_scale) <= 127
    assert qg.layer("dw").quant.lo == 0 and qg.layer("dw").quant.hi == 127
    assert (qg.layer("pw").quant.lo, qg.layer("pw").quant.hi) == (-128, 127)
    # Pass-through max pooling keeps its input's scale and range.
    mp = qg.layer("mp").quant
    assert mp.output_scale == c1.output_scale and (mp.lo, mp.hi) == (c1.lo, c1.hi)
    add = qg.layer("add").quant
    assert len(add.input_m) == 2 and add.lo == 0


def test_multipliers_match_scales(graph, samples):
    qg, _ = quantize(graph, QuantConfig(), samples)
    for layer in qg.layers:
        q = layer.quant
        if layer.weight is not None:
            real = q.input_scales[0] * q.weight_scale / q.output_scale
            np.testing.assert_allclose(q.m / 2.0 ** q.s, real, rtol=2 ** -14)
        elif layer.kind is OpKind.ADD:
            for mi, s_in in zip(q.input_m, q.input_scales):
                assert mi / 2 ** q.s[0] == pytest.approx(s_in / q.output_scale, rel=2 ** -14)
        elif layer.kind is OpKind.AVGPOOL:
            assert q.m[0] / 2 ** q.s[0] == pytest.approx(
                q.input_scales[0] / (9 * q.output_scale), rel=2 ** -14)


@pytest.mark.parametrize("bits", range(4, 17))
def test_width_sweep(graph, samples, bits):
    # 16 x 16-bit products need more than the default 32-bit accumulator.
    cfg = QuantConfig(act_bits=bits, weight_bits=bits, acc_bits=48, bias_bits=48)
    qg, _report = quantize(graph, cfg, samples)
    hi = (1 << (bits - 1)) - 1
    for layer in qg.layers:
        assert -hi - 1 <= layer.quant.lo <= layer.quant.hi <= hi
        if layer.weight is not None:
            assert np.abs(layer.quant.weight).max() <= hi
    result = run_golden(qg, samples)
    snr = golden.snr_db(_float_out(graph, samples), result.outputs["y"] * qg.tensors["y"].scale)
    # About 6 dB per bit until the float reference's own precision.
    assert snr > min(6.0 * bits - 20.0, 60.0), f"{bits} bits: {snr:.1f} dB"


@pytest.mark.parametrize("field,value", [("act_bits", 3), ("weight_bits", 17)])
def test_invalid_width(field, value):
    with pytest.raises(QuantizationError, match=rf"{field} must be between 4 and 16 bits"):
        QuantConfig(**{field: value})


def test_invalid_choices():
    with pytest.raises(QuantizationError, match=r"scale_mode must be one of per_channel, "
                                                r"per_layer, pot, not 'log'"):
        QuantConfig(scale_mode="log")
    with pytest.raises(QuantizationError, match=r"weight_scheme must be one of"):
        QuantConfig(weight_scheme="ternary")


def test_config_from_arch():
    arch = ArchConfig(act_bits=6, weight_bits=5, weight_scheme="apot", mult_bits=12)
    cfg = QuantConfig.from_arch(arch, scale_mode="pot")
    assert (cfg.act_bits, cfg.weight_bits, cfg.weight_scheme, cfg.mult_bits, cfg.scale_mode) \
        == (6, 5, "apot", 12, "pot")
    with pytest.raises(QuantizationError, match="act_bits must be between 4 and 16"):
        QuantConfig.from_arch(ArchConfig(act_bits=2, weight_bits=8, acc_bits=32))


def test_overflow_proof_refuses_narrow_accumulator(graph, samples):
    with pytest.raises(QuantizationError, match=r"Layer 'c1': .* exceeds the signed 32-bit"):
        quantize(graph, QuantConfig(act_bits=16, weight_bits=16), samples)
    with pytest.raises(QuantizationError,
                       match=r"Layer 'c1': worst-case accumulator \|sum\| = \d+ .* exceeds the "
                             r"signed 16-bit accumulator limit 32767; lower act_bits or "
                             r"weight_bits, split the layer's input channels, or widen acc_bits"):
        quantize(graph, QuantConfig(acc_bits=16), samples)
    _, report = quantize(graph, QuantConfig(), samples)
    for row in report.layers:
        if row.acc_bound is not None:
            assert row.acc_bound < 2 ** 31


def test_random_calibration_warns_and_is_recorded(graph):
    with pytest.warns(UserWarning, match=r"No calibration data given: .* seeded random"):
        qg1, report = quantize(graph, QuantConfig(), random_samples=3, seed=5)
    assert report.calibration == "random (seed 5)" and report.calibration_samples == 3
    assert any("seeded random" in w for w in report.warnings)
    with pytest.warns(UserWarning):
        qg2, _ = quantize(graph, QuantConfig(), random_samples=3, seed=5)
    assert [t.scale for t in qg1.tensors.values()] == [t.scale for t in qg2.tensors.values()]


def test_calibration_files(graph, samples, tmp_path):
    np.save(tmp_path / "cal.npy", samples)
    np.savez(tmp_path / "cal.npz", x=samples)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        q_npy, report = quantize(graph, QuantConfig(), tmp_path / "cal.npy")
        q_npz, _ = quantize(graph, QuantConfig(), str(tmp_path / "cal.npz"))
    assert report.calibration.endswith("cal.npy") and report.calibration_samples == 6
    assert q_npy.tensors["a"].scale == q_npz.tensors["a"].scale
    batches = load_calibration(graph, samples[0])
    assert batches["x"].shape == (1, 3, 16, 16)
    with pytest.raises(QuantizationError, match=r"does not exist"):
        load_calibration(graph, tmp_path / "missing.npy")
    with pytest.raises(QuantizationError, match=r"must hold whole samples of shape \(3, 16, 16\)"):
        load_calibration(graph, np.zeros((2, 5)))
    (tmp_path / "cal.txt").write_text("1")
    with pytest.raises(QuantizationError, match=r"must be .npy or .npz"):
        load_calibration(graph, tmp_path / "cal.txt")


def test_percentile_calibration_narrows_scales(graph, samples):
    q_max, _ = quantize(graph, QuantConfig(), samples)
    q_pct, _ = quantize(graph, QuantConfig(percentile=99.0), samples)
    assert q_pct.tensors["x"].scale < q_max.tensors["x"].scale


def test_report_json_and_table(graph, samples):
    _, report = quantize(graph, QuantConfig(weight_scheme="apot"), samples)
    data = json.loads(report.to_json())
    assert [row["name"] for row in data["layers"]] == [layer.name for layer in graph.layers]
    assert data["weight_scheme"] == "apot" and data["act_bits"] == 8
    table = report.table()
    for layer in graph.layers:
        assert layer.name in table
    assert report.layer("c1").per_channel


# Pruning -------------------------------------------------------------------------------

@pytest.mark.parametrize("scope", ["layer", "global"])
def test_prune_reaches_target(graph, scope):
    pruned, report = prune(graph, 0.5, scope=scope)
    assert report.achieved == pytest.approx(0.5, abs=0.01)
    assert set(report.layers) == {"c1", "pw", "fc"}, "depthwise left dense by default"
    if scope == "layer":
        for sparsity in report.layers.values():
            assert sparsity == pytest.approx(0.5, abs=0.02)
    assert np.count_nonzero(graph.layer("c1").weight == 0) == 0, "input graph untouched"
    # The smallest weights went first.
    w0, w1 = graph.layer("pw").weight, pruned.layer("pw").weight
    if scope == "layer":
        assert np.abs(w0[w1 == 0]).max() <= np.abs(w0[w1 != 0]).min()
    qg, qreport = quantize(pruned, QuantConfig(), np.zeros((1, 3, 16, 16)) + 0.5)
    for name in report.layers:
        assert qreport.layer(name).sparsity >= report.layers[name] - 1e-9
        assert np.all(qg.layer(name).quant.weight[pruned.layer(name).weight == 0] == 0)
    assert "achieved" in report.table()


def test_prune_selected_layers_and_errors(graph):
    _pruned, report = prune(graph, 0.9, layers=["dw"])
    assert list(report.layers) == ["dw"] and report.layers["dw"] >= 0.88
    with pytest.raises(QuantizationError, match=r"sparsity must be at least 0 and below 1"):
        prune(graph, 1.0)
    with pytest.raises(QuantizationError, match=r"Cannot prune layer\(s\) mp: not weighted"):
        prune(graph, 0.5, layers=["mp"])
    with pytest.raises(QuantizationError, match=r"scope must be one of layer, global"):
        prune(graph, 0.5, scope="row")
