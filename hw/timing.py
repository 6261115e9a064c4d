"""Timing constants of the SEML core and its engines, in plain Python.

The one home of every latency and cycle figure that the hardware generators build in and
that the instruction-set simulator's cycle model (:mod:`sim.timing`) and the compiler's
cost model predict with. Nothing here imports Amaranth, so the compiler learns a latency
without elaborating an engine; the engines' ``latency`` properties return these figures,
and ``tests/hw/test_timing.py`` checks the units that still state a constant of their
own against this module.
"""

from __future__ import annotations

__all__ = [
    "ADD_FETCH_CYCLES",
    "ADD_JOB_CYCLES",
    "ADD_TABLE_CYCLES",
    "BUFFER_READ_STAGES",
    "DDR_WRITE_AHEAD",
    "DDR_WRITE_GAP",
    "DRAIN_CYCLES",
    "DROPPED_TAIL_CYCLES",
    "EXEC_GAP",
    "FETCH_DEPTH",
    "FRAME_CYCLES",
    "HEADER_LATENCY",
    "ISSUE_BUSY_LAG",
    "ISSUE_INTERVAL",
    "ISSUE_LATENCY",
    "JOB_CYCLES",
    "LOAD_FETCH_AHEAD",
    "LOAD_OVERHEAD_CYCLES",
    "LOAD_START_CYCLES",
    "MAX_BURST",
    "OBUF_WRITE_STAGES",
    "OUTPUT_QUEUE_LATENCY",
    "OUTPUT_QUEUE_SLACK",
    "PAGE_BYTES",
    "POOL_LANES",
    "POOL_UNIT_LATENCY",
    "REQUANT_LATENCY",
    "SCAN_GAP",
    "START_LAG",
    "STORE_OVERHEAD_CYCLES",
    "UNIT_OVERHEAD_CYCLES",
    "add_chunk_beats",
    "add_lanes",
    "adder_tree_latency",
    "conv_engine_latency",
    "depthwise_engine_latency",
    "output_queue_depth",
    "pointwise_engine_latency",
    "pool_steps",
]

# Pipelines ------------------------------------------------------------------------------

#: Stages of the requantization unit (:class:`hw.blocks.requant.RequantUnit`): input
#: registers, partial products, their sum, the shift, the rounding and clamp.
REQUANT_LATENCY = 5
#: Cycles of the pool unit (:class:`hw.blocks.pool.PoolUnit`) from the beat that completes
#: a window to its output: three stages plus the requantization.
POOL_UNIT_LATENCY = 3 + REQUANT_LATENCY
#: Cycles from a beat written into an empty engine output queue (an Amaranth
#: ``SyncFIFOBuffered``, :class:`hw.engines.datapath.OutputQueue`) to its ``valid``.
OUTPUT_QUEUE_LATENCY = 2
#: Entries of an engine's output queue beyond the latency from the beat that enters the
#: pipeline to its write into the queue: the queue's own latency and the cycle the room
#: flag takes, so that the pipeline takes a beat every cycle while the output is taken
#: every cycle.
OUTPUT_QUEUE_SLACK = OUTPUT_QUEUE_LATENCY + 2


def adder_tree_latency(n: int) -> int:
    """Stages of a pipelined adder tree of fan-in ``n``: ``ceil(log2(n))``."""
    return (n - 1).bit_length()


def conv_engine_latency(pi: int, k_max: int, pool: bool) -> int:
    """Cycles from taking a window of the last tile to its output's ``valid`` in the conv
    engine: window register, products, adder tree, buffer read, read data register, add,
    requantize, the output queue (and the fused pool behind it)."""
    latency = (2 + adder_tree_latency(pi * k_max * k_max) + 4 + REQUANT_LATENCY
               + OUTPUT_QUEUE_LATENCY)
    return latency + (POOL_UNIT_LATENCY if pool else 0)


def output_queue_depth(latency: int) -> int:
    """Entries of an engine's output queue for an engine of ``latency`` cycles from a
    beat entering its pipeline to the queue's output (a fused pool's excluded)."""
    return latency - OUTPUT_QUEUE_LATENCY + OUTPUT_QUEUE_SLACK


def depthwise_engine_latency(k_max: int) -> int:
    """Cycles from taking a window to its output's ``valid`` in the depthwise engine:
    window register, products, adder tree, bias, requantize, the output queue."""
    return 2 + adder_tree_latency(k_max * k_max) + 1 + REQUANT_LATENCY + OUTPUT_QUEUE_LATENCY


def pointwise_engine_latency(pi: int) -> int:
    """Cycles from a last-tile pixel handshake to its output's ``valid`` in the pointwise
    engine: input register, products, adder tree, buffer read, read data register, add,
    requantize, the output queue."""
    return 2 + adder_tree_latency(pi) + 4 + REQUANT_LATENCY + OUTPUT_QUEUE_LATENCY


#: Register stages IBUF and WBUF keep on a read (:class:`hw.seml.buffers.ByteBuffer`
#: ``read_stages``): before their banks, each bank's own registered row and enable; after
#: them, each bank's output register beside its block RAM. A read's data comes ``1 +
#: BUFFER_READ_STAGES`` cycles after its address.
BUFFER_READ_STAGES = 2
#: Register stages OBUF keeps before its banks on a write (``write_stages``).
OBUF_WRITE_STAGES = 2

# COMPUTE units --------------------------------------------------------------------------

#: Cycles of a COMPUTE on an engine unit spent outside its jobs (start to SETUP, the
#: cycle the lanes' address offsets settle in, last ``done`` to idle).
UNIT_OVERHEAD_CYCLES = 3
#: Cycles per engine job beyond the engine's pipeline latency: the command, the parameter
#: beat and the turnarounds of the engine's job control (the same for every engine).
JOB_CYCLES = 4
#: Cycles a CONV job with a fused pool ends earlier when the pool drops the last row of
#: the convolution (the job ends on its last window, not on the drained pipeline).
DROPPED_TAIL_CYCLES = 12
#: The window generator's latency from a pixel to the window it completes, plus the
#: cycle its frame configuration takes.
FRAME_CYCLES = 3
#: Output columns the POOL unit computes per window step.
POOL_LANES = 8
#: Cycles a POOL instruction keeps the POOL unit busy besides its window steps: the
#: set-up cycle, the pipeline stages after stage 0 (:class:`hw.seml.compute.
#: PoolWindowUnit`: nine, and one per IBUF read stage) and the cycle ``busy`` falls in.
DRAIN_CYCLES = 11 + BUFFER_READ_STAGES
#: Cycles an ADD job spends besides its beats: command, engine pipeline, write-back.
ADD_JOB_CYCLES = 8
#: Cycles an ADD with the activation table takes beyond one without: the table's read
#: and the register its entries go through before OBUF (:class:`hw.seml.units.AddUnit`).
ADD_TABLE_CYCLES = 2
#: Cycles an ADD instruction's first beat waits while the first runs of both operands are
#: read through the one IBUF read port (:class:`hw.seml.units.AddUnit`).
ADD_FETCH_CYCLES = 4 + BUFFER_READ_STAGES


def pool_steps(in_c, out_h, out_w, k_h, k_w, lanes=POOL_LANES):
    """Window steps (cycles of stage 0) of one POOL instruction: the loop nest of the POOL
    unit (channel, output row, group of ``lanes`` output columns, ``k_h``, ``k_w``)."""
    return in_c * out_h * -(-out_w // lanes) * k_h * k_w


def add_lanes(arch) -> int:
    """Elements per cycle of the core's ADD unit."""
    return arch.dw_channels


def add_chunk_beats(arch) -> int:
    """Beats of one element-wise engine job: longer ADDs are split into such jobs."""
    return arch.max_width * arch.max_height


# DMA, fetch and issue -------------------------------------------------------------------

#: Longest AXI burst the DMA issues (beats).
MAX_BURST = 16
#: No AXI burst crosses a boundary of this many bytes.
PAGE_BYTES = 4096
#: Instruction words the fetch unit keeps requested or buffered.
FETCH_DEPTH = 4
#: Cycles a LOAD spends besides its data beats: command to the DMA, read address behind
#: the instruction-fetch bursts already queued in DDR, first-beat latency, hand-off.
LOAD_OVERHEAD_CYCLES = 12
#: Instruction-fetch bursts queued ahead of a LOAD's first burst.
LOAD_FETCH_AHEAD = 2
#: Cycles from a LOAD's start to its first beat when the read channel is idle.
LOAD_START_CYCLES = 4
#: Cycles a STORE spends besides its data beats: OBUF read, write address, response.
STORE_OVERHEAD_CYCLES = 7
#: A STORE burst starts at least ``DDR_WRITE_GAP`` cycles after the last beat of the burst
#: ``DDR_WRITE_AHEAD`` before it: the DDR model (cocotbext-axi's ``AxiRam``) takes a write
#: address only while fewer than two wait behind the burst it is writing.
DDR_WRITE_AHEAD, DDR_WRITE_GAP = 3, 4
#: Cycles from the last beat of an instruction word to its issue (FIFO, FETCH, two
#: DECODE cycles; the decoder's third registered stage is read in ISSUE).
ISSUE_LATENCY = 5
#: Fewest cycles between two issues (FETCH, two DECODE cycles, ISSUE).
ISSUE_INTERVAL = 4
#: Cycles after a unit goes idle before issue sees it (its busy flag is registered): an
#: instruction waiting for the unit, a SYNC or END issues this much later.
ISSUE_BUSY_LAG = 1
#: Cycles from an instruction's issue to its unit's start (the start pulses are
#: registers set by the issue decision).
START_LAG = 1
#: Cycles from start to the first beat of the header, from the header's last beat to the
#: first beat of the CRC pre-scan, and from the pre-scan's last beat to the first beat of
#: instruction 0.
HEADER_LATENCY, SCAN_GAP, EXEC_GAP = 4, 8, 8
