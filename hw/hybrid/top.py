"""The hybrid top: the SESL prefix streams frame n+1 while the SEML core runs frame n.

Inside:

* :class:`~hw.hybrid.prefix.SeslPrefix`'s pipeline and hand-off writer: input pixels in,
  each frame's cut tensor written to DDR in the SEML input layout;
* :class:`~hw.seml.core.SemlCore`, driven through its own control registers only;
* two **hand-off buffers** in DDR, A and B, in two copies of the SEML part's DDR image
  (``DATA_BASE_A`` / ``DATA_BASE_B``; the hand-off tensor sits at the program's input
  offset in each). The prefix writes frame ``n`` into buffer ``n mod 2``; the core runs
  frame ``n`` with its ``DATA_BASE`` set to that image, so the unchanged ``program.bin``
  (every DDR address is an offset from ``DATA_BASE``) reads the right buffer, and frame
  ``n``'s output lands in image ``n mod 2``, where it stays until frame ``n + 2`` ends;
* per buffer a **writing** and a **full** flag: the pixels of a frame enter the hand-off
  writer's row buffer at once, but its first row starts to drain to DDR (the writer's
  ``hold``) only when its buffer is neither, so the writer never overwrites a buffer the
  core reads; the writer's end of frame turns writing into full; the core starts a frame
  when its buffer is full and the core is idle, and its done empties the buffer;
* **one AXI4-Lite slave** (13-bit address): ``0x0000-0x0FFF`` is the SEML core's register
  map (``docs/host_interface.md``, passed through), ``0x1000-0x1FFF`` the hybrid's
  (:data:`HYBRID_REGISTERS`). The top's own controller programs the core's
  ``DATA_BASE`` and ``CONTROL`` through the same path (:class:`~hw.hybrid.axi.AxiLiteLink`,
  controller first), so the core is used exactly as a host would use it;
* **one AXI4 master** to DDR: the core's read channels pass through, its write channels
  and the hand-off writer's are merged burst by burst (:class:`~hw.hybrid.axi.AxiWriteArbiter`;
  the writer's bursts through :class:`~hw.hybrid.axi.AxiWritePacker`, so that they go out
  whole at a beat per cycle);
  ID width is the core's plus one (the top bit is 1 for the hand-off writer's writes).

A run: the host loads the two images, writes ``PROG_BASE`` (core map), the hybrid's
``FRAME_COUNT``, ``HANDOFF_*`` and ``DATA_*`` bases and ``HYBRID_CONTROL.START``, then
streams pixels into ``i``; ``frame_done`` pulses as each frame's output is in DDR and
``irq`` rises when all ``FRAME_COUNT`` frames are done (or on an error).
Throughput is ``1 / max(T_SESL, T_SEML)`` per frame, latency ``T_SESL latency + T_SEML``.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Shape, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.arch import ArchConfig
from hw.seml.core import SemlCore
from hw.sesl.config import PipelineConfig
from hw.sesl.pipeline import SeslPipeline
from hw.sesl.stage import pixel_signature

from .axi import AxiLiteLink, AxiWriteArbiter, AxiWritePacker, axil_members
from .handoff import HandoffWriter

__all__ = ["HYBRID_ID", "HYBRID_REGISTERS", "HybridTop"]

#: Byte offsets of the hybrid's 32-bit registers (the SEML core's are below 0x1000).
HYBRID_REGISTERS = {
    "HYBRID_ID": 0x1000,
    "HYBRID_CONTROL": 0x1004,
    "HYBRID_STATUS": 0x1008,
    "FRAME_COUNT": 0x100C,
    "HANDOFF_A_LO": 0x1010,
    "HANDOFF_A_HI": 0x1014,
    "HANDOFF_B_LO": 0x1018,
    "HANDOFF_B_HI": 0x101C,
    "DATA_A_LO": 0x1020,
    "DATA_A_HI": 0x1024,
    "DATA_B_LO": 0x1028,
    "DATA_B_HI": 0x102C,
    "FRAMES_IN": 0x1030,
    "FRAMES_OUT": 0x1034,
    "CORE_ERROR": 0x1038,
    "RUN_CYCLES": 0x103C,
    "FIRST_DONE": 0x1040,
    "LAST_DONE": 0x1044,
}
#: ``HYBRID_ID`` reads ASCII "HYBR".
HYBRID_ID = 0x48594252
HYBRID_START = 1 << 0
HYBRID_CLEAR = 1 << 1
#: ``HYBRID_STATUS`` bits.
HSTATUS_DONE = 1 << 0
HSTATUS_BUSY = 1 << 1
HSTATUS_ERROR = 1 << 2
HSTATUS_HANDOFF_ERROR = 1 << 3
#: bits 4, 5: buffers A, B full; bits 6, 7: buffers A, B being written.
HSTATUS_FULL_SHIFT = 4
HSTATUS_WRITING_SHIFT = 6

_ADDR_BITS = 13
#: Longest burst of the hand-off writer (its packer buffers one).
_HANDOFF_BURST = 16
# Registers of the SEML core the controller writes and reads (hw.seml.csr.REGISTERS).
_CORE_CONTROL = 0x04
_CORE_ERROR_CODE = 0x0C
_CORE_DATA_BASE_LO = 0x18
_CORE_DATA_BASE_HI = 0x1C


class HybridTop(wiring.Component):
    """SESL prefix + hand-off writer + SEML core behind one AXI4-Lite slave and one AXI4
    master (see the module doc).

    Parameters
    ----------
    cfg : PipelineConfig
        The SESL prefix (``pipeline.json`` of a hybrid compile).
    arch : ArchConfig
        The SEML core (``arch.json``).

    Members
    -------
    i : In(pixel_signature(C_in, act_bits))
        Input pixels of the model, raster order, frames back to back.
    s_axil_* : AXI4-Lite slave, 32-bit data, 13-bit address.
    m_axi_* : AXI4 master to DDR (``axi_data_bits``, ``axi_addr_bits``, ID width 2).
    irq : Out(1)
        ``HYBRID_STATUS.done``: the run's frames are all done, or it stopped on an error.
    frame_done : Out(1)
        One-cycle pulse when the core finishes a frame (its output is in DDR).
    """

    def __init__(self, cfg: PipelineConfig, arch: ArchConfig, *, trace_depth: int = 512):
        if not isinstance(cfg, PipelineConfig):
            raise TypeError(f"cfg must be a PipelineConfig, not {cfg!r}")
        if not isinstance(arch, ArchConfig):
            raise TypeError(f"arch must be an ArchConfig, not {arch!r}")
        if cfg.act_bits != arch.act_bits:
            raise ValueError(f"The prefix's act_bits ({cfg.act_bits}) differ from the SEML "
                             f"core's ({arch.act_bits}); compile both parts with one arch")
        self.cfg, self.arch = cfg, arch
        # the parts of hw.hybrid.prefix.SeslPrefix, with the stream between them gated here
        self.pipeline = SeslPipeline(cfg)
        c, h, w = cfg.output_shape
        self.writer = HandoffWriter(c, h, w, act_bits=cfg.act_bits,
                                    data_bits=arch.axi_data_bits, addr_bits=arch.axi_addr_bits,
                                    max_burst=_HANDOFF_BURST)
        self.core = SemlCore(arch, trace_depth=trace_depth)
        core_members = self.core.signature.members
        self._id_bits = Shape.cast(core_members["m_axi_awid"].shape).width
        members = {"i": In(pixel_signature(cfg.input_shape[0], cfg.act_bits))}
        members.update(axil_members("s_axil_", _ADDR_BITS, manager=False))
        for name, member in core_members.items():
            if name.startswith("m_axi_"):
                width = Shape.cast(member.shape).width
                if name in ("m_axi_awid", "m_axi_arid", "m_axi_bid", "m_axi_rid"):
                    width = self._id_bits + 1
                members[name] = (Out if member.flow == Out else In)(width)
        members["irq"] = Out(1)
        members["frame_done"] = Out(1)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        cfg, arch = self.cfg, self.arch
        addr_bits = arch.axi_addr_bits
        m.submodules.pipeline = pipe = self.pipeline
        m.submodules.writer = writer = self.writer
        wiring.connect(m, wiring.flipped(self.i), pipe.i)
        m.submodules.core = core = self.core
        m.submodules.link = link = AxiLiteLink(clients=3, addr_bits=12)
        m.submodules.wr_arb = arb = AxiWriteArbiter(id_bits=self._id_bits,
                                                    data_bits=arch.axi_data_bits,
                                                    addr_bits=addr_bits)

        # DDR port: core reads straight through, writes merged (client 0 core, 1 hand-off).
        for name in self.signature.members:
            if not name.startswith("m_axi_"):
                continue
            ch = name[6:]
            if ch.startswith(("aw", "w", "b")):
                ours, theirs = getattr(self, name), getattr(arb, name)
            else:
                ours, theirs = getattr(self, name), getattr(core, name)
            if ch in ("arid",):
                m.d.comb += ours.eq(Cat(theirs, Const(0, 1)))
            elif ch in ("rid",):
                m.d.comb += theirs.eq(ours[:self._id_bits])
            elif self.signature.members[name].flow == Out:
                m.d.comb += ours.eq(theirs)
            else:
                m.d.comb += theirs.eq(ours)
        # the hand-off writer's bursts go out whole (it packs a bus word every 2 x bytes
        # cycles; its bursts must not hold the merged write channel meanwhile)
        m.submodules.packer = packer = AxiWritePacker(
            id_bits=self._id_bits, data_bits=arch.axi_data_bits, addr_bits=addr_bits,
            max_burst=_HANDOFF_BURST)
        for src, src_prefix, dst, dst_prefix in ((core, "m_axi_", arb, "c0_"),
                                                 (writer, "m_axi_", packer, "s_"),
                                                 (packer, "m_", arb, "c1_")):
            for name in dst.signature.members:
                if not name.startswith(dst_prefix):
                    continue
                theirs = getattr(src, src_prefix + name[len(dst_prefix):])
                ours = getattr(dst, name)
                if dst.signature.members[name].flow == Out:
                    m.d.comb += theirs.eq(ours)
                else:
                    m.d.comb += ours.eq(theirs)
        # the hand-off writer never reads
        m.d.comb += [writer.m_axi_arready.eq(0), writer.m_axi_rvalid.eq(0)]

        # Core control registers: reached through the link only.
        for name in core.signature.members:
            if name.startswith("s_axil_"):
                ours = getattr(link, "m_axil_" + name[7:])
                theirs = getattr(core, name)
                if core.signature.members[name].flow == In:
                    m.d.comb += theirs.eq(ours)
                else:
                    m.d.comb += ours.eq(theirs)

        # Hybrid registers ---------------------------------------------------------------
        frame_count = Signal(32)
        handoff = [Signal(64, name="handoff_a"), Signal(64, name="handoff_b")]
        data = [Signal(64, name="data_a"), Signal(64, name="data_b")]
        running = Signal()
        done = Signal()
        core_error = Signal(32)
        handoff_error = Signal()
        error = Signal()
        frames_in = Signal(32)
        frames_out = Signal(32)
        cycles = Signal(32)
        first_done = Signal(32)
        last_done = Signal(32)
        full = Signal(2)
        writing = Signal(2)
        set_full, clr_full = Signal(2), Signal(2)
        set_writing, clr_writing = Signal(2), Signal(2)
        start = Signal()
        clear = Signal()
        m.d.comb += [self.irq.eq(done), writer.clear.eq(start | clear)]
        with m.If(running):
            m.d.sync += cycles.eq(cycles + 1)

        # Fill side: pixels enter the writer's row buffer while the run wants frames.
        _, h_out, w_out = cfg.output_shape
        pixels = h_out * w_out
        fill_x = Signal(range(pixels))
        fill_frames = Signal(32)
        admit = running & ~error & (fill_frames < frame_count)
        m.d.comb += [
            writer.i.payload.eq(pipe.o.payload),
            writer.i.valid.eq(pipe.o.valid & admit),
            pipe.o.ready.eq(writer.i.ready & admit),
        ]
        with m.If(writer.i.valid & writer.i.ready):
            with m.If(fill_x == pixels - 1):
                m.d.sync += [fill_x.eq(0), fill_frames.eq(fill_frames + 1)]
            with m.Else():
                m.d.sync += fill_x.eq(fill_x + 1)

        # Drain side: frame k of the run goes to buffer k mod 2 (the writer's frame count
        # since the start, so the parity is right in the very cycle a frame ends). A
        # frame's first row starts to drain only into a buffer neither full nor written.
        frames0 = Signal()          # the writer's frame count parity at the start
        drain_sel = Signal()
        m.d.comb += drain_sel.eq(writer.frames[0] ^ frames0)
        free = ~full.bit_select(drain_sel, 1) & ~writing.bit_select(drain_sel, 1)
        m.d.comb += [writer.base.eq(Mux(drain_sel, handoff[1], handoff[0])[:addr_bits]),
                     writer.hold.eq(~free | ~running | error)]
        with m.If(writer.frame_start):
            m.d.comb += set_writing.bit_select(drain_sel, 1).eq(1)
        seen = Signal(32)
        m.d.sync += seen.eq(writer.frames)
        with m.If(writer.frames != seen):
            ended = seen[0] ^ frames0
            m.d.comb += [set_full.bit_select(ended, 1).eq(1),
                         clr_writing.bit_select(ended, 1).eq(1)]
            m.d.sync += frames_in.eq(frames_in + 1)
        with m.If(writer.error & running):
            m.d.sync += [handoff_error.eq(1), error.eq(1), running.eq(0), done.eq(1)]

        # Core side: program DATA_BASE, start, wait for done, check the error code.
        rd_sel = Signal()
        seq_req = Signal()
        seq_write = Signal()
        seq_addr = Signal(12)
        seq_data = Signal(32)
        m.d.comb += [link.req_valid_0.eq(seq_req), link.req_write_0.eq(seq_write),
                     link.req_addr_0.eq(seq_addr), link.req_wdata_0.eq(seq_data),
                     link.req_wstrb_0.eq(0xF)]
        base = Mux(rd_sel, data[1], data[0])
        with m.FSM(name="seq"):
            with m.State("IDLE"), m.If(running & ~error & full.bit_select(rd_sel, 1)):
                m.next = "BASE_LO"
            with m.State("BASE_LO"):
                m.d.comb += [seq_req.eq(1), seq_write.eq(1), seq_addr.eq(_CORE_DATA_BASE_LO),
                             seq_data.eq(base[:32])]
                with m.If(link.ack_0):
                    m.next = "BASE_HI" if addr_bits > 32 else "START"
            with m.State("BASE_HI"):
                m.d.comb += [seq_req.eq(1), seq_write.eq(1), seq_addr.eq(_CORE_DATA_BASE_HI),
                             seq_data.eq(base[32:])]
                with m.If(link.ack_0):
                    m.next = "START"
            with m.State("START"):
                m.d.comb += [seq_req.eq(1), seq_write.eq(1), seq_addr.eq(_CORE_CONTROL),
                             seq_data.eq(1)]
                with m.If(link.ack_0):
                    m.next = "RUN"
            with m.State("RUN"), m.If(core.irq):
                m.next = "CHECK"
            with m.State("CHECK"):
                m.d.comb += [seq_req.eq(1), seq_addr.eq(_CORE_ERROR_CODE)]
                with m.If(link.ack_0):
                    m.next = "IDLE"
                    with m.If((link.rdata != 0) | (link.resp != 0)):
                        m.d.sync += [core_error.eq(Mux(link.rdata != 0, link.rdata, 0xFFFF)),
                                     error.eq(1), running.eq(0), done.eq(1)]
                    with m.Else():
                        m.d.comb += [clr_full.bit_select(rd_sel, 1).eq(1),
                                     self.frame_done.eq(1)]
                        m.d.sync += [rd_sel.eq(~rd_sel), frames_out.eq(frames_out + 1),
                                     last_done.eq(cycles)]
                        with m.If(frames_out == 0):
                            m.d.sync += first_done.eq(cycles)
                        with m.If(frames_out + 1 >= frame_count):
                            m.d.sync += [running.eq(0), done.eq(1)]

        m.d.sync += [full.eq((full | set_full) & ~clr_full),
                     writing.eq((writing | set_writing) & ~clr_writing)]

        # Host AXI4-Lite slave -------------------------------------------------------------
        aw_addr = Signal(_ADDR_BITS)
        aw_full = Signal()
        w_data = Signal(32)
        w_strb = Signal(4)
        w_full = Signal()
        bvalid = Signal()
        bresp = Signal(2)
        fwd_w = Signal()       # the pending write goes to the core (link client 1)
        m.d.comb += [self.s_axil_awready.eq(~aw_full), self.s_axil_wready.eq(~w_full),
                     self.s_axil_bvalid.eq(bvalid), self.s_axil_bresp.eq(bresp)]
        with m.If(self.s_axil_awvalid & ~aw_full):
            m.d.sync += [aw_addr.eq(self.s_axil_awaddr), aw_full.eq(1)]
        with m.If(self.s_axil_wvalid & ~w_full):
            m.d.sync += [w_data.eq(self.s_axil_wdata), w_strb.eq(self.s_axil_wstrb),
                         w_full.eq(1)]
        with m.If(bvalid & self.s_axil_bready):
            m.d.sync += bvalid.eq(0)
        m.d.comb += [link.req_valid_1.eq(fwd_w), link.req_write_1.eq(1),
                     link.req_addr_1.eq(aw_addr[:12]), link.req_wdata_1.eq(w_data),
                     link.req_wstrb_1.eq(w_strb)]
        with m.If(link.ack_1):
            m.d.sync += [fwd_w.eq(0), aw_full.eq(0), w_full.eq(0), bvalid.eq(1),
                         bresp.eq(link.resp)]

        word = aw_addr[2:]
        rw = {  # register -> (signal, bit offset)
            "FRAME_COUNT": (frame_count, 0),
            "HANDOFF_A_LO": (handoff[0], 0), "HANDOFF_A_HI": (handoff[0], 32),
            "HANDOFF_B_LO": (handoff[1], 0), "HANDOFF_B_HI": (handoff[1], 32),
            "DATA_A_LO": (data[0], 0), "DATA_A_HI": (data[0], 32),
            "DATA_B_LO": (data[1], 0), "DATA_B_HI": (data[1], 32),
        }
        with m.If(aw_full & w_full & ~bvalid & ~fwd_w):
            with m.If(~aw_addr[12]):
                m.d.sync += fwd_w.eq(1)
            with m.Else():
                m.d.sync += [aw_full.eq(0), w_full.eq(0), bvalid.eq(1), bresp.eq(0)]
                with m.Switch(word):
                    with m.Case(HYBRID_REGISTERS["HYBRID_CONTROL"] >> 2), \
                            m.If(w_strb[0] & ~running):
                        with m.If(w_data[0]):
                            m.d.comb += start.eq(1)
                        with m.Elif(w_data[1]):
                            m.d.comb += clear.eq(1)
                    for name, (reg, lo) in rw.items():
                        with m.Case(HYBRID_REGISTERS[name] >> 2), m.If(~running):
                            # the bases and frame count hold still during a run
                            for i in range(4):
                                with m.If(w_strb[i]):
                                    m.d.sync += reg[lo + 8 * i:lo + 8 * i + 8].eq(
                                        w_data[8 * i:8 * i + 8])
                    with m.Case(*[v >> 2 for n, v in HYBRID_REGISTERS.items()
                                  if n not in rw and n != "HYBRID_CONTROL"]):
                        pass    # read-only
                    with m.Default():
                        m.d.sync += bresp.eq(0b10)

        with m.If(start):
            m.d.sync += [running.eq(frame_count != 0), done.eq(frame_count == 0),
                         error.eq(0), handoff_error.eq(0), core_error.eq(0),
                         frames_in.eq(0), frames_out.eq(0), cycles.eq(0), first_done.eq(0),
                         last_done.eq(0), fill_x.eq(0), fill_frames.eq(0),
                         frames0.eq(writer.frames[0]), rd_sel.eq(0), full.eq(0),
                         writing.eq(0)]
        with m.If(clear):
            m.d.sync += [done.eq(0), error.eq(0), handoff_error.eq(0), core_error.eq(0)]

        # Reads.
        ar_addr = Signal(_ADDR_BITS)
        ar_full = Signal()
        fwd_r = Signal()
        rvalid = Signal()
        rdata = Signal(32)
        rresp = Signal(2)
        m.d.comb += [self.s_axil_arready.eq(~ar_full & ~rvalid), self.s_axil_rvalid.eq(rvalid),
                     self.s_axil_rdata.eq(rdata), self.s_axil_rresp.eq(rresp)]
        with m.If(rvalid & self.s_axil_rready):
            m.d.sync += rvalid.eq(0)
        with m.If(self.s_axil_arvalid & ~ar_full & ~rvalid):
            m.d.sync += [ar_addr.eq(self.s_axil_araddr), ar_full.eq(1)]
        m.d.comb += [link.req_valid_2.eq(fwd_r), link.req_write_2.eq(0),
                     link.req_addr_2.eq(ar_addr[:12]), link.req_wdata_2.eq(0),
                     link.req_wstrb_2.eq(0)]
        with m.If(link.ack_2):
            m.d.sync += [fwd_r.eq(0), ar_full.eq(0), rvalid.eq(1), rdata.eq(link.rdata),
                         rresp.eq(link.resp)]
        status = Cat(done, running, error, handoff_error, full, writing)
        values = {
            "HYBRID_ID": Const(HYBRID_ID, 32), "HYBRID_CONTROL": Const(0, 32),
            "HYBRID_STATUS": status, "FRAMES_IN": frames_in, "FRAMES_OUT": frames_out,
            "CORE_ERROR": core_error, "RUN_CYCLES": cycles, "FIRST_DONE": first_done,
            "LAST_DONE": last_done,
        }
        values.update({name: reg[lo:lo + 32] for name, (reg, lo) in rw.items()})
        with m.If(ar_full & ~fwd_r & ~rvalid):
            with m.If(~ar_addr[12]):
                m.d.sync += fwd_r.eq(1)
            with m.Else():
                m.d.sync += [ar_full.eq(0), rvalid.eq(1), rresp.eq(0), rdata.eq(0)]
                with m.Switch(ar_addr[2:]):
                    for name, value in values.items():
                        with m.Case(HYBRID_REGISTERS[name] >> 2):
                            m.d.sync += rdata.eq(value)
                    with m.Default():
                        m.d.sync += rresp.eq(0b10)
        return m
