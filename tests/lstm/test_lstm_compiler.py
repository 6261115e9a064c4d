"""LSTM compiler and golden model (pure Python)."""

import itertools
import json

import numpy as np
import onnx
import pytest
from onnx import helper

from compiler import errors
from compiler.lstm.compile import compile_lstm, quantize_input, snr_db, write_outputs
from compiler.lstm.encode import csc_decode, prune_mask
from compiler.lstm.model import import_lstm, is_lstm_model
from examples.lstm_models import lstm_model
from hw.lstm.config import (
    CELL_FRAC,
    TABLE_IN_FRAC,
    TABLE_OUT_FRAC,
    LstmArch,
    sigmoid_table,
    tanh_table,
)
from sim.lstm import SIGMOID, TANH, lstm_layer, mv_cycles, table_index

ARCH = LstmArch(n_pe=8, weight_depth=1024, max_cols=64, max_hidden=32, max_input=32)


def _ort(model, x):
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"X": x[:, None, :].astype(np.float32)})[0]


@pytest.mark.parametrize("layers,output", [(1, "sequence"), (2, "sequence"), (2, "last")])
def test_golden_matches_onnxruntime(layers, output):
    steps = 12
    model = lstm_model(16, 32, steps, layers, seed=layers, output=output)
    c = compile_lstm(model, ARCH)
    x = np.random.default_rng(3).standard_normal((steps, 16))
    h = c.golden(quantize_input(x, c.x_frac))[-1] / 32768.0
    ref = _ort(model, x).reshape(-1, 32)
    got = h[-1:] if output == "last" else h
    assert c.model.output_kind == output
    assert snr_db(ref, got) > 35


def test_golden_is_the_integer_recurrence():
    """One step written out element by element equals the vectorized golden."""
    rng = np.random.default_rng(0)
    hidden, inp = 8, 4
    wx = rng.integers(-2047, 2048, (4 * hidden, inp))
    wh = rng.integers(-2047, 2048, (4 * hidden, hidden))
    bias = rng.integers(-(1 << 20), 1 << 20, 4 * hidden)
    xs = rng.integers(-32768, 32768, (2, inp))
    shift = 15
    out = lstm_layer(xs, wx, wh, bias, shift)
    h = [0] * hidden
    c = [0] * hidden

    def rs(v, s):
        return (v + (1 << (s - 1))) >> s

    def idx(v, s):
        return max(-2048, min(2047, rs(v, s))) & 4095

    for t in range(2):
        new_h = []
        for k in range(hidden):
            s = [int(wx[g * hidden + k] @ xs[t]) + sum(int(wh[g * hidden + k, j]) * h[j]
                 for j in range(hidden)) + int(bias[g * hidden + k]) for g in range(4)]
            ti, to, tf = (int(SIGMOID[idx(s[g], shift)]) for g in range(3))
            tg = int(TANH[idx(s[3], shift)])
            c[k] = max(-(1 << 23), min((1 << 23) - 1, rs(tf * c[k], 15) + rs(ti * tg, 15)))
            new_h.append(max(-32768, min(32767, rs(to * int(TANH[idx(c[k], 7)]), 15))))
        h = new_h
        assert out[t].tolist() == h


def test_tables():
    s, t = sigmoid_table(), tanh_table()
    assert len(s) == len(t) == 4096
    assert s[0] == 1 << (TABLE_OUT_FRAC - 1) and t[0] == 0
    pos = s[:2048]
    assert all(a <= b for a, b in itertools.pairwise(pos))
    assert t[2047] == (1 << 15) - 1 and t[2048] == -((1 << 15) - 1)
    assert CELL_FRAC - TABLE_IN_FRAC == 7
    assert table_index(np.array([1 << 40]), 8)[0] == 2047
    assert table_index(np.array([-(1 << 40)]), 8)[0] == 2048


@pytest.mark.parametrize("density", [1.0, 0.25, 0.1])
def test_csc_roundtrip_and_format(density):
    c = compile_lstm(lstm_model(16, 32, 4, 1, seed=2), ARCH, density=density)
    q, enc = c.quant[0], c.encoded[0]
    dense = np.concatenate([q.wx, q.wh], axis=1)
    assert (csc_decode(enc, 32, ARCH.n_pe) == dense).all()
    assert q.mask.sum() == pytest.approx(density * q.mask.size, rel=0.01)
    assert (np.abs(dense) <= 2047).all()
    # pointers are cumulative end pointers; counts their differences
    assert (np.diff(enc.pointers.astype(int), axis=1, prepend=0) == enc.counts).all()


def test_padding_for_gaps_over_15():
    # hidden 64 on 4 PEs: 64 rows per PE, 5 % density leaves gaps longer than 15
    arch = LstmArch(n_pe=4, weight_depth=4096, max_cols=128, max_hidden=64, max_input=32)
    c = compile_lstm(lstm_model(8, 64, 2, 1, seed=4), arch, density=0.05)
    enc = c.encoded[0]
    assert enc.padding.sum() > 0
    pads = [int(e) for row in enc.entries for e in row if int(e) == 0xF000]
    assert len(pads) >= enc.padding.sum()
    assert (csc_decode(enc, 64, 4) == np.concatenate([c.quant[0].wx, c.quant[0].wh], 1)).all()
    rep = c.report["layers"][0]
    assert rep["padding_overhead"] == pytest.approx(enc.padding.sum() / enc.nonzeros.sum())


def test_load_balance_aware_pruning():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((128, 48))
    w[::8] *= 4  # rows of PE 0 are larger: global pruning piles the weights there
    bal = prune_mask(w, 0.1, 8, balanced=True)
    glob = prune_mask(w, 0.1, 8, balanced=False)
    perm = (np.arange(128) % 4) * 32 + np.arange(128) // 4
    per_pe_bal = [bal[perm][p::8].sum() for p in range(8)]
    per_pe_glob = [glob[perm][p::8].sum() for p in range(8)]
    assert len(set(per_pe_bal)) == 1
    assert max(per_pe_glob) > 1.5 * min(per_pe_glob)
    assert bal.sum() == 8 * round(0.1 * w.size / 8) and glob.sum() == round(0.1 * w.size)


def test_mv_cycle_model_basics():
    # one entry per PE and column: a column per cycle once the first has arrived
    cycles, busy = mv_cycles(np.ones((4, 10), dtype=int), 4)
    assert cycles == 12 and busy.tolist() == [10] * 4
    # one PE with all the work: the others idle, its work bounds the time
    counts = np.zeros((4, 10), dtype=int)
    counts[2] = 5
    cycles, busy = mv_cycles(counts, 4)
    assert cycles == 52 and busy.tolist() == [10, 10, 50, 10]


def test_report_and_outputs(tmp_path):
    c = compile_lstm(lstm_model(16, 32, 8, 2, seed=5), ARCH, density=0.25)
    out = write_outputs(c, tmp_path / "out")
    rep = json.loads((out / "report.json").read_text())
    assert rep["mode"] == "lstm" and rep["cycles_per_frame"] > 0
    assert len(rep["layers"]) == 2
    for lay in rep["layers"]:
        assert len(lay["density_per_pe"]) == 8
        assert lay["cycles_per_step"] == lay["mv_cycles_per_step"] + lay["ew_cycles_per_step"]
    for f in ("program.bin", "weights.bin", "arch.json", "manifest.json", "report.txt"):
        assert (out / f).is_file()
    assert "density" in (out / "report.txt").read_text()


def _with_node_change(model, **attrs):
    m = onnx.ModelProto()
    m.CopyFrom(model)
    node = next(n for n in m.graph.node if n.op_type == "LSTM")
    for k, v in attrs.items():
        node.attribute.append(helper.make_attribute(k, v))
    return m


def test_import_errors_list_every_problem():
    model = _with_node_change(lstm_model(8, 16, 4, 1), direction="reverse", clip=3.0)
    with pytest.raises(errors.UnsupportedModelError) as e:
        import_lstm(model)
    assert "direction 'reverse'" in str(e.value) and "clip" in str(e.value)
    assert is_lstm_model(model)


def test_mapping_errors():
    big = LstmArch(n_pe=8, weight_depth=64, max_cols=64, max_hidden=32, max_input=32)
    with pytest.raises(errors.MappingError, match="weight memory"):
        compile_lstm(lstm_model(16, 32, 4, 1), big)
    with pytest.raises(errors.MappingError, match="hidden size 64 exceeds"):
        compile_lstm(lstm_model(16, 64, 4, 1), ARCH)
    with pytest.raises(errors.MappingError, match="multiple"):
        compile_lstm(lstm_model(16, 6, 4, 1), ARCH)
    with pytest.raises(errors.QuantizationError, match="density"):
        compile_lstm(lstm_model(16, 32, 4, 1), ARCH, density=0)


def test_arch_validation():
    with pytest.raises(ValueError, match="n_pe"):
        LstmArch(n_pe=12)
    with pytest.raises(ValueError, match="weight_depth"):
        LstmArch(weight_depth=1000)
    a = LstmArch()
    assert LstmArch.from_dict(json.loads(a.to_json())) == a


def test_image_decodes_to_the_compiled_layers():
    from compiler.lstm.cli import layers_from_image

    c = compile_lstm(lstm_model(16, 32, 4, 2, seed=6), ARCH, density=0.1)
    decoded = layers_from_image(c.image, ARCH)
    for got, want in zip(decoded, c.golden_layers()):
        for key in ("wx", "wh", "bias"):
            assert (got[key] == want[key]).all()
        assert got["gate_shift"] == want["gate_shift"]
    with pytest.raises(errors.ProgramFormatError):
        layers_from_image(c.image, LstmArch(n_pe=4, weight_depth=1024, max_cols=64,
                                            max_hidden=32, max_input=32))


@pytest.mark.parametrize("kw", [{"linear_in": 12, "linear_out": 10}, {"linear_in": 20},
                                {"linear_out": 6, "gemm": True, "output": "last"},
                                {"linear_out": 40, "layers": 2}])
def test_linear_layers_golden_matches_onnxruntime(kw):
    """Linear layers (MatMul + Add, Gemm) before and after the LSTMs, dense: the integer
    golden of the whole chain against onnxruntime in float."""
    steps = 10
    kw = dict(kw)
    layers = kw.pop("layers", 1)
    model = lstm_model(16, 32, steps, layers, seed=7, **kw)
    arch = LstmArch(n_pe=8, weight_depth=1024, max_cols=64, max_hidden=64, max_input=32)
    c = compile_lstm(model, arch)
    kinds = [q.kind for q in c.quant]
    assert kinds.count("linear") == bool(kw.get("linear_in")) + bool(kw.get("linear_out"))
    x = np.random.default_rng(4).standard_normal((steps, 16))
    y = c.golden(quantize_input(x, c.x_frac))[-1]
    size, frac = c.report["output_size"], c.report["output_frac"]
    ref = _ort(model, x).reshape(-1, size)
    got = (y[-1:] if kw.get("output") == "last" else y)[:, :size] / 2.0 ** frac
    assert snr_db(ref, got) > 35
    # a linear layer's padded outputs are zero; the next layer's padded inputs unused
    for q, out in zip(c.quant, c.golden(quantize_input(x, c.x_frac))):
        if q.kind == "linear":
            assert not out[:, q.out_size:].any()


def test_linear_layer_is_the_integer_formula():
    from sim.lstm import linear_layer

    rng = np.random.default_rng(1)
    w = rng.integers(-2047, 2048, (8, 5))
    b = rng.integers(-(1 << 20), 1 << 20, 8)
    x = rng.integers(-32768, 32768, (3, 5))
    y = linear_layer(x, w, b, 9)
    for t, i in itertools.product(range(3), range(8)):
        acc = int(sum(int(w[i, j]) * int(x[t, j]) for j in range(5)) + int(b[i]))
        assert y[t, i] == max(-32768, min(32767, (acc + 256) >> 9))


def test_linear_import_errors():
    from onnx import numpy_helper

    m = lstm_model(16, 32, 4, 1, linear_out=10)
    relu = helper.make_node("Relu", ["fc_out_mm"], ["r"], name="act")
    m.graph.node.append(relu)
    with pytest.raises(errors.UnsupportedModelError, match="'act' .*not supported"):
        import_lstm(m)
    m = lstm_model(16, 32, 4, 1, linear_in=12)
    w = next(i for i in m.graph.initializer if i.name == "fc_in_W")
    m.graph.initializer.remove(w)
    m.graph.input.append(helper.make_tensor_value_info("fc_in_W", onnx.TensorProto.FLOAT,
                                                       [16, 12]))
    with pytest.raises(errors.UnsupportedModelError) as e:
        import_lstm(m)
    assert "2-D initializer" in str(e.value) and "runtime inputs" in str(e.value)
    # a Linear layer whose output size does not match the LSTM's input
    m = lstm_model(16, 32, 4, 1, linear_in=12)
    w = next(i for i in m.graph.initializer if i.name == "fc_in_W")
    w.CopyFrom(numpy_helper.from_array(np.zeros((16, 8), np.float32), "fc_in_W"))
    with pytest.raises(errors.UnsupportedModelError, match="input size 12 differs"):
        import_lstm(m)


def test_linear_image_decodes_and_reports(tmp_path):
    from compiler.lstm.cli import layers_from_image

    c = compile_lstm(lstm_model(16, 32, 4, 1, seed=2, linear_in=12, linear_out=10), ARCH,
                     density=0.3)
    for got, want in zip(layers_from_image(c.image, ARCH), c.golden_layers()):
        assert got["kind"] == want["kind"]
        for key in ("wx", "wh", "bias"):
            assert (got[key] == want[key]).all()
    rep = c.report
    lin = rep["layers"][0]
    assert lin["engine"] == "linear" and lin["outputs"] == 12 and lin["hidden"] == 4
    assert lin["cycles_per_step"] == lin["mv_cycles_per_step"] + lin["ew_cycles_per_step"]
    assert rep["output_size"] == 10 and len(rep["layers"]) == 3
    out = write_outputs(c, tmp_path / "out")
    assert "linear 16 -> 12 (padded to 16)" in (out / "report.txt").read_text()
