"""Instruction fetch of the SEML core: whole 512-bit words from DDR, with a CRC-32.

The fetch unit reads ``words`` consecutive instruction words from a 64-byte aligned
address through its own AXI4 read channel (merged with the DMA's by
:class:`AxiReadArbiter`, ID 1), and optionally folds every byte into the CRC-32 of
``program.bin`` (IEEE 802.3, as ``zlib.crc32``), skipping the header's own CRC field.
It only asks for a word when there is room for it, so its read data is always taken
at once and can never block the DMA's data behind it.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from ..isa import HEADER_BYTES, INSTR_BITS, INSTR_BYTES
from .dma import axi_read_members

__all__ = ["FETCH_DEPTH", "AxiReadArbiter", "InstructionFetch", "crc32_update"]

#: Instruction words the fetch unit buffers (and so requests ahead of issue).
FETCH_DEPTH = 4

_POLY = 0xEDB88320


def _crc32_matrix(nbytes):
    """For each next-state bit, the masks of state bits and data bits it XORs."""
    # Symbolic CRC: each bit is a bitmask over (32 state bits + 8 * nbytes data bits).
    state = [1 << i for i in range(32)]
    for byte in range(nbytes):
        for bit in range(8):
            var = 1 << (32 + 8 * byte + bit)
            feedback = state[0] ^ var
            state = state[1:] + [0]
            for i in range(32):
                if (_POLY >> i) & 1:
                    state[i] ^= feedback
    return state


def crc32_update(crc, value, nbytes):
    """Next CRC-32 register after bytes ``value[0:8]``, ``value[8:16]`` ... (``nbytes`` of them).

    ``crc`` is the raw register (initial value ``0xFFFFFFFF``; the CRC is its
    complement at the end).
    """
    terms = Cat(crc[:32], value[:8 * nbytes])
    bits = []
    for mask in _crc32_matrix(nbytes):
        picked = [terms[i] for i in range(mask.bit_length()) if (mask >> i) & 1]
        bits.append(Cat(*picked).xor())
    return Cat(*bits)


class InstructionFetch(wiring.Component):
    """Reads runs of instruction words from DDR.

    Parameters
    ----------
    data_bits : int
        AXI data width (32..512).
    addr_bits : int
        AXI address width.
    depth : int
        Words buffered (and so requested ahead).

    Members
    -------
    cmd : In(stream.Signature({"addr", "words", "crc"}))
        Read ``words`` words from the 64-byte aligned ``addr``; with ``crc`` set, restart
        the CRC and fold the words into it (the first word is taken to be the header:
        its bytes 60..63 are skipped).
    word : Out(stream.Signature(512))
        The words, in order.
    crc : Out(32)
        CRC-32 of the bytes folded in since the last ``crc`` command.
    idle : Out(1)
        No word is requested, in flight or buffered.
    error : Out(1)
        An error response arrived (held until ``clear``); the words still arrive.
    clear : In(1)
    abort : In(1)
        Request no more words of the current command (those in flight still arrive).
    ar_addr, ar_len, ar_valid, ar_ready, r_data, r_resp, r_last, r_valid, r_ready
        The AXI4 read channels (INCR bursts of one word each).
    """

    def __init__(self, *, data_bits=64, addr_bits=32, depth=FETCH_DEPTH):
        if data_bits not in (32, 64, 128, 256, 512):
            raise ValueError(f"Data width must be one of 32, 64, 128, 256, 512, not {data_bits!r}")
        if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
            raise ValueError(f"Depth must be a positive integer, not {depth!r}")
        self._data_bits = data_bits
        self._addr_bits = addr_bits
        self._depth = depth
        super().__init__({
            "cmd": In(stream.Signature(data.StructLayout(
                {"addr": addr_bits, "words": 32, "crc": 1}))),
            "word": Out(stream.Signature(INSTR_BITS)),
            "crc": Out(32),
            "idle": Out(1),
            "error": Out(1),
            "clear": In(1),
            "abort": In(1),
            "ar_addr": Out(addr_bits),
            "ar_len": Out(8),
            "ar_valid": Out(1),
            "ar_ready": In(1),
            "r_data": In(data_bits),
            "r_resp": In(2),
            "r_last": In(1),
            "r_valid": In(1),
            "r_ready": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        nbytes = self._data_bits // 8
        beats = INSTR_BYTES // nbytes
        depth = self._depth

        m.submodules.fifo = fifo = SyncFIFOBuffered(width=INSTR_BITS, depth=depth)
        m.d.comb += [
            self.word.valid.eq(fifo.r_rdy),
            self.word.payload.eq(fifo.r_data),
            fifo.r_en.eq(self.word.ready),
        ]

        addr = Signal(self._addr_bits)
        left = Signal(32)          # words still to request
        inflight = Signal(range(depth + 2))  # requested words not yet in the FIFO
        crc_mode = Signal()
        # ``left != 0`` as a flag set with ``left``: the read-address request (and through
        # the arbiter the DMA's ``arready``) starts at a register, not at a 32-bit compare
        left_nz = Signal()
        m.d.comb += self.cmd.ready.eq(~left_nz)
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += [addr.eq(self.cmd.payload.addr), left.eq(self.cmd.payload.words),
                         left_nz.eq(self.cmd.payload.words != 0)]
            with m.If(self.cmd.payload.crc):
                m.d.sync += crc_mode.eq(1)

        room = (inflight + fifo.level) < depth
        m.d.comb += [
            self.ar_addr.eq(addr),
            self.ar_len.eq(beats - 1),
            self.ar_valid.eq(left_nz & room),
        ]
        ar_fire = self.ar_valid & self.ar_ready
        with m.If(ar_fire):
            m.d.sync += [addr.eq(addr + INSTR_BYTES), left.eq(left - 1),
                         left_nz.eq(left != 1)]
        with m.If(self.abort):
            m.d.sync += [left.eq(0), left_nz.eq(0)]

        # Word assembly: beats arrive in order, lowest bytes first.
        shift = Signal(INSTR_BITS)
        beat = Signal(range(max(beats, 2)))
        m.d.comb += self.r_ready.eq(1)
        r_fire = self.r_valid
        word_done = r_fire & (beat == beats - 1)
        assembled = Cat(shift[self._data_bits:], self.r_data) if beats > 1 else self.r_data
        with m.If(r_fire):
            m.d.sync += shift.eq(assembled)
            m.d.sync += beat.eq(Mux(beat == beats - 1, 0, beat + 1))
            with m.If(self.r_resp != 0):
                m.d.sync += self.error.eq(1)
        m.d.comb += [fifo.w_data.eq(assembled), fifo.w_en.eq(word_done)]
        m.d.sync += inflight.eq(inflight + ar_fire - word_done)
        with m.If(self.clear):
            m.d.sync += self.error.eq(0)

        # CRC over every byte, but the header's CRC field (bytes 60..63 of the first word).
        crc_reg = Signal(32, init=0xFFFFFFFF)
        first_word = Signal()
        m.d.comb += self.crc.eq(~crc_reg)
        with m.If(self.cmd.valid & self.cmd.ready & self.cmd.payload.crc):
            m.d.sync += [crc_reg.eq(0xFFFFFFFF), first_word.eq(1)]
        with m.If(word_done):
            m.d.sync += first_word.eq(0)
        field_beat = (HEADER_BYTES - 4) // nbytes
        with m.If(r_fire & crc_mode):
            with m.If(first_word & (beat == field_beat)):
                kept = (HEADER_BYTES - 4) % nbytes
                if kept:
                    m.d.sync += crc_reg.eq(crc32_update(crc_reg, self.r_data, kept))
            with m.Else():
                m.d.sync += crc_reg.eq(crc32_update(crc_reg, self.r_data, nbytes))
        with m.If(self.cmd.valid & self.cmd.ready & ~self.cmd.payload.crc):
            m.d.sync += crc_mode.eq(0)

        m.d.comb += self.idle.eq(~left_nz & (inflight == 0) & (fifo.level == 0))
        return m


class AxiReadArbiter(wiring.Component):
    """Merges the read channels of the DMA (ID 0) and the instruction fetch (ID 1).

    The fetch's read-address request is taken into a register slot (``fetch_arready``
    is high while the slot is empty or leaves in that cycle), and the grant is driven
    from that slot: the fetch first, the DMA's request straight through otherwise. A
    fetch request reaches the bus one cycle after its handshake, at the full rate, and
    the fetch unit's ``arvalid`` does not reach the DMA's ``arready``: the grant starts at
    the slot and the arbiter's own registers. Read data is routed by ``rid``. The fetch
    always takes its data at once, so neither client can block the other behind it for
    longer than its own burst.

    Members
    -------
    m_axi_ar*, m_axi_r* : the merged AXI4 read channels (cocotbext-axi names).
    dma_* : the DMA's read channels (its ``m_axi_ar*`` / ``m_axi_r*`` ports).
    fetch_* : the fetch unit's read channels.
    """

    def __init__(self, *, data_bits=64, addr_bits=32):
        self._data_bits = data_bits
        self._addr_bits = addr_bits
        members = axi_read_members(data_bits, addr_bits)
        for client in ("dma", "fetch"):
            members.update({
                f"{client}_araddr": In(addr_bits),
                f"{client}_arlen": In(8),
                f"{client}_arvalid": In(1),
                f"{client}_arready": Out(1),
                f"{client}_rdata": Out(data_bits),
                f"{client}_rresp": Out(2),
                f"{client}_rlast": Out(1),
                f"{client}_rvalid": Out(1),
                f"{client}_rready": In(1),
            })
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        # ``owner`` holds the grant while a request waits, since AXI forbids changing
        # a valid request's address before it is accepted.
        owner = Signal()  # 0: DMA, 1: fetch
        locked = Signal()
        slot_valid = Signal()
        slot_addr = Signal(self._addr_bits)
        slot_len = Signal(8)
        pick = Signal()
        m.d.comb += [
            pick.eq(Mux(locked, owner, slot_valid)),
            self.m_axi_arid.eq(pick),
            self.m_axi_araddr.eq(Mux(pick, slot_addr, self.dma_araddr)),
            self.m_axi_arlen.eq(Mux(pick, slot_len, self.dma_arlen)),
            self.m_axi_arsize.eq(exact_log2(self._data_bits // 8)),
            self.m_axi_arburst.eq(0b01),
            self.m_axi_arvalid.eq(Mux(pick, slot_valid, self.dma_arvalid)),
            self.fetch_arready.eq(~slot_valid | (pick & self.m_axi_arready)),
            self.dma_arready.eq(~pick & self.m_axi_arready),
        ]
        with m.If(pick & self.m_axi_arready):
            m.d.sync += slot_valid.eq(0)
        with m.If(self.fetch_arvalid & self.fetch_arready):
            m.d.sync += [slot_valid.eq(1), slot_addr.eq(self.fetch_araddr),
                         slot_len.eq(self.fetch_arlen)]
        with m.If(self.m_axi_arvalid & ~self.m_axi_arready):
            m.d.sync += [locked.eq(1), owner.eq(pick)]
        with m.Else():
            m.d.sync += locked.eq(0)

        for client, rid in (("dma", 0), ("fetch", 1)):
            m.d.comb += [
                getattr(self, f"{client}_rdata").eq(self.m_axi_rdata),
                getattr(self, f"{client}_rresp").eq(self.m_axi_rresp),
                getattr(self, f"{client}_rlast").eq(self.m_axi_rlast),
                getattr(self, f"{client}_rvalid").eq(self.m_axi_rvalid
                                                     & (self.m_axi_rid == rid)),
            ]
        m.d.comb += self.m_axi_rready.eq(Mux(self.m_axi_rid, self.fetch_rready,
                                             self.dma_rready))
        return m

