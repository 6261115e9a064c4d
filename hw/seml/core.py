"""The SEML core: control registers, DMA, instruction fetch and issue, buffers, engines.

The host writes ``PROG_BASE`` / ``DATA_BASE`` and starts the core through the
AXI4-Lite registers (:mod:`hw.seml.csr`, map in ``docs/host_interface.md``). The
core then

1. reads the ``program.bin`` header and checks magic, version and arch hash;
2. reads the whole program once to check its CRC-32;
3. fetches the instructions in order and issues each to its unit (LOAD, COMPUTE,
   STORE; ``docs/isa.md`` "Execution model"): an instruction waits until its unit
   is idle, SYNC waits for the units of its mask, END for all of them;
4. reports done with an :class:`hw.isa.ErrorCode` (``NONE`` on success).

An illegal instruction, a header for another arch or an AXI error response stops
issue at once; the units finish what they started (their transfers always
complete), and the core reports done with the error code and the failing
instruction index in ``ERROR_INFO``. Nothing waits forever.
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..arch import ArchConfig
from ..blocks.skid import SkidBuffer
from ..engine_kinds import buffer_banks
from ..isa import HEADER_BYTES, INSTR_BITS, INSTRUCTION, Engine, ErrorCode, Opcode
from ..timing import BUFFER_READ_STAGES, OBUF_WRITE_STAGES, START_LAG
from .buffers import ByteBuffer, EntryBuffer, LaneFetcher, LaneStager
from .compute import PoolWindowUnit
from .csr import ControlStatusRegisters
from .decode import HeaderCheck, InstructionDecoder, size_bits
from .dma import AxiDma
from .engine_units import EngineUnit
from .fetch import AxiReadArbiter, InstructionFetch
from .units import AddUnit, LoadUnit, StoreUnit, pbuf_layout

__all__ = ["ISSUE_BUSY_LAG", "MAX_BURST", "START_LAG", "BufferPlan", "SemlCore", "buffer_plan",
           "shared_fetcher_options"]

#: Longest AXI burst of the core's DMA, in beats (the default of ``max_burst``).
MAX_BURST = 16
#: Cycles issue sees a unit's busy flag late (the flag is registered in the core).
ISSUE_BUSY_LAG = 1


def _or(values):
    """The bitwise OR of ``values``."""
    return functools.reduce(operator.or_, values)


@dataclass(frozen=True)
class BufferPlan:
    """The core's buffer ports for an arch (shared by :class:`SemlCore` and the resource
    model of :mod:`boards.resources`).

    ``banks``: byte-wide banks of IBUF, WBUF and OBUF
    (:func:`hw.engine_kinds.buffer_banks`); ``ibuf_reads`` / ``wbuf_reads``: width in
    bytes of each read port (one ``banks``-wide port each: the units' lanes read through
    :class:`~hw.seml.buffers.LaneFetcher` run registers or one word, so every bank is
    one RAM with one write and one read port);
    ``pbuf_lanes``: entries per PBUF read (the most output lanes of a unit, one
    :class:`~hw.seml.buffers.EntryBuffer` read port); ``lanes`` x ``elem``: the OBUF stager's lanes and
    element bytes; ``obuf_write``: the one OBUF write port's width (``banks``);
    ``ibuf_lanes`` / ``wbuf_lanes``: bytes per read of each lane of the one pixel and
    one weight fetcher the engine units share (lane ``q`` as wide as the widest unit's
    lane ``q``; unless ``private_fetchers``); ``unit_lanes``: per engine unit,
    ``(engine, pixel lane widths, weight lane widths, jumps)``: the bytes per read of
    each of its pixel and weight lanes (its own fetchers' with ``private_fetchers``) and
    whether its pixel lanes prefetch the next tile's planes.
    """

    banks: int
    ibuf_reads: tuple
    wbuf_reads: tuple
    pbuf_lanes: int
    lanes: int
    elem: int
    write_bytes: int
    ibuf_lanes: tuple = ()
    wbuf_lanes: tuple = ()
    unit_lanes: tuple = ()

    @property
    def obuf_write(self):
        return self.banks


def buffer_plan(arch: ArchConfig, *, units=None, add=None) -> BufferPlan:
    """The buffer ports :class:`SemlCore` builds for ``arch``."""
    if units is None:
        units = {
            Engine.CONV: EngineUnit(arch, Engine.CONV),
            Engine.DEPTHWISE: EngineUnit(arch, Engine.DEPTHWISE),
            Engine.POINTWISE: EngineUnit(arch, Engine.POINTWISE),
            Engine.POOL: PoolWindowUnit(arch),
        }
    if add is None:
        add = AddUnit(arch)
    for unit in (*units.values(), add):
        # only their port lists are asked for here
        unit._MustUse__silence = True

    def widths(attr, among=None):
        """Width of each shared port (or shared fetcher lane): the widest unit's at that
        index."""
        out = []
        for unit in units.values() if among is None else among:
            for i, w in enumerate(getattr(unit, attr)):
                if i == len(out):
                    out.append(w)
                out[i] = max(out[i], w)
        return out

    engines = [u for e, u in units.items() if e is not Engine.POOL]

    c_ibuf = widths("ibuf_read_widths")
    c_wbuf = widths("wbuf_read_widths")
    c_obuf = widths("obuf_write_widths")
    c_obuf[0] = max(c_obuf[0], add.beat_bytes)
    c_pbuf = max(unit.pbuf_lanes for unit in units.values())
    # ADD reads IBUF through the COMPUTE units' port (one of them runs at a time).
    c_ibuf[0] = max(c_ibuf[0], len(add.ibuf0_data) // 8)
    lanes = max(len(u.obuf_write_widths) for u in engines)
    elem = max(u.obuf_write_widths[0] for u in engines)
    nbytes = arch.axi_data_bytes
    # Banks: every port's run touches each bank once; the lanes' staged runs are at least
    # as wide as one element per lane, so that one wide write per cycle keeps up with all
    # lanes; the read lanes' runs are as wide as the banks.
    banks = buffer_banks(arch)
    widest = max([nbytes, lanes * elem] + c_obuf + c_ibuf + c_wbuf)
    if widest > banks or len(c_ibuf) != 1 or len(c_wbuf) != 1:
        raise AssertionError(f"buffer ports {c_ibuf}, {c_wbuf}, {c_obuf} do not fit one "
                             f"{banks}-byte port each")
    return BufferPlan(banks=banks, ibuf_reads=tuple(c_ibuf), wbuf_reads=tuple(c_wbuf),
                      pbuf_lanes=c_pbuf, lanes=lanes, elem=elem, write_bytes=nbytes,
                      ibuf_lanes=tuple(widths("ibuf_lane_widths", engines)),
                      wbuf_lanes=tuple(widths("wbuf_lane_widths", engines)),
                      unit_lanes=tuple((e, tuple(u.ibuf_lane_widths),
                                        tuple(u.wbuf_lane_widths), not u.desc.windowed)
                                       for e, u in units.items() if e is not Engine.POOL))


def _forward(m, outer, inner, names):
    """Connect the flat ports ``names`` of ``inner`` to the same ports of ``outer``."""
    for name in names:
        member = inner.signature.members[name]
        if member.flow == In:
            m.d.comb += getattr(inner, name).eq(getattr(outer, name))
        else:
            m.d.comb += getattr(outer, name).eq(getattr(inner, name))


def shared_fetcher_options(arch: ArchConfig, plan: BufferPlan, pixel_pack: int) -> dict:
    """``{"ibuf": ..., "wbuf": ...}``: the :class:`~hw.seml.buffers.LaneFetcher` keywords
    of the pixel and weight fetcher the engine units share (without
    ``private_fetchers``); ``pixel_pack``: the POINTWISE unit's
    (:attr:`~hw.seml.engine_units.EngineUnit.pixel_pack`)."""
    return {
        "ibuf": {"widths": list(plan.ibuf_lanes), "width": plan.banks,
                 "size": arch.ibuf_bytes, "prefetch": True, "jumps": True,
                 "pack": pixel_pack, "eager": True, "lookahead": True,
                 "read_stages": BUFFER_READ_STAGES},
        "wbuf": {"widths": list(plan.wbuf_lanes), "width": plan.banks,
                 "size": arch.wbuf_bytes, "prefetch": False, "eager": True,
                 "lookahead": True, "read_stages": BUFFER_READ_STAGES},
    }


class SemlCore(wiring.Component):
    """The SEML accelerator core for one :class:`hw.arch.ArchConfig`.

    Parameters
    ----------
    arch : ArchConfig
    max_burst : int
        Longest AXI burst of the DMA, in beats.
    trace_depth : int
        Cycle stamps kept in the control registers (one per issued instruction).

    Members
    -------
    s_axil_* : AXI4-Lite slave (control and status, 32-bit data, 12-bit address).
    m_axi_* : AXI4 master to DDR (``axi_data_bits`` data, ``axi_addr_bits`` address,
        ID width 1: ID 0 for data, ID 1 for instruction fetch).
    irq : Out(1)
        High from done until the next start or ``CONTROL.CLEAR`` (level interrupt to the
        host).

    Latency: after start, one header word and one pass over the program (one bus word
    per cycle) before the first instruction issues. Issue: one instruction every four
    cycles (fetch, two decode cycles, issue; the decoder's third registered stage is
    its verdict, read by issue) while its unit is free, seen through a register one
    cycle after it goes idle; LOAD, COMPUTE and STORE then run concurrently.
    """

    def __init__(self, arch: ArchConfig, *, max_burst=MAX_BURST, trace_depth=512):
        if not isinstance(arch, ArchConfig):
            raise TypeError(f"arch must be an ArchConfig, not {arch!r}")
        self.arch = arch
        self._max_burst = max_burst
        self._trace_depth = trace_depth
        self._csr = ControlStatusRegisters(addr_bits=arch.axi_addr_bits, trace_depth=trace_depth)
        # a legal LOAD / STORE fits a buffer: its rows and row bytes fit size_bits
        self._dma = AxiDma(data_bits=arch.axi_data_bits, addr_bits=arch.axi_addr_bits,
                           max_burst=max_burst, size_bits=min(size_bits(arch), 32))
        self._arbiter = AxiReadArbiter(data_bits=arch.axi_data_bits,
                                       addr_bits=arch.axi_addr_bits)
        members = {}
        self._csr_ports = [n for n in self._csr.signature.members if n.startswith("s_axil_")]
        self._dma_ports = [n for n in self._dma.signature.members
                           if n.startswith(("m_axi_aw", "m_axi_w", "m_axi_b"))]
        self._arb_ports = [n for n in self._arbiter.signature.members if n.startswith("m_axi_")]
        for comp, names in ((self._csr, self._csr_ports), (self._dma, self._dma_ports),
                            (self._arbiter, self._arb_ports)):
            for name in names:
                members[name] = comp.signature.members[name]
        members["irq"] = Out(1)
        super().__init__(members)

    @staticmethod
    def _shared_fetchers(m, arch, plan, units):
        """One pixel and one weight fetcher for the engine units (one COMPUTE runs at a
        time): sized for the most lanes (lane ``q`` as wide as the widest unit's lane
        ``q``), the selected unit's lanes switched in; a unit's clear (its start among
        them) clears the set. Returns the two :class:`~hw.seml.buffers.LaneFetcher`."""
        engine_units = {e: u for e, u in units.items() if e is not Engine.POOL}
        options = shared_fetcher_options(arch, plan, units[Engine.POINTWISE].pixel_pack)
        m.submodules.ibuf_fetch = ibuf_fetch = LaneFetcher(**options["ibuf"])
        m.submodules.wbuf_fetch = wbuf_fetch = LaneFetcher(**options["wbuf"])
        for buf, fetcher in (("ibuf", ibuf_fetch), ("wbuf", wbuf_fetch)):
            ports = {e: u.lane_port(buf) for e, u in engine_units.items()}
            m.d.comb += [fetcher.clear.eq(Cat(*(p.clear for p in ports.values())).any()),
                         fetcher.relocate.eq(Cat(*(p.relocate for p in ports.values())).any())]
            for p in ports.values():
                m.d.comb += p.ready.eq(fetcher.ready)
                for q in range(p.lanes):
                    f_data, u_data = fetcher.lane(q)[2], p.lane(q)[2]
                    m.d.comb += u_data.eq(f_data[:len(u_data)])
            # Lane addresses and enables: an idle unit's are 0 (its address registers
            # return to 0 when its instruction ends, it enables and arms no read, its
            # addresses after a read are 0 while it does not read), so the fetcher takes
            # the OR of the units' lanes (addresses, enables, armed flags and addresses
            # after a read and their alternates), no engine-select multiplexer before its
            # hit checks.
            for q in range(fetcher.lanes):
                users = [p for p in ports.values() if q < p.lanes]
                f_addr, f_en, _ = fetcher.lane(q)
                m.d.comb += [f_addr.eq(_or(u.lane(q)[0] for u in users)),
                             fetcher.lane_adv(q).eq(_or(u.lane_adv(q) for u in users)),
                             fetcher.lane_alt(q)[0].eq(_or(u.lane_alt(q)[0] for u in users)),
                             fetcher.lane_alt(q)[1].eq(_or(u.lane_alt(q)[1] for u in users)),
                             f_en.eq(_or(u.lane(q)[1] for u in users)),
                             fetcher.lane_armed(q).eq(
                                 _or(u.lane_armed(q) for u in users))]
            # The mode flags: an idle unit's are neutral (``sequential`` high, ``jump``
            # and ``packed`` low), so the selected unit's pass through an AND / OR.
            m.d.comb += fetcher.sequential.eq(Cat(*(p.sequential for p in ports.values())).all())
            jumps = [p.jump for p in ports.values() if p.jump is not None]
            if jumps:
                m.d.comb += fetcher.jump.eq(_or(jumps))
            packs = [p.packed for p in ports.values() if p.packed is not None]
            if packs and units[Engine.POINTWISE].pixel_pack:
                m.d.comb += fetcher.packed.eq(_or(packs))
            for p in ports.values():
                if p.jump is not None:
                    # POINTWISE alone jumps: its next-tile addresses go straight in
                    m.d.comb += [fetcher.lane_next(q).eq(p.next(q)) for q in range(p.lanes)]
        return ibuf_fetch, wbuf_fetch

    def elaborate(self, platform):
        m = Module()
        arch = self.arch
        nbytes = arch.axi_data_bytes

        m.submodules.csr = csr = self._csr
        m.submodules.dma = dma = self._dma
        m.submodules.arbiter = arb = self._arbiter
        m.submodules.fetch = fetch = InstructionFetch(data_bits=arch.axi_data_bits,
                                                      addr_bits=arch.axi_addr_bits)
        _forward(m, self, csr, self._csr_ports)
        _forward(m, self, dma, self._dma_ports)
        _forward(m, self, arb, self._arb_ports)
        for suffix in ("addr", "len", "valid"):
            m.d.comb += [
                getattr(arb, f"dma_ar{suffix}").eq(getattr(dma, f"m_axi_ar{suffix}")),
                getattr(arb, f"fetch_ar{suffix}").eq(getattr(fetch, f"ar_{suffix}")),
            ]
        m.d.comb += [
            dma.m_axi_arready.eq(arb.dma_arready),
            fetch.ar_ready.eq(arb.fetch_arready),
            dma.m_axi_rid.eq(0),
            arb.dma_rready.eq(dma.m_axi_rready),
            arb.fetch_rready.eq(fetch.r_ready),
        ]
        for suffix in ("data", "resp", "last", "valid"):
            m.d.comb += [
                getattr(dma, f"m_axi_r{suffix}").eq(getattr(arb, f"dma_r{suffix}")),
                getattr(fetch, f"r_{suffix}").eq(getattr(arb, f"fetch_r{suffix}")),
            ]

        # Units and buffers ------------------------------------------------------------
        m.submodules.load = load = LoadUnit(arch)
        m.submodules.store = store = StoreUnit(arch)
        m.submodules.add = add = AddUnit(arch)
        units = {
            engine: EngineUnit(arch, engine, shared_fetch=not arch.private_fetchers)
            for engine in (Engine.CONV, Engine.DEPTHWISE, Engine.POINTWISE)}
        units[Engine.POOL] = PoolWindowUnit(arch)
        for engine, unit in units.items():
            m.submodules[f"compute_{engine.name.lower()}"] = unit
        # One COMPUTE runs at a time: the units share the buffer ports, switched by the
        # engine of the last COMPUTE started.
        sel = Signal(Engine)
        compute_start = Signal()
        # ADD owns the shared ports from its start to the next COMPUTE's (a register, not
        # its busy flag's counters, drives the port multiplexers)
        add_sel = Signal()
        # the engine select's POOL flag: the buffer ports' multiplexers take it, not ``sel``
        pool_sel = Signal()

        plan = buffer_plan(arch, units=units, add=add)
        ibuf_reads, c_wbuf, c_pbuf = plan.ibuf_reads, plan.wbuf_reads, plan.pbuf_lanes
        banks, lanes, elem = plan.banks, plan.lanes, plan.elem
        # IBUF and WBUF reads come out in bank order (``raw_reads``): the fetchers, ADD
        # and POOL register the banks' outputs as they are and select their elements
        # after those registers, so no multiplexer sits between the banks and them.
        # Their write ports are registered (no path from the DMA's read data and LOAD's
        # count into the banks' write enables): LOAD's last write reaches the banks in the
        # cycle its busy flag falls, before issue sees it fall (ISSUE_BUSY_LAG), so no
        # instruction that waits for the LOAD reads the old bytes.
        # Each of their banks takes its read row and enable from its own register
        # (BUFFER_READ_STAGES): the readers' addresses, their OR and the row selects end
        # at flip-flops beside the banks, and one bare route follows.
        m.submodules.ibuf = ibuf = ByteBuffer(arch.ibuf_bytes, banks=banks,
                                              read_widths=ibuf_reads, write_widths=[nbytes],
                                              write_stages=1, raw_reads=True,
                                              read_stages=BUFFER_READ_STAGES)
        m.submodules.wbuf = wbuf = ByteBuffer(arch.wbuf_bytes, banks=banks,
                                              read_widths=c_wbuf, write_widths=[nbytes],
                                              write_stages=1, raw_reads=True,
                                              read_stages=BUFFER_READ_STAGES)
        # OBUF has one write port: the engine units' lanes go through the stager; ADD and
        # POOL write one contiguous run per cycle.
        # (its write registered twice, OBUF_WRITE_STAGES: the writers sit in three units
        # across the core, the banks' lane selects behind them, and each end gets a
        # register beside it; the last write still reaches the banks before a STORE that
        # waits for the COMPUTE reads them, which issue starts ISSUE_BUSY_LAG cycles after
        # the writer's busy flag falls, and which reads a cycle after its start). STORE
        # reads the banks' raw outputs and selects its bus word after its skid buffer.
        m.submodules.obuf = obuf = ByteBuffer(arch.obuf_bytes, banks=banks,
                                              read_widths=[banks], write_widths=[banks],
                                              write_stages=OBUF_WRITE_STAGES, raw_reads=True)
        m.submodules.obuf_stager = stager = LaneStager(lanes=lanes, elem=elem, width=banks,
                                                       size=arch.obuf_bytes)
        m.submodules.pbuf = pbuf = EntryBuffer(pbuf_layout(arch), depth=arch.pbuf_entries,
                                               lanes=c_pbuf)

        wiring.connect(m, load.dma_cmd, dma.rd_cmd)
        wiring.connect(m, dma.rd_data, load.dma_data)
        wiring.connect(m, store.dma_cmd, dma.wr_cmd)
        wiring.connect(m, store.dma_data, dma.wr_data)
        m.d.comb += [
            load.data_base.eq(csr.data_base),
            store.data_base.eq(csr.data_base),
            store.dma_idle.eq(dma.wr_idle),
            ibuf.w0_addr.eq(load.ibuf_w_addr),
            ibuf.w0_data.eq(load.ibuf_w_data),
            ibuf.w0_count.eq(load.ibuf_w_count),
            wbuf.w0_addr.eq(load.wbuf_w_addr),
            wbuf.w0_data.eq(load.wbuf_w_data),
            wbuf.w0_count.eq(load.wbuf_w_count),
            add.tbuf_w_addr.eq(load.tbuf_w_addr),
            add.tbuf_w_data.eq(load.tbuf_w_data),
            add.tbuf_w_count.eq(load.tbuf_w_count),
            pbuf.w_addr.eq(load.pbuf_w_addr),
            pbuf.w_data.eq(load.pbuf_w_data),
            pbuf.w_en.eq(load.pbuf_w_en),
            obuf.r0_addr.eq(store.obuf_r_addr),
            obuf.r0_en.eq(store.obuf_r_en),
            store.obuf_r_data.eq(obuf.r0_data),
        ]

        # The engine units' pixel and weight lanes. With ``private_fetchers`` each unit has
        # its own pixel and weight fetcher beside it (their read address and enable are
        # registers), so no lane address or handshake crosses between units: the units'
        # reads reach IBUF and WBUF through an OR, and the banks' raw words go to every
        # fetcher. Else the units share one fetcher set (:meth:`_shared_fetchers`).
        engine_units = {e: u for e, u in units.items() if e is not Engine.POOL}
        i_addr, i_en, i_data = ibuf.read_port(0)
        w_addr, w_en, w_data = wbuf.read_port(0)
        x_addr, x_en = Signal.like(i_addr), Signal()
        if arch.private_fetchers:
            # (a fetcher's read address is 0 while it does not read, and only the
            # selected unit's reads: the units' reads combine by an OR, no engine select)
            for unit in engine_units.values():
                m.d.comb += [unit.ibuf_port(0)[2].eq(i_data), unit.wbuf_port(0)[2].eq(w_data)]
            m.d.comb += [x_addr.eq(_or(u.ibuf_port(0)[0] for u in engine_units.values())),
                         x_en.eq(_or(u.ibuf_port(0)[1] for u in engine_units.values())),
                         w_addr.eq(_or(u.wbuf_port(0)[0] for u in engine_units.values())),
                         w_en.eq(_or(u.wbuf_port(0)[1] for u in engine_units.values()))]
        else:
            ibuf_fetch, wbuf_fetch = self._shared_fetchers(m, arch, plan, units)
            m.d.comb += [x_addr.eq(ibuf_fetch.r_addr), x_en.eq(ibuf_fetch.r_en),
                         ibuf_fetch.r_data.eq(i_data),
                         w_addr.eq(wbuf_fetch.r_addr), w_en.eq(wbuf_fetch.r_en),
                         wbuf_fetch.r_data.eq(w_data)]
        # ADD, POOL and the engine units take turns at IBUF's port, and each one's read
        # address is 0 while it does not read: the port takes the OR of the four, no
        # select
        pool_i_addr, pool_i_en, pool_i_data = units[Engine.POOL].ibuf_port(0)
        m.d.comb += [add.ibuf0_data.eq(i_data), pool_i_data.eq(i_data),
                     i_addr.eq(add.ibuf0_addr | pool_i_addr | x_addr),
                     i_en.eq(add.ibuf0_en | pool_i_en | x_en)]
        # PBUF: the selected unit's read; entry ``q`` to each unit's lane ``q``
        for unit in units.values():
            for q in range(unit.pbuf_lanes):
                m.d.comb += unit.pbuf_data(q).eq(pbuf.read_data(q))
        with m.Switch(sel):
            for engine, unit in units.items():
                if unit.pbuf_lanes:
                    with m.Case(engine):
                        m.d.comb += [pbuf.r_addr.eq(unit.pbuf_addr),
                                     pbuf.r_en.eq(unit.pbuf_en)]
        # ADD and COMPUTE both belong to the COMPUTE unit: one of them writes OBUF at a time.
        # The selected unit's lane writes (address, element, enable per lane) reach the
        # stager through a skid buffer: the units' ``obuf_ready`` (and through it their
        # engines' pipeline enable) is a register, not the stager's run checks. Each unit
        # has its own copy of that register (``ready_copies``, enabled while it is the
        # selected engine: ``sel`` changes only when the skid is empty), so that no one
        # flag fans out across the die to every unit's pipeline.
        lane_addr = [Signal(len(stager.lane(q)[0]), name=f"o_lane{q}_addr")
                     for q in range(lanes)]
        lane_data = [Signal(len(stager.lane(q)[1]), name=f"o_lane{q}_data")
                     for q in range(lanes)]
        lane_en = Signal(lanes)
        m.submodules.obuf_skid = skid = SkidBuffer(len(Cat(*lane_addr, *lane_data, lane_en)),
                                                   ready_copies=len(engine_units))
        for i, (engine, unit) in enumerate(engine_units.items()):
            m.d.comb += [skid.copy_en[i].eq(sel == engine),
                         unit.obuf_ready.eq(skid.copy_ready[i])]
        with m.Switch(sel):
            for engine, unit in engine_units.items():
                with m.Case(engine):
                    for q in range(len(unit.obuf_write_widths)):
                        u_addr, u_data, u_count = unit.obuf_port(q)
                        m.d.comb += [lane_addr[q].eq(u_addr), lane_data[q].eq(u_data),
                                     lane_en[q].eq(u_count != 0)]
        # a unit's lane writes only while ``obuf_ready``: its copy of the skid's ``i_ready``
        m.d.comb += [skid.i_valid.eq(lane_en.any()),
                     skid.i_data.eq(Cat(*lane_addr, *lane_data, lane_en))]
        o_addr = [Signal.like(a) for a in lane_addr]
        o_data = [Signal.like(d) for d in lane_data]
        o_en = Signal(lanes)
        m.d.comb += [Cat(*o_addr, *o_data, o_en).eq(skid.o_data), skid.o_ready.eq(stager.ready)]
        for q in range(lanes):
            l_addr, l_data, l_en = stager.lane(q)
            m.d.comb += [l_addr.eq(o_addr[q]), l_data.eq(o_data[q]),
                         l_en.eq(skid.o_valid & o_en[q])]
        # the stager flushes its runs once every engine unit and the skid are idle, seen
        # through a register: no path from a unit's control state into the stager's run
        # registers (a flush a cycle late only holds ``busy`` a cycle longer; one still
        # high in the cycle after a unit starts only ends a run early, long before that
        # unit's first write)
        stager_flush = Signal()
        m.d.sync += stager_flush.eq(~Cat(*(u.busy for u in engine_units.values())).any()
                                    & ~skid.busy)
        m.d.comb += stager.flush.eq(stager_flush)
        w_addr, w_data, w_count = obuf.write_port(0)
        pool_addr, pool_data, pool_count = units[Engine.POOL].obuf_port(0)
        with m.If(add_sel):
            m.d.comb += [w_addr.eq(add.obuf_w_addr), w_data.eq(add.obuf_w_data),
                         w_count.eq(add.obuf_w_count)]
        with m.Elif(pool_sel):
            m.d.comb += [w_addr.eq(pool_addr), w_data.eq(pool_data), w_count.eq(pool_count)]
        with m.Else():
            m.d.comb += [w_addr.eq(stager.w_addr), w_data.eq(stager.w_data),
                         w_count.eq(stager.w_count)]

        # Header check, decode and issue ------------------------------------------------
        m.submodules.header_check = hdr_check = HeaderCheck(arch)
        m.submodules.decoder = decoder = InstructionDecoder(arch, early=True)
        header = Signal(INSTR_BITS)
        ir = Signal(INSTRUCTION)
        # one flag per opcode the issue stage acts on, and SYNC's mask, loaded with ``ir``
        op_is = {op: Signal(name=f"op_{op.name.lower()}")
                 for op in (Opcode.LOAD, Opcode.STORE, Opcode.ADD, Opcode.COMPUTE,
                            Opcode.SYNC, Opcode.END)}
        sync_mask = Signal(3)
        m.d.comb += [hdr_check.header.eq(header), decoder.word.eq(ir),
                     decoder.early.eq(fetch.word.payload),
                     load.size.eq(decoder.dma_size), store.size.eq(decoder.dma_size)]
        with m.If(compute_start):
            m.d.sync += [sel.eq(ir.compute.engine), add_sel.eq(0),
                         pool_sel.eq(ir.compute.engine == Engine.POOL)]
        with m.If(add.start):
            m.d.sync += add_sel.eq(1)
        for unit in (load, store, add, *units.values()):
            m.d.comb += unit.instr.eq(ir)

        count = Signal(32)
        pc = Signal(32)
        # ``count - pc`` and whether it is 0, kept in registers so that the fetch state's
        # end-of-program check is one flag, not a 32-bit compare before the fetch
        # buffer's read enable
        togo = Signal(32)
        togo_zero = Signal()
        decode_wait = Signal(range(InstructionDecoder.LATENCY + 1))
        error = Signal(ErrorCode)
        bus_error = dma.rd_error | dma.wr_error | fetch.error
        # Issue sees the units' busy flags through a register: no path from a unit's
        # counters through issue into the other units' start logic. A unit issued in
        # ISSUE starts in the next cycle (START_LAG) and is busy from the one after, its
        # register from that start, before the next ISSUE (ISSUE_INTERVAL cycles on);
        # a unit that goes idle is seen ISSUE_BUSY_LAG cycle later.
        load_busy = Signal()
        compute_busy = Signal()
        store_busy = Signal()
        # (a start pulse counts as busy: the registers are high from the cycle after it)
        m.d.sync += [
            load_busy.eq(load.busy | load.start),
            compute_busy.eq(add.busy | add.start | stager.busy | skid.busy
                            | Cat(*(u.busy | u.start for u in units.values())).any()),
            store_busy.eq(store.busy | store.start),
        ]
        all_idle = ~load_busy & ~compute_busy & ~store_busy
        m.d.comb += csr.instr_count.eq(pc)

        def fail(code):
            m.d.sync += error.eq(code)
            m.next = "DRAIN"

        # Issue decides in ISSUE; each unit's start pulse is a register set by that
        # decision, high in the next cycle (START_LAG): no path from issue's state, the
        # opcode flags and the busy registers into the registers every unit loads at its
        # start. ``ir`` and the decoder's registers still hold the instruction in that
        # cycle (the next word enters them at its end at the earliest).
        go = {unit: Signal(name=f"{name}_go") for name, unit in
              (("load", load), ("store", store), ("add", add),
               *((f"{e.name.lower()}", u) for e, u in units.items()))}
        compute_go = Signal()
        m.d.sync += [unit.start.eq(flag) for unit, flag in go.items()]
        m.d.sync += compute_start.eq(compute_go)

        with m.FSM():
            with m.State("IDLE"), m.If(csr.start):
                m.d.comb += [dma.clear.eq(1), fetch.clear.eq(1)]
                m.d.sync += [pc.eq(0), error.eq(ErrorCode.NONE)]
                m.next = "HEADER_REQUEST"
            with m.State("HEADER_REQUEST"):
                m.d.comb += [
                    fetch.cmd.valid.eq(1),
                    fetch.cmd.payload.addr.eq(csr.prog_base),
                    fetch.cmd.payload.words.eq(1),
                ]
                with m.If(fetch.cmd.ready):
                    m.next = "HEADER"
            with m.State("HEADER"):
                m.d.comb += fetch.word.ready.eq(1)
                with m.If(fetch.word.valid):
                    m.d.sync += header.eq(fetch.word.payload)
                    m.next = "HEADER_CHECK"
            with m.State("HEADER_CHECK"):
                with m.If(fetch.error):
                    fail(ErrorCode.BUS_ERROR)
                with m.Elif(hdr_check.error != ErrorCode.NONE):
                    fail(hdr_check.error)
                with m.Else():
                    m.d.sync += [count.eq(hdr_check.instr_count),
                                 togo.eq(hdr_check.instr_count),
                                 togo_zero.eq(hdr_check.instr_count == 0)]
                    m.next = "SCAN_REQUEST"
            with m.State("SCAN_REQUEST"):
                m.d.comb += [
                    fetch.cmd.valid.eq(1),
                    fetch.cmd.payload.addr.eq(csr.prog_base),
                    fetch.cmd.payload.words.eq(count + 1),
                    fetch.cmd.payload.crc.eq(1),
                ]
                with m.If(fetch.cmd.ready):
                    m.next = "SCAN"
            with m.State("SCAN"):
                m.d.comb += fetch.word.ready.eq(1)
                with m.If(fetch.idle):
                    m.next = "SCAN_CHECK"
            with m.State("SCAN_CHECK"):
                with m.If(fetch.error):
                    fail(ErrorCode.BUS_ERROR)
                with m.Elif(fetch.crc != hdr_check.crc):
                    fail(ErrorCode.BAD_CRC)
                with m.Else():
                    m.next = "EXEC_REQUEST"
            with m.State("EXEC_REQUEST"):
                m.d.comb += [
                    fetch.cmd.valid.eq(1),
                    fetch.cmd.payload.addr.eq(csr.prog_base + HEADER_BYTES),
                    fetch.cmd.payload.words.eq(count),
                ]
                with m.If(fetch.cmd.ready):
                    m.next = "FETCH"
            with m.State("FETCH"):
                # the decoder's first stage takes the word as it enters ``ir`` (straight
                # from the fetch buffer, no multiplexer before it; a word not taken
                # below leaves nothing to check)
                m.d.comb += decoder.early_en.eq(fetch.word.valid)
                with m.If(bus_error):
                    fail(ErrorCode.BUS_ERROR)
                with m.Elif(togo_zero):
                    # The program ran out without END (``pc == count``).
                    fail(ErrorCode.ILLEGAL_INSTRUCTION)
                with m.Else():
                    m.d.comb += fetch.word.ready.eq(1)
                    with m.If(fetch.word.valid):
                        word = data.View(INSTRUCTION, fetch.word.payload)
                        m.d.sync += [ir.eq(fetch.word.payload),
                                     decode_wait.eq(InstructionDecoder.LATENCY - 2)]
                        m.d.sync += [flag.eq(word.opcode == op)
                                     for op, flag in op_is.items()]
                        m.d.sync += sync_mask.eq(word.sync.mask.as_value())
                        m.next = "DECODE"
            with m.State("DECODE"):
                with m.If(bus_error):
                    fail(ErrorCode.BUS_ERROR)
                with m.Elif(decode_wait != 0):
                    # the word is not yet through the decoder's registered stages
                    m.d.sync += decode_wait.eq(decode_wait - 1)
                with m.Else():
                    m.next = "ISSUE"
            with m.State("ISSUE"):
                # the decoder's error register holds the verdict on ``ir`` from here;
                # the issue decision reads the opcode's flags, registered beside ``ir``
                # (``ir`` itself fans out to every unit)
                issued = Signal()
                with m.If(op_is[Opcode.LOAD]):
                    m.d.comb += [issued.eq(~load_busy), go[load].eq(~load_busy)]
                with m.If(op_is[Opcode.STORE]):
                    m.d.comb += [issued.eq(~store_busy), go[store].eq(~store_busy)]
                with m.If(op_is[Opcode.ADD]):
                    m.d.comb += [issued.eq(~compute_busy), go[add].eq(~compute_busy)]
                with m.If(op_is[Opcode.COMPUTE]):
                    m.d.comb += [issued.eq(~compute_busy),
                                 compute_go.eq(~compute_busy)]
                    with m.Switch(ir.compute.engine):
                        for engine, unit in units.items():
                            with m.Case(engine):
                                m.d.comb += go[unit].eq(~compute_busy)
                with m.If(op_is[Opcode.SYNC]):
                    m.d.comb += issued.eq(
                        ~(sync_mask[0] & load_busy) & ~(sync_mask[1] & compute_busy)
                        & ~(sync_mask[2] & store_busy))
                with m.If(op_is[Opcode.END]):
                    m.d.comb += issued.eq(all_idle)
                with m.If(bus_error | (decoder.error != ErrorCode.NONE)):
                    # Nothing new starts after a bus error or for an illegal instruction.
                    m.d.comb += [flag.eq(0) for flag in (*go.values(), compute_go)]
                    with m.If(bus_error):
                        fail(ErrorCode.BUS_ERROR)
                    with m.Else():
                        fail(decoder.error)
                with m.Elif(issued):
                    m.d.comb += csr.mark.eq(1)
                    m.d.sync += [pc.eq(pc + 1), togo.eq(togo - 1), togo_zero.eq(togo == 1)]
                    with m.If(ir.opcode == Opcode.END):
                        m.next = "DONE"
                    with m.Else():
                        m.next = "FETCH"
            with m.State("DRAIN"):
                m.d.comb += [fetch.word.ready.eq(1), fetch.abort.eq(1)]
                with m.If(all_idle & fetch.idle):
                    m.next = "DONE"
            with m.State("DONE"):
                code = Signal(ErrorCode)
                m.d.comb += code.eq(error)
                with m.If((error == ErrorCode.NONE) & bus_error):
                    m.d.comb += code.eq(ErrorCode.BUS_ERROR)
                m.d.comb += [
                    csr.done.eq(1),
                    csr.error_code.eq(code),
                    csr.error_info.eq(pc),
                ]
                m.next = "IDLE"

        busy = Signal()
        m.d.sync += busy.eq(busy)
        with m.If(csr.start):
            m.d.sync += busy.eq(1)
        with m.If(csr.done):
            m.d.sync += busy.eq(0)
        m.d.comb += csr.busy.eq(busy)
        m.d.comb += self.irq.eq(csr.irq)
        return m
