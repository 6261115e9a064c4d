"""FIRB buffer analysis: fused inverted residual bottlenecks vs layer-by-layer stages.

An inverted residual bottleneck is a pointwise expand -> depthwise -> pointwise
project chain (the expand is absent when the expansion factor is 1), optionally
followed by the residual add, whose other input (the skip) comes through a FIFO.

Layer by layer (``--firb`` off), every stage of the chain is a
:class:`hw.sesl.stage.WindowStage` with its own input line buffer of
:attr:`~hw.sesl.config.StageConfig.line_rows` whole rows, freed row by row: a
double-buffered row tile (two rows before each pointwise layer, ``KH + SH`` rows before
the depthwise). With the skip FIFO that makes four buffers per bottleneck.

Fused (FIRB, seed 003 Paper II, ``--firb``), :class:`hw.engines.firb.FirbStage`
pipelines the chain pixel by pixel: the expand takes each incoming pixel from a
one-pixel register and writes its result straight into the depthwise line buffer, the
project takes each depthwise result from a one-pixel register, so the expand's and the
project's line buffers are gone; the depthwise line buffer is a ring freed pixel by
pixel (:attr:`~hw.sesl.config.StageConfig.ring_words`: about ``(KH + SH - 2)`` rows plus
``KW`` pixels instead of ``KH + SH`` rows). The skip FIFO is sized by the compiler from
the stages' timing (:func:`compiler.sesl.plan.fifo_depths`) and has the same depth both
ways.

:func:`buffer_comparison` counts exactly what the two builds instantiate (line buffer
RAM words x channels x ``act_bits``; FIFO storage = depth x width: its RAM and its
one-beat output register); a test compares the count with the memories in the
elaborated Verilog. It also gives, as a reference that is not built, the paper's own
baseline: a double-buffered tile of rows between consecutive layers (two tiles of the
rows the consumer's window spans: ``KH`` rows before a depthwise, one row before a
pointwise, and the project's output), four buffers per bottleneck.
"""

from __future__ import annotations

from dataclasses import replace

from hw.sesl.config import PipelineConfig, StageConfig

__all__ = ["bottlenecks", "buffer_comparison", "fifo_bits", "fuse_bottlenecks", "shape_stages",
           "unfuse"]


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
    """Line-buffer bits of ``st`` as built."""
    return 0 if st is None else st.line_buffer_bits * act_bits


def unfuse(stages) -> list:
    """The stages built layer by layer: every stage with its own row line buffer."""
    return [replace(st, firb="", buffered=True, ring=False) if st.is_window else st
            for st in stages]


def fuse_bottlenecks(stages) -> list:
    """The stages with every inverted residual bottleneck fused into a FIRB: its expand
    and project lose their line buffers (``buffered=False``), its depthwise line buffer
    becomes a ring (when the window is at least two rows tall) and the chain is
    tagged."""
    stages = list(stages)
    index = {st.name: k for k, st in enumerate(stages)}
    for b in bottlenecks(stages):
        tag = b["depthwise"].name
        for key in ("expand", "depthwise", "project"):
            st = b[key]
            if st is not None:
                dw = key == "depthwise"
                stages[index[st.name]] = replace(st, firb=tag, buffered=dw,
                                                 ring=dw and st.kernel[0] >= 2)
    return stages


def fifo_bits(cfg: PipelineConfig) -> dict:
    """``{(tensor, stage): bits}`` of every FIFO (depth x width)."""
    out = {}
    for t, stage, d in cfg.fifos:
        st = cfg.stage(stage)
        channels = next(s[0] for t2, s in zip(st.inputs, st.in_shapes) if t2 == t)
        out[(t, stage)] = d * channels * cfg.act_bits
    return out


def buffer_comparison(cfg: PipelineConfig) -> dict:
    """Buffer bits of ``cfg``'s model built with FIRB fusion and layer by layer, per
    bottleneck and for the whole pipeline (see the module docstring). ``cfg`` may be
    either build; the result is the same.

    Returns ``{"bottlenecks": [{"depthwise", "expand", "project", "residual",
    "layer_by_layer": {"expand_in", "depthwise_in", "project_in", "skip_fifo"},
    "fused": {...}, "layer_by_layer_bits", "fused_bits", "ratio",
    "double_buffered_bits"}...], "layer_by_layer_bits", "fused_bits", "ratio",
    "double_buffered_bits", "ratio_vs_double_buffered", "model_layer_by_layer_bits",
    "model_fused_bits", "model_ratio"}``; the model totals add every other stage's line
    buffer and every FIFO.
    """
    a = cfg.act_bits
    plain = unfuse(cfg.stages)
    fused = {st.name: st for st in fuse_bottlenecks(plain)}
    fifos = fifo_bits(cfg)
    rows = []
    for b in bottlenecks(plain):
        skip = 0
        if b["add"] is not None:
            skip = sum(fifos.get((t, b["add"].name), 0) for t in b["add"].inputs)
        parts = {}
        for build, pick in (("layer_by_layer", lambda st: st),
                            ("fused", lambda st: fused[st.name])):
            parts[build] = {
                "expand_in": _bits(pick(b["expand"]) if b["expand"] else None, a),
                "depthwise_in": _bits(pick(b["depthwise"]), a),
                "project_in": _bits(pick(b["project"]), a),
                "skip_fifo": skip}
        lbl, fus = sum(parts["layer_by_layer"].values()), sum(parts["fused"].values())
        dw, pj = b["depthwise"], b["project"]
        _, _, w_in = dw.in_shapes[0]
        cexp = dw.in_channels
        paper = 2 * dw.kernel[0] * w_in * cexp * a + 2 * pj.in_shapes[0][2] * cexp * a \
            + 2 * pj.out_shape[2] * pj.out_channels * a
        if b["expand"] is not None:
            paper += 2 * b["expand"].in_shapes[0][2] * b["expand"].in_channels * a
        rows.append({"depthwise": dw.name,
                     "expand": b["expand"].name if b["expand"] else None,
                     "project": pj.name, "residual": b["add"] is not None,
                     "stride": dw.stride[0], "expanded_channels": cexp,
                     "width": w_in, **parts,
                     "layer_by_layer_bits": lbl, "fused_bits": fus,
                     "ratio": fus / lbl if lbl else 1.0,
                     "double_buffered_bits": paper + skip})
    lbl_total = sum(r["layer_by_layer_bits"] for r in rows)
    fused_total = sum(r["fused_bits"] for r in rows)
    paper_total = sum(r["double_buffered_bits"] for r in rows)
    fifo_all = sum(fifos.values())
    model_lbl = sum(_bits(st, a) for st in plain) + fifo_all
    model_fused = sum(_bits(st, a) for st in fused.values()) + fifo_all
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
