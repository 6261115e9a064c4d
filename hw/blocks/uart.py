"""A UART: 8 data bits, no parity, one stop bit (8N1), at ``clock / divisor`` baud.

:class:`UartRx` samples the (synchronized) line in the middle of each bit and emits
each received byte on a stream; :class:`UartTx` sends the bytes of a stream. Any
divisor from 1 up works: a divisor of 1 (one bit per clock) serves simulation, a
board at 50 MHz uses e.g. 50 for 1 Mbaud.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["UartRx", "UartTx"]


def _check_divisor(divisor):
    if not isinstance(divisor, int) or isinstance(divisor, bool):
        raise TypeError(f"UART divisor must be an integer, not {divisor!r}")
    if divisor < 1:
        raise ValueError(f"UART divisor must be at least 1, not {divisor!r}")


class UartRx(wiring.Component):
    """UART receiver.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit.

    Members
    -------
    rx : In(1)
        The serial line (idle high); synchronized inside.
    data : Out(stream.Signature(8))
        One beat per received byte. There is no back-pressure on a serial line: a
        byte not taken before the next one completes is lost and ``overrun`` is set.
    overrun : Out(1)
        Sticky: a byte was lost.
    framing_error : Out(1)
        Sticky: a stop bit was low (the byte was dropped).
    """

    def __init__(self, divisor: int):
        _check_divisor(divisor)
        self.divisor = divisor
        super().__init__({
            "rx": In(1, init=1),
            "data": Out(stream.Signature(8)),
            "overrun": Out(1),
            "framing_error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        div = self.divisor
        line = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, line, init=1)

        count = Signal(range(2 * div + 1))
        bits = Signal(8)
        nbits = Signal(range(9))
        with m.If(self.data.valid & self.data.ready):
            m.d.sync += self.data.valid.eq(0)

        with m.FSM():
            with m.State("IDLE"), m.If(~line):
                # The start bit was seen somewhere in its first cycle: the middle of
                # data bit 0 is one and a half bit periods away.
                m.d.sync += [count.eq(div + div // 2 - 1), nbits.eq(0)]
                m.next = "DATA"
            with m.State("DATA"):
                with m.If(count == 0):
                    m.d.sync += [bits.eq((bits >> 1) | (line << 7)), nbits.eq(nbits + 1),
                                 count.eq(div - 1)]
                    with m.If(nbits == 7):
                        m.next = "STOP"
                with m.Else():
                    m.d.sync += count.eq(count - 1)
            with m.State("STOP"):
                with m.If(count == 0):
                    with m.If(line):
                        m.d.sync += [self.data.payload.eq(bits), self.data.valid.eq(1)]
                        with m.If(self.data.valid & ~self.data.ready):
                            m.d.sync += self.overrun.eq(1)
                    with m.Else():
                        m.d.sync += self.framing_error.eq(1)
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += count.eq(count - 1)
        return m


class UartTx(wiring.Component):
    """UART transmitter.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit.

    Members
    -------
    data : In(stream.Signature(8))
        Bytes to send; a byte is taken when the previous one's stop bit is out.
    tx : Out(1)
        The serial line (idle high).
    busy : Out(1)
        A byte is being sent.
    """

    def __init__(self, divisor: int):
        _check_divisor(divisor)
        self.divisor = divisor
        super().__init__({
            "data": In(stream.Signature(8)),
            "tx": Out(1, init=1),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        div = self.divisor
        shift = Signal(10, init=0x3FF)
        left = Signal(range(11))
        count = Signal(range(div))
        m.d.comb += [self.tx.eq(shift[0]), self.busy.eq(left != 0),
                     self.data.ready.eq(left == 0)]
        with m.If(self.data.valid & self.data.ready):
            m.d.sync += [shift.eq((1 << 9) | (self.data.payload << 1)), left.eq(10),
                         count.eq(div - 1)]
        with m.Elif(left != 0):
            with m.If(count == 0):
                m.d.sync += [shift.eq((shift >> 1) | (1 << 9)), left.eq(left - 1),
                             count.eq(div - 1)]
            with m.Else():
                m.d.sync += count.eq(count - 1)
        return m
