"""Compile an ONNX LSTM for the Descartes core: descriptors + DDR image + reports."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from compiler import errors
from compiler.lstm.encode import (
    EncodedLayer,
    QuantLayer,
    csc_encode,
    linear_groups,
    quantize_layer,
    quantize_linear,
)
from compiler.lstm.model import LstmModel, import_lstm
from hw.lstm.config import (
    DESC_BYTES,
    H_FRAC,
    KIND_LINEAR,
    KIND_LSTM,
    LstmArch,
    pack_header,
    pack_layer,
)
from sim.lstm import layer_forward, lstm_stack, mv_cycles, step_cycles

__all__ = ["LstmCompiled", "compile_lstm", "quantize_input", "snr_db"]

_ALIGN = 64


def _align(n):
    return -(-n // _ALIGN) * _ALIGN


def snr_db(ref, test):
    ref = np.asarray(ref, dtype=np.float64)
    err = np.asarray(test, dtype=np.float64) - ref
    p_err = float((err ** 2).sum())
    return float("inf") if p_err == 0 else 10 * math.log10(float((ref ** 2).sum()) / p_err)


def quantize_input(x, frac):
    return np.clip(np.round(np.asarray(x, dtype=np.float64) * 2.0 ** frac), -32768,
                   32767).astype(np.int64)


@dataclass
class LstmCompiled:
    arch: LstmArch
    model: LstmModel
    quant: list      # QuantLayer per layer
    encoded: list    # EncodedLayer per layer
    image: bytes     # program + data, DATA_BASE = PROG_BASE = image base
    layout: list     # per layer dict of offsets
    report: dict
    x_frac: int

    def golden_layers(self):
        return [{"wx": q.wx, "wh": q.wh, "bias": q.bias, "gate_shift": q.gate_shift,
                 "kind": q.kind} for q in self.quant]

    def image_with_input(self, xq):
        """The DDR image with the (T, I) integer input sequence in place."""
        img = bytearray(self.image)
        raw = np.asarray(xq, dtype="<i2").tobytes()
        off = self.layout[0]["x_offset"]
        img[off:off + len(raw)] = raw
        return bytes(img)

    def outputs_from_image(self, img):
        """Each layer's (T, H) hidden sequence read from a DDR image."""
        outs = []
        for q, lay in zip(self.quant, self.layout):
            n = self.model.steps * q.width * 2
            raw = bytes(img[lay["h_offset"]:lay["h_offset"] + n])
            outs.append(np.frombuffer(raw, dtype="<i2").astype(np.int64).reshape(
                self.model.steps, q.width))
        return outs

    def golden(self, xq):
        return lstm_stack(xq, self.golden_layers())


def _calib_seq(calib, steps, input_size, seed):
    if calib is None:
        return np.random.default_rng(seed).standard_normal((steps, input_size))
    return np.asarray(calib, dtype=np.float64)


def _frac_for(peak):
    return 15 if peak == 0 else max(0, min(15, math.floor(math.log2(32767 / peak))))


def _calib_frac(calib, steps, input_size, seed):
    return _frac_for(float(np.abs(_calib_seq(calib, steps, input_size, seed)).max()))


def _pad_inputs(spec, width):
    """``spec`` reading a sequence of ``width`` values (a linear layer before it writes its
    outputs padded to a multiple of 4 and of ``n_pe``): zero weight columns."""
    if width == spec.input_size:
        return spec
    w = np.zeros((spec.w.shape[0], width))
    w[:, :spec.input_size] = spec.w
    return dataclasses.replace(spec, input_size=width, w=w)


def _layer_report(q: QuantLayer, enc: EncodedLayer, arch: LstmArch, steps: int) -> dict:
    n = arch.n_pe
    rows = 4 * q.hidden // n
    linear = q.kind == "linear"
    cols = q.input_size + (0 if linear else q.hidden)
    _, busy = mv_cycles(enc.counts, arch.fifo_depth)
    mv, ew = step_cycles(enc.counts, arch.fifo_depth, q.hidden)
    step = mv + ew
    load = int(enc.entries.size + enc.pointers.size + 8 * q.hidden + q.hidden)
    nnz = int(enc.nonzeros.sum())
    extra = {"outputs": q.out_size, "out_frac": q.out_frac} if linear else {}
    return {
        "name": q.name, "engine": q.kind, "input_size": q.input_size, "hidden": q.hidden,
        **extra,
        "steps": steps, "gate_shift": q.gate_shift, "x_frac": q.x_frac, "acc_frac": q.acc_frac,
        "density": nnz / (4 * q.hidden * cols),
        "density_per_pe": [float(x) / (rows * cols) for x in enc.nonzeros],
        "nonzeros_per_pe": enc.nonzeros.tolist(),
        "padding_per_pe": enc.padding.tolist(),
        "entries_per_pe": (enc.nonzeros + enc.padding).tolist(),
        "padding_overhead": float(enc.padding.sum()) / max(nnz, 1),
        "stored_density": float((enc.nonzeros + enc.padding).sum()) / (4 * q.hidden * cols),
        "weight_bytes": int(enc.entries.size * 2),
        "mv_cycles_per_step": mv, "ew_cycles_per_step": ew,
        "cycles_per_step": step,
        "pe_busy_cycles": busy.tolist(),
        "pe_idle_cycles_per_step": int(n * mv - busy.sum()),
        "pe_utilization": float(busy.sum()) / (n * mv),
        "load_cycles_est": load,
        "cycles": load + steps * step,
        "macs": (q.out_size if linear else 4 * q.hidden) * cols * steps,
    }


def _resources(arch: LstmArch) -> dict:
    """The core's estimated resources (7-series; :mod:`boards.lstm_resources`)."""
    from boards.lstm_resources import estimate_lstm

    est = estimate_lstm(arch, "xc7")
    est.pop("memories")
    return est


def compile_lstm(model, arch: LstmArch, *, density=1.0, balanced=True, calib=None,
                 seed=0) -> LstmCompiled:
    """Import, quantize, prune (load-balance-aware unless ``balanced=False``) and encode."""
    lm = import_lstm(model)
    first = lm.layers[0].input_size
    seq = _calib_seq(calib, lm.steps, first, seed)
    x_frac = _frac_for(float(np.abs(seq).max()))
    # the integer calibration sequence, run layer by layer: each linear layer's output
    # scale comes from its outputs on it
    seq = quantize_input(seq.reshape(-1, first)[:lm.steps], x_frac)
    quant, encoded = [], []
    frac = x_frac
    width = first
    for spec in lm.layers:
        spec = _pad_inputs(spec, width)
        if spec.kind == "linear":
            groups = linear_groups(spec.out, arch.n_pe)
            for what, size, limit in (("input size", spec.input_size, arch.max_input),
                                      ("input size", spec.input_size, arch.max_cols),
                                      ("outputs (padded)", 4 * groups, arch.max_hidden)):
                if size > limit:
                    raise errors.MappingError(f"Linear {spec.name!r}: {what} {size} exceeds "
                                              f"the core's limit {limit}; use a larger arch")
            y = (seq / 2.0 ** frac) @ spec.w.T + spec.b
            q = quantize_linear(spec, frac, _frac_for(float(np.abs(y).max())), density,
                                arch.n_pe, balanced=balanced, acc_bits=arch.acc_bits)
            quant.append(q)
            encoded.append(csc_encode(q, arch))
            frac, width = q.out_frac, q.width
            seq = layer_forward(seq, {"wx": q.wx, "wh": q.wh, "bias": q.bias,
                                      "gate_shift": q.gate_shift, "kind": q.kind})
            continue
        for what, size, limit in (("input size", spec.input_size, arch.max_input),
                                  ("hidden size", spec.hidden, arch.max_hidden),
                                  ("input + hidden", spec.input_size + spec.hidden,
                                   arch.max_cols)):
            if size > limit:
                raise errors.MappingError(f"LSTM {spec.name!r}: {what} {size} exceeds the "
                                          f"core's limit {limit}; use a larger arch")
        if spec.hidden % 4 or (4 * spec.hidden) % arch.n_pe:
            raise errors.MappingError(
                f"LSTM {spec.name!r}: hidden size {spec.hidden} must be a multiple of 4 and of "
                f"n_pe / 4 = {arch.n_pe // 4}")
        q = quantize_layer(spec, frac, density, arch.n_pe, balanced=balanced,
                           acc_bits=arch.acc_bits)
        quant.append(q)
        encoded.append(csc_encode(q, arch))
        frac, width = H_FRAC, q.width
        if any(later.kind == "linear" for later in lm.layers[len(quant):]):
            seq = layer_forward(seq, {"wx": q.wx, "wh": q.wh, "bias": q.bias,
                                      "gate_shift": q.gate_shift})
    steps = lm.steps
    # Layout: header + descriptors, then per layer weights, pointers, bias; the input
    # sequence; each layer's hidden sequence (the next layer's input).
    off = _align(DESC_BYTES * (1 + len(quant)))
    blobs, layout = [], []
    for q, enc in zip(quant, encoded):
        lay = {}
        # four biases per row group k: gates i, o, f, c of unit k (LSTM), outputs 4k..4k+3
        bias = np.zeros((q.hidden, 4), dtype="<i4")
        for g in range(4):
            bias[:, g] = (q.bias[g::4] if q.kind == "linear"
                          else q.bias[g * q.hidden:(g + 1) * q.hidden])
        for key, blob in (("w_offset", enc.entries.astype("<u2").tobytes()),
                          ("ptr_offset", enc.pointers.astype("<u2").tobytes()),
                          ("bias_offset", bias.tobytes())):
            lay[key] = off
            blobs.append((off, blob))
            off = _align(off + len(blob))
        layout.append(lay)
    layout[0]["x_offset"] = off
    off = _align(off + steps * quant[0].input_size * 2)
    for i, q in enumerate(quant):
        layout[i]["h_offset"] = off
        if i + 1 < len(quant):
            layout[i + 1]["x_offset"] = off
        off = _align(off + steps * q.width * 2)
    image = bytearray(off)
    image[:DESC_BYTES] = pack_header(arch, len(quant))
    for i, (q, enc, lay) in enumerate(zip(quant, encoded, layout)):
        fields = {"input_size": q.input_size, "hidden": q.hidden, "steps": steps,
                  "entries": enc.entries.shape[1], "gate_shift": q.gate_shift, **lay,
                  "kind": KIND_LINEAR if q.kind == "linear" else KIND_LSTM}
        lay.update(fields)
        image[DESC_BYTES * (i + 1):DESC_BYTES * (i + 2)] = pack_layer(fields)
    for o, blob in blobs:
        image[o:o + len(blob)] = blob
    layers = [_layer_report(q, e, arch, steps) for q, e in zip(quant, encoded)]
    total = sum(r["cycles"] for r in layers)
    report = {
        "mode": "lstm", "model_output": lm.output_kind, "clock_mhz": arch.clock_mhz,
        "n_pe": arch.n_pe, "mac_units": arch.n_pe, "density_target": density,
        "load_balanced": balanced, "steps": steps,
        "cycles_per_frame": total, "latency_cycles": total,
        "frames_per_s": arch.clock_mhz * 1e6 / total,
        "cycles_per_step": [r["cycles_per_step"] for r in layers],
        "us_per_step": [r["cycles_per_step"] / arch.clock_mhz for r in layers],
        "resources": _resources(arch), "image_bytes": len(image), "layers": layers,
        "output_frac": quant[-1].out_frac if quant[-1].kind == "linear" else H_FRAC,
        "output_size": quant[-1].out_size if quant[-1].kind == "linear" else quant[-1].hidden,
    }
    return LstmCompiled(arch, lm, quant, encoded, bytes(image), layout, report, x_frac)


def write_outputs(result: LstmCompiled, out_dir) -> Path:
    """Write program.bin, weights.bin, arch.json, manifest.json, report.txt/json atomically."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        prog_len = DESC_BYTES * (1 + len(result.quant))
        (tmp / "program.bin").write_bytes(result.image[:prog_len])
        (tmp / "weights.bin").write_bytes(result.image[prog_len:])
        (tmp / "arch.json").write_text(result.arch.to_json() + "\n")
        manifest = {"mode": "lstm", "steps": result.model.steps, "x_frac": result.x_frac,
                    "input": result.model.input_name, "output": result.model.output_name,
                    "output_kind": result.model.output_kind, "layout": result.layout,
                    "output_frac": result.report["output_frac"],
                    "output_size": result.report["output_size"],
                    "image_bytes": len(result.image)}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        (tmp / "report.json").write_text(json.dumps(result.report, indent=2) + "\n")
        (tmp / "report.txt").write_text(report_text(result.report))
        (tmp / "model.onnx").write_bytes(result.model.onnx_model.SerializeToString())
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def report_text(rep: dict) -> str:
    lines = [(f"mode lstm: {rep['n_pe']} PEs at {rep['clock_mhz']:g} MHz, {rep['steps']} steps, "
             f"target density {rep['density_target']:.3f} "
             f"({'load-balance-aware' if rep['load_balanced'] else 'global'} pruning)")]
    for r in rep["layers"]:
        d = r["density_per_pe"]
        if r["engine"] == "linear":
            lines.append(
                f"  {r['name']}: linear {r['input_size']} -> {r['outputs']} (padded to "
                f"{4 * r['hidden']}), density {r['density']:.3f}, {r['cycles_per_step']} "
                f"cycles/step (MV {r['mv_cycles_per_step']}, output {r['ew_cycles_per_step']})")
            continue
        lines.append(
            f"  {r['name']}: input {r['input_size']}, hidden {r['hidden']}, density "
            f"{r['density']:.3f} (per PE {min(d):.3f}..{max(d):.3f}), padding overhead "
            f"{100 * r['padding_overhead']:.1f} %, entries/PE max {max(r['entries_per_pe'])}, "
            f"{r['cycles_per_step']} cycles/step (MV {r['mv_cycles_per_step']}, "
            f"element-wise {r['ew_cycles_per_step']}), PE utilization "
            f"{100 * r['pe_utilization']:.1f} %")
    lines.append(f"  cycles per sequence {rep['cycles_per_frame']:,} "
                 f"({rep['frames_per_s']:.1f} sequences/s)")
    res = rep.get("resources")
    if res:
        lines.append(f"  resources (estimate, {res['family']}): LUT {res['lut']:,}, FF "
                     f"{res['ff']:,}, DSP {res['dsp']}, BRAM36 {res['bram36']:g}, LUT RAM "
                     f"{res['lutram']}")
    return "\n".join(lines) + "\n"
