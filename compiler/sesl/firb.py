"""FIRB buffer analysis: fused inverted residual bottlenecks vs layer-by-layer stages.

An inverted residual bottleneck is a pointwise expand -> depthwise -> pointwise
project chain (the expand is absent when the expansion factor is 1), optionally
followed by the residual add. Pipelined layer by layer, every stage of the chain has
its own input buffer: the expand's line buffer over the bottleneck input, the
depthwise line buffer over the expanded channels, and the project's line buffer over
the depthwise output (each :attr:`hw.sesl.config.StageConfig.line_rows` rows). Fused
(FIRB, seed 003 Paper II), the expand consumes the incoming pixel directly, the
project consumes the depthwise results while they are in registers, and only the
depthwise line buffer remains. The skip FIFO is the same either way and is counted in
both totals.

The paper's own baseline is different hardware: layer-by-layer pipelining with a
double-buffered tile of rows between consecutive layers (two tiles of the rows the
consumer's window spans: ``KH`` rows before a depthwise, one row before a pointwise),
four buffers per bottleneck (input, expanded, depthwise output, projected output).
:func:`buffer_comparison` reports the fused design against both baselines.
"""

from __future__ import annotations

from dataclasses import replace

from hw.sesl.config import PipelineConfig, StageConfig

__all__ = ["bottlenecks", "buffer_comparison", "fuse_bottlenecks", "shape_stages"]


def _is_pointwise(st: StageConfig) -> bool:
    return st.op == "conv" and st.kernel == (1, 1) and st.stride == (1, 1) \
        and st.layer_kind == "pointwise"


def bottlenecks(stages) -> list[dict]:
    """Every ``[expand] -> depthwise -> project [-> add]`` chain, by stage name."""
    by_output = {st.output: st for st in stages}
    users = {}
    for st in stages:
        for t in st.inputs:
            users.setdefault(t, []).append(st)
    found = []
    for st in stages:
        if st.op != "depthwise":
            continue
        after = users.get(st.output, [])
        if len(after) != 1 or not _is_pointwise(after[0]):
            continue
        project = after[0]
        before = by_output.get(st.inputs[0])
        expand = before if (before is not None and _is_pointwise(before)
                            and len(users.get(before.output, [])) == 1) else None
        add = None
        nxt = users.get(project.output, [])
        if len(nxt) == 1 and nxt[0].op == "add":
            add = nxt[0]
        found.append({"expand": expand, "depthwise": st, "project": project, "add": add})
    return found


def _bits(st: StageConfig | None, act_bits: int) -> int:
    """Line-buffer bits of ``st`` built layer by layer (buffered)."""
    return 0 if st is None else replace(st, buffered=True).line_buffer_bits * act_bits


def fuse_bottlenecks(stages) -> list:
    """The stages with every inverted residual bottleneck fused into a FIRB: its expand
    and project lose their line buffers (``buffered=False``) and the chain is tagged."""
    stages = list(stages)
    index = {st.name: k for k, st in enumerate(stages)}
    for b in bottlenecks(stages):
        tag = b["depthwise"].name
        for key in ("expand", "depthwise", "project"):
            st = b[key]
            if st is not None:
                stages[index[st.name]] = replace(st, firb=tag,
                                                 buffered=(key == "depthwise"))
    return stages


def buffer_comparison(cfg: PipelineConfig) -> dict:
    """Buffer bits with FIRB fusion vs layer-by-layer, per bottleneck and in total.

    Returns ``{"bottlenecks": [...], "fused_bits", "layer_by_layer_bits", "ratio",
    "model_fused_bits", "model_layer_by_layer_bits", "model_ratio"}``; the model totals
    add every other stage's line buffer and every FIFO.
    """
    a = cfg.act_bits
    rows = []
    fused_names = set()
    for b in bottlenecks(cfg.stages):
        lbl = sum(_bits(b[k], a) for k in ("expand", "depthwise", "project"))
        fused = _bits(b["depthwise"], a)
        fifo = 0
        if b["add"] is not None:
            for t, shape in zip(b["add"].inputs, b["add"].in_shapes):
                fifo += cfg.fifo_depth(t, b["add"].name) * shape[0] * a
        dw, pj = b["depthwise"], b["project"]
        _, _, w_in = dw.in_shapes[0]
        cexp = dw.in_channels
        paper = 2 * dw.kernel[0] * w_in * cexp * a + 2 * pj.in_shapes[0][2] * cexp * a \
            + 2 * pj.out_shape[2] * pj.out_channels * a
        if b["expand"] is not None:
            paper += 2 * b["expand"].in_shapes[0][2] * b["expand"].in_channels * a
        rows.append({"depthwise": b["depthwise"].name,
                     "double_buffered_bits": paper + fifo,
                     "expand": b["expand"].name if b["expand"] else None,
                     "project": b["project"].name,
                     "residual": b["add"] is not None,
                     "layer_by_layer_bits": lbl + fifo, "fused_bits": fused + fifo,
                     "ratio": (fused + fifo) / (lbl + fifo) if lbl + fifo else 1.0})
        fused_names.update(b[k].name for k in ("expand", "depthwise", "project") if b[k])
    lbl_total = sum(r["layer_by_layer_bits"] for r in rows)
    fused_total = sum(r["fused_bits"] for r in rows)
    other = sum(_bits(st, a) for st in cfg.stages if st.name not in fused_names)
    fifo_all = sum(d * next(s[0] for t2, s in zip(cfg.stage(stage).inputs,
                                                   cfg.stage(stage).in_shapes) if t2 == t) * a
                   for t, stage, d in cfg.fifos)
    fifo_in_rows = sum(r["layer_by_layer_bits"] for r in rows) - sum(
        _bits(cfg.stage(r["depthwise"]), a) + _bits(cfg.stage(r["project"]), a)
        + (_bits(cfg.stage(r["expand"]), a) if r["expand"] else 0) for r in rows)
    model_lbl = lbl_total + other + fifo_all - fifo_in_rows
    model_fused = fused_total + other + fifo_all - fifo_in_rows
    paper_total = sum(r["double_buffered_bits"] for r in rows)
    return {"bottlenecks": rows, "layer_by_layer_bits": lbl_total, "fused_bits": fused_total,
            "ratio": fused_total / lbl_total if lbl_total else 1.0,
            "double_buffered_bits": paper_total,
            "ratio_vs_double_buffered": fused_total / paper_total if paper_total else 1.0,
            "model_layer_by_layer_bits": model_lbl, "model_fused_bits": model_fused,
            "model_ratio": model_fused / model_lbl if model_lbl else 1.0}


_OPS = {"conv": "conv", "pointwise": "conv", "fc": "conv", "depthwise": "depthwise",
        "maxpool": "max", "avgpool": "avg", "gap": "avg", "add": "add", "concat": "concat"}


def shape_stages(graph) -> list:
    """Stages with geometry only (no integer parameters) of a lowered, possibly
    unquantized graph: enough for the buffer analysis of large models."""
    stages = []
    for layer in graph.layers:
        op = _OPS.get(layer.kind.value)
        if op is None:
            raise ValueError(f"Layer {layer.name!r} of kind {layer.kind.value!r} has no SESL "
                             f"stage")
        in_shapes = tuple(graph.shape(t) for t in layer.inputs)
        geometry = {}
        if op in ("conv", "depthwise", "max", "avg"):
            geometry = {"kernel": tuple(layer.kernel), "stride": tuple(layer.stride),
                            "pads": tuple(layer.pads)}
            if layer.kind.value in ("fc", "gap"):
                geometry = {"kernel": tuple(in_shapes[0][1:])}
        stages.append(StageConfig(name=layer.name, op=op, inputs=tuple(layer.inputs),
                                  output=layer.output, in_shapes=in_shapes,
                                  out_shape=graph.shape(layer.output),
                                  layer_kind=layer.kind.value, **geometry))
    return stages
