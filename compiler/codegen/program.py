"""Code generation: a quantized graph -> instructions, weight image and DDR memory map.

:func:`generate` walks the layers in order and lowers each one:

* conv / depthwise / pointwise / fully connected / pooling: tiled by
  :func:`compiler.mapping.tiling.plan_window`; per tile a LOAD of the input rows
  (halo included), LOADs of the weights and PBUF records of the output-channel
  tile, one COMPUTE and one STORE. A 2x2 stride-2 unpadded max pool that is the
  sole consumer of a layer running on the CONV engine is fused into it (the only
  pool the engines fuse); every other pool is a POOL instruction of its own.
* residual add, concat and stand-alone zero padding: chunks through the ADD
  engine (a concat input is rescaled with ``mult_b = 0``; padding copies the
  interior of a tensor whose zero border lives in the weight image).

The :class:`~compiler.codegen.schedule.Scheduler` inserts the SYNCs (only the
ones the buffer hazards need, so double-buffered tiles overlap load, compute and
store). DDR addresses are emitted relative to the weight and activation regions and
resolved once the program's size (and so the memory map,
:mod:`compiler.codegen.memory`) is known. Which max pools fuse into the layer before
them is decided by :func:`compiler.passes.fuse_pool.plan_pool_fusion`.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from compiler.codegen.decompose import Gather, Scatter, lower_conv, plan_conv
from compiler.codegen.eltwise_ops import emit_mul, emit_resize, emit_table
from compiler.codegen.memory import PAGE, align, plan_memory
from compiler.codegen.schedule import Ring, Scheduler
from compiler.codegen.weights import WeightImage
from compiler.errors import MappingError, QuantizationError
from compiler.ir import WEIGHTED_KINDS, Graph, Layer, OpKind
from compiler.mapping.cost_model import layer_cycles
from compiler.mapping.tiling import (
    WindowOp,
    chunk_elements,
    col_tiles,
    engine_stride,
    plan_window,
    row_tiles,
)
from compiler.passes.fuse_pool import plan_pool_fusion, runs_pointwise
from hw.arch import ArchConfig
from hw.isa import (
    HEADER_BYTES,
    INSTR_BYTES,
    PBUF_ENTRY_BYTES,
    Buffer,
    Engine,
    Instruction,
    Opcode,
    Pool,
    element_bytes,
    field_range,
    qrange,
    weight_element_bytes,
)
from sim import golden

__all__ = ["PAGE", "LayerReport", "Program", "Scheduler", "generate", "plan_memory"]

_REGION_WEIGHTS = "weights"
_REGION_ACTS = "activations"


@dataclass
class LayerReport:
    """What code generation did with one layer (one row of the report)."""
    name: str
    kind: str
    engine: str
    tiles: int = 0
    m_tile: int = 0
    row_tile: int = 0
    col_tile: int = 0
    double_buffered: bool = False
    macs: int = 0
    weight_bytes: int = 0
    instructions: int = 0
    cycles: int = 0
    fused: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Program:
    """Everything :func:`generate` produces.

    Members
    -------
    instructions : list of Instruction
    comments : list of str
        One per instruction (layer and tile), for the listing.
    layer_of : list of str or None
        The layer each instruction belongs to.
    weights : bytes
        ``weights.bin``.
    weights_offset, activations_offset, ddr_bytes : int
        The DDR memory map (the program itself is at offset 0).
    tensors : dict
        Name -> ``{"offset", "shape", "bytes", "region"}`` of every DDR-resident tensor.
    layers : list of LayerReport
    cycles : int
        Predicted cycles of one run.
    """
    instructions: list
    comments: list
    layer_of: list
    weights: bytes
    weights_offset: int
    activations_offset: int
    activations_bytes: int
    ddr_bytes: int
    tensors: dict
    layers: list
    cycles: int
    weight_blocks: list


# Lowering -----------------------------------------------------------------------------

def _params(q, m_out):
    m = np.asarray(q.m, dtype=np.int64).reshape(-1)
    s = np.asarray(q.s, dtype=np.int64).reshape(-1)
    return np.broadcast_to(m, (m_out,)) if m.size == 1 else m, \
        np.broadcast_to(s, (m_out,)) if s.size == 1 else s


def _runs(counts):
    """Maximal runs ``(start, end, value)`` of equal entries of ``counts``."""
    runs, start = [], 0
    for i in range(1, len(counts) + 1):
        if i == len(counts) or counts[i] != counts[start]:
            runs.append((start, i, int(counts[start])))
            start = i
    return runs


def _axis_window(o0, o1, size, k, stride, pad_before):
    """Input span of outputs ``o0 .. o1 - 1`` along one axis: ``(first input, inputs,
    pad before, pad after)``."""
    first = o0 * stride - pad_before
    end = (o1 - 1) * stride - pad_before + k
    i0, i1 = max(0, first), min(size, end)
    return i0, i1 - i0, i0 - first, end - i1


class _Generator:
    def __init__(self, graph: Graph, arch: ArchConfig):
        self.graph = graph
        self.arch = arch
        self.e = element_bytes(arch.act_bits)
        self.we = weight_element_bytes(arch)
        self.full = qrange(arch.act_bits)
        self.sched = Scheduler()
        self.image = WeightImage(arch)
        self.addr: dict[str, tuple[str, int]] = {}  # tensor -> (region, offset)
        self.reports: list[LayerReport] = []
        self.plans: dict = {}  # layer -> ConvPlan of a rewritten convolution (or None)
        self.sources: dict = {}  # layer -> (region, offset) of its rewrite's source
        # tensor -> ((region, offset), Scatter): stored straight into a rewrite's source
        self.redirect: dict = {}
        self.redirected: set = set()

    # checks and transfers ----------------------------------------------------------
    def _check(self, layer: Layer):
        q = layer.quant
        if q is None:
            raise QuantizationError(f"Layer {layer.name!r} is not quantized; quantize the "
                                    f"graph before code generation")
        if q.act_bits != self.arch.act_bits:
            raise MappingError(
                f"Layer {layer.name!r} is quantized to {q.act_bits}-bit activations but the "
                f"arch has act_bits={self.arch.act_bits}; quantize for this arch")
        if layer.kind in WEIGHTED_KINDS and q.weight_bits != self.arch.weight_bits:
            raise MappingError(
                f"Layer {layer.name!r} is quantized to {q.weight_bits}-bit weights but the "
                f"arch has weight_bits={self.arch.weight_bits}; quantize for this arch")

    def _dma(self, opcode, buffer, region, ddr_addr, buf_addr, rows, row_bytes, stride,
             comment, layer):
        if rows > 1 and stride == row_bytes:
            rows, row_bytes = 1, rows * row_bytes
        span = (rows - 1) * stride + row_bytes
        ddr = (region, ddr_addr, ddr_addr + span)
        if buffer is Buffer.PBUF:
            buf = (buffer.name, buf_addr, buf_addr + rows * row_bytes // PBUF_ENTRY_BYTES)
        else:
            buf = (buffer.name, buf_addr, buf_addr + rows * row_bytes)
        fields = {"buffer": buffer, "ddr_addr": ddr_addr,
                  "ddr_stride": stride if rows > 1 else 0, "buf_addr": buf_addr, "rows": rows,
                  "row_bytes": row_bytes}
        if opcode is Opcode.LOAD:
            self.sched.emit(opcode, fields, reads=[ddr], writes=[buf], comment=comment,
                            layer=layer, region=region)
        else:
            self.sched.emit(opcode, fields, reads=[buf], writes=[ddr], comment=comment,
                            layer=layer, region=region)

    def _pipeline(self, jobs, loads, compute, store):
        """Emit ``loads(job)``, ``compute(job, *addrs)``, ``store(job, out)`` for each job,
        with the next job's loads issued before this job's store: the in-order issue
        then overlaps the next loads with this compute, and this store with the next
        compute (the scheduler adds only the SYNCs the buffers need)."""
        pending = None
        for job in jobs:
            addrs = loads(*job)
            if pending is not None:
                store(*pending)
            pending = (*job, compute(*job, *addrs))
        if pending is not None:
            store(*pending)

    # windowed layers --------------------------------------------------------------
    def window(self, layer: Layer, op: WindowOp, *, pool, act, mult=0, shift=0,
               in_base=0, out_base=0, w_off=None, p_off=None, report: LayerReport,
               out_tensor=None, src=None, dst=None, gather=None, scatter=None):
        """Lower one windowed ``op``. ``src`` / ``dst`` ``(region, offset)`` replace the
        layer's input / output tensor; ``gather`` (:class:`~compiler.codegen.decompose.
        Gather`) reads the input channels as shifted windows of the source, ``scatter``
        (:class:`~compiler.codegen.decompose.Scatter`) stores them into a larger plane."""
        arch, e, we = self.arch, self.e, self.we
        target = out_tensor or layer.output
        if dst is None and scatter is None and target in self.redirect and not out_base:
            # the consumer is a rewritten convolution: write its zero-bordered source
            dst, scatter = self.redirect[target]
            if op.out_w != self.graph.shape(target)[2]:
                # a folded 1-D producer: its rows are consecutive pieces of one row
                scatter = Scatter(scatter.plane, op.out_w, scatter.base)
            self.redirected.add(target)
        if op.kind.square_kernel and max(op.kernel) > arch.conv_k_max:
            raise MappingError(
                f"Layer {layer.name!r} ({layer.kind.value}) has a {op.kernel[0]}x{op.kernel[1]} "
                f"kernel but the arch's engines support up to conv_k_max={arch.conv_k_max}; "
                f"set conv_k_max to at least {max(op.kernel)}")
        sizes = {"k_h": max(op.kernel), "stride_h": max(op.stride), "pad_top": max(op.pads),
                 "fpool_h": max(op.fpool), "in_c": op.in_c, "out_c": op.out_c,
                 "in_h": op.in_h, "in_w": op.in_w}
        too_big = [f"{field.split('_')[0]} {value} > {_compute_max(field)}"
                   for field, value in sizes.items() if value > _compute_max(field)]
        if too_big:
            raise MappingError(f"Layer {layer.name!r} has a dimension too large for the "
                               f"COMPUTE instruction fields ({', '.join(too_big)}); reshape the "
                               f"layer to stay within them")
        t = plan_window(op, arch)
        slots = 2 if t.double else 1
        ibuf = Ring(arch.ibuf_bytes, slots)
        obuf = Ring(arch.obuf_bytes, slots)
        wbuf = Ring(arch.wbuf_bytes, slots)
        pbuf = Ring(arch.pbuf_entries, slots)
        in_region, in_addr = src if src is not None else self.addr[layer.inputs[0]]
        out_region, out_addr = dst if dst is not None else \
            self.addr[out_tensor or layer.output]
        in_addr += in_base
        out_addr += out_base
        h, w = op.in_h, op.in_w
        oh, ow = op.out_h, op.out_w
        rts = row_tiles(op, t.row_tile)
        cts = col_tiles(op, t.col_tile)
        mts = [(m0, min(t.m_tile, op.out_c - m0)) for m0 in range(0, op.out_c, t.m_tile)]
        name = layer.name
        state = {"w": None, "x": None}

        def load_weights(m0, mt):
            if state["w"] is not None and state["w"][0] == m0 and len(mts) == 1:
                return state["w"][1:]
            wa = pa = 0
            if op.w_per_out:
                wa = wbuf.take()
                n = mt * op.w_per_out * we
                self._dma(Opcode.LOAD, Buffer.WBUF, _REGION_WEIGHTS,
                          w_off + m0 * op.w_per_out * we, wa, 1, n, 0,
                          f"{name}: weights m{m0}+{mt}", name)
            if op.params:
                pa = pbuf.take()
                self._dma(Opcode.LOAD, Buffer.PBUF, _REGION_WEIGHTS,
                          p_off + m0 * PBUF_ENTRY_BYTES, pa, 1, mt * PBUF_ENTRY_BYTES, 0,
                          f"{name}: params m{m0}+{mt}", name)
            state["w"] = (m0, wa, pa)
            return wa, pa

        def load_input(m0, mt, rt, ct):
            c0, cin = (m0, mt) if op.channelwise else (0, op.in_c)
            key = (c0, cin, rt.in_row, rt.in_rows, ct.in_col, ct.in_cols)
            if state["x"] is not None and state["x"][0] == key:
                return state["x"][1]
            xa = ibuf.take()
            what = f"{name}: input c{c0}+{cin} rows {rt.in_row}+{rt.in_rows}"
            if gather is not None:
                self._gather(gather, in_region, in_addr, xa, c0, cin, rt, ct, what, name)
            elif ct.in_cols == w:
                self._dma(Opcode.LOAD, Buffer.IBUF, in_region,
                          in_addr + (c0 * h + rt.in_row) * w * e, xa, cin, rt.in_rows * w * e,
                          h * w * e, what, name)
            else:  # a column tile: one 2-D transfer per channel
                plane = rt.in_rows * ct.in_cols * e
                for c in range(cin):
                    self._dma(Opcode.LOAD, Buffer.IBUF, in_region,
                              in_addr + (((c0 + c) * h + rt.in_row) * w + ct.in_col) * e,
                              xa + c * plane, rt.in_rows, ct.in_cols * e, w * e,
                              f"{what} cols {ct.in_col}+{ct.in_cols}" if c == 0 else "", name)
            state["x"] = (key, xa)
            return xa

        def compute(m0, mt, rt, ct, wa, pa, xa):
            cin = mt if op.channelwise else op.in_c
            oa = obuf.take()
            # a single output row (column) from a frame exactly k_h (k_w) high (wide) is the
            # same for any stride along that axis: the engines' equal strides then apply
            single_row = (rt.out_rows * op.fpool[0] == 1
                          and rt.in_rows + rt.pad_top + rt.pad_bottom == op.kernel[0])
            single_col = (ct.out_cols * op.fpool[1] == 1
                          and ct.in_cols + ct.pad_left + ct.pad_right == op.kernel[1])
            stride = engine_stride(op, single_row, single_col)
            fields = {
                "engine": op.engine, "pool": pool, "in_c": cin, "out_c": mt,
                "in_h": rt.in_rows, "in_w": ct.in_cols, "out_h": rt.out_rows,
                "out_w": ct.out_cols, "k_h": op.kernel[0], "k_w": op.kernel[1],
                "stride_h": stride[0], "stride_w": stride[1], "pad_top": rt.pad_top,
                "pad_left": ct.pad_left, "pad_bottom": rt.pad_bottom,
                "pad_right": ct.pad_right, "fpool_h": op.fpool[0], "fpool_w": op.fpool[1],
                "act_lo": act[0], "act_hi": act[1], "mult": mult, "shift": shift,
                "ibuf_addr": xa, "wbuf_addr": wa, "pbuf_addr": pa, "obuf_addr": oa}
            reads = [("IBUF", xa, xa + cin * rt.in_rows * ct.in_cols * e)]
            if op.w_per_out:
                reads.append(("WBUF", wa, wa + mt * op.w_per_out * we))
            if op.params:
                reads.append(("PBUF", pa, pa + mt))
            out_bytes = mt * rt.out_rows * ct.out_cols * e
            cols = "" if ct.out_cols == ow else f" cols {ct.out_col}+{ct.out_cols}"
            self.sched.emit(Opcode.COMPUTE, fields, reads=reads,
                            writes=[("OBUF", oa, oa + out_bytes)],
                            comment=f"{name}: tile m{m0}+{mt} rows {rt.out_row}+{rt.out_rows}"
                                    f"{cols}", layer=name)
            return oa

        def store(m0, mt, rt, ct, oa):
            what = f"{name}: store m{m0}+{mt} rows {rt.out_row}+{rt.out_rows}"
            if scatter is not None:
                self._scatter(scatter, out_region, out_addr, oa, m0, mt, rt, ct, what, name)
                return
            elif ct.out_cols == ow:
                self._dma(Opcode.STORE, Buffer.OBUF, out_region,
                          out_addr + (m0 * oh + rt.out_row) * ow * e, oa, mt,
                          rt.out_rows * ow * e, oh * ow * e, what, name)
                return
            plane = rt.out_rows * ct.out_cols * e
            for j in range(mt):
                self._dma(Opcode.STORE, Buffer.OBUF, out_region,
                          out_addr + (((m0 + j) * oh + rt.out_row) * ow + ct.out_col) * e,
                          oa + j * plane, rt.out_rows, ct.out_cols * e, ow * e,
                          f"{what} cols {ct.out_col}+{ct.out_cols}" if j == 0 else "", name)

        if op.channelwise or not t.rows_outer:
            jobs = [(m0, mt, rt, ct) for ct in cts for m0, mt in mts for rt in rts]
        else:
            jobs = [(m0, mt, rt, ct) for ct in cts for rt in rts for m0, mt in mts]

        def loads(m0, mt, rt, ct):
            if op.channelwise or not t.rows_outer:
                wa, pa = load_weights(m0, mt)
                return wa, pa, load_input(m0, mt, rt, ct)
            xa = load_input(0, 0, rt, ct)
            return (*load_weights(m0, mt), xa)

        self._pipeline(jobs, loads, compute, store)
        report.tiles += len(mts) * len(rts) * len(cts)
        report.m_tile = max(report.m_tile, t.m_tile)
        report.row_tile = max(report.row_tile, t.row_tile)
        report.col_tile = max(report.col_tile, t.col_tile)
        report.double_buffered = report.double_buffered or t.double

    def _gather(self, g, region, base, xa, c0, cin, rt, ct, what, name):
        """LOADs of virtual channels ``c0 .. c0 + cin`` of ``g`` (a row / column tile)."""
        e = self.e
        plane = rt.in_rows * ct.in_cols * e
        contiguous = rt.in_rows == 1 or ct.in_cols == g.rstride
        v = c0
        while v < c0 + cin:
            grp, c = divmod(v, g.cs)
            n = min(c0 + cin - v, g.cs - c)  # channels left in this group
            first = base + (c * g.plane + g.bases[grp] + rt.in_row * g.rstride + ct.in_col) * e
            dst = xa + (v - c0) * plane
            if contiguous:
                self._dma(Opcode.LOAD, Buffer.IBUF, region, first, dst, n, plane,
                          g.plane * e, f"{what} group {grp}", name)
            elif rt.in_rows * g.rstride == g.plane:
                # full-height columns: the rows of consecutive channels are equally spaced
                self._dma(Opcode.LOAD, Buffer.IBUF, region, first, dst, n * rt.in_rows,
                          ct.in_cols * e, g.rstride * e, f"{what} group {grp}", name)
            else:
                for j in range(n):
                    self._dma(Opcode.LOAD, Buffer.IBUF, region, first + j * g.plane * e,
                              dst + j * plane, rt.in_rows, ct.in_cols * e, g.rstride * e,
                              f"{what} group {grp}" if j == 0 else "", name)
            v += n

    def _scatter(self, s, region, base, oa, m0, mt, rt, ct, what, name):
        """STOREs of output channels ``m0 .. m0 + mt`` of a tile into ``s``'s plane."""
        e = self.e
        plane = rt.out_rows * ct.out_cols * e
        first = base + (s.base + m0 * s.plane + rt.out_row * s.rstride + ct.out_col) * e
        if rt.out_rows == 1 or ct.out_cols == s.rstride:
            self._dma(Opcode.STORE, Buffer.OBUF, region, first, oa, mt, plane, s.plane * e,
                      what, name)
            return
        if rt.out_rows * s.rstride == s.plane:
            # full-height columns: the rows of consecutive channels are equally spaced
            self._dma(Opcode.STORE, Buffer.OBUF, region, first, oa, mt * rt.out_rows,
                      ct.out_cols * e, s.rstride * e, what, name)
            return
        for j in range(mt):
            self._dma(Opcode.STORE, Buffer.OBUF, region, first + j * s.plane * e,
                      oa + j * plane, rt.out_rows, ct.out_cols * e, s.rstride * e,
                      what if j == 0 else "", name)

    def conv_plan(self, layer, fused):
        """The rewrite (:class:`~compiler.codegen.decompose.ConvPlan`) a conv / depthwise
        layer needs, or ``None`` if the engines run it as it is."""
        if layer.name in self.plans:
            return self.plans[layer.name]
        plan = None
        if layer.kind in (OpKind.CONV, OpKind.DEPTHWISE) and not runs_pointwise(layer):
            c, h, w = self.graph.shape(layer.inputs[0])
            m_out = self.graph.shape(layer.output)[0]
            fpool = fused.kernel if fused is not None else (1, 1)
            groups = layer.groups
            direct = False
            if layer.kind is OpKind.DEPTHWISE:
                op = WindowOp(layer.name, Engine.DEPTHWISE, c, h, w, m_out, layer.kernel,
                              layer.stride, layer.pads, fpool, channelwise=True)
                direct = max(op.kernel) <= self.arch.conv_k_max and \
                    engine_stride(op, op.conv_h == 1, op.conv_w == 1) is not None
                groups = c
            if not direct:
                plan = plan_conv(layer.name, c // groups, h, w, m_out // groups, layer.kernel,
                                 layer.stride, layer.pads, fpool, self.arch, groups=groups)
                if plan.method == "direct":
                    plan = None
        self.plans[layer.name] = plan
        return plan

    def _rewritten(self, layer, fused, report, weight, bias, mult, shift) -> bool:
        """Lower a conv / depthwise layer the engines cannot run as it is (kernel above
        ``conv_k_max``, a stride they do not run, or a 1-D layer that runs faster folded)
        through :mod:`compiler.codegen.decompose`; ``False`` if it runs directly."""
        plan = self.conv_plan(layer, fused)
        if plan is None:
            return False
        c = self.graph.shape(layer.inputs[0])[0]
        h, w = self.graph.shape(layer.inputs[0])[1:]
        m_out = weight.shape[0]
        groups = c if layer.kind is OpKind.DEPTHWISE else layer.groups
        q = layer.quant
        p_off = self.image.add_params(layer.name, bias, mult, shift)
        kh, kw = layer.kernel
        report.macs = m_out * (c // groups) * kh * kw * plan.conv_hw[0] * plan.conv_hw[1]
        report.weight_bytes = weight.size * self.we + m_out * PBUF_ENTRY_BYTES
        lower_conv(self, layer, plan, c=c // groups, h=h, w=w, groups=groups, weight=weight,
                   w_store=self.image.add_weights, p_off=p_off,
                   pool=Pool.MAX if fused is not None else Pool.NONE, act=(q.lo, q.hi),
                   report=report, out_tensor=fused.output if fused is not None else None)
        return True

    def weighted(self, layer: Layer, fused: Layer | None, report: LayerReport):
        q = layer.quant
        c, h, w = self.graph.shape(layer.inputs[0])
        weight = np.asarray(q.weight, dtype=np.int64)
        m_out = weight.shape[0]
        bias = np.zeros(m_out, dtype=np.int64) if q.bias is None else \
            np.asarray(q.bias, dtype=np.int64)
        mult, shift = _params(q, m_out)
        if self._rewritten(layer, fused, report, weight, bias, mult, shift):
            return
        w_off = self.image.add_weights(layer.name, weight)
        p_off = self.image.add_params(layer.name, bias, mult, shift)
        report.weight_bytes = weight.size * self.we + m_out * PBUF_ENTRY_BYTES
        lo, hi = q.lo, q.hi
        fpool = (1, 1)
        pool = Pool.NONE
        out_tensor = layer.output
        if fused is not None:
            fpool = fused.kernel
            pool = Pool.MAX
            out_tensor = fused.output
        kind = layer.kind
        if kind is OpKind.FC:
            op = WindowOp(layer.name, Engine.POINTWISE, c * h * w, 1, 1, m_out, (1, 1), (1, 1),
                          (0, 0, 0, 0), w_per_out=c * h * w)
            report.engine = "pointwise"
            report.macs = m_out * c * h * w
            self.window(layer, op, pool=pool, act=(lo, hi), w_off=w_off, p_off=p_off,
                        report=report, out_tensor=out_tensor)
            return
        kh, kw = layer.kernel
        if kind is OpKind.DEPTHWISE:
            op = WindowOp(layer.name, Engine.DEPTHWISE, c, h, w, m_out, layer.kernel,
                          layer.stride, layer.pads, fpool, channelwise=True, w_per_out=kh * kw)
            report.engine = "depthwise"
            report.macs = m_out * kh * kw * op.conv_h * op.conv_w
            self.window(layer, op, pool=pool, act=(lo, hi), w_off=w_off, p_off=p_off,
                        report=report, out_tensor=out_tensor)
            return
        groups = layer.groups
        cg, mg = c // groups, m_out // groups
        engine = Engine.POINTWISE if runs_pointwise(layer) else Engine.CONV
        report.engine = engine.name.lower()
        for g in range(groups):
            op = WindowOp(layer.name, engine, cg, h, w, mg, layer.kernel, layer.stride,
                          layer.pads, fpool, w_per_out=cg * kh * kw)
            report.macs += mg * cg * kh * kw * op.conv_h * op.conv_w
            self.window(layer, op, pool=pool, act=(lo, hi),
                        in_base=g * cg * h * w * self.e,
                        out_base=g * mg * op.out_h * op.out_w * self.e,
                        w_off=w_off + g * mg * cg * kh * kw * self.we,
                        p_off=p_off + g * mg * PBUF_ENTRY_BYTES, report=report,
                        out_tensor=out_tensor)

    def pooling(self, layer: Layer, report: LayerReport):
        q = layer.quant
        c, h, w = self.graph.shape(layer.inputs[0])
        report.engine = "pool"
        if layer.kind is OpKind.MAXPOOL:
            op = WindowOp(layer.name, Engine.POOL, c, h, w, c, layer.kernel, layer.stride,
                          layer.pads, channelwise=True, params=False)
            self.window(layer, op, pool=Pool.MAX, act=self.full, report=report)
            return
        if layer.kind is OpKind.AVGPOOL and layer.count_pads is not None:
            self._counted_avgpool(layer, report)
            return
        if layer.kind is OpKind.GAP:
            kernel, stride, pads = (h, w), (1, 1), (0, 0, 0, 0)
        else:
            kernel, stride, pads = layer.kernel, layer.stride, layer.pads
        mult, shift = _params(q, c)
        # one instruction carries one multiplier: split into runs of equal (m, s)
        start = 0
        while start < c:
            end = start + 1
            while end < c and mult[end] == mult[start] and shift[end] == shift[start]:
                end += 1
            op = WindowOp(layer.name, Engine.POOL, end - start, h, w, end - start, kernel,
                          stride, pads, channelwise=True, params=False)
            oh, ow = op.out_h, op.out_w
            self.window(layer, op, pool=Pool.AVG, act=(q.lo, q.hi), mult=int(mult[start]),
                        shift=int(shift[start]), in_base=start * h * w * self.e,
                        out_base=start * oh * ow * self.e, report=report)
            start = end

    def _counted_avgpool(self, layer: Layer, report: LayerReport):
        """Average pooling with per-position divisors (``count_pads``): the output plane
        is cut into rectangles of equal divisor (interior, border rows and columns,
        corners), each an ordinary POOL over its input window with the multiplier and
        shift of its divisor; :func:`sim.golden.avg_pool2d_counted` bit for bit."""
        q = layer.quant
        if q.div_m is None or q.div_s is None:
            raise QuantizationError(f"Layer {layer.name!r} (avgpool) has per-position "
                                    f"divisors but no per-divisor multipliers; quantize the "
                                    f"graph with this version of the quantize pass")
        c, h, w = self.graph.shape(layer.inputs[0])
        (kh, kw), (sh, sw) = layer.kernel, layer.stride
        top, left, bottom, right = layer.pads
        ct, cl, cb, cr = layer.count_pads
        rows = golden.window_counts(h, kh, sh, (top, bottom), (ct, cb))
        cols = golden.window_counts(w, kw, sw, (left, right), (cl, cr))
        oh, ow = len(rows), len(cols)
        row_runs, col_runs = _runs(rows), _runs(cols)
        # Painted in four passes, later ones overwriting (STOREs complete in order): the
        # main row run across the full width, then every other column run over the full
        # height, every other row run across the full width, and their crossings. Full
        # rows and full columns move as one DMA each; only the crossings (corners) are
        # gathered channel by channel.
        mid_r = max(row_runs, key=lambda run: run[1] - run[0])
        mid_c = max(col_runs, key=lambda run: run[1] - run[0])
        every_r, every_c = (0, oh, mid_r[2]), (0, ow, mid_c[2])
        side_r = [run for run in row_runs if run != mid_r]
        side_c = [run for run in col_runs if run != mid_c]
        rects = [(mid_r, every_c, mid_r[2] * mid_c[2])]
        rects += [(every_r, run, mid_r[2] * run[2]) for run in side_c]
        rects += [(run, every_c, run[2] * mid_c[2]) for run in side_r]
        rects += [(r, cc, r[2] * cc[2]) for r in side_r for cc in side_c]
        for (r0, r1, _), (c0, c1, _), n in rects:
            y0, ny, pt, pb = _axis_window(r0, r1, h, kh, sh, top)
            x0, nx, pl, pr = _axis_window(c0, c1, w, kw, sw, left)
            op = WindowOp(layer.name, Engine.POOL, c, ny, nx, c, layer.kernel,
                          layer.stride, (pt, pl, pb, pr), channelwise=True, params=False)
            assert (op.out_h, op.out_w) == (r1 - r0, c1 - c0)
            self.window(layer, op, pool=Pool.AVG, act=(q.lo, q.hi), mult=int(q.div_m[n]),
                        shift=int(q.div_s[n]),
                        gather=Gather(c, h * w, w, (y0 * w + x0,)),
                        scatter=Scatter(oh * ow, ow, r0 * ow + c0), report=report)
        report.engine = "pool"

    def _elementwise(self, layer, sources, report, *, lo, hi, shift, row=1):
        """Chunks of ``sources`` through the ADD engine, software-pipelined.

        ``sources``: list of ``(a, b or None, mult_a, mult_b, n elements, out offset)``;
        chunks are multiples of ``row`` elements.
        """
        arch, e = self.arch, self.e
        report.engine = "eltwise"
        name = layer.name
        out_region, out_addr = self.addr[layer.output]
        ibuf = Ring(arch.ibuf_bytes, 2)
        obuf = Ring(arch.obuf_bytes, 2)
        jobs = []
        for a, b, ma, mb, n, o_off in sources:
            chunk = chunk_elements(arch, n, 2 if b is not None else 1, True)
            if chunk < row:
                raise MappingError(
                    f"Layer {name!r} ({layer.kind.value}): one row of {row} elements does not "
                    f"fit the element-wise buffers; increase ibuf_bytes and obuf_bytes")
            chunk -= chunk % row
            jobs += [(a, b, ma, mb, k0, min(chunk, n - k0), o_off) for k0 in range(0, n, chunk)]

        def loads(a, b, ma, mb, k0, cnt, o_off):
            base = ibuf.take()
            a_region, a_addr = self.addr[a]
            self._dma(Opcode.LOAD, Buffer.IBUF, a_region, a_addr + k0 * e, base, 1, cnt * e, 0,
                      f"{name}: {a} {k0}+{cnt}", name)
            b_addr = base
            if b is not None:
                b_region, b_ddr = self.addr[b]
                b_addr = base + cnt * e
                self._dma(Opcode.LOAD, Buffer.IBUF, b_region, b_ddr + k0 * e, b_addr, 1,
                          cnt * e, 0, f"{name}: {b} {k0}+{cnt}", name)
            return base, b_addr

        def compute(a, b, ma, mb, k0, cnt, o_off, a_addr, b_addr):
            oa = obuf.take()
            reads = [("IBUF", a_addr, a_addr + cnt * e), ("IBUF", b_addr, b_addr + cnt * e)]
            fields = {"shift": shift, "a_addr": a_addr, "b_addr": b_addr, "out_addr": oa,
                      "count": cnt, "mult_a": ma, "mult_b": mb, "act_lo": lo, "act_hi": hi}
            self.sched.emit(Opcode.ADD, fields,
                            reads=reads, writes=[("OBUF", oa, oa + cnt * e)],
                            comment=f"{name}: elements {k0}+{cnt}", layer=name)
            return oa

        def store(a, b, ma, mb, k0, cnt, o_off, oa):
            if layer.kind is OpKind.PAD:
                self._store_padded(layer, k0, cnt, oa, out_region, out_addr)
            else:
                self._dma(Opcode.STORE, Buffer.OBUF, out_region, out_addr + o_off + k0 * e, oa,
                          1, cnt * e, 0, f"{name}: store {k0}+{cnt}", name)

        self._pipeline(jobs, loads, compute, store)
        report.tiles += len(jobs)

    def _store_padded(self, layer, k0, cnt, oa, region, out_addr):
        # The chunk holds whole rows of the unpadded input (chunks are row aligned).
        e = self.e
        _, h, w = self.graph.shape(layer.inputs[0])
        top, left, bottom, right = layer.pads
        hp, wp = h + top + bottom, w + left + right
        row0, rows = k0 // w, cnt // w
        r = 0
        while r < rows:
            ch, y = divmod(row0 + r, h)
            n = min(rows - r, h - y)  # rows left in this channel
            self._dma(Opcode.STORE, Buffer.OBUF, region,
                      out_addr + ((ch * hp + top + y) * wp + left) * e, oa + r * w * e, n,
                      w * e, wp * e, f"{layer.name}: store channel {ch} rows {y}+{n}",
                      layer.name)
            r += n

    def add(self, layer: Layer, report: LayerReport):
        q = layer.quant
        n = math.prod(self.graph.shape(layer.output))
        ma, mb = (int(v) for v in q.input_m)
        self._elementwise(layer, [(layer.inputs[0], layer.inputs[1], ma, mb, n, 0)],
                          report, lo=q.lo, hi=q.hi, shift=int(np.asarray(q.s).reshape(-1)[0]))

    def concat(self, layer: Layer, report: LayerReport):
        q = layer.quant
        s = np.asarray(q.s, dtype=np.int64).reshape(-1)
        if s.size > 1 and len(set(s.tolist())) > 1:
            sources_shift = s.tolist()
        else:
            sources_shift = [int(s[0])] * len(layer.inputs)
        offset = 0
        for t, m, sh in zip(layer.inputs, q.input_m, sources_shift):
            n = math.prod(self.graph.shape(t))
            self._elementwise(layer, [(t, None, int(m), 0, n, offset)], report,
                              lo=q.lo, hi=q.hi, shift=int(sh))
            offset += n * self.e

    def pad(self, layer: Layer, report: LayerReport):
        c, h, w = self.graph.shape(layer.inputs[0])
        # an identity ADD copies whole rows into the interior of the zeroed output
        self._elementwise(layer, [(layer.inputs[0], None, 1, 0, c * h * w, 0)], report,
                          lo=self.full[0], hi=self.full[1], shift=0, row=w)


def _compute_max(field: str) -> int:
    """Largest value the COMPUTE instruction's ``field`` holds."""
    return field_range(Opcode.COMPUTE, field)[1]


def generate(graph: Graph, arch: ArchConfig) -> Program:
    """Lower a quantized graph to a program for ``arch``.

    Raises
    ------
    MappingError
        A layer cannot be mapped or tiled onto ``arch`` (the message names the
        layer, the resource and what to change).
    QuantizationError
        The graph is not quantized, or not for ``arch``'s widths.
    """
    gen = _Generator(graph, arch)
    for layer in graph.layers:
        gen._check(layer)
    e = gen.e
    # Steps: layers with a fused max pool folded into their producer.
    fused = plan_pool_fusion(graph)
    skipped = {pool.name for pool in fused.values()}
    steps = [layer for layer in graph.layers if layer.name not in skipped]

    def produced(layer):  # the tensor a step writes
        return fused[layer.name].output if layer.name in fused else layer.output

    # Lifetimes of DDR-resident activation tensors.
    first, last, sizes = {}, {}, {}
    for t in graph.inputs:
        first[t], last[t] = -1, -1
    pad_outputs = {layer.output for layer in steps if layer.kind is OpKind.PAD}
    for i, layer in enumerate(steps):
        t = produced(layer)
        first.setdefault(t, i)
        last.setdefault(t, i)
        for s in layer.inputs:
            last[s] = max(last.get(s, i), i)
    end = len(steps)
    for t in graph.outputs:
        last[t] = end
    for t in first:
        if t not in pad_outputs:
            sizes[t] = math.prod(graph.shape(t)) * e
    act_offsets, act_bytes = plan_memory(sizes, first, last)
    for t, off in act_offsets.items():
        gen.addr[t] = (_REGION_ACTS, off)
    for t in pad_outputs:
        gen.addr[t] = (_REGION_WEIGHTS,
                       gen.image.add_zeros(f"{t}.padded", math.prod(graph.shape(t)) * e))

    # Rewritten convolutions whose zero-padded source the producing layer can write
    # directly (its only consumer): the producer's STORE scatters into the source's
    # interior and the rewrite needs no copy pass.
    consumers = Counter(t for layer in steps for t in layer.inputs)
    producer = {produced(layer): layer for layer in steps}
    for layer in steps:
        plan = gen.conv_plan(layer, fused.get(layer.name)) \
            if layer.kind in (OpKind.CONV, OpKind.DEPTHWISE) else None
        if plan is None or plan.phases != (1, 1):
            continue
        t = layer.inputs[0]
        src = producer.get(t)
        if (src is None or t in graph.outputs or consumers[t] != 1
                or src.kind not in (OpKind.CONV, OpKind.POINTWISE, OpKind.MAXPOOL)
                or src.groups != 1):
            continue
        ctot, hs, ws = plan.src
        off = gen.image.add_zeros(f"{layer.name}.source", ctot * hs * ws * e)
        gen.sources[layer.name] = (_REGION_WEIGHTS, off)
        gen.redirect[t] = ((_REGION_WEIGHTS, off),
                           Scatter(hs * ws, ws, plan.pads[0] * ws + plan.pads[1]))

    for layer in steps:
        report = LayerReport(layer.name, layer.kind.value, "")
        pool = fused.get(layer.name)
        if pool is not None:
            report.fused.append(pool.name)
        if layer.kind in WEIGHTED_KINDS:
            gen.weighted(layer, pool, report)
        elif layer.kind in (OpKind.MAXPOOL, OpKind.AVGPOOL, OpKind.GAP):
            gen.pooling(layer, report)
        elif layer.kind is OpKind.ADD:
            gen.add(layer, report)
        elif layer.kind is OpKind.CONCAT:
            gen.concat(layer, report)
        elif layer.kind is OpKind.PAD:
            gen.pad(layer, report)
        elif layer.kind is OpKind.TABLE:
            emit_table(gen, layer, report)
        elif layer.kind is OpKind.MUL:
            emit_mul(gen, layer, report)
        elif layer.kind is OpKind.RESIZE:
            emit_resize(gen, layer, report)
        else:
            raise MappingError(f"Layer {layer.name!r} has kind {layer.kind.value!r}, which no "
                               f"engine implements")
        gen.reports.append(report)
    gen.sched.end()

    # Memory map: program at 0, then weights, then activations.
    items = gen.sched.items
    program_bytes = HEADER_BYTES + len(items) * INSTR_BYTES
    weights = gen.image.tobytes()
    weights_offset = align(program_bytes, PAGE)
    acts_offset = align(weights_offset + len(weights), PAGE)
    ddr_bytes = align(acts_offset + act_bytes, PAGE)
    base = {_REGION_WEIGHTS: weights_offset, _REGION_ACTS: acts_offset}
    ddr_limit = min(1 << arch.axi_addr_bits, field_range(Opcode.LOAD, "ddr_addr")[1] + 1)
    if ddr_bytes > ddr_limit:
        raise MappingError(f"The DDR image needs {ddr_bytes} bytes, more than the "
                           f"{ddr_limit} bytes the {arch.axi_addr_bits}-bit AXI address space "
                           f"and the DMA address fields reach")
    instructions, comments, layer_of = [], [], []
    for opcode, fields, comment, layer, region in items:
        if region is not None:
            fields = dict(fields, ddr_addr=fields["ddr_addr"] + base[region])
        instructions.append(Instruction(opcode, fields))
        comments.append(comment)
        layer_of.append(layer)

    cycles, total = layer_cycles(instructions, layer_of, arch)
    counts = Counter(layer_of)
    for report in gen.reports:
        report.cycles = cycles.get(report.name, 0)
        report.instructions = counts[report.name]

    tensors = {}
    for t, (region, off) in gen.addr.items():
        tensors[t] = {"offset": base[region] + off, "shape": list(graph.shape(t)),
                      "bytes": math.prod(graph.shape(t)) * e, "region": region,
                      "scale": graph.tensors[t].scale}
    return Program(instructions=instructions, comments=comments, layer_of=layer_of,
                   weights=weights, weights_offset=weights_offset,
                   activations_offset=acts_offset, activations_bytes=act_bytes,
                   ddr_bytes=ddr_bytes, tensors=tensors, layers=gen.reports, cycles=total,
                   weight_blocks=gen.image.blocks)

