"""A fully parallel SESL conv stage with constant weights, for one-row (1-D) frames.

:class:`UnrolledConvStage` computes one output pixel per cycle: the ``K`` taps of the
window are a shift register of pixels, and every weight is a constant of the datapath,
built from its value (:func:`constant_product`):

- ``0``: nothing (a pruned weight costs no logic);
- ``+-2**e``: a shift (and a negation);
- ``+-2**a +- 2**b`` (two non-zero digits of the non-adjacent form): two shifts and
  an adder;
- any other value: a multiplier by the constant (a DSP slice after synthesis).

So the netlist of a pruned, PoT- or APoT-quantized layer has exactly the multipliers
its weights need: the zero-aware, shift-based datapath of seed 001's DPD designs.

Timing: :data:`hw.sesl.config.WINDOW_LATENCY` cycles from accepting the last input
pixel of a window to its output beat (window register, products, sum, scale, round and
clamp, output register). A frame of ``W`` pixels takes ``W + K - 1`` cycles (the
padding positions are shifted in without an input beat).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..blocks.requant import clamp, round_shift
from .config import StageConfig
from .stage import pixel_signature

__all__ = ["UnrolledConvStage", "constant_product", "naf_digits"]


def naf_digits(value: int) -> list[tuple[int, int]]:
    """The non-zero digits ``(sign, exponent)`` of ``value``'s non-adjacent form
    (``value == sum(sign * 2**exponent)``, fewest non-zero digits)."""
    digits = []
    e = 0
    v = int(value)
    while v:
        if v & 1:
            d = 2 - (v & 3)  # +1 or -1
            digits.append((d, e))
            v -= d
        v >>= 1
        e += 1
    return digits


def constant_product(x, weight: int):
    """``x * weight`` for a constant ``weight``: ``None`` for 0, shifts and at most one
    adder for one or two non-adjacent-form digits, else a constant multiplier."""
    weight = int(weight)
    if weight == 0:
        return None
    digits = naf_digits(weight)
    if len(digits) > 2:
        return x * Const(weight, signed(max(weight.bit_length(), (-weight).bit_length()) + 1))
    total = None
    for sign, e in digits:
        term = x.shift_left(e) if e else x
        if total is None:
            total = term if sign > 0 else -term
        else:
            total = total + term if sign > 0 else total - term
    return total


def _tree(terms):
    """Balanced sum of ``terms``."""
    while len(terms) > 1:
        terms = [terms[i] + terms[i + 1] if i + 1 < len(terms) else terms[i]
                 for i in range(0, len(terms), 2)]
    return terms[0]


class UnrolledConvStage(wiring.Component):
    """A fully parallel conv stage (see the module text) for a :class:`StageConfig` with
    ``unrolled=True``.

    Members
    -------
    i : ``In(pixel_signature(C, act_bits))``
    o : ``Out(pixel_signature(M, act_bits))``
    """

    def __init__(self, cfg: StageConfig, *, act_bits=8, weight_bits=8, acc_bits=32,
                 mult_bits=16, shift_bits=6):
        if not isinstance(cfg, StageConfig):
            raise TypeError(f"cfg must be a StageConfig, not {cfg!r}")
        if not cfg.unrolled:
            raise ValueError(f"stage {cfg.name!r} is not an unrolled stage (unrolled=False)")
        self.cfg = cfg
        self.act_bits, self.weight_bits, self.acc_bits = act_bits, weight_bits, acc_bits
        self.mult_bits, self.shift_bits = mult_bits, shift_bits
        for oc in range(cfg.out_channels):
            mult, shift = cfg.m[oc], cfg.s[oc]
            if not 0 <= mult < (1 << mult_bits):
                raise ValueError(f"stage {cfg.name!r}: multiplier {mult} of channel {oc} "
                                 f"needs more than mult_bits={mult_bits}")
            if not 0 <= shift <= (1 << shift_bits) - 1:
                raise ValueError(f"stage {cfg.name!r}: shift {shift} of channel {oc} "
                                 f"needs more than shift_bits={shift_bits}")
        super().__init__({"i": In(pixel_signature(cfg.in_channels, act_bits)),
                          "o": Out(pixel_signature(cfg.out_channels, act_bits))})

    def weight(self, oc: int, ic: int, k: int) -> int:
        cfg = self.cfg
        return int(cfg.weights[(oc * cfg.in_channels + ic) * cfg.kernel[1] + k])

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()
        a, ab = self.act_bits, self.acc_bits
        c_in, _, w = cfg.in_shapes[0]
        m_out = cfg.out_channels
        kw = cfg.kernel[1]
        pl, pr = cfg.pads[1], cfg.pads[3]
        positions = pl + w + pr  # the padded row

        en = Signal()
        m.d.comb += en.eq(~self.o.valid | self.o.ready)

        # Position in the padded row; padding positions shift zeros in, without a beat.
        q = Signal(range(max(positions, 2)))
        pad = Signal()
        step = Signal()
        m.d.comb += [
            pad.eq((q < pl) | (q >= pl + w)),
            self.i.ready.eq(en & ~pad),
            step.eq(en & (pad | self.i.valid)),
        ]
        window = [Signal(c_in * a, name=f"tap{k}") for k in range(kw)]  # tap kw-1: newest
        w_valid = Signal()
        with m.If(en):
            m.d.sync += w_valid.eq(step & (q >= kw - 1))
        with m.If(step):
            m.d.sync += [window[k].eq(window[k + 1]) for k in range(kw - 1)]
            m.d.sync += window[kw - 1].eq(Mux(pad, 0, self.i.payload))
            m.d.sync += q.eq(Mux(q == positions - 1, 0, q + 1))

        def lane(k, ic):
            return window[k][ic * a:(ic + 1) * a].as_signed()

        # s1: the products (registered); s2: their sum with the bias.
        s1_valid, s2_valid, s3_valid, s4_valid = Signal(), Signal(), Signal(), Signal()
        sums = []
        for oc in range(m_out):
            terms = []
            for ic in range(c_in):
                for k in range(kw):
                    product = constant_product(lane(k, ic), self.weight(oc, ic, k))
                    if product is None:
                        continue
                    reg = Signal(signed(len(product)), name=f"p{oc}_{ic}_{k}")
                    with m.If(en):
                        m.d.sync += reg.eq(product)
                    terms.append(reg)
            bias = cfg.bias[oc] if cfg.bias else 0
            total = Signal(signed(ab), name=f"sum{oc}")
            value = _tree(terms) + bias if terms else Const(bias, signed(ab))
            with m.If(en):
                m.d.sync += total.eq(value)
            sums.append(total)
        # s3: (sum + bias) * m; s4: round, shift, clamp.
        mb, sb = self.mult_bits, self.shift_bits
        ys = []
        for oc in range(m_out):
            scaled = Signal(signed(ab + mb + 2), name=f"scaled{oc}")
            with m.If(en):
                m.d.sync += scaled.eq(sums[oc] * Const(cfg.m[oc], mb))
            rounded = round_shift(m, scaled, Const(cfg.s[oc], sb), sb)
            y = Signal(signed(a), name=f"y{oc}")
            with m.If(en):
                m.d.sync += y.eq(clamp(rounded, cfg.lo, cfg.hi))
            ys.append(y)
        with m.If(en):
            m.d.sync += [s1_valid.eq(w_valid), s2_valid.eq(s1_valid), s3_valid.eq(s2_valid),
                         s4_valid.eq(s3_valid)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(en & s4_valid):
            m.d.sync += [self.o.payload.eq(Cat(*ys)), self.o.valid.eq(1)]
        return m
