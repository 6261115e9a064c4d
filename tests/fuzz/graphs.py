"""Random ONNX graphs through import -> quantize -> compile -> ISS, against the golden runner.

:func:`random_case` draws, from one seed, a model (chains and branches of conv,
depthwise, pointwise, max / average / global pooling, add, concat and fully connected
layers, with random shapes, kernels, strides, pads, channel counts and activations), a
small arch (buffer sizes, engine parallelism, widths, weight scheme) and a quantization
(scale mode, pruning). :func:`run_case` takes it through the public entry points
(:func:`compiler.pipeline.import_model`, the quantization passes,
:func:`compiler.compile.compile_graph`) and classifies the outcome:

``legal``
    it compiled, and the ISS output equals the golden network runner bit for bit;
``refused``
    a :class:`compiler.errors.ConvForgeError` whose message is one line naming a node,
    layer, tensor or arch parameter (the CLI prints it as ``convforge compile: error``);
``failed``
    anything else: another exception (a traceback from deep inside), an unclear
    message, or an ISS result that differs from the golden runner.

Some of the draws are deliberately outside what the hardware maps (even or large
kernels, stride 3, dilations, grouped convolutions, pads larger than the kernel, tiny
buffers): they must be refused cleanly.
"""

from __future__ import annotations

import dataclasses
import tempfile
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from compiler.compile import compile_graph, verify_program
from compiler.errors import ConvForgeError, UnsupportedModelError
from compiler.pipeline import QUANT_PASSES, PassContext, import_model, run_passes
from hw.arch import ArchConfig

__all__ = ["Case", "Outcome", "check_iss_equals_golden", "random_arch", "random_case", "random_model", "run_case"]

#: Arch parameters a refusal may name instead of a node.
ARCH_PARAMETERS = tuple(f.name for f in dataclasses.fields(ArchConfig))


@dataclass
class Case:
    """One fuzz case: an ONNX model, an arch and quantization options."""
    seed: int
    model: onnx.ModelProto
    arch: ArchConfig
    scale_mode: str
    prune: float
    names: list = field(default_factory=list)  # node and tensor names a message may cite

    def describe(self) -> str:
        ops = [n.op_type for n in self.model.graph.node]
        return (f"seed {self.seed}: {len(ops)} nodes {ops}, scale_mode={self.scale_mode}, "
                f"prune={self.prune}, arch={self.arch.to_dict()}")


@dataclass
class Outcome:
    """Classification of one case: ``legal``, ``refused`` or ``failed``, with a detail."""
    kind: str
    detail: str = ""


def _choice(rng, items, p=None):
    return items[int(rng.choice(len(items), p=p))]


def random_arch(rng) -> ArchConfig:
    """A small random arch; some are too small for the model and must be refused."""
    act_bits = int(_choice(rng, [8, 8, 8, 6, 4, 10, 12, 16]))
    scheme = _choice(rng, ["uniform", "uniform", "pot", "apot"])
    weight_bits = int(_choice(rng, [8, 8, 8, 6, 5, 4, 4, 8, 6, 3]))
    acc_bits = int(_choice(rng, [32, 32, 24, 40]))
    acc_bits = max(acc_bits, act_bits + weight_bits)
    return ArchConfig(
        name="fuzz", act_bits=act_bits, weight_bits=weight_bits, acc_bits=acc_bits,
        bias_bits=int(_choice(rng, [32, 32, 24])),
        mult_bits=int(_choice(rng, [16, 16, 12, 8])), shift_bits=int(_choice(rng, [6, 6, 5])),
        weight_scheme=scheme, pot_exp_bits=int(_choice(rng, [3, 3, 2, 4])),
        conv_pi=int(rng.integers(1, 5)), conv_po=int(rng.integers(1, 5)),
        conv_k_max=int(_choice(rng, [3, 3, 3, 5, 5, 7, 7, 1])), dw_channels=int(rng.integers(1, 5)),
        pw_pi=int(_choice(rng, [1, 2, 4, 8])), pw_po=int(_choice(rng, [1, 2, 4, 8])),
        max_width=int(_choice(rng, [6, 10, 16, 24, 40])),
        max_height=int(_choice(rng, [6, 10, 16, 24, 40])),
        ibuf_bytes=int(_choice(rng, [256, 1024, 4096, 16384])),
        obuf_bytes=int(_choice(rng, [256, 1024, 4096, 16384])),
        wbuf_bytes=int(_choice(rng, [128, 512, 2048, 8192])),
        pbuf_entries=int(_choice(rng, [4, 16, 64, 256])),
        axi_data_bits=int(_choice(rng, [32, 64, 128])))


class _Builder:
    """Builds an ONNX graph op by op, tracking every tensor's (C, H, W) (or (N,) after FC)."""

    def __init__(self, rng, c, h, w):
        self.rng = rng
        self.nodes, self.inits = [], []
        self.shapes = {"x": (c, h, w)}
        self.consumed = set()
        self.count = 0

    def name(self, kind):
        self.count += 1
        return f"{kind}{self.count}"

    def init(self, name, value):
        self.inits.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    def node(self, op, inputs, kind, **attrs):
        name = self.name(kind)
        self.nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        self.consumed.update(i for i in inputs if i in self.shapes)
        return name

    def weight(self, name, shape):
        fan = max(1, int(np.prod(shape[1:])))
        return self.init(name, self.rng.normal(0, np.sqrt(2.0 / fan), shape))

    # Ops -------------------------------------------------------------------------------

    def activation(self, t):
        rng = self.rng
        r = rng.random()
        if r < 0.4:
            out = self.node("Relu", [t], "relu")
        elif r < 0.55:
            lo = self.init(self.name("lo"), 0.0)
            hi = self.init(self.name("hi"), 6.0)
            out = self.node("Clip", [t, lo, hi], "relu6")
        else:
            return t
        self.shapes[out] = self.shapes[t]
        return out

    def conv(self, t, kind, unit_stride=False):
        rng = self.rng
        c, h, w = self.shapes[t]
        group, dil = 1, 1
        if kind == "pw":
            kh = kw = 1
            out_c = int(rng.integers(1, 17))
        else:
            ks = [1, 3, 3, 3, 3, 5, 7, 1, 3, 2, 4] if rng.random() < 0.15 else [1, 3, 3, 5]
            kh = int(ks[rng.integers(len(ks))])
            kw = kh if rng.random() < 0.8 else int(ks[rng.integers(len(ks))])
            if kind == "dw":
                group, out_c = c, c
                if rng.random() < 0.05:
                    out_c = 2 * c  # channel multiplier: unsupported
            else:
                out_c = int(rng.integers(1, 17))
                if rng.random() < 0.04 and c % 2 == 0 and out_c % 2 == 0:
                    group = 2  # grouped convolution: unsupported
            if rng.random() < 0.02:
                dil = 2
        stride = int(_choice(self.rng, [1, 1, 1, 2, 2, 3] if rng.random() < 0.1 else [1, 1, 2]))
        if unit_stride:
            stride = 1
        sh, sw = (stride, stride) if rng.random() < 0.95 else (1, int(rng.integers(1, 3)))
        ekh, ekw = dil * (kh - 1) + 1, dil * (kw - 1) + 1
        if rng.random() < 0.7 or unit_stride:
            pads = [ekh // 2, ekw // 2, ekh // 2, ekw // 2]
        else:
            pads = [int(rng.integers(0, max(1, ekh + (rng.random() < 0.1)))),
                    int(rng.integers(0, max(1, ekw + (rng.random() < 0.1)))),
                    int(rng.integers(0, max(1, ekh))), int(rng.integers(0, max(1, ekw)))]
        oh = (h + pads[0] + pads[2] - ekh) // sh + 1
        ow = (w + pads[1] + pads[3] - ekw) // sw + 1
        if oh < 1 or ow < 1:
            return None
        wname = self.weight(self.name("w"), (out_c, c // group, kh, kw))
        inputs = [t, wname]
        if rng.random() < 0.8:
            inputs.append(self.init(self.name("b"), rng.normal(0, 0.1, out_c)))
        attrs = {"kernel_shape": [kh, kw], "strides": [sh, sw], "pads": pads}
        if group != 1:
            attrs["group"] = group
        if dil != 1:
            attrs["dilations"] = [dil, dil]
        out = self.node("Conv", inputs, {"conv": "conv", "dw": "dwconv", "pw": "pwconv"}[kind],
                        **attrs)
        self.shapes[out] = (out_c, oh, ow)
        if rng.random() < 0.1:  # BatchNormalization, folded by the frontend
            s = self.init(self.name("bn_s"), rng.uniform(0.5, 1.5, out_c))
            b = self.init(self.name("bn_b"), rng.normal(0, 0.1, out_c))
            m = self.init(self.name("bn_m"), rng.normal(0, 0.1, out_c))
            v = self.init(self.name("bn_v"), rng.uniform(0.5, 1.5, out_c))
            bn = self.node("BatchNormalization", [out, s, b, m, v], "bn")
            self.shapes[bn] = self.shapes[out]
            out = bn
        return self.activation(out)

    def pool(self, t):
        rng = self.rng
        c, h, w = self.shapes[t]
        r = rng.random()
        if r < 0.15:
            out = self.node("GlobalAveragePool", [t], "gap")
            self.shapes[out] = (c, 1, 1)
            return out
        op = "MaxPool" if r < 0.6 else "AveragePool"
        k = int(_choice(rng, [2, 2, 3, 3, 1, 4] if rng.random() < 0.9 else [5, 7, 8]))
        s = int(_choice(rng, [1, 2, 2, 3] if rng.random() < 0.9 else [4, 5]))
        p = int(rng.integers(0, k)) if rng.random() < 0.3 else 0
        oh = (h + 2 * p - k) // s + 1
        ow = (w + 2 * p - k) // s + 1
        if oh < 1 or ow < 1:
            return None
        attrs = {"kernel_shape": [k, k], "strides": [s, s], "pads": [p, p, p, p]}
        if op == "AveragePool" and p and rng.random() < 0.5:
            attrs["count_include_pad"] = 1
        out = self.node(op, [t], "maxpool" if op == "MaxPool" else "avgpool", **attrs)
        self.shapes[out] = (c, oh, ow)
        return out

    def add(self, t):
        """``t + f(t)`` (a residual branch) or the sum of two tensors of equal shape."""
        same = [u for u, s in self.shapes.items()
                if u != t and s == self.shapes[t] and len(s) == 3]
        if same and self.rng.random() < 0.5:
            other = same[int(self.rng.integers(len(same)))]
        else:
            c, h, w = self.shapes[t]
            other = self.node("Conv", [t, self.weight(self.name("w"), (c, c, 3, 3))], "conv",
                              kernel_shape=[3, 3], pads=[1, 1, 1, 1])
            self.shapes[other] = (c, h, w)
            other = self.activation(other)
        out = self.node("Add", [t, other], "add")
        self.shapes[out] = self.shapes[t]
        return self.activation(out) if self.rng.random() < 0.3 else out

    def concat(self, t):
        c, h, w = self.shapes[t]
        same = [u for u, s in self.shapes.items() if u != t and len(s) == 3 and s[1:] == (h, w)]
        if same and self.rng.random() < 0.5:
            other = same[int(self.rng.integers(len(same)))]
        else:
            other = self.conv(t, "pw", unit_stride=True)
        out = self.node("Concat", [t, other], "concat", axis=1)
        self.shapes[out] = (c + self.shapes[other][0], h, w)
        return out

    def fc(self, t):
        rng = self.rng
        shape = self.shapes[t]
        if len(shape) == 3:
            flat = self.node("Flatten", [t], "flatten", axis=1)
            self.shapes[flat] = (int(np.prod(shape)),)
            t = flat
        n_in = self.shapes[t][0]
        n_out = int(rng.integers(1, 17))
        inputs = [t, self.weight(self.name("w"), (n_out, n_in))]
        if rng.random() < 0.8:
            inputs.append(self.init(self.name("b"), rng.normal(0, 0.1, n_out)))
        out = self.node("Gemm", inputs, "fc", transB=1)
        self.shapes[out] = (n_out,)
        return self.activation(out) if rng.random() < 0.5 else out


def random_model(rng) -> tuple[onnx.ModelProto, list]:
    """A random model and the names of its nodes and tensors."""
    c = int(rng.integers(1, 9))
    h = int(_choice(rng, [1, 4, 5, 8, 9, 12, 16]))
    w = int(_choice(rng, [4, 5, 8, 9, 12, 16, 20]))
    b = _Builder(rng, c, h, w)
    n_ops = int(rng.integers(1, 7))
    kinds = ["conv", "dw", "pw", "pool", "add", "concat", "fc"]
    p = np.array([0.25, 0.15, 0.15, 0.15, 0.1, 0.1, 0.1])
    for _ in range(n_ops):
        live = [t for t, s in b.shapes.items()]
        # mostly continue the newest tensor (chains), sometimes branch off an older one
        t = live[-1] if rng.random() < 0.75 else live[int(rng.integers(len(live)))]
        kind = kinds[int(rng.choice(len(kinds), p=p))]
        if len(b.shapes[t]) == 1:
            kind = "fc"
        if kind in ("conv", "dw", "pw"):
            b.conv(t, kind)
        else:
            getattr(b, kind)(t)
    outputs = [t for t in b.shapes if t not in b.consumed and t != "x"]
    if not outputs:
        outputs = [b.node("Relu", ["x"], "relu")]
        b.shapes[outputs[0]] = b.shapes["x"]
    ins = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, h, w])]
    outs = [helper.make_tensor_value_info(t, TensorProto.FLOAT, [1, *b.shapes[t]])
            for t in outputs]
    graph = helper.make_graph(b.nodes, "fuzz", ins, outs, b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    names = [n.name for n in b.nodes] + list(b.shapes)
    return model, names


def random_case(seed: int) -> Case:
    rng = np.random.default_rng(seed)
    model, names = random_model(rng)
    arch = random_arch(rng)
    scale_mode = _choice(rng, ["per_channel", "per_channel", "per_layer", "pot"])
    prune = float(_choice(rng, [0.0, 0.0, 0.0, 0.3, 0.6]))
    return Case(seed, model, arch, scale_mode, prune, names)


def _names_something(message: str, case: Case) -> bool:
    return any(f"'{n}'" in message or f'"{n}"' in message or f" {n} " in f" {message} "
               for n in case.names) or any(p in message for p in ARCH_PARAMETERS)


def _quantize(case: Case, graph):
    ctx = PassContext(arch=case.arch, options={
        "quant": {"scale_mode": case.scale_mode}, "calibration_seed": case.seed,
        **({"prune_sparsity": case.prune} if case.prune else {})})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return run_passes(graph, QUANT_PASSES, ctx)


def check_iss_equals_golden(graph, arch, result, seed) -> str | None:
    """Run the compiled program on the ISS with a seeded random input; ``None`` if every
    output equals the golden runner's, else what differs."""
    try:
        verify_program(graph, arch, result.program, result.program_bin, seed=seed)
    except ConvForgeError as e:
        if not str(e).startswith("Verification failed"):
            raise
        return str(e)
    return None


def run_case(case: Case, out_dir=None) -> Outcome:
    """Take ``case`` through import, quantization, compilation and the ISS; classify it."""
    tmp = None
    if out_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="convforge-fuzz-")
        out_dir = Path(tmp.name) / "out"
    try:
        graph = import_model(case.model, PassContext(arch=case.arch))
        qgraph = _quantize(case, graph)
        result = compile_graph(qgraph, case.arch, out_dir)
        diff = check_iss_equals_golden(qgraph, case.arch, result, case.seed)
        if diff is not None:
            return Outcome("failed", diff)
        return Outcome("legal", f"{len(result.program.instructions)} instructions")
    except ConvForgeError as e:
        message = str(e)
        if isinstance(e, UnsupportedModelError):
            # the legality report: a first line, then one line per unsupported node
            lines = message.strip().splitlines()
            bad = [line for line in lines[1:] if not _names_something(line, case)]
            if len(lines) < 2 or bad:
                return Outcome("failed", f"legality report names no node: {message!r}")
        elif "\n" in message.strip():
            return Outcome("failed", f"multi-line message: {message!r}")
        elif not _names_something(message, case):
            return Outcome("failed", f"message names no node, layer or parameter: {message!r}")
        return Outcome("refused", f"{type(e).__name__}: {message}")
    except Exception as e:  # noqa: BLE001 -- every other exception is a finding
        return Outcome("failed", "".join(traceback.format_exception(e)[-6:]))
    finally:
        if tmp is not None:
            tmp.cleanup()
