"""``--board``: an arch sized to the model under the board's budget (best fit per layer type).

A board no longer means one arch. The model's layers are profiled (kernel sizes, channel
counts, feature-map widths, which engines they need), and candidate archs are formed
from

* the conv engine's kernel ``conv_k_max``: every odd size up to the model's largest conv
  kernel (at most 7; larger kernels and strides above 2 run through the exact rewrites
  of :mod:`compiler.codegen.decompose`, so a smaller engine kernel is a candidate too);
* the line-buffer size ``max_width`` / ``max_height``: the default 64, or the model's
  widest frame (fewer column tiles, larger line buffers);
* the engines' parallelism (conv ``Pi x Po``, pointwise ``Pi = Po``, depthwise lanes),
  capped by the model's channel counts (lanes the model never fills are not offered);
* the largest feature-map buffers that keep every resource of the calibrated estimate
  (:func:`boards.database.estimate_resources`) within :data:`BUDGET_SHARE` of the board.

Each candidate's cycles are predicted layer by layer with the compiler's own tiling and
rewrite planner (the same cost model the code generator uses); the fastest wins, and
among those within :data:`TIE` of it the one with the fewest DSPs, then LUTs. The
choice and the reasons go into ``report.txt`` and ``report.json`` (``arch_choice``).
"""

from __future__ import annotations

from compiler.codegen.decompose import plan_conv
from compiler.errors import MappingError
from compiler.ir import Graph, OpKind
from compiler.mapping.tiling import WindowOp, plan_window
from compiler.passes.fuse_pool import runs_pointwise
from hw.arch import ArchConfig
from hw.isa import Engine, engine_kernel

__all__ = ["BUDGET_SHARE", "TIE", "model_cycles", "model_profile", "size_arch"]

#: Share of every board resource the sized arch may use (room for the board shell).
BUDGET_SHARE = 0.7
#: Candidates within this fraction of the fastest count as equally fast.
TIE = 0.03

# (conv Pi, conv Po, pointwise Pi = Po, depthwise lanes), largest first
_TIERS = ((32, 32, 64, 64), (32, 16, 32, 32), (16, 16, 32, 32), (16, 8, 32, 16),
          (8, 8, 16, 16), (8, 4, 16, 8), (4, 4, 8, 8), (4, 2, 8, 4), (2, 2, 4, 4),
          (1, 1, 2, 2))
_BUFFERS = tuple(1 << n for n in range(18, 12, -1))  # 256 KiB .. 8 KiB


def _pow2_at_least(n: int) -> int:
    p = 1
    while p < n:
        p *= 2
    return p


def model_profile(graph: Graph) -> dict:
    """What the layers need: kernels, channels, widths, engines."""
    conv_k, dw_k, conv_c, pw_c, dw_c = [], [], [1], [1], [1]
    width = height = 1
    engines = set()
    for layer in graph.layers:
        if layer.kind not in (OpKind.CONV, OpKind.DEPTHWISE, OpKind.POINTWISE, OpKind.FC,
                              OpKind.MAXPOOL, OpKind.AVGPOOL):
            continue
        c, h, w = graph.shape(layer.inputs[0])
        if layer.kind is OpKind.FC:
            engines.add("pointwise")
            pw_c.append(c * h * w)
            continue
        kh, kw = layer.kernel
        pads = layer.pads
        width = max(width, w + pads[1] + pads[3])
        height = max(height, h + pads[0] + pads[2])
        if layer.kind is OpKind.DEPTHWISE:
            engines.add("depthwise")
            dw_k.append(engine_kernel(kh, kw))
            dw_c.append(c)
        elif layer.kind in (OpKind.CONV, OpKind.POINTWISE):
            if runs_pointwise(layer):
                engines.add("pointwise")
                pw_c.append(min(c, graph.shape(layer.output)[0]))
            else:
                engines.add("conv")
                conv_k.append(engine_kernel(kh, kw))
                conv_c.append(min(c // layer.groups, graph.shape(layer.output)[0]))
        else:
            engines.add("pool")
    return {"conv_kernels": sorted(set(conv_k)), "depthwise_kernels": sorted(set(dw_k)),
            "max_conv_channels": max(conv_c), "max_pointwise_channels": max(pw_c),
            "max_depthwise_channels": max(dw_c), "widest_frame": width,
            "tallest_frame": height, "engines": sorted(engines)}


def _layer_ops(graph: Graph):
    """``(key, fn(arch) -> cycles)`` per layer; equal keys have equal cycles."""
    ops = []
    for layer in graph.layers:
        kind = layer.kind
        if kind not in (OpKind.CONV, OpKind.DEPTHWISE, OpKind.POINTWISE, OpKind.FC,
                        OpKind.MAXPOOL, OpKind.AVGPOOL, OpKind.GAP):
            continue
        c, h, w = graph.shape(layer.inputs[0])
        m = graph.shape(layer.output)[0]
        if kind is OpKind.FC:
            op = WindowOp(layer.name, Engine.POINTWISE, c * h * w, 1, 1, m, (1, 1), (1, 1),
                          (0, 0, 0, 0), w_per_out=c * h * w)
            ops.append((("fc", c * h * w, m), _window(op)))
        elif kind in (OpKind.MAXPOOL, OpKind.AVGPOOL, OpKind.GAP):
            k, s, p = ((h, w), (1, 1), (0, 0, 0, 0)) if kind is OpKind.GAP else \
                (layer.kernel, layer.stride, layer.pads)
            op = WindowOp(layer.name, Engine.POOL, c, h, w, c, k, s, p, channelwise=True,
                          params=False)
            ops.append((("pool", c, h, w, k, s, p), _window(op)))
        elif runs_pointwise(layer):
            op = WindowOp(layer.name, Engine.POINTWISE, c, h, w, m, (1, 1), layer.stride,
                          (0, 0, 0, 0), w_per_out=c)
            ops.append((("pw", c, h, w, m, layer.stride), _window(op)))
        else:
            groups = c if kind is OpKind.DEPTHWISE else layer.groups
            key = ("conv", kind, c, h, w, m, layer.kernel, layer.stride, layer.pads, groups)
            ops.append((key, _conv(layer.name, kind, c, h, w, m, layer.kernel, layer.stride,
                                   layer.pads, groups)))
    return ops


def _window(op):
    return lambda arch: plan_window(op, arch).cycles


def _conv(name, kind, c, h, w, m, kernel, stride, pads, groups):
    def cycles(arch):
        if kind is OpKind.DEPTHWISE:
            op = WindowOp(name, Engine.DEPTHWISE, c, h, w, m, kernel, stride, pads,
                          channelwise=True, w_per_out=kernel[0] * kernel[1])
            try:
                return plan_window(op, arch).cycles
            except MappingError:
                pass  # kernel or stride the engine does not run: rewritten below
        return plan_conv(name, c // groups, h, w, m // groups, kernel, stride, pads, (1, 1),
                         arch, groups=groups).cycles
    return cycles


def model_cycles(graph: Graph, arch: ArchConfig, ops=None) -> int:
    """Predicted compute-layer cycles of ``graph`` on ``arch`` (element-wise layers and
    fused pools left out: they are the same on every candidate).

    Raises
    ------
    MappingError
        If a layer cannot be mapped onto ``arch``.
    """
    ops = _layer_ops(graph) if ops is None else ops
    cache = {}
    total = 0
    for key, fn in ops:
        if key not in cache:
            cache[key] = fn(arch)
        total += cache[key]
    return total


def size_arch(graph: Graph, board) -> tuple[ArchConfig, dict]:
    """The arch for ``graph`` on ``board`` (a :class:`boards.database.Board`) and the
    reasons (a JSON-ready dict).

    Raises
    ------
    MappingError
        If no candidate both fits the board and maps every layer.
    """
    from boards.database import estimate_resources

    prof = model_profile(graph)
    ops = _layer_ops(graph)
    family = board.synth_family
    budget = board.budget
    k_model = max(prof["conv_kernels"] + prof["depthwise_kernels"] + [3])
    kernels = [k for k in (3, 5, 7) if k <= max(3, min(k_model, 7))]
    frame = max(prof["widest_frame"], prof["tallest_frame"]) + max(kernels)
    widths = sorted({64, min(256, -(-frame // 8) * 8)})
    caps = (_pow2_at_least(prof["max_conv_channels"]),
            _pow2_at_least(prof["max_pointwise_channels"]),
            _pow2_at_least(prof["max_depthwise_channels"]))
    tiers = sorted({(min(pi, caps[0]), min(po, caps[0]), min(pw, caps[1]), min(dw, caps[2]))
                    for pi, po, pw, dw in _TIERS}, reverse=True)
    def make(k, width, tier, buf):
        pi, po, pw, dw = tier
        return ArchConfig(
            name=f"{board.name.lower()}-fit", conv_pi=pi, conv_po=po, pw_pi=pw, pw_po=pw,
            dw_channels=dw, conv_k_max=k, max_width=width, max_height=width, ibuf_bytes=buf,
            obuf_bytes=buf, wbuf_bytes=max(buf // 2, 8 * 1024), clock_mhz=board.clock_mhz,
            axi_data_bits=board.axi_data_bits, axi_addr_bits=board.axi_addr_bits)

    estimates = {}

    def fits(arch):
        if arch not in estimates:
            use = estimate_resources(arch, family=family)
            estimates[arch] = (use, all(use[r] <= BUDGET_SHARE * have
                                        for r, have in budget.items()))
        return estimates[arch][1]

    small = 32 * 1024
    evaluated = []
    for k in kernels:
        for width in widths:
            lo, hi = 0, len(tiers) - 1  # tiers[hi] is the smallest; find the widest fitting
            if not fits(make(k, width, tiers[hi], small)):
                continue
            while lo < hi:
                mid = (lo + hi) // 2
                if fits(make(k, width, tiers[mid], small)):
                    hi = mid
                else:
                    lo = mid + 1
            # the largest buffers next to the widest fitting engines
            buf = next(b for b in _BUFFERS
                       if b <= small or fits(make(k, width, tiers[lo], b)))
            for tier in tiers[lo:lo + 3]:  # the widest fitting tier and two narrower
                arch = make(k, width, tier, buf)
                try:
                    cycles = model_cycles(graph, arch, ops)
                except MappingError:
                    continue
                evaluated.append((cycles, arch.conv_macs + arch.dw_macs + arch.pw_macs, arch))
    if not evaluated:
        raise MappingError(f"No ConvForge arch both fits board {board.name} (within "
                           f"{BUDGET_SHARE:.0%} of its resources) and maps every layer of "
                           f"the model; use a larger board or give --arch")
    best_cycles = min(e[0] for e in evaluated)
    near = [e for e in evaluated if e[0] <= best_cycles * (1 + TIE)]
    cycles, _, arch = min(near, key=lambda e: (e[1], e[0]))
    use = estimates[arch][0] if arch in estimates else estimate_resources(arch, family=family)
    generic = [e[0] for e in evaluated
               if e[2].conv_k_max == 3 and e[2].max_width == 64]
    default_cycles = min(generic) if generic else None
    fields = ("conv_k_max", "conv_pi", "conv_po", "pw_pi", "pw_po", "dw_channels",
              "max_width", "max_height", "ibuf_bytes", "obuf_bytes", "wbuf_bytes")
    reasons = [
        (f"conv_k_max={arch.conv_k_max}: the model's conv kernels are "
        f"{_kernels(prof['conv_kernels'])}; larger kernels and strides above 2 run exactly "
        f"as sub-kernel / polyphase / 1-D fold rewrites, chosen by predicted cycles"),
        (f"conv {arch.conv_pi}x{arch.conv_po}, pointwise {arch.pw_pi}x{arch.pw_po}, depthwise "
        f"{arch.dw_channels} lanes: lanes capped at the model's channels (conv "
        f"{prof['max_conv_channels']}, pointwise {prof['max_pointwise_channels']}, depthwise "
        f"{prof['max_depthwise_channels']})"),
        (f"line buffers {arch.max_width} wide for frames up to {prof['widest_frame']} "
        f"columns"),
        (f"buffers {arch.ibuf_bytes // 1024} KiB: the largest that keeps every resource within "
        f"{BUDGET_SHARE:.0%} of {board.name}"),
        (f"fastest of {len(evaluated)} fitting candidates ({cycles:,} predicted compute "
        f"cycles); among those within {TIE:.0%} of it, the fewest MAC units"),
    ]
    if default_cycles is not None:
        reasons.append(f"the fastest fitting arch with 3x3 engines and 64-wide line buffers "
                       f"would take {default_cycles:,} cycles")
    choice = {
        "board": board.name, "budget_share": BUDGET_SHARE, "profile": prof,
        "candidates": len(evaluated), "predicted_compute_cycles": cycles,
        "generic_3x3_cycles": default_cycles,
        "arch": {f: getattr(arch, f) for f in fields},
        "resources": {r: use[r] for r in ("lut", "ff", "dsp", "bram")},
        "budget": dict(budget), "reasons": reasons,
    }
    return arch, choice


def _kernels(ks) -> str:
    return ", ".join(f"{k}x{k}" for k in ks) if ks else "none"


def format_choice(choice: dict) -> str:
    """The ``report.txt`` section of an arch sized by :func:`size_arch`."""
    a = choice["arch"]
    lines = [(f"Arch sized to the model for board {choice['board']}: conv_k_max="
             f"{a['conv_k_max']}, conv {a['conv_pi']}x{a['conv_po']}, pointwise "
             f"{a['pw_pi']}x{a['pw_po']}, depthwise {a['dw_channels']}, line buffers "
             f"{a['max_width']}x{a['max_height']}, IBUF/OBUF {a['ibuf_bytes'] // 1024} KiB, "
             f"WBUF {a['wbuf_bytes'] // 1024} KiB")]
    r, b = choice["resources"], choice["budget"]
    lines.append("  estimate: " + ", ".join(f"{k.upper()} {r[k]:,}/{b[k]:,}" for k in r))
    lines += [f"  - {reason}" for reason in choice["reasons"]]
    return "\n".join(lines) + "\n"
