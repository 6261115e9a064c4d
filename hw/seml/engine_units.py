# amaranth: UnusedElaboratable=no
"""COMPUTE units of the SEML core that run CONV, DEPTHWISE and POINTWISE instructions
on the streaming engines of :mod:`hw.engines`.

Each unit wraps one engine (:class:`~hw.engines.conv.ConvEngine` with its fused pool,
:class:`~hw.engines.depthwise.DepthwiseEngine`,
:class:`~hw.engines.pointwise.PointwiseEngine`) and turns a COMPUTE instruction
(``docs/isa.md``) into engine jobs: one job per group of ``L`` output channels (``L`` =
``conv_po``, ``dw_channels`` or ``pw_po``). For each job it sends the engine's command,
then feeds three streams from the on-chip buffers in the orders the engine takes them,
each from its own counters:

- ``params``: the group's PBUF entries, one beat;
- ``weights``: WBUF read at the addresses of ``docs/isa.md``'s layout, in the engine's
  order (``(tile, ky, kx)`` beats of ``Pi x Po`` lanes for CONV, ``(ky, kx)`` of ``C``
  lanes for DEPTHWISE, one ``Pi x Po`` beat per tile for POINTWISE); weights of input
  or output channels past the layer's, and taps outside the kernel, are the zero code;
- ``pixels``: IBUF, one input-channel tile (or channel group) after the other, each in
  raster order, lanes reading ``Pi`` (``C``) channel planes; channels past the layer's
  read as zero. POINTWISE reads the pixels its stride keeps.

The engine's output beats (raster order) are written to OBUF as they come, lane ``j`` to
the plane of output channel ``m0 + j``: one element port per lane, lanes past ``out_c``
write nothing. The core gathers the lanes' runs into wide OBUF writes
(:class:`~hw.seml.buffers.LaneStager`); ``obuf_ready`` holds the engine's output only
when a run cannot be taken.

CONV and DEPTHWISE run the square odd kernel ``K = engine_kernel(k_h, k_w)``: the
``k_h x k_w`` kernel sits in its top-left corner (zero taps elsewhere) and the bottom and
right padding grow by ``K - k_h`` and ``K - k_w``, which keeps every window where
``docs/isa.md`` puts it. A fused max pool (CONV only, 2x2 stride 2) runs on the conv
engine's :class:`~hw.blocks.pool.PoolUnit`.

Each unit reads IBUF and WBUF through one wide read port each (``banks`` bytes,
:func:`hw.engine_kinds.buffer_banks`): a :class:`~hw.seml.buffers.LaneFetcher` gives
every pixel lane and every weight lane a run register filled by one wide read. In the
core (``shared_fetch=True``) the units share one pixel and one weight fetcher (one
COMPUTE runs at a time): a unit then has the fetchers' lane ports instead of the buffer
ports, and the core switches the selected unit's lanes in. A lane
read returns its data one cycle after the read and holds it while not reading, so each
feeder issues a read whenever its output register is empty or being taken and the
fetcher is ready: one beat per cycle, and back-pressure from the engine simply holds the
read. Every unit's pixel feeder and the CONV and DEPTHWISE weight feeders keep a second
entry for a beat the engine holds back, and read whenever it is empty: their read
enables then come from registers, and no path runs from an engine's output handshake
into the fetchers the units share. (POINTWISE's weight feeder keeps one entry: with a
second one, weight reads ahead finish some jobs sooner than the cycle model, exact for
POINTWISE, counts; it counts the pixel reads ahead.) The fetchers forget their runs at
the end of each tile (and of each output row of a strided POINTWISE), so every lane
misses on the next read: the stall is then the lanes' count plus one cycle, which the
cycle model counts. Pixel lanes read ahead within a tile (consecutive elements); a
strided POINTWISE row refills on misses only.
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Shape, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..arch import ArchConfig
from ..blocks.pool import PoolMode
from ..engine_kinds import FETCH_LAG, buffer_banks, engine_kind, engine_unit_cycles
from ..engines.conv import ConvEngine
from ..engines.datapath import weight_shape, weight_zero
from ..engines.depthwise import DepthwiseEngine
from ..engines.pointwise import PointwiseEngine
from ..isa import INSTRUCTION, Engine, Pool, element_bytes, qrange, weight_element_bytes
from ..timing import BUFFER_READ_STAGES
from .buffers import LaneFetcher
from .decode import size_bits
from .units import bytes_from_lanes, ceil_div_const, pbuf_layout

__all__ = ["EngineUnit", "engine_latency", "unit_cycles"]

#: Re-exported: the engine units' cycle model lives with the engine kinds' descriptors.
unit_cycles = engine_unit_cycles


#: The engine each unit kind wraps, and its constructor's options.
_ENGINES = {Engine.CONV: (ConvEngine, {"pool": True}), Engine.DEPTHWISE: (DepthwiseEngine, {}),
            Engine.POINTWISE: (PointwiseEngine, {})}


def engine_latency(arch: ArchConfig, kind: Engine) -> int:
    """Pipeline latency of the engine a unit for ``kind`` (CONV, DEPTHWISE, POINTWISE)
    wraps for ``arch`` (:mod:`hw.timing`, through the kind's descriptor)."""
    return engine_kind(kind).latency(arch)


class _Feeder:
    """Output register of a stream fed by buffer reads.

    ``want`` is high in a cycle that would read the next beat (the lanes' read enables);
    ``issue`` when the read happens, ``want`` and the fetcher ``ready`` (the caller steps
    its counters and clears :attr:`active` after the last one); the read data is the
    stream payload from the next cycle until taken.

    With ``held`` the caller drives the beat into :attr:`payload` (not the stream's), and
    the feeder keeps a second entry: a beat the engine does not take when the next read
    happens moves into a register and goes out first. ``want`` is then ``active`` and
    that register empty, both registers: the engine's back-pressure (``stream.ready``)
    reaches only the entry's register and the output select, not the lanes' read
    enables, so no path runs from an engine's output handshake into a fetcher shared
    with the other units. A beat reaches the engine no later than without it.
    """

    def __init__(self, m, stream, name, ready, held=False):
        self.valid = Signal(name=f"{name}_valid")
        self.active = Signal(name=f"{name}_active")
        self.want = Signal(name=f"{name}_want")
        self.issue = Signal(name=f"{name}_issue")
        #: A beat is in the feeder (read, not yet taken by the engine).
        self.pending = Signal(name=f"{name}_pending")
        if not held:
            self.payload = stream.payload
            m.d.comb += [
                stream.valid.eq(self.valid),
                self.want.eq(self.active & (~self.valid | stream.ready)),
                self.issue.eq(self.want & ready),
                self.pending.eq(self.valid),
            ]
            with m.If(self.issue):
                m.d.sync += self.valid.eq(1)
            with m.Elif(stream.ready):
                m.d.sync += self.valid.eq(0)
            return
        shape = stream.payload.shape()
        self.payload = Signal(shape, name=f"{name}_fresh")
        kept = Signal(shape, name=f"{name}_kept")
        kept_v = Signal(name=f"{name}_kept_v")
        m.d.comb += [
            stream.valid.eq(self.valid | kept_v),
            stream.payload.eq(Mux(kept_v, kept.as_value(), self.payload.as_value())),
            self.want.eq(self.active & ~kept_v),
            self.issue.eq(self.want & ready),
            self.pending.eq(self.valid | kept_v),
        ]
        with m.If(kept_v):
            # no read while the entry is full; the fresh beat goes out after it
            m.d.sync += kept_v.eq(~stream.ready)
        with m.Elif(self.issue):
            m.d.sync += self.valid.eq(1)
            with m.If(self.valid & ~stream.ready):
                m.d.sync += [kept.eq(self.payload.as_value()), kept_v.eq(1)]
        with m.Elif(stream.ready):
            m.d.sync += self.valid.eq(0)


def _lane_members(buf, widths, size):
    """The unit's side of a shared fetcher's lanes (:class:`~hw.seml.buffers.LaneFetcher`
    with the flows reversed): ``{buf}_lane{q}_addr`` / ``_en`` / ``_adv`` out, ``_data``
    in, ``_alt`` / ``_alt_sel`` out, ``{buf}_ready`` in, ``{buf}_clear``, ``{buf}_relocate`` and ``{buf}_sequential``
    out."""
    members = {f"{buf}_ready": In(1), f"{buf}_clear": Out(1), f"{buf}_relocate": Out(1),
               f"{buf}_sequential": Out(1, init=1)}
    if buf == "ibuf":
        members[f"{buf}_jump"] = Out(1)
        members[f"{buf}_packed"] = Out(1)
    for q, w in enumerate(widths):
        members.update({f"{buf}_lane{q}_addr": Out(range(max(size, 2))),
                        f"{buf}_lane{q}_en": Out(1), f"{buf}_lane{q}_armed": Out(1),
                        f"{buf}_lane{q}_adv": Out(range(max(size, 2))),
                        f"{buf}_lane{q}_alt": Out(range(max(size, 2))),
                        f"{buf}_lane{q}_alt_sel": Out(1),
                        f"{buf}_lane{q}_data": In(8 * w)})
        if buf == "ibuf":
            members[f"{buf}_lane{q}_next"] = Out(range(max(size, 2)))
    return members


class _LanePort:
    """A unit's lane ports for one buffer, with the names of a :class:`LaneFetcher`."""

    def __init__(self, unit, buf):
        self._unit, self._buf = unit, buf
        self.ready = getattr(unit, f"{buf}_ready")
        self.clear = getattr(unit, f"{buf}_clear")
        self.relocate = getattr(unit, f"{buf}_relocate")
        self.sequential = getattr(unit, f"{buf}_sequential")
        widths = unit.ibuf_lane_widths if buf == "ibuf" else unit.wbuf_lane_widths
        self.lanes = len(widths)
        self.jump = getattr(unit, f"{buf}_jump", None)
        self.packed = getattr(unit, f"{buf}_packed", None)

    def lane(self, q):
        return tuple(getattr(self._unit, f"{self._buf}_lane{q}_{n}")
                     for n in ("addr", "en", "data"))

    def lane_armed(self, q):
        return getattr(self._unit, f"{self._buf}_lane{q}_armed")

    def lane_adv(self, q):
        return getattr(self._unit, f"{self._buf}_lane{q}_adv")

    def lane_alt(self, q):
        return (getattr(self._unit, f"{self._buf}_lane{q}_alt"),
                getattr(self._unit, f"{self._buf}_lane{q}_alt_sel"))

    def next(self, q):
        return getattr(self._unit, f"{self._buf}_lane{q}_next")


class EngineUnit(wiring.Component):
    """Runs COMPUTE instructions of one engine kind over IBUF / WBUF / PBUF into OBUF.

    Parameters
    ----------
    arch : ArchConfig
    kind : Engine
        CONV, DEPTHWISE or POINTWISE.
    shared_fetch : bool
        The unit's lanes go to fetchers outside it (the core's shared set): ports
        ``{ibuf,wbuf}_lane{q}_addr / _en / _armed / _adv / _data``, ``_ready``,
        ``_clear``, ``_relocate``, ``_sequential`` (and for IBUF ``ibuf_jump``,
        ``ibuf_packed``, ``ibuf_lane{q}_next``) replace ``ibuf0_*`` / ``wbuf0_*``.

    Members
    -------
    start : In(1)
        Starts the legal COMPUTE instruction ``instr`` (checked by the decoder) of this
        unit's engine.
    instr : In(INSTRUCTION)
    busy : Out(1)
    ibuf0_addr, ibuf0_en, ibuf0_data : the IBUF read port (``banks`` bytes in bank
        order, :class:`~hw.seml.buffers.ByteBuffer` with ``raw_reads``), for the pixel
        lanes (one element each).
    wbuf0_addr, wbuf0_en, wbuf0_data : the WBUF read port (the same), for the
        weight lanes: one weight per lane for CONV (lane ``j * Pi + i``) and DEPTHWISE
        (lane ``c``); for POINTWISE one lane per output lane ``j`` reading the ``Pi``
        consecutive weights of its tile.
    pbuf_addr, pbuf_en : the PBUF read (one entry per output lane from ``pbuf_addr``,
        :class:`EntryBuffer`);
    pbuf{q}_data : the entry of output lane ``q``.
    obuf{q}_w_addr, obuf{q}_w_data, obuf{q}_w_count : OBUF write ports, one element per
        output lane (the core gathers them into one wide write, :class:`LaneStager`).
    obuf_ready : In(1)
        The lanes' writes can be taken this cycle (holds the engine's output while low).
    """

    def __init__(self, arch: ArchConfig, kind: Engine, *, shared_fetch: bool = False):
        if not isinstance(arch, ArchConfig):
            raise TypeError(f"arch must be an ArchConfig, not {arch!r}")
        if kind not in _ENGINES:
            raise TypeError(f"kind must be Engine.CONV, DEPTHWISE or POINTWISE, not {kind!r}")
        self.arch = arch
        self.kind = kind
        self._e = element_bytes(arch.act_bits)
        self._we = weight_element_bytes(arch)
        self.desc = desc = engine_kind(kind)
        cls, options = _ENGINES[kind]
        self.engine = cls(arch, **options)
        self.pi, self.lanes = desc.lane_counts(arch)
        if desc.channelwise:      # one weight per channel lane
            wbuf = [self._we] * self.lanes
        elif desc.windowed:       # one weight per (output, input) lane pair
            wbuf = [self._we] * (self.pi * self.lanes)
        else:                     # one port per output lane reading its Pi weights
            wbuf = [self._we * self.pi] * self.lanes
        self._wbuf_widths = wbuf
        self.banks = banks = buffer_banks(arch)
        self.shared_fetch = bool(shared_fetch)
        members = {"start": In(1), "instr": In(INSTRUCTION), "busy": Out(1),
                   "obuf_ready": In(1, init=1)}
        if self.shared_fetch:
            for buf, widths, size in (("ibuf", self.ibuf_lane_widths, arch.ibuf_bytes),
                                      ("wbuf", self._wbuf_widths, arch.wbuf_bytes)):
                members.update(_lane_members(buf, widths, size))
        else:
            members.update({
                "ibuf0_addr": Out(range(arch.ibuf_bytes)), "ibuf0_en": Out(1),
                "ibuf0_data": In(8 * banks),
                "wbuf0_addr": Out(range(arch.wbuf_bytes)), "wbuf0_en": Out(1),
                "wbuf0_data": In(8 * banks)})
        members.update({"pbuf_addr": Out(range(max(arch.pbuf_entries, 2))),
                        "pbuf_en": Out(1)})
        for q in range(self.lanes):
            members.update({
                f"pbuf{q}_data": In(pbuf_layout(arch)),
                f"obuf{q}_w_addr": Out(range(arch.obuf_bytes)),
                f"obuf{q}_w_data": Out(8 * self._e),
                f"obuf{q}_w_count": Out(range(self._e + 1)),
            })
        super().__init__(members)

    # Port lists the core wires to the buffers.
    @property
    def ibuf_read_widths(self):
        return [self.banks]

    @property
    def ibuf_lane_widths(self):
        """Bytes per read of each pixel lane (behind the one IBUF port); a POINTWISE
        unit's lane 0 packs all ``Pi`` (one-pixel tiles read ``Pi`` consecutive
        elements)."""
        if self.pixel_pack:
            return [self._e * self.pi] + [self._e] * (self.pi - 1)
        return [self._e] * self.pi

    @property
    def pixel_pack(self):
        """Pixel lanes lane 0 reads for all with ``packed``
        (:class:`~hw.seml.buffers.LaneFetcher` ``pack``): ``Pi`` for POINTWISE, else 0."""
        return self.pi if not self.desc.windowed and self.pi > 1 else 0

    def lane_port(self, buf):
        """The lane side of the unit's ``buf`` (``"ibuf"`` or ``"wbuf"``) fetcher as a
        shared :class:`~hw.seml.buffers.LaneFetcher` takes it (``shared_fetch`` only):
        an object with ``lane(q)`` (``(addr, en, data)``), ``ready``, ``clear`` and
        ``sequential``."""
        if not self.shared_fetch:
            raise ValueError("The unit has its own fetchers (shared_fetch=False)")
        return _LanePort(self, buf)

    def fetcher_options(self):
        """``{"ibuf": ..., "wbuf": ...}``: the :class:`~hw.seml.buffers.LaneFetcher`
        keywords of the unit's own pixel and weight fetcher (without ``shared_fetch``)."""
        arch = self.arch
        return {
            "ibuf": {"widths": self.ibuf_lane_widths, "width": self.banks,
                     "size": arch.ibuf_bytes, "prefetch": True,
                     "jumps": not self.desc.windowed, "pack": self.pixel_pack,
                     "eager": True, "lookahead": True, "read_stages": BUFFER_READ_STAGES},
            "wbuf": {"widths": list(self._wbuf_widths), "width": self.banks,
                     "size": arch.wbuf_bytes, "prefetch": False, "eager": True,
                     "lookahead": True, "read_stages": BUFFER_READ_STAGES},
        }

    @property
    def wbuf_lane_widths(self):
        """Bytes per read of each weight lane (behind the one WBUF port)."""
        return list(self._wbuf_widths)

    @property
    def wbuf_read_widths(self):
        return [self.banks]

    @property
    def pbuf_lanes(self):
        """Entries per PBUF read (one per output lane)."""
        return self.lanes

    @property
    def obuf_write_widths(self):
        return [self._e] * self.lanes

    def _port(self, prefix, *fields):
        return tuple(getattr(self, f"{prefix}_{name}") for name in fields)

    def ibuf_port(self, i):
        return self._port(f"ibuf{i}", "addr", "en", "data")

    def wbuf_port(self, i):
        return self._port(f"wbuf{i}", "addr", "en", "data")

    def pbuf_data(self, q):
        return getattr(self, f"pbuf{q}_data")

    def obuf_port(self, q):
        return self._port(f"obuf{q}", "w_addr", "w_data", "w_count")

    def elaborate(self, platform):
        m = Module()
        arch, kind = self.arch, self.kind
        e, we = self._e, self._we
        P, L = self.pi, self.lanes
        desc = self.desc
        windowed = desc.windowed
        m.submodules.engine = eng = self.engine
        c = self.instr.compute
        if self.shared_fetch:
            # the core's fetchers, shared by the units (one COMPUTE runs at a time)
            xfetch, wfetch = self.lane_port("ibuf"), self.lane_port("wbuf")
            m.d.comb += wfetch.sequential.eq(1)
        else:
            options = self.fetcher_options()
            m.submodules.pixel_fetch = xfetch = LaneFetcher(**options["ibuf"])
            m.submodules.weight_fetch = wfetch = LaneFetcher(**options["wbuf"])
            for fetch, port in ((xfetch, "ibuf0"), (wfetch, "wbuf0")):
                addr, en, data_ = self._port(port, "addr", "en", "data")
                m.d.comb += [addr.eq(fetch.r_addr), en.eq(fetch.r_en), fetch.r_data.eq(data_)]

        # Instruction fields, latched at start, and values derived from them in SETUP.
        def reg(name, shape):
            return Signal(shape, name=name)

        in_c, out_c = reg("in_c", 16), reg("out_c", 16)
        in_h, in_w = reg("in_h", 16), reg("in_w", 16)
        out_h, out_w = reg("out_h", 16), reg("out_w", 16)
        k_h, k_w, kern = reg("k_h", 16), reg("k_w", 16), reg("kern", 16)
        taps = reg("taps", 16)                 # k_h * k_w
        stride_h, stride_w = reg("stride_h", 8), reg("stride_w", 8)
        pads = [reg(f"pad{n}", 8) for n in range(4)]
        fused = reg("fused", 1)
        act_lo, act_hi = reg("act_lo", signed(arch.act_bits)), reg("act_hi", signed(arch.act_bits))
        ibuf_addr, wbuf_addr = reg("ibuf_addr", 32), reg("wbuf_addr", 32)
        pbuf_addr, obuf_addr = reg("pbuf_addr", 32), reg("obuf_addr", 32)
        tiles = reg("tiles", 16)               # input-channel tiles of P channels (1 for DW)
        plane_in = reg("plane_in", 32)         # bytes of one input channel plane
        plane_out = reg("plane_out", 32)       # bytes of one output channel plane
        pixels_out = reg("pixels_out", 32)     # output pixels per channel (POINTWISE job)
        w_m_stride = reg("w_m_stride", 32)     # WBUF bytes between output channels
        w_c_stride = reg("w_c_stride", 32)     # WBUF bytes between input channels (CONV)
        row_step = reg("row_step", 32)         # POINTWISE: IBUF bytes between pixel rows
        col_step = reg("col_step", 32)         # POINTWISE: IBUF bytes between pixel columns

        def scaled(value, k, name):
            """``value * k`` for a constant ``k``: a shift, or a register that follows
            ``value`` a cycle later (the steps below are first taken many cycles after
            their factors are set)."""
            if k & (k - 1) == 0:
                return value << (k.bit_length() - 1)
            step = Signal(32, name=name)
            m.d.sync += step.eq(value * k)
            return step

        def lane_address(port, adv_port, offset, name, *, start, issue, stepped, moved,
                         active, ahead=False, alt_ports=None):
            """Drive lane address ``port`` from a register that tracks a pointer plus the
            lane's ``offset`` (a register that follows the instruction's strides, set
            before the first command): the fetcher's hit check then starts at a
            register, not at the pointer's arithmetic. The register loads ``start``
            (the pointer's value at ``cmd_go``) plus the offset at ``cmd_go``; on
            ``issue`` it steps by ``stepped`` (added to itself), or, with ``moved`` a
            ``(condition, value)`` pair, loads ``value(offset register)`` (where the
            lane moves to) when the condition holds. It returns to 0 when the
            instruction ends. ``adv_port`` gets the address after an ``issue`` (the
            fetcher checks it a cycle early), 0 while the lanes are not ``active`` (the
            core ORs the units' lanes); with ``moved`` (and ``ahead``), ``alt_ports``
            (the fetcher's ``(alt, alt_sel)``) get the moved-to address and the
            condition while ``active``, and ``adv_port`` the stepped address, both 0
            while the unit is idle (``value`` must be registers that the caller clears
            at ``finish``); the fetcher's ``relocate`` covers ``cmd_go`` and
            the end. With ``ahead`` the address plus ``stepped`` is a register kept with
            the address (``stepped`` must hold from ``cmd_go`` to the end), so that
            ``adv`` is a multiplexer of registers when ``value`` is one. Returns the
            address ``cmd_go`` loads (``start`` plus the offset)."""
            # addresses wrap at the port's width: so may the offset
            off = Signal(len(port), name=f"{name}_off")
            m.d.sync += off.eq(offset)
            addr = Signal(len(port), name=f"{name}_addr")
            adv = Signal(len(port), name=f"{name}_adv")
            m.d.comb += port.eq(addr)
            if ahead:
                step_next = Signal(len(port), name=f"{name}_stepped")
            else:
                step_next = addr + stepped
            if moved is None:
                m.d.comb += adv.eq(step_next)
                m.d.comb += adv_port.eq(Mux(active, adv, 0))
            else:
                cond, value = moved
                moved_to = Signal(len(port), name=f"{name}_moved")
                m.d.comb += [moved_to.eq(value(off)), adv.eq(Mux(cond, moved_to, step_next))]
                # the fetcher checks both addresses and selects by the condition after
                # its compares. Both are registers that are 0 while the unit is idle
                # (``ahead``; the caller clears the moved-to registers at ``finish``):
                # no gate between them and the compares. (While the unit is busy no
                # other unit drives the shared lanes, and a lane that is not armed
                # reads nothing, whatever its address after a read.)
                assert ahead, "a lane that moves keeps its stepped address as a register"
                alt_port, alt_sel = alt_ports
                m.d.comb += [adv_port.eq(step_next), alt_port.eq(moved_to),
                             alt_sel.eq(active & cond)]
            first = Signal(len(port), name=f"{name}_first")
            m.d.comb += first.eq(start + off)
            with m.If(issue):
                m.d.sync += addr.eq(adv)
                if ahead:
                    m.d.sync += step_next.eq(adv + stepped)
            with m.Elif(cmd_go):
                m.d.sync += addr.eq(first)
                if ahead:
                    m.d.sync += step_next.eq(first + stepped)
            with m.Elif(finish):
                # an idle unit's lanes read address 0: the core ORs the units' lanes
                # into its shared fetchers instead of selecting them
                m.d.sync += addr.eq(0)
                if ahead:
                    m.d.sync += step_next.eq(0)
            return first

        bounds = {}

        def end_flag(count, name):
            """A register that is high while a loop counter stands at its last value
            (``count - 1``), kept with the counter: the loop's end is then a register,
            not a compare in front of the lanes' next addresses. Returns the flag and
            the two updates: ``restart()`` where the counter is set to 0, and
            ``step(counter)`` where it counts up by one. ``count - 2`` and ``count ==
            1`` are registers that follow ``count`` (set at the start or in SETUP), one
            pair per count, shared by the loops over it."""
            if id(count) not in bounds:
                before = Signal(16, name=f"{count.name}_m2")
                single = Signal(name=f"{count.name}_single")
                m.d.sync += [before.eq(count - 2), single.eq(count == 1)]
                bounds[id(count)] = (before, single)
            before, single = bounds[id(count)]
            flag = Signal(name=f"{name}_at_last")
            return flag, (lambda: flag.eq(single)), (lambda counter: flag.eq(counter == before))

        w_group_step = scaled(w_m_stride, L, "w_group_step")   # the next group's weights
        o_group_step = scaled(plane_out, L, "o_group_step")
        i_group_step = scaled(plane_in, L, "i_group_step")
        w_tile_step = scaled(w_c_stride, P, "w_tile_step")     # the next tile's weights
        x_tile_step = scaled(plane_in, P, "x_tile_step")       # the next tile's planes

        # Group loop: IDLE -> SETUP -> (CMD -> RUN)* -> IDLE.
        m0 = Signal(16)          # first output channel of the group
        g_wbase = Signal(32)     # WBUF address of output channel m0's weights
        g_obase = Signal(32)     # OBUF address of output channel m0's plane
        g_ibase = Signal(32)     # DEPTHWISE: IBUF address of channel m0's plane
        cmd_go = Signal()        # the cycle the engine takes the command
        finish = Signal()        # the instruction's last group ends
        job_done = Signal()      # the engine reported the group's job done
        pixels_pending = Signal()  # pixels of the group not yet taken by the engine
        # the group is the instruction's last: a flag set with ``m0`` (``finish`` and the
        # fetchers' ``relocate`` start at registers)
        last_group = Signal()
        with m.FSM() as fsm:
            with m.State("IDLE"), m.If(self.start):
                kk = Signal(16)
                big = Mux(c.k_h > c.k_w, c.k_h, c.k_w)
                m.d.comb += kk.eq(big | 1)
                m.d.sync += [
                    in_c.eq(c.in_c), out_c.eq(c.out_c), in_h.eq(c.in_h), in_w.eq(c.in_w),
                    out_h.eq(c.out_h), out_w.eq(c.out_w), k_h.eq(c.k_h), k_w.eq(c.k_w),
                    taps.eq(c.k_h * c.k_w),
                    kern.eq(kk), stride_h.eq(c.stride_h), stride_w.eq(c.stride_w),
                    pads[0].eq(c.pad_top), pads[1].eq(c.pad_left),
                    pads[2].eq(c.pad_bottom), pads[3].eq(c.pad_right),
                    fused.eq(c.pool == Pool.MAX),
                    act_lo.eq(c.act_lo), act_hi.eq(c.act_hi),
                    ibuf_addr.eq(c.ibuf_addr), wbuf_addr.eq(c.wbuf_addr),
                    pbuf_addr.eq(c.pbuf_addr), obuf_addr.eq(c.obuf_addr),
                ]
                m.next = "SETUP"
            with m.State("SETUP"):
                # one multiplier between registers each (a legal instruction's weights
                # fit in WBUF, so ``size_bits`` of the taps' bytes suffice)
                tap_bytes = (taps * we)[:size_bits(arch)]
                m.d.sync += [
                    w_m_stride.eq(tap_bytes if desc.channelwise else in_c * tap_bytes),
                    tiles.eq(ceil_div_const(in_c, P) if not desc.channelwise else 1),
                    plane_in.eq(in_h * in_w * e),
                    plane_out.eq(out_h * out_w * e),
                    pixels_out.eq(out_h * out_w),
                    w_c_stride.eq(taps * we),
                    row_step.eq(stride_h * in_w * e),
                    col_step.eq(stride_w * e),
                    m0.eq(0),
                    last_group.eq(L >= out_c),
                    g_wbase.eq(wbuf_addr),
                    g_obase.eq(obuf_addr),
                    g_ibase.eq(ibuf_addr),
                ]
                m.next = "OFFSETS"
            with m.State("OFFSETS"):
                # the lanes' address offsets (registers that follow the strides set in
                # SETUP) settle before the first group's command
                m.next = "CMD"
            with m.State("CMD"):
                m.d.comb += [eng.cmd.valid.eq(1), cmd_go.eq(eng.cmd.ready)]
                with m.If(eng.cmd.ready):
                    m.next = "RUN"
            with m.State("RUN"):
                # A job may end before the window generator has taken the frame's last
                # rows (no window reaches them): the group ends when both are done, so
                # the next job's pixels never follow a frame's unread tail.
                with m.If(eng.done):
                    m.d.sync += job_done.eq(1)
                with m.If((eng.done | job_done) & ~pixels_pending):
                    m.d.sync += [
                        job_done.eq(0),
                        m0.eq(m0 + L),
                        last_group.eq(m0 + 2 * L >= out_c),
                        g_wbase.eq(g_wbase + w_group_step),
                        g_obase.eq(g_obase + o_group_step),
                        g_ibase.eq(g_ibase + i_group_step),
                    ]
                    with m.If(last_group):
                        m.d.comb += finish.eq(1)
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "CMD"
        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))
        # the lanes' addresses change without a read at a group's command and at the end
        m.d.comb += [xfetch.relocate.eq(cmd_go | finish), wfetch.relocate.eq(cmd_go | finish)]

        # Engine command.
        cmd = eng.cmd.payload
        if windowed:
            m.d.comb += [
                cmd.width.eq(in_w), cmd.height.eq(in_h), cmd.kernel.eq(kern),
                cmd.stride.eq(stride_h),
                cmd.pad_top.eq(pads[0]), cmd.pad_left.eq(pads[1]),
                cmd.pad_bottom.eq(pads[2] + kern - k_h), cmd.pad_right.eq(pads[3] + kern - k_w),
                cmd.lo.eq(act_lo), cmd.hi.eq(act_hi),
            ]
        else:
            m.d.comb += [cmd.pixels.eq(pixels_out), cmd.lo.eq(act_lo), cmd.hi.eq(act_hi)]
        if desc.cin_tiled:
            m.d.comb += cmd.cin_tiles.eq(tiles)
        if desc.fused_pool:
            lo, hi = qrange(arch.act_bits)
            m.d.comb += [
                cmd.pool_mode.eq(Mux(fused, PoolMode.MAX, PoolMode.BYPASS)),
                cmd.pool_kernel.eq(2), cmd.pool_stride.eq(2),
                cmd.pool_mult.eq(1), cmd.pool_shift.eq(0),
                cmd.pool_lo.eq(lo), cmd.pool_hi.eq(hi),
            ]

        lane_on = [Signal(name=f"lane_on{q}") for q in range(L)]
        for q in range(L):
            m.d.comb += lane_on[q].eq(m0 + q < out_c)

        # Parameters: one beat per group -------------------------------------------------
        pf = _Feeder(m, eng.params, "params", 1)
        with m.If(cmd_go):
            m.d.sync += pf.active.eq(1)
        with m.Elif(pf.issue):
            m.d.sync += pf.active.eq(0)
        # the read address is a register: ``m0`` settles a cycle before the command is
        # taken and the read follows it by a cycle, so no adder sits before PBUF's banks
        p_addr = Signal.like(self.pbuf_addr, name="p_addr")
        m.d.sync += p_addr.eq(pbuf_addr + m0)
        m.d.comb += [self.pbuf_addr.eq(p_addr), self.pbuf_en.eq(pf.issue)]
        for q in range(L):
            m.d.comb += eng.params.payload[q].eq(self.pbuf_data(q))

        zero_code = weight_zero(arch)
        code_bits = Shape.cast(weight_shape(arch)).width

        # Weights --------------------------------------------------------------------------
        wf = _Feeder(m, eng.weights, "weights", wfetch.ready, held=windowed)
        w_tile = Signal(16)
        w_ky = Signal(16)
        w_kx = Signal(16)
        w_c0 = Signal(16)         # first input channel of the tile
        # the loops' ends (the last tile, tap column and tap row) as flags kept with
        # their counters
        last_tile_w, w_tile_restart, w_tile_step_flag = end_flag(tiles, "w_tile")
        with m.If(cmd_go):
            m.d.sync += [wf.active.eq(1), w_tile.eq(0), w_ky.eq(0), w_kx.eq(0), w_c0.eq(0),
                         w_tile_restart()]
        mask_w = []
        if windowed:
            last_kx, w_kx_restart, w_kx_step = end_flag(kern, "w_kx")
            last_ky, w_ky_restart, w_ky_step = end_flag(kern, "w_ky")
            with m.If(cmd_go):
                m.d.sync += [w_kx_restart(), w_ky_restart()]
            tap_ok = (w_ky < k_h) & (w_kx < k_w)
            with m.If(wf.issue):
                m.d.sync += [w_kx.eq(w_kx + 1), w_kx_step(w_kx)]
                with m.If(last_kx):
                    m.d.sync += [w_kx.eq(0), w_ky.eq(w_ky + 1), w_kx_restart(), w_ky_step(w_ky)]
                    with m.If(last_ky):
                        m.d.sync += [w_ky.eq(0), w_tile.eq(w_tile + 1), w_c0.eq(w_c0 + P),
                                     w_ky_restart(), w_tile_step_flag(w_tile)]
                        with m.If(last_tile_w):
                            m.d.sync += wf.active.eq(0)
            # every tile's first taps miss on every lane
            m.d.comb += wfetch.clear.eq(self.start | (wf.issue & last_kx & last_ky))
            # the lanes' addresses follow tap (ky, kx) of their channels: the next tap,
            # or at the end of a kernel row the next row's first (the next tile's first
            # at the end of the kernel)
            # Each lane keeps where it moves at a kernel row's end (the next row's first
            # tap) and at the kernel's end (the next tile's first input channel, tap 0),
            # stepped with the tap counters, and its next tap: where it goes after a read
            # is a multiplexer of its registers, with no adder before the fetcher's hit
            # checks.
            per_lane = P if kind is Engine.CONV else 1
            for j in range(L):
                for i in range(per_lane):
                    addr, en, _ = wfetch.lane(j * per_lane + i)
                    row_l = Signal(len(addr), name=f"w_lane{j}_{i}_row_next")
                    tile_l = Signal(len(addr), name=f"w_lane{j}_{i}_tile_next")
                    first = lane_address(addr, wfetch.lane_adv(j * per_lane + i),
                                         w_m_stride * j + w_c_stride * i, f"w_lane{j}_{i}",
                                         alt_ports=wfetch.lane_alt(j * per_lane + i),
                                         start=g_wbase, issue=wf.issue, stepped=we,
                                         moved=(last_kx, lambda off, r=row_l, t=tile_l:
                                                Mux(last_ky, t, r)),
                                         active=wf.active, ahead=True)
                    with m.If(cmd_go):
                        m.d.sync += [row_l.eq(first + k_w * we),
                                     tile_l.eq(first + w_tile_step)]
                    with m.If(wf.issue & last_kx):
                        m.d.sync += row_l.eq(row_l + k_w * we)
                        with m.If(last_ky):
                            m.d.sync += [row_l.eq(tile_l + k_w * we),
                                         tile_l.eq(tile_l + w_tile_step)]
                    with m.If(finish):
                        # 0 while the unit is idle (``lane_address``)
                        m.d.sync += [row_l.eq(0), tile_l.eq(0)]
                    m.d.comb += [en.eq(wf.want),
                                 wfetch.lane_armed(j * per_lane + i).eq(wf.active)]
                    mask_w.append(tap_ok & lane_on[j] & (w_c0 + i < in_c) if per_lane > 1
                                  else tap_ok & lane_on[j])
        else:
            with m.If(wf.issue):
                m.d.sync += [w_tile.eq(w_tile + 1), w_c0.eq(w_c0 + P), w_tile_step_flag(w_tile)]
                with m.If(last_tile_w):
                    m.d.sync += wf.active.eq(0)
            # every group's first weights miss on every lane
            m.d.comb += wfetch.clear.eq(self.start | (wf.issue & last_tile_w))
            for j in range(L):
                addr, en, _ = wfetch.lane(j)
                lane_address(addr, wfetch.lane_adv(j), w_m_stride * j, f"w_lane{j}",
                             start=g_wbase, issue=wf.issue, stepped=P * we, moved=None,
                             active=wf.active)
                m.d.comb += [en.eq(wf.want), wfetch.lane_armed(j).eq(wf.active)]
                for i in range(P):
                    mask_w.append(lane_on[j] & (w_c0 + i < in_c))
        mask_w1 = [Signal(name=f"w_ok{n}") for n in range(len(mask_w))]
        with m.If(wf.issue):
            m.d.sync += [r.eq(v) for r, v in zip(mask_w1, mask_w, strict=True)]
        for n, ok in enumerate(mask_w1):
            if kind is Engine.POINTWISE:
                j, i = divmod(n, P)
                raw = wfetch.lane(j)[2][8 * we * i:8 * we * (i + 1)]
            else:
                raw = wfetch.lane(n)[2]
            m.d.comb += wf.payload[n].eq(Mux(ok, raw[:code_bits], Const(zero_code,
                                                                                  code_bits)))

        # Pixels ---------------------------------------------------------------------------
        xf = _Feeder(m, eng.pixels, "pixels", xfetch.ready, held=True)
        m.d.comb += pixels_pending.eq(xf.active | xf.pending)
        x_tile = Signal(16)
        x_c0 = Signal(16)
        x_y = Signal(16)
        x_x = Signal(16)
        rows = in_h if windowed else out_h
        cols = in_w if windowed else out_w
        last_col, x_x_restart, x_x_step = end_flag(cols, "x_x")
        last_tile_x, x_tile_restart, x_tile_step_flag = end_flag(tiles, "x_tile")
        base = g_ibase if kind is Engine.DEPTHWISE else ibuf_addr
        step_col = e if windowed else col_step
        step_row = in_w * e if windowed else row_step
        # whether the row is the tile's last, as a register kept with the row (the
        # lanes keep where they move at a row's end, below)
        x_last_row, x_y_restart, x_y_step = end_flag(rows, "x_y")
        with m.If(cmd_go):
            m.d.sync += [xf.active.eq(1), x_tile.eq(0), x_c0.eq(0), x_y.eq(0), x_x.eq(0),
                         x_y_restart(), x_x_restart(), x_tile_restart()]
        with m.If(xf.issue):
            m.d.sync += [x_x.eq(x_x + 1), x_x_step(x_x)]
            with m.If(last_col):
                m.d.sync += [x_x.eq(0), x_y.eq(x_y + 1), x_x_restart(), x_y_step(x_y)]
                with m.If(x_last_row):
                    m.d.sync += [x_y.eq(0), x_tile.eq(x_tile + 1), x_c0.eq(x_c0 + P),
                                 x_y_restart(), x_tile_step_flag(x_tile)]
                    with m.If(last_tile_x):
                        m.d.sync += xf.active.eq(0)
        # Runs end with each tile (and each output row of a strided POINTWISE, which
        # refills on misses only) but where a POINTWISE tile's lanes go on without a
        # refill stall (:func:`hw.engine_kinds.pointwise_jumps`): when a lane's channel
        # plane fits one run (``e * pixels <= banks``), the next tile's plane starts past
        # it (``Pi * e * pixels >= banks``) and the tile lasts as long as the lanes'
        # prefetches (``pixels >= Pi + 3``), each lane prefetches its next tile's plane
        # (a jump, ``next``) while the tile runs. The group's last tile still ends the
        # runs (the next group's first reads refill).
        end_row = xf.issue & last_col
        end_tile = end_row & x_last_row
        if windowed:
            m.d.comb += [xfetch.clear.eq(self.start | end_tile), xfetch.sequential.eq(1)]
            if self.shared_fetch:
                m.d.comb += [xfetch.jump.eq(0), xfetch.packed.eq(0)]
        else:
            n = self.banks
            # The mode flags are registers, computed from the instruction's registers
            # (set in SETUP, so settled by the first command); while the unit is idle
            # they are neutral (``sequential`` high, ``jump`` and ``packed`` low), so
            # that the core combines the units' flags without the engine select.
            strided = Signal()
            jumps = Signal()       # the tiles' planes fit a run each: prefetch the next
            packed = Signal()      # one-pixel tiles: lane 0 reads the Pi elements
            unit_stride = Signal()
            last_tile = Signal()
            m.d.sync += [
                strided.eq((stride_h != 1) | (stride_w != 1)),
                jumps.eq(~fsm.ongoing("IDLE") & ~strided & (plane_in <= n)
                         & (plane_in >= max(-(-n // P), (P + 2 + FETCH_LAG) * e))),
                packed.eq(~fsm.ongoing("IDLE") & ~strided & (pixels_out == 1)
                          if self.pixel_pack and n % (P * e) == 0 else 0),
                unit_stride.eq(fsm.ongoing("IDLE") | (stride_w == 1)),
            ]
            m.d.comb += [
                last_tile.eq(last_tile_x),
                xfetch.sequential.eq(unit_stride & ~(jumps & last_tile)),
                xfetch.jump.eq(jumps),
                xfetch.clear.eq(self.start | (end_tile & (~(jumps | packed) | last_tile))
                                | (strided & end_row)),
            ]
            if self.pixel_pack:
                m.d.comb += xfetch.packed.eq(packed)
        first_chan = m0 if kind is Engine.DEPTHWISE else x_c0
        # the lanes' addresses follow the current pixel of their planes: the next
        # column, or at the end of a row the next row's first (the next tile's first at
        # the end of the tile). Each lane keeps its next column and the next row's and
        # the next tile's first pixel of its plane as registers, stepped with the row
        # and tile: where it goes after a read is a multiplexer of its registers.
        for i in range(P):
            addr, en, data_ = xfetch.lane(i)
            ok = Signal(name=f"x_ok{i}")
            with m.If(xf.issue):
                m.d.sync += ok.eq(first_chan + i < in_c)
            row_i = Signal(len(addr), name=f"x_lane{i}_row_next")
            tile_i = Signal(len(addr), name=f"x_lane{i}_tile_next")
            first = lane_address(addr, xfetch.lane_adv(i), plane_in * i, f"x_lane{i}",
                                 start=base, issue=xf.issue, stepped=step_col,
                                 moved=(last_col, lambda off, r=row_i, t=tile_i:
                                        Mux(x_last_row, t, r)),
                                 active=xf.active, ahead=True, alt_ports=xfetch.lane_alt(i))
            with m.If(cmd_go):
                m.d.sync += [row_i.eq(first + step_row), tile_i.eq(first + x_tile_step)]
            with m.If(end_row):
                m.d.sync += row_i.eq(row_i + step_row)
                with m.If(x_last_row):
                    m.d.sync += [row_i.eq(tile_i + step_row),
                                 tile_i.eq(tile_i + x_tile_step)]
            with m.If(finish):
                # 0 while the unit is idle (``lane_address``)
                m.d.sync += [row_i.eq(0), tile_i.eq(0)]
            m.d.comb += [en.eq(xf.want), xfetch.lane_armed(i).eq(xf.active),
                         xf.payload[i].eq(Mux(ok, data_[:arch.act_bits], 0))]
            if not windowed:
                # POINTWISE: IBUF address of the lane's plane in the next tile, a cycle
                # behind the tile (first asked for when the lanes have moved into the
                # tile, a cycle after it starts; the job's first tile's after its refills)
                nxt = xfetch.next(i) if self.shared_fetch else xfetch.lane_next(i)
                nxt_r = Signal(len(nxt), name=f"x_lane{i}_next")
                m.d.sync += nxt_r.eq(tile_i)
                m.d.comb += nxt.eq(nxt_r)

        # Output beats to OBUF ------------------------------------------------------------
        o_ptr = Signal(32)
        with m.If(cmd_go):
            m.d.sync += o_ptr.eq(g_obase)
        with m.Elif(eng.o.valid & self.obuf_ready):
            m.d.sync += o_ptr.eq(o_ptr + e)
        m.d.comb += eng.o.ready.eq(self.obuf_ready)
        for q in range(L):
            addr, data_, count = self.obuf_port(q)
            m.d.comb += [addr.eq(o_ptr + plane_out * q),
                         data_.eq(bytes_from_lanes([eng.o.payload[q]], arch.act_bits))]
            with m.If(eng.o.valid & self.obuf_ready & lane_on[q]):
                m.d.comb += count.eq(e)
        return m
