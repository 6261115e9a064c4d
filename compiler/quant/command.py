"""``convforge quantize``: quantize a model (or import a QDQ one) and report its SNR.

The command imports the model, optionally prunes it, quantizes it (or takes the
scales of a pre-quantized QDQ model), runs the golden network on the
calibration samples and compares with onnxruntime float: a per-layer table with
scales, shifts, sparsity and SNR, optionally written as JSON.
"""

from __future__ import annotations

import warnings

__all__ = ["add_quantize_parser", "quantize_command"]


def add_quantize_parser(sub) -> None:
    """Register the ``quantize`` subcommand on an ``argparse`` subparsers object."""
    from compiler.passes.prune import PRUNE_SCOPES
    from compiler.passes.quantize import SCALE_MODES
    from compiler.quant.weights import WEIGHT_SCHEMES
    p = sub.add_parser(
        "quantize", help="quantize a model and report per-layer scales and SNR",
        description="Quantize an ONNX model (or import a pre-quantized QDQ model), run the "
                    "golden network on the calibration samples and report per-layer scales, "
                    "shifts, sparsity and SNR against onnxruntime float.")
    p.add_argument("model", help="ONNX model file (float, or QDQ from quantize_static)")
    p.add_argument("--calib", metavar="SAMPLES",
                   help=".npy/.npz input samples (default: seeded random inputs, with a warning)")
    p.add_argument("--act-bits", type=int, default=8, help="activation width, 4-16 (default 8)")
    p.add_argument("--weight-bits", type=int, default=8, help="weight width, 4-16 (default 8)")
    p.add_argument("--weight-scheme", choices=WEIGHT_SCHEMES, default="uniform")
    p.add_argument("--scale-mode", choices=SCALE_MODES, default="per_channel",
                   help="per_channel, per_layer or pot (dynamic fixed point, m = 1)")
    p.add_argument("--pot-exp-bits", type=int, default=3, help="PoT/APoT exponent bits")
    p.add_argument("--percentile", type=float, help="clip activation ranges to a percentile")
    p.add_argument("--prune", type=float, metavar="SPARSITY",
                   help="magnitude-prune to this fraction of zero weights first")
    p.add_argument("--prune-scope", choices=PRUNE_SCOPES, default="layer")
    p.add_argument("--seed", type=int, default=0, help="seed of random calibration inputs")
    p.add_argument("--json", metavar="OUT", help="also write the report as JSON to OUT")
    p.set_defaults(func=quantize_command)


def quantize_command(args) -> int:
    """Run ``convforge quantize``; returns the exit status."""
    from compiler.codegen.output import write_file
    from compiler.errors import ConvForgeError
    from compiler.frontend.onnx import load_model
    from compiler.frontend.qdq import import_qdq, is_qdq_model
    from compiler.passes.prune import prune
    from compiler.passes.quantize import QuantConfig, load_calibration, quantize, random_calibration
    from compiler.pipeline import import_model
    from compiler.runner import compare_with_onnx, compare_with_qdq

    proto = load_model(args.model)
    config = QuantConfig(act_bits=args.act_bits, weight_bits=args.weight_bits,
                         weight_scheme=args.weight_scheme, scale_mode=args.scale_mode,
                         pot_exp_bits=args.pot_exp_bits, percentile=args.percentile)
    if is_qdq_model(proto):
        if args.prune:
            raise ConvForgeError(f"--prune does not apply to {args.model}: a QDQ model's "
                                 f"weights are already quantized; prune the float model")
        imported = import_qdq(proto, config)
        graph, report, float_model = imported.graph, imported.report, imported.float_model
        samples = (load_calibration(graph, args.calib) if args.calib
                   else random_calibration(graph, seed=args.seed))
        figures = compare_with_qdq(graph, proto, samples)
        for out, fig in figures.items():
            report.extra[f"{out}: within 1 LSB of onnxruntime QDQ"] = \
                f"{100 * fig['within_1_lsb']:.1f}% (max {fig['max_lsb']} LSB)"
    else:
        float_graph = import_model(proto)
        float_model = proto
        # Calibration runs on onnxruntime unless pruning changed the weights.
        if args.prune:
            float_graph, prune_report = prune(float_graph, args.prune, scope=args.prune_scope)
            print(prune_report.table())
        with warnings.catch_warnings():
            # The report records the random calibration; the warning would repeat it.
            warnings.simplefilter("ignore" if args.calib is None else "default")
            graph, report = quantize(float_graph, config, args.calib, seed=args.seed,
                                     model=None if args.prune else proto)
        samples = (load_calibration(graph, args.calib) if args.calib
                   else random_calibration(graph, seed=args.seed))
    compare_with_onnx(graph, float_model, samples, report)
    print(report.table())
    if args.json:
        write_file(args.json, report.to_json(), "--json")
        print(f"wrote {args.json}")
    return 0
