"""AveragePool with per-position divisors: ``count_include_pad=0`` with padding and
``ceil_mode=1`` (ONNX semantics, checked against onnxruntime).

The golden op (:func:`sim.golden.avg_pool2d_counted`) divides each window sum by the
number of counted positions of that window, with one multiplier and shift per divisor;
the compiler cuts the output plane into rectangles of equal divisor, each an ordinary
POOL instruction, so the ISS must equal the golden runner bit for bit. The RTL case
runs one such program on the SEML core under Verilator.
"""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from compiler.compile import compile_model, load_image, simulate
from compiler.ir import OpKind
from compiler.pipeline import import_model
from compiler.runner import run_golden
from hw.arch import ArchConfig
from hw.isa import Opcode
from sim import golden

ARCH = ArchConfig()


def _pool_model(c, h, w, kernel, stride, pads, ceil, cip, pad_node=None):
    nodes, src = [], "x"
    inits = []
    if pad_node is not None:  # an explicit zero Pad in front, (top, left, bottom, right)
        t, left, b, r = pad_node
        inits.append(onnx.numpy_helper.from_array(
            np.array([0, 0, t, left, 0, 0, b, r], np.int64), "pads"))
        nodes.append(helper.make_node("Pad", ["x", "pads"], ["p"], name="pad"))
        src = "p"
    nodes.append(helper.make_node(
        "AveragePool", [src], ["y"], name="avg", kernel_shape=list(kernel),
        strides=list(stride), pads=list(pads), ceil_mode=ceil, count_include_pad=cip))
    graph = helper.make_graph(
        nodes, "avg", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, h, w])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c, None, None])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 8
    return model


def _ort(model, x):
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


# Golden ---------------------------------------------------------------------------------

def _brute_counts(size, k, stride, pads, count_pads):
    pb, pe = pads
    out = (size + pb + pe - k) // stride + 1
    return [sum(1 for p in range(i * stride - pb, i * stride - pb + k)
                if -count_pads[0] <= p < size + count_pads[1]) for i in range(out)]


def test_window_counts_match_enumeration():
    for size, k, stride in itertools.product(range(1, 9), range(1, 5), range(1, 4)):
        for pb, pe in itertools.product(range(k), repeat=2):
            if size + pb + pe < k:
                continue
            for cb, ce in itertools.product(range(pb + 1), range(pe + 1)):
                want = _brute_counts(size, k, stride, (pb, pe), (cb, ce))
                if min(want) < 1:
                    with pytest.raises(ValueError, match="counted position"):
                        golden.window_counts(size, k, stride, (pb, pe), (cb, ce))
                    continue
                got = golden.window_counts(size, k, stride, (pb, pe), (cb, ce))
                assert got.tolist() == want, (size, k, stride, pb, pe, cb, ce)
    with pytest.raises(ValueError, match="within pads"):
        golden.window_counts(5, 3, 1, (1, 1), (2, 0))


def test_counted_golden_is_the_rounded_mean():
    """Every output is round_half_up(sum * div_m[n] / 2**div_s[n]) (independent Python
    integer arithmetic), within 0.5 + |exact| * 2**-16 of the exact ``sum * ratio / n``
    (16-bit multipliers: relative error at most 2**-16)."""
    rng = np.random.default_rng(3)
    x = rng.integers(-128, 128, (2, 3, 9, 7))
    kernel, stride, pads, count_pads = (3, 4), (2, 1), (1, 2, 2, 1), (0, 1, 0, 0)
    ratio = 0.8
    div_m = np.zeros(13, np.int64)
    div_s = np.zeros(13, np.int64)
    for n in range(1, 13):
        div_m[n], div_s[n] = golden.fixed_point_multiplier(ratio / n)
    y = golden.avg_pool2d_counted(x, kernel, stride, pads, count_pads, div_m, div_s,
                                  -128, 127)
    rows = golden.window_counts(9, 3, 2, (1, 2), (0, 0))
    cols = golden.window_counts(7, 4, 1, (2, 1), (1, 0))
    assert y.shape == (2, 3, len(rows), len(cols))
    xp = np.pad(x, ((0, 0), (0, 0), (1, 2), (2, 1)))
    for b, c, i, j in itertools.product(range(2), range(3), range(len(rows)), range(len(cols))):
        total = int(xp[b, c, i * 2:i * 2 + 3, j:j + 4].sum())
        n = int(rows[i] * cols[j])
        m, s = int(div_m[n]), int(div_s[n])
        want = (total * m + (1 << (s - 1))) >> s
        assert y[b, c, i, j] == max(-128, min(127, want))
        exact = Fraction(total) * Fraction(ratio) / n
        assert abs(y[b, c, i, j] - exact) <= Fraction(1, 2) + abs(exact) / 2 ** 16 or \
            y[b, c, i, j] in (-128, 127)
    with pytest.raises(ValueError, match="KH \\* KW \\+ 1"):
        golden.avg_pool2d_counted(x, kernel, stride, pads, count_pads, div_m[:5], div_s[:5],
                                  -128, 127)


# Frontend -------------------------------------------------------------------------------

@pytest.mark.parametrize("kernel, stride, pads, ceil, cip, count_pads", [
    ((3, 3), (1, 1), (1, 1, 1, 1), 0, 0, (0, 0, 0, 0)),
    ((3, 3), (1, 1), (1, 1, 1, 1), 0, 1, None),      # every window counts 9
    ((2, 2), (2, 2), (0, 0, 0, 0), 1, 1, (0, 0, 0, 0)),  # 9x9: last window overhangs
    ((2, 2), (2, 2), (0, 0, 0, 0), 1, 0, (0, 0, 0, 0)),
    ((3, 3), (2, 2), (1, 1, 1, 1), 1, 1, None),      # 9x9: ceil adds no window
    ((3, 3), (3, 3), (0, 0, 0, 0), 1, 0, None),
])
def test_frontend_divisor_geometry(kernel, stride, pads, ceil, cip, count_pads):
    model = _pool_model(2, 9, 9, kernel, stride, pads, ceil, cip)
    graph = import_model(model)
    (layer,) = graph.layers
    assert layer.kind is OpKind.AVGPOOL and layer.count_pads == count_pads
    want = _ort(model, np.zeros((1, 2, 9, 9), np.float32)).shape
    assert (1,) + tuple(graph.shape("y")) == want


def test_global_window_with_pads_is_not_a_gap():
    model = _pool_model(2, 7, 7, (7, 7), (1, 1), (0, 0, 1, 1), 0, 0)
    (layer,) = import_model(model).layers
    assert layer.kind is OpKind.AVGPOOL and layer.count_pads == (0, 0, 0, 0)


# Compile, ISS, golden, onnxruntime ------------------------------------------------------

CASES = [
    # c, h, w, kernel, stride, pads (t, l, b, r), ceil_mode, count_include_pad
    (3, 9, 9, (3, 3), (1, 1), (1, 1, 1, 1), 0, 0),    # Inception's 3x3 stride-1 pool
    (3, 9, 10, (3, 3), (2, 2), (1, 1, 1, 1), 0, 0),   # ShuffleNet's 3x3 stride-2 pool
    (2, 7, 7, (7, 7), (1, 1), (0, 0, 1, 1), 0, 0),    # Inception v1's last pool
    (4, 10, 10, (3, 3), (2, 2), (1, 1, 1, 1), 1, 0),
    (4, 10, 10, (3, 3), (2, 2), (1, 1, 1, 1), 1, 1),  # overhang beyond the counted pads
    (2, 11, 8, (5, 3), (2, 3), (2, 1, 2, 0), 1, 0),   # asymmetric everything
    (2, 11, 8, (2, 2), (2, 2), (0, 0, 0, 0), 1, 1),   # ceil_mode without pads
    (3, 8, 8, (3, 3), (1, 1), (1, 1, 1, 1), 0, 1),    # the full-window path, unchanged
]


def _compile_and_check(model, x, out_dir, arch=ARCH):
    """ISS == golden bit for bit, shape == onnxruntime's, and every output within
    0.5 input step + 0.51 output step of onnxruntime's float (calibrated on ``x``:
    no clipping). Returns the compile result."""
    result = compile_model(model, arch, out_dir, x)
    sim = simulate(out_dir, x)
    want = run_golden(result.graph, {"x": x}).outputs["y"]
    got = np.asarray(sim.outputs["y"]).reshape(want.shape)
    assert np.array_equal(got, want)
    ref = _ort(model, x)
    assert ref.shape == want.shape
    s_in, s_out = result.graph.tensors["x"].scale, result.graph.tensors["y"].scale
    err = np.abs(want * s_out - ref)
    assert err.max() <= 0.5 * s_in + 0.51 * s_out, (err.max(), s_in, s_out)
    return result


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)).replace(" ", ""))
def test_iss_equals_golden_close_to_onnxruntime(case, tmp_path):
    c, h, w, kernel, stride, pads, ceil, cip = case
    x = np.random.default_rng(sum(case[:3])).standard_normal((1, c, h, w)).astype(np.float32)
    result = _compile_and_check(_pool_model(c, h, w, kernel, stride, pads, ceil, cip), x,
                                tmp_path / "out")
    (layer,) = result.graph.layers
    if layer.count_pads is not None:
        q = layer.quant
        assert np.count_nonzero(q.div_m) > 1  # several divisors
        # one POOL per rectangle of equal divisor (at least), each with its multiplier
        rows = golden.window_counts(h, kernel[0], stride[0], (layer.pads[0], layer.pads[2]),
                                    (layer.count_pads[0], layer.count_pads[2]))
        cols = golden.window_counts(w, kernel[1], stride[1], (layer.pads[1], layer.pads[3]),
                                    (layer.count_pads[1], layer.count_pads[3]))
        runs = [1 + int(np.count_nonzero(np.diff(a))) for a in (rows, cols)]
        mults = {(i.fields["mult"], i.fields["shift"]) for i in result.program.instructions
                 if i.opcode is Opcode.COMPUTE}
        pools = [i for i in result.program.instructions if i.opcode is Opcode.COMPUTE]
        assert len(pools) >= runs[0] * runs[1]
        assert mults == {(int(q.div_m[n]), int(q.div_s[n]))
                         for n in np.unique(rows[:, None] * cols[None, :])}


@pytest.mark.parametrize("case", [(6, 20, 30, (3, 3), (1, 1), (1, 1, 1, 1), 0, 0),
                                  (3, 17, 19, (5, 5), (2, 2), (2, 2, 2, 2), 1, 0)])
def test_regions_cut_into_row_and_column_tiles(case, tmp_path):
    """Narrow line buffers and small IBUF / OBUF: every divisor rectangle is itself cut
    into row and column tiles, still bit for bit."""
    c, h, w = case[:3]
    arch = ArchConfig(max_width=12, max_height=8, ibuf_bytes=2048, obuf_bytes=2048)
    x = np.random.default_rng(1).standard_normal((1, c, h, w)).astype(np.float32)
    result = _compile_and_check(_pool_model(*case), x, tmp_path / "out", arch)
    (report,) = result.program.layers
    assert report.col_tile < result.graph.shape("y")[2] and report.tiles > 9


def test_explicit_pad_folds_into_counted_padding(tmp_path):
    """A zero Pad in front of a count_include_pad=0 pool: its zeros count in the divisor
    (they are input values to the pool), the pool's own padding does not."""
    model = _pool_model(2, 8, 8, (3, 3), (2, 2), (1, 1, 1, 1), 1, 0, pad_node=(1, 0, 0, 1))
    x = np.random.default_rng(5).standard_normal((1, 2, 8, 8)).astype(np.float32)
    result = _compile_and_check(model, x, tmp_path / "out")
    (layer,) = result.graph.layers  # the Pad is folded
    assert layer.pads[:2] == (2, 1) and layer.count_pads[:2] == (1, 0)


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER"])
def test_auto_pad_same_excludes_its_pads(auto_pad, tmp_path):
    node = helper.make_node("AveragePool", ["x"], ["y"], name="avg", kernel_shape=[3, 3],
                            strides=[2, 2], auto_pad=auto_pad)
    graph = helper.make_graph(
        [node], "avg", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 8, 9])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, None, None])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 8
    x = np.random.default_rng(2).standard_normal((1, 2, 8, 9)).astype(np.float32)
    (layer,) = _compile_and_check(model, x, tmp_path / "out").graph.layers
    assert any(layer.pads) and layer.count_pads == (0, 0, 0, 0)


# RTL ------------------------------------------------------------------------------------

#: The arch tests/test_system_rtl.py builds (one Verilator build shared).
RTL_ARCH = ArchConfig(name="rtl-system", ibuf_bytes=16384, obuf_bytes=16384, wbuf_bytes=8192,
                      pbuf_entries=256, max_width=34, max_height=34, conv_k_max=5)


@pytest.mark.rtl
@pytest.mark.slow
def test_rtl_equals_iss(tmp_path):
    """Two counted pools (ShuffleNet's 3x3 stride 2 with count_include_pad=0, then a
    ceil_mode 2x2) on the SEML core under Verilator: the DDR image equals the ISS's."""
    from sim.axi import run_program_rtl
    from sim.iss import ISS, encode_activations

    nodes = [
        helper.make_node("AveragePool", ["x"], ["a"], name="avg3", kernel_shape=[3, 3],
                         strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=0),
        helper.make_node("AveragePool", ["a"], ["y"], name="avg2", kernel_shape=[2, 2],
                         strides=[2, 2], ceil_mode=1),
    ]
    graph = helper.make_graph(
        nodes, "avg_rtl", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 5, 13, 11])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5, 4, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 8
    x = np.random.default_rng(11).standard_normal((1, 5, 13, 11)).astype(np.float32)
    out = tmp_path / "out"
    result = _compile_and_check(model, x, out)
    assert all(layer.count_pads is not None for layer in result.graph.layers)
    arch, program, ddr, manifest = load_image(out)
    (spec,) = manifest["inputs"]
    xq = np.random.default_rng(12).integers(-128, 128, size=spec["shape"])
    raw = encode_activations(xq, spec["bits"])
    ddr[spec["offset"]:spec["offset"] + raw.size] = raw
    iss_ddr = ddr.copy()
    iss = ISS(arch).run(program, iss_ddr)
    rtl_ddr = ddr.copy()
    run = run_program_rtl(arch, program, rtl_ddr, build_name="seml-system", seed=3,
                          pause=0.2)
    assert run.instr_count == len(iss.instructions)
    assert np.array_equal(rtl_ddr, iss_ddr)
