"""``convforge compile`` / ``simulate`` for LSTM models (dispatched from compiler.compile)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from compiler import errors
from compiler.lstm.compile import compile_lstm, quantize_input, snr_db, write_outputs
from compiler.lstm.encode import EncodedLayer, csc_decode
from compiler.lstm.model import is_lstm_model
from hw.lstm.config import (
    DESC_BYTES,
    DESC_WORDS,
    HEADER_MAGIC,
    KIND_LINEAR,
    LAYER_FIELDS,
    LstmArch,
)
from sim.lstm import lstm_stack

__all__ = [
    "compile_command",
    "is_lstm_model",
    "is_lstm_output",
    "layers_from_image",
    "simulate_command",
    "simulate_lstm",
]


def _pow2(n):
    return 1 << max(2, int(n - 1).bit_length())


def _arch(args, model) -> LstmArch:
    if getattr(args, "arch", None):
        try:
            d = json.loads(Path(args.arch).read_text())
        except (OSError, ValueError) as e:
            raise errors.ConvForgeError(f"--arch {args.arch}: cannot read ({e})") from None
        if d.get("kind") != "lstm":
            raise errors.ConvForgeError(
                f"--arch {args.arch}: an LSTM model needs an LSTM arch (\"kind\": \"lstm\", "
                f"fields of hw.lstm.config.LstmArch); omit --arch to size one to the model")
        try:
            return LstmArch.from_dict(d)
        except (TypeError, ValueError) as e:
            raise errors.ConvForgeError(f"--arch {args.arch}: {e}") from None
    # Size the default 8-PE core to the model.
    from compiler.lstm.model import import_lstm

    lm = import_lstm(model)
    # a linear layer's outputs are padded (to a multiple of 8 for 8 PEs): a probe arch
    # large enough for every padded size, then the arch sized to the probe's layers
    big = _pow2(8 + max(max(s.input_size, s.output_size) for s in lm.layers))
    probe = LstmArch(n_pe=8, weight_depth=1 << 16, max_cols=2 * big, max_hidden=4 * big,
                     max_input=big)
    res = compile_lstm(model, probe, density=args.density, balanced=not args.no_load_balance)
    i = max(q.input_size for q in res.quant)
    h = max(q.width for q in res.quant)
    c = max(q.input_size + (q.hidden if q.kind == "lstm" else 0) for q in res.quant)
    e = max(enc.entries.shape[1] for enc in res.encoded)
    return LstmArch(n_pe=8, weight_depth=max(16, _pow2(e)), max_cols=_pow2(c),
                    max_hidden=_pow2(h), max_input=_pow2(i))


def _calib(path):
    if path is None:
        return None
    from compiler.passes.quantize import load_samples

    return load_samples(path, f"--calib {path}")


def compile_command(args) -> int:
    """``convforge compile LSTM.onnx -o OUT [--arch LSTM_ARCH.json] [--density D]``."""
    arch = _arch(args, args.model)
    result = compile_lstm(args.model, arch, density=args.density,
                          balanced=not args.no_load_balance, calib=_calib(args.calib))
    out = write_outputs(result, args.output)
    if not args.quiet:
        print((out / "report.txt").read_text(), end="")
    print(f"wrote {out}/ (program.bin, weights.bin, arch.json, manifest.json, report.txt, "
          f"report.json)")
    return 0


def is_lstm_output(out_dir) -> bool:
    try:
        return json.loads((Path(out_dir) / "manifest.json").read_text()).get("mode") == "lstm"
    except (OSError, ValueError):
        return False


def layers_from_image(image: bytes, arch: LstmArch) -> list:
    """Golden layer parameters decoded from a DDR image (CSC entries, pointers, biases)."""
    words = struct.unpack_from(f"<{DESC_WORDS}I", image, 0)
    if words[0] != HEADER_MAGIC or words[3] != arch.config_hash:
        raise errors.ProgramFormatError("program.bin is not an LSTM image for this arch")
    layers = []
    for li in range(words[2]):
        f = dict(zip(LAYER_FIELDS, struct.unpack_from(f"<{DESC_WORDS}I", image,
                                                      DESC_BYTES * (li + 1))))
        n, e = arch.n_pe, f["entries"]
        linear = f["kind"] == KIND_LINEAR
        kind = "linear" if linear else "lstm"
        cols = f["input_size"] + (0 if linear else f["hidden"])
        ent = np.frombuffer(image, "<u2", n * e, f["w_offset"]).reshape(n, e)
        ptr = np.frombuffer(image, "<u2", n * cols, f["ptr_offset"]).reshape(n, cols)
        w = csc_decode(EncodedLayer(ent, ptr, None, None, None), f["hidden"], n, kind)
        bias = np.frombuffer(image, "<i4", 4 * f["hidden"], f["bias_offset"]).reshape(-1, 4)
        layers.append({**f, "wx": w[:, :f["input_size"]], "wh": w[:, f["input_size"]:],
                       "bias": (bias.reshape(-1) if linear else bias.T.reshape(-1)).astype(
                           np.int64),
                       "gate_shift": f["gate_shift"], "kind": kind,
                       "width": 4 * f["hidden"] if linear else f["hidden"]})
    return layers


def simulate_lstm(out_dir, x=None, *, rtl=False, seed=0):
    """One sequence on the golden model (and the RTL): returns a dict of results."""
    out_dir = Path(out_dir)
    manifest = json.loads((out_dir / "manifest.json").read_text())
    arch = LstmArch.from_dict(json.loads((out_dir / "arch.json").read_text()))
    image = bytearray((out_dir / "program.bin").read_bytes() + (out_dir / "weights.bin")
                      .read_bytes())
    layers = layers_from_image(bytes(image), arch)
    steps, inp = manifest["steps"], layers[0]["input_size"]
    if x is None:
        x = np.random.default_rng(seed).standard_normal((steps, inp))
    x = np.asarray(x)
    if x.size != steps * inp:
        raise errors.ConvForgeError(f"--input has shape {list(x.shape)}; the model takes "
                                    f"[{steps}, 1, {inp}]")
    x = x.reshape(steps, inp)
    xq = x.astype(np.int64) if np.issubdtype(x.dtype, np.integer) else quantize_input(
        x, manifest["x_frac"])
    raw = xq.astype("<i2").tobytes()
    off = layers[0]["x_offset"]
    image[off:off + len(raw)] = raw
    gold = lstm_stack(xq, layers)
    res = {"golden": gold[-1], "steps": steps, "arch": arch}
    if (out_dir / "model.onnx").exists() and not np.issubdtype(x.dtype, np.integer):
        import onnxruntime as ort

        sess = ort.InferenceSession(str(out_dir / "model.onnx"),
                                    providers=["CPUExecutionProvider"])
        ref = sess.run(None, {manifest["input"]: x[:, None, :].astype(np.float32)})[0]
        size = manifest.get("output_size", gold[-1].shape[1])
        ref = ref.reshape(-1, size)
        got = gold[-1][-1:] if manifest["output_kind"] == "last" else gold[-1]
        res["snr_db"] = snr_db(ref, got[:, :size] / 2.0 ** manifest.get("output_frac", 15))
    if rtl:
        from sim.lstm_rtl import run_lstm_rtl

        run = run_lstm_rtl(arch, bytes(image))
        if run.error_code:
            raise errors.ProgramFormatError(f"the core stopped with error code "
                                            f"{run.error_code} at layer {run.error_info}")
        h = layers[-1]["h_offset"]
        out = np.frombuffer(run.image, "<i2", steps * layers[-1]["width"], h)
        res["rtl"] = out.astype(np.int64).reshape(steps, -1)
        res["cycles"] = run.cycles
        res["rtl_equals_golden"] = bool((res["rtl"] == gold[-1]).all())
    return res


def simulate_command(args) -> int:
    from compiler.passes.quantize import load_samples

    x = load_samples(args.input, f"--input {args.input}") if args.input else None
    rtl = getattr(args, "backend", "iss") == "rtl"
    res = simulate_lstm(args.out_dir, x, rtl=rtl, seed=args.seed)
    h = res["golden"]
    print(f"golden: {res['steps']} steps, hidden {h.shape[1]}, last h[:8] "
          f"{h[-1, :8].tolist()}")
    if "snr_db" in res:
        print(f"SNR vs onnxruntime float: {res['snr_db']:.1f} dB")
    if rtl:
        mhz = res["arch"].clock_mhz
        print(f"rtl: {res['cycles']:,} cycles ({res['cycles'] / (mhz * 1e3):.3f} ms at "
              f"{mhz:g} MHz); RTL == golden: {res['rtl_equals_golden']}")
        if not res["rtl_equals_golden"]:
            return 1
    if args.output:
        path = args.output if str(args.output).endswith(".npz") else f"{args.output}.npz"
        np.savez(path, h=h, **({"rtl": res["rtl"]} if rtl else {}))
        print(f"wrote {path}")
    return 0
