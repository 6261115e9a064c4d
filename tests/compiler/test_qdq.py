"""Import of QDQ models written by onnxruntime's quantize_static, without re-calibrating."""

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from compiler.errors import QuantizationError
from compiler.frontend.qdq import import_qdq, is_qdq_model, strip_qdq
from compiler.ir import OpKind
from compiler.runner import compare_with_onnx, compare_with_qdq, onnx_reference
from examples import models
from sim import golden

#: Fraction of output elements that must be within one LSB of onnxruntime's own
#: integer execution. The rest differ because onnxruntime rounds twice around a
#: fused activation (conv output, then the activation's own QuantizeLinear) where
#: the accelerator requantizes once, and those differences propagate; measured on
#: 64 held-out inputs: 99.7% (MobileNetV2), 86.9% (ResNet), 98.8% (VGG), 100% (DPD).
MIN_WITHIN_ONE_LSB = 0.85


class _Reader(CalibrationDataReader):
    def __init__(self, name, samples):
        self._it = iter([{name: x[None]} for x in samples])

    def get_next(self):
        return next(self._it, None)


def _samples(model, n=16, seed=0):
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    return np.random.default_rng(seed).normal(size=(n, *dims[1:])).astype(np.float32)


def make_qdq(model, path, samples, *, symmetric=True, activation_type=QuantType.QInt8,
             per_channel=True):
    """QDQ model from a float one, the way a user would produce it."""
    float_path = path.with_suffix(".float.onnx")
    pre_path = path.with_suffix(".pre.onnx")
    onnx.save(model, float_path)
    quant_pre_process(str(float_path), str(pre_path), skip_symbolic_shape=True)
    quantize_static(str(pre_path), str(path), _Reader(model.graph.input[0].name, samples),
                    quant_format=QuantFormat.QDQ, activation_type=activation_type,
                    weight_type=QuantType.QInt8, per_channel=per_channel,
                    extra_options={"ActivationSymmetric": symmetric,
                                   "WeightSymmetric": True})
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("qdq")
    out = {}
    for name in ("mobilenet_v2_small", "resnet_small", "vgg_small", "dpd_cnn"):
        model = models.EXAMPLES[name]()
        samples = _samples(model)
        out[name] = (model, make_qdq(model, root / f"{name}.onnx", samples), samples)
    return out


@pytest.mark.parametrize("name", ["mobilenet_v2_small", "resnet_small", "vgg_small", "dpd_cnn"])
def test_qdq_golden_matches_onnxruntime_within_one_lsb(built, name):
    model, path, samples = built[name]
    imported = import_qdq(path)
    figures = compare_with_qdq(imported.graph, path, _samples(model, 64, seed=1))
    (_out, fig), = figures.items()
    print(f"{name}: {100 * fig['within_1_lsb']:.1f}% of outputs within 1 LSB of onnxruntime "
          f"QDQ ({100 * fig['exact']:.1f}% exact, max {fig['max_lsb']} LSB)")
    assert fig["within_1_lsb"] >= MIN_WITHIN_ONE_LSB
    assert fig["snr_db"] > 30.0
    report = compare_with_onnx(imported.graph, model, samples, imported.report)
    assert report.scale_mode == "qdq" and report.calibration_samples == 0
    assert report.min_final_snr_db > 20.0


def test_qdq_per_tensor_weights(built, tmp_path):
    model, _, samples = built["resnet_small"]
    path = make_qdq(model, tmp_path / "per_tensor.onnx", samples, per_channel=False)
    imported = import_qdq(path)
    for layer in imported.graph.layers:
        if layer.quant.weight_scale is not None:
            assert np.all(layer.quant.weight_scale == layer.quant.weight_scale[0])
    # Held-out inputs, enough of them that the fraction rests on 640 logits.
    (fig,) = compare_with_qdq(imported.graph, path, _samples(model, 64, seed=1)).values()
    print(f"per-tensor weights: {100 * fig['within_1_lsb']:.1f}% within 1 LSB")
    assert fig["within_1_lsb"] >= MIN_WITHIN_ONE_LSB


def test_qdq_scales_and_weights_come_from_the_model(built):
    _, path, _ = built["mobilenet_v2_small"]
    qdq = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in qdq.graph.initializer}
    imported = import_qdq(qdq)
    graph = imported.graph
    assert graph.tensors["input"].scale == pytest.approx(float(inits["input_scale"]))
    integer_weights = [v for k, v in inits.items() if k.endswith("weight_quantized")]
    for layer in graph.layers:
        if layer.kind in (OpKind.CONV, OpKind.DEPTHWISE, OpKind.POINTWISE, OpKind.FC):
            q = layer.quant
            assert any(w.shape == q.weight.shape and np.array_equal(w, q.weight)
                       for w in integer_weights), layer.name
            np.testing.assert_allclose(q.m / 2.0 ** q.s,
                                       q.input_scales[0] * q.weight_scale / q.output_scale,
                                       rtol=2 ** -14)
    assert imported.report.warnings == []


def test_strip_qdq_gives_the_float_model(built):
    model, path, samples = built["resnet_small"]
    qdq = onnx.load(str(path))
    assert is_qdq_model(qdq)
    stripped, params = strip_qdq(qdq)
    assert not is_qdq_model(stripped)
    onnx.checker.check_model(stripped)
    assert "input" in params.act_scales and params.weights
    from compiler.pipeline import import_model
    graph = import_model(stripped)
    a = onnx_reference(stripped, graph, samples[:4], tensors=graph.outputs)
    b = onnx_reference(model, graph, samples[:4], tensors=graph.outputs)
    out = graph.outputs[0]
    # Only the weights' rounding to int8 separates the two.
    assert golden.snr_db(b[out], a[out]) > 25.0


def test_asymmetric_activations_are_refused(tmp_path):
    model = models.dpd_cnn()
    samples = _samples(model, 4)
    path = make_qdq(model, tmp_path / "asym.onnx", samples, symmetric=False)
    with pytest.raises(QuantizationError,
                       match=r"Tensor '\w+' has zero point \[-?\d+\] but ConvForge's numerics "
                             r"are symmetric \(zero point 0\): re-quantize with "
                             r"extra_options=\{'ActivationSymmetric': True"):
        import_qdq(path)


def test_unsigned_activations_are_refused(tmp_path):
    model = models.dpd_cnn()
    path = make_qdq(model, tmp_path / "u8.onnx", _samples(model, 4),
                    activation_type=QuantType.QUInt8)
    with pytest.raises(QuantizationError, match=r"Tensor 'iq' is quantized to UINT8; ConvForge "
                                                r"needs signed symmetric integers"):
        import_qdq(path)


def test_float_model_is_not_qdq():
    with pytest.raises(QuantizationError, match=r"not a QDQ model"):
        import_qdq(models.dpd_cnn())
