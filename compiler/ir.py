"""The compiler's one intermediate representation: a typed graph of accelerator layers.

A :class:`Graph` is a list of :class:`Layer` objects in topological order, joined by
named :class:`Tensor` objects. It holds no ONNX types: the frontend
(:mod:`compiler.frontend.onnx`) translates a model into it, and every later pass
(folding, fusion, quantization, mapping, code generation) reads and rewrites it.

Conventions
-----------
- Batch size is 1; tensor shapes are per sample, ``(C, H, W)``. A 1-D signal of
  ``C`` channels and length ``L`` is ``(C, 1, L)`` and a Conv1d is a conv with
  ``KH = 1``.
- Padding is ``(top, left, bottom, right)`` and is always zero padding (for max
  pooling the padded positions never win, as in ONNX).
- Float weights are ``float32`` numpy arrays in ONNX layout: conv ``(M, C // groups,
  KH, KW)``, fully connected ``(M, K)`` with ``K = C * H * W`` of its input in
  ``C, H, W`` order. Biases are ``(M,)``.
- A layer's activation is applied to its output. It is a clamp in the float domain
  (:attr:`Layer.act_bounds`) and becomes the ``lo``/``hi`` of the requantization
  once the graph is quantized. Max pooling, padding and concat carry none (the first
  two pass values through unchanged).
- Quantized fields live in an optional :class:`LayerQuant` per layer and a
  ``scale`` per tensor (``real = scale * integer``), filled by the quantization
  passes.

:func:`Graph.validate` checks all of this and is run after every pass
(:mod:`compiler.pipeline`). :func:`compiler.reference.run_float` executes a graph in
float32 numpy: it is the executable definition of each layer's meaning, used by tests
and by calibration.
"""

from __future__ import annotations

import copy
import enum
import math
from dataclasses import dataclass, field

import numpy as np

from compiler.table_act import TableActivation
from hw.isa import window_out

__all__ = [
    "FRONTEND_KINDS",
    "SPATIAL_KINDS",
    "WEIGHTED_KINDS",
    "Activation",
    "Graph",
    "HostOp",
    "IRError",
    "Layer",
    "LayerQuant",
    "OpKind",
    "Tensor",
    "classify_clamp",
    "combine_activations",
    "conv_kind",
    "infer_shape",
]


class IRError(Exception):
    """A graph breaks an invariant of the IR: a bug in the pass that produced it."""


class OpKind(enum.Enum):
    """What a layer computes; each kind maps onto one engine class."""

    #: KxK convolution (``groups == 1``, or grouped but not depthwise).
    CONV = "conv"
    #: Grouped convolution with one input channel per group (``groups == C``).
    DEPTHWISE = "depthwise"
    #: 1x1, stride 1, ungrouped convolution without padding.
    POINTWISE = "pointwise"
    #: Fully connected: the input is flattened in ``C, H, W`` order.
    FC = "fc"
    MAXPOOL = "maxpool"
    #: Average pooling: window sums over the window divisor (``Layer.count_pads``).
    AVGPOOL = "avgpool"
    #: Global average pooling to ``(C, 1, 1)``.
    GAP = "gap"
    #: Element-wise sum of two tensors of the same shape.
    ADD = "add"
    #: Concatenation along channels.
    CONCAT = "concat"
    #: Zero padding of a tensor that could not be folded into its consumer.
    PAD = "pad"

    # Kinds the frontend emits and the lowering passes remove (see FRONTEND_KINDS).

    #: Per-channel affine ``y = x * weight[c] + bias[c]`` (BatchNormalization, or an
    #: Add / Mul with a constant); folded into the producing layer or lowered to a
    #: depthwise 1x1 conv.
    SCALE = "scale"
    #: A lone activation; fused into the producing layer.
    ACTIVATION = "activation"
    #: Flatten to ``(C * H * W, 1, 1)``; absorbed by the fully connected layer it feeds.
    FLATTEN = "flatten"
    #: No operation (Dropout, Identity, a no-op Reshape); removed.
    IDENTITY = "identity"
    #: A channel view: output channel ``j`` is input channel ``Layer.select[j]``
    #: (channel shuffle, Slice / Split along channels); folded into weights
    #: (:mod:`compiler.passes.channels`).
    CHANNELS = "channels"

    # Element-wise unit kinds (after the frontend kinds to keep the order above).

    #: A table activation (:attr:`Layer.table_act`: Sigmoid, HardSwish, SiLU, Tanh,
    #: LeakyRelu, PRelu ...), looked up per element.
    TABLE = "table"
    #: Product of a feature map and a second input of the same shape or of shape
    #: ``(C, 1, 1)`` (broadcast per channel: the gate of squeeze-and-excitation).
    MUL = "mul"
    #: Nearest-neighbour upsampling by the integer factors :attr:`Layer.upsample`.
    RESIZE = "resize"


#: Kinds that exist only between the frontend and the end of the lowering passes.
FRONTEND_KINDS = frozenset({OpKind.SCALE, OpKind.ACTIVATION, OpKind.FLATTEN, OpKind.IDENTITY,
                            OpKind.CHANNELS})
#: Kinds that carry weights (and a bias).
WEIGHTED_KINDS = frozenset({OpKind.CONV, OpKind.DEPTHWISE, OpKind.POINTWISE, OpKind.FC})
#: Kinds that slide a ``kernel`` window with ``stride`` and ``pads``.
SPATIAL_KINDS = frozenset({OpKind.CONV, OpKind.DEPTHWISE, OpKind.POINTWISE, OpKind.MAXPOOL,
                           OpKind.AVGPOOL})


class Activation(enum.Enum):
    """Activation fused into a layer's output."""

    NONE = "none"
    RELU = "relu"
    RELU6 = "relu6"
    #: A clamp to arbitrary float bounds (:attr:`Layer.clip`).
    CLIP = "clip"


@dataclass
class Tensor:
    """A feature map flowing between layers.

    Parameters
    ----------
    name : str
        Unique name (the ONNX value name).
    shape : tuple of int
        Per-sample shape ``(C, H, W)``.
    scale : float or None
        Quantization step (``real = scale * integer``), set by quantization.
    """

    name: str
    shape: tuple[int, int, int]
    scale: float | None = None

    @property
    def size(self) -> int:
        """Number of elements of one sample."""
        return math.prod(self.shape)


@dataclass
class LayerQuant:
    """Integer parameters of a quantized layer (see ARCHITECTURE.md, "Numerics").

    The output of every layer is ``clamp(round_shift(acc * m, s), lo, hi)``. For
    weighted layers ``acc`` is the integer convolution plus ``bias``; for pooling
    it is the window sum (max pooling passes values through, ``m = 1, s = 0``);
    for add and concat each input is first multiplied by its own entry of
    ``input_m`` and ``m`` is 1.

    Parameters
    ----------
    weight_scheme : str
        One of :data:`hw.arch.WEIGHT_SCHEMES` (``"uniform"``, ``"pot"``, ``"apot"``).
    weight : numpy.ndarray or None
        Integer weights (int64), same layout as :attr:`Layer.weight`.
    bias : numpy.ndarray or None
        Integer bias (int64) at the accumulator scale, ``(M,)``.
    weight_scale : numpy.ndarray or None
        Float weight step per output channel ``(M,)`` (or ``(1,)`` per layer).
    m : numpy.ndarray
        Unsigned multipliers (int64), ``(M,)`` per channel or ``(1,)`` per layer.
    s : numpy.ndarray
        Right shifts (int64), same shape as ``m``.
    lo, hi : int
        Output clamp; encodes the activation.
    input_scales : tuple of float
        Scales of the inputs, in :attr:`Layer.inputs` order.
    output_scale : float
        Scale of the output.
    input_m : tuple of int
        Per-input multipliers of add and concat; empty otherwise.
    act_bits, weight_bits : int
        Widths the integers were quantized to.
    """

    weight_scheme: str = "uniform"
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    weight_scale: np.ndarray | None = None
    m: np.ndarray = field(default_factory=lambda: np.ones(1, dtype=np.int64))
    s: np.ndarray = field(default_factory=lambda: np.zeros(1, dtype=np.int64))
    lo: int = -128
    hi: int = 127
    input_scales: tuple[float, ...] = ()
    output_scale: float = 1.0
    input_m: tuple[int, ...] = ()
    act_bits: int = 8
    weight_bits: int = 8
    #: Activation tables of a TABLE layer, ``(1 or C, 2**act_bits)`` int64
    #: (:func:`compiler.table_act.activation_tables`).
    table: np.ndarray | None = None
    #: AVGPOOL with :attr:`Layer.count_pads`: multiplier and shift per window divisor
    #: ``n`` (index ``n``, ``KH * KW + 1`` entries, int64;
    #: :func:`sim.golden.avg_pool2d_counted`); ``m`` / ``s`` then hold the full window's.
    div_m: np.ndarray | None = None
    div_s: np.ndarray | None = None


@dataclass
class Layer:
    """One accelerator operation.

    Parameters
    ----------
    name : str
        Unique, stable name (the ONNX node name, or a synthesized one).
    kind : OpKind
    inputs : list of str
        Input tensor names (two or more for add and concat, one otherwise).
    outputs : list of str
        Output tensor names (exactly one).
    kernel : tuple of int
        ``(KH, KW)``; ``(1, 1)`` for kinds without a window.
    stride : tuple of int
        ``(SH, SW)``.
    pads : tuple of int
        Zero padding ``(top, left, bottom, right)``.
    groups : int
        Convolution groups (``C`` for depthwise).
    activation : Activation
    clip : tuple of float or None
        Bounds of :attr:`Activation.CLIP`; ``None`` for the other activations.
    weight, bias : numpy.ndarray or None
        Float32 parameters of weighted kinds (see the module conventions).
    quant : LayerQuant or None
        Integer parameters, once quantized.
    origin : tuple of str
        Names of the model nodes merged into this layer (for reports).
    select : tuple of int or None
        Input channel of each output channel of a CHANNELS layer.
    """

    name: str
    kind: OpKind
    inputs: list[str]
    outputs: list[str]
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    groups: int = 1
    activation: Activation = Activation.NONE
    clip: tuple[float, float] | None = None
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    quant: LayerQuant | None = None
    origin: tuple[str, ...] = ()
    select: tuple[int, ...] | None = None
    #: The activation of a TABLE layer (:class:`compiler.table_act.TableActivation`).
    table_act: TableActivation | None = None
    #: ``(SH, SW)`` integer upsampling factors of a RESIZE layer.
    upsample: tuple[int, int] = (1, 1)
    #: AVGPOOL: the part of :attr:`pads` counted in each window's divisor
    #: (:func:`sim.golden.window_counts`), ``(top, left, bottom, right)``; ``None`` when
    #: every window divides by ``KH * KW`` (no padding, or ONNX ``count_include_pad=1``
    #: without ``ceil_mode`` overhang).
    count_pads: tuple[int, int, int, int] | None = None

    @property
    def output(self) -> str:
        """The single output tensor name."""
        return self.outputs[0]

    @property
    def act_bounds(self) -> tuple[float, float]:
        """The float clamp the activation applies: ``(lo, hi)``, possibly infinite."""
        if self.activation is Activation.NONE:
            return (-math.inf, math.inf)
        if self.activation is Activation.RELU:
            return (0.0, math.inf)
        if self.activation is Activation.RELU6:
            return (0.0, 6.0)
        return self.clip

    @property
    def out_channels(self) -> int | None:
        """Output channels of a weighted layer, else ``None``."""
        return None if self.weight is None else int(self.weight.shape[0])


@dataclass
class HostOp:
    """An operation left to the host after the accelerator graph (e.g. Softmax).

    Parameters
    ----------
    name : str
        Model node name.
    op_type : str
        Model operator (``"Softmax"``).
    input, output : str
        Tensor names; ``input`` is a graph output of the accelerator graph.
    attrs : dict
        Plain attributes (e.g. ``{"axis": 1}``).
    """

    name: str
    op_type: str
    input: str
    output: str
    attrs: dict = field(default_factory=dict)


@dataclass
class Graph:
    """A typed layer graph (batch size 1).

    Parameters
    ----------
    name : str
    inputs : list of str
        Graph input tensor names.
    outputs : list of str
        Graph output tensor names (accelerator outputs; host ops may follow).
    tensors : dict of str to Tensor
        Every tensor, graph inputs included.
    layers : list of Layer
        In topological order.
    host_ops : list of HostOp
        Operations run on the host after the accelerator, in order.
    notes : list of str
        Remarks made while importing (e.g. a dynamic batch fixed to 1).
    lowered : bool
        Set by the last lowering pass: from then on :data:`FRONTEND_KINDS` are
        invalid and every layer maps onto an engine.
    """

    name: str
    inputs: list[str]
    outputs: list[str]
    tensors: dict[str, Tensor] = field(default_factory=dict)
    layers: list[Layer] = field(default_factory=list)
    host_ops: list[HostOp] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    lowered: bool = False

    # Queries ------------------------------------------------------------------------

    def layer(self, name: str) -> Layer:
        """The layer called ``name``."""
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"No layer named {name!r}")

    def producer(self, tensor: str) -> Layer | None:
        """The layer writing ``tensor`` (``None`` for graph inputs)."""
        for layer in self.layers:
            if tensor in layer.outputs:
                return layer
        return None

    def consumers(self, tensor: str) -> list[Layer]:
        """The layers reading ``tensor``, in order."""
        return [layer for layer in self.layers if tensor in layer.inputs]

    def shape(self, tensor: str) -> tuple[int, int, int]:
        return self.tensors[tensor].shape

    def copy(self) -> Graph:
        """A deep copy (passes that must not mutate their input use it)."""
        return copy.deepcopy(self)

    def unique_name(self, base: str) -> str:
        """A layer or tensor name starting with ``base`` not used yet."""
        taken = set(self.tensors) | {layer.name for layer in self.layers}
        if base not in taken:
            return base
        i = 1
        while f"{base}_{i}" in taken:
            i += 1
        return f"{base}_{i}"

    # Invariants ---------------------------------------------------------------------

    def validate(self) -> Graph:
        """Check every IR invariant; raise :class:`IRError` naming the culprit.

        Checks topological order, unique names, that every tensor is produced once
        and consumed or output (no dangling tensors), attribute sanity per kind and
        that every output shape follows from the inputs. Returns ``self``.
        """
        if not self.inputs:
            raise IRError("Graph has no inputs")
        if not self.outputs:
            raise IRError("Graph has no outputs")
        for name, tensor in self.tensors.items():
            if tensor.name != name:
                raise IRError(f"Tensor registered as {name!r} is named {tensor.name!r}")
            if (len(tensor.shape) != 3
                    or not all(isinstance(d, int) and d > 0 for d in tensor.shape)):
                raise IRError(f"Tensor {name!r} has shape {tensor.shape!r}, not (C, H, W) > 0")
            if tensor.scale is not None and not tensor.scale > 0:
                raise IRError(f"Tensor {name!r} has non-positive scale {tensor.scale!r}")
        available = set()
        for name in self.inputs:
            if name not in self.tensors:
                raise IRError(f"Graph input {name!r} has no tensor")
            if name in available:
                raise IRError(f"Graph input {name!r} listed twice")
            available.add(name)
        names = set()
        consumed = set()
        for layer in self.layers:
            if self.lowered and layer.kind in FRONTEND_KINDS:
                raise IRError(f"Layer {layer.name!r} of kind {layer.kind.value} remains in a "
                              f"lowered graph")
            if layer.name in names:
                raise IRError(f"Layer name {layer.name!r} used twice")
            names.add(layer.name)
            for t in layer.inputs:
                if t not in self.tensors:
                    raise IRError(f"Layer {layer.name!r} reads unknown tensor {t!r}")
                if t not in available:
                    raise IRError(
                        f"Layer {layer.name!r} reads {t!r} before it is produced "
                        f"(layers are not in topological order)")
                consumed.add(t)
            if len(layer.outputs) != 1:
                raise IRError(f"Layer {layer.name!r} must have exactly one output, "
                              f"not {len(layer.outputs)}")
            out = layer.output
            if out not in self.tensors:
                raise IRError(f"Layer {layer.name!r} writes unknown tensor {out!r}")
            if out in available:
                raise IRError(f"Tensor {out!r} is produced twice (by layer {layer.name!r})")
            self._check_layer(layer)
            expected = infer_shape(layer, [self.tensors[t].shape for t in layer.inputs])
            if expected != self.tensors[out].shape:
                raise IRError(f"Layer {layer.name!r} produces shape {expected}, but tensor "
                              f"{out!r} has shape {self.tensors[out].shape}")
            available.add(out)
        for name in self.outputs:
            if name not in available:
                raise IRError(f"Graph output {name!r} is not produced")
        dangling = set(self.tensors) - consumed - set(self.outputs)
        if dangling:
            raise IRError(f"Dangling tensor(s) neither consumed nor output: "
                          f"{', '.join(sorted(dangling))}")
        previous = set(self.outputs)
        for op in self.host_ops:
            if op.input not in previous:
                raise IRError(f"Host op {op.name!r} reads {op.input!r}, which is neither a "
                              f"graph output nor a previous host op's output")
            previous.add(op.output)
        return self

    def _check_layer(self, layer: Layer) -> None:
        where = f"Layer {layer.name!r} ({layer.kind.value})"
        if not isinstance(layer.kind, OpKind):
            raise IRError(f"Layer {layer.name!r} has kind {layer.kind!r}, not an OpKind")
        if not isinstance(layer.activation, Activation):
            raise IRError(f"{where} has activation {layer.activation!r}, not an Activation")
        n_in = len(layer.inputs)
        if layer.kind in (OpKind.ADD, OpKind.CONCAT):
            if n_in < 2:
                raise IRError(f"{where} needs at least two inputs, not {n_in}")
            if layer.kind is OpKind.ADD and n_in != 2:
                raise IRError(f"{where} adds exactly two inputs, not {n_in}")
        elif layer.kind is OpKind.MUL:
            if n_in != 2:
                raise IRError(f"{where} multiplies exactly two inputs, not {n_in}")
        elif n_in != 1:
            raise IRError(f"{where} needs exactly one input, not {n_in}")
        for attr, length, low in (("kernel", 2, 1), ("stride", 2, 1), ("pads", 4, 0)):
            value = getattr(layer, attr)
            if (not isinstance(value, tuple) or len(value) != length
                    or not all(isinstance(v, int) and v >= low for v in value)):
                raise IRError(f"{where} has {attr} {value!r}, not a {length}-tuple of ints "
                              f">= {low}")
        if (layer.kind not in SPATIAL_KINDS and layer.kind is not OpKind.PAD
                and (layer.kernel != (1, 1) or layer.stride != (1, 1) or any(layer.pads))):
            raise IRError(f"{where} must have kernel (1, 1), stride (1, 1), no pads")
        if layer.kind is OpKind.PAD and (layer.kernel != (1, 1) or layer.stride != (1, 1)):
            raise IRError(f"{where} must have kernel (1, 1) and stride (1, 1)")
        if layer.activation is Activation.CLIP:
            if (layer.clip is None or len(layer.clip) != 2
                    or not layer.clip[0] < layer.clip[1]):
                raise IRError(f"{where} has clip bounds {layer.clip!r}, not (lo, hi), lo < hi")
        elif layer.clip is not None:
            raise IRError(f"{where} has clip bounds but activation {layer.activation.value}")
        if layer.kind in (OpKind.MAXPOOL, OpKind.PAD, OpKind.CONCAT, OpKind.FLATTEN,
                          OpKind.IDENTITY, OpKind.SCALE, OpKind.RESIZE) \
                and layer.activation is not Activation.NONE:
            raise IRError(f"{where} cannot carry an activation")
        if layer.kind is OpKind.ACTIVATION and layer.activation is Activation.NONE:
            raise IRError(f"{where} has no activation")
        if layer.kind is OpKind.CHANNELS:
            c = self.tensors[layer.inputs[0]].shape[0]
            sel = layer.select
            if (not isinstance(sel, tuple) or not sel
                    or not all(isinstance(i, int) and 0 <= i < c for i in sel)):
                raise IRError(f"{where} select must be a non-empty tuple of channels < {c}")
        if (layer.kind is OpKind.TABLE) != (layer.table_act is not None):
            raise IRError(f"{where}: a table activation belongs to (and only to) a table "
                          f"layer")
        if layer.kind is OpKind.TABLE and layer.table_act.slope is not None:
            c = self.tensors[layer.inputs[0]].shape[0]
            if np.shape(layer.table_act.slope) != (c,):
                raise IRError(f"{where} PRelu slopes must have shape ({c},)")
        if (layer.kind is not OpKind.RESIZE and layer.upsample != (1, 1)) or not (
                isinstance(layer.upsample, tuple) and len(layer.upsample) == 2
                and all(isinstance(v, int) and v >= 1 for v in layer.upsample)):
            raise IRError(f"{where} has upsample {layer.upsample!r}: a 2-tuple of ints >= 1, "
                          f"(1, 1) unless the layer resizes")
        if layer.quant is not None:
            self._check_quant(layer, where)
        if layer.kind in WEIGHTED_KINDS:
            self._check_weights(layer, where)
        elif layer.kind is OpKind.SCALE:
            c = self.tensors[layer.inputs[0]].shape[0]
            for attr in ("weight", "bias"):
                v = getattr(layer, attr)
                if not isinstance(v, np.ndarray) or v.dtype != np.float32 or v.shape != (c,):
                    raise IRError(f"{where} {attr} must be a float32 array of shape ({c},)")
        else:
            if layer.weight is not None or layer.bias is not None:
                raise IRError(f"{where} carries weights but is not a weighted kind")
            if layer.groups != 1:
                raise IRError(f"{where} has groups {layer.groups}, not 1")

    def _check_quant(self, layer: Layer, where: str) -> None:
        q = layer.quant
        if not isinstance(q, LayerQuant):
            raise IRError(f"{where} quant is {type(q).__name__}, not LayerQuant")
        if not q.lo < q.hi:
            raise IRError(f"{where} output clamp lo={q.lo} is not below hi={q.hi}")
        m, s = np.asarray(q.m), np.asarray(q.s)
        if m.shape != s.shape or m.ndim != 1:
            raise IRError(f"{where} multipliers {m.shape} and shifts {s.shape} must be 1-D "
                          f"arrays of one shape")
        if np.any(m < 0) or np.any(s < 0):
            raise IRError(f"{where} multipliers and shifts must be non-negative")
        m_out = layer.out_channels
        if m_out is not None and m.shape[0] not in (1, m_out):
            raise IRError(f"{where} has {m.shape[0]} multipliers for {m_out} output channels")
        if q.weight is not None and (layer.weight is None or q.weight.shape != layer.weight.shape):
            raise IRError(f"{where} integer weight shape {q.weight.shape} does not match the "
                          f"float weight")

    def _check_weights(self, layer: Layer, where: str) -> None:
        w = layer.weight
        if not isinstance(w, np.ndarray) or w.dtype != np.float32:
            raise IRError(f"{where} weight must be a float32 array")
        c_in = self.tensors[layer.inputs[0]].shape
        if layer.kind is OpKind.FC:
            if w.ndim != 2 or w.shape[1] != math.prod(c_in):
                raise IRError(f"{where} weight shape {w.shape} does not match input {c_in}")
            if layer.groups != 1:
                raise IRError(f"{where} has groups {layer.groups}, not 1")
        else:
            c = c_in[0]
            if w.ndim != 4 or w.shape[2:] != layer.kernel:
                raise IRError(f"{where} weight shape {w.shape} does not match kernel "
                              f"{layer.kernel}")
            if layer.groups < 1 or c % layer.groups or w.shape[0] % layer.groups \
                    or w.shape[1] * layer.groups != c:
                raise IRError(f"{where} weight shape {w.shape} and groups {layer.groups} do "
                              f"not match {c} input channels")
            if layer.kind is OpKind.DEPTHWISE and not (layer.groups == c == w.shape[0]):
                raise IRError(f"{where} must have groups == in == out channels")
            if layer.kind is OpKind.POINTWISE and (layer.kernel != (1, 1) or layer.groups != 1
                                                   or layer.stride != (1, 1) or any(layer.pads)):
                raise IRError(f"{where} must be 1x1, stride 1, ungrouped, unpadded")
            if layer.kind is OpKind.CONV and (layer.groups == c == w.shape[0] and c > 1):
                raise IRError(f"{where} is depthwise (groups == channels): use DEPTHWISE")
        b = layer.bias
        if b is not None and (not isinstance(b, np.ndarray) or b.dtype != np.float32
                              or b.shape != (w.shape[0],)):
            raise IRError(f"{where} bias must be a float32 array of shape ({w.shape[0]},)")


def conv_kind(in_channels: int, out_channels: int, kernel, stride, pads, groups) -> OpKind:
    """Classify a convolution: depthwise, pointwise or standard conv."""
    if groups == in_channels == out_channels and in_channels > 1:
        return OpKind.DEPTHWISE
    if groups == 1 and tuple(kernel) == (1, 1) and tuple(stride) == (1, 1) and not any(pads):
        return OpKind.POINTWISE
    return OpKind.CONV


def classify_clamp(lo: float, hi: float) -> tuple[Activation, tuple[float, float] | None]:
    """The activation a float clamp to ``[lo, hi]`` is, with its bounds if it is CLIP.

    Bounds at or beyond the float32 range count as absent.
    """
    finite_max = float(np.finfo(np.float32).max)
    if lo <= -finite_max:
        lo = -math.inf
    if hi >= finite_max:
        hi = math.inf
    if lo == -math.inf and hi == math.inf:
        return Activation.NONE, None
    if lo == 0.0 and hi == math.inf:
        return Activation.RELU, None
    if lo == 0.0 and hi == 6.0:
        return Activation.RELU6, None
    return Activation.CLIP, (float(lo), float(hi))


def combine_activations(first: Layer, second: Layer):
    """The activation of applying ``first``'s clamp and then ``second``'s.

    Returns ``(activation, clip)``, or ``None`` when the composition is a constant
    (disjoint ranges), which no layer's clamp can express.
    """
    lo1, hi1 = first.act_bounds
    lo2, hi2 = second.act_bounds
    lo = min(max(lo1, lo2), hi2)
    hi = max(min(hi1, hi2), lo2)
    if not lo < hi:
        return None
    return classify_clamp(lo, hi)


def infer_shape(layer: Layer, in_shapes: list[tuple[int, int, int]]) -> tuple[int, int, int]:
    """The output shape of ``layer`` given its input shapes; :class:`IRError` if none."""
    where = f"Layer {layer.name!r} ({layer.kind.value})"
    c, h, w = in_shapes[0]
    kh, kw = layer.kernel
    sh, sw = layer.stride
    top, left, bottom, right = layer.pads
    if layer.kind in SPATIAL_KINDS:
        if h + top + bottom < kh or w + left + right < kw:
            raise IRError(f"{where} kernel {layer.kernel} is larger than its padded input "
                          f"{(h + top + bottom, w + left + right)}")
        if max(top, bottom) >= kh or max(left, right) >= kw:
            raise IRError(f"{where} pads {layer.pads} must be smaller than kernel {layer.kernel}")
        oh = window_out(h, kh, sh, top, bottom)
        ow = window_out(w, kw, sw, left, right)
        oc = c if layer.weight is None else int(layer.weight.shape[0])
        return (oc, oh, ow)
    if layer.kind is OpKind.FC:
        return (int(layer.weight.shape[0]) if layer.weight is not None else 0, 1, 1)
    if layer.kind is OpKind.GAP:
        return (c, 1, 1)
    if layer.kind is OpKind.ADD:
        if any(s != in_shapes[0] for s in in_shapes):
            raise IRError(f"{where} input shapes differ: {in_shapes}")
        return in_shapes[0]
    if layer.kind is OpKind.CONCAT:
        if any(s[1:] != in_shapes[0][1:] for s in in_shapes):
            raise IRError(f"{where} input spatial shapes differ: {in_shapes}")
        return (sum(s[0] for s in in_shapes), h, w)
    if layer.kind is OpKind.PAD:
        return (c, h + top + bottom, w + left + right)
    if layer.kind in (OpKind.SCALE, OpKind.ACTIVATION, OpKind.IDENTITY, OpKind.TABLE):
        return in_shapes[0]
    if layer.kind is OpKind.CHANNELS:
        return (len(layer.select or ()), h, w)
    if layer.kind is OpKind.MUL:
        if in_shapes[1] not in (in_shapes[0], (c, 1, 1)):
            raise IRError(f"{where} multiplies {in_shapes[0]} by {in_shapes[1]}: the second "
                          f"input must have the same shape or one value per channel")
        return in_shapes[0]
    if layer.kind is OpKind.RESIZE:
        return (c, h * layer.upsample[0], w * layer.upsample[1])
    if layer.kind is OpKind.FLATTEN:
        return (c * h * w, 1, 1)
    raise IRError(f"{where}: unknown kind")


def __getattr__(name):
    # The float reference executor lives in compiler.reference; these names stay here.
    if name in ("run_float", "execute"):
        from compiler import reference
        return getattr(reference, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
