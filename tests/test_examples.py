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

from compiler.errors import UnsupportedModelError
from compiler.ir import OpKind
from compiler.pipeline import import_model
from examples import build_models, models
from tests.compiler.test_frontend import assert_float_matches

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


def test_mobilenet_v2_224_topology():
    model = models.mobilenet_v2(224, 1.0)
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
    assert len(info.value.issues) == 6


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
