"""``convforge explore`` on the command line."""

from __future__ import annotations

from compiler.errors import ConvForgeError

__all__ = ["add_explore_parser", "explore_command"]


def explore_command(args) -> int:
    from .run import explore

    if not args.snr_margin >= 0:
        raise ConvForgeError(f"--snr-margin must be a non-negative number of dB, "
                             f"not {args.snr_margin}")
    if args.trials < 1:
        raise ConvForgeError(f"--trials must be a positive integer, not {args.trials}")
    result = explore(args.model, args.output, board=args.board, budget_dsp=args.budget_dsp,
                     trials=args.trials, objectives=args.objectives,
                     scheduler=args.scheduler, workers=args.workers,
                     compile_top=args.compile_top, calibration=args.calib,
                     accuracy_samples=args.samples, seed=args.seed, modes=args.modes,
                     schemes=args.schemes, progress=not args.no_progress,
                     accuracy_margin_db=args.snr_margin)
    print((result.out_dir / "summary.txt").read_text(), end="")
    print(f"wrote {result.out_dir}/ (trials.csv, trials.json, pareto.csv, pareto.json, "
          f"selected.json, summary.txt, summary.json, plots/, study.db)")
    return 0


def add_explore_parser(sub) -> None:
    from .run import DEFAULT_OBJECTIVES, OBJECTIVES

    p = sub.add_parser(
        "explore", help="multi-objective design-space exploration (Pareto front)",
        description="Search modes, engine parallelism, buffers, kernel sets, weight schemes, "
                    "word sizes and per-layer pruning with Optuna NSGA-II on Dask; write "
                    "every trial, the Pareto front, the designs kept by the exclusion rules "
                    "and plots to EXP/. Running it again on EXP/ resumes the study.")
    p.add_argument("model", help="ONNX model file")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--board", metavar="NAME", help="target board (fit constraint)")
    target.add_argument("--budget-dsp", type=int, metavar="N", help="DSP budget instead")
    p.add_argument("--trials", type=int, default=40,
                   help="trials the study holds at the end (default 40)")
    p.add_argument("--objectives", nargs="+", choices=list(OBJECTIVES),
                   default=list(DEFAULT_OBJECTIVES), metavar="OBJ",
                   help=f"objectives among {', '.join(OBJECTIVES)} "
                        f"(default: {' '.join(DEFAULT_OBJECTIVES)})")
    p.add_argument("--scheduler", metavar="tcp://HOST:8786",
                   help="Dask scheduler address (default: a local cluster)")
    p.add_argument("--workers", type=int, default=2,
                   help="local cluster worker processes (default 2)")
    p.add_argument("--compile-top", type=int, default=0, metavar="N",
                   help="compile the first N selected designs into EXP/designs/")
    p.add_argument("--calib", metavar="SAMPLES",
                   help="calibration samples (.npy/.npz); accuracy is measured on them")
    p.add_argument("--samples", type=int, default=4,
                   help="calibration samples used per trial (default 4)")
    p.add_argument("--modes", nargs="+", metavar="MODE",
                   help="restrict the modes (seml, sesl, hybrid)")
    p.add_argument("--schemes", nargs="+", metavar="SCHEME",
                   help="restrict the weight schemes (uniform, pot, apot)")
    p.add_argument("--seed", type=int, default=0, help="sampler seed")
    p.add_argument("--snr-margin", type=float, default=1.0, metavar="DB",
                   help="the summary's comparison with the default design (the board's "
                        "default arch, 8-bit uniform) counts designs at least as fast at no "
                        "more DSPs whose SNR is at most DB below the default's (default 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("-o", "--output", required=True, metavar="EXP", help="output directory")
    p.set_defaults(func=explore_command)
