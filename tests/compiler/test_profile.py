"""Per-layer profile: MACs, parameters, bytes, intensity, engine class; the CLI."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from compiler.cli import main as cli_main
from compiler.ir import Graph, Layer, OpKind, Tensor
from compiler.pipeline import import_model
from compiler.profile import EngineClass, engine_class, profile_graph
from examples.models import mobilenet_v2, mobilenet_v2_small


def small_graph():
    w = np.zeros((8, 3, 3, 3), np.float32)
    dw = np.zeros((8, 1, 3, 3), np.float32)
    fc = np.zeros((10, 8 * 4 * 4), np.float32)
    layers = [
        Layer("conv", OpKind.CONV, ["x"], ["a"], kernel=(3, 3), stride=(2, 2),
              pads=(1, 1, 1, 1), weight=w, bias=np.zeros(8, np.float32)),
        Layer("dw", OpKind.DEPTHWISE, ["a"], ["b"], kernel=(3, 3), pads=(1, 1, 1, 1), groups=8,
              weight=dw),
        Layer("add", OpKind.ADD, ["a", "b"], ["c"]),
        Layer("pool", OpKind.MAXPOOL, ["c"], ["d"], kernel=(2, 2), stride=(2, 2)),
        Layer("fc", OpKind.FC, ["d"], ["y"], weight=fc, bias=np.zeros(10, np.float32)),
    ]
    shapes = {"x": (3, 16, 16), "a": (8, 8, 8), "b": (8, 8, 8), "c": (8, 8, 8),
              "d": (8, 4, 4), "y": (10, 1, 1)}
    return Graph("small", ["x"], ["y"], {k: Tensor(k, v) for k, v in shapes.items()},
                 layers).validate()


def test_figures_per_layer():
    prof = profile_graph(small_graph(), act_bits=8, weight_bits=4, bias_bits=32)
    conv, dw, add, pool, fc = prof.layers
    assert conv.macs == 8 * 8 * 8 * 3 * 9
    assert conv.params == 8 * 27 + 8
    assert conv.fmap_bytes == 3 * 256 + 8 * 64
    assert conv.weight_bytes == 8 * 27 // 2 + 8 * 4
    assert conv.intensity == pytest.approx(conv.macs / (conv.fmap_bytes + conv.weight_bytes))
    assert (dw.macs, dw.params, dw.engine) == (8 * 64 * 9, 72, "depthwise")
    assert (add.macs, add.ops, add.fmap_bytes, add.engine) == (0, 512, 3 * 512, "add")
    assert (pool.ops, pool.engine, pool.kernel, pool.stride) == (128 * 4, "pool", (2, 2), (2, 2))
    assert (fc.macs, fc.params, fc.engine) == (1280, 1290, "fc")
    assert prof.total_macs == conv.macs + dw.macs + fc.macs
    assert prof.by_engine()["conv"] == {"layers": 1, "macs": conv.macs}


def test_activation_width_scales_bytes():
    p8 = profile_graph(small_graph(), act_bits=8)
    p16 = profile_graph(small_graph(), act_bits=16)
    assert [b.fmap_bytes for b in p16.layers] == [2 * a.fmap_bytes for a in p8.layers]


def test_engine_classes():
    assert {k.value for k in EngineClass} >= {"conv", "pointwise", "depthwise", "fc", "pool",
                                              "add"}
    graph = import_model(mobilenet_v2_small())
    engines = {p.name: p.engine for p in profile_graph(graph).layers}
    assert engines["features.0.conv"] == "conv"
    assert engines["features.2.expand"] == "pointwise"
    assert engines["features.2.dw"] == "depthwise"
    assert engines["features.1.add"] == "add"
    assert engines["pool"] == "pool"
    assert engines["classifier.fc"] == "fc"
    unlowered = Layer("s", OpKind.SCALE, ["x"], ["y"])
    with pytest.raises(ValueError, match=r"Layer 's' of kind scale maps onto no engine; lower "
                                         r"the graph first"):
        engine_class(unlowered)


def test_width_validation():
    with pytest.raises(TypeError, match=r"act_bits must be an integer, not 8.0"):
        profile_graph(small_graph(), act_bits=8.0)
    with pytest.raises(ValueError, match=r"weight_bits must be between 1 and 64, not 0"):
        profile_graph(small_graph(), weight_bits=0)


def test_mobilenet_v2_224_totals():
    prof = profile_graph(import_model(mobilenet_v2(224, 1.0)))
    # The published MobileNetV2-1.0-224 figures: about 300 M MACs, 3.5 M parameters.
    assert 295e6 < prof.total_macs < 305e6
    assert 3.4e6 < prof.total_params < 3.6e6


def test_cli_profile_writes_json(tmp_path, capsys):
    model = tmp_path / "m.onnx"
    onnx.save(mobilenet_v2_small(), str(model))
    out = tmp_path / "sub" / "profile.json"
    assert cli_main(["profile", str(model), "--json", str(out), "--act-bits", "16"]) == 0
    text = capsys.readouterr().out
    assert "features.2.dw" in text and "total" in text and "host: softmax" in text
    data = json.loads(out.read_text())
    assert data["act_bits"] == 16 and data["totals"]["layers"] == 17
    first = data["layers"][0]
    assert set(first) >= {"name", "kind", "engine", "input_shapes", "output_shape", "kernel",
                          "stride", "macs", "params", "fmap_bytes", "intensity"}
    assert data["totals"]["macs"] == sum(layer["macs"] for layer in data["layers"])


def test_cli_profile_unsupported_model_fails(tmp_path, capsys):
    from examples.models import unsupported_model
    model = tmp_path / "bad.onnx"
    onnx.save(unsupported_model(), str(model))
    assert cli_main(["profile", str(model)]) == 2
    assert "lrn (LRN)" in capsys.readouterr().err


def test_cli_profile_user_errors(tmp_path, capsys):
    model = tmp_path / "m.onnx"
    onnx.save(mobilenet_v2_small(), str(model))
    assert cli_main(["profile", str(model), "--act-bits", "99"]) == 2
    assert "act_bits must be between 1 and 64, not 99" in capsys.readouterr().err
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert cli_main(["profile", str(model), "--json", str(blocker / "p.json")]) == 2
    assert f"--json {blocker / 'p.json'}: cannot write it" in capsys.readouterr().err
