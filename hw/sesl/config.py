"""The configuration of a SESL pipeline: one record per stage, plain Python, JSON-able.

The compiler fills a :class:`PipelineConfig` from a quantized model (its folding, FIFO
depths and every integer parameter); :class:`hw.sesl.pipeline.SeslPipeline` elaborates
it. The timing rules of the stages live here too, so that the compiler's cycle model
and the RTL generators share one definition (the compiler never elaborates Amaranth to
learn a latency).

Stage kinds
-----------
``window``
    A KxK sliding-window stage over a line buffer: standard, pointwise and fully
    connected convolutions (``op="conv"``, ``simd`` input x ``pe`` output channels per
    cycle), depthwise convolution (``op="depthwise"``, ``pe`` channels per cycle),
    max and average pooling (``op="max"`` / ``op="avg"``; global average pooling is the
    window of the whole frame).
``join``
    Residual add (``op="add"``, two inputs) and concat (``op="concat"``): ``pe`` output
    channels per cycle.

Streams
-------
Every stream between stages carries one pixel per beat, all of its channels (lane 0 in
the low bits, ``act_bits`` each, two's complement), pixels in raster order, frames back
to back. The folding is inside the stages: a window stage writes whole pixels into its
line buffer and reads them back ``simd`` (or ``pe``) lanes at a time.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

__all__ = [
    "JOIN_LATENCY",
    "RING_SLACK",
    "WINDOW_LATENCY",
    "PipelineConfig",
    "StageConfig",
    "ceil_div",
]

#: Cycles from a window stage issuing the last read of an output pixel to that pixel
#: being valid at its output (read, multiply, accumulate, scale, round, assemble).
WINDOW_LATENCY = 6
#: Cycles from a join stage issuing its last chunk to the pixel being valid at its output.
JOIN_LATENCY = 3

#: Pixels a ring line buffer (:attr:`StageConfig.ring`) holds beyond the least that lets
#: its producer write the next output pixel's window while the current one is read. None
#: are needed: that least already lets the producer run one output pixel ahead, and the
#: fused small MobileNetV2 runs at its modelled cycles per frame and latency with none
#: (RTL, 4 frames; it had 2, 2,432 bits over its four rings). Kept as the knob to trade
#: ring words for producer run-ahead.
RING_SLACK = 0

_WINDOW_OPS = ("conv", "depthwise", "max", "avg")
_JOIN_OPS = ("add", "concat")


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class StageConfig:
    """One stage of the pipeline.

    Parameters
    ----------
    name : str
        The layer's name (reports, errors).
    op : str
        ``conv``, ``depthwise``, ``max``, ``avg`` (window stages) or ``add``, ``concat``
        (join stages).
    layer_kind : str
        The IR kind it implements (``pointwise``, ``fc``, ``gap``...), for reports.
    inputs : tuple of str
        Input tensor names.
    output : str
        Output tensor name.
    in_shapes : tuple of (C, H, W)
    out_shape : (M, OH, OW)
    kernel, stride : (int, int)
    pads : (top, left, bottom, right)
    simd, pe : int
        Folding: input channels x output channels per cycle (``conv``); channels per
        cycle (``pe``) for the others.
    weights : tuple of int
        ``conv``: ``(M, C, KH, KW)`` row-major; ``depthwise``: ``(C, KH, KW)``.
    bias, m, s : tuple of int
        Per output channel (window stages).
    lo, hi : int
        Output clamp.
    input_m, input_s : tuple of int
        Join stages: one multiplier per input; one shift (add) or one per input (concat).
    buffered : bool
        ``False`` for a 1x1, stride-1, unpadded conv that takes its input pixel from a
        one-pixel register instead of a line buffer (the expand and project of a FIRB).
    firb : str
        Name of the fused inverted residual bottleneck the stage belongs to, or ``""``.
    unrolled : bool
        ``True``: a fully parallel conv stage of one-row frames (``H = 1``, kernel
        ``(1, K)``, stride 1; :class:`hw.sesl.unrolled.UnrolledConvStage`): every weight
        is a constant of the datapath (a zero weight has no multiplier, a power of two is
        a shift, a sum or difference of two powers of two two shifts and an adder, any
        other value a constant multiplier), the ``K`` taps of a window are a shift
        register, one output pixel per cycle; ``simd`` and ``pe`` are not used.
    ring : bool
        ``True``: the line buffer is a ring of :attr:`ring_words` pixels, freed pixel by
        pixel (fine-grained), instead of ``line_rows`` whole rows freed row by row (a
        double-buffered row tile). Needs a window at least two rows tall. The depthwise
        stage of a FIRB uses it.
    """

    name: str
    op: str
    inputs: tuple
    output: str
    in_shapes: tuple
    out_shape: tuple
    layer_kind: str = ""
    kernel: tuple = (1, 1)
    stride: tuple = (1, 1)
    pads: tuple = (0, 0, 0, 0)
    simd: int = 1
    pe: int = 1
    weights: tuple = ()
    bias: tuple = ()
    m: tuple = ()
    s: tuple = ()
    lo: int = -128
    hi: int = 127
    input_m: tuple = ()
    input_s: tuple = ()
    buffered: bool = True
    firb: str = ""
    ring: bool = False
    unrolled: bool = False

    def __post_init__(self):
        if self.op not in _WINDOW_OPS + _JOIN_OPS:
            raise ValueError(f"stage {self.name!r}: op must be one of "
                             f"{', '.join(_WINDOW_OPS + _JOIN_OPS)}, not {self.op!r}")
        for name in ("simd", "pe"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"stage {self.name!r}: {name} must be a positive integer, "
                                 f"not {value!r}")
        if self.op in _JOIN_OPS and len(self.inputs) < 2:
            raise ValueError(f"stage {self.name!r}: a {self.op} stage needs two or more "
                             f"inputs, not {len(self.inputs)}")
        if self.op in _WINDOW_OPS and len(self.inputs) != 1:
            raise ValueError(f"stage {self.name!r}: a window stage has one input, "
                             f"not {len(self.inputs)}")
        if not self.buffered and (self.op != "conv" or self.kernel != (1, 1)
                                  or self.stride != (1, 1) or any(self.pads)):
            raise ValueError(f"stage {self.name!r}: only 1x1, stride-1, unpadded conv "
                             f"stages can be unbuffered")
        if self.ring and (not self.is_window or not self.buffered or self.kernel[0] < 2):
            raise ValueError(f"stage {self.name!r}: a ring line buffer needs a buffered "
                             f"window stage with a kernel at least two rows tall")
        if self.unrolled and (self.op != "conv" or self.in_shapes[0][1] != 1
                              or self.kernel[0] != 1 or self.stride != (1, 1)
                              or not self.buffered or self.ring):
            raise ValueError(f"stage {self.name!r}: an unrolled stage is a conv of one-row "
                             f"frames (H = 1, kernel (1, K), stride 1), not op {self.op!r}, "
                             f"input {self.in_shapes[0]}, kernel {self.kernel}, stride "
                             f"{self.stride}")
        if self.op not in ("conv",) and self.simd != 1:
            raise ValueError(f"stage {self.name!r}: simd applies to conv stages only; "
                             f"it must be 1, not {self.simd!r}")

    # Geometry and timing ------------------------------------------------------------

    @property
    def is_window(self) -> bool:
        return self.op in _WINDOW_OPS

    @property
    def in_channels(self) -> int:
        return self.in_shapes[0][0]

    @property
    def out_channels(self) -> int:
        return self.out_shape[0]

    @property
    def out_pixels(self) -> int:
        return self.out_shape[1] * self.out_shape[2]

    @property
    def groups(self) -> int:
        """Output-channel groups computed one after the other (``ceil(M / pe)``)."""
        if self.op == "concat":
            return sum(ceil_div(shape[0], self.pe) for shape in self.in_shapes)
        return ceil_div(self.out_channels, self.pe)

    @property
    def chunks(self) -> int:
        """Input-channel chunks per tap of a conv stage (``ceil(C / simd)``); else 1."""
        return ceil_div(self.in_channels, self.simd) if self.op == "conv" else 1

    @property
    def taps(self) -> int:
        return self.kernel[0] * self.kernel[1] if self.is_window else 1

    @property
    def cycles_per_pixel(self) -> int:
        """Issue cycles per output pixel (one read of the line buffer or one chunk each;
        an unrolled stage: one)."""
        if self.unrolled:
            return 1
        return self.groups * self.taps * self.chunks

    @property
    def cycles_per_frame(self) -> int:
        if self.unrolled:  # the K - 1 padding positions are steps too
            return self.out_pixels + self.kernel[1] - 1
        return self.cycles_per_pixel * self.out_pixels

    @property
    def latency(self) -> int:
        return WINDOW_LATENCY if self.is_window else JOIN_LATENCY

    @property
    def line_rows(self) -> int:
        """Rows of the line buffer. Within a frame the window moves down ``stride`` rows
        per output row, so ``KH + SH`` rows let the producer write the next output row's
        rows while the current one is computed. At a frame boundary the window jumps
        back to the top: the producer must be able to write the next frame's first
        window (``KH - pad`` rows) while the last output row (from row
        ``(OH-1)*SH - pad``) is still being read, which needs ``H + KH - (OH-1)*SH``
        rows (more than ``KH + SH`` only for frames a few windows tall)."""
        if not self.is_window or not self.buffered:
            return 0
        kh, sh = self.kernel[0], self.stride[0]
        h, oh = self.in_shapes[0][1], self.out_shape[1]
        return max(kh + sh, h + kh - (oh - 1) * sh)

    @property
    def ring_words(self) -> int:
        """Pixels of a ring line buffer. Output pixel ``q`` needs the input pixels from
        ``oldest(q)`` (its window's top-left, padding included) to ``need(q)``; a pixel
        is freed once the output reading it is done. The ring holds the largest
        ``need(q + 1) - oldest(q) + 1`` over every step of the raster order (along a
        row, to the next row, to the next frame), so that the producer can write the
        next pixel's window while the current one is computed, plus
        :data:`RING_SLACK` pixels; at least one row (the addressing wraps once)."""
        _, h, w = self.in_shapes[0]
        oh, ow = self.out_shape[1], self.out_shape[2]
        sh, sw = self.stride
        pt, pl = self.pads[0], self.pads[1]

        def need(oy, ox):
            r, c = self.need(oy, ox)
            return r * w + c

        def oldest(oy, ox):
            return (oy * sh - pt) * w + ox * sw - pl

        worst = need(0, 0) - oldest(0, 0)
        for oy in range(oh):
            if ow > 1:
                worst = max(worst, need(oy, 1) - oldest(oy, 0))
            if oy + 1 < oh:
                worst = max(worst, need(oy + 1, 0) - oldest(oy, ow - 1))
        worst = max(worst, h * w + need(0, 0) - oldest(oh - 1, ow - 1))
        return max(worst + 1 + RING_SLACK, w)

    @property
    def line_words(self) -> int:
        """Pixels (words of ``C`` lanes) of the stage's line buffer RAM; 0 without one."""
        if not self.is_window or not self.buffered or self.unrolled:
            return 0
        if self.ring:
            return self.ring_words
        return self.line_rows * self.in_shapes[0][2]

    @property
    def mac_units(self) -> int:
        """Multipliers of the multiply-accumulate datapath (an unrolled stage: one
        constant multiplier, shift or shift-add per non-zero weight)."""
        if self.unrolled:
            return sum(1 for v in self.weights if v)
        if self.op == "conv":
            return self.simd * self.pe
        if self.op == "depthwise":
            return self.pe
        return 0

    @property
    def macs_per_frame(self) -> int:
        if self.unrolled:  # zero weights are not multiplied
            return self.mac_units * self.out_pixels
        c = self.in_channels
        k = self.taps
        if self.op == "conv":
            return self.out_channels * c * k * self.out_pixels
        if self.op == "depthwise":
            return self.out_channels * k * self.out_pixels
        return 0

    @property
    def line_buffer_bits(self) -> int:
        """Line buffer size in activations (``line_words * C``); times ``act_bits``
        for bits."""
        if not self.is_window:
            return 0
        return self.line_words * self.in_shapes[0][0]

    def need(self, oy: int, ox: int) -> tuple[int, int]:
        """The last input pixel ``(row, col)`` output pixel ``(oy, ox)`` reads."""
        if not self.is_window:
            return oy, ox
        _, h, w = self.in_shapes[0]
        return (min(h - 1, oy * self.stride[0] - self.pads[0] + self.kernel[0] - 1),
                min(w - 1, ox * self.stride[1] - self.pads[1] + self.kernel[1] - 1))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> StageConfig:
        d = dict(d)
        for key in ("inputs", "kernel", "stride", "pads", "weights", "bias", "m", "s",
                    "input_m", "input_s", "out_shape"):
            if key in d:
                d[key] = tuple(d[key])
        d["in_shapes"] = tuple(tuple(s) for s in d["in_shapes"])
        return cls(**d)


@dataclass(frozen=True)
class PipelineConfig:
    """A whole SESL pipeline.

    Parameters
    ----------
    name : str
    input, output : str
        The graph's input and output tensors.
    input_shape, output_shape : (C, H, W)
    stages : tuple of StageConfig
        In topological order.
    fifos : tuple of (tensor, consumer stage name, depth)
        A FIFO on the edge from ``tensor``'s producer (or fork) to the consumer; edges
        not listed connect directly.
    act_bits, weight_bits, acc_bits, mult_bits, shift_bits : int
    """

    name: str
    input: str
    output: str
    input_shape: tuple
    output_shape: tuple
    stages: tuple
    fifos: tuple = ()
    act_bits: int = 8
    weight_bits: int = 8
    acc_bits: int = 32
    mult_bits: int = 16
    shift_bits: int = 6
    extra: dict = field(default_factory=dict)

    def fifo_depth(self, tensor: str, stage: str) -> int:
        for t, s, depth in self.fifos:
            if t == tensor and s == stage:
                return depth
        return 0

    def stage(self, name: str) -> StageConfig:
        for st in self.stages:
            if st.name == name:
                return st
        raise KeyError(f"No stage named {name!r}")

    def consumers(self, tensor: str) -> list:
        return [st for st in self.stages if tensor in st.inputs]

    def with_fifo(self, tensor: str, stage: str, depth: int) -> PipelineConfig:
        """A copy with the FIFO on edge ``tensor -> stage`` set to ``depth``."""
        fifos = tuple((t, s, d) for t, s, d in self.fifos if (t, s) != (tensor, stage))
        return PipelineConfig(**{**self.__dict__, "fifos": fifos + ((tensor, stage, depth),)})

    def to_json(self) -> str:
        d = {k: v for k, v in self.__dict__.items() if k != "stages"}
        d["stages"] = [st.to_dict() for st in self.stages]
        return json.dumps(d)

    @classmethod
    def from_json(cls, text: str) -> PipelineConfig:
        d = json.loads(text)
        d["stages"] = tuple(StageConfig.from_dict(s) for s in d["stages"])
        d["fifos"] = tuple(tuple(f) for f in d["fifos"])
        d["input_shape"] = tuple(d["input_shape"])
        d["output_shape"] = tuple(d["output_shape"])
        return cls(**d)
