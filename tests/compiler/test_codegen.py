"""Code generation + ISS == golden network runner, bit for bit, on every example model."""

import dataclasses
import warnings
from functools import cache

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.codegen.program import Scheduler, generate, plan_memory
from compiler.compile import ddr_image
from compiler.errors import MappingError
from compiler.mapping.tiling import (
    WindowOp,
    col_tiles,
    distinct_splits,
    max_col_tile,
    plan_window,
    row_tiles,
)
from compiler.passes.quantize import QuantConfig, quantize
from compiler.pipeline import import_model
from compiler.runner import run_golden_int
from examples import models
from hw.arch import ArchConfig
from hw.isa import Engine, Opcode, Pool, Unit, build_program
from sim.golden import qrange
from sim.iss import ISS, decode_activations, encode_activations

ARCH = ArchConfig(conv_k_max=5, max_width=80)


def branchy_model(seed=0):
    """Concat of two conv branches, an explicit zero Pad before a max pool, avg pool, FC."""
    rng = np.random.default_rng(seed)
    inits = []

    def w(name, shape):
        fan = int(np.prod(shape[1:]))
        value = rng.normal(0, 1, shape) * np.sqrt(2 / fan)
        inits.append(numpy_helper.from_array(value.astype(np.float32), name))
        return name

    nodes = [
        helper.make_node("Conv", ["x", w("w1", (6, 3, 3, 3)), w("b1", (6,))], ["a"],
                         name="conv_a", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["ar"], name="relu_a"),
        helper.make_node("Conv", ["x", w("w2", (5, 3, 1, 1)), w("b2", (5,))], ["b"],
                         name="conv_b"),
        helper.make_node("Concat", ["ar", "b"], ["c"], name="concat", axis=1),
        helper.make_node("Pad", ["c", "pads"], ["p"], name="pad", mode="constant"),
        helper.make_node("MaxPool", ["p"], ["mp"], name="pool", kernel_shape=[3, 3],
                         strides=[2, 2]),
        helper.make_node("AveragePool", ["mp"], ["ap"], name="avg", kernel_shape=[2, 2],
                         strides=[1, 1]),
        helper.make_node("Flatten", ["ap"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", w("wf", (7, 11 * 4 * 4)), w("bf", (7,))], ["y"],
                         name="fc", transB=1),
    ]
    inits.append(numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads"))
    graph = helper.make_graph(
        nodes, "branchy", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 9, 9])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 7])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


BUILDERS = {
    "mobilenet_v2_small": models.mobilenet_v2_small,
    "vgg": models.vgg,
    "dpd_cnn": models.dpd_cnn,
    "resnet": models.resnet,
    "branchy": branchy_model,
}


@cache
def float_graph(name):
    return import_model(BUILDERS[name]())


def quantized(name, arch, **overrides):
    """The quantized graph (cached per widths: buffer sizes do not change quantization)."""
    return _quantized(name, QuantConfig.from_arch(arch, **overrides))


@cache
def _quantized(name, config):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph, _ = quantize(float_graph(name), config, random_samples=2)
    return graph


def run_iss(graph, arch, program, x):
    blob = build_program(arch.config_hash, program.instructions,
                         weights_offset=program.weights_offset, weights=program.weights,
                         ddr_bytes=program.ddr_bytes)
    ddr = ddr_image(blob, program.weights, program.weights_offset, program.ddr_bytes)
    spec = program.tensors[graph.inputs[0]]
    ddr[spec["offset"]:spec["offset"] + spec["bytes"]] = encode_activations(x, arch.act_bits)
    result = ISS(arch).run(blob, ddr)
    outs = {}
    for name in graph.outputs:
        spec = program.tensors[name]
        raw = ddr[spec["offset"]:spec["offset"] + spec["bytes"]]
        outs[name] = decode_activations(raw, arch.act_bits).reshape((1,) + graph.shape(name))
    return outs, result


def check_bit_exact(graph, arch, seed=0):
    program = generate(graph, arch)
    rng = np.random.default_rng(seed)
    lo, hi = qrange(arch.act_bits)
    x = rng.integers(lo, hi + 1, size=(1,) + graph.shape(graph.inputs[0]))
    got, result = run_iss(graph, arch, program, x)
    want = run_golden_int(graph, {graph.inputs[0]: x}).outputs
    for name in graph.outputs:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    assert result.cycles == program.cycles
    return program


@pytest.mark.parametrize("name", list(BUILDERS))
def test_example_model_iss_equals_golden(name):
    program = check_bit_exact(quantized(name, ARCH), ARCH)
    kinds = {r.kind for r in program.layers}
    assert sum(r.cycles for r in program.layers) <= program.cycles
    if name == "branchy":
        assert {"concat", "pad", "maxpool", "avgpool", "fc"} <= kinds
    if name == "vgg":  # 2x2 max pools are fused into the convolutions before them
        assert any(r.fused for r in program.layers) and "maxpool" not in kinds


@pytest.mark.parametrize("trial", range(3))
def test_tight_buffers_force_many_tiles(trial):
    """Small buffers force row tiles with halos, channel tiles, both loop orders."""
    rng = np.random.default_rng(trial)
    arch = ArchConfig(
        conv_k_max=5, max_width=80, max_height=int(rng.choice([8, 12])),
        ibuf_bytes=int(rng.choice([2048, 4096])), obuf_bytes=int(rng.choice([512, 1024])),
        wbuf_bytes=int(rng.choice([1024, 2048])), pbuf_entries=int(rng.choice([8, 16])),
        conv_pi=int(rng.choice([1, 3])), axi_data_bits=int(rng.choice([32, 128])))
    for name in ("mobilenet_v2_small", "branchy", "resnet"):
        graph = quantized(name, arch)
        program = check_bit_exact(graph, arch, seed=trial)
        assert sum(r.tiles for r in program.layers) > (2 if name != "branchy" else 1) * \
            len(program.layers)


@pytest.mark.parametrize("name,max_width", [("dpd_cnn", 16), ("mobilenet_v2_small", 10),
                                            ("vgg", 12)])
def test_rows_wider_than_line_buffers_are_column_tiled(name, max_width):
    arch = ARCH.replace(max_width=max_width)
    program = check_bit_exact(quantized(name, arch), arch)
    computes = [i for i in program.instructions if i.opcode is Opcode.COMPUTE]
    assert any(i.pad_left == 0 and i.pad_right == 0 and i.k_w > 1 for i in computes)
    for i in computes:
        if i.engine is not Engine.POINTWISE:
            assert i.in_w + i.pad_left + i.pad_right <= max_width


@pytest.mark.parametrize("scheme,mode", [("pot", "pot"), ("apot", "per_layer")])
def test_power_of_two_weights(scheme, mode):
    arch = ARCH.replace(weight_scheme=scheme)
    check_bit_exact(quantized("mobilenet_v2_small", arch, scale_mode=mode), arch)


def test_sixteen_bit_activations():
    arch = ARCH.replace(act_bits=12, acc_bits=40)
    check_bit_exact(quantized("dpd_cnn", arch), arch)


def test_mapping_errors_name_layer_resource_and_fix():
    graph = quantized("dpd_cnn", ARCH)
    with pytest.raises(MappingError, match=r"Layer 'conv0' \(conv\) cannot be mapped: one output "
                                           r"column needs a 5-column window but the line buffers "
                                           r"hold max_width=4; increase max_width to at least 5"):
        generate(graph, ARCH.replace(max_width=4))
    graph = quantized("vgg", ARCH)
    with pytest.raises(MappingError, match=r"Layer 'features.1.0.conv' \(conv\) cannot be tiled: "
                                           r"the input of one output row \(16 channels x 4 rows "
                                           r"x 16 columns = 1024 bytes\) does not fit IBUF \(512 "
                                           r"bytes\); increase ibuf_bytes to at least 1024"):
        generate(graph, ARCH.replace(ibuf_bytes=512))


def test_dimensions_beyond_the_instruction_fields_are_refused():
    nodes = [helper.make_node("MaxPool", ["x"], ["y"], name="wide_pool", kernel_shape=[1, 1],
                              strides=[1, 300])]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 1, 600])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 1, 2])
    graph = helper.make_graph(nodes, "wide", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qgraph, _ = quantize(import_model(model), arch=ARCH)
    with pytest.raises(MappingError, match=r"Layer 'wide_pool' has a dimension too large for the "
                                           r"COMPUTE instruction fields \(stride 300 > 255\)"):
        generate(qgraph, ARCH)


def _model(name, nodes, x_shape, outputs, inits=(), seed=0):
    """An ONNX model of ``nodes``; ``outputs`` maps output names to shapes. Initializers
    named in ``inits`` (name -> shape) are drawn at random."""
    rng = np.random.default_rng(seed)
    tensors = [numpy_helper.from_array(
        (rng.normal(0, 1, shape) / np.sqrt(max(1, int(np.prod(shape[1:]))))).astype(np.float32),
        w) for w, shape in dict(inits).items()]
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info(y, TensorProto.FLOAT, shape)
         for y, shape in outputs.items()], tensors)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _compile_model(model, arch):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph, _ = quantize(import_model(model), QuantConfig.from_arch(arch), random_samples=2)
    return graph


def _computes(program):
    return [(program.layer_of[k], i) for k, i in enumerate(program.instructions)
            if i.opcode is Opcode.COMPUTE]


def test_only_2x2_max_pools_after_conv_engine_layers_are_fused():
    """Conv 3x3 + 2x2 pool: fused. Depthwise + 2x2, 1x1 conv (pointwise engine) + 2x2 and
    conv + 3x3 stride-3 pools: separate POOL instructions."""
    nodes = [
        helper.make_node("Conv", ["x", "wa"], ["a"], name="conv_a", pads=[1, 1, 1, 1]),
        helper.make_node("MaxPool", ["a"], ["pa"], name="pool_a", kernel_shape=[2, 2],
                         strides=[2, 2]),
        helper.make_node("Conv", ["pa", "wb"], ["b"], name="dw_b", pads=[1, 1, 1, 1], group=6),
        helper.make_node("MaxPool", ["b"], ["pb"], name="pool_b", kernel_shape=[2, 2],
                         strides=[2, 2]),
        helper.make_node("Conv", ["pb", "wc"], ["c"], name="pw_c"),
        helper.make_node("MaxPool", ["c"], ["y"], name="pool_c", kernel_shape=[2, 2],
                         strides=[2, 2]),
        helper.make_node("Conv", ["x", "wd"], ["d"], name="conv_d", pads=[1, 1, 1, 1]),
        helper.make_node("MaxPool", ["d"], ["z"], name="pool_d", kernel_shape=[3, 3],
                         strides=[3, 3]),
    ]
    model = _model("pools", nodes, [1, 4, 12, 12], {"y": [1, 8, 1, 1], "z": [1, 4, 4, 4]},
                   {"wa": (6, 4, 3, 3), "wb": (6, 1, 3, 3), "wc": (8, 6, 1, 1),
                    "wd": (4, 4, 3, 3)})
    program = check_bit_exact(_compile_model(model, ARCH), ARCH)
    assert {r.name: r.fused for r in program.layers if r.fused} == {"conv_a": ["pool_a"]}
    assert {r.name for r in program.layers if r.kind == "maxpool"} == {"pool_b", "pool_c",
                                                                       "pool_d"}
    for layer, i in _computes(program):
        fused = i.engine is not Engine.POOL and i.pool is Pool.MAX
        assert fused == (layer == "conv_a"), layer
        if fused:
            assert i.engine is Engine.CONV and (i.fpool_h, i.fpool_w) == (2, 2)


@pytest.mark.parametrize("max_width", [80, 12])
def test_single_row_and_column_convolutions_take_the_other_axis_stride(max_width):
    """A 1-D (1x5, stride (1, 2)) and a column (5x1, stride (2, 1)) convolution have one
    output row (column) from a k_h-high (k_w-wide) frame: emitted with equal strides 2."""
    arch = ARCH.replace(max_width=max_width)
    row = _model("row", [
        helper.make_node("Conv", ["x", "w1", "b1"], ["h"], name="conv1d", kernel_shape=[5],
                         strides=[2], pads=[2, 2]),
        helper.make_node("Relu", ["h"], ["hr"], name="relu"),
        helper.make_node("Conv", ["hr", "w2"], ["y"], name="dw1d", kernel_shape=[3],
                         strides=[2], pads=[1, 1], group=3),
    ], [1, 2, 40], {"y": [1, 3, 10]}, {"w1": (3, 2, 5), "b1": (3,), "w2": (3, 1, 3)})
    col = _model("col", [
        helper.make_node("Conv", ["x", "w1"], ["y"], name="conv_col", kernel_shape=[5, 1],
                         strides=[2, 1], pads=[2, 0, 2, 0]),
    ], [1, 2, 24, 1], {"y": [1, 3, 12, 1]}, {"w1": (3, 2, 5, 1)})
    programs = [check_bit_exact(_compile_model(model, arch), arch) for model in (row, col)]
    for program in programs:
        computes = _computes(program)
        assert computes
        for _, i in computes:
            assert (i.stride_h, i.stride_w) == (2, 2)
            assert i.out_h == 1 or i.out_w == 1
    # with 12-column line buffers the 1-D layers are column tiled (frame 4 * 2 + 3 + 1 wide)
    assert (programs[0].layers[0].col_tile < 20) == (max_width == 12)


def test_strides_the_engines_cannot_run_are_refused_by_the_tiler():
    # a model layer with such strides is rewritten (polyphase) and runs bit for bit
    model = _model("strided", [
        helper.make_node("Conv", ["x", "w"], ["y"], name="conv_s", pads=[1, 1, 1, 1],
                         strides=[1, 2]),
    ], [1, 2, 8, 8], {"y": [1, 3, 8, 4]}, {"w": (3, 2, 3, 3)})
    graph = _compile_model(model, ARCH)
    program = check_bit_exact(graph, ARCH)
    assert "polyphase" in program.layers[0].engine
    # equal strides other than 1 and 2 are refused by the tiler itself
    op = WindowOp("dw_s", Engine.DEPTHWISE, 4, 9, 9, 4, (3, 3), (3, 3), (0, 0, 0, 0),
                  channelwise=True, w_per_out=9)
    with pytest.raises(MappingError, match=r"Layer 'dw_s' \(depthwise\) has stride \(3, 3\)"):
        plan_window(op, ARCH)
    # ... unless the layer has a single output: any stride gives the same windows
    plan_window(dataclasses.replace(op, in_h=3, in_w=3), ARCH)


def test_engine_frame_bounds_the_row_tiles():
    """A 1x5 kernel runs as 5x5: its one-row tiles stream a 5-row frame."""
    graph = quantized("dpd_cnn", ARCH)
    with pytest.raises(MappingError, match=r"Layer 'conv0' \(conv\) cannot be tiled: one output "
                                           r"row needs a 5-row window \(the 1x5 kernel runs as "
                                           r"5x5 on the engine\) but max_height=4; increase "
                                           r"max_height to at least 5"):
        generate(graph, ARCH.replace(max_height=4))
    arch = ARCH.replace(max_height=5, max_width=12)
    program = check_bit_exact(quantized("dpd_cnn", arch), arch)
    for _, i in _computes(program):
        assert i.in_h + i.pad_top + i.pad_bottom + 5 - i.k_h <= 5
        assert i.in_w + i.pad_left + i.pad_right + 5 - i.k_w <= 12
    # an even kernel: 2x2 runs as 3x3, one more row and column than the padded tile
    op = WindowOp("even", Engine.CONV, 2, 20, 20, 2, (2, 2), (1, 1), (0, 0, 0, 0))
    arch = ArchConfig(max_width=8, max_height=6)
    tiling = plan_window(op, arch)
    assert op.frame_rows(tiling.row_tile) <= 6 < op.frame_rows(tiling.row_tile + 1)
    assert max_col_tile(op, arch) == 6 and op.frame_cols(6) == 8  # 6 + 2 - 1 + 1 columns
    assert tiling.col_tile <= 6


def test_pointwise_tiles_hold_at_most_max_width_times_max_height_pixels():
    arch = ARCH.replace(max_width=6, max_height=6, conv_k_max=3)
    op = WindowOp("pw", Engine.POINTWISE, 3, 10, 40, 4, (1, 1), (1, 1), (0, 0, 0, 0),
                  w_per_out=3)
    assert max_col_tile(op, arch) == 36
    tiling = plan_window(op, arch)
    assert tiling.row_tile * tiling.col_tile <= 36
    model = _model("pw", [
        helper.make_node("Conv", ["x", "w"], ["y"], name="pw"),
    ], [1, 3, 10, 40], {"y": [1, 4, 10, 40]}, {"w": (4, 3, 1, 1)})
    program = check_bit_exact(_compile_model(model, arch), arch)
    computes = _computes(program)
    assert all(i.engine is Engine.POINTWISE and i.out_h * i.out_w <= 36 for _, i in computes)
    assert any(i.out_w < 40 for _, i in computes)  # column tiles


def test_input_channel_tiles_beyond_the_engine_counters_are_refused():
    arch = ArchConfig(conv_pi=1, pw_pi=2)
    conv = WindowOp("wide_conv", Engine.CONV, 4096, 4, 4, 2, (3, 3), (1, 1), (1, 1, 1, 1),
                    w_per_out=4096 * 9)
    with pytest.raises(MappingError, match=r"Layer 'wide_conv' \(conv\) cannot be mapped: its "
                                           r"4096 input channels are 4096 tiles of conv_pi=1, "
                                           r"more than the 4095 the conv engine counts; increase "
                                           r"conv_pi to at least 2 or reduce the layer's input "
                                           r"channels"):
        plan_window(conv, arch)
    fc = WindowOp("big_fc", Engine.POINTWISE, 8191, 1, 1, 10, (1, 1), (1, 1), (0, 0, 0, 0),
                  w_per_out=8191)
    with pytest.raises(MappingError, match=r"Layer 'big_fc' \(pointwise\) cannot be mapped: its "
                                           r"8191 input channels are 4096 tiles of pw_pi=2, more "
                                           r"than the 4095 the pointwise engine counts; increase "
                                           r"pw_pi to at least 3"):
        plan_window(fc, arch)
    plan_window(dataclasses.replace(fc, in_c=8190, w_per_out=8190), arch)


def test_unquantized_graph_is_refused():
    from compiler.errors import QuantizationError
    with pytest.raises(QuantizationError, match="is not quantized"):
        generate(float_graph("dpd_cnn"), ARCH)


def test_activation_memory_is_reused():
    graph = quantized("mobilenet_v2_small", ARCH)
    program = generate(graph, ARCH)
    total = sum(t["bytes"] for t in program.tensors.values())
    assert program.activations_bytes < total
    assert program.weights_offset % 4096 == 0 and program.activations_offset % 4096 == 0
    assert program.ddr_bytes >= program.activations_offset + program.activations_bytes


def test_plan_memory_never_overlaps_live_tensors():
    rng = np.random.default_rng(7)
    for _ in range(20):
        n = 12
        first = {f"t{i}": int(rng.integers(0, 10)) for i in range(n)}
        last = {t: f + int(rng.integers(0, 5)) for t, f in first.items()}
        sizes = {t: int(rng.integers(1, 500)) for t in first}
        offsets, top = plan_memory(sizes, first, last)
        for a, fa in first.items():
            assert offsets[a] % 64 == 0 and offsets[a] + sizes[a] <= top
            for b, fb in first.items():
                if a < b and fa <= last[b] and fb <= last[a]:
                    assert offsets[a] + sizes[a] <= offsets[b] or \
                        offsets[b] + sizes[b] <= offsets[a]


def test_distinct_splits():
    for n in (1, 2, 7, 64, 100, 1280):
        assert distinct_splits(n) == sorted({-(-n // k) for k in range(1, n + 1)}, reverse=True)


@pytest.mark.parametrize("h,k,s,pads,fpool", [(16, 3, 1, (1, 1, 1, 1), (1, 1)),
                                               (17, 3, 2, (1, 1, 1, 1), (1, 1)),
                                               (20, 5, 1, (2, 2, 2, 2), (2, 2)),
                                               (9, 3, 2, (0, 0, 1, 0), (1, 1))])
def test_row_tiles_cover_output_with_halos(h, k, s, pads, fpool):
    op = WindowOp("l", Engine.CONV, 2, h, 8, 2, (k, k), (s, s), pads, fpool)
    for rows in range(1, op.out_h + 1):
        tiles = row_tiles(op, rows)
        assert [t.out_row for t in tiles] == list(range(0, op.out_h, rows))
        assert sum(t.out_rows for t in tiles) == op.out_h
        for t in tiles:
            padded = t.in_rows + t.pad_top + t.pad_bottom
            assert (padded - k) // s + 1 == t.out_rows * fpool[0]
            assert 0 <= t.in_row and t.in_row + t.in_rows <= h
            assert t.pad_top <= pads[0] and t.pad_bottom < k


@pytest.mark.parametrize("w,k,s,pads,fpool,max_width", [(30, 3, 1, (1, 1, 1, 1), (1, 1), 8),
                                                        (31, 3, 2, (1, 1, 1, 1), (1, 1), 9),
                                                        (40, 5, 1, (2, 2, 2, 2), (2, 2), 12),
                                                        (20, 1, 1, (0, 0, 0, 0), (2, 2), 5)])
def test_column_tiles_cover_output_with_halos(w, k, s, pads, fpool, max_width):
    op = WindowOp("l", Engine.CONV, 2, 6, w, 2, (k, k), (s, s), pads, fpool)
    arch = ArchConfig(max_width=max_width, conv_k_max=5)
    cols = max_col_tile(op, arch)
    assert cols >= 1 and (cols * fpool[1] - 1) * s + k <= max_width
    tiling = plan_window(op, arch)
    tiles = col_tiles(op, tiling.col_tile)
    assert len(tiles) > 1
    assert sum(t.out_cols for t in tiles) == op.out_w
    for t in tiles:
        padded = t.in_cols + t.pad_left + t.pad_right
        assert padded <= max_width
        assert (padded - k) // s + 1 == t.out_cols * fpool[1]
        assert t.pad_left <= pads[1] and t.pad_right < k


def test_plan_window_overlaps_tiles_when_that_is_faster():
    """The whole layer fits one tile, but two double-buffered tiles of four output
    channels overlap the second's weights and the first's store with compute: 1,867
    cycles in the ISS's timeline against 1,975 for the one tile. The planner's cost sees
    it (the layer's first load and last store exposed, the rest behind the slowest
    phase)."""
    from compiler.mapping.tiling import _cost

    op = WindowOp("l", Engine.CONV, 8, 16, 16, 8, (3, 3), (1, 1), (1, 1, 1, 1), w_per_out=72)
    arch = ArchConfig()
    tiling = plan_window(op, arch)
    assert (tiling.m_tile, tiling.row_tile, tiling.double) == (4, 16, True)
    whole = min(_cost(op, arch, 8, 16, outer, double, 1, 1)
                for outer in (True, False) for double in (True, False))
    assert tiling.cycles < whole


def test_scheduler_syncs_only_on_conflicts():
    sched = Scheduler()
    sched.emit(Opcode.LOAD, {}, writes=[("IBUF", 0, 100)])
    sched.emit(Opcode.COMPUTE, {}, reads=[("IBUF", 200, 300)], writes=[("OBUF", 0, 10)])
    sched.emit(Opcode.COMPUTE, {}, reads=[("IBUF", 50, 60)], writes=[("OBUF", 10, 20)])
    sched.emit(Opcode.STORE, {}, reads=[("OBUF", 0, 10)], writes=[("DDR", 0, 10)])
    sched.emit(Opcode.LOAD, {}, reads=[("DDR", 5, 6)], writes=[("IBUF", 500, 600)])
    ops = [(op, f.get("mask")) for op, f, *_ in sched.items]
    assert ops == [(Opcode.LOAD, None), (Opcode.COMPUTE, None),
                   (Opcode.SYNC, Unit.LOAD), (Opcode.COMPUTE, None),
                   (Opcode.SYNC, Unit.COMPUTE), (Opcode.STORE, None),
                   (Opcode.SYNC, Unit.STORE), (Opcode.LOAD, None)]


@pytest.mark.slow
def test_full_mobilenet_v2_224_on_a_board_default_arch():
    """The full MobileNetV2-1.0-224 with column tiles (64-column line buffers)."""
    from boards.database import get_board
    arch = get_board("ZCU102").default_arch()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph, _ = quantize(import_model(models.mobilenet_v2(224, 1.0)),
                            QuantConfig.from_arch(arch), random_samples=1)
    program = check_bit_exact(graph, arch)
    assert any(r.col_tile < 112 for r in program.layers)
