"""Lowering passes on hand-built IR graphs, and the pipeline's per-pass validation."""

from __future__ import annotations

import numpy as np
import pytest

from compiler.ir import Activation, Graph, IRError, Layer, OpKind, Tensor, run_float
from compiler.passes.cleanup import finish_lowering, remove_identities
from compiler.passes.fold import fold_pads, fold_scales, lower_scales
from compiler.passes.fuse import absorb_flattens, fuse_activations, lower_activations
from compiler.pipeline import FRONTEND_PASSES, PASSES, PassContext, run_passes

RNG = np.random.default_rng(5)


def graph_of(layers, shapes, inputs=("x",), outputs=("y",)):
    return Graph("g", list(inputs), list(outputs),
                 {k: Tensor(k, v) for k, v in shapes.items()}, layers).validate()


def conv(name, x, y, c, m, k=3, pad=1, **kw):
    return Layer(name, OpKind.CONV if k > 1 else OpKind.POINTWISE, [x], [y], kernel=(k, k),
                 pads=(pad,) * 4, weight=RNG.standard_normal((m, c, k, k)).astype(np.float32),
                 **kw)


def scale(name, x, y, c):
    return Layer(name, OpKind.SCALE, [x], [y],
                 weight=RNG.uniform(0.5, 1.5, c).astype(np.float32),
                 bias=RNG.normal(0, 0.5, c).astype(np.float32))


def equivalent(before: Graph, after: Graph, x):
    ref = run_float(before, x)
    got = run_float(after, x)
    for name in after.outputs:
        np.testing.assert_allclose(got[name], ref[name], rtol=1e-4, atol=1e-5)


def test_fold_scales_into_conv_and_lower_the_rest():
    layers = [conv("c", "x", "a", 3, 4), scale("bn", "a", "b", 4), scale("bn2", "b", "y", 4)]
    g = graph_of(layers, {"x": (3, 6, 6), "a": (4, 6, 6), "b": (4, 6, 6), "y": (4, 6, 6)})
    before = g.copy()
    fold_scales(g).validate()
    # Both fold: the second SCALE folds into the conv that absorbed the first.
    assert [(l.name, l.kind, l.origin) for l in g.layers] == [("c", OpKind.CONV, ())]
    x = RNG.standard_normal((3, 6, 6)).astype(np.float32)
    equivalent(before, g, x)


def test_scale_not_folded_into_shared_or_activated_producer():
    layers = [conv("c", "x", "a", 3, 4), scale("bn", "a", "b", 4),
              Layer("add", OpKind.ADD, ["a", "b"], ["y"])]
    g = graph_of(layers, {"x": (3, 6, 6), "a": (4, 6, 6), "b": (4, 6, 6), "y": (4, 6, 6)})
    before = g.copy()
    fold_scales(g)
    assert [l.kind for l in g.layers] == [OpKind.CONV, OpKind.SCALE, OpKind.ADD]
    lower_scales(g).validate()
    assert g.layers[1].kind is OpKind.DEPTHWISE and g.layers[1].weight.shape == (4, 1, 1, 1)
    equivalent(before, g, RNG.standard_normal((3, 6, 6)).astype(np.float32))

    relu_conv = conv("c", "x", "a", 3, 4, activation=Activation.RELU)
    g = graph_of([relu_conv, scale("bn", "a", "y", 4)],
                 {"x": (3, 6, 6), "a": (4, 6, 6), "y": (4, 6, 6)})
    fold_scales(g)
    assert [l.kind for l in g.layers] == [OpKind.CONV, OpKind.SCALE]


def test_fold_pads_respects_kernel():
    layers = [Layer("p1", OpKind.PAD, ["x"], ["a"], pads=(1, 1, 1, 1)),
              conv("c", "a", "b", 3, 4, pad=0),
              Layer("p2", OpKind.PAD, ["b"], ["d"], pads=(2, 0, 0, 0)),
              conv("c2", "d", "y", 4, 2, pad=1)]
    g = graph_of(layers, {"x": (3, 6, 6), "a": (3, 8, 8), "b": (4, 6, 6), "d": (4, 8, 6),
                          "y": (2, 8, 6)})
    before = g.copy()
    fold_pads(g).validate()
    # 1 + 0 fits a 3x3 kernel; 2 + 1 on top does not, so p2 stays.
    assert [(l.name, l.kind, l.pads) for l in g.layers] == [
        ("c", OpKind.CONV, (1, 1, 1, 1)), ("p2", OpKind.PAD, (2, 0, 0, 0)),
        ("c2", OpKind.CONV, (1, 1, 1, 1))]
    equivalent(before, g, RNG.standard_normal((3, 6, 6)).astype(np.float32))


def test_fuse_activations_composes_and_lowers_leftovers():
    layers = [conv("c", "x", "a", 3, 4),
              Layer("r", OpKind.ACTIVATION, ["a"], ["b"], activation=Activation.RELU),
              Layer("clip", OpKind.ACTIVATION, ["b"], ["d"], activation=Activation.CLIP,
                    clip=(-1.0, 2.5)),
              Layer("cat", OpKind.CONCAT, ["d", "x"], ["e"]),
              Layer("r6", OpKind.ACTIVATION, ["e"], ["y"], activation=Activation.RELU6)]
    g = graph_of(layers, {"x": (3, 6, 6), "a": (4, 6, 6), "b": (4, 6, 6), "d": (4, 6, 6),
                          "e": (7, 6, 6), "y": (7, 6, 6)})
    before = g.copy()
    fuse_activations(g).validate()
    assert [(l.name, l.activation, l.clip) for l in g.layers] == [
        ("c", Activation.CLIP, (0.0, 2.5)), ("cat", Activation.NONE, None),
        ("r6", Activation.RELU6, None)]
    lower_activations(g).validate()
    assert g.layers[-1].kind is OpKind.DEPTHWISE and g.layers[-1].groups == 7
    equivalent(before, g, RNG.standard_normal((3, 6, 6)).astype(np.float32) * 3)


def test_disjoint_clamps_are_not_fused():
    layers = [conv("c", "x", "a", 3, 2, activation=Activation.RELU),
              Layer("neg", OpKind.ACTIVATION, ["a"], ["y"], activation=Activation.CLIP,
                    clip=(-3.0, -1.0))]
    g = graph_of(layers, {"x": (3, 4, 4), "a": (2, 4, 4), "y": (2, 4, 4)})
    fuse_activations(g)
    assert [l.kind for l in g.layers] == [OpKind.CONV, OpKind.ACTIVATION]


def test_flatten_absorbed_by_fc():
    w = RNG.standard_normal((5, 48)).astype(np.float32)
    layers = [Layer("f", OpKind.FLATTEN, ["x"], ["a"]),
              Layer("fc", OpKind.FC, ["a"], ["y"], weight=w)]
    g = graph_of(layers, {"x": (3, 4, 4), "a": (48, 1, 1), "y": (5, 1, 1)})
    before = g.copy()
    absorb_flattens(g).validate()
    assert [(l.name, l.inputs, l.origin) for l in g.layers] == [("fc", ["x"], ())]
    equivalent(before, g, RNG.standard_normal((3, 4, 4)).astype(np.float32))


def test_identities_removed_or_lowered():
    layers = [conv("c", "x", "a", 3, 4), Layer("d", OpKind.IDENTITY, ["a"], ["y"])]
    g = graph_of(layers, {"x": (3, 4, 4), "a": (4, 4, 4), "y": (4, 4, 4)})
    remove_identities(g).validate()
    assert [(l.name, l.outputs) for l in g.layers] == [("c", ["y"])]
    # A graph input wired straight to a graph output cannot be bypassed.
    g = graph_of([Layer("d", OpKind.IDENTITY, ["x"], ["y"])], {"x": (2, 3, 3), "y": (2, 3, 3)})
    remove_identities(g)
    finish_lowering(g).validate()
    assert g.lowered and g.layers[0].kind is OpKind.DEPTHWISE


def test_pipeline_lists_passes_and_validates_after_each():
    assert PASSES[:len(FRONTEND_PASSES)] == list(FRONTEND_PASSES)
    assert FRONTEND_PASSES[-1] is finish_lowering

    def break_graph(graph, ctx):
        graph.tensors["orphan"] = Tensor("orphan", (1, 1, 1))
        return graph

    g = graph_of([conv("c", "x", "y", 3, 4)], {"x": (3, 4, 4), "y": (4, 4, 4)})
    ctx = PassContext()
    with pytest.raises(IRError, match=r"after pass break_graph: Dangling tensor"):
        run_passes(g, [remove_identities, break_graph], ctx)
    assert set(ctx.timings) == {"remove_identities", "break_graph"}
