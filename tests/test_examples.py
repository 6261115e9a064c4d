"""The example models: build, check, run in onnxruntime, import, match in float."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from compiler.errors import UnsupportedModelError
from compiler.ir import OpKind
from compiler.pipeline import import_model
from examples import build_models, models
from sim import golden
from tests.compiler.test_frontend import assert_float_matches, onnx_outputs

ROOT = Path(__file__).resolve().parent.parent

SMALL = {
    "mobilenet_v2_small": models.mobilenet_v2_small,
    "resnet_small": models.resnet,
    "vgg_small": models.vgg,
    "dpd_cnn": models.dpd_cnn,
}


def run_onnxruntime(model, seed=0):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    x = np.random.default_rng(seed).standard_normal(inp.shape).astype(np.float32)
    return sess.run(None, {inp.name: x})


@pytest.mark.parametrize("name", sorted(SMALL))
def test_example_builds_runs_imports_and_matches(name):
    model = SMALL[name]()
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == models.DEFAULT_OPSET
    (y,) = run_onnxruntime(model)
    assert np.all(np.isfinite(y))
    graph = import_model(model)
    assert graph.lowered
    assert_float_matches(model, graph)


@pytest.mark.parametrize("name", ["mobilenet_v2_small", "resnet_small", "vgg_small"])
def test_batchnorm_is_present_and_folded(name):
    model = SMALL[name]()
    ops = Counter(n.op_type for n in model.graph.node)
    assert ops["BatchNormalization"] >= 3
    graph = import_model(model)
    weighted = [l for l in graph.layers if l.kind in (OpKind.CONV, OpKind.POINTWISE,
                                                      OpKind.DEPTHWISE)]
    assert len(weighted) == ops["Conv"]
    assert all(l.bias is not None for l in weighted)


@pytest.mark.parametrize("opset", [9, 11])
def test_older_opsets(opset):
    for builder in (models.mobilenet_v2_small, models.resnet):
        model = builder(opset=opset)
        onnx.checker.check_model(model)
        clips = [n for n in model.graph.node if n.op_type == "Clip"]
        if clips and opset < 11:
            assert {a.name for a in clips[0].attribute} == {"min", "max"}
        graph = import_model(model)
        assert_float_matches(model, graph)


def test_builders_are_seeded():
    a = models.mobilenet_v2_small(seed=3).SerializeToString()
    assert a == models.mobilenet_v2_small(seed=3).SerializeToString()
    assert a != models.mobilenet_v2_small(seed=4).SerializeToString()


def test_activations_keep_a_realistic_range():
    # BN statistics come from the data, so deep stacks neither explode nor vanish.
    for builder in (models.resnet, models.vgg):
        (y,) = run_onnxruntime(builder())
        assert 0.05 < float(np.std(y)) < 20.0


def _fresh_inputs(model, n, seed):
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    return np.random.default_rng(seed).standard_normal([n] + shape).astype(np.float32)


@pytest.mark.parametrize("name", ["mobilenet_v2_small", "resnet_small", "vgg_small"])
def test_batchnorm_statistics_match_the_data(name):
    """Running statistics are those of each BN's actual input, as after training.

    Measured on inputs the builder never saw: every channel normalized by its
    running statistics has mean ~0 and standard deviation ~1; units in front of
    a rectifier are mostly, not all, active; the logits have unit spread.
    """
    model = SMALL[name]()
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    bns = [n for n in model.graph.node if n.op_type == "BatchNormalization"]
    consumers = {i: n.op_type for n in model.graph.node for i in n.input}
    logits = [n for n in model.graph.node if n.op_type == "Gemm"][-1].output[0]
    names = [n.input[0] for n in bns] + [n.output[0] for n in bns] + [logits]
    runs = [onnx_outputs(model, names, x) for x in _fresh_inputs(model, 8, seed=1)]
    values = {k: np.concatenate([r[k] for r in runs]) for k in names}
    active, gammas = [], []
    for bn in bns:
        mean, var = inits[bn.input[3]], inits[bn.input[4]]
        z = (values[bn.input[0]] - mean[:, None, None]) / np.sqrt(var[:, None, None])
        z_mean, z_std = z.mean(axis=(0, 2, 3)), z.std(axis=(0, 2, 3))
        assert np.sqrt(np.mean(z_mean ** 2)) < 0.35, bn.name
        assert 0.85 < float(np.median(z_std)) < 1.15, bn.name
        gammas.append(inits[bn.input[1]])
        if consumers[bn.output[0]] in ("Relu", "Clip"):
            active.append(float(np.mean(values[bn.output[0]] > 0)))
    gammas = np.concatenate(gammas)
    assert np.all(gammas > 0) and 0.8 < float(np.median(gammas)) < 1.2
    assert 0.6 < float(np.mean(active)) < 0.8
    assert 0.5 < float(np.std(values[logits])) < 2.0


def _perturbation_snr(model, xs, db=40.0, seed=2):
    """SNR of the last weighted layer (the logits, before any softmax) when the
    inputs carry white noise ``db`` below them."""
    noise = np.random.default_rng(seed).standard_normal(xs.shape).astype(np.float32)
    noise *= np.sqrt(np.mean(xs ** 2) / np.mean(noise ** 2)) * 10 ** (-db / 20)
    out = [n for n in model.graph.node if n.op_type in ("Conv", "Gemm")][-1].output[0]
    clean = [onnx_outputs(model, [out], x)[out] for x in xs]
    noisy = [onnx_outputs(model, [out], x)[out] for x in xs + noise]
    return golden.snr_db(np.stack(clean), np.stack(noisy))


@pytest.mark.parametrize("name", sorted(SMALL))
def test_examples_are_not_chaotic(name):
    # Trained networks pass a small input perturbation on about as small; random
    # ones with mismatched normalization amplify it layer after layer.
    model = SMALL[name]()
    assert _perturbation_snr(model, _fresh_inputs(model, 4, seed=3)) > 35.0


@pytest.fixture(scope="module")
def mobilenet_v2_224():
    return models.mobilenet_v2(224, 1.0)


def test_mobilenet_v2_224_is_not_chaotic(mobilenet_v2_224):
    assert _perturbation_snr(mobilenet_v2_224, _fresh_inputs(mobilenet_v2_224, 2, seed=3)) > 32.0


def test_mobilenet_v2_224_topology(mobilenet_v2_224):
    model = mobilenet_v2_224
    graph = import_model(model)
    kinds = Counter(l.kind for l in graph.layers)
    assert kinds == {OpKind.CONV: 1, OpKind.DEPTHWISE: 17, OpKind.POINTWISE: 34,
                     OpKind.ADD: 10, OpKind.GAP: 1, OpKind.FC: 1}
    assert graph.shape("input") == (3, 224, 224)
    assert graph.shape(graph.outputs[0]) == (1000, 1, 1)
    assert [h.op_type for h in graph.host_ops] == ["Softmax"]
    strided = [l.name for l in graph.layers if l.kind is OpKind.DEPTHWISE and l.stride == (2, 2)]
    assert len(strided) == 4
    assert graph.shape(graph.layers[-3].output) == (1280, 7, 7)


def test_mobilenet_width_multiplier():
    graph = import_model(models.mobilenet_v2(32, 0.5, 10, blocks=((1, 16, 1, 1), (6, 24, 1, 2))))
    assert graph.shape(graph.layers[0].output) == (16, 16, 16)


@pytest.mark.parametrize("channels,layers,kernel", [(4, 2, 3), (8, 3, 7), (2, 2, 5)])
def test_dpd_cnn_parameters(channels, layers, kernel):
    model = models.dpd_cnn(channels, layers, kernel, length=48)
    graph = import_model(model)
    assert [l.kind for l in graph.layers] == [OpKind.CONV] * (layers + 1)
    assert all(l.kernel == (1, kernel) for l in graph.layers)
    assert graph.shape("iq") == (2, 1, 48) and graph.shape(graph.outputs[0]) == (2, 1, 48)
    assert [l.activation.value for l in graph.layers] == ["relu"] * layers + ["none"]
    assert_float_matches(model, graph)


def test_builder_argument_errors():
    with pytest.raises(ValueError, match=r"kernel_size must be one of 1, 3, 5, 7, not 11"):
        models.dpd_cnn(kernel_size=11)
    with pytest.raises(TypeError, match=r"hidden_layers must be an integer, not 2.5"):
        models.dpd_cnn(hidden_layers=2.5)
    with pytest.raises(ValueError, match=r"width must be a positive number, not 0"):
        models.mobilenet_v2(32, 0)
    with pytest.raises(ValueError, match=r"opset must be an integer from 9 to \d+, not 8"):
        models.vgg(opset=8)


def test_unsupported_example_is_refused():
    model = models.unsupported_model()
    onnx.checker.check_model(model)
    with pytest.raises(UnsupportedModelError) as info:
        import_model(model)
    assert [i.op_type for i in info.value.issues] == ["LRN", "Elu"]


def test_build_models_script(tmp_path):
    paths = build_models.build(tmp_path, ["dpd_cnn", "vgg_small"])
    assert [p.name for p in paths] == ["dpd_cnn.onnx", "vgg_small.onnx"]
    for p in paths:
        onnx.checker.check_model(str(p))
    with pytest.raises(ValueError, match=r"Unknown example\(s\) nope"):
        build_models.build(tmp_path, ["nope"])
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "build_models.py"),
                          str(tmp_path / "cli"), "--only", "dpd_cnn"],
                         capture_output=True, text=True, check=True)
    assert "dpd_cnn.onnx" in out.stdout and (tmp_path / "cli" / "dpd_cnn.onnx").exists()
