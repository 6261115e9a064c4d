"""On-chip buffers of the SEML core.

IBUF, WBUF and OBUF are byte-addressed (``docs/isa.md``: tiles are dense and start
at any byte), so :class:`ByteBuffer` spreads the bytes over ``banks`` byte-wide
memories, byte ``a`` living in bank ``a % banks`` at row ``a // banks``. Any run of
up to ``banks`` consecutive bytes then touches each bank at most once, and every
port reads or writes such a run in one cycle, whatever its alignment.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

__all__ = ["ByteBuffer"]


def _check_positive(name, value, what):
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{what} must be an integer, not {value!r}")
    if value < 1:
        raise ValueError(f"{what} must be at least 1, not {value!r}")


class ByteBuffer(wiring.Component):
    """Byte-addressed memory with unaligned multi-byte ports.

    Parameters
    ----------
    size : int
        Bytes of storage.
    banks : int
        Byte-wide banks (a power of two); no port is wider.
    read_widths : list of int
        Width in bytes of each read port.
    write_widths : list of int
        Width in bytes of each write port.

    Members
    -------
    w{i}_addr : In(range(size))
        Byte address of lane 0 of write port ``i``.
    w{i}_data : In(8 * write_widths[i])
        Lane ``k`` (bits ``8k .. 8k+7``) goes to byte ``w{i}_addr + k``.
    w{i}_count : In(range(write_widths[i] + 1))
        Lanes written (from lane 0); 0 writes nothing. Ports writing the same byte
        in one cycle: the highest-numbered port wins.
    r{i}_addr, r{i}_en : In
        Byte address of lane 0 of read port ``i``; the read happens when ``en`` is high.
    r{i}_data : Out(8 * read_widths[i])
        The bytes from the last enabled read (one cycle of latency; held while ``en``
        is low). Lane ``j`` is byte ``addr + j``. A read and a write of the same byte
        in one cycle returns the old byte.

    Addresses past ``size`` wrap inside the banks; callers check ranges.
    """

    def __init__(self, size, *, banks, read_widths, write_widths):
        _check_positive("size", size, "Buffer size")
        _check_positive("banks", banks, "Bank count")
        if banks & (banks - 1):
            raise ValueError(f"Bank count must be a power of two, not {banks!r}")
        if not isinstance(read_widths, (list, tuple)):
            raise TypeError(f"Read widths must be a list of integers, not {read_widths!r}")
        if not isinstance(write_widths, (list, tuple)):
            raise TypeError(f"Write widths must be a list of integers, not {write_widths!r}")
        for w in list(read_widths) + list(write_widths):
            _check_positive("width", w, "Port width")
            if w > banks:
                raise ValueError(f"Port width must be at most the bank count {banks}, not {w!r}")
        self._size = size
        self._banks = banks
        self._read_widths = list(read_widths)
        self._write_widths = list(write_widths)
        self._rows = -(-size // banks)
        members = {}
        for i, w in enumerate(self._write_widths):
            members[f"w{i}_addr"] = In(range(max(size, 2)))
            members[f"w{i}_data"] = In(8 * w)
            members[f"w{i}_count"] = In(range(w + 1))
        for i, w in enumerate(self._read_widths):
            members[f"r{i}_addr"] = In(range(max(size, 2)))
            members[f"r{i}_en"] = In(1)
            members[f"r{i}_data"] = Out(8 * w)
        super().__init__(members)

    @property
    def size(self):
        return self._size

    def write_port(self, i):
        """``(addr, data, count)`` of write port ``i``."""
        return (getattr(self, f"w{i}_addr"), getattr(self, f"w{i}_data"),
                getattr(self, f"w{i}_count"))

    def read_port(self, i):
        """``(addr, en, data)`` of read port ``i``."""
        return (getattr(self, f"r{i}_addr"), getattr(self, f"r{i}_en"),
                getattr(self, f"r{i}_data"))

    def elaborate(self, platform):
        m = Module()
        n = self._banks
        lg = exact_log2(n)
        row_bits = max(ceil_log2(self._rows), 1)
        mems = []
        for j in range(n):
            mem = Memory(shape=8, depth=max(self._rows, 2), init=[])
            m.submodules[f"bank{j}"] = mem
            mems.append(mem)

        def lane_of(addr, j):
            """Lane of the access at ``addr`` that falls into bank ``j``, and its row."""
            lane = Signal(max(lg, 1))
            row = Signal(row_bits)
            if lg:
                m.d.comb += lane.eq(j - addr[:lg])
            m.d.comb += row.eq((addr + lane) >> lg)
            return lane, row

        # Write ports.
        for i, width in enumerate(self._write_widths):
            w_addr, w_data, w_count = self.write_port(i)
            for j, mem in enumerate(mems):
                wp = mem.write_port()
                lane, row = lane_of(w_addr, j)
                lanes = [w_data[8 * k:8 * k + 8] for k in range(width)]
                m.d.comb += [
                    wp.addr.eq(row),
                    wp.en.eq(lane < w_count),
                    wp.data.eq(Cat(*lanes).word_select(lane, 8) if len(lanes) > 1
                               else lanes[0]),
                ]

        # Read ports.
        for i, width in enumerate(self._read_widths):
            addr, en, data = self.read_port(i)
            offset = Signal(max(lg, 1), name=f"r{i}_offset")
            with m.If(en):
                m.d.sync += offset.eq(addr[:lg] if lg else 0)
            bank_data = []
            for j, mem in enumerate(mems):
                rp = mem.read_port()
                _, row = lane_of(addr, j)
                m.d.comb += [rp.addr.eq(row), rp.en.eq(en)]
                bank_data.append(rp.data)
            banked = Cat(*bank_data)
            for lane in range(width):
                # Lane ``lane`` of the read is in bank ``(offset + lane) % n``.
                bank = Signal(max(lg, 1), name=f"r{i}_bank{lane}")
                m.d.comb += bank.eq(offset + lane)
                m.d.comb += data[8 * lane:8 * lane + 8].eq(
                    banked.word_select(bank, 8) if n > 1 else banked)
        return m
