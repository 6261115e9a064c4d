"""The nine CNNs in the onnx package's test data (``onnx/backend/test/data/light``):
check, compile for a board, ISS against golden, and the numbers of the README table.

Each model (224x224 ImageNet topologies with synthetic weights) goes through:

1. ``check``: import, or the host-fallback partition; the first blocking issues if any;
2. ``compile`` for the board's arch, calibrated on ``samples`` seeded standard-normal
   inputs (the same samples calibrate onnxruntime's int8 QDQ model);
3. one evaluation input (another seeded sample) on the ISS and on the golden runner,
   compared bit for bit;
4. golden vs onnxruntime float SNR, and onnxruntime's own static int8 QDQ run vs
   float SNR as the reference point.

The compared tensor is the network's logits: a trailing Softmax is cut off first (it
runs on the host anyway), so SNRs measure the accelerator's numerics.
:func:`evaluate` returns a dict per model; ``benchmarks/bench_light_cnns.py`` writes
them to JSON.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

__all__ = ["LIGHT", "MODELS", "evaluate", "light_model", "logits_model", "random_weights",
           "snr_db"]

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
MODELS = ("bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50",
          "shufflenet", "squeezenet", "vgg19", "zfnet512")

#: Fragments of blocking messages -> the feature that lifts them.
_NEEDS = (
    ("kernel size", "kernel/stride decomposition"),
    ("strides", "kernel/stride decomposition"),
    ("conv_k_max", "kernel/stride decomposition (arch kernel set)"),
    ("grouped convolution", "grouped convolution"),
    ("count_include_pad", "AveragePool count_include_pad=0"),
    ("Transpose", "channel shuffle"),
    ("reshaping", "channel shuffle"),
)


def light_model(name: str) -> onnx.ModelProto:
    path = LIGHT / f"light_{name}.onnx"
    if not path.exists():
        raise FileNotFoundError(f"{path} is not in the installed onnx package")
    return onnx.load(str(path))


def random_weights(model: onnx.ModelProto, seed: int = 0) -> onnx.ModelProto:
    """``model`` with every ``ConstantOfShape`` parameter replaced by seeded random values.

    The test models build all their parameters with ``ConstantOfShape`` (one value per
    tensor), which makes every channel of a layer equal and the logits one repeated
    number. Here each such tensor becomes an initializer drawn by its role: conv / FC
    weights He-normal (standard deviation sqrt(2 / fan_in)), biases N(0, 0.05),
    BatchNormalization scale and variance U(0.5, 1.5), its bias and mean N(0, 0.1), a
    Mul operand (a decomposed BN scale) U(0.5, 1.5), an Add / Sum operand N(0, 0.1).
    A tensor with another use keeps its constant value. The topology is unchanged.
    """
    from onnx import numpy_helper

    rng = np.random.default_rng(seed)
    g = model.graph
    consts = {}
    for init in g.initializer:
        consts[init.name] = numpy_helper.to_array(init)
    for node in g.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    consts[node.output[0]] = numpy_helper.to_array(a.t)
    users: dict[str, list] = {}
    for node in g.node:
        for k, name in enumerate(node.input):
            users.setdefault(name, []).append((node, k))

    def role(name, depth=0):
        """(op, input index, node) of the first real consumer, through Unsqueeze/Reshape."""
        for node, k in users.get(name, []):
            if node.op_type in ("Unsqueeze", "Reshape", "Identity") and k == 0 and depth < 4:
                found = role(node.output[0], depth + 1)
                if found:
                    return found
            else:
                return node.op_type, k, node
        return None

    def draw(shape, use):
        if use is None:
            return None
        op, k, node = use
        if op in ("Conv", "Gemm", "MatMul") and k == 1:
            if op == "Conv":
                fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            else:
                trans = any(a.name == "transB" and a.i for a in node.attribute)
                fan_in = shape[1] if (op == "Gemm" and trans) else shape[0]
            return rng.normal(0.0, math.sqrt(2.0 / max(fan_in, 1)), shape)
        if op in ("Conv", "Gemm") and k == 2:
            return rng.normal(0.0, 0.05, shape)
        if op == "BatchNormalization":
            if k in (1, 4):
                return rng.uniform(0.5, 1.5, shape)
            if k in (2, 3):
                return rng.normal(0.0, 0.1, shape)
        if op == "Mul":
            return rng.uniform(0.5, 1.5, shape)
        if op in ("Add", "Sum"):
            return rng.normal(0.0, 0.1, shape)
        return None

    out = onnx.ModelProto()
    out.CopyFrom(model)
    nodes, inits = [], []
    for node in out.graph.node:
        if node.op_type == "ConstantOfShape" and node.input[0] in consts:
            shape = tuple(int(d) for d in np.asarray(consts[node.input[0]]).reshape(-1))
            values = draw(shape, role(node.output[0]))
            if values is not None:
                inits.append(numpy_helper.from_array(values.astype(np.float32),
                                                     node.output[0]))
                continue
        nodes.append(node)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    # the shape tensors of the replaced nodes are no longer used
    used = {name for node in nodes for name in node.input}
    keep = [i for i in out.graph.initializer if i.name in used or i.name in
            {o.name for o in out.graph.output}]
    dropped = {i.name for i in out.graph.initializer} - {i.name for i in keep}
    del out.graph.initializer[:]
    out.graph.initializer.extend(keep + inits)
    graph_inputs = [i for i in out.graph.input if i.name not in dropped]
    if out.ir_version < 4:  # initializers must also be graph inputs before IR 4
        for init in inits:
            graph_inputs.append(onnx.helper.make_tensor_value_info(
                init.name, onnx.TensorProto.FLOAT, list(init.dims)))
    del out.graph.input[:]
    out.graph.input.extend(graph_inputs)
    onnx.checker.check_model(out)
    return out


def logits_model(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` without a trailing Softmax (its output is then the logits)."""
    from compiler.partition import _extract, _static_shapes

    g = model.graph
    last = g.node[-1] if len(g.node) else None
    outs = [o.name for o in g.output]
    if last is None or last.op_type != "Softmax" or outs != [last.output[0]]:
        return model
    shapes = _static_shapes(model)
    inits = {i.name for i in g.initializer}
    inputs = [i.name for i in g.input if i.name not in inits]
    shapes = {k: (1,) + tuple(v[1:]) if k not in inits else v for k, v in shapes.items()}
    return _extract(model, inputs, [last.input[0]], shapes, g.name or "model")


def snr_db(ref: np.ndarray, got: np.ndarray) -> float:
    ref = np.asarray(ref, dtype=np.float64).reshape(-1)
    got = np.asarray(got, dtype=np.float64).reshape(-1)
    noise = float(np.sum((ref - got) ** 2))
    signal = float(np.sum(ref ** 2))
    return math.inf if noise == 0 else 10 * math.log10(signal / noise)


def _needs(message: str) -> list[str]:
    return sorted({need for frag, need in _NEEDS if frag in message})


def _ort_run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.asarray(sess.run(None, {name: x})[0], dtype=np.float32)


def ort_qdq(model: onnx.ModelProto, calib: np.ndarray, x: np.ndarray) -> np.ndarray:
    """onnxruntime's static int8 QDQ quantization of ``model`` (symmetric, per-channel
    weights, MinMax calibration on ``calib``), run on ``x``."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    name = next(i.name for i in model.graph.input
                if i.name not in {t.name for t in model.graph.initializer})
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                default=13)
    if opset < 13:
        # per-channel DequantizeLinear (its ``axis``) needs opset 13
        from onnx import version_converter

        model = version_converter.convert_version(model, 13)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{name: calib[i:i + 1]} for i in range(len(calib))])

        def get_next(self):
            return next(self.it, None)

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "f.onnx", Path(tmp) / "q.onnx"
        onnx.save(model, str(src))
        quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QInt8,
                        weight_type=QuantType.QInt8,
                        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})
        return _ort_run(onnx.load(str(dst)), x)


def evaluate(name: str, board: str = "ZCU102", *, samples: int = 4, seed: int = 0,
             out_dir=None, qdq: bool = True, stop_after: str | None = None,
             weights: str = "synthetic") -> dict:
    """Run one light model through check / compile / ISS vs golden / SNRs.

    Returns a dict: ``status`` (``"pass"`` or ``"blocked"``), ``stage`` reached or
    failed (``check``, ``compile``, ``iss``), ``blocked_by`` (the first lines of the
    refusal), ``needs`` (features that lift it), ``host_nodes``,
    ``accelerator_mac_share``, ``cycles``, ``iss_equals_golden``, ``snr_db`` (golden
    vs float), ``ort_qdq_snr_db``, ``top1_agree``, ``float_logits_distinct`` (distinct
    values among the float logits), ``golden_vs_ort_qdq_rel_diff`` (largest difference
    between the dequantized golden logits and onnxruntime's QDQ ones, relative to the
    largest QDQ logit), ``golden_vs_ort_qdq_steps`` (the same difference in steps of the
    golden output), ``golden_equals_ort_qdq`` (relative difference below 1e-5: the
    same integers at the same scale) and ``seconds`` per stage.
    ``stop_after="check"`` stops after the first stage (``status`` is then
    ``"checked"`` unless blocked). ``weights="random"`` replaces the models'
    constant parameters by seeded random ones (:func:`random_weights`, seed ``seed``).
    """
    from boards.database import get_board
    from compiler.compile import compile_model, simulate
    from compiler.errors import ConvForgeError, UnsupportedModelError
    from compiler.partition import (
        _golden_accel,
        compile_partitioned,
        host_fallback_needed,
        plan_partition,
        run_plan,
    )
    from compiler.pipeline import import_model
    from compiler.runner import run_golden

    row: dict = {"model": name, "board": board, "status": "blocked", "stage": "check",
                 "host_nodes": [], "seconds": {}}
    if weights not in ("synthetic", "random"):
        raise ValueError(f"weights must be 'synthetic' or 'random', not {weights!r}")
    model = logits_model(light_model(name))
    if weights == "random":
        model = random_weights(model, seed)
    row["weights"] = weights
    t = time.perf_counter()
    partitioned = False
    try:
        try:
            graph = import_model(model)
            row["layers"] = len(graph.layers)
        except UnsupportedModelError:
            if not host_fallback_needed(model):
                raise
            plan = plan_partition(model)
            partitioned = True
            row["host_nodes"] = [f"{n} ({op})" for n, op in plan.host_nodes]
            row["accelerator_mac_share"] = plan.accelerator_share()
    except ConvForgeError as e:
        return _blocked(row, e, t)
    row["seconds"]["check"] = time.perf_counter() - t
    if not partitioned:
        row["accelerator_mac_share"] = 1.0
    if stop_after == "check":
        row["status"] = "checked"
        return row
    row["stage"] = "compile"
    inp = next(i for i in model.graph.input
               if i.name not in {t.name for t in model.graph.initializer})
    shape = [d.dim_value or 1 for d in inp.type.tensor_type.shape.dim]
    rng = np.random.default_rng(seed)
    calib = rng.standard_normal((samples, *shape[1:])).astype(np.float32)
    x = rng.standard_normal((1, *shape[1:])).astype(np.float32)
    arch = get_board(board).default_arch()
    t = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="convforge-light-") as tmp:
        out = Path(out_dir) / name if out_dir is not None else Path(tmp) / name
        try:
            if partitioned:
                result = compile_partitioned(model, arch, out, calib, seed=seed)
            else:
                result = compile_model(model, arch, out, calib, seed=seed)
        except ConvForgeError as e:
            return _blocked(row, e, t)
        row["seconds"]["compile"] = time.perf_counter() - t
        row["stage"] = "iss"
        t = time.perf_counter()
        sim = simulate(out, x)
        row["seconds"]["iss"] = time.perf_counter() - t
        row["cycles"] = int(sim.cycles)
        (oname, got), = sim.outputs.items()
        t = time.perf_counter()
        if partitioned:
            host_plan = result.host_plan
            hosts = {s["model"]: (out / s["model"]).read_bytes() for s in host_plan["steps"]
                     if s["kind"] == "host"}
            _, ints = run_plan(host_plan, hosts, {inp.name: x},
                               _golden_accel(result.segments))
            want = ints[oname]
            scale = next(s["scale"] for st in host_plan["steps"] if st["kind"] != "host"
                         for s in st["outputs"] if s["name"] == oname)
        else:
            golden = run_golden(result.graph, {inp.name: x})
            want = golden.outputs[oname]
            scale = result.graph.tensors[oname].scale
        row["seconds"]["golden"] = time.perf_counter() - t
    row["iss_equals_golden"] = bool(np.array_equal(np.asarray(got).reshape(want.shape), want))
    real = np.asarray(want, dtype=np.float64) * scale
    ref = _ort_run(model, x)
    row["snr_db"] = snr_db(ref, real)
    row["top1_agree"] = bool(int(np.argmax(ref)) == int(np.argmax(real)))
    # These test models build their conv / FC weights with ConstantOfShape (one value
    # each), so all logits can be one repeated number: the SNR is then that of a scalar.
    row["float_logits_distinct"] = int(np.unique(ref).size)
    if qdq:
        t = time.perf_counter()
        got_qdq = ort_qdq(model, calib, x)
        row["ort_qdq_snr_db"] = snr_db(ref, got_qdq)
        # the same numbers (to onnxruntime's float32 scale arithmetic), not only the
        # same SNR
        diff = np.abs(real.reshape(got_qdq.shape) - got_qdq).max()
        row["golden_vs_ort_qdq_rel_diff"] = float(diff / max(np.abs(got_qdq).max(), 1e-30))
        row["golden_vs_ort_qdq_steps"] = float(diff / scale)  # in golden output steps
        row["golden_equals_ort_qdq"] = row["golden_vs_ort_qdq_rel_diff"] < 1e-5
        row["seconds"]["ort_qdq"] = time.perf_counter() - t
    row["status"] = "pass" if row["iss_equals_golden"] else "mismatch"
    row["stage"] = "done"
    return row


def _blocked(row: dict, error: Exception, start: float) -> dict:
    text = str(error)
    row["seconds"][row["stage"]] = time.perf_counter() - start
    row["blocked_by"] = "\n".join(text.splitlines()[:4])
    row["needs"] = _needs(text)
    return row
