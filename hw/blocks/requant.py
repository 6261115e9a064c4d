"""Requantization and activation: accumulators back to activations.

Each lane computes, bit-exactly as ``sim.golden.requantize``::

    y = clamp(round_shift(acc * m, s), lo, hi)
    round_shift(x, s) = (x + (1 << (s - 1))) >> s    (s > 0, arithmetic)
    round_shift(x, 0) = x

The activation is only the clamp: none is ``lo, hi = qrange(act_bits)``, ReLU
``lo = 0``, ReLU6 ``hi = q(6)``, any clip its own bounds.

Where the parameters come from
------------------------------
``lo`` and ``hi`` belong to a layer: they are configuration ports. ``m`` and
``s`` are per output channel in general, and the lanes of one vector are
different output channels, so with ``per_channel=True`` (the default) each lane
carries its own ``m`` and ``s`` in the payload, next to its accumulator; the
engine reads them from its parameter buffer along with the bias. With
``per_channel=False`` they are configuration ports shared by all lanes (average
pooling, residual add).

Configuration ports are sampled together with each input vector, at its
handshake, and travel down the pipeline with it, so they may change between
any two vectors (for example at a layer boundary) without draining the unit.
"""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..timing import REQUANT_LATENCY

__all__ = ["RequantUnit", "clamp", "product_slices", "round_shift"]

#: Bits of the accumulator one partial product takes: an unsigned 17-bit slice (or the
#: signed top slice) is one operand of an 18x18 signed DSP multiplier.
_SLICE = 17


def product_slices(acc_bits):
    """``(lo, hi)`` bit ranges of an accumulator's partial products, low first; the top
    slice (signed) may be one bit wider than the others, since a DSP operand is 18 bits."""
    bounds = list(range(0, acc_bits, _SLICE))
    if len(bounds) > 1 and acc_bits - bounds[-1] == 1:
        bounds.pop()
    return [(lo, hi) for lo, hi in zip(bounds, bounds[1:] + [acc_bits])]


def _check_int(name, value, lo, hi):
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer between {lo} and {hi}, not {value!r}")


def round_shift(m, x, s, shift_bits):
    """Add to ``m`` the logic of ``round_shift(x, s)`` and return the result.

    Uses ``((x >> (s - 1)) + 1) >> 1`` for ``s > 0``, which equals
    ``floor(x / 2**s + 1/2)`` without building the constant ``1 << (s - 1)``
    (as wide as the largest shift).
    """
    s_m1, s_zero = (s - 1)[:shift_bits], s == 0
    pre = Signal(signed(len(x)))
    m.d.comb += pre.eq(x >> s_m1)
    rounded = Signal(signed(len(x) + 1))
    m.d.comb += rounded.eq(Mux(s_zero, x, (pre + 1) >> 1))
    return rounded


def clamp(x, lo, hi):
    """``min(max(x, lo), hi)``, the order of ``numpy.clip``."""
    raised = Mux(x < lo, lo, x)
    return Mux(raised > hi, hi, raised)


class RequantUnit(wiring.Component):
    """Pipelined requantize / activation of ``lanes`` accumulators per cycle.

    Parameters
    ----------
    lanes : int
        Accumulators per vector (1 to 1024).
    acc_bits : int
        Signed accumulator width (2 to 64).
    act_bits : int
        Signed output width (2 to 32).
    mult_bits : int
        Unsigned multiplier width (1 to 32).
    shift_bits : int
        Unsigned shift width (1 to 7); shifts up to ``2**shift_bits - 1``.
    per_channel : bool
        ``m`` / ``s`` per lane in the payload (True) or per layer on ports (False).
    user_bits : int
        Width of an opaque ``user`` field passed from input to output with its
        vector (0 for none), e.g. a last-of-tile flag or an address.

    Members
    -------
    i : ``In(stream.Signature(input_layout))``
        ``acc`` (``ArrayLayout(signed(acc_bits), lanes)``); with ``per_channel``
        also ``m`` (``ArrayLayout(unsigned(mult_bits), lanes)``) and ``s``
        (``ArrayLayout(unsigned(shift_bits), lanes)``); ``user`` if ``user_bits``.
    o : ``Out(stream.Signature(output_layout))``
        ``y`` (``ArrayLayout(signed(act_bits), lanes)``); ``user`` if ``user_bits``.
    lo, hi : ``In(signed(act_bits))``
        Clamp bounds (``lo <= hi``), sampled with each input vector.
    m : ``In(unsigned(mult_bits))``, s : ``In(unsigned(shift_bits))``
        Only without ``per_channel``: layer multiplier and shift, sampled with
        each input vector.

    Latency :attr:`latency` (5) cycles from input handshake to ``o.valid``;
    throughput one vector per cycle. The pipeline stalls as a whole while ``o``
    holds an unaccepted vector (``i.ready = ~o.valid | o.ready``).
    """

    latency = REQUANT_LATENCY

    def __init__(self, lanes, acc_bits, act_bits, mult_bits=16, shift_bits=6, *,
                 per_channel=True, user_bits=0):
        _check_int("lanes", lanes, 1, 1024)
        _check_int("acc_bits", acc_bits, 2, 64)
        _check_int("act_bits", act_bits, 2, 32)
        _check_int("mult_bits", mult_bits, 1, 32)
        _check_int("shift_bits", shift_bits, 1, 7)
        if not isinstance(per_channel, bool):
            raise TypeError(f"per_channel must be a bool, not {per_channel!r}")
        _check_int("user_bits", user_bits, 0, 1024)
        self._lanes = lanes
        self._acc_bits = acc_bits
        self._act_bits = act_bits
        self._mult_bits = mult_bits
        self._shift_bits = shift_bits
        self._per_channel = per_channel
        self._user_bits = user_bits

        fields = {"acc": data.ArrayLayout(signed(acc_bits), lanes)}
        if per_channel:
            fields["m"] = data.ArrayLayout(unsigned(mult_bits), lanes)
            fields["s"] = data.ArrayLayout(unsigned(shift_bits), lanes)
        if user_bits:
            fields["user"] = unsigned(user_bits)
        self._input_layout = data.StructLayout(fields)
        out_fields = {"y": data.ArrayLayout(signed(act_bits), lanes)}
        if user_bits:
            out_fields["user"] = unsigned(user_bits)
        self._output_layout = data.StructLayout(out_fields)

        members = {
            "i": In(stream.Signature(self._input_layout)),
            "o": Out(stream.Signature(self._output_layout)),
            "lo": In(signed(act_bits)),
            "hi": In(signed(act_bits)),
        }
        if not per_channel:
            members["m"] = In(unsigned(mult_bits))
            members["s"] = In(unsigned(shift_bits))
        super().__init__(members)

    @property
    def input_layout(self):
        return self._input_layout

    @property
    def output_layout(self):
        return self._output_layout

    @property
    def lanes(self):
        return self._lanes

    @property
    def per_channel(self):
        return self._per_channel

    def elaborate(self, platform):
        m = Module()
        n = self._lanes
        advance = Signal()
        m.d.comb += [
            advance.eq(~self.o.valid | self.o.ready),
            self.i.ready.eq(advance),
        ]

        def stage_regs(prefix):
            return {
                "v": Signal(name=f"{prefix}_valid"),
                "lo": Signal(signed(self._act_bits), name=f"{prefix}_lo"),
                "hi": Signal(signed(self._act_bits), name=f"{prefix}_hi"),
                "user": Signal(max(self._user_bits, 1), name=f"{prefix}_user"),
            }

        # Stage 1: input registers (they also let a DSP absorb its input register).
        s1 = stage_regs("s1")
        acc1 = [Signal(signed(self._acc_bits), name=f"s1_acc{k}") for k in range(n)]
        # Per-layer parameters are registered once and shared by every lane.
        n_par = n if self._per_channel else 1
        m1 = [Signal(unsigned(self._mult_bits), name=f"s1_m{k}") for k in range(n_par)]
        sh1 = [Signal(unsigned(self._shift_bits), name=f"s1_s{k}") for k in range(n_par)]
        payload = self.i.payload
        with m.If(advance):
            m.d.sync += [
                s1["v"].eq(self.i.valid),
                s1["lo"].eq(self.lo),
                s1["hi"].eq(self.hi),
            ]
            if self._user_bits:
                m.d.sync += s1["user"].eq(payload.user)
            for k in range(n):
                m.d.sync += acc1[k].eq(payload.acc[k])
                if self._per_channel:
                    m.d.sync += [m1[k].eq(payload.m[k]), sh1[k].eq(payload.s[k])]
            if not self._per_channel:
                m.d.sync += [m1[0].eq(self.m), sh1[0].eq(self.s)]

        # Stage 2: partial products, one per slice of the accumulator that a DSP
        # multiplier takes (``_SLICE`` bits, the top slice signed), each registered at
        # the multiplier's output; the shift less one and whether it is zero.
        s2 = stage_regs("s2")
        prod_bits = self._acc_bits + self._mult_bits + 1
        slices = product_slices(self._acc_bits)
        part2 = [[Signal(signed(hi - lo + self._mult_bits + 1), name=f"s2_p{k}_{lo}")
                  for lo, hi in slices] for k in range(n)]
        sh2 = [Signal(unsigned(self._shift_bits), name=f"s2_s{k}") for k in range(n_par)]
        z2 = [Signal(name=f"s2_z{k}") for k in range(n_par)]
        with m.If(advance):
            m.d.sync += [s2[key].eq(s1[key]) for key in s1]
            m.d.sync += [sh2[k].eq(sh1[k] - 1) for k in range(n_par)]
            m.d.sync += [z2[k].eq(sh1[k] == 0) for k in range(n_par)]
            for k in range(n):
                for (lo, hi), part in zip(slices, part2[k]):
                    piece = acc1[k][lo:hi]
                    if hi == self._acc_bits:
                        piece = piece.as_signed()
                    m.d.sync += part.eq(piece * m1[k % n_par])

        # Stage 2b: the product, the partial products' sum.
        s2b = stage_regs("s2b")
        p2 = [Signal(signed(prod_bits), name=f"s2b_p{k}") for k in range(n)]
        sh2b = [Signal(unsigned(self._shift_bits), name=f"s2b_s{k}") for k in range(n_par)]
        z2b = [Signal(name=f"s2b_z{k}") for k in range(n_par)]
        with m.If(advance):
            m.d.sync += [s2b[key].eq(s2[key]) for key in s2]
            m.d.sync += [sh2b[k].eq(sh2[k]) for k in range(n_par)]
            m.d.sync += [z2b[k].eq(z2[k]) for k in range(n_par)]
            for k in range(n):
                total = 0
                for (lo, _), part in zip(slices, part2[k]):
                    total = total + (part << lo)
                m.d.sync += p2[k].eq(total)
        s2, sh2, z2 = s2b, sh2b, z2b

        # Stage 3: the shift. ``round_shift(x, s) = (pre + 1) >> 1`` with ``pre`` =
        # ``x >> (s - 1)``, or ``2 * x`` for ``s = 0``; the clamp bounds doubled for it.
        s3 = stage_regs("s3")
        pre3 = [Signal(signed(prod_bits + 1), name=f"s3_pre{k}") for k in range(n)]
        below3 = Signal(signed(self._act_bits + 2), name="s3_below")   # 2 * lo - 1
        above3 = Signal(signed(self._act_bits + 2), name="s3_above")   # 2 * hi
        empty3 = Signal(name="s3_empty")                               # lo > hi
        with m.If(advance):
            m.d.sync += [s3[key].eq(s2[key]) for key in s2]
            m.d.sync += [below3.eq(s2["lo"] * 2 - 1), above3.eq(s2["hi"] * 2),
                         empty3.eq(s2["lo"] > s2["hi"])]
            for k in range(n):
                m.d.sync += pre3[k].eq(Mux(z2[k % n_par], p2[k] * 2,
                                           p2[k] >> sh2[k % n_par]))

        # Stage 4: the rounding and the clamp into the output register. ``r = (pre + 1)
        # >> 1`` is below ``lo`` exactly when ``pre < 2 * lo - 1`` and above ``hi`` when
        # ``pre > 2 * hi``: the compares read ``pre`` in parallel with the rounding add,
        # which only the output's bits need (``clamp``'s order: ``lo`` wins when above
        # ``hi``, then ``hi``).
        with m.If(advance):
            m.d.sync += self.o.valid.eq(s3["v"])
            if self._user_bits:
                m.d.sync += self.o.payload.user.eq(s3["user"])
            a = self._act_bits
            for k in range(n):
                low = Signal(a, name=f"s4_low{k}")
                m.d.comb += low.eq((pre3[k][:a + 1] + 1)[1:a + 1])
                with m.If(pre3[k] < below3):
                    m.d.sync += self.o.payload.y[k].eq(Mux(empty3, s3["hi"], s3["lo"]))
                with m.Elif(pre3[k] > above3):
                    m.d.sync += self.o.payload.y[k].eq(s3["hi"])
                with m.Else():
                    m.d.sync += self.o.payload.y[k].eq(low)
        return m
