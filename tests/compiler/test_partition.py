"""Host fallback: nodes with no accelerator mapping run on onnxruntime between
accelerator segments; the whole chain is ISS == golden bit for bit and close to float."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.cli import main
from compiler.compile import simulate
from compiler.errors import UnsupportedModelError
from compiler.partition import (
    compile_partitioned,
    host_fallback_needed,
    plan_partition,
    run_plan,
)
from hw.arch import ArchConfig

ARCH = ArchConfig(name="rtl-system", ibuf_bytes=16384, obuf_bytes=16384, wbuf_bytes=8192,
                  pbuf_entries=256, max_width=34, max_height=34, conv_k_max=5)


def _w(rng, *shape, std=0.3):
    return rng.normal(0, std, shape).astype(np.float32)


def host_model(custom: bool = False) -> onnx.ModelProto:
    """conv -> relu -> LRN (host) -> conv -> add (skip across the host part) -> Softmax
    over channels in the middle (host) -> conv 1x1 -> GAP -> FC -> Softmax."""
    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(a, n) for n, a in (
        ("w1", _w(rng, 8, 3, 3, 3)), ("b1", _w(rng, 8, std=0.1)),
        ("w2", _w(rng, 8, 8, 3, 3, std=0.2)), ("b2", _w(rng, 8, std=0.1)),
        ("w3", _w(rng, 6, 8, 1, 1)), ("b3", _w(rng, 6, std=0.1)),
        ("wf", _w(rng, 5, 6)), ("bf", _w(rng, 5, std=0.1)))]
    mid = (helper.make_node("MyOp", ["a"], ["s"], name="custom", domain="my.ops")
           if custom else helper.make_node("Softmax", ["a"], ["s"], name="mid_softmax", axis=1))
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1] * 4,
                         kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("LRN", ["r1"], ["l1"], name="lrn", size=3, alpha=1e-2, beta=0.75,
                         bias=1.0),
        helper.make_node("Conv", ["l1", "w2", "b2"], ["c2"], name="conv2", pads=[1] * 4,
                         kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("Add", ["r1", "r2"], ["a"], name="skip"),
        mid,
        helper.make_node("Conv", ["s", "w3", "b3"], ["c3"], name="conv3"),
        helper.make_node("Relu", ["c3"], ["r3"], name="relu3"),
        helper.make_node("GlobalAveragePool", ["r3"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["z"], name="fc", transB=1),
        helper.make_node("Softmax", ["z"], ["y"], name="prob", axis=1),
    ]
    graph = helper.make_graph(nodes, "hostfb",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                             [1, 3, 12, 12])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])],
                              inits)
    opsets = [helper.make_opsetid("", 13)] + ([helper.make_opsetid("my.ops", 1)]
                                              if custom else [])
    return helper.make_model(graph, opset_imports=opsets)


def test_plan_partition_steps_and_macs():
    model = host_model()
    assert host_fallback_needed(model)
    plan = plan_partition(model)
    kinds = [(p.kind, [n for n, _ in p.nodes]) for p in plan.parts]
    assert kinds == [
        ("accelerator", ["conv1", "relu1"]),
        ("host", ["lrn"]),
        ("accelerator", ["conv2", "relu2", "skip"]),
        ("host", ["mid_softmax"]),
        ("accelerator", ["conv3", "relu3", "gap", "flat", "fc"]),
        ("host", ["prob"]),
    ]
    # The skip connection crosses the host partition: segment 2 reads r1 from segment 0.
    assert plan.parts[0].outputs == ["r1"] and plan.parts[2].inputs == ["l1", "r1"]
    acc, total = plan.macs
    conv = 144 * 8 * 27 + 144 * 8 * 72 + 144 * 6 * 8 + 5 * 6
    assert acc == conv and total == conv + 144 * 8 * 3
    assert "host: lrn (LRN)" in plan.summary()


def test_trailing_softmax_alone_needs_no_fallback(tmp_path):
    model = host_model()
    # Drop the LRN and the middle Softmax: only the trailing Softmax is left.
    g = model.graph
    keep = [n for n in g.node if n.name not in ("lrn", "mid_softmax")]
    for n in keep:
        n.input[:] = ["r1" if i == "l1" else "a" if i == "s" else i for i in n.input]
    del g.node[:]
    g.node.extend(keep)
    assert not host_fallback_needed(model)


def test_refused_attributes_stay_errors_naming_the_node():
    model = host_model()
    conv2 = next(n for n in model.graph.node if n.name == "conv2")
    next(a for a in conv2.attribute if a.name == "pads").ints[:] = [-1, -1, -1, -1]
    with pytest.raises(UnsupportedModelError, match=r"conv2 \(Conv\): negative pads") as info:
        plan_partition(model)
    assert "would run on the host: lrn, mid_softmax, prob" in str(info.value)


def test_custom_op_onnxruntime_cannot_run_is_named():
    with pytest.raises(UnsupportedModelError,
                       match=r"custom \(MyOp\): no accelerator mapping, and onnxruntime "
                             r"cannot run it"):
        plan_partition(host_model(custom=True))


def _float_reference(model, x):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def test_compile_and_simulate_whole_model(tmp_path):
    model = host_model()
    rng = np.random.default_rng(0)
    calib = rng.standard_normal((16, 3, 12, 12)).astype(np.float32)
    out = tmp_path / "out"
    result = compile_partitioned(model, ARCH, out, calib, verify=True)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert {"manifest.json", "host_plan.json", "arch.json", "report.txt", "report.json",
            "host1.onnx", "host3.onnx", "host5.onnx", "seg0/program.bin",
            "seg2/program.bin", "seg4/program.bin"} <= set(files)
    plan = json.loads((out / "host_plan.json").read_text())
    assert [s["kind"] for s in plan["steps"]] == ["accelerator", "host"] * 3
    seg2 = plan["steps"][2]
    assert [s["name"] for s in seg2["inputs"]] == ["l1", "r1"]
    assert all(s["scale"] > 0 and s["bits"] == 8 for s in seg2["inputs"])
    # r1 crosses the host partition as integers when segment 2 keeps its scale.
    report = json.loads((out / "report.json").read_text())
    assert report["mode"] == "partitioned" and report["accelerator_cycles_per_frame"] > 0

    x = rng.standard_normal((1, 3, 12, 12)).astype(np.float32)
    sim = simulate(out, x)
    y = sim.outputs["y"]
    assert y.dtype == np.float32 and y.shape == (1, 5)
    assert sim.cycles == report["accelerator_cycles_per_frame"] or sim.cycles > 0
    # The same chain with the golden runner in place of the ISS: bit for bit.
    from compiler.partition import _golden_accel
    hosts = {s["model"]: (out / s["model"]).read_bytes() for s in plan["steps"]
             if s["kind"] == "host"}
    want, _ = run_plan(plan, hosts, {"x": x}, _golden_accel(result.segments))
    assert np.array_equal(want["y"], y)
    # Close to the float model.
    ref = _float_reference(model, x)
    snr = 10 * np.log10(np.sum(ref ** 2) / np.sum((ref - y) ** 2))
    assert snr > 20, snr


def test_cli_check_compile_simulate(tmp_path, capsys):
    path = tmp_path / "m.onnx"
    onnx.save(host_model(), str(path))
    assert main(["check", str(path)]) == 0
    text = capsys.readouterr().out
    assert "OK with host fallback" in text and "host: lrn (LRN)" in text
    assert "MACs on the accelerator: 120,990 of 124,446 (97.22 %)" in text
    arch = tmp_path / "arch.json"
    arch.write_text(ARCH.to_json())
    out = tmp_path / "out"
    assert main(["compile", str(path), "--arch", str(arch), "-o", str(out), "-q"]) == 0
    assert "host_plan.json" in capsys.readouterr().out
    assert main(["simulate", str(out), "-o", str(tmp_path / "y.npz")]) == 0
    text = capsys.readouterr().out
    assert "output y: shape [5]" in text
    # A custom op onnxruntime cannot run: a clear refusal naming the node.
    onnx.save(host_model(custom=True), str(path))
    assert main(["check", str(path)]) == 1
    assert "custom (MyOp)" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.rtl
def test_partitioned_rtl_equals_iss(tmp_path):
    """Every accelerator segment on the SEML core under Verilator: the whole chain's
    output equals the ISS chain's bit for bit."""
    from compiler.compile import register_backend
    from compiler.partition import simulate_partitioned
    from sim.axi import run_program_rtl

    def rtl(arch, program, ddr):  # the build tests/test_system_rtl.py makes for ARCH
        run = run_program_rtl(arch, program, ddr, build_name="seml-system")
        return run.cycles, run

    register_backend("rtl", rtl)
    out = tmp_path / "out"
    compile_partitioned(host_model(), ARCH, out)
    x = np.random.default_rng(1).standard_normal((1, 3, 12, 12)).astype(np.float32)
    iss = simulate_partitioned(out, x)
    rtl = simulate_partitioned(out, x, backend="rtl")
    for name, y in iss.outputs.items():
        assert np.array_equal(rtl.outputs[name], y)
    for step, r in rtl.details.items():
        assert np.array_equal(r.outputs[next(iter(r.outputs))],
                              iss.details[step].outputs[next(iter(r.outputs))])
