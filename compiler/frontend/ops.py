"""Translation of ONNX nodes into IR layers, with the legality rules.

Each supported operator has one translator. A translator either returns the
layers a node becomes or records :class:`Issue` objects saying why the node cannot
be mapped; the frontend collects the issues of every node before it gives up, so
the user sees all of them at once.

The layers produced here still contain the frontend-only kinds
(:data:`compiler.ir.FRONTEND_KINDS`); the lowering passes remove them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper

from compiler.ir import Activation, IRError, Layer, OpKind, classify_clamp, conv_kind, infer_shape
from compiler.table_act import TableActivation
from hw.arch import KERNEL_SIZES
from hw.isa import ENGINE_STRIDES
from sim.golden import window_counts

__all__ = [
    "CONV_KERNELS",
    "CONV_STRIDES",
    "HOST_OPS",
    "POOL_MAX_KERNEL",
    "Issue",
    "NodeTranslator",
]

#: Convolution kernel sizes the line buffers and convolvers support.
CONV_KERNELS = KERNEL_SIZES
#: Convolution strides the window generator supports.
CONV_STRIDES = ENGINE_STRIDES
#: Largest pooling window (per axis) of the pooling unit.
POOL_MAX_KERNEL = 7
#: Operators accepted as the final node(s), run on the host.
HOST_OPS = ("Softmax", "LogSoftmax")


@dataclass(frozen=True)
class Issue:
    """One reason a model cannot be mapped.

    Parameters
    ----------
    node : str
        Node name (or the graph input / tensor name for graph-level issues).
    op_type : str
        ONNX operator, or ``"input"`` / ``"model"`` for graph-level issues.
    reason : str
        What is wrong and, where possible, what to do.
    """

    node: str
    op_type: str
    reason: str

    def __str__(self) -> str:
        return f"{self.node} ({self.op_type}): {self.reason}"


class _Reject(Exception):
    """Raised inside a translator to record one issue for the current node."""


class _Downstream(Exception):
    """The node reads a tensor whose shape is unknown because its producer was
    refused: the producer's issue already covers it."""


def _chw(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """ONNX shape with batch 1 -> IR (C, H, W)."""
    if len(shape) == 4:
        return (shape[1], shape[2], shape[3])
    if len(shape) == 3:
        return (shape[1], 1, shape[2])
    if len(shape) == 2:
        return (shape[1], 1, 1)
    raise _Reject(f"tensor of rank {len(shape)} (shape {list(shape)}) has no (N, C, H, W), "
                  f"(N, C, L) or (N, K) layout")


class NodeTranslator:
    """Translates the nodes of one prepared ONNX graph.

    Parameters
    ----------
    consts : dict of str to numpy.ndarray
        Constant tensors (initializers, after constant folding).
    shapes : dict of str to tuple of int
        Static ONNX shapes (batch included) of the non-constant tensors.
    opset : int
        Default-domain opset of the model.
    used : set of str
        Tensors read by some node or output by the graph.
    """

    def __init__(self, consts, shapes, opset: int, used=frozenset()):
        self.consts = consts
        self.shapes = shapes
        self.opset = opset
        self.used = used
        self.issues: list[Issue] = []
        # Outputs of refused nodes: downstream shape problems are not new issues.
        self.refused: set[str] = set()

    # Helpers ------------------------------------------------------------------------

    def const(self, name: str, what: str) -> np.ndarray:
        if name not in self.consts:
            raise _Reject(f"{what} ({name!r}) must be a constant")
        return self.consts[name]

    def shape(self, name: str) -> tuple[int, ...]:
        if name not in self.shapes:
            if name in self.refused:
                raise _Downstream(name)
            raise _Reject(f"tensor {name!r} has a dynamic or unknown shape; export the model "
                          f"with fixed input dimensions")
        return self.shapes[name]

    def activation_input(self, node: onnx.NodeProto) -> str:
        x = node.input[0]
        if x in self.consts:
            raise _Reject("the data input is a constant (fold it before export)")
        self.shape(x)
        return x

    def _extra_outputs_used(self, node: onnx.NodeProto) -> bool:
        """Whether anything reads an output after the first (mask, indices, statistics)."""
        return any(o and o in self.used for o in node.output[1:])

    @staticmethod
    def attrs(node: onnx.NodeProto) -> dict:
        return {a.name: helper.get_attribute_value(a) for a in node.attribute}

    # Driver -------------------------------------------------------------------------

    def translate(self, node: onnx.NodeProto, name: str) -> list[Layer]:
        """Layers for ``node`` (named ``name``); records issues and returns ``[]`` if
        the node cannot be mapped."""
        if node.domain not in ("", "ai.onnx"):
            return self._refuse(node, Issue(name, f"{node.domain}.{node.op_type}",
                                            f"operator from domain {node.domain!r} is not "
                                            f"supported"))
        handler = getattr(self, f"op_{node.op_type}", None)
        if node.op_type in ("Shape", "Size") and node.input[0] in self.refused:
            return self._refuse(node, None)
        if handler is None:
            return self._refuse(node, Issue(name, node.op_type,
                                            _unsupported_reason(node.op_type)))
        try:
            layers = handler(node, name)
            self._check_shapes(node, layers)
        except _Reject as e:
            return self._refuse(node, Issue(name, node.op_type, str(e)))
        except _Downstream:
            return self._refuse(node, None)
        for layer in layers:
            layer.origin = (name,)
        return layers

    def _refuse(self, node: onnx.NodeProto, issue: Issue | None) -> list[Layer]:
        if issue is not None:
            self.issues.append(issue)
        self.refused.update(o for o in node.output if o)
        return []

    def _check_shapes(self, node: onnx.NodeProto, layers: list[Layer]) -> None:
        known = {}
        for layer in layers:
            try:
                in_shapes = [known[t] if t in known else _chw(self.shape(t))
                             for t in layer.inputs]
                known[layer.output] = infer_shape(layer, in_shapes)
            except IRError as e:
                raise _Reject(str(e).split(": ", 1)[-1]) from None
        out = node.output[0]
        expected = _chw(self.shape(out))
        if known.get(out) != expected:
            raise _Reject(f"output shape {list(self.shape(out))} does not follow from the "
                          f"node's attributes as ConvForge computes them "
                          f"({known.get(out)} as C, H, W)")

    # Convolution --------------------------------------------------------------------

    def _spatial_attrs(self, attrs, rank, problems, *, kernel=None, dilated=False):
        """kernel, stride, pads (top, left, bottom, right) of a 1-D or 2-D window op.

        Appends every unsupported attribute to ``problems``.
        """
        nd = rank - 2
        if nd not in (1, 2):
            raise _Reject(f"only 1-D and 2-D windows are supported, not {nd}-D")
        auto_pad = attrs.get("auto_pad", b"NOTSET")
        auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
        if auto_pad not in ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"):
            problems.append(f"auto_pad={auto_pad} is not one of NOTSET, VALID, SAME_UPPER, "
                            f"SAME_LOWER")
        k = list(attrs.get("kernel_shape", kernel if kernel is not None else []))
        if len(k) != nd:
            raise _Reject(f"kernel_shape {k} does not have {nd} dimensions")
        s = list(attrs.get("strides", [1] * nd))
        p = list(attrs.get("pads", [0] * (2 * nd)))
        d = list(attrs.get("dilations", [1] * nd))
        if any(v != 1 for v in d) and not dilated:
            problems.append(f"dilations {d} are not supported (only 1)")
        if any(v < 1 for v in d):
            problems.append(f"dilations {d} must be at least 1")
        if any(v < 0 for v in p):
            problems.append(f"negative pads {p} are not supported")
        if auto_pad != "NOTSET":
            p = [0] * (2 * nd)  # VALID; SAME_* pads follow from the input (_auto_pads)
        if nd == 1:
            return (1, k[0]), (1, s[0]), (0, p[0], 0, p[1])
        return (k[0], k[1]), (s[0], s[1]), (p[0], p[1], p[2], p[3])

    def _auto_pads(self, attrs, x, kernel, stride, pads):
        """``pads`` of ``auto_pad=SAME_UPPER / SAME_LOWER`` for input ``x`` (output size
        ``ceil(in / stride)``; the odd pad goes to the end for UPPER, the start for LOWER)."""
        auto_pad = attrs.get("auto_pad", b"NOTSET")
        auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
        if auto_pad not in ("SAME_UPPER", "SAME_LOWER"):
            return pads
        _, h, w = _chw(self.shape(x))
        out = []
        for size, k, st in ((h, kernel[0], stride[0]), (w, kernel[1], stride[1])):
            total = max(0, (-(-size // st) - 1) * st + k - size)
            small = total // 2
            out.append((small, total - small) if auto_pad == "SAME_UPPER"
                       else (total - small, small))
        return (out[0][0], out[1][0], out[0][1], out[1][1])

    def op_Conv(self, node, name):
        attrs = self.attrs(node)
        w = self.const(node.input[1], "the weight")
        rank = w.ndim
        problems = []
        # Attribute rules first: they hold whatever the input's shape turns out to be.
        kernel, stride, pads = self._spatial_attrs(attrs, rank, problems, kernel=w.shape[2:],
                                                   dilated=True)
        spatial = slice(4 - rank, None)  # the W axis only for Conv1d
        if any(k < 1 for k in kernel[spatial]):
            problems.append(f"kernel size {list(w.shape[2:])} is not supported (each must be "
                            f"at least 1)")
        if any(s < 1 for s in stride[spatial]):
            problems.append(f"strides {list(stride[spatial])} are not supported (each must "
                            f"be at least 1)")
        groups = int(attrs.get("group", 1))
        m = w.shape[0]
        if problems:
            raise _Reject("; ".join(problems))
        x = self.activation_input(node)
        if len(self.shape(x)) != rank:
            raise _Reject(f"weight of rank {rank} does not match input of rank "
                          f"{len(self.shape(x))}")
        c = self.shape(x)[1]
        if groups != 1 and (groups < 1 or c % groups or m % groups
                            or w.shape[1] * groups != c):
            raise _Reject(f"group={groups} does not divide the {c} input and {m} output "
                          f"channels with a weight of {w.shape[1]} channels per group")
        w = np.asarray(w, dtype=np.float32)
        if rank == 3:
            w = w[:, :, None, :]
        w, kernel = _dilate(w, attrs.get("dilations", [1] * (rank - 2)))
        pads = self._auto_pads(attrs, x, kernel, stride, pads)
        bias = None
        if len(node.input) > 2 and node.input[2]:
            bias = np.asarray(self.const(node.input[2], "the bias"), dtype=np.float32)
            bias = bias.reshape(-1)
        kind = conv_kind(c, m, kernel, stride, pads, groups)
        return [Layer(name, kind, [x], [node.output[0]], kernel=kernel, stride=stride,
                      pads=pads, groups=groups, weight=np.ascontiguousarray(w), bias=bias)]

    # Fully connected ----------------------------------------------------------------

    def op_Gemm(self, node, name):
        attrs = self.attrs(node)
        x = self.activation_input(node)
        if len(self.shape(x)) != 2:
            raise _Reject(f"input must be 2-D (N, K), not {list(self.shape(x))}")
        if attrs.get("transA", 0):
            raise _Reject("transA=1 is not supported")
        b = np.asarray(self.const(node.input[1], "operand B (the weight)"), dtype=np.float32)
        w = b if attrs.get("transB", 0) else b.T
        w = np.ascontiguousarray(w * np.float32(attrs.get("alpha", 1.0)), dtype=np.float32)
        bias = None
        if len(node.input) > 2 and node.input[2]:
            c = np.asarray(self.const(node.input[2], "operand C (the bias)"), dtype=np.float32)
            try:
                c = np.broadcast_to(c, (1, w.shape[0]))
            except ValueError:
                raise _Reject(f"operand C of shape {list(c.shape)} is not a per-output bias") \
                    from None
            bias = (c[0] * np.float32(attrs.get("beta", 1.0))).astype(np.float32)
        return [Layer(name, OpKind.FC, [x], [node.output[0]], weight=w, bias=bias)]

    def op_MatMul(self, node, name):
        x = self.activation_input(node)
        if len(self.shape(x)) != 2:
            raise _Reject(f"input must be 2-D (N, K), not {list(self.shape(x))}")
        b = np.asarray(self.const(node.input[1], "the second operand (the weight)"),
                       dtype=np.float32)
        if b.ndim != 2:
            raise _Reject(f"weight must be 2-D, not {list(b.shape)}")
        return [Layer(name, OpKind.FC, [x], [node.output[0]],
                      weight=np.ascontiguousarray(b.T))]

    # Normalization and per-channel affine --------------------------------------------

    def op_BatchNormalization(self, node, name):
        attrs = self.attrs(node)
        x = self.activation_input(node)
        if attrs.get("training_mode", 0):
            raise _Reject("training_mode=1 is not supported; export the model in eval mode")
        if self._extra_outputs_used(node):
            raise _Reject("running statistics outputs are not supported; export in eval mode")
        if attrs.get("spatial", 1) != 1:
            raise _Reject("spatial=0 is not supported")
        gamma, beta, mean, var = (np.asarray(self.const(node.input[i], what), np.float64)
                                  for i, what in ((1, "scale"), (2, "B"), (3, "mean"),
                                                  (4, "var")))
        eps = float(attrs.get("epsilon", 1e-5))
        scale = gamma / np.sqrt(var + eps)
        shift = beta - mean * scale
        return [self._scale(node, name, x, scale, shift)]

    def _scale(self, node, name, x, scale, shift) -> Layer:
        c = _chw(self.shape(x))[0]
        try:
            scale = np.broadcast_to(np.asarray(scale, np.float32).reshape(-1), (c,)).copy()
            shift = np.broadcast_to(np.asarray(shift, np.float32).reshape(-1), (c,)).copy()
        except ValueError:
            raise _Reject(f"per-channel parameters of sizes {np.size(scale)} and "
                          f"{np.size(shift)} do not match the input's {c} channels") from None
        return Layer(name, OpKind.SCALE, [x], [node.output[0]], weight=scale, bias=shift)

    def _per_channel(self, x: str, value: np.ndarray) -> np.ndarray:
        """A constant operand that broadcasts per channel of ``x`` -> (C,) values."""
        rank = len(self.shape(x))
        c = _chw(self.shape(x))[0]
        v = np.asarray(value, dtype=np.float32)
        if v.ndim > rank:
            raise _Reject(f"constant of shape {list(v.shape)} broadcasts beyond the input")
        full = (1,) * (rank - v.ndim) + v.shape
        # Channel axis is 1; every other axis must have extent 1.
        if any(d != 1 for i, d in enumerate(full) if i != 1) or full[1] not in (1, c):
            raise _Reject(f"constant operand of shape {list(v.shape)} is not per-channel "
                          f"(only scalars and per-channel constants are supported)")
        return np.broadcast_to(v.reshape(-1), (c,)).astype(np.float32)

    def _binary_const(self, node):
        """(data input, constant (C,) values, constant is the first operand) or None."""
        a, b = node.input[0], node.input[1]
        if a in self.consts and b in self.consts:
            raise _Reject("both operands are constants (fold them before export)")
        if b in self.consts:
            return a, self._per_channel(a, self.consts[b]), False
        if a in self.consts:
            return b, self._per_channel(b, self.consts[a]), True
        return None

    def op_Add(self, node, name):
        const = self._binary_const(node)
        if const is not None:
            x, v, _ = const
            return [self._scale(node, name, x, 1.0, v)]
        return [self._add(node, name, node.input[0], node.input[1], node.output[0])]

    def _add(self, node, name, a, b, out) -> Layer:
        sa, sb = self.shape(a), self.shape(b)
        if sa != sb:
            raise _Reject(f"element-wise add of shapes {list(sa)} and {list(sb)} needs "
                          f"broadcasting, which is not supported")
        return Layer(name, OpKind.ADD, [a, b], [out])

    def op_Sum(self, node, name):
        ins = list(node.input)
        if any(i in self.consts for i in ins):
            raise _Reject("constant operands of Sum are not supported")
        if len(ins) == 1:
            return [Layer(name, OpKind.IDENTITY, ins, [node.output[0]])]
        for other in ins[1:]:
            self._add(node, name, ins[0], other, node.output[0])
        # A chain of two-input adds, accumulating left to right.
        layers = []
        acc = ins[0]
        for i, other in enumerate(ins[1:], 1):
            last = i == len(ins) - 1
            out = node.output[0] if last else f"{node.output[0]}__partial{i}"
            layers.append(Layer(name if i == 1 else f"{name}__add{i}", OpKind.ADD,
                                [acc, other], [out]))
            acc = out
        return layers

    def op_Sub(self, node, name):
        const = self._binary_const(node)
        if const is None:
            raise _Reject("subtraction of two feature maps is not supported")
        x, v, first = const
        if first:
            return [self._scale(node, name, x, -1.0, v)]
        return [self._scale(node, name, x, 1.0, -v)]

    def op_Mul(self, node, name):
        const = self._binary_const(node)
        if const is None:
            return [self._product(node, name)]
        x, v, _ = const
        return [self._scale(node, name, x, v, 0.0)]

    def _product(self, node, name) -> Layer:
        """Product of two feature maps: same shape, or one of them ``(C, 1, 1)`` (a gate
        broadcast per channel), which becomes the second input."""
        a, b = node.input[0], node.input[1]
        sa, sb = _chw(self.shape(a)), _chw(self.shape(b))
        if sa[1:] == (1, 1) and sb[1:] != (1, 1):
            a, b, sa, sb = b, a, sb, sa
        if sb != sa and sb != (sa[0], 1, 1):
            raise _Reject(f"element-wise product of shapes {list(self.shape(a))} and "
                          f"{list(self.shape(b))} is not supported (same shape, or one value "
                          f"per channel)")
        return Layer(name, OpKind.MUL, [a, b], [node.output[0]])

    # Table activations ---------------------------------------------------------------

    def _table(self, node, name, function, **params) -> list[Layer]:
        x = self.activation_input(node)
        return [Layer(name, OpKind.TABLE, [x], [node.output[0]],
                      table_act=TableActivation.of(function, **params))]

    def op_Sigmoid(self, node, name):
        return self._table(node, name, "sigmoid")

    def op_Tanh(self, node, name):
        return self._table(node, name, "tanh")

    def op_HardSigmoid(self, node, name):
        attrs = self.attrs(node)
        return self._table(node, name, "hardsigmoid", alpha=attrs.get("alpha"),
                           beta=attrs.get("beta"))

    def op_HardSwish(self, node, name):
        return self._table(node, name, "hardswish")

    def op_LeakyRelu(self, node, name):
        return self._table(node, name, "leakyrelu", alpha=self.attrs(node).get("alpha"))

    def op_PRelu(self, node, name):
        x = self.activation_input(node)
        slope = self._per_channel(x, self.const(node.input[1], "slope"))
        if np.all(slope == slope[0]):
            return self._table(node, name, "leakyrelu", alpha=float(slope[0]))
        return self._table(node, name, "prelu", slope=slope)

    # Resizing --------------------------------------------------------------------------

    def op_Resize(self, node, name):
        x = self.activation_input(node)
        attrs = self.attrs(node)
        mode = attrs.get("mode", b"nearest")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        if mode != "nearest":
            raise _Reject(f"mode {mode!r} is not supported (only nearest)")
        src, dst = self.shape(x), self.shape(node.output[0])
        return [self._upsample(node, name, x, src, dst)]

    def op_Upsample(self, node, name):
        return self.op_Resize(node, name)

    def _upsample(self, node, name, x, src, dst) -> Layer:
        if len(src) != len(dst) or len(src) not in (3, 4) or tuple(src[:2]) != tuple(dst[:2]):
            raise _Reject(f"resizing {list(src)} to {list(dst)} is not supported (only the "
                          f"spatial axes)")
        (_, h, w), (_, oh, ow) = _chw(src), _chw(dst)
        if oh % h or ow % w:
            raise _Reject(f"resizing {h}x{w} to {oh}x{ow} needs integer scale factors")
        # Nearest with an integer factor is a pixel repeat for asymmetric / floor (what
        # PyTorch exports) and for half_pixel with any rounding to nearest (no ties occur).
        attrs = self.attrs(node)
        ctm = attrs.get("coordinate_transformation_mode", b"half_pixel")
        ctm = ctm.decode() if isinstance(ctm, bytes) else ctm
        nearest = attrs.get("nearest_mode", b"round_prefer_floor")
        nearest = nearest.decode() if isinstance(nearest, bytes) else nearest
        if (oh // h, ow // w) != (1, 1):
            exact = (ctm == "asymmetric" and nearest == "floor") or (
                ctm in ("half_pixel", "pytorch_half_pixel")
                and nearest in ("round_prefer_floor", "round_prefer_ceil"))
            if not exact:
                raise _Reject(f"coordinate_transformation_mode {ctm!r} with nearest_mode "
                              f"{nearest!r} is not a pixel repeat")
        return Layer(name, OpKind.RESIZE, [x], [node.output[0]], upsample=(oh // h, ow // w))

    def op_Div(self, node, name):
        const = self._binary_const(node)
        if const is None or const[2]:
            raise _Reject("only division by a constant is supported")
        x, v, _ = const
        if np.any(v == 0):
            raise _Reject("division by zero")
        return [self._scale(node, name, x, 1.0 / v, 0.0)]

    # Activations --------------------------------------------------------------------

    def op_Relu(self, node, name):
        x = self.activation_input(node)
        return [Layer(name, OpKind.ACTIVATION, [x], [node.output[0]],
                      activation=Activation.RELU)]

    def op_Clip(self, node, name):
        x = self.activation_input(node)
        attrs = self.attrs(node)
        if self.opset < 11:
            lo = float(attrs.get("min", -math.inf))
            hi = float(attrs.get("max", math.inf))
        else:
            lo, hi = -math.inf, math.inf
            if len(node.input) > 1 and node.input[1]:
                lo = float(self.const(node.input[1], "min"))
            if len(node.input) > 2 and node.input[2]:
                hi = float(self.const(node.input[2], "max"))
        if not lo < hi:
            raise _Reject(f"min {lo} must be below max {hi}")
        act, clip = classify_clamp(lo, hi)
        if act is Activation.NONE:
            return [Layer(name, OpKind.IDENTITY, [x], [node.output[0]])]
        return [Layer(name, OpKind.ACTIVATION, [x], [node.output[0]], activation=act,
                      clip=clip)]

    # Pooling ------------------------------------------------------------------------

    def _pool(self, node, name, kind):
        attrs = self.attrs(node)
        problems = []
        if self._extra_outputs_used(node):
            problems.append("the Indices output is not supported")
        rank = len(attrs.get("kernel_shape", [])) + 2
        kernel, stride, pads = self._spatial_attrs(attrs, rank, problems)
        if any(k > POOL_MAX_KERNEL for k in kernel):
            problems.append(f"kernel {list(kernel)} is larger than {POOL_MAX_KERNEL}")
        x = node.input[0]
        if x in self.shapes:
            pads = self._auto_pads(attrs, x, kernel, stride, pads)
        count_pads = None
        if kind is OpKind.AVGPOOL:
            # the divisor counts the explicit pads with count_include_pad=1, none without
            count_pads = pads if attrs.get("count_include_pad", 0) else (0, 0, 0, 0)
        if attrs.get("ceil_mode", 0) and x in self.shapes:
            # ceil rounding = floor rounding over more padding at the end, keeping the
            # last window's start inside the input (ONNX: a window that would start in
            # the end padding is dropped). The extra padding never wins a max and never
            # counts in an average's divisor.
            _, h, w = _chw(self.shapes[x])
            extra = []
            for size, k, st, pb, pe in ((h, kernel[0], stride[0], pads[0], pads[2]),
                                        (w, kernel[1], stride[1], pads[1], pads[3])):
                span = size + pb + pe - k
                out = -(-span // st) + 1 if span >= 0 else 1
                if (out - 1) * st >= size + pb:
                    out -= 1
                extra.append(max(0, (out - 1) * st + k - (size + pb + pe)))
            pads = (pads[0], pads[1], pads[2] + extra[0], pads[3] + extra[1])
        if count_pads is not None and x in self.shapes:
            _, h, w = _chw(self.shapes[x])
            try:
                rows = window_counts(h, kernel[0], stride[0], (pads[0], pads[2]),
                                     (count_pads[0], count_pads[2]))
                cols = window_counts(w, kernel[1], stride[1], (pads[1], pads[3]),
                                     (count_pads[1], count_pads[3]))
            except ValueError as e:
                problems.append(str(e))
            else:
                if rows.min() == kernel[0] and cols.min() == kernel[1]:
                    count_pads = None  # every window divides by KH * KW
        elif x not in self.shapes:
            if attrs.get("ceil_mode", 0):
                problems.append("ceil_mode=1 needs the input shape, which is unknown; give "
                                "the model static shapes")
            elif count_pads is not None and pads != count_pads:
                problems.append("count_include_pad=0 with padding needs the input shape "
                                "(the divisor varies along the border), which is unknown; "
                                "give the model static shapes")
            else:
                count_pads = None  # floor windows inside the counted padding: KH * KW each
        if problems:
            raise _Reject("; ".join(problems))
        x = self.activation_input(node)
        return [Layer(name, kind, [x], [node.output[0]], kernel=kernel, stride=stride,
                      pads=pads, count_pads=count_pads)]

    def op_MaxPool(self, node, name):
        if self.attrs(node).get("storage_order", 0):
            raise _Reject("storage_order=1 is not supported")
        return self._pool(node, name, OpKind.MAXPOOL)

    def op_AveragePool(self, node, name):
        (layer,) = self._pool(node, name, OpKind.AVGPOOL)
        shape = self.shape(layer.inputs[0])
        if (len(shape) == 4 and layer.kernel == tuple(shape[2:]) and not any(layer.pads)
                and layer.count_pads is None):
            # A window covering the whole map is a global average.
            return [Layer(name, OpKind.GAP, layer.inputs, layer.outputs)]
        return [layer]

    def op_GlobalAveragePool(self, node, name):
        x = self.activation_input(node)
        if len(self.shape(x)) not in (3, 4):
            raise _Reject(f"input must be (N, C, H, W) or (N, C, L), not "
                          f"{list(self.shape(x))}")
        return [Layer(name, OpKind.GAP, [x], [node.output[0]])]

    def op_GlobalMaxPool(self, node, name):
        x = self.activation_input(node)
        _, h, w = _chw(self.shape(x))
        if len(self.shape(x)) not in (3, 4) or max(h, w) > POOL_MAX_KERNEL:
            raise _Reject(f"global max pooling over {h}x{w} is larger than the pooling "
                          f"window limit {POOL_MAX_KERNEL}")
        return [Layer(name, OpKind.MAXPOOL, [x], [node.output[0]], kernel=(h, w),
                      stride=(h, w))]

    # Data movement ------------------------------------------------------------------

    def op_Concat(self, node, name):
        ins = list(node.input)
        if any(i in self.consts for i in ins):
            raise _Reject("constant operands of Concat are not supported")
        rank = len(self.shape(ins[0]))
        axis = int(self.attrs(node)["axis"])
        if axis % rank != 1:
            raise _Reject(f"concatenation along axis {axis} is not supported (only the "
                          f"channel axis 1)")
        if len(ins) == 1:
            return [Layer(name, OpKind.IDENTITY, ins, [node.output[0]])]
        return [Layer(name, OpKind.CONCAT, ins, [node.output[0]])]

    def op_Pad(self, node, name):
        attrs = self.attrs(node)
        x = self.activation_input(node)
        mode = attrs.get("mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        if mode != "constant":
            raise _Reject(f"mode={mode} is not supported (only zero padding)")
        rank = len(self.shape(x))
        if self.opset < 11:
            pads = list(attrs.get("pads", attrs.get("paddings", [])))
            value = float(attrs.get("value", 0.0))
        else:
            pads = [int(v) for v in self.const(node.input[1], "pads").reshape(-1)]
            value = 0.0
            if len(node.input) > 2 and node.input[2]:
                value = float(self.const(node.input[2], "constant_value").reshape(-1)[0])
            if len(node.input) > 3 and node.input[3]:
                axes = [int(a) % rank for a in self.const(node.input[3], "axes").reshape(-1)]
                full = [0] * (2 * rank)
                for i, a in enumerate(axes):
                    full[a], full[rank + a] = pads[i], pads[len(axes) + i]
                pads = full
        if value != 0.0:
            raise _Reject(f"constant_value {value} is not supported (only zero padding)")
        if len(pads) != 2 * rank:
            raise _Reject(f"pads {pads} do not match input rank {rank}")
        begin, end = pads[:rank], pads[rank:]
        if any(v < 0 for v in pads):
            raise _Reject(f"negative pads {pads} (cropping) are not supported")
        if begin[0] or end[0] or begin[1] or end[1]:
            raise _Reject(f"padding the batch or channel axis ({pads}) is not supported")
        if rank == 4:
            ir_pads = (begin[2], begin[3], end[2], end[3])
        elif rank == 3:
            ir_pads = (0, begin[2], 0, end[2])
        else:
            raise _Reject(f"padding a rank-{rank} tensor is not supported")
        if not any(ir_pads):
            return [Layer(name, OpKind.IDENTITY, [x], [node.output[0]])]
        return [Layer(name, OpKind.PAD, [x], [node.output[0]], pads=ir_pads)]

    # Shape-only ---------------------------------------------------------------------

    def _reshape_like(self, node, name):
        x = self.activation_input(node)
        src, dst = self.shape(x), self.shape(node.output[0])
        unsupported = _Reject(f"reshaping {list(src)} to {list(dst)} is not supported (only "
                              f"flattening to (1, K) before a fully connected layer)")
        if not (2 <= len(src) <= 4 and 2 <= len(dst) <= 4):
            raise unsupported
        if tuple(src) == tuple(dst):
            return [Layer(name, OpKind.IDENTITY, [x], [node.output[0]])]
        if len(dst) == 2 and dst[0] == 1 and dst[1] == math.prod(src[1:]):
            return [Layer(name, OpKind.FLATTEN, [x], [node.output[0]])]
        if _chw(src) == _chw(dst) and src[0] == dst[0]:
            # Same (C, H, W) view, e.g. (1, C, L) <-> (1, C, 1, L).
            return [Layer(name, OpKind.IDENTITY, [x], [node.output[0]])]
        raise unsupported

    def op_Flatten(self, node, name):
        axis = int(self.attrs(node).get("axis", 1))
        if axis != 1:
            raise _Reject(f"axis={axis} is not supported (only 1)")
        return self._reshape_like(node, name)

    def op_Reshape(self, node, name):
        self.const(node.input[1], "the target shape")
        return self._reshape_like(node, name)

    def op_Squeeze(self, node, name):
        return self._reshape_like(node, name)

    def op_Unsqueeze(self, node, name):
        return self._reshape_like(node, name)

    def op_Identity(self, node, name):
        x = self.activation_input(node)
        return [Layer(name, OpKind.IDENTITY, [x], [node.output[0]])]

    def op_Dropout(self, node, name):
        x = self.activation_input(node)
        if self._extra_outputs_used(node):
            raise _Reject("the mask output is not supported; export in eval mode")
        if len(node.input) > 2 and node.input[2]:
            mode = self.consts.get(node.input[2])
            if mode is None or bool(mode):
                raise _Reject("training_mode must be a constant false")
        return [Layer(name, OpKind.IDENTITY, [x], [node.output[0]])]


_NOT_A_CLAMP = "activation cannot be expressed as a clamp (only Relu and Clip are supported)"
_HOST_ONLY = "{} is supported only as the last node of the model (it runs on the host)"
_QDQ = ("quantization nodes are not part of a float model; import a pre-quantized (QDQ) "
        "model with compiler.frontend.qdq.import_qdq")

_REASONS = {
    "LRN": "local response normalization is not supported; remove it or replace it with "
           "BatchNormalization",
    "Elu": _NOT_A_CLAMP,
    **{op: _HOST_ONLY.format(op) for op in HOST_OPS},
    "ConvTranspose": "transposed convolution is not supported",
    "QuantizeLinear": _QDQ,
    "DequantizeLinear": _QDQ,
    "Shape": "the input shape is dynamic, so this Shape cannot be folded to a constant",
}


def _unsupported_reason(op_type: str) -> str:
    return _REASONS.get(op_type, f"operator {op_type} is not supported")


def _dilate(w, dilations):
    """A dilated kernel as the equivalent dense one with zero taps between (exact: the
    zeros quantize to zero): ``(weight, (KH, KW))``."""
    d = [int(v) for v in dilations]
    dh, dw = (1, d[0]) if len(d) == 1 else (d[0], d[1])
    if dh == dw == 1:
        return w, (w.shape[2], w.shape[3])
    m, c, kh, kw = w.shape
    out = np.zeros((m, c, dh * (kh - 1) + 1, dw * (kw - 1) + 1), dtype=w.dtype)
    out[:, :, ::dh, ::dw] = w
    return out, (out.shape[2], out.shape[3])
