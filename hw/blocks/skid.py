"""A two-entry register stage that cuts a stream's combinational ready path."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SkidBuffer"]


class SkidBuffer(wiring.Component):
    """Two-entry register stage of a valid/ready stream whose ``i_ready`` is a register.

    Cuts the combinational ready path between a producer and a consumer: the producer
    sees ``i_ready`` straight from a flip-flop (no path from the consumer's ``o_ready``
    through it), the consumer sees ``o_valid`` and ``o_data`` from flip-flops. A beat
    taken in one cycle is on the output from the next; with ``o_ready`` held high the
    stage passes one beat per cycle, and when the consumer stalls it takes one more beat
    (the skid register) before ``i_ready`` falls.

    Members
    -------
    i_valid, i_data : In; i_ready : Out(1)
        The producer's side: a beat moves when ``i_valid`` and ``i_ready`` are high
        (``i_valid`` may depend on ``i_ready``).
    o_valid, o_data : Out; o_ready : In(1)
        The consumer's side.
    busy : Out(1)
        A beat is held.
    copy_en : In(ready_copies); copy_ready : Out(ready_copies)
        Further copies of ``i_ready`` for producers that take turns, each its own
        flip-flop so that each producer's ready fans out from a register beside it
        rather than from one flag routed to all of them: ``copy_ready[i]`` equals
        ``i_ready`` in every cycle after one with ``copy_en[i]`` high, and is high after a
        cycle with ``copy_en[i]`` low. A producer whose ``copy_en`` stays high while it
        may send (and in the cycle before) can use its copy as its ``i_ready``. The
        copies differ in their enables, so synthesis does not merge them. Only with
        ``ready_copies``.
    """

    def __init__(self, width, *, ready_copies=0):
        if not isinstance(width, int) or isinstance(width, bool):
            raise TypeError(f"Payload width must be an integer, not {width!r}")
        if width < 1:
            raise ValueError(f"Payload width must be at least 1, not {width!r}")
        if not isinstance(ready_copies, int) or isinstance(ready_copies, bool) \
                or ready_copies < 0:
            raise ValueError(f"Ready copies must be a non-negative integer, "
                             f"not {ready_copies!r}")
        self._copies = ready_copies
        copies = {}
        if ready_copies:
            copies = {"copy_en": In(ready_copies),
                      "copy_ready": Out(ready_copies, init=(1 << ready_copies) - 1)}
        super().__init__({"i_valid": In(1), "i_ready": Out(1), "i_data": In(width),
                          "o_valid": Out(1), "o_ready": In(1), "o_data": Out(width),
                          "busy": Out(1), **copies})

    def elaborate(self, platform):
        m = Module()
        skid_v = Signal()
        skid_d = Signal(len(self.i_data))
        pop = self.o_valid & self.o_ready
        m.d.comb += [self.i_ready.eq(~skid_v), self.busy.eq(self.o_valid | skid_v)]
        # the skid register holds a beat until the output pops; it takes one when the
        # output is full and stalled (its next value also drives the copies of
        # ``i_ready``)
        skid_next = Mux(skid_v, ~pop, self.i_valid & self.o_valid & ~self.o_ready)
        m.d.sync += skid_v.eq(skid_next)
        with m.If(skid_v), m.If(pop):
            m.d.sync += self.o_data.eq(skid_d)
        with m.Elif(self.i_valid):
            with m.If(self.o_valid & ~self.o_ready):
                m.d.sync += skid_d.eq(self.i_data)
            with m.Else():
                m.d.sync += [self.o_data.eq(self.i_data), self.o_valid.eq(1)]
        with m.Elif(pop):
            m.d.sync += self.o_valid.eq(0)
        for i in range(self._copies):
            m.d.sync += self.copy_ready[i].eq(~(skid_next & self.copy_en[i]))
        return m
