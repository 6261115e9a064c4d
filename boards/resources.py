"""Structural resource model of the SEML core, calibrated against Yosys.

The model counts what :class:`hw.seml.core.SemlCore` instantiates for an arch:

- every memory (the IBUF, WBUF and OBUF banks, each one RAM with one write and one read
  port; PBUF, one copy per read port; the engines' line and output buffers, the trace
  memory), with its width,
  depth and ports, packed into 18 Kb block RAMs (RAMB18/RAMB36 on Xilinx, DP16KD EBR on
  ECP5) in the cheapest aspect ratio, or into LUT RAM when shallow
  (:func:`memories`, :func:`map_memory`);
- the multipliers of the engines' MACs, one DSP slice each when the operands fit the
  slice (25x18 Xilinx, 18x18 ECP5), none for the shift-based weight schemes;
- the logic and registers of each submodule (engine units, buffers' align and rotate
  stages, the OBUF stager, DMA, fetch, decoder, control) as ``a * feature + b`` per
  submodule and family, where the feature is the submodule's structural size (MACs,
  rotate-multiplexer bits, AXI width...) and ``a``, ``b`` are fitted to Yosys synthesis
  of the whole core at the archs of :data:`CALIBRATION_ARCHS`
  (``benchmarks/bench_resources.py`` writes ``boards/resource_calibration.json``).

Figures are Yosys' (``synth_xilinx -family xc7`` / ``xcup``, ``synth_ecp5``; hierarchy
kept): a pre-place-and-route count.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path

from amaranth.hdl import Shape

from hw.arch import ArchConfig
from hw.blocks.pool import MAX_PAD as POOL_MAX_PAD
from hw.engines.datapath import weight_shape
from hw.isa import Engine, element_bytes
from hw.timing import (
    BUFFER_READ_STAGES,
    OBUF_WRITE_STAGES,
    conv_engine_latency,
    depthwise_engine_latency,
    output_queue_depth,
    pointwise_engine_latency,
)

__all__ = ["CALIBRATION_ARCHS", "CALIBRATION_FILE", "FIXED_UNITS", "HOLDOUT_ARCHS",
           "MemorySpec", "board_family", "calibration_points", "estimate", "fetcher_figures",
           "fit", "handshake_registers", "lane_address_registers", "lane_fetchers",
           "lut_occupancy", "map_memory", "memories",
           "reload_calibration", "submodule_features", "synthesize_core",
           "synthesize_core_split", "synthesize_fixed_units"]

CALIBRATION_FILE = Path(__file__).resolve().parent / "resource_calibration.json"

#: Archs whose synthesis calibrates the model: small to medium, every engine present.
#: Their IBUF, WBUF and OBUF banks are at least 512 words deep, so that they map to
#: block RAM in every family as the boards' buffers do: a shallow bank goes to LUT RAM,
#: whose bank selects Yosys merges into the read port's rotation (a 16-bank buffer of
#: 1 KiB takes 1,513 LUT4 on ECP5, of 2 KiB 2,187, of 4 to 64 KiB 2,004-2,303), so that
#: a LUT-RAM point says little about the block-RAM buffers of a board.
CALIBRATION_ARCHS = (
    ArchConfig(name="cal-tiny", conv_pi=1, conv_po=1, dw_channels=2, pw_pi=2, pw_po=2,
               max_width=16, max_height=16, ibuf_bytes=8192, obuf_bytes=8192,
               wbuf_bytes=8192, pbuf_entries=64, axi_data_bits=32),
    ArchConfig(name="cal-small", conv_pi=2, conv_po=2, dw_channels=4, pw_pi=4, pw_po=4,
               max_width=32, max_height=32, ibuf_bytes=16384, obuf_bytes=16384,
               wbuf_bytes=8192, pbuf_entries=256, axi_data_bits=64),
    ArchConfig(name="cal-medium", conv_pi=4, conv_po=4, dw_channels=8, pw_pi=8, pw_po=8,
               max_width=32, max_height=32, ibuf_bytes=16384, obuf_bytes=16384,
               wbuf_bytes=8192, pbuf_entries=256, axi_data_bits=64),
)

#: Archs synthesized to check the fitted model where it was not fitted (never used for
#: fitting): small, with lane counts and buffer sizes between and beside the calibration
#: archs'.
HOLDOUT_ARCHS = (
    ArchConfig(name="hold-a", conv_pi=1, conv_po=2, dw_channels=4, pw_pi=2, pw_po=4,
               max_width=16, max_height=16, ibuf_bytes=4096, obuf_bytes=4096,
               wbuf_bytes=2048, pbuf_entries=128, axi_data_bits=32),
    ArchConfig(name="hold-b", conv_pi=2, conv_po=1, dw_channels=2, pw_pi=4, pw_po=2,
               max_width=24, max_height=24, ibuf_bytes=4096, obuf_bytes=8192,
               wbuf_bytes=2048, pbuf_entries=128, axi_data_bits=64),
)

#: The families (Yosys ``synth_xilinx -family`` or ``synth_ecp5``).
FAMILIES = ("xc7", "xcup", "ecp5")

#: Block RAM aspect ratios (depth, width, cost in 18 Kb blocks) per family.
_BRAM_SHAPES = {
    "xilinx": [(16384, 1, 1), (8192, 2, 1), (4096, 4, 1), (2048, 9, 1), (1024, 18, 1),
               (512, 36, 1), (32768, 1, 2), (16384, 2, 2), (8192, 4, 2), (4096, 9, 2),
               (2048, 18, 2), (1024, 36, 2), (512, 72, 2)],
    "ecp5": [(16384, 1, 1), (8192, 2, 1), (4096, 4, 1), (2048, 9, 1), (1024, 18, 1),
             (512, 36, 1)],
}

#: The trace memory of the control registers (``SemlCore(trace_depth=...)`` default).
TRACE_DEPTH = 512


@dataclass(frozen=True)
class MemorySpec:
    """``count`` memories of ``width`` bits x ``depth`` words with ``write_ports`` and
    ``read_ports`` (``async_read``: combinational read; ``block``: block RAM whatever
    its size, as its ``ram_style`` attribute asks Yosys)."""

    path: str
    width: int
    depth: int
    write_ports: int = 1
    read_ports: int = 1
    count: int = 1
    async_read: bool = False
    block: bool = False


def engine_queue_depth(arch: ArchConfig, kind: Engine) -> int:
    """Entries of the output queue of the ``kind`` engine unit's engine."""
    latency = {Engine.CONV: lambda: conv_engine_latency(arch.conv_pi, arch.conv_k_max, False),
               Engine.DEPTHWISE: lambda: depthwise_engine_latency(arch.conv_k_max),
               Engine.POINTWISE: lambda: pointwise_engine_latency(arch.pw_pi)}[kind]()
    return output_queue_depth(latency)


def _family_group(family):
    if family not in FAMILIES:
        raise ValueError(f"Unknown family {family!r}; known families are "
                         f"{', '.join(FAMILIES)}")
    return "ecp5" if family == "ecp5" else "xilinx"


def board_family(board) -> str:
    """The synthesis family of a :class:`boards.database.Board`."""
    return {"zynq7": "xc7", "ecp5": "ecp5"}.get(board.family, "xcup")


@functools.lru_cache(maxsize=256)
def _plan(arch: ArchConfig):
    from hw.seml.core import buffer_plan

    return buffer_plan(arch)


def memories(arch: ArchConfig) -> list[MemorySpec]:
    """Every memory of :class:`hw.seml.core.SemlCore` for ``arch``."""
    from hw.seml.buffers import entry_banks
    from hw.seml.units import pbuf_layout

    plan = _plan(arch)
    banks = plan.banks
    out = []
    for name, size, reads in (("ibuf", arch.ibuf_bytes, len(plan.ibuf_reads)),
                              ("wbuf", arch.wbuf_bytes, len(plan.wbuf_reads)),
                              ("obuf", arch.obuf_bytes, 1)):
        out.append(MemorySpec(name, 8, max(-(-size // banks), 2), 1, reads, banks))
    # PBUF: one bank per lane (rounded up to a power of two), each one block RAM
    pbanks = entry_banks(plan.pbuf_lanes)
    out.append(MemorySpec("pbuf", pbuf_layout(arch).size,
                          max(-(-arch.pbuf_entries // pbanks), 2), 1, 1, pbanks, block=True))
    frame = arch.max_width * arch.max_height
    out.append(MemorySpec("compute_conv.engine.output_buffer", arch.conv_po * arch.acc_bits,
                          frame))
    out.append(MemorySpec("compute_pointwise.engine.output_buffer",
                          arch.pw_po * arch.acc_bits, frame))
    if arch.conv_k_max > 1:
        history = (arch.conv_k_max - 1) * arch.act_bits
        out.append(MemorySpec("compute_conv.engine.windows.line_buffer.rows",
                              history * arch.conv_pi, arch.max_width))
        out.append(MemorySpec("compute_depthwise.engine.windows.line_buffer.rows",
                              history * arch.dw_channels, arch.max_width))
    from hw.blocks.pool import MAX_PAD

    out.append(MemorySpec("compute_conv.engine.pool.lines", 2 * arch.conv_po * arch.act_bits,
                          arch.max_width + 2 * MAX_PAD))
    # the engines' output queues (a buffered FIFO of depth d keeps d - 1 words in memory)
    for kind, unit, lanes in ((Engine.CONV, "compute_conv", arch.conv_po),
                              (Engine.DEPTHWISE, "compute_depthwise", arch.dw_channels),
                              (Engine.POINTWISE, "compute_pointwise", arch.pw_po)):
        out.append(MemorySpec(f"{unit}.engine.queue.storage", lanes * arch.act_bits,
                              engine_queue_depth(arch, kind) - 1))
    # the element-wise unit's activation table: one copy per lane, in bus-width words
    from hw.isa import table_entries
    from hw.seml.units import add_lanes

    entries = table_entries(arch.act_bits)
    if entries:
        word = min(arch.axi_data_bytes, entries)
        for lane in range(add_lanes(arch)):
            out.append(MemorySpec(f"add.tbuf{lane}", 8 * word, entries // word))
    out.append(MemorySpec("csr.trace", 32, TRACE_DEPTH, async_read=True))
    # FIFO storage (a buffered FIFO of depth d keeps d - 1 words in memory)
    from hw.isa import INSTR_BITS
    from hw.seml.fetch import FETCH_DEPTH

    out.append(MemorySpec("fetch.fifo.storage", INSTR_BITS, FETCH_DEPTH - 1))
    from hw.seml.core import MAX_BURST
    from hw.seml.dma import burst_queue_bits

    # the DMA's burst FIFOs (one per direction; their head bursts are registers)
    desc, _ = burst_queue_bits(arch.axi_data_bits, MAX_BURST)
    out.append(MemorySpec("dma.rd_desc.storage", desc, 3, async_read=True))
    out.append(MemorySpec("dma.wr_desc.storage", desc, 3, async_read=True))
    return out


def _lutram_cells(width, depth, group):
    if group == "ecp5":
        return math.ceil(width / 4) * math.ceil(depth / 16)      # TRELLIS_DPR16X4
    if depth <= 32:
        return math.ceil(width / 6)                               # RAM32M: 6 bits x 32
    return math.ceil(width / 3) * math.ceil(depth / 64)           # RAM64M: 3 bits x 64


def map_memory(spec: MemorySpec, family: str) -> dict:
    """``{"bram18": blocks, "lutram": LUT-RAM cells, "ff": output-register bits}`` of
    ``spec`` on ``family``.

    Each physical RAM has one write and one read port: a memory with ``r`` read ports
    is ``r`` copies. Yosys puts small memories in LUT RAM (as measured with this
    Yosys: on Xilinx up to 64 words, or up to 256 words and 2 Kbit; on ECP5 up to 16
    words, or up to 128 words and fewer than 32 DPR16X4 cells: a 32 x 64 memory is an
    EBR) with the read register in
    flip-flops, and the rest in block RAM in the cheapest aspect ratio.
    """
    group = _family_group(family)
    if spec.write_ports > 1:
        raise ValueError(f"Memory {spec.path} has {spec.write_ports} write ports: no block "
                         "RAM holds it (the core gives every memory one write port)")
    copies = spec.count * max(spec.read_ports, 1)
    cells = _lutram_cells(spec.width, spec.depth, group)
    if group == "ecp5":
        small = spec.depth <= 16 or (spec.depth <= 128 and cells < 32)
    else:
        small = spec.depth <= 64 or (spec.depth <= 256 and spec.width * spec.depth <= 2048)
    if spec.async_read or (small and not spec.block):
        return {"bram18": 0, "lutram": copies * cells,
                "ff": 0 if spec.async_read else copies * spec.width}
    blocks = min(math.ceil(spec.width / w) * math.ceil(spec.depth / d) * cost
                 for d, w, cost in _BRAM_SHAPES[group])
    return {"bram18": copies * blocks, "lutram": 0, "ff": 0}


def dsp_per_mac(arch: ArchConfig, family: str) -> int:
    """DSP slices of one MAC for the arch's weight scheme (0 for PoT / APoT shifts)."""
    if arch.weight_scheme != "uniform":
        return 0
    a, w = sorted((arch.act_bits, arch.weight_bits))
    if _family_group(family) == "ecp5":
        return 1 if w <= 18 else 2
    return 1 if (a <= 18 and w <= 25) else 2


def _log2(n):
    return max(1, math.ceil(math.log2(max(n, 2))))


def submodule_features(arch: ArchConfig) -> dict:
    """``{submodule: (size, lanes, macs)}``: the structural size that drives each
    submodule's logic and registers (fitted linearly), its output lanes (its extra DSP
    slices: requantization and address multipliers) and its MACs (one DSP each)."""
    from hw.seml.buffers import entry_banks
    from hw.seml.compute import POOL_LANES
    from hw.seml.units import add_lanes, pbuf_layout

    plan = _plan(arch)
    e = element_bytes(arch.act_bits)
    k2 = arch.conv_k_max ** 2
    lg = _log2(plan.banks)
    nbytes = arch.axi_data_bytes
    pbuf_width = pbuf_layout(arch).size
    pbanks = entry_banks(plan.pbuf_lanes)

    def rotate(reads, writes, raw=False):
        # each port's lane rotation (none for a raw read: its readers select) and its
        # per-bank row select
        return (sum(8 * w * lg for w in reads if not raw) + sum(8 * w * lg for w in writes)
                + plan.banks * (len(reads) + len(writes)))

    conv = arch.conv_pi * arch.conv_po
    shared = {} if arch.private_fetchers else {
        # the engine units' shared lane fetchers: structural only (lane_fetchers)
        "ibuf_fetch": (0, 0, 0),
        "wbuf_fetch": (0, 0, 0),
    }
    return {
        "compute_conv": (conv * k2, arch.conv_po, conv * k2),
        "compute_depthwise": (arch.dw_channels * k2, arch.dw_channels,
                              arch.dw_channels * k2),
        "compute_pointwise": (arch.pw_pi * arch.pw_po, arch.pw_po, arch.pw_pi * arch.pw_po),
        "compute_pool": (POOL_LANES * e, POOL_LANES, 0),
        "add": (add_lanes(arch), add_lanes(arch), 0),
        "ibuf": (rotate(plan.ibuf_reads, [nbytes], raw=True), 0, 0),
        "wbuf": (rotate(plan.wbuf_reads, [nbytes], raw=True), 0, 0),
        # STORE reads the banks' raw outputs: its bus-word select is in its own line
        # (sized by the bus width, as the rest of STORE)
        "obuf": (rotate([plan.banks], [plan.banks], raw=True), 0, 0),
        "obuf_stager": (plan.lanes * plan.banks * 8, 0, 0),
        **shared,
        # the rotation of the banks' outputs into the lanes
        "pbuf": (pbuf_width * plan.pbuf_lanes * _log2(pbanks)
                 + _log2(arch.pbuf_entries) * pbanks, 0, 0),
        "load": (nbytes, 0, 0),
        "store": (nbytes, 0, 0),
        "dma": (nbytes, 0, 0),
        "arbiter": (nbytes, 0, 0),
        "fetch": (nbytes, 0, 0),
        "csr": (1, 0, 0),
        "decoder": (1, 0, 0),
        "header_check": (1, 0, 0),
        # the core's own logic: the buffers' shared read ports (an address multiplexer
        # per port over the units that use it) and OBUF's write multiplexer (stager,
        # ADD, POOL)
        "(top)": (sum(_log2(size) * n for size, n in (
            (arch.ibuf_bytes, len(plan.ibuf_reads)), (arch.wbuf_bytes, len(plan.wbuf_reads)),
            (arch.pbuf_entries, 1))) + 8 * plan.banks, 0, 0),
    }


_calibration = None


def reload_calibration():
    global _calibration
    _calibration = json.loads(CALIBRATION_FILE.read_text()) if CALIBRATION_FILE.exists() \
        else None
    _estimate.cache_clear()


def _coefficients(family):
    if _calibration is None:
        reload_calibration()
    if _calibration is not None and family not in _calibration["families"]:
        # UltraScale+ maps logic as 7-series does (the same LUT6 / CARRY / FD cells):
        # without its own synthesis points it takes the 7-series coefficients.
        family = _calibration.get("fallback", {}).get(family, family)
    if _calibration is None or family not in _calibration["families"]:
        raise RuntimeError(f"No resource calibration for family {family!r} in "
                           f"{CALIBRATION_FILE}; run benchmarks/bench_resources.py")
    return _calibration["families"][family]


def fetcher_figures(widths, runs: int, abits: int, banks: int, alts: bool) -> dict:
    """``{"ff", "lut"}`` of one :class:`hw.seml.buffers.LaneFetcher` with lanes of
    ``widths`` bytes, ``runs`` runs per lane (2 where it prefetches), a buffer of
    ``abits`` address bits and ``banks``-byte runs, ``alts`` where the lanes' readers
    drive a second address after a read (see :func:`lane_fetchers`)."""
    # the look-ahead: per lane, for its address and the one after a read, the next
    # cycle's hit, whether it read and (two runs) the run that holds the element;
    # from ``runs + 2`` more range checks (the address now in
    # the landing run; the one after a read in each run and the landing one), and
    # ``runs + 1`` more for the second address after a read; the landing run's
    # limits, one register per lane width
    per_lane_ff = 1 + 2 + (runs > 1)
    ahead_ff = per_lane_ff * len(widths) + len(set(widths)) * (abits + 1)
    checks = 2 * runs + 2 + (runs + 1 if alts else 0)
    return {"ff": ahead_ff + sum(runs * (8 * banks + 2 * abits + 2) + 8 * w + 1
                                 for w in widths),
            "lut": sum(8 * w * math.ceil(runs * banks / 4) + 2 * checks * abits
                       for w in widths)}


def lane_fetchers(arch: ArchConfig) -> dict:
    """``{submodule: {"ff": flip-flops, "lut": LUTs}}`` of the lane fetchers behind the
    IBUF and WBUF read ports (:class:`hw.seml.buffers.LaneFetcher`), counted from
    their structure: per lane one (weights) or two (pixels, ADD operands) runs of
    ``banks`` bytes with their base and limit addresses, the lane's output register and
    the look-ahead's flags and offsets (flip-flops);
    the byte select of the lane's element out of its runs (a ``runs * banks``-way
    multiplexer per output bit, four ways per LUT, controlled by the address's low bits:
    the runs hold the banks' raw words) and the address compares, this cycle's and the
    look-ahead's (LUTs).
    The engine units share one pixel and one weight fetcher (``ibuf_fetch``,
    ``wbuf_fetch``: the lanes of the unit with the most, each as wide as the widest);
    with ``private_fetchers`` each unit has its own (counted in the unit,
    ``compute_conv`` ...: its own lanes and widths).
    ADD reads its two operands through ``ADD_RUNS`` runs each (:class:`hw.seml.units.AddUnit`):
    the runs, the next run's address, the offset in the run and a beat-wide output
    register, and the bank of the element being read and of the next run's first
    (flip-flops); the beat's select out of the runs (LUTs)."""
    from hw.seml.units import ADD_RUNS, add_lanes

    plan = _plan(arch)
    banks = plan.banks
    e = element_bytes(arch.act_bits)
    ib, wb = _log2(arch.ibuf_bytes), _log2(arch.wbuf_bytes)

    if arch.private_fetchers:
        out = {}
        for engine, pixels, weights, _ in plan.unit_lanes:
            # every unit's pixel lanes move at a row's end; the windowed units'
            # weight lanes at a kernel row's
            x = fetcher_figures(pixels, 2, ib, banks, True)
            w = fetcher_figures(weights, 1, wb, banks, _windowed(engine))
            out[f"compute_{engine.name.lower()}"] = {k: x[k] + w[k] for k in ("ff", "lut")}
    else:
        windowed = any(_windowed(engine) for engine, *_ in plan.unit_lanes)
        out = {"ibuf_fetch": fetcher_figures(plan.ibuf_lanes, 2, ib, banks, True),
               "wbuf_fetch": fetcher_figures(plan.wbuf_lanes, 1, wb, banks, windowed)}
    bb = add_lanes(arch) * e
    # (per operand: the runs and their valid flags, the next run's address, the offset,
    # the element's banks, the head, tail and held counts, the head run's landed flag;
    # the beat register; the in-flight stages)
    out["add"] = {"ff": 2 * (ADD_RUNS * (8 * banks + 1) + ib + 3 * _log2(banks)
                             + 2 * _log2(ADD_RUNS) + _log2(ADD_RUNS + 1) + 1 + 8 * bb)
                        + 2 * (2 + BUFFER_READ_STAGES),
                  "lut": 2 * (8 * bb * math.ceil(ADD_RUNS * banks / 4) + ib)}
    return out


def lane_address_registers(arch: ArchConfig) -> dict:
    """``{submodule: flip-flops}`` of the engine units' lane address registers
    (:class:`hw.seml.engine_units.EngineUnit`): each pixel and weight lane's address and
    its offset, as wide as the buffer's byte address; each pixel lane's next column, next
    row and next tile (its own copies, offset included), and its registered next-tile
    address where the lanes jump (POINTWISE); in the windowed units (CONV, DEPTHWISE)
    each weight lane's next tap, next kernel row and next tile, the same way."""
    ib, wb = _log2(arch.ibuf_bytes), _log2(arch.wbuf_bytes)
    return {f"compute_{engine.name.lower()}": ((5 + jumps) * len(pixels) * ib
                                               + (5 if _windowed(engine) else 2)
                                               * len(weights) * wb)
            for engine, pixels, weights, jumps in _plan(arch).unit_lanes}


def _windowed(engine) -> bool:
    return engine in (Engine.CONV, Engine.DEPTHWISE)


def lane_address_adders(arch: ArchConfig) -> dict:
    """``{submodule: LUTs}`` of the adders that keep each pixel lane's own next column,
    next row and next tile (:func:`lane_address_registers`): four more byte-address
    adders per lane than a pointer plus an offset takes (one LUT per bit in a carry
    chain), one fewer where the lanes jump (the next-tile address is a copy); three more
    per weight lane of the windowed units (its next tap, kernel row and tile)."""
    ib, wb = _log2(arch.ibuf_bytes), _log2(arch.wbuf_bytes)
    return {f"compute_{engine.name.lower()}": ((4 - jumps) * len(pixels) * ib
                                               + (3 * len(weights) * wb
                                                  if _windowed(engine) else 0))
            for engine, pixels, weights, jumps in _plan(arch).unit_lanes}


def handshake_registers(arch: ArchConfig) -> dict:
    """``{submodule: flip-flops}`` of the registers that cut the core's handshake and
    loop-control paths (``docs/timing.md``): the engine units' registered
    ``k_h * k_w``, the CONV and POINTWISE accumulators' registered read stage, and
    the units' loops' end flags (the tile, and for the windowed units
    the tap column and row; the pixel column, row and tile) and, per loop count, its
    ``count - 2`` and ``count == 1``; the conv and depthwise engines' registered job totals (factors,
    product and ``- 1``) and ``count_done``'s last beat; the engines' output queues'
    counters (:class:`hw.engines.datapath.OutputQueue`: the beats owed, the room flag,
    the FIFO's pointers, level and output flag) and the CONV and POINTWISE engines'
    last-tile flags; the line buffers' copy of the last column written (``(K - 1) x
    lanes`` pixels) and their ``narrow`` flag; the output size the conv engine's pool
    takes from registers, its frame bounds (the padded size less two and the last real
    column and row) and its position flags; and, in the core, the
    skid buffer between the engine units' OBUF lanes and the stager (two entries of
    every lane's address, element and enable); OBUF's registered write port (address,
    ``banks`` bytes and count; ``OBUF_WRITE_STAGES`` of them) and IBUF's and WBUF's (a
    bus word), and IBUF's and WBUF's read stages (each bank's row and enable, then its
    output byte); the OBUF
    stager's
    run end addresses and room flags, each lane's second pending run and its registered
    ``ready``;
    STORE's skid buffer before the DMA (two raw words of OBUF's banks with the read
    address's low bits and ``last``, and the two valid flags) and the low bits' register;
    a copy of the core's skid buffer's full flag per engine unit; the engine units'
    pixel feeders' second entries and the CONV and DEPTHWISE units' weight feeders'
    (a beat each); ADD's landed flags of its operands' head runs; the DMA write side's
    third and fourth held words and each direction's head burst and beat registers; the
    POOL unit's masked elements and largest-element accumulators, its copies of the
    instruction's fields, its stage per IBUF read stage and its clamp's registered
    compares; the element-wise engine's
    registered products and ADD's table-entry register; the DMA's read room flag and
    its read side's registered ``valid`` and ``last``; the
    issue stage's
    opcode flags and SYNC mask; the engines' requantizers' partial products and the
    stage that sums them (the fused pool's too); the read arbiter's fetch slot; the count of instructions still to fetch and its zero flag; the
    OBUF stager's registered ``flush``; the decoder's buffer-range rooms (``limit -
    start`` of each address field, :func:`hw.seml.decode.range_rooms`)."""
    from hw.blocks.pool import window_bits
    from hw.blocks.requant import product_slices
    from hw.seml.compute import POOL_LANES
    from hw.seml.core import MAX_BURST
    from hw.seml.decode import range_room_bits
    from hw.seml.dma import burst_queue_bits
    from hw.seml.units import add_lanes

    plan = _plan(arch)
    lg = _log2(plan.banks)
    e = element_bytes(arch.act_bits)
    d = _log2(arch.max_width * arch.max_height + 1)
    total = 2 * 16 + 2 * d          # job_total: factors, product, product - 1
    bound = 16 + 1                  # a loop count's ``count - 2`` and ``count == 1``
    # taps; the rows', tiles' and columns' bounds; their flags; the PBUF read address
    unit = 16 + 3 * bound + 4 + _log2(max(arch.pbuf_entries, 2))
    taps = bound + 2                # the windowed units' tap column and row flags

    def acc(po):
        # the accumulator's registered read stage: per lane the read data, the partial
        # sum and the forwarded sum; the address and the stage's flags
        return 3 * po * arch.acc_bits + d + 4
    def write_register(size, width):
        # a byte buffer's registered write port: address, ``width`` bytes and count
        return _log2(size) + 8 * width + _log2(width + 1)

    def read_stages(size):
        # a byte buffer's read stages: each bank's row and enable, then each bank's
        # output byte
        return (min(BUFFER_READ_STAGES, 1) * plan.banks * (_log2(-(-size // plan.banks)) + 1)
                + max(BUFFER_READ_STAGES - 1, 0) * plan.banks * 8)

    pad = 2 * POOL_MAX_PAD
    # the padded size less two and the last real column and row (one bit wider than the
    # counters), the origin flag, the padded-width-1 flag and the position's four flags
    bounds = 2 * (_log2(arch.max_width + pad + 1) + _log2(arch.max_height + pad + 1)) + 4 + 6
    # the feeders' second entries, a beat and its valid flag each: every engine unit's
    # pixel feeder and the windowed units' (CONV, DEPTHWISE) weight feeders
    code_bits = Shape.cast(weight_shape(arch)).width
    held = {e: len(pixels) * arch.act_bits + 1
            + (len(weights) * code_bits + 1 if e is not Engine.POINTWISE else 0)
            for e, pixels, weights, _ in plan.unit_lanes}

    def queue(kind):
        # owed beats and the room flag; the FIFO's write and read pointers, its inner
        # level and its output flag
        depth = engine_queue_depth(arch, kind)
        return _log2(depth + 1) + 1 + 2 * _log2(depth - 1) + _log2(depth) + 1

    def requant(lanes, acc_bits, per_channel=True):
        # the requantizer's registered partial products (one per slice of the
        # accumulator) and the stage that sums them: per lane the product, and the
        # stage's bounds, flags and shift
        slices = len(product_slices(acc_bits))
        par = lanes if per_channel else 1
        return (lanes * (acc_bits + slices * (arch.mult_bits + 1))
                + 2 * arch.act_bits + 2 + par * (arch.shift_bits + 1))

    def last_column(lanes):
        return (arch.conv_k_max - 1) * lanes * arch.act_bits + 1 if arch.conv_k_max > 1 else 0

    return {
        "compute_conv": (unit + taps + 2 * total + d + acc(arch.conv_po) + queue(Engine.CONV)
                         + 1 + last_column(arch.conv_pi) + 2 * 16 + bounds
                         + held[Engine.CONV] + requant(arch.conv_po, arch.acc_bits)
                         + requant(arch.conv_po, window_bits(arch.act_bits), per_channel=False)),
        "compute_depthwise": (unit + taps + total + d + queue(Engine.DEPTHWISE)
                              + last_column(arch.dw_channels) + held[Engine.DEPTHWISE]
                              + requant(arch.dw_channels, arch.acc_bits)),
        "compute_pointwise": (unit + acc(arch.pw_po) + queue(Engine.POINTWISE) + 1
                              + held[Engine.POINTWISE] + requant(arch.pw_po, arch.acc_bits)),
        # the skid buffer's entries and valid flags, the copies of its full flag; the
        # instructions still to fetch and its zero flag; the stager's flush; the issue
        # stage's opcode flags and SYNC mask
        "(top)": 2 * (plan.lanes * (_log2(arch.obuf_bytes) + 8 * e + 1) + 1)
                 + len(plan.unit_lanes) + 32 + 1 + 1 + 6 + 3,
        # each buffer range's room (``limit - start``), taken with the first stage
        "decoder": range_room_bits(arch),
        # each lane's masked element for the sum and its largest-element accumulator;
        # the copies of the instruction's fields its start products are taken from; the
        # clamp's registered compares and rounded element, with the stage's flags,
        # address and count
        "compute_pool": 2 * POOL_LANES * arch.act_bits + 2 * 16 + 3 * 8
                        + _log2(POOL_LANES + 1)
                        + POOL_LANES * (2 + arch.act_bits) + 2 + _log2(arch.obuf_bytes)
                        + _log2(POOL_LANES * e + 1)
                        # the stage per IBUF read stage: flags, lane masks and first
                        # banks, the output address and count
                        + BUFFER_READ_STAGES * (4 + POOL_LANES * (1 + lg)
                                                + _log2(arch.obuf_bytes)
                                                + _log2(POOL_LANES * e + 1)),
        # the write side's third and fourth held words (its ``wr_data.ready`` a
        # register); each direction's head burst and beat registers; the read room flag
        # and the read side's registered ``valid`` and ``last``
        "dma": 2 * 8 * arch.axi_data_bytes
               + 2 * burst_queue_bits(arch.axi_data_bits, MAX_BURST)[1] + 1 + 2,
        "obuf": OBUF_WRITE_STAGES * write_register(arch.obuf_bytes, plan.banks),
        # IBUF's and WBUF's registered write ports (LOAD's bus word) and each bank's
        # registered read row and enable and output byte
        "ibuf": write_register(arch.ibuf_bytes, arch.axi_data_bytes)
                + read_stages(arch.ibuf_bytes),
        "wbuf": write_register(arch.wbuf_bytes, arch.axi_data_bytes)
                + read_stages(arch.wbuf_bytes),
        # each lane's run end address and room flag, and its second pending run
        # (valid, address, count, data); the registered ``ready``
        "obuf_stager": plan.lanes * (_log2(arch.obuf_bytes) + 1)
                       + plan.lanes * (1 + _log2(arch.obuf_bytes) + _log2(plan.banks + 1)
                                       + 8 * plan.banks) + 1,
        # the element-wise engine's two products per lane (``a * ma``: a product of two
        # elements for MUL, and ``b * mb``), registered before their sum; the table
        # entries' register (address, count, data, valid)
        "add": add_lanes(arch) * ((2 * arch.act_bits + arch.mult_bits + 1)
                                  + (arch.act_bits + arch.mult_bits + 1))
               + _log2(arch.obuf_bytes) + _log2(add_lanes(arch) * e + 1)
               + 8 * add_lanes(arch) * e + 1,
        # two entries of the banks' raw word, the read address's low bits and ``last``;
        # the two valid flags; the low bits' register before it
        "store": 2 * (8 * plan.banks + lg + 1) + 2 + lg,
        # the fetch's read-address slot: valid flag, address and length
        "arbiter": 1 + arch.axi_addr_bits + 8,
    }


def lutram_mux_luts(spec: MemorySpec, family: str) -> int:
    """Logic LUTs that select among the LUT-RAM primitives of ``spec`` when it is deeper
    than one primitive (64 words on Xilinx, 32 for RAM32M; 16 on ECP5): per read bit, a
    ``chunks``:1 multiplexer, one LUT6 per three further chunks (LUT6 = 4:1 mux) on
    Xilinx, one LUT4 per further chunk (2:1 mux) on ECP5. None for block RAM."""
    group = _family_group(family)
    if not map_memory(spec, family)["lutram"]:
        return 0
    prim = 16 if group == "ecp5" else (32 if spec.depth <= 32 else 64)
    chunks = math.ceil(spec.depth / prim)
    per_bit = chunks - 1 if group == "ecp5" else math.ceil((chunks - 1) / 3)
    return spec.count * max(spec.read_ports, 1) * spec.width * per_bit


def _memory_figures(arch, family):
    """Block RAM, LUT RAM, read registers and LUT-RAM multiplexer LUTs of each submodule
    (top-level name) from the inventory."""
    out = {}
    for spec in memories(arch):
        top = spec.path.split(".")[0]
        got = {**map_memory(spec, family), "lut": lutram_mux_luts(spec, family)}
        row = out.setdefault(top, {"bram18": 0, "lutram": 0, "ff": 0, "lut": 0})
        for key in row:
            row[key] += got[key]
    for top, got in lane_fetchers(arch).items():
        row = out.setdefault(top, {"bram18": 0, "lutram": 0, "ff": 0, "lut": 0})
        row["ff"] += got["ff"]
        row["lut"] += got["lut"]
    for top, luts in lane_address_adders(arch).items():
        out.setdefault(top, {"bram18": 0, "lutram": 0, "ff": 0, "lut": 0})["lut"] += luts
    for counted in (lane_address_registers(arch), handshake_registers(arch)):
        for top, ff in counted.items():
            out.setdefault(top, {"bram18": 0, "lutram": 0, "ff": 0, "lut": 0})["ff"] += ff
    return out


@functools.lru_cache(maxsize=512)
def _estimate(arch: ArchConfig, family: str):
    coef = _coefficients(family)
    mems = _memory_figures(arch, family)
    per_mac = dsp_per_mac(arch, family)
    shift_luts = 0
    if arch.weight_scheme != "uniform":
        # A PoT weight is one shifter, APoT two, instead of a multiplier.
        shifters = 1 if arch.weight_scheme == "pot" else 2
        shift_luts = shifters * (arch.act_bits + 2 ** arch.pot_exp_bits) * 2
    subs = {}
    for name, (size, lanes, macs) in submodule_features(arch).items():
        c = coef.get(name, {})

        def lin(metric, x, c=c):
            a, b = c.get(metric, (0.0, 0.0))
            return max(0.0, a * x + b)

        subs[name] = {
            "lut": round(lin("lut", size) + macs * shift_luts)
                   + mems.get(name, {}).get("lut", 0),
            "ff": round(lin("ff", size)) + mems.get(name, {}).get("ff", 0),
            "dsp": macs * per_mac + round(lin("dsp", lanes)),
            "bram18": mems.get(name, {}).get("bram18", 0),
            "lutram": mems.get(name, {}).get("lutram", 0),
        }
    if arch.private_fetchers:
        # each engine unit's own pixel and weight fetcher takes the fitted residual of
        # one shared pixel and one shared weight fetcher (their lines, which have no
        # size term), beside its structural count
        for name in (f"compute_{e.name.lower()}" for e, *_ in _plan(arch).unit_lanes):
            for fetcher in ("ibuf_fetch", "wbuf_fetch"):
                c = coef.get(fetcher, {})
                for metric in ("lut", "ff"):
                    subs[name][metric] += round(max(0.0, c.get(metric, (0.0, 0.0))[1]))
    total = {k: sum(row[k] for row in subs.values())
             for k in ("lut", "ff", "dsp", "bram18", "lutram")}
    return total, subs


def estimate(arch: ArchConfig, family: str = "xc7") -> dict:
    """Resource estimate of the SEML core for ``arch`` on ``family``.

    Returns ``lut``, ``ff``, ``dsp``, ``bram18``, ``bram36`` (18 Kb blocks / 2),
    ``lutram`` (LUT-RAM cells), ``lut_total`` (``lut`` plus the LUTs the LUT RAM
    occupies, :data:`LUTRAM_LUTS`: 4 per Xilinx RAM64M / RAM32M, 6 per ECP5 DPR16X4)
    and ``submodules``.
    """
    _family_group(family)
    total, subs = _estimate(arch, family)
    per_cell = LUTRAM_LUTS["TRELLIS_DPR16X4" if family == "ecp5" else "RAM64M"]
    return {**total, "bram36": total["bram18"] / 2,
            "lut_total": total["lut"] + per_cell * total["lutram"],
            "submodules": {k: dict(v) for k, v in subs.items()}}


#: LUT sites a LUT-RAM or shift-register cell occupies. Xilinx: a RAM64M / RAM32M is the
#: four LUTs of a SLICEM, a RAM64X1D two. ECP5: nextpnr packs a TRELLIS_DPR16X4 into
#: four LUT4s of RAM (two slices) and a write-port slice (two more LUT4 sites).
LUTRAM_LUTS = {
    "RAM32M": 4, "RAM64M": 4, "RAM32M16": 8, "RAM64M8": 8, "RAM16X1D": 2, "RAM32X1D": 2,
    "RAM64X1D": 2, "RAM128X1D": 4, "RAM16X1S": 1, "RAM32X1S": 1, "RAM64X1S": 1,
    "RAM128X1S": 2, "RAM256X1S": 4, "SRL16E": 1, "SRLC32E": 1, "TRELLIS_DPR16X4": 6,
}


def lut_occupancy(cells: dict, family: str) -> int:
    """LUT sites a synthesized cell histogram occupies (the board's LUT budget): logic
    LUTs (LUT1..6 on Xilinx, LUT4 on ECP5) plus the sites of its LUT RAM
    (:data:`LUTRAM_LUTS`)."""
    group = _family_group(family)
    if group == "ecp5":
        logic = cells.get("LUT4", 0)
    else:
        logic = sum(n for t, n in cells.items() if t in {f"LUT{i}" for i in range(1, 7)})
    ram = sum(LUTRAM_LUTS[t] * n for t, n in cells.items() if t in LUTRAM_LUTS
              and (t == "TRELLIS_DPR16X4") == (group == "ecp5"))
    return logic + ram


def calibration_points() -> list:
    """``arch/family`` names of the synthesis runs the stored coefficients were fitted on."""
    if _calibration is None:
        reload_calibration()
    return list((_calibration or {}).get("points", []))


#: Submodules whose structure hardly depends on the arch (the decoder's checks, the
#: header check, the control registers, the fixed-lane pool unit): a partial calibration
#: run (:func:`synthesize_core` with ``partial=True``) leaves them out as black boxes, so
#: that further calibration archs cost only the arch-dependent logic.
FIXED_UNITS = ("decoder", "header_check", "csr", "compute_pool")


def synthesize_core(arch: ArchConfig, family: str, *, partial: bool = False,
                    cached_only: bool = False, timeout: float = 4 * 3600.0):
    """Yosys synthesis of the whole :class:`hw.seml.core.SemlCore` for ``arch`` as the
    model is calibrated and checked against: hierarchy kept (each submodule's figures),
    with the logic depth of each submodule on the Xilinx families. One definition for
    every benchmark and test, so that they share the synthesis cache.

    ``partial``: the :data:`FIXED_UNITS` are black boxes (no logic depth); the result's
    ``submodules`` lack them and its totals are those of the rest."""
    from hw.seml.core import SemlCore

    from .synth import synthesize

    boxes = [f"top.{unit}" for unit in FIXED_UNITS] if partial else []
    res = synthesize(SemlCore(arch), family=family,
                     name=f"core-{arch.name}-{family}" + ("-partial" if partial else ""),
                     flatten=False, depth=_family_group(family) == "xilinx" and not partial,
                     blackbox=boxes, cached_only=cached_only, timeout=timeout)
    if res is not None and partial:
        res.submodules = {k: v for k, v in res.submodules.items() if k not in FIXED_UNITS}
    return res


def synthesize_core_split(arch: ArchConfig, family: str, *, cached_only: bool = False,
                          timeout: float = 4 * 3600.0):
    """Yosys figures of the whole :class:`hw.seml.core.SemlCore` for ``arch``, one run
    per part: each top-level submodule alone (``top.<unit>``, hierarchy kept as in
    :func:`synthesize_core`) and the core's own logic with every submodule a black box,
    summed. For cores too large for one run of YoWASP's WebAssembly Yosys, whose memory
    is bounded (32-bit addressing). No optimization crosses a submodule's boundary (as
    with the hierarchy kept) and there is no logic depth. The submodule runs are those
    of :func:`synthesize_fixed_units` for its units (one cache).

    Returns a :class:`boards.synth.SynthResult` whose ``submodules`` are the parts'
    figures (``(top)`` the core's own logic) and whose ``synth_s`` is the parts' total,
    or ``None`` when ``cached_only`` and a part is not in the cache."""
    from collections import Counter

    from hw.seml.core import SemlCore

    from .synth import SynthResult, _unit_names, count_cells, synthesize, to_verilog

    verilog = to_verilog(SemlCore(arch))
    units = _unit_names(verilog, "top")
    runs = {unit: {"top": f"top.{unit}"} for unit in units}
    runs["(top)"] = {"top": "top", "blackbox": [f"top.{unit}" for unit in units]}
    cells, subs, seconds, cached = Counter(), {}, 0.0, True
    for part, options in runs.items():
        res = synthesize(verilog, family=family, flatten=False, cached_only=cached_only,
                         timeout=timeout, name=f"core-{arch.name}-{family}-{part}",
                         **options)
        if res is None:
            return None
        # (the black boxes' instances are cells of their module's type: not counted)
        own = {t: n for t, n in res.cells.items() if not t.lstrip("\\").startswith("top.")}
        cells.update(own)
        subs[part] = count_cells(own, family)
        seconds += res.synth_s
        cached &= res.cached
    cells = dict(sorted(cells.items()))
    return SynthResult(name=f"core-{arch.name}-{family}-split", family=family, cells=cells,
                       synth_s=round(seconds, 1), submodules=subs, cached=cached,
                       **count_cells(cells, family))


def synthesize_fixed_units(arch: ArchConfig, family: str, *, cached_only: bool = False,
                           timeout: float = 3600.0):
    """Yosys figures of each of the :data:`FIXED_UNITS` of the core for ``arch``,
    each synthesized alone (``top.<unit>`` of the core's Verilog, hierarchy kept as in
    :func:`synthesize_core`): with a ``partial`` run of the same arch, the whole core's
    submodules for less Yosys time than one whole-core run (no logic depth).

    Returns ``{unit: figures}`` (``lut``, ``ff``, ``dsp``, ``bram18``, ``lutram``,
    ``carry``), or ``None`` when ``cached_only`` and a unit is not in the cache."""
    from hw.seml.core import SemlCore

    from .synth import count_cells, synthesize, to_verilog

    verilog = to_verilog(SemlCore(arch))
    out = {}
    for unit in FIXED_UNITS:
        res = synthesize(verilog, family=family, top=f"top.{unit}",
                         name=f"core-{arch.name}-{family}-{unit}", flatten=False,
                         cached_only=cached_only, timeout=timeout)
        if res is None:
            return None
        out[unit] = count_cells(res.cells, family)
    return out


def _linear_fit(points):
    """``(a, b)`` of ``y = a * x + b`` by least squares with ``a >= 0``; from points of
    one size only, ``y = a * x`` through their mean (the size scales the submodule)."""
    xs = [x for x, _ in points]
    ys = [y for _, y in points]
    n = len(points)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return (my / mx, 0.0) if mx else (0.0, my)
    a = sum((x - mx) * (y - my) for x, y in points) / sxx
    if a < 0:
        return 0.0, my
    return a, my - a * mx


def _memory_ff(mems, name):
    """Memory read registers counted in submodule ``name``'s synthesis figures."""
    return mems.get(name, {}).get("ff", 0)


def _memory_lut(mems, name):
    """LUT-RAM multiplexer LUTs counted in submodule ``name``'s synthesis figures."""
    return mems.get(name, {}).get("lut", 0)


def _scaled_line(line, points):
    """``line`` (``(a, b)`` of another family) times the mean ratio of ``points`` (``(x,
    y)`` of this family) to it: the same structure, mapped by another family's cells."""
    a, b = line
    ratios = [y / (a * x + b) for x, y in points if a * x + b >= 1.0]
    if not ratios:
        return None
    r = sum(ratios) / len(ratios)
    return a * r, b * r


def fit(runs: dict, families, totals=None, base="xc7", base_coefficients=None) -> dict:
    """Coefficients from hierarchical synthesis results.

    ``runs``: ``{(arch name, family): (arch, {submodule: figures})}`` (the
    ``submodules`` of :func:`boards.synth.synthesize` with ``flatten=False``).

    A submodule synthesized at two sizes or more in a family gets that family's own line
    (least squares). At one size only, in a family other than ``base`` (or in ``base``
    itself when ``base_coefficients`` are given: a refit at one arch after an RTL
    change), it gets ``base``'s line for that submodule (fitted here, or
    ``base_coefficients``: the stored ones) scaled by the ratio of this family's figure
    to it at that size: the
    slope comes from where the structure was measured at several sizes, the family's
    mapping of that submodule (UltraScale+ keeps more registers outside its DSP slices
    than 7-series, ECP5's LUT4s are smaller) from the family's own point. Without a base
    line it scales through the origin. ``out["derived"]`` names, per family, the
    submodules and metrics derived so.

    ``totals``: ``{(arch name, family): (arch, figures)}``, whole-core figures of a
    family without per-submodule runs: its coefficients are ``base``'s, scaled per
    metric (LUT, FF, extra DSP) so that the core's total matches.
    """
    out = {"families": {}, "fallback": {"xcup": "xc7"},
           "points": sorted(f"{name}/{fam}" for name, fam in runs)}
    per_family = {}
    for family in families:
        per = {}
        if not any(fam == family for _, fam in runs):
            continue
        for (_, fam), (arch, subs) in runs.items():
            if fam != family:
                continue
            feats = submodule_features(arch)
            mems = _memory_figures(arch, family)
            per_mac = dsp_per_mac(arch, family)
            for name, (size, lanes, macs) in feats.items():
                if name not in subs:
                    # a partial run (some submodules synthesized alone)
                    continue
                got = subs[name]
                row = per.setdefault(name, {"lut": [], "ff": [], "dsp": []})
                row["lut"].append((size, got["lut"] - _memory_lut(mems, name)))
                row["ff"].append((size, got["ff"] - _memory_ff(mems, name)))
                row["dsp"].append((lanes, got["dsp"] - macs * per_mac))
        per_family[family] = per
    # the base family first: the others may lean on its lines
    for family in sorted(per_family, key=lambda f: f != base):
        per = per_family[family]
        base_coef = (out["families"].get(base) if family != base else None) \
            or base_coefficients or {}
        coef, derived = {}, []
        for name, row in per.items():
            coef[name] = {}
            for metric, pts in row.items():
                line = base_coef.get(name, {}).get(metric)
                ab = None
                # the base family itself leans on its stored lines when a refit has
                # one size only (a new core synthesized at one arch)
                lean = family != base or (base_coefficients is not None
                                          and out["families"].get(base) is None)
                if len({x for x, _ in pts}) < 2 and lean and line:
                    ab = _scaled_line(line, pts)
                    if ab is not None:
                        derived.append(f"{name}.{metric}")
                if ab is None:
                    ab = _linear_fit(pts)
                coef[name][metric] = [round(v, 4) for v in ab]
        out["families"][family] = coef
        if derived:
            out.setdefault("derived", {})[family] = {"from": base, "terms": sorted(derived)}
    for (_, family), (arch, figures) in (totals or {}).items():
        if family in out["families"] or base not in out["families"]:
            continue
        coef = out["families"][base]
        mems = _memory_figures(arch, family)
        per_mac = dsp_per_mac(arch, family)
        logic = {"lut": 0.0, "ff": 0.0, "dsp": 0.0}
        macs = 0
        for name, (size, lanes, n) in submodule_features(arch).items():
            c = coef.get(name, {})
            for metric, x in (("lut", size), ("ff", size), ("dsp", lanes)):
                a, b = c.get(metric, (0.0, 0.0))
                logic[metric] += max(0.0, a * x + b)
            macs += n
        want = {"lut": figures["lut"] - sum(m["lut"] for m in mems.values()),
                "ff": figures["ff"] - sum(m["ff"] for m in mems.values()),
                "dsp": figures["dsp"] - macs * per_mac}
        scale = {m: (want[m] / logic[m] if logic[m] else 1.0) for m in logic}
        out["families"][family] = {
            name: {m: [round(v * scale[m], 4) for v in ab] for m, ab in row.items()}
            for name, row in coef.items()}
        out.setdefault("scaled", {})[family] = {"from": base, "arch": arch.name,
                                                "scale": {m: round(v, 4)
                                                          for m, v in scale.items()}}
    return out
