"""KxK convolver: the dot product of a pixel window with a run-time loaded kernel."""

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .adder_tree import AdderTree

__all__ = ["Convolver"]


def _check_int(name, value, lo):
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if value < lo:
        raise ValueError(f"{name} must be at least {lo}, not {value!r}")


class Convolver(wiring.Component):
    """Multiplies a KxK window by a KxK kernel and sums the products, one window per cycle.

    The ``k * k`` products are registered (one multiplier each, a DSP slice on
    an FPGA), then summed by an :class:`~hw.blocks.adder_tree.AdderTree`. The
    result is exact: ``data_width + weight_width`` bits per product, plus
    ``ceil(log2(k * k))`` bits of growth in the sum.

    The kernel is a register loaded from the ``w`` stream, a whole kernel per
    transfer; ``w.ready`` is always high. A kernel accepted in cycle ``t`` applies to windows
    accepted from cycle ``t + 1`` on; windows already accepted keep the kernel
    they were multiplied with, so the kernel may change between any two windows
    without draining the pipe. After reset the kernel is all zeros. A kernel
    smaller than ``k`` runs centred in a larger convolver with zero weights
    around it (and the window generator's padding set to match).

    Back-pressure stalls the whole pipe (see :class:`AdderTree`).

    Parameters
    ----------
    k : int
        Kernel side, at least 1.
    data_width : int
        Signed width of window pixels, at least 2.
    weight_width : int
        Signed width of weights, at least 2.

    Members
    -------
    w : ``In(stream.Signature(kernel_layout))``
        Kernel, indexed ``[row][col]``.
    i : ``In(stream.Signature(window_layout))``
        Window, indexed ``[row][col]``: ``ArrayLayout(ArrayLayout(signed(data_width), k), k)``,
        the per-lane slice of :class:`~hw.blocks.line_buffer.WindowGenerator`'s output.
    o : ``Out(stream.Signature(signed(out_width)))``
        ``sum(window[r][c] * kernel[r][c])``.

    Latency is :attr:`latency` cycles (``1 + ceil(log2(k * k))``); throughput one
    window per cycle.
    """

    def __init__(self, k, data_width, weight_width):
        _check_int("Convolver kernel size k", k, 1)
        _check_int("Convolver data_width", data_width, 2)
        _check_int("Convolver weight_width", weight_width, 2)
        self._k = k
        self._data_width = data_width
        self._weight_width = weight_width
        super().__init__({
            "w": In(stream.Signature(self.kernel_layout)),
            "i": In(stream.Signature(self.window_layout)),
            "o": Out(stream.Signature(signed(self.out_width))),
        })

    @property
    def k(self):
        return self._k

    @property
    def window_layout(self):
        """``ArrayLayout(ArrayLayout(signed(data_width), k), k)``, indexed ``[row][col]``."""
        return data.ArrayLayout(data.ArrayLayout(signed(self._data_width), self._k), self._k)

    @property
    def kernel_layout(self):
        """``ArrayLayout(ArrayLayout(signed(weight_width), k), k)``, indexed ``[row][col]``."""
        return data.ArrayLayout(data.ArrayLayout(signed(self._weight_width), self._k), self._k)

    @property
    def out_width(self):
        """Signed width of the dot product: ``data_width + weight_width + ceil(log2(k * k))``."""
        return self._data_width + self._weight_width + ceil_log2(self._k * self._k)

    @property
    def latency(self):
        """Cycles from a window's acceptance to its dot product's ``valid``."""
        return 1 + ceil_log2(self._k * self._k)

    def elaborate(self, platform):
        m = Module()
        m.submodules.adder_tree = tree = AdderTree(self._k * self._k,
                                                   self._data_width + self._weight_width)
        k = self._k

        kernel = Signal(self.kernel_layout)
        m.d.comb += self.w.ready.eq(1)
        with m.If(self.w.valid):
            m.d.sync += kernel.eq(self.w.payload)

        # The product registers are the adder tree's input stage: they hold while
        # the tree stalls, exactly like its own levels.
        products = Signal(tree.i.payload.shape())
        valid = Signal()
        advance = ~valid | tree.i.ready
        with m.If(advance):
            m.d.sync += valid.eq(self.i.valid)
            for r in range(k):
                for c in range(k):
                    m.d.sync += products[r * k + c].eq(self.i.payload[r][c] * kernel[r][c])
        m.d.comb += [
            self.i.ready.eq(advance),
            tree.i.valid.eq(valid),
            tree.i.payload.eq(products),
        ]
        wiring.connect(m, tree.o, wiring.flipped(self.o))
        return m
