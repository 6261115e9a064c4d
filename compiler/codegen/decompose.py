"""Convolutions the engines cannot run directly, rewritten exactly onto them.

The conv engine runs a ``k x k`` kernel (``k <= conv_k_max``) at stride 1 or 2 and
accumulates over all its input channels before it requantizes once. Every other
convolution is rewritten as **one** such engine convolution over *virtual input
channels*, so that the sum of all the kernel's taps still forms in the engine's
accumulator and the requantization happens once, at the end: the result is the
direct convolution, bit for bit.

A virtual channel is a window of a source tensor ``S`` in DDR, shifted by a
per-group offset: virtual channel ``g * Cs + c`` at ``(r, col)`` is
``S_flat[c * plane + base[g] + r * rstride + col]`` (:class:`Gather`). The LOADs of
the virtual convolution fetch these windows (2-D transfers), the weights are
rearranged to match, and nothing else changes.

Three rewrites, chosen per layer by predicted cycles (:func:`plan_conv`):

* **split** -- a ``K x K`` kernel larger than the engine's is cut into ``nb x nb``
  sub-kernels of ``k = ceil(K / nb)`` (zero taps where the grid overhangs ``K``); each
  sub-kernel ``(A, B)`` reads the zero-padded input shifted by ``(A k, B k)``, which is
  one virtual channel group. ``S`` is the explicitly zero-padded input (a POOL 1x1
  identity pass writes the interior of a zero-bordered tensor).
* **polyphase** (space to depth) -- a stride ``s`` the engine does not run: phase
  ``(p, q)`` of the padded input, ``x_pad[c, i s + p, j s + q]``, becomes its own set of
  channels (a POOL 1x1 stride ``s`` pass per phase writes them into ``S``), and the
  convolution becomes a stride-1 one with kernel ``ceil(K / s)`` over ``s * s * C``
  channels (split again if that is still too large). The MACs stay those of the
  direct convolution up to the rounding of ``K / s``.
* **fold** -- a 1-D convolution (one input row, a ``1 x K`` kernel, stride 1) whose
  signal is folded into ``R`` rows of ``L`` outputs: row ``r`` of the virtual frame is
  the padded signal from ``r L`` on (a 2-D LOAD whose row stride ``L`` is shorter than
  its rows, so the rows overlap by the kernel's reach). The engine then streams
  ``(R + k - 1) x (L + k - 1)`` pixels for ``R L`` outputs instead of a ``k``-row frame
  in which only one row carries data; the ``R x L`` output is the ``1 x RL`` output,
  byte for byte.

Scratch tensors (the padded input and the phases) live in zero-filled regions of the
weight image: their borders are never written, so they stay zero across runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from compiler.errors import MappingError
from compiler.mapping.tiling import WindowOp, engine_stride, plan_window
from hw.arch import ArchConfig
from hw.isa import (
    ENGINE_STRIDES,
    PBUF_ENTRY_BYTES,
    Engine,
    Pool,
    engine_kernel,
    qrange,
    window_out,
)
from sim.timing import dma_cycles, fetch_cycles

__all__ = ["ConvPlan", "Gather", "Scatter", "lower_conv", "plan_conv", "virtual_weights"]


@dataclass(frozen=True)
class Gather:
    """Virtual input channels read from a source tensor (see the module docstring).

    Virtual channel ``g * cs + c`` at ``(r, col)`` is the source element
    ``c * plane + bases[g] + r * rstride + col``."""
    cs: int
    plane: int
    rstride: int
    bases: tuple


@dataclass(frozen=True)
class Scatter:
    """Output channel ``m`` at ``(r, col)`` goes to destination element
    ``base + m * plane + r * rstride + col``."""
    plane: int
    rstride: int
    base: int


@dataclass(frozen=True)
class ConvPlan:
    """How one convolution runs on the conv engine.

    ``method`` is ``"direct"`` (as is), ``"split"``, ``"polyphase"`` or ``"fold"``
    (a 1-D fold may also split or take phases: ``pre`` and ``groups`` say). The
    virtual convolution (per conv group) is ``op``; ``src`` the scratch source
    ``(C_total, Hs, Ws)`` the pre-pass writes (``None`` for direct); ``phases``
    ``(fh, fw)`` the space-to-depth factors; ``sub`` the sub-kernel ``(kvh, kvw)`` and
    ``nb`` the sub-kernel grid; ``fold`` ``(R, L)`` or ``None``.
    """
    method: str
    op: WindowOp
    cycles: int
    pre_cycles: int = 0
    pads: tuple = (0, 0, 0, 0)
    src: tuple | None = None
    phases: tuple = (1, 1)
    sub: tuple = (1, 1)
    nb: tuple = (1, 1)
    fold: tuple | None = None
    conv_hw: tuple = (1, 1)

    def describe(self) -> str:
        k = f"{self.sub[0]}x{self.sub[1]}"
        parts = [self.method]
        if self.nb != (1, 1):
            parts.append(f"{self.nb[0] * self.nb[1]} sub-kernels of {k}")
        if self.phases != (1, 1):
            parts.append(f"{self.phases[0]}x{self.phases[1]} phases")
        if self.fold is not None:
            parts.append(f"folded {self.fold[0]}x{self.fold[1]}")
        return ", ".join(parts)


def _cdiv(a, b):
    return -(-a // b)


def _split(k: int, k_max: int) -> tuple[int, int]:
    """``(nb, sub)``: the fewest sub-kernels of at most ``k_max`` taps covering ``k``."""
    nb = _cdiv(k, k_max)
    return nb, _cdiv(k, nb)


def _direct_ok(op: WindowOp, arch: ArchConfig) -> bool:
    if max(op.kernel) > arch.conv_k_max:
        return False
    return engine_stride(op, op.conv_h == 1, op.conv_w == 1) is not None


def _tiling_cycles(op, arch):
    try:
        return plan_window(op, arch).cycles
    except MappingError:
        return None


def _gather_extra(op: WindowOp, arch: ArchConfig, gathers: int, cs: int, rows_one: bool):
    """Issue and setup cycles of the extra LOADs a gathered tile needs."""
    try:
        t = plan_window(op, arch)
    except MappingError:
        return None
    tiles = _cdiv(op.out_h, t.row_tile) * _cdiv(op.out_w, t.col_tile)
    per_tile = gathers if rows_one else gathers * cs
    return tiles * max(0, per_tile - 1) * (fetch_cycles(arch) + dma_cycles(1, 1, arch))


def _pool_pass_cycles(c, h, w, stride, arch):
    if h < 1 or w < 1:
        return 0
    op = WindowOp("pass", Engine.POOL, c, h, w, c, (1, 1), stride, (0, 0, 0, 0),
                  channelwise=True, params=False)
    return _tiling_cycles(op, arch)


def plan_conv(name, c, h, w, m, kernel, stride, pads, fpool, arch: ArchConfig,
              groups: int = 1) -> ConvPlan:
    """The cheapest exact way to run one (per-group) convolution on the conv engine.

    ``c`` and ``m`` are the input and output channels of one group, ``groups`` the
    number of groups (the pre-pass covers all ``groups * c`` channels).

    Raises
    ------
    MappingError
        If no rewrite fits the arch's buffers (naming the layer).
    """
    kh, kw = kernel
    sh, sw = stride
    direct = WindowOp(name, Engine.CONV, c, h, w, m, kernel, stride, pads, fpool,
                      w_per_out=c * kh * kw)
    conv_h = window_out(h, kh, sh, pads[0], pads[2])
    conv_w = window_out(w, kw, sw, pads[1], pads[3])
    if conv_h < 1 or conv_w < 1:
        raise MappingError(f"Layer {name!r}: the {kh}x{kw} kernel is larger than the padded "
                           f"{h}x{w} input")
    ctot = groups * c
    cands = []
    direct_error = None
    if _direct_ok(direct, arch):
        try:
            cyc = plan_window(direct, arch).cycles
            cands.append(ConvPlan("direct", direct, groups * cyc, conv_hw=(conv_h, conv_w)))
        except MappingError as e:
            direct_error = e
    km = arch.conv_k_max
    one_d = h == 1 and kh == 1 and pads[0] == 0 and pads[2] == 0
    for phased in (False, True):
        if phased:
            if stride == (1, 1):
                continue
            fh, fw, se = sh, sw, 1
        else:
            fh, fw = 1, 1
            se = sh if sh == sw else None
            if one_d and conv_h == 1:
                se = sw
            if se not in ENGINE_STRIDES:
                continue
        ke_h, ke_w = _cdiv(kh, fh), _cdiv(kw, fw)
        (nbh, kvh), (nbw, kvw) = _split(ke_h, km), _split(ke_w, km)
        if engine_kernel(kvh, kvw) > km:
            continue
        nphase = fh * fw
        bases_n = nbh * nbw * nphase
        for fold in (False, True):
            if fold and not (one_d and se == 1 and fpool == (1, 1) and conv_w > 1):
                continue
            if not fold:
                hv = (conv_h - 1) * se + kvh
                wv = (conv_w - 1) * se + kvw
                hs_need = (nbh - 1) * kvh + hv
                ws_need = (nbw - 1) * kvw + wv
                layouts = [(None, hv, wv, hs_need, ws_need)]
            else:
                layouts = []
                for rows in _divisors(conv_w):
                    if rows == 1:
                        continue
                    L = conv_w // rows
                    layouts.append(((rows, L), rows, L + kvw - 1, 1,
                                    conv_w + nbw * kvw - 1))
            for fold_rl, hv, wv, hs_need, ws_need in layouts:
                if phased:
                    hs = max(hs_need, _cdiv(pads[0] + h, fh))
                    ws = max(ws_need, _cdiv(pads[1] + w, fw))
                    pre = 0
                    for p in range(fh):
                        for q in range(fw):
                            y0, x0 = (p - pads[0]) % fh, (q - pads[1]) % fw
                            cyc = _pool_pass_cycles(ctot, h - y0, w - x0, (fh, fw), arch)
                            if cyc is None:
                                pre = None
                                break
                            pre += cyc
                        if pre is None:
                            break
                    if pre is None:
                        continue
                else:
                    hs = max(hs_need, pads[0] + h)
                    ws = max(ws_need, pads[1] + w)
                    pre = _pool_pass_cycles(ctot, h, w, (1, 1), arch)
                    if pre is None:
                        continue
                cs_total = bases_n * c
                vop = WindowOp(name, Engine.CONV, cs_total, hv, wv, m, (kvh, kvw), (se, se),
                               (0, 0, 0, 0), fpool, w_per_out=cs_total * kvh * kvw)
                if not _direct_ok(vop, arch):
                    continue
                cyc = _tiling_cycles(vop, arch)
                if cyc is None:
                    continue
                extra = _gather_extra(vop, arch, bases_n, c, hv == 1) or 0
                method = "fold" if fold_rl else ("polyphase" if phased else "split")
                cands.append(ConvPlan(
                    method, vop, groups * (cyc + extra) + pre, pre_cycles=pre,
                    pads=pads, src=(ctot, hs, ws), phases=(fh, fw), sub=(kvh, kvw),
                    nb=(nbh, nbw), fold=fold_rl, conv_hw=(conv_h, conv_w)))
    if not cands:
        if direct_error is not None:
            raise direct_error
        raise MappingError(
            f"Layer {name!r} (conv) with a {kh}x{kw} kernel and stride {sh}x{sw} cannot be "
            f"mapped onto conv_k_max={km}: no decomposition fits the buffers; increase "
            f"ibuf_bytes, max_width or max_height")
    return min(cands, key=lambda p: p.cycles)


def _divisors(n: int):
    out = set()
    for d in range(1, math.isqrt(n) + 1):
        if n % d == 0:
            out.update((d, n // d))
    return sorted(out)


def virtual_weights(plan: ConvPlan, weight: np.ndarray) -> np.ndarray:
    """The weights of the virtual convolution of ``plan`` from ``weight`` ``(M, C, KH, KW)``
    of one group: ``(M, G * C, kvh, kvw)``, group ``(A, B, p, q)`` in that order."""
    mm, c, kh, kw = weight.shape
    (nbh, nbw), (kvh, kvw), (fh, fw) = plan.nb, plan.sub, plan.phases
    out = np.zeros((mm, nbh, nbw, fh, fw, c, kvh, kvw), dtype=weight.dtype)
    for A in range(nbh):
        for B in range(nbw):
            for p in range(fh):
                for q in range(fw):
                    for a in range(kvh):
                        u = (A * kvh + a) * fh + p
                        if u >= kh:
                            continue
                        for b in range(kvw):
                            v = (B * kvw + b) * fw + q
                            if v < kw:
                                out[:, A, B, p, q, :, a, b] = weight[:, :, u, v]
    return out.reshape(mm, nbh * nbw * fh * fw * c, kvh, kvw)


def _gather(plan: ConvPlan, group: int, c: int) -> Gather:
    """Where the virtual channels of conv group ``group`` (``c`` channels) live in ``S``."""
    ctot, hs, ws = plan.src
    plane = hs * ws
    (nbh, nbw), (kvh, kvw), (fh, fw) = plan.nb, plan.sub, plan.phases
    rstride = plan.fold[1] if plan.fold else ws
    bases = []
    for A in range(nbh):
        for B in range(nbw):
            for p in range(fh):
                for q in range(fw):
                    ch0 = (p * fw + q) * ctot + group * c
                    bases.append(ch0 * plane + A * kvh * ws + B * kvw)
    return Gather(c, plane, rstride, tuple(bases))


def lower_conv(gen, layer, plan: ConvPlan, *, c, h, w, groups, weight, w_store, p_off,
               pool, act, report, out_tensor):
    """Emit the pre-pass and the virtual convolution(s) of ``plan`` for ``layer``.

    ``gen`` is the code generator (:mod:`compiler.codegen.program`); ``weight`` the
    layer's integer weights ``(M, C // groups, KH, KW)``; ``w_store(name, values)``
    appends weights to the image and returns their offset.
    """
    e = gen.e
    ctot, hs, ws = plan.src
    region = "weights"
    # the source is zero-filled in the weight image; its border is never written
    nphase = plan.phases[0] * plan.phases[1]
    src = gen.sources.get(layer.name)
    if src is None:
        src = (region, gen.image.add_zeros(f"{layer.name}.source", nphase * ctot * hs * ws * e))
    in_region, in_addr = gen.addr[layer.inputs[0]]
    full = qrange(gen.arch.act_bits)
    (fh, fw), pads = plan.phases, plan.pads
    # the producer stored its output into the source's interior already
    phases = [] if layer.inputs[0] in gen.redirected else \
        [(p, q) for p in range(fh) for q in range(fw)]
    for p, q in phases:
        y0, x0 = (p - pads[0]) % fh, (q - pads[1]) % fw
        if y0 >= h or x0 >= w:
            continue
        i0, j0 = (y0 + pads[0] - p) // fh, (x0 + pads[1] - q) // fw
        pop = WindowOp(layer.name, Engine.POOL, ctot, h - y0, w - x0, ctot, (1, 1),
                       (fh, fw), (0, 0, 0, 0), channelwise=True, params=False)
        gather = Gather(ctot, h * w, w, (y0 * w + x0,))
        scatter = Scatter(hs * ws, ws, (p * fw + q) * ctot * hs * ws + i0 * ws + j0)
        gen.window(layer, pop, pool=Pool.MAX, act=full, report=report,
                   src=(in_region, in_addr), dst=src, gather=gather, scatter=scatter)
    cg, mg = c, weight.shape[0] // groups
    conv_h, conv_w = plan.conv_hw
    oh, ow = conv_h // plan.op.fpool[0], conv_w // plan.op.fpool[1]
    for g in range(groups):
        wv = virtual_weights(plan, weight[g * mg:(g + 1) * mg])
        w_off = w_store(f"{layer.name}.g{g}" if groups > 1 else layer.name, wv)
        gen.window(layer, plan.op, pool=pool, act=act,
                   out_base=g * mg * oh * ow * e, w_off=w_off,
                   p_off=p_off + g * mg * PBUF_ENTRY_BYTES, report=report,
                   out_tensor=out_tensor, src=src, gather=_gather(plan, g, cg))
    report.engine = f"conv ({plan.describe()})"

