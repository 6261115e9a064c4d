"""``convforge explore``: Optuna NSGA-II proposes, Dask distributed evaluates.

:func:`explore` runs a resumable multi-objective search:

- the study lives in ``EXP/study.db`` (SQLite, Optuna storage); running ``explore``
  again on the same directory resumes it: finished trials are kept, trials that were
  in flight when the run stopped are re-queued with their parameters, and the search
  continues until ``trials`` trials are finished;
- a new study first evaluates the target's default design (the board's default arch,
  or the default arch under ``--budget-dsp``) as the baseline and a few neighbours of
  it (:func:`_warm_start`: multipliers moved between engines, wider engines, other weight
  schemes), then asks NSGA-II
  (:class:`optuna.samplers.NSGAIISampler`, ask/tell) for points, keeping two per
  worker in flight on a Dask cluster (a ``LocalCluster`` unless ``scheduler`` names
  one); constraint: the design fits the board (violation = the resources' excess);
- at the end it writes every trial (``trials.csv``, ``trials.json``), the Pareto
  front of the feasible trials (``pareto.csv``, ``pareto.json``), seed 001's
  exclusion rules applied to the front (``selected.json``), ``summary.txt`` /
  ``summary.json``, PNG plots in ``plots/`` and, with ``compile_top``, the compile
  outputs of the first selected designs in ``designs/trial-N/``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

from compiler.errors import ConvForgeError

from .evaluate import ProblemSpec, compile_point, evaluate_point, get_problem
from .pareto import RULES, exclusion_rules, pareto_front
from .space import build_space

__all__ = ["DEFAULT_OBJECTIVES", "OBJECTIVES", "ExploreResult", "explore"]

#: Objective name -> (metric, direction).
OBJECTIVES = {
    "fps": ("fps", "maximize"),
    "latency": ("latency_ms", "minimize"),
    "dsp": ("dsp", "minimize"),
    "lut": ("lut", "minimize"),
    "ff": ("ff", "minimize"),
    "bram": ("bram", "minimize"),
    "power": ("power", "minimize"),
    "energy": ("energy_mj", "minimize"),
    "snr": ("snr_db", "maximize"),
    "nmse": ("nmse_db", "minimize"),
    "top1": ("top1_agreement", "maximize"),
}
DEFAULT_OBJECTIVES = ("fps", "dsp", "snr")
STUDY_NAME = "convforge-explore"
#: Largest |value| told to Optuna (an exact design has an infinite SNR).
_CLAMP = 1e9


@dataclass
class ExploreResult:
    out_dir: Path
    trials: list
    front: list
    selected: list
    excluded: list
    baseline: dict | None
    summary: dict


def _signs(objectives):
    return {OBJECTIVES[o][0]: (-1 if OBJECTIVES[o][1] == "maximize" else 1)
            for o in objectives}


#: SEML engine dimensions a neighbour of the default design moves multipliers between.
ENGINES = ("conv_pi", "conv_po", "pw_pi", "pw_po", "dw")


def _baseline_point(problem, space) -> dict:
    a = problem.base_arch
    names = space.names()
    point = {"mode": "seml", "conv_pi": a.conv_pi, "conv_po": a.conv_po, "pw_pi": a.pw_pi,
             "pw_po": a.pw_po, "dw": a.dw_channels, "buf_kib": a.ibuf_bytes // 1024,
             "conv_k_max": a.conv_k_max, "weight_scheme": a.weight_scheme, "act_bits": a.act_bits,
             "weight_bits": a.weight_bits}
    for name in names:
        if name.startswith("prune."):
            point[name] = 0.0
    choices = space.to_dict()
    # The default engines' kernel set, widened to the model's largest kernel.
    wider = [k for k in choices.get("conv_k_max", ()) if k >= a.conv_k_max]
    if wider:
        point["conv_k_max"] = min(wider)
    for name, value in list(point.items()):
        if name not in choices or value not in choices[name]:
            return None  # the default design lies outside the restricted space
    return point


def _warm_start(base: dict, space) -> list[dict]:
    """Neighbours of the default design that open the search (seed 000's refinement
    from a working design), in this order:

    1. at the default quantization, multipliers moved from one engine to another (one
       engine dimension twice as wide, another half as wide: e.g. a pointwise array
       twice as deep fed by a conv engine half as wide), the moves that can be faster at
       no more DSPs and the default's accuracy;
    2. the hybrid mode at each split point, with the conv engine half as wide in both
       dimensions (the SESL prefix takes the first conv layers off the core);
    3. at the default quantization, each engine dimension twice as wide;
    4. the default engines with half the buffers;
    5. the same engines with each other weight scheme (shift-based PEs free the DSPs of
       the MACs), and with twice the output parallelism and half the buffers;
    6. the hybrid mode at each split point with the default engines.
    """
    choices = space.to_dict()

    def ok(name, value):
        return value in choices.get(name, ())

    out = []
    for up in ENGINES:
        for down in ENGINES:
            if up != down and ok(up, base[up] * 2) and ok(down, base[down] // 2):
                out.append({**base, up: base[up] * 2, down: base[down] // 2})
    # hybrid: the first layers on a SESL prefix, the core's conv engine half as wide in
    # both dimensions (the prefix takes the first conv layers off it)
    splits = choices.get("hybrid_layers", ()) if "hybrid" in choices.get("mode", ()) \
        and base["weight_scheme"] == "uniform" else ()
    narrow = dict(base)
    for name in ("conv_pi", "conv_po"):
        if ok(name, base[name] // 2):
            narrow[name] = base[name] // 2
    for k in splits:
        out.append({**narrow, "mode": "hybrid", "hybrid_layers": k})
    for name in ENGINES:
        if ok(name, base[name] * 2):
            out.append({**base, name: base[name] * 2})
    half = base["buf_kib"] // 2
    if ok("buf_kib", half):
        out.append({**base, "buf_kib": half})
    for scheme in choices.get("weight_scheme", ()):
        if scheme == base["weight_scheme"]:
            continue
        out.append({**base, "weight_scheme": scheme})
        wider = dict(base, weight_scheme=scheme)
        for name in ("conv_po", "pw_po", "dw"):
            if ok(name, base[name] * 2):
                wider[name] = base[name] * 2
        # wider engines read more banks at once: half the buffers keep the block RAM
        if ok("buf_kib", half):
            wider["buf_kib"] = half
        if wider != out[-1]:
            out.append(wider)
    for k in splits:  # hybrid with the default engines
        out.append({**base, "mode": "hybrid", "hybrid_layers": k})
    unique, seen = [], {_point_key(base)}
    for point in out:  # e.g. a conv engine that cannot be halved
        if _point_key(point) not in seen:
            seen.add(_point_key(point))
            unique.append(point)
    return unique


def _neighbours(point: dict, space) -> list[dict]:
    """Local moves around an SEML or hybrid design, in this order: one engine dimension
    twice as wide, multipliers moved from one engine dimension to another (one twice,
    another half as wide), the next buffer sizes and, in the hybrid mode, the next split
    points."""
    if point.get("mode") not in ("seml", "hybrid"):
        return []
    choices = space.to_dict()

    def ok(name, value):
        return value in choices.get(name, ())

    out = []
    for name in ENGINES:
        if ok(name, point[name] * 2):
            out.append({**point, name: point[name] * 2})
    for up in ENGINES:
        for down in ENGINES:
            if up != down and ok(up, point[up] * 2) and ok(down, point[down] // 2):
                out.append({**point, up: point[up] * 2, down: point[down] // 2})
    for name in ("buf_kib", "hybrid_layers"):
        values = list(choices.get(name, ()))
        if point.get(name) in values:
            i = values.index(point[name])
            out += [{**point, name: values[j]} for j in (i - 1, i + 1)
                    if 0 <= j < len(values)]
    return out


def _point_key(point: dict) -> str:
    return json.dumps({k: v for k, v in point.items() if v is not None}, sort_keys=True)


class _Refiner:
    """Hill climbing next to NSGA-II (seed 000's refinement of a working design).

    The incumbent is the fastest design so far that fits, uses no more DSPs than the
    default design and keeps its SNR within the margin (the default itself to start).
    When no queued trial is waiting, :meth:`next` proposes the incumbent's next
    :func:`_neighbours` not yet tried, skipping those whose SEML core alone needs more
    DSPs than the default (the calibrated resource model, no evaluation); at most
    ``budget`` proposals in all (refinement trials of a resumed study count)."""

    def __init__(self, study, space, problem, margin_db: float, budget: int):
        self.space = space
        self.problem = problem
        self.margin = margin_db
        self.left = budget
        self.seen = set()
        self.ref = None
        self.best = None
        self.queue = []
        self.pending = []
        for t in study.get_trials(deepcopy=False):
            self.seen.add(_point_key(t.user_attrs.get("point")
                                     or t.system_attrs.get("fixed_params") or t.params))
            if t.user_attrs.get("refine"):
                self.left -= 1
        for t in sorted(study.get_trials(deepcopy=False),
                        key=lambda t: not t.user_attrs.get("baseline")):
            if t.user_attrs.get("evaluated") and t.user_attrs.get("metrics"):
                self.tell(t.user_attrs["point"], t.user_attrs["metrics"],
                          bool(t.user_attrs.get("baseline")))

    def tell(self, point, metrics, baseline: bool = False) -> None:
        if baseline:
            self.ref = metrics
            self.best = metrics["fps"]
            self.queue = _neighbours(point, self.space)
            pending, self.pending = self.pending, []
            for p, m in pending:
                self.tell(p, m)
            return
        if self.ref is None:
            self.pending.append((point, metrics))
            return
        if metrics["fits"] and metrics["dsp"] <= self.ref["dsp"] \
                and metrics["snr_db"] >= self.ref["snr_db"] - self.margin \
                and metrics["fps"] > self.best:
            self.best = metrics["fps"]
            self.queue = _neighbours(point, self.space)

    def next(self):
        """The next point to try, or ``None``."""
        from .evaluate import seml_core_dsp

        while self.left > 0 and self.queue:
            point = self.queue.pop(0)
            key = _point_key(point)
            if key in self.seen:
                continue
            self.seen.add(key)
            if seml_core_dsp(self.problem, point) > self.ref["dsp"]:
                continue
            self.left -= 1
            return point
        return None


def _client(scheduler, workers):
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            return Client(scheduler, timeout="20s"), None
        except (OSError, TimeoutError) as e:
            raise ConvForgeError(f"--scheduler {scheduler}: cannot reach the Dask scheduler "
                                 f"({e}); start one with `dask scheduler` or omit --scheduler "
                                 f"for a local cluster") from None
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                           dashboard_address=None)
    return Client(cluster), cluster


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _json(obj) -> str:
    def default(v):
        if hasattr(v, "item"):
            return v.item()
        raise TypeError(f"{v!r} is not JSON serializable")

    return json.dumps(obj, indent=2, default=default) + "\n"


def _trial_rows(study):
    import optuna

    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.state in (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING):
            continue  # in flight, or queued and not yet asked for
        # a trial stopped before its result was complete (``evaluated`` is written last)
        # failed and its point was re-queued as another trial: whatever part of its
        # result reached the storage is not a result
        evaluated = bool(t.user_attrs.get("evaluated"))
        rows.append({"trial": t.number, "state": t.state.name,
                     "baseline": bool(t.user_attrs.get("baseline", False)),
                     "params": t.user_attrs.get("point", dict(t.params)),
                     "metrics": t.user_attrs.get("metrics") if evaluated else None,
                     "error": t.user_attrs.get("error") if evaluated else None,
                     "seconds": t.user_attrs.get("seconds")})
    return rows


def _csv(rows, param_names, metric_names) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["trial", "state", "baseline", *param_names, *metric_names, "error"])
    for r in rows:
        m = r["metrics"] or {}
        w.writerow([r["trial"], r["state"], int(r["baseline"]),
                    *[r["params"].get(p, "") for p in param_names],
                    *[m.get(k, "") for k in metric_names], r["error"] or ""])
    return buf.getvalue()


def _flat(row):
    return {"trial": row["trial"], **row["params"], **row["metrics"]}


def _selection_points(front):
    pts = []
    for r in front:
        p = _flat(r)
        e = p["energy_mj"]
        p["energy_r"] = float(f"{e:.3g}") if e and math.isfinite(e) else e
        pts.append(p)
    return pts


def _same_quantization(r, b) -> bool:
    p = r["params"]
    return (p["weight_scheme"], p["act_bits"], p["weight_bits"]) == (
        b["weight_scheme"], b["act_bits"], b["weight_bits"]) and not any(
        v for k, v in p.items() if k.startswith("prune.") and v)


def compare_with_baseline(rows, baseline, margin_db) -> tuple[list, dict]:
    """The summary's comparison with the default design (the board's default arch at
    its default quantization, uniform 8-bit): the fastest design that fits, runs at
    least as fast with no more DSPs, and keeps the default's accuracy (SNR at most
    ``margin_db`` below it). When there is none, which constraint binds: DSPs (the
    designs as fast and as accurate need more), speed (the accurate ones at no more
    DSPs are slower), accuracy (the fast ones at no more DSPs lose more than the
    margin) or the fit (they exceed the board).

    ``out["verdict"]`` is ``"faster"`` (a design strictly faster), ``"tie"`` (the best
    such design only equals the default's frames/s: not reported as a faster design) or
    ``"none"``; ``out["speed_ratio"]`` is the best design's frames/s over the default's
    (1.0 when there is none) and ``out["strictly_faster"]`` says whether it exceeds 1."""
    b = baseline["metrics"]
    bp = dict(baseline["params"])
    others = [r for r in rows if r["state"] == "COMPLETE" and not r["baseline"]]

    def fast(r):
        return r["metrics"]["fps"] >= b["fps"]

    def cheap(r):
        return r["metrics"]["dsp"] <= b["dsp"]

    def accurate(r):
        return r["metrics"]["snr_db"] >= b["snr_db"] - margin_db

    def fits(r):
        return r["metrics"]["fits"]

    def best(rs):
        return max(rs, key=lambda r: (r["metrics"]["fps"], -r["metrics"]["dsp"],
                                      r["metrics"]["snr_db"]))

    def line(r):
        m, p = r["metrics"], r["params"]
        if p["mode"] == "sesl":
            engines = f"{p.get('sesl_dsp_share')} of the DSPs"
        else:
            engines = (f"conv {p['conv_pi']}x{p['conv_po']}, pointwise "
                       f"{p['pw_pi']}x{p['pw_po']}, depthwise {p['dw']}, {p['buf_kib']} KiB "
                       f"buffers")
            if p["mode"] == "hybrid":
                engines = (f"{p['hybrid_layers']} layers on a SESL prefix "
                           f"({m.get('sesl_dsp', '?')} DSP), SEML core {engines}")
        pruned = [f"{k[6:]} {v:.0%}" for k, v in p.items() if k.startswith("prune.") and v]
        return (f"trial {r['trial']} ({p['mode']}: {engines}; {p['weight_scheme']} "
                f"a{p['act_bits']}/w{p['weight_bits']}"
                + (f", pruned {', '.join(pruned)}" if pruned else "") + ") "
                f"runs {m['fps']:.2f} frames/s ({m['fps'] / b['fps']:.3f}x the default) with "
                f"{m['dsp']} DSP (default {b['dsp']}), {m['lut']:,} LUT, SNR "
                f"{m['snr_db']:.1f} dB ({m['snr_db'] - b['snr_db']:+.1f} dB)"
                + ("" if fits(r) else ", does not fit the board"))

    out = {"margin_db": margin_db,
           "default_quantization": f"{bp['weight_scheme']} a{bp['act_bits']}/w{bp['weight_bits']}"}
    lines = []
    head = (f"at least as fast as the default design at no more DSPs and within "
            f"{margin_db:g} dB of its SNR: ")
    found = [r for r in others if fits(r) and fast(r) and cheap(r) and accurate(r)]
    if found:
        r = best(found)
        m = r["metrics"]
        ratio = m["fps"] / b["fps"]
        strictly = m["fps"] > b["fps"]
        lines.append(head + line(r) + ("" if strictly else " (a tie on speed, not a speed-up)"))
        if strictly:
            lines.append(f"  verdict: found a faster design: {ratio:.3f}x the default's "
                         f"frames/s at {m['dsp']} DSP (default {b['dsp']}) and "
                         f"{m['snr_db'] - b['snr_db']:+.1f} dB SNR")
        else:
            lines.append("  verdict: no faster design: the best design at no more DSPs within "
                         f"the margin is only as fast as the default ({ratio:.3f}x)")
        out["found"] = {"trial": r["trial"], "params": r["params"], **r["metrics"]}
        out["speed_ratio"] = ratio
        out["strictly_faster"] = strictly
        out["verdict"] = "faster" if strictly else "tie"
    else:
        lines.append(head + "none in these trials")
        lines.append("  verdict: no design other than the default is at least as fast at no "
                     "more DSPs within the margin (the default stays the best, 1.000x)")
        out["found"] = None
        out["speed_ratio"] = 1.0
        out["strictly_faster"] = False
        out["verdict"] = "none"
    # What keeps the others out (and what the faster designs cost).
    reasons = []
    fast_cheap = [r for r in others if fits(r) and fast(r) and cheap(r) and not accurate(r)]
    if fast_cheap:
        r = best(fast_cheap)
        reasons.append(("accuracy", f"accuracy: {len(fast_cheap)} designs at least as fast "
                        f"at no more DSPs lose more than {margin_db:g} dB; the fastest: "
                        + line(r), r))
    fast_acc = [r for r in others if fits(r) and fast(r) and accurate(r) and not cheap(r)]
    if fast_acc:
        r = min(fast_acc, key=lambda r: (r["metrics"]["dsp"], -r["metrics"]["fps"]))
        reasons.append(("dsp", f"DSPs: {len(fast_acc)} designs at least as fast and as "
                        f"accurate need more DSPs; the fewest: " + line(r), r))
    cheap_acc = [r for r in others if fits(r) and cheap(r) and accurate(r) and not fast(r)]
    if cheap_acc:
        r = best(cheap_acc)
        reasons.append(("speed", f"speed: {len(cheap_acc)} designs as accurate at no more "
                        f"DSPs are slower; the fastest: " + line(r), r))
    unfit = [r for r in others if not fits(r) and fast(r) and cheap(r) and accurate(r)]
    if unfit:
        r = best(unfit)
        reasons.append(("fit", f"fit: {len(unfit)} designs meet the comparison but exceed "
                        f"the board; the fastest: " + line(r), r))
    if not found:
        for _, text, _ in reasons:
            lines.append("  " + text)
        if not reasons:
            lines.append("  no other design was evaluated")
    elif fast_cheap:  # a faster design that loses accuracy is shown, not counted
        lines.append("  (at least as fast, but outside the margin: " + line(best(fast_cheap))
                     + ")")
    same = [r for r in others if fits(r) and _same_quantization(r, bp)]
    out["binding"] = [{"constraint": c, "trial": r["trial"]} for c, _, r in reasons]
    out["default_quantization_designs"] = len(same)
    if same:
        r = best(same)
        lines.append(f"the fastest design at the default quantization ({len(same)} "
                     f"evaluated): " + line(r))
        out["fastest_default_quantization"] = {"trial": r["trial"], "params": r["params"],
                                               **r["metrics"]}
    return lines, out


def _summary(rows, front, selected, baseline, objectives, elapsed, resumed_from,
             margin_db):
    done = [r for r in rows if r["state"] == "COMPLETE"]
    feasible = [r for r in done if r["metrics"]["fits"]]
    lines = [f"trials: {len(rows)} finished ({len(done)} evaluated, {len(feasible)} fit the "
             f"target, {len(rows) - len(done)} failed to quantize or map)"
             + (f"; resumed from {resumed_from}" if resumed_from else ""),
             f"objectives: {', '.join(objectives)}",
             f"Pareto front: {len(front)} designs; after the exclusion rules: {len(selected)}",
             f"wall time of this run: {elapsed:.1f} s"]
    out = {"trials": len(rows), "evaluated": len(done), "feasible": len(feasible),
           "front": len(front), "selected": len(selected), "objectives": list(objectives),
           "seconds": elapsed, "resumed_from": resumed_from}
    if baseline is not None and baseline["metrics"] is not None:
        b, p = baseline["metrics"], baseline["params"]
        lines.append(f"baseline (default design, trial {baseline['trial']}, "
                     f"{p['weight_scheme']} a{p['act_bits']}/w{p['weight_bits']}): "
                     f"{b['fps']:.2f} frames/s, {b['dsp']} DSP, {b['lut']:,} LUT, "
                     f"{b['bram']} BRAM, SNR {b['snr_db']:.1f} dB")
        out["baseline"] = {"trial": baseline["trial"], **b}
        more, comparison = compare_with_baseline(rows, baseline, margin_db)
        lines += more
        out["comparison"] = comparison
    for s in selected[:10]:
        lines.append(f"  selected trial {s['trial']}: {s['mode']} {s['weight_scheme']} "
                     f"a{s['act_bits']}/w{s['weight_bits']}, {s['fps']:.2f} frames/s, "
                     f"{s['dsp']} DSP, {s['power']:.2f} W, NMSE {s['nmse_db']:.1f} dB")
    return "\n".join(lines) + "\n", out


def explore(model, out_dir, *, board: str | None = None, budget_dsp: int | None = None,
            trials: int = 40, objectives=DEFAULT_OBJECTIVES, scheduler: str | None = None,
            workers: int = 2, compile_top: int = 0, calibration=None,
            accuracy_samples: int = 4, seed: int = 0, modes=None, schemes=None,
            word_sizes=None, population: int | None = None, progress: bool = True,
            plots: bool = True, max_new: int | None = None,
            accuracy_margin_db: float = 1.0) -> ExploreResult:
    """Run (or resume) an exploration of ``model`` into ``out_dir``.

    Parameters
    ----------
    model : str or Path
        ONNX model.
    board, budget_dsp
        The target: a board name, or a DSP budget (exactly one).
    trials : int
        Finished trials the study should hold at the end (baseline included).
    objectives : sequence of str
        Keys of :data:`OBJECTIVES`.
    scheduler : str or None
        Address of a Dask scheduler (``tcp://HOST:8786``); ``None`` starts a local
        cluster of ``workers`` processes.
    compile_top : int
        Compile the first N selected designs into ``out_dir/designs/``.
    calibration : str, Path, ndarray, dict or None
        Calibration samples (accuracy is measured on them against the float model).
    max_new : int or None
        Stop after this many new evaluations in this run (the study stays resumable).
    accuracy_margin_db : float
        The summary's comparison with the default design (its default quantization)
        counts designs whose SNR is at most this far below the default's (dB).
    """
    import optuna
    from distributed import wait
    from tqdm import tqdm

    start = time.perf_counter()
    if (board is None) == (budget_dsp is None):
        raise ConvForgeError("Give exactly one of --board NAME or --budget-dsp N")
    if budget_dsp is not None and budget_dsp < 1:
        raise ConvForgeError(f"--budget-dsp must be a positive integer, not {budget_dsp}")
    if not isinstance(trials, int) or trials < 1:
        raise ConvForgeError(f"--trials must be a positive integer, not {trials!r}")
    objectives = tuple(objectives)
    unknown = [o for o in objectives if o not in OBJECTIVES]
    if unknown or not objectives:
        raise ConvForgeError(f"Unknown objective(s) {', '.join(unknown) or '(none)'}; "
                             f"choose from {', '.join(OBJECTIVES)}")
    if workers < 1:
        raise ConvForgeError(f"--workers must be at least 1, not {workers}")
    path = Path(model)
    try:
        model_bytes = path.read_bytes()
    except OSError as e:
        raise ConvForgeError(f"Cannot read model {path}: {e.strerror or e}") from None
    if board is not None:
        from boards.database import get_board
        try:
            board = get_board(board).name
        except ValueError as e:
            raise ConvForgeError(f"--board {board}: {e}") from None
    calib = None
    if calibration is not None:
        from compiler.passes.quantize import load_samples
        calib = load_samples(calibration, f"--calib {calibration}") \
            if isinstance(calibration, (str, Path)) else calibration
    if board is not None:
        from boards.database import get_board
        base_arch = get_board(board).default_arch()
    else:
        from hw.arch import ArchConfig
        base_arch = ArchConfig(name="explore")
    spec = ProblemSpec(model_bytes, path.stem, board=board, budget_dsp=budget_dsp,
                       calibration=calib, accuracy_samples=accuracy_samples, seed=seed,
                       base_arch=base_arch)
    problem = get_problem(spec)
    try:
        space = build_space(problem, modes=modes, schemes=schemes, word_sizes=word_sizes)
    except ValueError as e:
        raise ConvForgeError(str(e)) from None

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"problem": spec.key, "model": path.stem, "board": board, "budget_dsp": budget_dsp,
            "objectives": list(objectives), "space": space.to_dict()}
    meta_path = out / "explore.json"
    if meta_path.exists():
        old = json.loads(meta_path.read_text())
        if old != json.loads(_json(meta)):
            raise ConvForgeError(
                f"{out} holds an exploration of another model, target, objective list or "
                f"search space; give a new output directory (or delete {out})")
    else:
        _write(meta_path, _json(meta))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    signs = _signs(objectives)
    directions = [OBJECTIVES[o][1] for o in objectives]
    n_pop = population or max(4, min(24, trials // 3))
    sampler = optuna.samplers.NSGAIISampler(population_size=n_pop, seed=seed)
    study = optuna.create_study(storage=f"sqlite:///{out / 'study.db'}", sampler=sampler,
                                study_name=STUDY_NAME, directions=directions,
                                load_if_exists=True)
    states = optuna.trial.TrialState
    def values_of(metrics):
        return [max(-_CLAMP, min(_CLAMP, float(metrics[OBJECTIVES[o][0]])))
                for o in objectives]

    # Trials in flight when a previous run stopped: a trial whose result was recorded
    # (``evaluated`` is written last, before ``tell``) is told it; the others fail and
    # their points are re-queued.
    stale = study.get_trials(deepcopy=False, states=(states.RUNNING,))
    for t in stale:
        if t.user_attrs.get("evaluated"):
            m = t.user_attrs.get("metrics")
            if m is None:
                study.tell(t.number, state=states.FAIL)
            else:
                study.tell(t.number, values_of(m))
            continue
        study.tell(t.number, state=states.FAIL)
        study.enqueue_trial(dict(t.params),
                            user_attrs={"baseline": bool(t.user_attrs.get("baseline"))})

    def finished():
        return [t for t in study.get_trials(deepcopy=False)
                if t.user_attrs.get("evaluated")]

    already = len(finished())
    resumed_from = already if already else None
    if not study.get_trials(deepcopy=False):
        base = _baseline_point(problem, space)
        if base is not None:
            study.enqueue_trial(base, user_attrs={"baseline": True})
            # the neighbours take at most half of the trials; NSGA-II proposes the rest
            for point in _warm_start(base, space)[:max(0, trials // 2 - 1)]:
                study.enqueue_trial(point)
    # local moves around the best design at no more DSPs: at most a quarter of the trials
    refiner = _Refiner(study, space, problem, accuracy_margin_db, trials // 4)

    client, cluster = _client(scheduler, workers)
    nworkers = max(1, len(client.scheduler_info().get("workers", {})) or workers)
    try:
        spec_f = client.scatter(spec, broadcast=True)
        todo = trials - already
        if max_new is not None:
            todo = min(todo, max_new)
        bar = tqdm(total=max(todo, 0), desc="explore", unit="trial", disable=not progress)
        in_flight = {}
        submitted = 0
        while submitted < todo or in_flight:
            while submitted < todo and len(in_flight) < 2 * nworkers:
                if not study.get_trials(deepcopy=False, states=(states.WAITING,)):
                    point = refiner.next()
                    if point is not None:
                        study.enqueue_trial(point, user_attrs={"refine": True})
                trial = study.ask()
                point = space.sample(trial)
                trial.set_user_attr("point", point)
                refiner.seen.add(_point_key(point))
                fut = client.submit(evaluate_point, spec_f, point, pure=False)
                in_flight[fut] = trial
                submitted += 1
            done, _ = wait(list(in_flight), return_when="FIRST_COMPLETED")
            for fut in done:
                trial = in_flight.pop(fut)
                try:
                    result = fut.result()
                except Exception as e:  # noqa: BLE001 -- a worker crash must not lose the study
                    result = {"metrics": None, "error": f"{type(e).__name__}: {e}",
                              "seconds": None}
                trial.set_user_attr("seconds", result["seconds"])
                m = result["metrics"]
                if m is None:
                    trial.set_user_attr("error", result["error"])
                else:
                    trial.set_user_attr("metrics", m)
                    trial.set_constraint("fit", float(m["violation"]))
                # written last: a run stopped after it can tell the result on resuming
                trial.set_user_attr("evaluated", True)
                if m is None:
                    study.tell(trial, state=states.FAIL)
                else:
                    study.tell(trial, values_of(m))
                    refiner.tell(trial.user_attrs["point"], m,
                                 bool(trial.user_attrs.get("baseline")))
                bar.update(1)
        bar.close()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()

    rows = _trial_rows(study)
    param_names = space.names()
    metric_names = sorted({k for r in rows if r["metrics"] for k in r["metrics"]})
    complete = [r for r in rows if r["state"] == "COMPLETE"]
    feasible = [r for r in complete if r["metrics"]["fits"]]
    flat = [_flat(r) for r in feasible]
    front_flat = pareto_front(flat, signs)
    front_ids = {p["trial"] for p in front_flat}
    front = [r for r in feasible if r["trial"] in front_ids]
    selected, excluded = exclusion_rules(
        _selection_points(front), cost="energy_r", error="nmse_db", power="power",
        quant="weight_scheme", channels="mac_units", layers="bram", error_tol=0.1)
    selected.sort(key=lambda p: (p["nmse_db"], p["energy_mj"]))
    baseline = next((r for r in rows if r["baseline"] and r["state"] == "COMPLETE"), None)
    elapsed = time.perf_counter() - start
    text, summary = _summary(rows, front, selected, baseline, objectives, elapsed,
                             resumed_from, accuracy_margin_db)

    compiled = []
    if compile_top:
        designs = out / "designs"
        designs.mkdir(exist_ok=True)
        for p in selected[:compile_top]:
            point = {k: p[k] for k in param_names}
            target = designs / f"trial-{p['trial']}"
            compile_point(spec, point, target)
            compiled.append(str(target))
        text += "".join(f"compiled {c}/\n" for c in compiled)
        summary["compiled"] = compiled

    _write(out / "trials.json", _json(rows))
    _write(out / "trials.csv", _csv(rows, param_names, metric_names))
    _write(out / "pareto.json", _json([_flat(r) for r in front]))
    _write(out / "pareto.csv", _csv(front, param_names, metric_names))
    _write(out / "selected.json", _json({"rules": RULES, "selection_axes": {
        "cost": "energy per frame (mJ, 3 significant digits)", "error": "NMSE (dB, 0.1 dB)",
        "power": "power (W)", "quantization": "weight_scheme", "channels": "MAC units",
        "hidden layers": "BRAM36"}, "selected": selected, "excluded": excluded}))
    _write(out / "summary.json", _json(summary))
    _write(out / "summary.txt", text)
    if plots and feasible:
        from .plots import plot_exploration

        plot_exploration(out / "plots", feasible, front, selected, baseline)
    return ExploreResult(out, rows, front, selected, excluded, baseline, summary)
