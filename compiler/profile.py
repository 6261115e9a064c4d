"""Per-layer profile of a lowered graph: work, data, intensity and engine class.

For every layer: its kind, input and output shapes, kernel and stride, MACs,
parameters, feature-map bytes (inputs plus output at the activation width),
weight bytes, arithmetic intensity (MACs per byte moved) and the engine class it
maps onto. This is the first step of mapping (seed 000: profile, then pick the
best-fit engine per layer type) and what ``convforge profile`` prints.
"""

from __future__ import annotations

import enum
import json
import math
from dataclasses import asdict, dataclass, field

from compiler.ir import Graph, Layer, OpKind

__all__ = [
    "EngineClass",
    "LayerProfile",
    "Profile",
    "engine_class",
    "profile_command",
    "profile_graph",
]


class EngineClass(enum.Enum):
    """The engine a layer runs on."""

    CONV = "conv"
    POINTWISE = "pointwise"
    DEPTHWISE = "depthwise"
    FC = "fc"
    POOL = "pool"
    ADD = "add"
    #: Concat and standalone padding: data movement through the DMA, no arithmetic.
    MOVE = "move"


_ENGINE = {
    OpKind.CONV: EngineClass.CONV,
    OpKind.POINTWISE: EngineClass.POINTWISE,
    OpKind.DEPTHWISE: EngineClass.DEPTHWISE,
    OpKind.FC: EngineClass.FC,
    OpKind.MAXPOOL: EngineClass.POOL,
    OpKind.AVGPOOL: EngineClass.POOL,
    OpKind.GAP: EngineClass.POOL,
    OpKind.ADD: EngineClass.ADD,
    OpKind.CONCAT: EngineClass.MOVE,
    OpKind.PAD: EngineClass.MOVE,
}


def engine_class(layer: Layer) -> EngineClass:
    """The engine class of a lowered layer."""
    try:
        return _ENGINE[layer.kind]
    except KeyError:
        raise ValueError(f"Layer {layer.name!r} of kind {layer.kind.value} maps onto no "
                         f"engine; lower the graph first (compiler.pipeline)") from None


@dataclass
class LayerProfile:
    """Figures of one layer (see :func:`profile_graph`)."""

    name: str
    kind: str
    engine: str
    input_shapes: list[tuple[int, int, int]]
    output_shape: tuple[int, int, int]
    kernel: tuple[int, int]
    stride: tuple[int, int]
    macs: int
    ops: int
    params: int
    fmap_bytes: int
    weight_bytes: int
    intensity: float


@dataclass
class Profile:
    """A graph's profile.

    Parameters
    ----------
    name : str
    act_bits, weight_bits, bias_bits : int
        Widths the byte counts assume.
    layers : list of LayerProfile
    """

    name: str
    act_bits: int
    weight_bits: int
    bias_bits: int
    layers: list[LayerProfile] = field(default_factory=list)

    @property
    def total_macs(self) -> int:
        return sum(p.macs for p in self.layers)

    @property
    def total_params(self) -> int:
        return sum(p.params for p in self.layers)

    @property
    def total_weight_bytes(self) -> int:
        return sum(p.weight_bytes for p in self.layers)

    @property
    def total_fmap_bytes(self) -> int:
        return sum(p.fmap_bytes for p in self.layers)

    def by_engine(self) -> dict[str, dict[str, int]]:
        """Layer count and MACs per engine class."""
        out: dict[str, dict[str, int]] = {}
        for p in self.layers:
            entry = out.setdefault(p.engine, {"layers": 0, "macs": 0})
            entry["layers"] += 1
            entry["macs"] += p.macs
        return out

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "act_bits": self.act_bits,
            "weight_bits": self.weight_bits,
            "bias_bits": self.bias_bits,
            "totals": {"layers": len(self.layers), "macs": self.total_macs,
                       "params": self.total_params, "weight_bytes": self.total_weight_bytes,
                       "fmap_bytes": self.total_fmap_bytes},
            "by_engine": self.by_engine(),
            "layers": [asdict(p) for p in self.layers],
        }

    def format_table(self) -> str:
        """A fixed-width text table with a totals line."""
        head = (f"{'layer':<28} {'kind':<9} {'engine':<9} {'input':<14} {'output':<14} "
                f"{'k':>3} {'s':>2} {'MACs':>12} {'params':>9} {'fmap B':>10} "
                f"{'MAC/B':>7}")
        lines = [head, "-" * len(head)]
        for p in self.layers:
            shape_in = "x".join(map(str, p.input_shapes[0]))
            if len(p.input_shapes) > 1:
                shape_in += f"(+{len(p.input_shapes) - 1})"
            k = f"{p.kernel[0]}" if p.kernel[0] == p.kernel[1] else f"{p.kernel[0]}x{p.kernel[1]}"
            s = f"{p.stride[1]}"
            lines.append(
                f"{_clip(p.name, 28):<28} {p.kind:<9} {p.engine:<9} {shape_in:<14} "
                f"{'x'.join(map(str, p.output_shape)):<14} {k:>3} {s:>2} {p.macs:>12,} "
                f"{p.params:>9,} {p.fmap_bytes:>10,} {p.intensity:>7.1f}")
        lines.append("-" * len(head))
        intensity = self.total_macs / max(1, self.total_fmap_bytes + self.total_weight_bytes)
        lines.append(f"{'total':<28} {len(self.layers):<9} {'':<9} {'':<14} {'':<14} "
                     f"{'':>3} {'':>2} {self.total_macs:>12,} {self.total_params:>9,} "
                     f"{self.total_fmap_bytes:>10,} {intensity:>7.1f}")
        lines.append(f"weights {self.total_weight_bytes:,} B at {self.weight_bits}-bit weights "
                     f"and {self.bias_bits}-bit biases; feature maps at {self.act_bits}-bit "
                     f"activations")
        engines = ", ".join(f"{k}: {v['layers']} layer(s), {v['macs']:,} MACs"
                            for k, v in self.by_engine().items())
        lines.append(f"engines: {engines}")
        return "\n".join(lines)


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else "…" + text[-(n - 1):]


def _bytes(count: int, bits: int) -> int:
    return math.ceil(count * bits / 8)


def _layer_profile(graph: Graph, layer: Layer, act_bits, weight_bits, bias_bits):
    ins = [graph.shape(t) for t in layer.inputs]
    out = graph.shape(layer.output)
    out_elems = math.prod(out)
    kh, kw = layer.kernel
    macs = ops = 0
    if layer.kind in (OpKind.CONV, OpKind.POINTWISE, OpKind.DEPTHWISE):
        macs = out_elems * (ins[0][0] // layer.groups) * kh * kw
    elif layer.kind is OpKind.FC:
        macs = out_elems * math.prod(ins[0])
    elif layer.kind in (OpKind.MAXPOOL, OpKind.AVGPOOL):
        ops = out_elems * kh * kw
    elif layer.kind is OpKind.GAP:
        ops = math.prod(ins[0])
    elif layer.kind is OpKind.ADD:
        ops = out_elems * (len(ins) - 1)
    n_weights = 0 if layer.weight is None else int(layer.weight.size)
    n_bias = 0 if layer.bias is None else int(layer.bias.size)
    fmap = _bytes(sum(math.prod(s) for s in ins) + out_elems, act_bits)
    wbytes = _bytes(n_weights, weight_bits) + _bytes(n_bias, bias_bits)
    return LayerProfile(
        name=layer.name, kind=layer.kind.value, engine=engine_class(layer).value,
        input_shapes=ins, output_shape=out, kernel=layer.kernel, stride=layer.stride,
        macs=macs, ops=ops, params=n_weights + n_bias, fmap_bytes=fmap, weight_bytes=wbytes,
        intensity=macs / (fmap + wbytes))


def profile_graph(graph: Graph, act_bits: int = 8, weight_bits: int = 8,
                  bias_bits: int = 32) -> Profile:
    """Profile every layer of a lowered graph.

    Parameters
    ----------
    graph : compiler.ir.Graph
        A lowered graph (:func:`compiler.pipeline.import_model`).
    act_bits, weight_bits, bias_bits : int
        Widths used for the byte counts.
    """
    for name, value in (("act_bits", act_bits), ("weight_bits", weight_bits),
                        ("bias_bits", bias_bits)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{name} must be an integer, not {value!r}")
        if not 1 <= value <= 64:
            raise ValueError(f"{name} must be between 1 and 64, not {value!r}")
    prof = Profile(graph.name, act_bits, weight_bits, bias_bits)
    for layer in graph.layers:
        prof.layers.append(_layer_profile(graph, layer, act_bits, weight_bits, bias_bits))
    return prof


def profile_command(args) -> int:
    """``convforge profile MODEL [--json OUT] [--act-bits N] [--weight-bits N]``."""
    from compiler.codegen.output import write_file
    from compiler.errors import ConvForgeError
    from compiler.pipeline import import_model

    graph = import_model(args.model)
    try:
        prof = profile_graph(graph, act_bits=args.act_bits, weight_bits=args.weight_bits)
    except ValueError as e:
        raise ConvForgeError(f"{e}; pass --act-bits / --weight-bits in that range") from None
    print(prof.format_table())
    for op in graph.host_ops:
        print(f"host: {op.name} ({op.op_type}) runs on the host after the accelerator")
    if args.json:
        path = write_file(args.json, json.dumps(prof.to_dict(), indent=2) + "\n", "--json")
        print(f"wrote {path}")
    return 0
