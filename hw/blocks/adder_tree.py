"""Pipelined adder tree with exact bit growth."""

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

__all__ = ["AdderTree"]


def _check_int(name, value, lo):
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if value < lo:
        raise ValueError(f"{name} must be at least {lo}, not {value!r}")


class AdderTree(wiring.Component):
    """Sum of ``n`` signed terms, one sum per cycle, with a register after every level.

    Each level adds neighbouring pairs and widens by one bit, so no sum can
    overflow: the output is ``width + ceil(log2(n))`` bits wide and exact for
    every input, the most negative ones included. An odd term out is carried,
    sign-extended, to the next level.

    Back-pressure stalls the whole pipe: every level holds while the output is
    valid and not accepted. ``i.ready`` therefore follows ``o.ready`` through
    combinational logic (``valid`` never depends on ``ready``).

    Parameters
    ----------
    n : int
        Number of terms (fan-in), at least 1.
    width : int
        Signed width of every term, at least 2.

    Members
    -------
    i : ``In(stream.Signature(ArrayLayout(signed(width), n)))``
        Terms; term 0 in the least significant bits.
    o : ``Out(stream.Signature(signed(width + ceil(log2(n)))))``
        Their sum.

    Latency is :attr:`latency` cycles (``ceil(log2(n))``; a fan-in of 1 is a
    wire). Throughput is one sum per cycle.
    """

    def __init__(self, n, width):
        _check_int("Adder tree fan-in n", n, 1)
        _check_int("Adder tree term width", width, 2)
        self._n = n
        self._width = width
        super().__init__({
            "i": In(stream.Signature(data.ArrayLayout(signed(width), n))),
            "o": Out(stream.Signature(signed(self.out_width))),
        })

    @property
    def n(self):
        """Fan-in."""
        return self._n

    @property
    def width(self):
        """Signed width of each term."""
        return self._width

    @property
    def latency(self):
        """Cycles from a term vector's acceptance to its sum's ``valid``."""
        return ceil_log2(self._n)

    @property
    def out_width(self):
        """Signed width of the sum: ``width + ceil(log2(n))``."""
        return self._width + ceil_log2(self._n)

    def elaborate(self, platform):
        m = Module()
        terms = [self.i.payload[k] for k in range(self._n)]
        valid = self.i.valid
        advance = Signal()
        width = self._width
        level = 0
        while len(terms) > 1:
            width += 1
            sums = []
            for k in range(0, len(terms), 2):
                reg = Signal(signed(width), name=f"l{level}_s{k // 2}")
                pair = terms[k] + terms[k + 1] if k + 1 < len(terms) else terms[k]
                with m.If(advance):
                    m.d.sync += reg.eq(pair)
                sums.append(reg)
            level_valid = Signal(name=f"l{level}_valid")
            with m.If(advance):
                m.d.sync += level_valid.eq(valid)
            terms, valid = sums, level_valid
            level += 1
        m.d.comb += [
            advance.eq(~self.o.valid | self.o.ready),
            self.o.valid.eq(valid),
            self.o.payload.eq(terms[0]),
        ]
        m.d.comb += self.i.ready.eq(advance if level else self.o.ready)
        return m
