"""Element-wise add engine: the residual add of two activation streams."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from ..arch import ArchConfig
from ..isa import qrange
from .datapath import JobControl, Pipeline, check_arch, check_fixed, shift_tail

__all__ = ["EltwiseAddEngine"]


class EltwiseAddEngine(wiring.Component):
    """Residual add ``y = clamp(round_shift(a * ma + b * mb, shift), lo, hi)``, lane-wise.

    Bit-exact with ``sim.golden.add``: both products are summed before the single
    rounding shift.

    A command outside the documented ranges gives unspecified results, possibly a job
    that never completes: the compiler checks every layer against them, and a fixed
    ``config`` is checked at construction.

    Parameters
    ----------
    arch : ArchConfig
        Widths (``act_bits``, ``mult_bits``, ``shift_bits``) and the largest tile
        (``max_width * max_height`` beats per job).
    lanes : int, optional
        Channels per beat (default ``arch.dw_channels``).
    config : dict, optional
        Fixed configuration (SESL): a value for every field of :attr:`cmd_layout`. The
        engine then has no ``cmd`` port and starts a new job as soon as one is done.
    product : bool, optional
        Adds a ``mul`` command field: when set, beat ``i`` of ``a`` is replaced by the
        lane-wise product ``a * b`` in the first stage (one multiplier per lane, registered)
        and the result is ``clamp(round_shift(a * b * ma + b * mb, shift), lo, hi)``; the
        core's MUL runs it with ``mb = 0``.
    **overrides
        ``ArchConfig`` fields replacing those of ``arch``.

    Members
    -------
    cmd : ``In(stream.Signature(cmd_layout))``
        Without ``config`` only. One beat per job, accepted while idle (``cmd.ready`` is
        ``~busy``):

        ``count`` (unsigned)
            Beats of the job (at least 1), at most ``max_width * max_height``.
        ``ma``, ``mb`` (``unsigned(mult_bits)``)
            Multipliers of ``a`` and ``b``.
        ``shift`` (``unsigned(shift_bits)``)
            Common rounding shift.
        ``lo``, ``hi`` (``signed(act_bits)``)
            Clamp bounds (activation), ``lo <= hi``.
    a, b : ``In(stream.Signature(ArrayLayout(signed(act_bits), lanes)))``
        ``count`` beats each, in the same order (e.g. pixel-major, channel groups of
        ``lanes``); beat ``i`` of ``a`` is added to beat ``i`` of ``b``.
    o : ``Out(stream.Signature(ArrayLayout(signed(act_bits), lanes)))``
        ``count`` beats, beat ``i`` the sum of beats ``i``.
    busy : ``Out(1)``
        High from the accepted command until the last output beat is taken.
    done : ``Out(1)``
        One-cycle pulse after the last output beat of a job was taken.

    Latency 4 cycles from a joint ``a``/``b`` handshake to ``o.valid``; throughput one
    beat per cycle; one idle cycle between jobs.
    """

    def __init__(self, arch: ArchConfig | None = None, *, lanes=None, config=None,
                 product=False, **overrides):
        arch = check_arch(arch, overrides)
        if lanes is None:
            lanes = arch.dw_channels
        if not isinstance(lanes, int) or isinstance(lanes, bool):
            raise TypeError(f"lanes must be an integer, not {lanes!r}")
        if not 1 <= lanes <= 256:
            raise ValueError(f"lanes must be between 1 and 256, not {lanes!r}")
        self.arch = arch
        self.lanes = lanes
        self.product = bool(product)
        self.max_count = arch.max_width * arch.max_height
        lo, hi = qrange(arch.act_bits)
        fields = {
            "count": unsigned(bits_for(self.max_count)),
            "ma": unsigned(arch.mult_bits),
            "mb": unsigned(arch.mult_bits),
            "shift": unsigned(arch.shift_bits),
            "lo": signed(arch.act_bits),
            "hi": signed(arch.act_bits),
        }
        ranges = {"mul": (0, 1)} if self.product else {}
        if self.product:
            fields["mul"] = unsigned(1)
        self.cmd_layout = data.StructLayout(fields)
        self.config = check_fixed(self.cmd_layout, config, {**ranges,
            "count": (1, self.max_count),
            "ma": (0, (1 << arch.mult_bits) - 1),
            "mb": (0, (1 << arch.mult_bits) - 1),
            "shift": (0, (1 << arch.shift_bits) - 1),
            "lo": (lo, hi),
            "hi": (lo, hi),
        })
        if self.config is not None and self.config["lo"] > self.config["hi"]:
            raise ValueError(f"config lo must be at most hi={self.config['hi']}, "
                             f"not {self.config['lo']!r}")
        lane_layout = data.ArrayLayout(signed(arch.act_bits), lanes)
        members = {
            "a": In(stream.Signature(lane_layout)),
            "b": In(stream.Signature(lane_layout)),
            "o": Out(stream.Signature(lane_layout)),
            "busy": Out(1),
            "done": Out(1),
        }
        if self.config is None:
            members["cmd"] = In(stream.Signature(self.cmd_layout))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        arch = self.arch
        pipe = Pipeline(m, Signal(name="en"))
        running = Signal()
        draining = Signal()
        m.d.comb += self.busy.eq(running | draining)
        job = JobControl(m, self.cmd_layout, getattr(self, "cmd", None), self.config,
                         ~self.busy)
        cfg = job.cfg

        count = Signal(range(self.max_count + 1))
        take = running & pipe.en & self.a.valid & self.b.valid
        m.d.comb += [self.a.ready.eq(take), self.b.ready.eq(take)]
        last = count == cfg.count - 1
        with m.If(job.start):
            m.d.sync += [running.eq(1), count.eq(0)]
        with m.Elif(take):
            m.d.sync += count.eq(count + 1)
            with m.If(last):
                m.d.sync += [running.eq(0), draining.eq(1)]

        v1 = pipe.valid(take, "v1")
        if self.product:
            a1 = [pipe.reg(Mux(cfg.mul, self.a.payload[i] * self.b.payload[i],
                               self.a.payload[i]), f"a1_{i}", signed(2 * arch.act_bits))
                  for i in range(self.lanes)]
        else:
            a1 = [pipe.reg(self.a.payload[i], f"a1_{i}") for i in range(self.lanes)]
        b1 = [pipe.reg(self.b.payload[i], f"b1_{i}") for i in range(self.lanes)]
        # the two products in one stage, their sum in the next (a multiplier and an
        # adder per stage, not two multipliers into an adder)
        v2 = pipe.valid(v1, "v2")
        pa = [pipe.reg(a1[i] * cfg.ma, f"pa2_{i}") for i in range(self.lanes)]
        pb = [pipe.reg(b1[i] * cfg.mb, f"pb2_{i}") for i in range(self.lanes)]
        v3 = pipe.valid(v2, "v3")
        sums = [pipe.reg(pa[i] + pb[i], f"sum3_{i}") for i in range(self.lanes)]
        shift_tail(m, pipe, values=sums, valid=v3, shift=cfg.shift, lo=cfg.lo, hi=cfg.hi,
                   o=self.o, shift_bits=arch.shift_bits)
        finished = draining & pipe.empty
        m.d.comb += self.done.eq(finished)
        with m.If(finished):
            m.d.sync += draining.eq(0)
        return m
