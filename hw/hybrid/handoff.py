"""The hybrid's hand-off: the SESL prefix's output stream written to DDR in the SEML
core's input layout.

The SESL prefix streams one pixel per beat (all ``C`` channels, raster order); the
SEML core reads its input tensor from DDR as ``C`` planes of ``H x W`` bytes
(channel-major, ``sim.iss.encode_activations``). The writer transposes one row at a
time: a row buffer of ``2 W`` words (two banks, ping-pong: one fills from the stream while
the other drains) of ``C x act_bits`` bits, one write and one read port with registered
read data, so it maps to block RAM. A full row drains as one 2-D DMA transfer --
``C`` rows of ``W`` bytes, ``H W`` bytes apart, starting at ``base + y W`` -- through the
write side of :class:`hw.seml.dma.AxiDma`, reading lane ``c`` of word ``x`` for
``c = 0..C-1``, ``x = 0..W-1`` and packing the bytes into bus words.

Row and frame addresses step by addition (``W`` per row; ``H W`` is the DMA stride, a
constant). A frame counts as written once the DMA has every write response of its last
row (``frames`` increments); ``base`` is sampled when a frame's first row starts to drain
(``frame_start`` pulses), which ``hold`` can postpone (the rows still fill meanwhile).
A bus error sets ``error`` (held until ``clear``); the transfer still completes.

Rate: a byte every two cycles on the drain side plus one cycle per bus word, i.e.
about ``C W (2 + 1 / bytes_per_word)`` cycles per row (:func:`handoff_cycles_per_frame`).
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.seml.dma import AxiDma
from hw.sesl.stage import pixel_signature

__all__ = ["HandoffWriter", "handoff_cycles_per_frame"]


def handoff_cycles_per_frame(channels: int, height: int, width: int, data_bits: int) -> int:
    """Drain cycles of one frame (the writer's rate when the bus keeps up)."""
    nb = data_bits // 8
    per_row = 2 * channels * width + -(-channels * width // nb) + 2
    return height * per_row


class HandoffWriter(wiring.Component):
    """Stream of ``channels``-lane pixels -> DDR planes at ``base`` (see the module doc).

    Members
    -------
    i : In(pixel_signature(channels, act_bits))
    base : In(addr_bits)
        DDR byte address of the tensor (sampled at each frame's first row).
    hold : In(1)
        While high, a frame's first row does not start to drain (the hybrid top holds a
        frame until its DDR buffer is free); the row buffer still fills. Tie to 0 if unused.
    frame_start : Out(1)
        One-cycle pulse when a frame's first row starts to drain (``base`` is sampled).
    frames : Out(32)
        Frames completely written (every write response received).
    error, clear : an AXI error response was seen (held until ``clear``).
    m_axi_* : AXI4 master (write channels used; the read channels stay idle).
    """

    def __init__(self, channels: int, height: int, width: int, *, act_bits: int = 8,
                 data_bits: int = 64, addr_bits: int = 32, max_burst: int = 16):
        for name, v in (("channels", channels), ("height", height), ("width", width)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"Hand-off {name} must be a positive integer, not {v!r}")
        if not 2 <= act_bits <= 8:
            raise ValueError(f"The hand-off writes one byte per activation; act_bits must be "
                             f"2..8, not {act_bits!r}")
        self.channels, self.height, self.width = channels, height, width
        self.act_bits = act_bits
        self.dma = AxiDma(data_bits=data_bits, addr_bits=addr_bits, max_burst=max_burst)
        self._data_bits, self._addr_bits = data_bits, addr_bits
        members = {name: value for name, value in self.dma.signature.members.items()
                   if name.startswith("m_axi_")}
        super().__init__({
            "i": In(pixel_signature(channels, act_bits)),
            "base": In(addr_bits),
            "hold": In(1),
            "frame_start": Out(1),
            "frames": Out(32),
            "error": Out(1),
            "clear": In(1),
            **members,
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.dma = dma = self.dma
        for name in self.signature.members:
            if name.startswith("m_axi_"):
                ours, theirs = getattr(self, name), getattr(dma, name)
                if self.signature.members[name].flow == Out:
                    m.d.comb += ours.eq(theirs)
                else:
                    m.d.comb += theirs.eq(ours)
        m.d.comb += [dma.rd_cmd.valid.eq(0), dma.rd_data.ready.eq(1), dma.clear.eq(self.clear),
                     self.error.eq(dma.wr_error)]

        c_n, h_n, w_n, a = self.channels, self.height, self.width, self.act_bits
        nb = self._data_bits // 8
        m.submodules.rows = mem = Memory(shape=c_n * a, depth=2 * w_n, init=[])
        wp = mem.write_port()
        rp = mem.read_port()

        # Fill side: beats into bank `wbank`, `waddr` runs over both banks.
        full = Signal(2)
        wbank = Signal()
        waddr = Signal(range(2 * w_n))
        wx = Signal(range(w_n))
        m.d.comb += [self.i.ready.eq(~full.bit_select(wbank, 1)),
                     wp.addr.eq(waddr), wp.data.eq(self.i.payload),
                     wp.en.eq(self.i.valid & self.i.ready)]
        set_full = Signal(2)
        clr_full = Signal(2)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += waddr.eq(waddr + 1)
            with m.If(waddr == 2 * w_n - 1):
                m.d.sync += waddr.eq(0)
            with m.If(wx == w_n - 1):
                m.d.sync += [wx.eq(0), wbank.eq(~wbank)]
                m.d.comb += set_full.bit_select(wbank, 1).eq(1)
            with m.Else():
                m.d.sync += wx.eq(wx + 1)
        m.d.sync += full.eq((full | set_full) & ~clr_full)

        # Drain side.
        rbank = Signal()
        rbase = Signal(range(2 * w_n))      # rbank * W
        x = Signal(range(w_n))
        c = Signal(range(c_n))
        y = Signal(range(h_n))
        k = Signal(range(nb + 1))           # bytes in the packer
        pack = Signal(self._data_bits)
        last_byte = Signal()
        row_addr = Signal(self._addr_bits)
        cmd_pending = Signal()
        frames = Signal(32)
        m.d.comb += self.frames.eq(frames)
        m.d.comb += [rp.addr.eq(rbase + x), rp.en.eq(1)]
        m.d.comb += [
            dma.wr_cmd.payload.addr.eq(row_addr),
            dma.wr_cmd.payload.rows.eq(c_n),
            dma.wr_cmd.payload.row_bytes.eq(w_n),
            dma.wr_cmd.payload.stride.eq(h_n * w_n),
            dma.wr_cmd.valid.eq(cmd_pending),
        ]
        with m.If(dma.wr_cmd.valid & dma.wr_cmd.ready):
            m.d.sync += cmd_pending.eq(0)
        lane = Signal(a)
        m.d.comb += lane.eq(rp.data.word_select(c, a))
        byte = Signal(8)
        m.d.comb += byte.eq(lane.as_signed())
        m.d.comb += [dma.wr_data.payload.data.eq(pack), dma.wr_data.payload.last.eq(last_byte)]

        with m.FSM():
            with m.State("IDLE"), m.If(full.bit_select(rbank, 1) & ~(self.hold & (y == 0))):
                with m.If(y == 0):
                    m.d.sync += row_addr.eq(self.base)
                    m.d.comb += self.frame_start.eq(1)
                m.d.sync += [cmd_pending.eq(1), x.eq(0), c.eq(0), k.eq(0), pack.eq(0)]
                m.next = "READ"
            with m.State("READ"):        # rp.addr = rbank W + x; data next cycle
                m.next = "TAKE"
            with m.State("TAKE"):
                m.d.sync += [pack.word_select(k, 8).eq(byte), k.eq(k + 1)]
                final = (c == c_n - 1) & (x == w_n - 1)
                with m.If(x == w_n - 1):
                    m.d.sync += [x.eq(0), c.eq(c + 1)]
                with m.Else():
                    m.d.sync += x.eq(x + 1)
                m.d.sync += last_byte.eq(final)
                with m.If(final | (k == nb - 1)):
                    m.next = "SEND"
                with m.Else():
                    m.next = "READ"
            with m.State("SEND"):
                m.d.comb += dma.wr_data.valid.eq(1)
                with m.If(dma.wr_data.ready):
                    m.d.sync += [k.eq(0), pack.eq(0)]
                    with m.If(last_byte):
                        m.d.comb += clr_full.bit_select(rbank, 1).eq(1)
                        m.d.sync += [rbank.eq(~rbank), rbase.eq(Mux(rbank, 0, w_n)),
                                     row_addr.eq(row_addr + w_n), last_byte.eq(0)]
                        with m.If(y == h_n - 1):
                            m.d.sync += y.eq(0)
                            m.next = "FLUSH"
                        with m.Else():
                            m.d.sync += y.eq(y + 1)
                            m.next = "IDLE"
                    with m.Else():
                        m.next = "READ"
            with m.State("FLUSH"):       # let the DMA register the last word
                m.next = "WAIT"
            with m.State("WAIT"), m.If(~cmd_pending & dma.wr_idle):
                # every write response of the frame has arrived
                m.d.sync += frames.eq(frames + 1)
                m.next = "IDLE"
        return m
