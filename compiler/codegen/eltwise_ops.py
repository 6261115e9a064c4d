"""Code generation of the element-wise unit's table activations, products and upsampling.

* TABLE: the layer's table (one per run of channels sharing it: PRelu has one per
  channel) is LOADed into TBUF from the weight image, then the input streams through
  ADD with ``table = 1`` (``mult_a = 1``, ``shift = 0``: the table holds the whole
  activation, clamp included).
* MUL: ADD with ``op = MUL``; a ``(C, 1, 1)`` gate is broadcast with ``group = H * W``
  (chunks hold whole channels, or part of one channel with ``b_count = 1``), a
  same-shape operand with ``group = 1``.
* RESIZE (nearest, integer factors ``uh x uw``): ADD with ``op = MUL`` of a row of ones
  (a constant in the weight image) by the input rows with ``group = uw`` repeats every
  pixel ``uw`` times; each widened row is then STOREd ``uh`` times.

Chunks are software-pipelined like the other element-wise layers (two IBUF and two
OBUF slots; the scheduler adds the SYNCs, including those between a TBUF load and the
ADDs that read the previous table).
"""

from __future__ import annotations

import numpy as np

from compiler.codegen.schedule import Ring
from compiler.errors import MappingError
from compiler.mapping.tiling import chunk_elements
from hw.isa import Buffer, EltOp, Opcode, qrange, table_entries
from sim.codecs import encode_activations

__all__ = ["emit_mul", "emit_resize", "emit_table"]

_WEIGHTS = "weights"


def _chunks(gen, layer, n, operands, row):
    chunk = chunk_elements(gen.arch, n, operands, True)
    if chunk < row:
        raise MappingError(
            f"Layer {layer.name!r} ({layer.kind.value}): one row of {row} elements does not "
            f"fit the element-wise buffers; increase ibuf_bytes and obuf_bytes")
    return chunk - chunk % row


def _run(gen, layer, report, jobs, *, a_of, b_of, fields_of, store):
    """Pipeline ``jobs``: each LOADs its ``a`` (``a_of(job) -> (region, ddr, count)``) and
    ``b`` (``b_of``, same), runs one ADD (``fields_of(job)`` plus addresses), and
    ``store(job, obuf_addr)``."""
    arch, e = gen.arch, gen.e
    name = layer.name
    ibuf = Ring(arch.ibuf_bytes, 2)
    obuf = Ring(arch.obuf_bytes, 2)

    def loads(*job):
        base = ibuf.take()
        region, ddr, count = a_of(job)
        gen._dma(Opcode.LOAD, Buffer.IBUF, region, ddr, base, 1, count * e, 0,
                 f"{name}: a {count} elements", name)
        if b_of is None:  # one operand: b is a again (mult_b = 0)
            return base, base, count, count
        region, ddr, b_count = b_of(job)
        b_addr = base + count * e
        gen._dma(Opcode.LOAD, Buffer.IBUF, region, ddr, b_addr, 1, b_count * e, 0,
                 f"{name}: b {b_count} elements", name)
        return base, b_addr, count, b_count

    def compute(*args):
        job, (a_addr, b_addr, count, b_count) = args[:-4], args[-4:]
        oa = obuf.take()
        fields = {"a_addr": a_addr, "b_addr": b_addr, "out_addr": oa, "count": count,
                  **fields_of(job)}
        reads = [("IBUF", a_addr, a_addr + count * e), ("IBUF", b_addr, b_addr + b_count * e)]
        if fields.get("table"):
            reads.append(("TBUF", 0, table_entries(arch.act_bits)))
        gen.sched.emit(Opcode.ADD, fields, reads=reads, writes=[("OBUF", oa, oa + count * e)],
                       comment=f"{name}: {count} elements", layer=name)
        return oa

    pending = None
    for job in jobs:
        addrs = loads(*job)
        if pending is not None:
            store(pending[0], pending[1])
        pending = (job, compute(*job, *addrs))
    if pending is not None:
        store(pending[0], pending[1])
    report.engine = "eltwise"
    report.tiles += len(jobs)


def _full(gen):
    return qrange(gen.arch.act_bits)


def emit_table(gen, layer, report):
    """A TABLE layer: per run of channels sharing a table, LOAD it into TBUF and stream
    those channels through it."""
    arch, e = gen.arch, gen.e
    entries = table_entries(arch.act_bits)
    if not entries:
        raise MappingError(f"Layer {layer.name!r} (table): the activation table needs "
                           f"act_bits at most 8, not {arch.act_bits}")
    x = layer.inputs[0]
    c, h, w = gen.graph.shape(x)
    hw = h * w
    tables = np.asarray(layer.quant.table, dtype=np.int64)
    runs = []  # (first channel, end channel, table row)
    for ch in range(c if tables.shape[0] > 1 else 1):
        if runs and np.array_equal(tables[runs[-1][2]], tables[ch]):
            runs[-1][1] = ch + 1
        else:
            runs.append([ch, ch + 1, ch])
    if tables.shape[0] == 1:
        runs = [[0, c, 0]]
    x_region, x_addr = gen.addr[x]
    out_region, out_addr = gen.addr[layer.output]
    lo, hi = _full(gen)
    for c0, c1, row in runs:
        blob = encode_activations(tables[row], arch.act_bits).tobytes()
        off = gen.image.add_bytes(f"{layer.name}.table{row}", blob)
        gen._dma(Opcode.LOAD, Buffer.TBUF, _WEIGHTS, off, 0, 1, len(blob), 0,
                 f"{layer.name}: table of channels {c0}..{c1 - 1}", layer.name)
        n = (c1 - c0) * hw
        chunk = _chunks(gen, layer, n, 1, 1)
        jobs = [(c0 * hw + k, min(chunk, n - k)) for k in range(0, n, chunk)]
        _run(gen, layer, report, jobs,
             a_of=lambda j: (x_region, x_addr + j[0] * e, j[1]),
             b_of=None,
             fields_of=lambda j: {"mult_a": 1, "mult_b": 0, "shift": 0, "act_lo": lo,
                                  "act_hi": hi, "table": 1},
             store=lambda j, oa: gen._dma(Opcode.STORE, Buffer.OBUF, out_region,
                                          out_addr + j[0] * e, oa, 1, j[1] * e, 0,
                                          f"{layer.name}: store {j[0]}+{j[1]}", layer.name))


def emit_mul(gen, layer, report):
    """A MUL layer: ``a * b`` with ``b`` of the same shape or one value per channel."""
    e = gen.e
    q = layer.quant
    a, b = layer.inputs
    c, h, w = gen.graph.shape(a)
    n = c * h * w
    group = h * w if gen.graph.shape(b) != (c, h, w) else 1
    chunk = _chunks(gen, layer, n, 2, 1)
    jobs = []  # (first element, count, first b element, b elements, group)
    if group == 1:
        jobs = [(k, min(chunk, n - k), k, min(chunk, n - k), 1) for k in range(0, n, chunk)]
    elif group <= chunk:
        chunk -= chunk % group
        jobs = [(k, min(chunk, n - k), k // group, min(chunk, n - k) // group, group)
                for k in range(0, n, chunk)]
    else:
        for ch in range(c):
            for j in range(0, group, chunk):
                cnt = min(chunk, group - j)
                jobs.append((ch * group + j, cnt, ch, 1, cnt))
    a_region, a_addr = gen.addr[a]
    b_region, b_addr = gen.addr[b]
    out_region, out_addr = gen.addr[layer.output]
    m, s = int(np.asarray(q.m).reshape(-1)[0]), int(np.asarray(q.s).reshape(-1)[0])
    _run(gen, layer, report, jobs,
         a_of=lambda j: (a_region, a_addr + j[0] * e, j[1]),
         b_of=lambda j: (b_region, b_addr + j[2] * e, j[3]),
         fields_of=lambda j: {"mult_a": m, "mult_b": 0, "shift": s, "act_lo": q.lo,
                              "act_hi": q.hi, "op": EltOp.MUL, "group": j[4],
                              "b_count": j[3]},
         store=lambda j, oa: gen._dma(Opcode.STORE, Buffer.OBUF, out_region,
                                      out_addr + j[0] * e, oa, 1, j[1] * e, 0,
                                      f"{layer.name}: store {j[0]}+{j[1]}", layer.name))


def emit_resize(gen, layer, report):
    """A RESIZE layer: rows widened by a MUL with ones, each stored ``uh`` times."""
    arch, e = gen.arch, gen.e
    x = layer.inputs[0]
    c, h, w = gen.graph.shape(x)
    uh, uw = layer.upsample
    rows = c * h
    ow = w * uw
    # a chunk of R input rows needs R*W*uw ones + R*W inputs in IBUF, R*W*uw results
    per = chunk_elements(arch, rows * w * (uw + 1), 1, True) // (w * (uw + 1))
    per = min(per, chunk_elements(arch, rows * ow, 1, True) // ow)
    if per < 1:
        raise MappingError(
            f"Layer {layer.name!r} (resize): one row of {w} pixels upsampled by {uw} does not "
            f"fit the element-wise buffers; increase ibuf_bytes and obuf_bytes")
    per = min(per, rows)
    ones = gen.image.add_bytes(f"{layer.name}.ones", encode_activations(
        np.ones(per * ow, dtype=np.int64), arch.act_bits).tobytes())
    x_region, x_addr = gen.addr[x]
    out_region, out_addr = gen.addr[layer.output]
    lo, hi = _full(gen)
    jobs = [(r, min(per, rows - r)) for r in range(0, rows, per)]

    def store(job, oa):
        r0, n = job
        for k in range(uh):
            gen._dma(Opcode.STORE, Buffer.OBUF, out_region,
                     out_addr + (r0 * uh + k) * ow * e, oa, n, ow * e, uh * ow * e,
                     f"{layer.name}: rows {r0}+{n} copy {k}", layer.name)

    _run(gen, layer, report, jobs,
         a_of=lambda j: (_WEIGHTS, ones, j[1] * ow),
         b_of=lambda j: (x_region, x_addr + j[0] * w * e, j[1] * w),
         fields_of=lambda j: {"mult_a": 1, "mult_b": 0, "shift": 0, "act_lo": lo,
                              "act_hi": hi, "op": EltOp.MUL, "group": uw, "b_count": j[1] * w},
         store=store)
