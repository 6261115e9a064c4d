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
from hw.lstm.config import DESC_BYTES, DESC_WORDS, HEADER_MAGIC, LAYER_FIELDS, LstmArch
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
    i = max(s.input_size for s in lm.layers)
    h = max(s.hidden for s in lm.layers)
    c = max(s.input_size + s.hidden for s in lm.layers)
    probe = LstmArch(n_pe=8, weight_depth=1 << 16, max_cols=_pow2(c), max_hidden=_pow2(h),
                     max_input=_pow2(i))
    res = compile_lstm(model, probe, density=args.density, balanced=not args.no_load_balance)
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
        cols = f["input_size"] + f["hidden"]
        ent = np.frombuffer(image, "<u2", n * e, f["w_offset"]).reshape(n, e)
        ptr = np.frombuffer(image, "<u2", n * cols, f["ptr_offset"]).reshape(n, cols)
        w = csc_decode(EncodedLayer(ent, ptr, None, None, None), f["hidden"], n)
        bias = np.frombuffer(image, "<i4", 4 * f["hidden"], f["bias_offset"]).reshape(-1, 4)
        layers.append({"wx": w[:, :f["input_size"]], "wh": w[:, f["input_size"]:],
                       "bias": bias.T.reshape(-1).astype(np.int64),
                       "gate_shift": f["gate_shift"], **f})
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
        ref = ref.reshape(-1, gold[-1].shape[1])
        got = gold[-1][-1:] if manifest["output_kind"] == "last" else gold[-1]
        res["snr_db"] = snr_db(ref, got / 32768.0)
    if rtl:
        from sim.lstm_rtl import run_lstm_rtl

        run = run_lstm_rtl(arch, bytes(image))
        if run.error_code:
            raise errors.ProgramFormatError(f"the core stopped with error code "
                                            f"{run.error_code} at layer {run.error_info}")
        h = layers[-1]["h_offset"]
        out = np.frombuffer(run.image, "<i2", steps * layers[-1]["hidden"], h)
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
