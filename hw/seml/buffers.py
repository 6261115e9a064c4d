"""On-chip buffers of the SEML core.

IBUF, WBUF and OBUF are byte-addressed (``docs/isa.md``: tiles are dense and start
at any byte), so :class:`ByteBuffer` spreads the bytes over ``banks`` byte-wide
memories, byte ``a`` living in bank ``a % banks`` at row ``a // banks``. Any run of
up to ``banks`` consecutive bytes then touches each bank at most once, and every
port reads or writes such a run in one cycle, whatever its alignment.

PBUF is entry-addressed and read ``lanes`` consecutive entries at a time (one per
output lane of an engine): :class:`EntryBuffer` interleaves the entries over banks the
same way, one read port per bank.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

__all__ = ["ByteBuffer", "EntryBuffer", "LaneFetcher", "LaneStager", "bank_select",
           "entry_banks"]


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
    write_stages : int
        Register stages on every write port (address, data, count) before the banks: a
        write reaches the banks ``write_stages`` cycles after it is presented (a read in
        those cycles still returns the old bytes), so that no path runs from the
        writers' logic into the banks' lane selects; with two, the writers and the
        banks each have a register beside them and the route between is a bare one.
    read_stages : int
        Register stages on every read port (0, 1 or 2). The first is before the banks:
        each bank takes its own registered row and enable, so that no path runs from the
        readers' addresses through the row selects into the banks across the die. The
        second is after them: each bank's output goes through a register of its own
        beside the block RAM, so that the route from the RAM's output to a distant
        reader starts at a flip-flop. The data comes ``1 + read_stages`` cycles after
        the read.
    raw_reads : bool
        Every read port returns the banks' outputs as they are, in bank order (byte
        ``j`` of ``r{i}_data`` is bank ``j``'s: the byte of the read that lies in bank
        ``j``, at address ``addr + ((j - addr) mod banks)``), not rotated into address
        order: no multiplexer between the banks and the readers' registers, which
        select their elements with the address's low bits (:func:`bank_select`). Each
        read port is then ``banks`` bytes wide.

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
        The bytes from the last enabled read (``1 + read_stages`` cycles of latency;
        held while ``en`` is low). Lane ``j`` is byte ``addr + j`` (with ``raw_reads``:
        bank ``j``'s byte). A read and a write of the same byte in one cycle returns the
        old byte.

    Addresses past ``size`` wrap inside the banks; callers check ranges.
    """

    def __init__(self, size, *, banks, read_widths, write_widths, write_stages=0,
                 read_stages=0, raw_reads=False):
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
        if raw_reads and any(w != banks for w in read_widths):
            raise ValueError(f"Raw read ports return every bank: their widths must be the "
                             f"bank count {banks}, not {list(read_widths)!r}")
        self._size = size
        self._banks = banks
        self._read_widths = list(read_widths)
        self._write_widths = list(write_widths)
        for name, value, top in (("write_stages", write_stages, 2),
                                 ("read_stages", read_stages, 2)):
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= top:
                raise ValueError(f"{name} must be an integer from 0 to {top}, not {value!r}")
        self._write_stages = write_stages
        self._read_stages = read_stages
        self._raw_reads = bool(raw_reads)
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

        rows_of = {}

        def lane_of(addr, j):
            """Lane of the access at ``addr`` that falls into bank ``j``, and its row:
            the row of ``addr``, or the next one for the banks below ``addr``'s (one
            shared increment per port and a multiplexer per bank, no adder per bank)."""
            lane = Signal(max(lg, 1))
            row = Signal(row_bits)
            if id(addr) not in rows_of:
                here, after = Signal(row_bits), Signal(row_bits)
                m.d.comb += [here.eq(addr >> lg), after.eq(here + 1)]
                rows_of[id(addr)] = (here, after)
            here, after = rows_of[id(addr)]
            if lg:
                m.d.comb += [lane.eq(j - addr[:lg]),
                             row.eq(Mux(addr[:lg] > j, after, here))]
            else:
                m.d.comb += row.eq(here)
            return lane, row

        # Write ports.
        for i, width in enumerate(self._write_widths):
            w_addr, w_data, w_count = self.write_port(i)
            for k in range(self._write_stages):
                tag = "_r" if k == 0 else f"_r{k + 1}"
                port = [Signal.like(v, name=f"w{i}_{n}{tag}")
                        for v, n in zip((w_addr, w_data, w_count), ("addr", "data", "count"))]
                m.d.sync += [r.eq(v) for r, v in zip(port, (w_addr, w_data, w_count))]
                w_addr, w_data, w_count = port
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
            bank_data = []
            for j, mem in enumerate(mems):
                rp = mem.read_port()
                _, row = lane_of(addr, j)
                if self._read_stages:
                    # the bank's own row and enable registers
                    row_r = Signal.like(row, name=f"r{i}_row{j}_r")
                    en_r = Signal(name=f"r{i}_en{j}_r")
                    m.d.sync += [row_r.eq(row), en_r.eq(en)]
                    row, bank_en = row_r, en_r
                else:
                    bank_en = en
                m.d.comb += [rp.addr.eq(row), rp.en.eq(bank_en)]
                if self._read_stages > 1:
                    # the bank's output register, beside it, loaded in the cycle after
                    # an enabled read (when the RAM's output holds that read's byte)
                    out_en = Signal(name=f"r{i}_en{j}_rr")
                    out_r = Signal(8, name=f"r{i}_data{j}_r")
                    m.d.sync += out_en.eq(bank_en)
                    with m.If(out_en):
                        m.d.sync += out_r.eq(rp.data)
                    bank_data.append(out_r)
                else:
                    bank_data.append(rp.data)
            banked = Cat(*bank_data)
            if self._raw_reads:
                m.d.comb += data.eq(banked)
                continue
            low, low_en = addr[:lg] if lg else Const(0, 1), en
            for k in range(self._read_stages):
                # the rotation's offset follows the read through the same stages
                low_r = Signal(max(lg, 1), name=f"r{i}_low_r{k}")
                en_r = Signal(name=f"r{i}_en_r{k}")
                m.d.sync += [low_r.eq(low), en_r.eq(low_en)]
                low, low_en = low_r, en_r
            offset = Signal(max(lg, 1), name=f"r{i}_offset")
            with m.If(low_en):
                m.d.sync += offset.eq(low[:lg] if lg else 0)
            for lane in range(width):
                # Lane ``lane`` of the read is in bank ``(offset + lane) % n``.
                bank = Signal(max(lg, 1), name=f"r{i}_bank{lane}")
                m.d.comb += bank.eq(offset + lane)
                m.d.comb += data[8 * lane:8 * lane + 8].eq(
                    banked.word_select(bank, 8) if n > 1 else banked)
        return m


def bank_select(word, banks, low, width):
    """The ``width`` bytes at an address whose low bits are ``low`` out of ``word``, a
    raw read of ``banks`` byte-wide banks (:class:`ByteBuffer` with ``raw_reads``: byte
    ``j`` from bank ``j``) that holds them: byte ``k`` of the result is byte ``(low + k)
    mod banks`` of the word, a ``banks``-way multiplexer per output bit, as the shift
    out of a word in address order is."""
    if banks == 1:
        return word[:8 * width]
    low = low[:exact_log2(banks)]
    wrapped = Cat(word, word[:8 * (width - 1)]) if width > 1 else word
    return (wrapped >> (low * 8))[:8 * width]


def entry_banks(lanes: int) -> int:
    """Banks of an :class:`EntryBuffer` read ``lanes`` entries at a time: the power of
    two at or above ``lanes``."""
    return 1 << ceil_log2(lanes)


class EntryBuffer(wiring.Component):
    """Entry-addressed memory read ``lanes`` consecutive entries at a time.

    Entry ``a`` lives in bank ``a % banks`` at row ``a // banks``, ``banks`` being the
    power of two at or above ``lanes``: the ``lanes`` entries from any address touch
    each bank at most once, so every bank is one block RAM with one write and one read
    port. The read rotates the banks' registered outputs by the registered address
    offset.

    Parameters
    ----------
    shape : shape-castable
        One entry.
    depth : int
        Entries.
    lanes : int
        Entries per read.

    Members
    -------
    w_addr, w_data, w_en : In
        Writes entry ``w_addr`` when ``w_en`` is high.
    r_addr, r_en : In
        Reads entries ``r_addr .. r_addr + lanes - 1`` when ``r_en`` is high.
    r{q}_data : Out(shape)
        Entry ``r_addr + q`` of the last enabled read (one cycle of latency; held while
        ``r_en`` is low; a read and a write of the same entry in one cycle returns the
        old entry). Addresses past ``depth`` wrap inside the banks; callers check ranges.
    """

    def __init__(self, shape, *, depth, lanes):
        _check_positive("depth", depth, "Buffer depth")
        _check_positive("lanes", lanes, "Lane count")
        self._shape = shape
        self._lanes = lanes
        self._banks = entry_banks(lanes)
        self._rows = -(-depth // self._banks)
        members = {"w_addr": In(range(max(depth, 2))), "w_data": In(shape), "w_en": In(1),
                   "r_addr": In(range(max(depth, 2))), "r_en": In(1)}
        for q in range(lanes):
            members[f"r{q}_data"] = Out(shape)
        super().__init__(members)

    @property
    def banks(self):
        return self._banks

    @property
    def lanes(self):
        return self._lanes

    def read_data(self, q):
        return getattr(self, f"r{q}_data")

    def elaborate(self, platform):
        m = Module()
        n = self._banks
        lg = exact_log2(n)
        rows = max(self._rows, 2)
        # block RAM even when a bank is a few words deep: PBUF is the core's
        # quantization parameter store, counted as block RAM by the resource model
        mems = [Memory(shape=self._shape, depth=rows, init=[],
                       attrs={"ram_style": "block"}) for _ in range(n)]
        for j, mem in enumerate(mems):
            m.submodules[f"bank{j}"] = mem
        offset = Signal(max(lg, 1))
        with m.If(self.r_en):
            m.d.sync += offset.eq(self.r_addr[:lg] if lg else 0)
        row = Signal(range(rows))
        row_next = Signal(range(rows + 1))
        m.d.comb += [row.eq(self.r_addr >> lg), row_next.eq(row + 1)]
        outs = []
        for j, mem in enumerate(mems):
            wp = mem.write_port()
            rp = mem.read_port()
            m.d.comb += [
                wp.addr.eq(self.w_addr >> lg),
                wp.data.eq(self.w_data),
                wp.en.eq(self.w_en & ((self.w_addr[:lg] == j) if lg else 1)),
                # the banks below the address's offset hold the next row's entries
                rp.addr.eq(Mux(self.r_addr[:lg] > j, row_next, row) if lg else row),
                rp.en.eq(self.r_en),
            ]
            outs.append(rp.data)
        for q in range(self._lanes):
            data_ = self.read_data(q)
            if lg:
                bank = Signal(lg, name=f"r{q}_bank")
                m.d.comb += bank.eq(offset + q)
                with m.Switch(bank):
                    for j in range(n):
                        with m.Case(j):
                            m.d.comb += data_.eq(outs[j])
            else:
                m.d.comb += data_.eq(outs[0])
        return m


class LaneStager(wiring.Component):
    """Per-lane staging of narrow writes into runs for one wide buffer write port.

    ``lanes`` writers each write one element (``elem`` bytes) per cycle at their own
    address; consecutive writes of a lane usually continue its run (an output channel
    plane in raster order). Each lane gathers its run in a register of ``width`` bytes;
    a full run, a write that does not continue the run, or ``flush`` moves it to one of
    the lane's two pending registers, and one pending run per cycle (lowest lane first,
    each lane's in order) goes out
    on the single write port ``w_*`` (``width`` bytes, any alignment, as a
    :class:`ByteBuffer` write port takes it). The buffer then needs one write port
    instead of one per lane.

    With ``lanes * elem <= width`` a lane's run fills at most once every
    ``width / elem`` writes and every pending run leaves within ``lanes`` cycles, so the
    writers are held (``ready`` low) only when runs are cut short.

    Members
    -------
    l{q}_addr, l{q}_data, l{q}_en : In
        Lane ``q``'s write (byte address, element, enable). Writes happen only while
        ``ready`` is high.
    ready : Out(1)
        Every lane can take a write, at any address: no lane holds two pending runs. A
        register, so that nothing the writers present reaches it in the same cycle.
    flush : In(1)
        Move the gathered runs to the write port (level; hold it until ``busy`` drops).
    busy : Out(1)
        Some bytes are not yet written.
    w_addr, w_data, w_count : Out
        The write port (``w_count`` bytes from ``w_addr``; 0 writes nothing).
    """

    def __init__(self, *, lanes, elem, width, size):
        _check_positive("lanes", lanes, "Lane count")
        _check_positive("elem", elem, "Element bytes")
        _check_positive("width", width, "Run width")
        if width % elem:
            raise ValueError(f"Run width {width} must be a multiple of the element bytes "
                             f"{elem}")
        self._lanes, self._elem, self._width, self._size = lanes, elem, width, size
        members = {"ready": Out(1), "flush": In(1), "busy": Out(1),
                   "w_addr": Out(range(max(size, 2))), "w_data": Out(8 * width),
                   "w_count": Out(range(width + 1))}
        for q in range(lanes):
            members[f"l{q}_addr"] = In(range(max(size, 2)))
            members[f"l{q}_data"] = In(8 * elem)
            members[f"l{q}_en"] = In(1)
        super().__init__(members)

    def lane(self, q):
        """``(addr, data, en)`` of lane ``q``."""
        return tuple(getattr(self, f"l{q}_{n}") for n in ("addr", "data", "en"))

    def elaborate(self, platform):
        m = Module()
        L, e, n = self._lanes, self._elem, self._width
        abits = len(self.w_addr)
        slots = n // e

        def run(name):
            return (Signal(name=f"{name}_v"), Signal(abits, name=f"{name}_addr"),
                    Signal(range(n + 1), name=f"{name}_cnt"), Signal(8 * n, name=f"{name}_data"))

        curs = [run(f"cur{q}") for q in range(L)]
        heads = [run(f"pend{q}") for q in range(L)]    # a lane's next run to leave
        tails = [run(f"pend{q}b") for q in range(L)]   # and the one behind it

        # Arbiter: the lowest lane with a pending run writes.
        grant = [Signal(name=f"grant{q}") for q in range(L)]
        taken = Const(0, 1)
        for q in range(L):
            m.d.comb += grant[q].eq(heads[q][0] & ~taken)
            taken = taken | heads[q][0]
        for q in range(L):
            with m.If(grant[q]):
                m.d.comb += [self.w_addr.eq(heads[q][1]), self.w_data.eq(heads[q][3]),
                             self.w_count.eq(heads[q][2])]

        # ``ready`` is a register: high when no lane holds two pending runs, so that any
        # write, continuing its lane's run or not, finds the pending slot it may need
        # (a run that is cut moves there). It depends on nothing the writers present in
        # its cycle.
        ready = Signal(init=1)
        full_next = []
        busy = Const(0, 1)
        for q in range(L):
            addr, data, en = self.lane(q)
            cv, ca, cc, cd = curs[q]
            hv, ha, hc, hd = heads[q]
            tv, ta, tc, td = tails[q]
            busy = busy | cv | hv
            contig = Signal(name=f"contig{q}")
            # the run's next address (``ca + cc``) and whether it has room for another
            # element (``cc <= n - e``), registers kept with the run: a write continues
            # it on one compare with a register
            c_end = Signal(abits, name=f"cur{q}_end")
            room = Signal(name=f"cur{q}_room")
            m.d.comb += contig.eq(cv & ~self.flush & room & (addr == c_end))
            write = en & ready
            pop = grant[q]
            # a run moves to a free pending slot (with ``ready`` high there always is one)
            move = Signal(name=f"move{q}")
            m.d.comb += move.eq(cv & ~tv & (self.flush | ~room | (write & ~contig)))
            with m.If(pop):
                # the head leaves; the run behind it, or the one moving now, takes its place
                m.d.sync += [hv.eq(tv | move), tv.eq(0)]
                with m.If(tv):
                    m.d.sync += [ha.eq(ta), hc.eq(tc), hd.eq(td)]
                with m.Else():
                    m.d.sync += [ha.eq(ca), hc.eq(cc), hd.eq(cd)]
            with m.Elif(move):
                with m.If(hv):
                    m.d.sync += [tv.eq(1), ta.eq(ca), tc.eq(cc), td.eq(cd)]
                with m.Else():
                    m.d.sync += [hv.eq(1), ha.eq(ca), hc.eq(cc), hd.eq(cd)]
            with m.If(move):
                m.d.sync += cv.eq(0)
            # two pending runs after this cycle
            full_next.append(~pop & ((move & hv) | tv))
            with m.If(write):
                with m.If(contig):
                    m.d.sync += [cc.eq(cc + e), c_end.eq(c_end + e), room.eq(cc <= n - 2 * e)]
                    with m.Switch(cc):
                        for s in range(slots):
                            with m.Case(s * e):
                                m.d.sync += cd[8 * e * s:8 * e * (s + 1)].eq(data)
                with m.Else():
                    m.d.sync += [cv.eq(1), ca.eq(addr), cc.eq(e), cd[:8 * e].eq(data),
                                 c_end.eq(addr + e), room.eq(2 * e <= n)]
        m.d.sync += ready.eq(~Cat(*full_next).any())
        m.d.comb += [self.ready.eq(ready), self.busy.eq(busy)]
        return m


class LaneFetcher(wiring.Component):
    """Narrow read lanes served by one wide buffer read port (the reverse of
    :class:`LaneStager`).

    ``lanes`` readers each read one element (``widths[q]`` bytes) per cycle at their own
    address; consecutive reads of a lane usually continue its run (a channel plane in
    raster order). Each lane keeps a run register of ``width`` bytes (``cur``) filled by
    one ``width``-byte read of the buffer at the lane's address, and, with ``prefetch``,
    a second one (``nxt``) filled ahead with the ``width`` bytes that follow ``cur``. A
    read that falls inside ``cur`` or ``nxt`` is served from the register; one that does
    not holds every lane (``ready`` low) while the lanes that miss are refilled, one
    wide read per cycle, the lowest missing lane first, then the prefetches, the lowest
    lane first. The buffer then needs one read port instead of one per lane.

    With ``lanes`` readers moving through consecutive elements together, a run lasts
    ``width / elem`` reads and the lanes' prefetches take ``lanes + 2`` cycles, so with
    ``width >= (lanes + 2) * elem`` only a jump (a read outside both registers) stalls:
    the lanes that miss take one cycle each, plus one (the last read lands).

    Members
    -------
    l{q}_addr, l{q}_en : In
        Lane ``q``'s read: byte address of its first byte and whether it reads this
        cycle. The read happens only while ``ready`` is high; the caller holds it
        (address and enable) while ``ready`` is low, and ``en`` may not depend on
        ``ready``.
    l{q}_data : Out(8 * widths[q])
        The element of the lane's last read (one cycle of latency, held until the next).
    ready : Out(1)
        Every enabled lane can read at the address it presents this cycle; with
        ``eager``, every armed lane (an enabled lane is armed), so that ``ready`` does
        not depend on the enables: a reader's back-pressure, which holds ``en`` low,
        has no path through ``ready`` into its own or another reader's counters.
    clear : In(1)
        Forget the registers after this cycle (a new instruction: the buffer may have
        been written; or a jump, so that the next reads miss on every lane). The reads of
        the cycle are still served.
    sequential : In(1)
        Prefetch (default high; only with ``prefetch``): low for lanes that do not read
        consecutive elements, which then refill on a miss only.
    packed : In(1) (only with ``pack``)
        Lane 0 reads the elements of lanes ``0 .. pack - 1`` (``widths[0]`` bytes from its
        address, ``pack`` times theirs) and those lanes take theirs from it (the caller
        keeps their enables equal to lane 0's; they make no reads of their own): lanes that
        read consecutive elements, one run for all of them.
    l{q}_armed : In(1) (only with ``eager``)
        The lane's address is where it reads next (it may not depend on ``ready``; a
        lane reads only while armed). A lane that is armed and misses is refilled
        whether or not it reads in that cycle, so that the refill's arbitration and
        read address do not wait on ``en`` (a reader's back-pressure, typically). An
        eager fetcher also registers its read address and enable: a refill lands two
        cycles after it is granted instead of one, and no path runs from the lanes'
        addresses through the hit checks and the arbitration into the buffer's banks.
    relocate, l{q}_adv : In (only with ``lookahead``)
        With ``lookahead`` the fetcher's ``ready`` comes from registers: in each cycle it
        checks, for every lane, the address the lane presents in the next cycle if it
        reads in this one (``l{q}_adv``) and if it does not (its address now) against
        the runs as they will be then (a read that lands, the runs that a move or a
        refill frees, ``clear``), and registers both; ``ready`` is one multiplexer per
        lane (did it read?) and the AND of the lanes, no hit check and no address in its
        path; the run the element is selected from is chosen the same way (the
        select within a run is the lane address's low bits), and so is each lane's
        miss for the refill arbitration (no compare between the lanes' addresses and
        the buffer's read address). The lanes' addresses must follow that rule: after a
        cycle in which a lane reads, its address is the ``l{q}_adv`` of that cycle, else
        the same (``l{q}_alt`` instead of ``l{q}_adv`` in a cycle with ``l{q}_alt_sel``
        high), except after a cycle with ``relocate`` high (the addresses change
        without a read), when every lane reads as missing for a cycle; ``packed`` may
        change only while the runs are empty (from the cycle after a ``clear`` until a
        read lands). Requires ``eager``. With every ``relocate`` while the runs are
        empty (with a ``clear`` in the same cycle, or after one and no refill since, as
        the engine units do) ``ready`` and the reads are then the same in every cycle as
        without ``lookahead``; otherwise a lane whose new address hits a run waits a
        cycle and is refilled once more, with the same bytes.
    l{q}_alt, l{q}_alt_sel : In (only with ``lookahead``)
        A second address after a read (where a lane moves at a row's end, say) and its
        select (default low: ``l{q}_adv`` only). Both addresses are checked against the
        runs and the select chooses between the results, so that the select (a column
        flag, typically) is not in front of the address compares.
    jump, l{q}_next : In (only with ``jumps``)
        With ``jump`` high a lane's prefetch reads its ``width`` bytes from ``l{q}_next``
        (where the lane goes after the elements in ``cur``: the next tile's first
        element) instead of those after ``cur``; the lane moves there when a read misses
        ``cur`` and falls in ``nxt``.
    r_addr, r_en : Out; r_data : In(8 * width)
        The buffer's read port: a :class:`ByteBuffer` of ``width`` banks with
        ``raw_reads`` (the ``width`` bytes from ``r_addr``, any alignment, in bank order,
        ``1 + read_stages`` cycles of latency). A run register holds the read as it comes
        from the banks, and a lane's element is selected from it by its address's low bits
        (:func:`bank_select`): no rotation between the banks and the runs.
        ``r_addr`` is 0 while ``r_en`` is low, so that readers taking turns at one
        buffer port can be combined by an OR.
    read_stages : int
        The buffer's read register stages (:class:`ByteBuffer`): each adds a cycle
        between a refill's grant and its landing, through one more in-flight stage.
    """

    def __init__(self, *, widths, width, size, prefetch=True, jumps=False, pack=0,
                 eager=False, lookahead=False, read_stages=0):
        if not isinstance(widths, (list, tuple)) or not widths:
            raise TypeError(f"Lane widths must be a non-empty list of integers, not {widths!r}")
        _check_positive("width", width, "Run width")
        if width & (width - 1):
            raise ValueError(f"Run width must be a power of two (the buffer's banks), "
                             f"not {width!r}")
        for w in widths:
            _check_positive("width", w, "Lane width")
            if w > width:
                raise ValueError(f"Lane width {w} exceeds the run width {width}")
        self._widths = list(widths)
        self._width = width
        self._size = size
        self._prefetch = bool(prefetch)
        self._jumps = bool(jumps)
        if self._jumps and not self._prefetch:
            raise ValueError("A fetcher prefetches jumps only with prefetch=True")
        if not isinstance(pack, int) or isinstance(pack, bool) or not 0 <= pack <= len(widths):
            raise ValueError(f"Packed lanes must be an integer from 0 to the lanes, not {pack!r}")
        if pack > 1 and (widths[0] % pack
                         or any(w != widths[0] // pack for w in widths[1:pack])):
            raise ValueError(f"Lane 0 packs {pack} lanes: its width {widths[0]} must be "
                             f"{pack} times theirs, {widths[1:pack]}")
        self._pack = pack if pack > 1 else 0
        self._eager = bool(eager)
        self._lookahead = bool(lookahead)
        if self._lookahead and not self._eager:
            raise ValueError("A fetcher looks ahead only with eager=True (registered reads)")
        if not isinstance(read_stages, int) or isinstance(read_stages, bool) or read_stages < 0:
            raise ValueError(f"Read stages must be a non-negative integer, not {read_stages!r}")
        self._read_stages = read_stages
        members = {"ready": Out(1), "clear": In(1), "sequential": In(1, init=1),
                   "r_addr": Out(range(max(size, 2))), "r_en": Out(1),
                   "r_data": In(8 * width)}
        if self._jumps:
            members["jump"] = In(1)
        if self._pack:
            members["packed"] = In(1)
        if self._lookahead:
            members["relocate"] = In(1)
        for q, w in enumerate(self._widths):
            members[f"l{q}_addr"] = In(range(max(size, 2)))
            members[f"l{q}_en"] = In(1)
            members[f"l{q}_data"] = Out(8 * w)
            if self._eager:
                members[f"l{q}_armed"] = In(1)
            if self._jumps:
                members[f"l{q}_next"] = In(range(max(size, 2)))
            if self._lookahead:
                members[f"l{q}_adv"] = In(range(max(size, 2)))
                members[f"l{q}_alt"] = In(range(max(size, 2)))
                members[f"l{q}_alt_sel"] = In(1)
        super().__init__(members)

    @property
    def lanes(self):
        return len(self._widths)

    def lane(self, q):
        """``(addr, en, data)`` of lane ``q`` (the shape of a :class:`ByteBuffer` read
        port)."""
        return tuple(getattr(self, f"l{q}_{n}") for n in ("addr", "en", "data"))

    def lane_armed(self, q):
        """Lane ``q``'s ``armed`` input (``eager`` only)."""
        return getattr(self, f"l{q}_armed")

    def lane_next(self, q):
        """Lane ``q``'s prefetch address after a jump (``jumps`` only)."""
        return getattr(self, f"l{q}_next")

    def lane_adv(self, q):
        """Lane ``q``'s address after a read (``lookahead`` only)."""
        return getattr(self, f"l{q}_adv")

    def lane_alt(self, q):
        """``(alt, alt_sel)``: lane ``q``'s other address after a read and whether it
        applies (``lookahead`` only)."""
        return getattr(self, f"l{q}_alt"), getattr(self, f"l{q}_alt_sel")

    def elaborate(self, platform):
        m = Module()
        n = self._width
        abits = len(self.r_addr)
        obits = max(ceil_log2(n), 1)
        L = self.lanes

        K = self._pack

        def run(name, q):
            """(valid, base, data, limits): ``limits`` are the last addresses at which
            lane ``q`` finds its element in the run (``base + width - w``; for a
            packing lane 0 also that of the packed read), set when the run lands, so
            that a hit is two compares of the address instead of a subtraction and a
            compare."""
            widths = [self._widths[q]] + ([self._widths[q] // K] if q == 0 and K else [])
            limits = [(Signal(abits + 1, name=f"{name}_lim{k}"), n - w)
                      for k, w in enumerate(widths)]
            return (Signal(name=f"{name}_v"), Signal(abits, name=f"{name}_base"),
                    Signal(8 * n, name=f"{name}_data"), limits)

        # With ``prefetch`` each lane has two run slots and a bit naming the one that is
        # ``cur`` (the other is ``nxt``): moving into the prefetched run flips the bit
        # instead of copying a run, so the slots load only when a read lands (their
        # enables come from registers, not from ``ready``).
        if self._prefetch:
            slots = [(run(f"s0_{q}", q), run(f"s1_{q}", q)) for q in range(L)]
            cur_is1 = [Signal(name=f"cur_is1_{q}") for q in range(L)]
        else:
            slots = [(run(f"cur{q}", q),) for q in range(L)]

        fill_lims = {}   # the landing read's limits by span, when registered

        def fill(reg, base, data_):
            """Statements that load run ``reg`` with ``width`` bytes read at ``base``."""
            return ([reg[0].eq(1), reg[1].eq(base), reg[2].eq(data_)]
                    + [lim.eq(fill_lims.get(span, base + span)) for lim, span in reg[3]])

        def on_slot(q, which, stmts):
            """Apply ``stmts(slot)`` to lane ``q``'s slot ``which`` (a 1-bit value:
            1 for slot 1; prefetching lanes only)."""
            with m.If(which):
                m.d.sync += stmts(slots[q][1])
            with m.Else():
                m.d.sync += stmts(slots[q][0])
        pend = [Signal(name=f"pend{q}") for q in range(L)]
        # ``clear`` acts through a register: in the cycle after it every run reads as
        # empty and no read is pending or lands, and the registers reset at its end. The
        # lanes see the same as if they had reset at the end of the ``clear`` cycle, but
        # ``clear`` (an instruction's start or a tile's last read among its causes) fans
        # out to the run registers from a flip-flop.
        forget = Signal()
        m.d.sync += forget.eq(self.clear)
        pending = [Signal(name=f"pending{q}") for q in range(L)]
        m.d.comb += [p_.eq(p & ~forget) for p_, p in zip(pending, pend)]

        # The read in flight: lane, target register (1: nxt) and base.
        fl_v = Signal()
        fl_lane = Signal(range(max(L, 2)))
        fl_nxt = Signal()
        fl_base = Signal(abits)

        packed = self.packed if K else Const(0, 1)

        def inside(q, a, base, limits):
            """Lane ``q``'s element at address ``a`` lies in the run at ``base`` with
            ``limits`` (lane 0 reads its own element, or with ``packed`` those of lanes
            0..K-1)."""
            within = [a <= lim for lim, _ in limits]
            if q == 0 and K:
                return (a >= base) & Mux(packed, within[0], within[1])
            return (a >= base) & within[0]

        def lookup(q, reg):
            """Whether lane ``q``'s address hits run ``reg``."""
            addr, _, _ = self.lane(q)
            v, base, _, limits = reg
            hit = Signal(name=f"hit{q}_{reg[0].name}")
            m.d.comb += hit.eq(v & ~forget & inside(q, addr, base, limits))
            return hit

        ok = []
        miss = []
        want_pre = []
        lane_state = []  # per lane, for ``lookahead``: enables, hits, selects
        seen = []        # per lane, for ``lookahead``: its hit, driven by ``_look_ahead``
        wide0 = None     # lane 0's read, all packed lanes' elements
        for q in range(L):
            _, en, data_ = self.lane(q)
            raw_en = en
            w = self._widths[q]
            # what a miss refills: the lane's read, or with ``eager`` its next one
            want = self.lane_armed(q) if self._eager else en
            if 0 < q < K:
                # packed into lane 0: never reads on its own while ``packed``
                en = en & ~packed
                want = want & ~packed
            looked = [lookup(q, slot) for slot in slots[q]]
            hit = Signal(name=f"hit{q}")
            if self._lookahead:
                # the look-ahead's registered hit (``_look_ahead``): no compare between
                # the lane's address and the refill arbitration
                seen.append(hit)
            else:
                m.d.comb += hit.eq(Cat(*looked).any())
            if self._prefetch:
                c = cur_is1[q]
                h0, h1 = looked
                hit_c = Mux(c, h1, h0)
                # the element from ``cur`` when it holds it, else from ``nxt``
                use1 = Signal(name=f"use1_{q}")
                if not self._lookahead:
                    m.d.comb += use1.eq(Mux(c, h1, ~h0))
                cur_v = Mux(c, slots[q][1][0], slots[q][0][0]) & ~forget
                nxt_v = Mux(c, slots[q][0][0], slots[q][1][0]) & ~forget
            # ``ready`` looks at the lanes that may read (armed, with ``eager``), not at
            # their enables: no path from a reader's back-pressure into ``ready``
            ok.append(~want | hit)
            ms = Signal(name=f"miss{q}")
            m.d.comb += ms.eq(want & ~hit & ~pending[q])
            miss.append(ms)
            if self._prefetch:
                pr = Signal(name=f"pre{q}")
                m.d.comb += pr.eq(self.sequential & cur_v & ~nxt_v & ~pending[q] & ~ms)
                want_pre.append(pr)
            # The lane's read: the element from whichever register holds it.
            take = en & self.ready
            # each run's element at the lane's address, selected in parallel with the
            # hit checks; then the one from the run that holds it
            picks = [Signal(8 * w, name=f"pick{q}_{k}") for k in range(len(slots[q]))]
            # the element's first bank in either run: the address's low bits (the lane's
            # address is a register); with the look-ahead the run that holds it is
            # chosen a cycle early (``_look_ahead``)
            sel = self.lane(q)[0][:obits]
            lane_state.append((want, raw_en, looked, hit_c if self._prefetch else None,
                               use1 if self._prefetch else None))
            for pick, slot in zip(picks, slots[q]):
                m.d.comb += pick.eq(bank_select(slot[2], n, sel, w))
            elem = Signal(8 * w, name=f"elem{q}")
            m.d.comb += elem.eq(Mux(use1, picks[1], picks[0]) if self._prefetch else picks[0])
            if 0 < q < K:
                with m.If(packed & self.lane(0)[1] & self.ready):
                    m.d.sync += data_.eq(wide0[8 * w * q:8 * w * (q + 1)])
            if q == 0:
                wide0 = elem
            with m.If(take):
                m.d.sync += data_.eq(elem)
                if self._prefetch:
                    with m.If(~hit_c):
                        # the lane moved into the prefetched run: it becomes ``cur``,
                        # the old ``cur`` the free ``nxt``
                        m.d.sync += c.eq(~c)
                        on_slot(q, c, lambda slot: [slot[0].eq(0)])
        if not self._lookahead:
            m.d.comb += self.ready.eq(Cat(*ok).all())

        # Arbiter: the lowest missing lane, else the lowest lane to prefetch.
        granted = Const(0, 1)
        grants = []
        for q in range(L):
            g = Signal(name=f"grant{q}")
            m.d.comb += g.eq(miss[q] & ~granted)
            granted = granted | miss[q]
            grants.append((g, q, 0))
        if self._prefetch:
            for q in range(L):
                g = Signal(name=f"grant_pre{q}")
                m.d.comb += g.eq(want_pre[q] & ~granted)
                granted = granted | want_pre[q]
                grants.append((g, q, 1))
        # A read granted in a ``clear`` cycle still reaches the buffer but lands in the
        # cycle after, which drops it. The reset comes first: a lane granted in that cycle
        # is pending from its end.
        with m.If(forget):
            m.d.sync += [p.eq(0) for p in pend]
            m.d.sync += [slot[0].eq(0) for lane in slots for slot in lane]
        # An eager fetcher registers the read (address and enable): it reaches the
        # buffer in the cycle after the grant and lands a cycle later, through a second
        # in-flight stage.
        r_domain = m.d.sync if self._eager else m.d.comb
        r_domain += [self.r_en.eq(granted), self.r_addr.eq(0)]
        m.d.sync += fl_v.eq(granted)
        for g, q, to_nxt in grants:
            with m.If(g):
                if to_nxt:
                    cur_base = Mux(cur_is1[q], slots[q][1][1], slots[q][0][1])
                    base = (cur_base + n)[:abits]
                else:
                    base = self.lane(q)[0]
                if to_nxt and self._jumps:
                    base = Mux(self.jump, getattr(self, f"l{q}_next"), base)
                r_domain += self.r_addr.eq(base)
                m.d.sync += [fl_lane.eq(q), fl_nxt.eq(to_nxt), fl_base.eq(base),
                             pend[q].eq(1)]
        # An eager fetcher's read reaches the buffer in the cycle after the grant, and
        # each of the buffer's read stages delays it a cycle more: one more in-flight
        # stage each; the read lands from the last.
        fl2_lims = None
        for k in range(int(self._eager) + self._read_stages):
            st_v = Signal(name=f"fl{k + 2}_v")
            st_lane = Signal.like(fl_lane, name=f"fl{k + 2}_lane")
            st_nxt = Signal(name=f"fl{k + 2}_nxt")
            st_base = Signal.like(fl_base, name=f"fl{k + 2}_base")
            m.d.sync += [st_v.eq(fl_v & ~forget), st_lane.eq(fl_lane), st_nxt.eq(fl_nxt),
                         st_base.eq(fl_base)]
            fl_v, fl_lane, fl_nxt, fl_base, prev_base = st_v, st_lane, st_nxt, st_base, fl_base
        if self._lookahead:
            # the landing run's limits (``base + width - w`` for each lane width ``w``),
            # registered with its base for the look-ahead's hit checks (and the runs')
            spans = sorted({span for q in range(L) for _, span in slots[q][0][3]})
            fl2_lims = {span: Signal(abits + 1, name=f"fl_lim{span}") for span in spans}
            m.d.sync += [lim.eq(prev_base + span) for span, lim in fl2_lims.items()]
            fill_lims.update(fl2_lims)

        # The read lands: into the lane's run register.
        with m.If(fl_v & ~forget):
            for q in range(L):
                with m.If(fl_lane == q):
                    m.d.sync += pend[q].eq(0)
                    if self._prefetch:
                        c = cur_is1[q]
                        with m.If(fl_nxt):
                            on_slot(q, ~c, lambda slot: fill(slot, fl_base, self.r_data))
                        with m.Else():
                            on_slot(q, c, lambda slot: fill(slot, fl_base, self.r_data))
                            on_slot(q, ~c, lambda slot: [slot[0].eq(0)])
                    else:
                        m.d.sync += fill(slots[q][0], fl_base, self.r_data)

        if self._lookahead:
            self._look_ahead(m, slots, cur_is1 if self._prefetch else None, lane_state,
                             inside, forget, fl_v & ~forget, fl_lane, fl_nxt,
                             fl_base, fl2_lims, seen)
        return m

    def _look_ahead(self, m, slots, cur_is1, lane_state, inside, forget, lands,
                    fl_lane, fl_nxt, fl_base, fl_lims, seen):
        """``ready`` from registers: each lane's hit in the next cycle, at the address it
        then presents (``l{q}_adv`` if it reads now, else its address now) in the runs
        as they will be (those that survive this cycle's move and landing, and the run
        that lands), checked a cycle early for both addresses; with it the run the
        element comes from (the element select's control). ``seen[q]`` gets lane ``q``'s
        hit: its ``ready`` term and, for the refill arbitration, its miss.
        ``inside(q, a, base, limits)``: the hit check of :meth:`elaborate`."""
        oks = []
        for q, (want, raw_en, hits, hit_c, use1) in enumerate(lane_state):
            land = Signal(name=f"ahead_land{q}")
            m.d.comb += land.eq(lands & (fl_lane == q))
            # runs whose contents are gone at the end of the cycle: replaced or freed by
            # the landing read (into ``nxt``: the ``nxt`` slot; into ``cur``: both), or,
            # after a read (the address-after-a-read case: no ``take``, so nothing from
            # the readers' back-pressure reaches these registers), the old ``cur`` that a
            # read moving into ``nxt`` frees. (A packed lane reads through lane 0: its own
            # checks are not used while packed.) ``target``: the slot the landing read
            # fills (physical index: ``nxt`` or ``cur``).
            if cur_is1 is not None:
                c = cur_is1[q]
                is_cur = [~c, c]
                gone_land = [land & (~fl_nxt | ~is_cur[k]) for k in range(2)]
                gone_read = [gone_land[k] | (~hit_c & is_cur[k]) for k in range(2)]
                target = [~(c ^ fl_nxt), c ^ fl_nxt]
            else:
                gone_land = gone_read = [land]
                target = [Const(1, 1)]
            fill_limits = [(fl_lims[span], span) for _, span in slots[q][0][3]]
            addr, adv = self.lane(q)[0], self.lane_adv(q)
            keep = ~self.clear & ~self.relocate
            took = Signal(name=f"ahead_took{q}")
            took_now = raw_en & self.ready
            m.d.sync += took.eq(took_now)
            alt, alt_sel = self.lane_alt(q)

            # per slot, whether each address hits it in the next cycle: the address
            # now, the one after a read and its alternate
            per = {}
            for cand, a, now, gone in (("hold", addr, hits, gone_land),
                                       ("adv", adv, None, gone_read),
                                       ("alt", alt, None, gone_read)):
                in_fill = land & inside(q, a, fl_base, fill_limits)
                per[cand] = []
                for k, (slot, g) in enumerate(zip(slots[q], gone)):
                    here = (now[k] if now is not None
                            else slot[0] & ~forget & inside(q, a, slot[1], slot[3]))
                    per[cand].append((here & ~g) | (in_fill & target[k]))
            picked = {}
            for cand, now in (("hold", hits), ("adv", None)):
                # both addresses after a read are checked; the select follows
                per_slot = (per[cand] if cand == "hold" else
                            [Mux(alt_sel, h_alt, h_adv)
                             for h_adv, h_alt in zip(per["adv"], per["alt"])])
                hit_r = Signal(name=f"ahead_{cand}{q}")
                m.d.sync += hit_r.eq(keep & Cat(*per_slot).any())
                use1_d = None
                if cur_is1 is not None:
                    # ``cur`` then: flipped by a read that moves into ``nxt``
                    c_next = c if now is not None else c ^ ~hit_c
                    use1_d = Mux(c_next, per_slot[1], ~per_slot[0])
                picked[cand] = (hit_r, use1_d)
            (hit_hold, use1_hold), (hit_moved, use1_moved) = (
                picked["hold"], picked["adv"])
            if use1 is not None:
                # the element select is a register of its own: it drives every bit of
                # the lane's element multiplexer, with no select between the candidates
                # on that path (the choice is made before the edge, by this cycle's read)
                use1_r = Signal(name=f"ahead{q}_use1")
                m.d.sync += use1_r.eq(Mux(took_now, use1_moved, use1_hold))
                m.d.comb += use1.eq(use1_r)
            m.d.comb += seen[q].eq(Mux(took, hit_moved, hit_hold))
            oks.append(~want | seen[q])
        m.d.comb += self.ready.eq(Cat(*oks).all())
