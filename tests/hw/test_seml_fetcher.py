# amaranth: UnusedElaboratable=no
"""Narrow read lanes over one wide buffer read port (LaneFetcher in front of a
ByteBuffer) against a byte-array model: every read returns the bytes at its address,
whatever the runs' alignment, jumps, idle lanes and clears; lanes moving through
consecutive elements together stall only at jumps."""

import random

import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from hw.seml.buffers import ByteBuffer, LaneFetcher


def _fetcher_over_buffer(size, width, read_stages=0, **fetcher_args):
    """A LaneFetcher wired to the one read port of a ``width``-bank ByteBuffer (with
    ``read_stages`` read register stages, both told), and a testbench step that fills
    the buffer with ``image`` through its write port."""
    buf = ByteBuffer(size, banks=width, read_widths=[width], write_widths=[width],
                     raw_reads=True, read_stages=read_stages)
    fetch = LaneFetcher(width=width, size=size, read_stages=read_stages, **fetcher_args)
    m = Module()
    m.submodules.buf = buf
    m.submodules.fetch = fetch
    m.d.comb += [buf.r0_addr.eq(fetch.r_addr), buf.r0_en.eq(fetch.r_en),
                 fetch.r_data.eq(buf.r0_data)]

    async def fill(ctx, image):
        for a in range(0, size, width):
            ctx.set(buf.w0_addr, a)
            ctx.set(buf.w0_data, int.from_bytes(image[a:a + width], "little"))
            ctx.set(buf.w0_count, width)
            await ctx.tick()
        ctx.set(buf.w0_count, 0)

    return m, fetch, fill


def _run(widths, width, size, seed, *, prefetch=True, beats=300, step=None, jump=0.03,
         idle=0.2, clears=0.01, seq=1.0, eager=False, read_stages=0):
    rng = random.Random(seed)
    lanes = len(widths)
    image = bytes(rng.getrandbits(8) for _ in range(size))
    m, fetch, fill = _fetcher_over_buffer(size, width, widths=widths,
                                          prefetch=prefetch, eager=eager,
                                          read_stages=read_stages)
    stats = {"stalls": 0, "reads": 0, "jumps": 0, "wide": 0, "clears": 0}
    step = step or max(widths)

    async def bench(ctx):
        await fill(ctx, image)
        plane = size // lanes
        ptr = 0
        bases = [q * plane for q in range(lanes)]
        on = [True] * lanes
        sent = 0
        while sent < beats:
            clear = rng.random() < clears
            stats["clears"] += clear
            if rng.random() < jump:
                ptr = 0
                stats["jumps"] += 1
                bases = [q * plane + rng.randrange(0, plane // 2) for q in range(lanes)]
                on = [rng.random() < 0.85 for _ in range(lanes)]
            want = rng.random() >= idle
            addrs = [(bases[q] + ptr) % (size - widths[q] + 1) for q in range(lanes)]
            for q in range(lanes):
                a, en, _ = fetch.lane(q)
                ctx.set(a, addrs[q])
                ctx.set(en, want and on[q])
                if eager:
                    # an enabled lane's address is where it reads next, read or not
                    ctx.set(fetch.lane_armed(q), on[q])
            ctx.set(fetch.clear, clear)
            ctx.set(fetch.sequential, rng.random() < seq)
            await ctx.delay(1e-9)
            ready = ctx.get(fetch.ready)
            if eager:
                # ``ready`` of an eager fetcher follows the armed lanes, not the enables
                for q in range(lanes):
                    ctx.set(fetch.lane(q)[1], not (want and on[q]))
                await ctx.delay(1e-9)
                assert ctx.get(fetch.ready) == ready
                for q in range(lanes):
                    ctx.set(fetch.lane(q)[1], want and on[q])
                await ctx.delay(1e-9)
            if want and ready:
                read = [q for q in range(lanes) if on[q]]
                ptr += step
                sent += 1
                stats["reads"] += 1
            else:
                read = []
                if want:
                    stats["stalls"] += 1
            stats["wide"] += ctx.get(fetch.r_en)
            await ctx.tick()
            for q in read:
                got = ctx.get(fetch.lane(q)[2])
                expect = int.from_bytes(image[addrs[q]:addrs[q] + widths[q]], "little")
                assert got == expect, (q, addrs[q], hex(got), hex(expect))

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return stats


@pytest.mark.parametrize("eager,read_stages", [(False, 0), (True, 0), (True, 1), (False, 1),
                                               (True, 2)],
                         ids=["on-read", "eager", "eager-staged", "on-read-staged",
                              "eager-staged2"])
@pytest.mark.parametrize("widths,width,prefetch,seed", [
    ([1, 1, 1, 1], 8, True, 1), ([2, 2, 2], 8, True, 2), ([1] * 8, 16, True, 3),
    ([4, 4], 8, False, 4), ([1, 2, 4], 8, True, 5), ([8], 8, True, 6), ([1] * 5, 8, False, 7)])
def test_fetcher_reads_every_element(widths, width, prefetch, seed, eager, read_stages):
    stats = _run(widths, width, 512, seed, prefetch=prefetch, seq=0.8, eager=eager,
                 read_stages=read_stages)
    assert stats["reads"] == 300
    # one wide read serves width / step consecutive reads of a lane; jumps and clears
    # cost a refill (and a wasted prefetch) per lane
    step = max(widths)
    events = stats["jumps"] + stats["clears"] + 1
    bound = len(widths) * (stats["reads"] * step / width + 2 * events)
    assert stats["wide"] <= bound, stats


def test_fetcher_keeps_up_between_jumps():
    # width >= (lanes + 2) * elem: lanes reading consecutive elements together stall only
    # at jumps (lanes + 1 cycles each) and after clears.
    lanes = 6
    stats = _run([1] * lanes, 8, 1024, 8, beats=600, jump=0.02, idle=0.0, clears=0.0)
    assert stats["stalls"] <= (lanes + 1) * (stats["jumps"] + 1), stats


@pytest.mark.parametrize("lanes", [1, 3, 4])
def test_fetcher_stall_after_a_jump_is_lanes_plus_one(lanes):
    # One jump only (the start): exactly lanes + 1 stall cycles, then none.
    stats = _run([1] * lanes, 8, 1024, 9, beats=200, jump=0.0, idle=0.0,
                 clears=0.0)
    assert stats["stalls"] == lanes + 1, stats


@pytest.mark.parametrize("eager", [True, False], ids=["eager", "on-read"])
@pytest.mark.parametrize("prefetch", [False, True])
def test_eager_lanes_refill_while_the_reader_waits(prefetch, eager):
    # Lanes armed at a missing address refill whether or not they read: a reader that
    # holds back for ``lanes + 2`` cycles (one grant per lane; the last read, through the
    # registered read address, lands two cycles after its grant) finds its runs filled.
    # Lanes that read only on ``en`` refill after their first read is asked for.
    lanes = 3
    m, fetch, fill = _fetcher_over_buffer(64, 8, widths=[1] * lanes, prefetch=prefetch,
                                          eager=eager)
    stalls = []

    async def bench(ctx):
        await fill(ctx, bytes(range(64)))
        for q in range(lanes):
            ctx.set(fetch.lane(q)[0], 20 * q + 3)
            if eager:
                ctx.set(fetch.lane_armed(q), 1)
        for _ in range(lanes + 2):
            await ctx.tick()
        n = 0
        for q in range(lanes):
            ctx.set(fetch.lane(q)[1], 1)
        await ctx.delay(1e-9)
        while not ctx.get(fetch.ready):
            await ctx.tick()
            await ctx.delay(1e-9)
            n += 1
        await ctx.tick()
        assert [ctx.get(fetch.lane(q)[2]) for q in range(lanes)] == [
            20 * q + 3 for q in range(lanes)]
        stalls.append(n)

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert stalls == [0 if eager else lanes + 1]


def test_fetcher_parameters():
    with pytest.raises(ValueError, match=r"Lane width 16 exceeds the run width 8"):
        LaneFetcher(widths=[16], width=8, size=64)
    with pytest.raises(ValueError, match=r"Run width must be a power of two \(the buffer's "
                                         r"banks\), not 12"):
        LaneFetcher(widths=[1], width=12, size=64)
    with pytest.raises(TypeError, match=r"Lane widths must be a non-empty list"):
        LaneFetcher(widths=[], width=8, size=64)


@pytest.mark.parametrize("lanes,e,width,seed", [(4, 1, 16, 21), (3, 2, 16, 22), (8, 1, 32, 23)])
def test_fetcher_jumps_and_packed_lanes_read_every_element(lanes, e, width, seed):
    """Tiles of ``lanes`` channel planes (lane ``q`` reads plane ``t * lanes + q`` of tile
    ``t``): with ``jump`` each lane prefetches its next tile's plane (``l{q}_next``); with
    ``packed`` (one-element planes) lane 0 reads every lane's element. Every read returns
    the bytes at its address, and a jump-prefetched stream of planes that fit a run (or
    a packed one whose tiles are a whole number of a run's elements) stalls only at its
    first tile."""
    rng = random.Random(seed)
    size = 2048
    image = bytes(rng.getrandbits(8) for _ in range(size))
    widths = [lanes * e] + [e] * (lanes - 1)
    m, fetch, fill = _fetcher_over_buffer(size, width, widths=widths, jumps=True,
                                          pack=lanes)
    stalls = []

    async def bench(ctx):
        await fill(ctx, image)
        for job in range(12):
            mode = ("jump", "packed", "plain")[job % 3]
            pixels = 1 if mode == "packed" else rng.randint(lanes + 2, width // e)
            if mode == "jump":
                pixels = max(pixels, -(-width // (lanes * e)))
            plane = pixels * e
            tiles = rng.randint(2, 5)
            base = rng.randrange(0, size - tiles * lanes * plane)
            ctx.set(fetch.jump, mode == "jump")
            ctx.set(fetch.packed, mode == "packed")
            ctx.set(fetch.clear, 1)
            await ctx.tick()
            ctx.set(fetch.clear, 0)
            waits = 0
            for t in range(tiles):
                for k in range(pixels):
                    addrs = [base + (t * lanes + q) * plane + k * e for q in range(lanes)]
                    for q in range(lanes):
                        a, en, _ = fetch.lane(q)
                        ctx.set(a, addrs[q])
                        ctx.set(en, 1)
                        ctx.set(fetch.lane_next(q), base + ((t + 1) * lanes + q) * plane)
                    ctx.set(fetch.sequential, not (mode == "jump" and t == tiles - 1))
                    await ctx.delay(1e-9)
                    while not ctx.get(fetch.ready):
                        waits += t > 0
                        await ctx.tick()
                        await ctx.delay(1e-9)
                    await ctx.tick()
                    for q in range(lanes):
                        got = ctx.get(fetch.lane(q)[2]) & ((1 << (8 * e)) - 1)
                        expect = int.from_bytes(image[addrs[q]:addrs[q] + e], "little")
                        assert got == expect, (mode, t, k, q, hex(got), hex(expect))
                    if rng.random() < 0.1:   # an idle cycle
                        for q in range(lanes):
                            ctx.set(fetch.lane(q)[1], 0)
                        await ctx.tick()
            stalls.append((mode, waits))

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    # packed lanes stall only where a tile's elements straddle two runs
    aligned = width % (lanes * e) == 0
    assert all(w == 0 for mode, w in stalls if mode == "jump" or (mode, aligned) ==
               ("packed", True)), stalls


@pytest.mark.parametrize("widths,width,prefetch,jumps,pack,seed,read_stages", [
    ([1, 1, 1, 1], 8, True, False, 0, 31, 0), ([2, 2, 2], 8, True, False, 0, 32, 1),
    ([4, 4], 8, False, False, 0, 33, 0), ([1, 2, 4], 16, True, False, 0, 34, 1),
    ([1] * 6, 8, False, False, 0, 35, 1), ([4, 1, 1, 1], 16, True, True, 4, 36, 1),
    ([2, 2, 2], 16, True, True, 0, 37, 0), ([4, 1, 1, 1], 16, True, True, 4, 38, 0),
    ([4, 1, 1, 1], 16, True, True, 4, 39, 2), ([1, 2, 4], 16, True, False, 0, 40, 2)])
def test_lookahead_ready_equals_the_hit_checks(widths, width, prefetch, jumps, pack, seed,
                                               read_stages):
    """A fetcher with ``lookahead`` (``ready`` from registers, each lane's next hit checked
    a cycle early at the address it presents after a read, ``l{q}_adv`` or ``l{q}_alt``,
    and at its address now) beside one without, over the same buffer contents and inputs: seeded
    random steps, moves with a read (row ends, and back into the runs just left),
    relocations without one (with the runs cleared, as the engine units relocate), idle
    lanes, back-pressure, clears, jumps and packed lanes. ``ready`` and the buffer reads
    (the refill arbitration, from the look-ahead's hits) are the same in every cycle, and
    every read returns the bytes at its address."""
    rng = random.Random(seed)
    size = 1024
    lanes = len(widths)
    image = bytes(rng.getrandbits(8) for _ in range(size))
    args = {"widths": widths, "width": width, "size": size, "prefetch": prefetch,
            "jumps": jumps, "pack": pack, "eager": True, "read_stages": read_stages}
    m = Module()
    fetchers, fills = [], []
    for name, ahead in (("plain", False), ("ahead", True)):
        buf = ByteBuffer(size, banks=width, read_widths=[width], write_widths=[width],
                         raw_reads=True, read_stages=read_stages)
        fetch = LaneFetcher(**args, lookahead=ahead)
        m.submodules[f"buf_{name}"] = buf
        m.submodules[f"fetch_{name}"] = fetch
        m.d.comb += [buf.r0_addr.eq(fetch.r_addr), buf.r0_en.eq(fetch.r_en),
                     fetch.r_data.eq(buf.r0_data)]
        fetchers.append(fetch)
        fills.append(buf)
    plain, ahead = fetchers
    step = max(widths[1:] or widths)
    stats = {"reads": 0, "stalls": 0, "moves": 0, "relocations": 0, "refills": 0}

    def place():
        return [rng.randrange(0, size - 64) for _ in range(lanes)]

    async def bench(ctx):
        for a in range(0, size, width):
            for buf in fills:
                ctx.set(buf.w0_addr, a)
                ctx.set(buf.w0_data, int.from_bytes(image[a:a + width], "little"))
                ctx.set(buf.w0_count, width)
            await ctx.tick()
        for buf in fills:
            ctx.set(buf.w0_count, 0)
        addrs = place()
        on = [True] * lanes
        packed = next_packed = False
        for _ in range(1500):
            relocate = rng.random() < 0.02
            clear = rng.random() < 0.01 or relocate
            packed = next_packed
            if relocate and pack and clear:
                # (as in the engine units: packing changes only with the runs cleared)
                next_packed = rng.random() < 0.4
            want = rng.random() >= 0.25
            move = rng.random() < 0.08       # the next address after a read: elsewhere,
            moved = place()                  # or back into the runs just left
            if rng.random() < 0.5:
                moved = [max(0, a - rng.randrange(1, 2 * width)) for a in addrs]
            stepped = [(a + (widths[0] if packed and q == 0 else step)) % (size - 64)
                       for q, a in enumerate(addrs)]
            advs = stepped if not move else moved
            # a move comes through the second address after a read (``l{q}_alt``, the
            # stepped address still on ``l{q}_adv``) or through ``l{q}_adv`` itself; an
            # unselected second address is anywhere
            alt_sel = move and rng.random() < 0.7
            alts = moved if alt_sel else place()
            en = [want and on[q] for q in range(lanes)]
            sequential, jump = rng.random() < 0.9, rng.random() < 0.3
            if packed:
                en = [en[0]] * pack + en[pack:]
            for fetch in fetchers:
                for q in range(lanes):
                    a, e, _ = fetch.lane(q)
                    ctx.set(a, addrs[q])
                    ctx.set(e, en[q])
                    ctx.set(fetch.lane_armed(q), on[q])
                    if jumps:
                        ctx.set(fetch.lane_next(q), (addrs[q] + 3 * width) % (size - 64))
                ctx.set(fetch.clear, clear)
                ctx.set(fetch.sequential, sequential)
                if jumps:
                    ctx.set(fetch.jump, jump)
                if pack:
                    ctx.set(fetch.packed, packed)
            for q in range(lanes):
                alt, sel = ahead.lane_alt(q)
                ctx.set(ahead.lane_adv(q), stepped[q] if alt_sel else advs[q])
                ctx.set(alt, alts[q])
                ctx.set(sel, alt_sel)
            ctx.set(ahead.relocate, relocate)
            await ctx.delay(1e-9)
            ready = ctx.get(plain.ready)
            assert ctx.get(ahead.ready) == ready, stats
            # the same refills: the look-ahead's misses are the hit checks' misses
            assert ctx.get(ahead.r_en) == ctx.get(plain.r_en), stats
            if ctx.get(plain.r_en):
                assert ctx.get(ahead.r_addr) == ctx.get(plain.r_addr), stats
                stats["refills"] += 1
            read = [q for q in range(lanes) if en[q] and ready]
            stats["reads"] += bool(read)
            stats["stalls"] += any(en) and not ready
            await ctx.tick()
            for q in read:
                if packed and 0 < q < pack:
                    continue
                # lane 0 of packed lanes reads its own element alone while not packed
                n = widths[q] // pack if q == 0 and pack and not packed else widths[q]
                expect = int.from_bytes(image[addrs[q]:addrs[q] + n], "little")
                for fetch in fetchers:
                    got = ctx.get(fetch.lane(q)[2]) & ((1 << 8 * n) - 1)
                    assert got == expect, (q, addrs[q])
            if relocate:
                addrs = place()
                on = [rng.random() < 0.85 for _ in range(lanes)]
                stats["relocations"] += 1
            else:
                addrs = [advs[q] if en[q] and ready or (packed and 0 < q < pack and read)
                         else addrs[q] for q in range(lanes)]
                stats["moves"] += bool(read) and move

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert stats["reads"] > 300 and stats["stalls"] > 50 and stats["relocations"] > 10, stats
    assert stats["refills"] > 100, stats


def test_lookahead_needs_eager_reads():
    with pytest.raises(ValueError, match=r"looks ahead only with eager=True"):
        LaneFetcher(widths=[1], width=8, size=64, lookahead=True)
