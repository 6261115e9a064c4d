"""Multiply elements and multiply-accumulate processing elements.

Three multiplier flavours follow the weight schemes of :mod:`hw.weight_codes`:

* ``"uniform"``: a full signed multiplier (maps onto a DSP slice);
* ``"pot"``: a barrel shifter and a conditional negation, no multiplier;
* ``"apot"``: two shifters and an adder.

:class:`MultiplierElement` is the bare product ``a * w`` the convolvers and
MAC arrays instantiate once per MAC. :class:`MACPE` wraps one multiplier with a
stream interface and an accumulator that computes one dot product per ``last``
flag; its zero-aware variant gates the multiplier and the accumulator on MACs
whose activation or weight is zero and counts them.
"""

from amaranth.hdl import Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .. import weight_codes

__all__ = ["MACPE", "MultiplierElement", "product_bits", "weight_is_zero", "weight_shape"]


def _check_int(name, value, lo, hi):
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer between {lo} and {hi}, not {value!r}")


def _check_scheme(scheme):
    if not isinstance(scheme, str):
        raise TypeError(f"scheme must be a string, not {scheme!r}")
    if scheme not in weight_codes.SCHEMES:
        raise ValueError(
            f"scheme must be one of {', '.join(weight_codes.SCHEMES)}, not {scheme!r}")


def product_bits(scheme, act_bits, weight_bits, exp_bits):
    """Signed width that holds every product ``a * w`` exactly.

    A full multiplier needs ``act_bits + weight_bits``. A PoT product is at most
    ``2**(act_bits - 1 + max_exp)`` in magnitude, an APoT product twice that, so
    both need one bit less than ``act_bits + value_bits``.
    """
    vbits = weight_codes.value_bits(scheme, weight_bits, exp_bits)
    if scheme == "uniform":
        return act_bits + vbits
    return act_bits + vbits - 1


def weight_shape(scheme, weight_bits, exp_bits):
    """Shape of a weight port: ``signed(weight_bits)`` for ``"uniform"``, else the
    unsigned code of :func:`hw.weight_codes.code_width`."""
    width = weight_codes.code_width(scheme, weight_bits, exp_bits)
    return signed(width) if scheme == "uniform" else unsigned(width)


def _pot_fields(code, exp_bits):
    return code[:exp_bits], code[exp_bits], code[exp_bits + 1]


def _pot_product(a, code, exp_bits):
    exp, sign, zero = _pot_fields(code, exp_bits)
    shifted = a << exp
    return Mux(zero, 0, Mux(sign, -shifted, shifted))


def weight_is_zero(scheme, code, exp_bits):
    """Amaranth expression that is 1 when the weight ``code`` has the value 0.

    For APoT this also recognises the non-canonical pair ``2**e - 2**e``.
    """
    _check_scheme(scheme)
    code = Value.cast(code)
    if scheme == "uniform":
        return code == 0
    if scheme == "pot":
        return code[exp_bits + 1]
    half = 2 + exp_bits
    e0, s0, z0 = _pot_fields(code[:half], exp_bits)
    e1, s1, z1 = _pot_fields(code[half:], exp_bits)
    return (z0 & z1) | (~z0 & ~z1 & (e0 == e1) & (s0 != s1))


class MultiplierElement(wiring.Component):
    """Product of a signed activation and a weight code: ``p = a * w``.

    Parameters
    ----------
    scheme : str
        ``"uniform"``, ``"pot"`` or ``"apot"`` (see :mod:`hw.weight_codes`).
    act_bits : int
        Signed activation width (2 to 32).
    weight_bits : int
        Signed weight width of the ``"uniform"`` scheme (2 to 32); only
        validated for the other schemes.
    exp_bits : int
        Exponent field of PoT / APoT codes (1 to 5); only validated for
        ``"uniform"``.
    registered : bool
        Register the product (one cycle of latency, gated by ``en``) instead of
        computing it combinationally.

    Members
    -------
    a : ``In(signed(act_bits))``
        Activation.
    w : ``In(signed(weight_bits))`` for ``"uniform"``, else ``In(unsigned(code_bits))``
        Weight code.
    p : ``Out(signed(product_bits))``
        Exact product.
    en : ``In(1, init=1)``
        Only when ``registered``: the product register loads when ``en`` is high.

    Latency is :attr:`latency` cycles (0 or 1); one product per cycle.
    """

    def __init__(self, scheme, act_bits, weight_bits, exp_bits=3, *, registered=False):
        _check_scheme(scheme)
        _check_int("act_bits", act_bits, 2, 32)
        _check_int("weight_bits", weight_bits, 2, 32)
        _check_int("exp_bits", exp_bits, 1, 5)
        if not isinstance(registered, bool):
            raise TypeError(f"registered must be a bool, not {registered!r}")
        self._scheme = scheme
        self._act_bits = act_bits
        self._weight_bits = weight_bits
        self._exp_bits = exp_bits
        self._registered = registered
        members = {
            "a": In(signed(act_bits)),
            "w": In(self.weight_shape),
            "p": Out(signed(self.product_bits)),
        }
        if registered:
            members["en"] = In(1, init=1)
        super().__init__(members)

    @property
    def scheme(self):
        return self._scheme

    @property
    def code_bits(self):
        """Width of the weight port."""
        return weight_codes.code_width(self._scheme, self._weight_bits, self._exp_bits)

    @property
    def weight_shape(self):
        return weight_shape(self._scheme, self._weight_bits, self._exp_bits)

    @property
    def product_bits(self):
        return product_bits(self._scheme, self._act_bits, self._weight_bits, self._exp_bits)

    @property
    def latency(self):
        return 1 if self._registered else 0

    def elaborate(self, platform):
        m = Module()
        eb = self._exp_bits
        if self._scheme == "uniform":
            product = self.a * self.w
        elif self._scheme == "pot":
            product = _pot_product(self.a, self.w, eb)
        else:
            half = 2 + eb
            product = (_pot_product(self.a, self.w[:half], eb)
                       + _pot_product(self.a, self.w[half:], eb))
        if self._registered:
            with m.If(self.en):
                m.d.sync += self.p.eq(product)
        else:
            m.d.comb += self.p.eq(product)
        return m


class MACPE(wiring.Component):
    """Multiply-accumulate processing element: one dot product per ``last``.

    Each accepted input beat adds ``a * w`` to the accumulator. The beat that
    carries ``last = 1`` completes the dot product: the sum including that beat
    is emitted on ``o`` and the accumulator restarts from zero, so dot products
    follow each other without idle cycles and without a separate clear. The
    accumulator wraps at ``acc_bits`` (the compiler proves it cannot overflow).

    With ``zero_aware``, a beat whose activation or weight is zero does not load
    the multiplier input registers, the product register or the accumulator
    (their switching is what costs power), and increments ``skipped``. Results
    and timing are those of the plain PE.

    Parameters
    ----------
    scheme : str
        ``"uniform"``, ``"pot"`` or ``"apot"``.
    act_bits, weight_bits : int
        Signed activation and (uniform) weight widths, 2 to 32.
    acc_bits : int
        Signed accumulator width, at least :func:`product_bits`, at most 64.
    exp_bits : int
        PoT / APoT exponent field width, 1 to 5.
    zero_aware : bool
        Skip and count MACs with a zero operand.
    count_bits : int
        Width of the ``skipped`` counter (1 to 64); it wraps.

    Members
    -------
    i : ``In(stream.Signature(input_layout))``
        Operand beats: ``a`` (signed activation), ``w`` (weight code as in
        :class:`MultiplierElement`), ``last`` (final beat of a dot product).
    o : ``Out(stream.Signature(signed(acc_bits)))``
        One dot product per ``last`` beat.
    skipped : ``Out(count_bits)``
        Only with ``zero_aware``: MACs skipped since reset.

    Latency: ``o.valid`` rises :attr:`latency` (3) cycles after the ``last``
    beat's handshake. Throughput: one beat per cycle. The pipeline stalls as a
    whole while ``o`` holds an unaccepted result, so ``i.ready`` is
    ``~o.valid | o.ready``.
    """

    latency = 3

    def __init__(self, scheme, act_bits, weight_bits, acc_bits, exp_bits=3, *,
                 zero_aware=False, count_bits=32):
        _check_scheme(scheme)
        _check_int("act_bits", act_bits, 2, 32)
        _check_int("weight_bits", weight_bits, 2, 32)
        _check_int("exp_bits", exp_bits, 1, 5)
        pbits = product_bits(scheme, act_bits, weight_bits, exp_bits)
        _check_int("acc_bits", acc_bits, 2, 64)
        if acc_bits < pbits:
            raise ValueError(
                f"acc_bits must be at least the product width {pbits}, not {acc_bits!r}")
        if not isinstance(zero_aware, bool):
            raise TypeError(f"zero_aware must be a bool, not {zero_aware!r}")
        _check_int("count_bits", count_bits, 1, 64)
        self._scheme = scheme
        self._act_bits = act_bits
        self._weight_bits = weight_bits
        self._acc_bits = acc_bits
        self._exp_bits = exp_bits
        self._zero_aware = zero_aware
        self._input_layout = data.StructLayout({
            "a": signed(act_bits),
            "w": weight_shape(scheme, weight_bits, exp_bits),
            "last": 1,
        })
        members = {
            "i": In(stream.Signature(self._input_layout)),
            "o": Out(stream.Signature(signed(acc_bits))),
        }
        if zero_aware:
            members["skipped"] = Out(count_bits)
        super().__init__(members)

    @property
    def input_layout(self):
        return self._input_layout

    @property
    def zero_aware(self):
        return self._zero_aware

    @property
    def product_bits(self):
        return product_bits(self._scheme, self._act_bits, self._weight_bits, self._exp_bits)

    def elaborate(self, platform):
        m = Module()
        m.submodules.mul = mul = MultiplierElement(
            self._scheme, self._act_bits, self._weight_bits, self._exp_bits)

        advance = Signal()
        m.d.comb += [
            advance.eq(~self.o.valid | self.o.ready),
            self.i.ready.eq(advance),
        ]

        # Stage 1: operand registers feeding the multiplier.
        v1, last1, skip1 = Signal(), Signal(), Signal()
        a1 = Signal(signed(self._act_bits))
        w1 = Signal(mul.weight_shape)
        if self._zero_aware:
            zero_in = (self.i.payload.a == 0) | weight_is_zero(
                self._scheme, self.i.payload.w, self._exp_bits)
        else:
            zero_in = Const(0, 1)
        with m.If(advance):
            m.d.sync += [
                v1.eq(self.i.valid),
                last1.eq(self.i.payload.last),
                skip1.eq(zero_in),
            ]
            with m.If(self.i.valid & ~zero_in):
                m.d.sync += [a1.eq(self.i.payload.a), w1.eq(self.i.payload.w)]
        m.d.comb += [mul.a.eq(a1), mul.w.eq(w1)]

        # Stage 2: product register.
        v2, last2, skip2 = Signal(), Signal(), Signal()
        p2 = Signal(signed(mul.product_bits))
        with m.If(advance):
            m.d.sync += [v2.eq(v1), last2.eq(last1), skip2.eq(skip1)]
            with m.If(v1 & ~skip1):
                m.d.sync += p2.eq(mul.p)

        # Stage 3: accumulator and result register.
        acc = Signal(signed(self._acc_bits))
        total = Signal(signed(self._acc_bits))
        m.d.comb += total.eq(Mux(skip2, acc, acc + p2))
        with m.If(advance):
            m.d.sync += self.o.valid.eq(v2 & last2)
            with m.If(v2):
                with m.If(last2):
                    m.d.sync += [self.o.payload.eq(total), acc.eq(0)]
                with m.Elif(~skip2):
                    m.d.sync += acc.eq(total)
                if self._zero_aware:
                    with m.If(skip2):
                        m.d.sync += self.skipped.eq(self.skipped + 1)
        return m
