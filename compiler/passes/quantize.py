"""Quantization pass: calibrate a float graph and give every layer integer parameters.

The pass follows ARCHITECTURE.md "Numerics": every tensor gets a scale
(``real = scale * integer``), every layer a requantization
``clamp(round_shift(acc * m, s), lo, hi)``. Three scale modes:

``"per_channel"``
    Float activation scales per tensor, float weight scales per output channel,
    a multiplier and shift per output channel.
``"per_layer"``
    As above with one weight scale (and one multiplier) per layer.
``"pot"``
    Dynamic fixed point (seed 002): every scale is a power of two chosen per
    layer, so convolutions requantize with a pure shift (``m = 1``). Pooling,
    residual adds and concats still use a multiplier where a ratio is not a
    power of two (``1/9`` of a 3x3 average).

Weights follow the arch's scheme: uniform, PoT or APoT
(:mod:`compiler.quant.weights`). Each layer's accumulator is proven not to
overflow ``acc_bits``; a layer that could is refused with a
:class:`~compiler.errors.QuantizationError`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from compiler.errors import QuantizationError
from compiler.ir import WEIGHTED_KINDS, Graph, Layer, LayerQuant, OpKind
from compiler.onnxrun import onnx_runs
from compiler.quant.multiplier import (
    decompose_multiplier,
    decompose_multipliers,
    decompose_shared_shift,
)
from compiler.quant.overflow import check_bias, prove_accumulator, prove_sum
from compiler.quant.report import LayerReport, QuantReport
from compiler.quant.scales import check_width, float_scale, pot_scale, qrange, tensor_range
from compiler.quant.weights import quantize_weights
from compiler.reference import run_float
from compiler.samples import input_to_ir, load_samples
from compiler.table_act import activation_tables
from hw import weight_codes
from hw.arch import WEIGHT_SCHEMES, ArchConfig
from hw.isa import TABLE_MAX_BITS
from sim import golden

__all__ = [
    "SCALE_MODES",
    "QuantConfig",
    "calibration_statistics",
    "input_to_ir",
    "load_calibration",
    "load_samples",
    "quantize",
    "quantize_graph",
    "quantize_with_scales",
    "random_calibration",
]

SCALE_MODES = ("per_channel", "per_layer", "pot")

#: Random samples drawn when the user gives no calibration data.
DEFAULT_RANDOM_SAMPLES = 8

# QuantConfig's widths default to the default arch's.
_ARCH_DEFAULTS = ArchConfig()


@dataclass(frozen=True)
class QuantConfig:
    """Widths and choices of one quantization.

    Parameters
    ----------
    act_bits, weight_bits : int
        Signed widths, 4 to 16. ``weight_bits`` bounds uniform weights; PoT and
        APoT weights take every value their codes hold (range set by
        ``pot_exp_bits``, as the PEs are sized for it).
    weight_scheme : str
        ``"uniform"``, ``"pot"`` or ``"apot"``.
    scale_mode : str
        One of :data:`SCALE_MODES`.
    pot_exp_bits : int
        Exponent field width of PoT / APoT weight codes.
    bias_bits, acc_bits, mult_bits, shift_bits : int
        Hardware widths the integers must fit (from :class:`hw.arch.ArchConfig`).
    percentile : float or None
        Clip activation ranges to this percentile of ``|x|`` (``None``: max-abs).
    bias_correction : bool
        Fold the mean error that weight rounding causes (on the calibration
        data's mean input) back into each layer's bias.
    """

    act_bits: int = _ARCH_DEFAULTS.act_bits
    weight_bits: int = _ARCH_DEFAULTS.weight_bits
    weight_scheme: str = _ARCH_DEFAULTS.weight_scheme
    scale_mode: str = "per_channel"
    pot_exp_bits: int = _ARCH_DEFAULTS.pot_exp_bits
    bias_bits: int = _ARCH_DEFAULTS.bias_bits
    acc_bits: int = _ARCH_DEFAULTS.acc_bits
    mult_bits: int = _ARCH_DEFAULTS.mult_bits
    shift_bits: int = _ARCH_DEFAULTS.shift_bits
    percentile: float | None = None
    bias_correction: bool = True

    def __post_init__(self):
        check_width("act_bits", self.act_bits)
        check_width("weight_bits", self.weight_bits)
        if self.weight_scheme not in WEIGHT_SCHEMES:
            raise QuantizationError(
                f"weight_scheme must be one of {', '.join(WEIGHT_SCHEMES)}, "
                f"not {self.weight_scheme!r}")
        try:
            weight_codes.max_exponent(self.pot_exp_bits)
        except ValueError as e:
            raise QuantizationError(f"pot_exp_bits: {e}; choose a narrower exponent "
                                    f"field") from None
        if self.scale_mode not in SCALE_MODES:
            raise QuantizationError(
                f"scale_mode must be one of {', '.join(SCALE_MODES)}, not {self.scale_mode!r}")
        if self.percentile is not None and not 0.0 < self.percentile <= 100.0:
            raise QuantizationError(
                f"percentile must be in (0, 100], not {self.percentile!r}")

    @classmethod
    def from_arch(cls, arch, **overrides) -> QuantConfig:
        """Widths and weight scheme of an :class:`hw.arch.ArchConfig`, plus ``overrides``."""
        params = {"act_bits": arch.act_bits, "weight_bits": arch.weight_bits,
                  "weight_scheme": arch.weight_scheme, "pot_exp_bits": arch.pot_exp_bits,
                  "bias_bits": arch.bias_bits, "acc_bits": arch.acc_bits,
                  "mult_bits": arch.mult_bits, "shift_bits": arch.shift_bits}
        params.update(overrides)
        return cls(**params)

    @property
    def pot(self) -> bool:
        return self.scale_mode == "pot"


# Calibration data ------------------------------------------------------------------------

def load_calibration(graph: Graph, source) -> dict[str, np.ndarray]:
    """Calibration samples for every graph input, as ``(N, C, H, W)`` float32 arrays.

    Parameters
    ----------
    source : str, Path, ndarray or dict
        A ``.npy`` file (one array: the samples of the single input), a ``.npz``
        file (one array per input name, or a single array), an array or a dict
        of arrays.
    """
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise QuantizationError(f"Calibration file {path} does not exist; pass a .npy or "
                                    f".npz file of input samples")
        if path.suffix not in (".npy", ".npz"):
            raise QuantizationError(f"Calibration file {path} must be .npy or .npz, not "
                                    f"{path.suffix or 'without extension'}")
        source = load_samples(path, f"Calibration file {path}")
        if isinstance(source, dict) and len(source) == 1 and next(iter(source)) not in \
                graph.inputs:
            source = next(iter(source.values()))
    if not isinstance(source, dict):
        if len(graph.inputs) != 1:
            raise QuantizationError(
                f"Model has {len(graph.inputs)} inputs ({', '.join(graph.inputs)}); give "
                f"calibration samples as an .npz with one array per input name")
        source = {graph.inputs[0]: source}
    missing = [n for n in graph.inputs if n not in source]
    if missing:
        raise QuantizationError(f"Calibration data lacks samples for graph input(s) "
                                f"{', '.join(missing)}; present: {', '.join(source)}")
    batches = {n: input_to_ir(graph, n, source[n]) for n in graph.inputs}
    counts = {len(b) for b in batches.values()}
    if len(counts) != 1:
        raise QuantizationError(f"Calibration inputs hold different sample counts: "
                                f"{ {n: len(b) for n, b in batches.items()} }")
    for n, b in batches.items():
        if not np.all(np.isfinite(b)):
            raise QuantizationError(f"Calibration samples for {n!r} contain inf or NaN")
    return batches


def random_calibration(graph: Graph, samples: int = DEFAULT_RANDOM_SAMPLES,
                       seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded standard-normal samples for every graph input."""
    rng = np.random.default_rng(seed)
    return {n: rng.standard_normal((samples,) + graph.tensors[n].shape).astype(np.float32)
            for n in graph.inputs}


def calibration_statistics(graph: Graph, batches: dict[str, np.ndarray],
                           percentile: float | None = None, *, model=None):
    """Per-tensor ranges and per-channel float means over the calibration samples.

    The float values come from the float graph (:func:`compiler.reference.run_float`),
    or, given the ONNX ``model`` the graph was imported from, from onnxruntime
    with the intermediate tensors exposed (much faster on large inputs); tensors
    onnxruntime does not compute (layers the frontend synthesized) then fall back
    to the float graph.

    Returns ``(ranges, means)``, to pass to :func:`quantize` when several
    quantizations share one calibration.
    """
    n = len(next(iter(batches.values())))
    ranges: dict[str, float] = {}
    sums: dict[str, np.ndarray] = {}
    collected: dict[str, list[np.ndarray]] = {}
    for values in _float_runs(graph, batches, model):
        for name, v in values.items():
            mean = v.mean(axis=(1, 2), dtype=np.float64)
            sums[name] = sums[name] + mean if name in sums else mean
            if percentile is None:
                ranges[name] = max(ranges.get(name, 0.0), float(np.abs(v).max()))
            else:
                collected.setdefault(name, []).append(v)
    if percentile is not None:
        ranges = {name: tensor_range(vs, percentile) for name, vs in collected.items()}
    return ranges, {name: total / n for name, total in sums.items()}


def _float_runs(graph, batches, model):
    """Every tensor's float value, one dict per calibration sample."""
    n = len(next(iter(batches.values())))
    samples = ({k: v[i] for k, v in batches.items()} for i in range(n))
    if model is None:
        for sample in samples:
            yield run_float(graph, sample, keep_all=True)
        return
    for sample, values in zip(samples, onnx_runs(model, graph, batches)):
        if any(t not in values for t in graph.tensors if t not in graph.inputs):
            values = run_float(graph, sample, keep_all=True)
        for name in graph.inputs:
            values[name] = np.asarray(sample[name], dtype=np.float32)
        yield values


def _bias_shift(layer: Layer, w_int, w_scale, mean_in) -> np.ndarray:
    """Mean output error of the rounded weights on an input of channel means ``mean_in``.

    Borders of padded convolutions see fewer inputs; the mean ignores that.
    """
    w = layer.weight.astype(np.float64)
    error = w_int * np.asarray(w_scale).reshape((-1,) + (1,) * (w.ndim - 1)) - w
    if layer.kind is OpKind.FC:
        return error @ np.repeat(mean_in, error.shape[1] // len(mean_in))
    taps = error.sum(axis=(2, 3))                       # (M, C // groups)
    groups = layer.groups
    per_group = len(mean_in) // groups
    out_per_group = taps.shape[0] // groups
    group_mean = mean_in.reshape(groups, per_group)     # input channels of each group
    return np.einsum("gmc,gc->gm", taps.reshape(groups, out_per_group, per_group),
                     group_mean).reshape(-1)


# Integer parameters ----------------------------------------------------------------------

def _is_pot(x: float) -> bool:
    return x > 0 and math.log2(x) == round(math.log2(x))


def _frac(scale: float) -> int | None:
    return -round(math.log2(scale)) if _is_pot(scale) else None


def _clamp_bounds(layer: Layer, scale: float, bits: int) -> tuple[int, int]:
    """The activation as an integer clamp at the output scale: its float bounds quantized
    (ReLU6: ``hi = q(6)``), the full range where a bound is infinite."""
    lo, hi = qrange(bits)
    f_lo, f_hi = layer.act_bounds
    if math.isfinite(f_lo):
        lo = int(golden.quantize(f_lo, scale, bits))
    if math.isfinite(f_hi):
        hi = max(lo, int(golden.quantize(f_hi, scale, bits)))
    return lo, hi


class _Quantizer:
    """Walks a graph in order, giving each tensor a scale and each layer its integers."""

    def __init__(self, graph: Graph, cfg: QuantConfig, out_scale, weight_fn, means=None):
        self.graph = graph
        self.means = means              # tensor -> float channel means, for bias correction
        self.cfg = cfg
        self.out_scale = out_scale      # (layer or input tensor name, proposed) -> scale
        self.weight_fn = weight_fn      # layer -> (w_int, w_scale per channel)
        self.int_range: dict[str, tuple[int, int]] = {}
        self.rows: list[LayerReport] = []

    def run(self) -> None:
        full = qrange(self.cfg.act_bits)
        for name in self.graph.inputs:
            self.graph.tensors[name].scale = self.out_scale(name, None)
            self.int_range[name] = full
        for layer in self.graph.layers:
            self.layer(layer)

    def scale(self, tensor: str) -> float:
        return self.graph.tensors[tensor].scale

    def where(self, layer: Layer) -> str:
        return f"Layer {layer.name!r}"

    def finish(self, layer, q: LayerQuant, out_scale, *, sparsity=None, acc_bound=None):
        q.output_scale = float(out_scale)
        q.input_scales = tuple(self.scale(t) for t in layer.inputs)
        q.act_bits = self.cfg.act_bits
        q.weight_bits = self.cfg.weight_bits
        layer.quant = q
        self.graph.tensors[layer.output].scale = float(out_scale)
        self.int_range[layer.output] = (q.lo, q.hi)
        m = np.asarray(q.input_m if q.input_m else q.m)
        self.rows.append(LayerReport(
            name=layer.name, kind=layer.kind.value, output_scale=float(out_scale),
            frac_bits=_frac(out_scale), m_min=int(m.min()), m_max=int(m.max()),
            s_min=int(q.s.min()), s_max=int(q.s.max()), per_channel=q.m.size > 1,
            lo=q.lo, hi=q.hi, weight_scheme=q.weight_scheme if q.weight is not None else None,
            sparsity=sparsity, acc_bound=acc_bound))

    def layer(self, layer: Layer) -> None:
        kind = layer.kind
        if kind in WEIGHTED_KINDS:
            self.weighted(layer)
        elif kind is OpKind.TABLE:
            self.table(layer)
        elif kind is OpKind.MUL:
            self.product(layer)
        elif kind in (OpKind.MAXPOOL, OpKind.PAD, OpKind.RESIZE):
            # Pass-through: the output keeps the input's scale and range.
            s_in = self.scale(layer.inputs[0])
            lo, hi = self.int_range[layer.inputs[0]]
            q = LayerQuant(lo=lo, hi=hi)
            self.finish(layer, q, s_in)
        elif kind in (OpKind.AVGPOOL, OpKind.GAP):
            self.average(layer)
        elif kind in (OpKind.ADD, OpKind.CONCAT):
            self.merge(layer)
        else:
            raise QuantizationError(
                f"{self.where(layer)}: cannot quantize kind {kind.value!r}; quantize the graph "
                f"after the lowering passes of compiler.pipeline")

    def weighted(self, layer: Layer) -> None:
        cfg = self.cfg
        where = self.where(layer)
        s_in = self.scale(layer.inputs[0])
        w_int, w_scale = self.weight_fn(layer)
        acc_scale = s_in * w_scale
        out_scale = self.out_scale(layer.output, layer)
        if cfg.pot:
            # With m = 1 the output cannot be finer than the accumulator.
            out_scale = max(out_scale, float(acc_scale.max()))
        real_bias = None if layer.bias is None else layer.bias.astype(np.float64)
        if cfg.bias_correction and self.means is not None and layer.inputs[0] in self.means:
            shift = _bias_shift(layer, w_int, w_scale, self.means[layer.inputs[0]])
            real_bias = (0.0 if real_bias is None else real_bias) - shift
        bias = None
        if real_bias is not None:
            bias = np.rint(real_bias / acc_scale).astype(np.int64)
            check_bias(layer.name, bias, cfg.bias_bits)
        reals = acc_scale / out_scale
        if cfg.pot or np.all(reals == reals[0]):
            m, s = decompose_multiplier(reals[0], cfg.mult_bits, cfg.shift_bits,
                                        power_of_two=cfg.pot, where=where)
            m, s = np.array([m], dtype=np.int64), np.array([s], dtype=np.int64)
        else:
            m, s = decompose_multipliers(reals, cfg.mult_bits, cfg.shift_bits, where=where)
        lo, hi = _clamp_bounds(layer, out_scale, cfg.act_bits)
        in_lo, in_hi = self.int_range[layer.inputs[0]]
        bound = prove_accumulator(layer.name, w_int, in_lo, in_hi, cfg.acc_bits, bias=bias,
                                  multiplier=m)
        q = LayerQuant(weight_scheme=cfg.weight_scheme, weight=w_int, bias=bias,
                       weight_scale=np.asarray(w_scale, dtype=np.float64), m=m, s=s,
                       lo=lo, hi=hi)
        sparsity = float(np.mean(w_int == 0))
        self.finish(layer, q, out_scale, sparsity=sparsity, acc_bound=bound)

    def average(self, layer: Layer) -> None:
        cfg = self.cfg
        src = layer.inputs[0]
        s_in = self.scale(src)
        _c, h, w = self.graph.tensors[src].shape
        window = h * w if layer.kind is OpKind.GAP else layer.kernel[0] * layer.kernel[1]
        out_scale = self.out_scale(layer.output, layer)
        m, s = decompose_multiplier(s_in / (window * out_scale), cfg.mult_bits, cfg.shift_bits,
                                    where=self.where(layer))
        div_m = div_s = None
        mults = [m]
        if layer.kind is OpKind.AVGPOOL and layer.count_pads is not None:
            # one multiplier and shift per window divisor (border windows count fewer)
            div_m = np.zeros(window + 1, dtype=np.int64)
            div_s = np.zeros(window + 1, dtype=np.int64)
            counts = golden.pool_divisors((h, w), layer.kernel, layer.stride, layer.pads,
                                          layer.count_pads)
            for n in np.unique(counts).tolist():
                div_m[n], div_s[n] = decompose_multiplier(
                    s_in / (n * out_scale), cfg.mult_bits, cfg.shift_bits,
                    where=self.where(layer))
            mults = div_m
        in_lo, in_hi = self.int_range[src]
        bound = prove_sum(layer.name, [(window, max(-in_lo, in_hi))], cfg.acc_bits,
                          multiplier=mults)
        lo, hi = _clamp_bounds(layer, out_scale, cfg.act_bits)
        q = LayerQuant(m=np.array([m], dtype=np.int64), s=np.array([s], dtype=np.int64),
                       lo=lo, hi=hi, div_m=div_m, div_s=div_s)
        self.finish(layer, q, out_scale, acc_bound=bound)

    def table(self, layer: Layer) -> None:
        """A table activation: the table of every input integer, clamp included."""
        cfg = self.cfg
        if cfg.act_bits > TABLE_MAX_BITS:
            raise QuantizationError(
                f"{self.where(layer)} ({layer.table_act.label}): a table activation needs "
                f"act_bits at most {TABLE_MAX_BITS}, not {cfg.act_bits}; use 8-bit "
                f"activations")
        out_scale = self.out_scale(layer.output, layer)
        lo, hi = _clamp_bounds(layer, out_scale, cfg.act_bits)
        table = activation_tables(layer.table_act, self.scale(layer.inputs[0]), out_scale,
                                  cfg.act_bits, lo, hi)
        self.finish(layer, LayerQuant(lo=lo, hi=hi, table=table), out_scale)

    def product(self, layer: Layer) -> None:
        """``a * b``: one multiplier and shift from ``s_a * s_b / s_out``."""
        cfg = self.cfg
        a, b = layer.inputs
        out_scale = self.out_scale(layer.output, layer)
        m, s = decompose_multiplier(self.scale(a) * self.scale(b) / out_scale, cfg.mult_bits,
                                    cfg.shift_bits, power_of_two=cfg.pot,
                                    where=self.where(layer))
        mag = [max(-self.int_range[t][0], self.int_range[t][1]) for t in (a, b)]
        bound = prove_sum(layer.name, [(1, mag[0] * mag[1])], cfg.acc_bits, multiplier=[m])
        lo, hi = _clamp_bounds(layer, out_scale, cfg.act_bits)
        q = LayerQuant(m=np.array([m], dtype=np.int64), s=np.array([s], dtype=np.int64),
                       lo=lo, hi=hi)
        self.finish(layer, q, out_scale, acc_bound=bound)

    def merge(self, layer: Layer) -> None:
        cfg = self.cfg
        out_scale = self.out_scale(layer.output, layer)
        reals = [self.scale(t) / out_scale for t in layer.inputs]
        ms, s = decompose_shared_shift(reals, cfg.mult_bits, cfg.shift_bits,
                                       power_of_two=cfg.pot, where=self.where(layer))
        terms = [(mi, max(-self.int_range[t][0], self.int_range[t][1]))
                 for mi, t in zip(ms, layer.inputs)]
        if layer.kind is OpKind.ADD:
            bound = prove_sum(layer.name, terms, cfg.acc_bits)
        else:
            bound = max(int(a) * int(b) for a, b in terms)
        lo, hi = _clamp_bounds(layer, out_scale, cfg.act_bits)
        q = LayerQuant(s=np.array([s], dtype=np.int64), lo=lo, hi=hi,
                       input_m=tuple(int(x) for x in ms))
        self.finish(layer, q, out_scale, acc_bound=bound)


def quantize_with_scales(graph: Graph, cfg: QuantConfig, out_scale, weight_fn,
                         means=None) -> list:
    """Fill every layer's :class:`LayerQuant` and every tensor's scale, in place.

    ``out_scale(tensor, layer)`` proposes the scale of a tensor (``layer`` is
    ``None`` for graph inputs); ``weight_fn(layer)`` returns integer weights and
    their per-output-channel scales. ``means`` (tensor to float channel means)
    enables bias correction. Used by :func:`quantize` (calibrated scales) and by
    the QDQ import (scales from the model). Returns the report rows.
    """
    q = _Quantizer(graph, cfg, out_scale, weight_fn, means)
    q.run()
    return q.rows


# The pass --------------------------------------------------------------------------------

def quantize(graph: Graph, config: QuantConfig | None = None, calibration=None, *,
             arch=None, random_samples: int = DEFAULT_RANDOM_SAMPLES, seed: int = 0,
             ranges: dict[str, float] | None = None,
             means: dict[str, np.ndarray] | None = None,
             model=None) -> tuple[Graph, QuantReport]:
    """Quantize a float graph.

    Parameters
    ----------
    graph : Graph
        Float graph (folded and fused); not modified.
    config : QuantConfig, optional
        Widths and choices; default from ``arch`` (or the default arch).
    calibration : str, Path, ndarray, dict or None
        Calibration samples (see :func:`load_calibration`). ``None`` draws
        ``random_samples`` seeded random inputs and warns: scales from random
        inputs only approximate those of real data.
    arch : hw.arch.ArchConfig, optional
        Source of the widths when ``config`` is not given.
    ranges : dict, optional
        Precomputed per-tensor ranges (skips running the float graph), e.g. from
        :func:`calibration_statistics`.
    means : dict, optional
        Precomputed per-channel means for bias correction, with ``ranges``.
    model : onnx.ModelProto or path, optional
        The model the graph came from: calibration then runs on onnxruntime
        (see :func:`calibration_statistics`).

    Returns
    -------
    (Graph, QuantReport)
        A quantized copy of the graph and the report.
    """
    if config is None:
        if arch is None:
            arch = ArchConfig()
        config = QuantConfig.from_arch(arch)
    out = graph.copy()
    notes = []
    if ranges is None:
        if calibration is None:
            msg = (f"No calibration data given: scales of {graph.name!r} come from "
                   f"{random_samples} seeded random inputs (seed {seed}); pass real input "
                   f"samples (.npy/.npz) for representative ranges")
            warnings.warn(msg, stacklevel=2)
            notes.append(msg)
            batches = random_calibration(graph, random_samples, seed)
            source = f"random (seed {seed})"
        else:
            batches = load_calibration(graph, calibration)
            source = str(calibration) if isinstance(calibration, (str, Path)) else "samples"
        count = len(next(iter(batches.values())))
        ranges, means = calibration_statistics(graph, batches, config.percentile,
                                               model=model)
    else:
        source, count = "precomputed ranges", 0

    def out_scale(tensor, layer):
        if tensor not in ranges:
            raise QuantizationError(f"No calibration range for tensor {tensor!r}; the "
                                    f"calibration did not reach it")
        r = ranges[tensor]
        if layer is not None:
            # The clamp bounds the range: a ReLU6 output never exceeds 6.
            f_lo, f_hi = layer.act_bounds
            r = min(r, max(abs(f_lo) if math.isfinite(f_lo) else r,
                           abs(f_hi) if math.isfinite(f_hi) else r))
        if config.pot:
            return pot_scale(r, config.act_bits)
        return float_scale(r, config.act_bits)

    def weight_fn(layer):
        return quantize_weights(layer.weight, config.weight_bits, scheme=config.weight_scheme,
                                pot_exp_bits=config.pot_exp_bits,
                                per_channel=config.scale_mode == "per_channel",
                                pot_scales=config.pot, where=f"Layer {layer.name!r}")

    rows = quantize_with_scales(out, config, out_scale, weight_fn, means)
    out.validate()
    report = QuantReport(model=graph.name, act_bits=config.act_bits,
                         weight_bits=config.weight_bits, weight_scheme=config.weight_scheme,
                         scale_mode=config.scale_mode, calibration=source,
                         calibration_samples=count, layers=rows, warnings=notes)
    return out, report


def quantize_graph(graph: Graph, ctx) -> Graph:
    """Pipeline pass: quantize with the context's arch and options.

    Reads ``ctx.arch`` (default arch if ``None``) and ``ctx.options``:
    ``"calibration"`` (samples or file; random with a warning if absent),
    ``"quant"`` (a dict of :class:`QuantConfig` overrides, e.g.
    ``{"scale_mode": "pot"}``) and ``"calibration_seed"``. Stores the
    :class:`QuantReport` in ``ctx.options["quant_report"]``.
    """
    arch = ctx.arch if ctx.arch is not None else ArchConfig()
    config = QuantConfig.from_arch(arch, **ctx.options.get("quant", {}))
    quantized, report = quantize(graph, config, ctx.options.get("calibration"),
                                 seed=ctx.options.get("calibration_seed", 0))
    ctx.options["quant_report"] = report
    return quantized
