"""``convforge explore`` end to end on a two-worker local Dask cluster: the trials, a
non-dominated Pareto front, the exclusion rules, plots, and a resumed run."""

from __future__ import annotations

import csv
import itertools
import json

import onnx
import pytest

from compiler.cli import main as cli_main
from compiler.errors import ConvForgeError
from compiler.explore.evaluate import ProblemSpec, evaluate_point, get_problem
from compiler.explore.pareto import dominates
from compiler.explore.run import OBJECTIVES, STUDY_NAME, explore
from compiler.explore.space import MODES, build_space
from examples.models import dpd_cnn

pytest.importorskip("optuna")
pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("explore") / "dpd.onnx"
    onnx.save(dpd_cnn(hidden_channels=4, hidden_layers=2, kernel_size=5, length=32), str(path))
    return path


def _signs(objectives):
    return {OBJECTIVES[o][0]: (-1 if OBJECTIVES[o][1] == "maximize" else 1)
            for o in objectives}


def test_space_and_one_evaluation(model):
    spec = ProblemSpec(model.read_bytes(), "dpd", budget_dsp=200, accuracy_samples=2)
    problem = get_problem(spec)
    space = build_space(problem)
    names = space.names()
    assert {"mode", "conv_pi", "weight_scheme", "act_bits", "weight_bits"} <= set(names)
    assert {"prune.conv0", "prune.conv1", "prune.conv_out"} <= set(names)
    assert set(space.to_dict()["conv_k_max"]) == {5, 7}  # the model needs 5x5
    assert {"seml", "sesl"} <= set(MODES)
    point = {"mode": "seml", "conv_pi": 2, "conv_po": 2, "pw_pi": 4, "pw_po": 4, "dw": 4, "buf_kib": 16,
             "conv_k_max": 5, "sesl_dsp_share": None, "weight_scheme": "apot",
             "act_bits": 8, "weight_bits": 8, "prune.conv0": 0.5, "prune.conv1": 0.0,
             "prune.conv_out": 0.0}
    r = evaluate_point(spec, point)
    assert r["error"] is None, r["error"]
    m = r["metrics"]
    assert 0 < m["density"] < 1 and m["nnz"] < m["weights"]
    assert m["fps"] == pytest.approx(m["clock_mhz"] * 1e6 / m["cycles_per_frame"])
    assert m["snr_db"] > 5 and m["nmse_db"] == -m["snr_db"]
    assert m["power"] > 0
    uniform = evaluate_point(spec, {**point, "weight_scheme": "uniform"})["metrics"]
    # APoT MACs are shifts: a DSP per MAC unit comes back with uniform weights
    assert uniform["dsp"] - m["dsp"] == m["mac_units"] == 2 * 2 * 25 + 4 * 25 + 4 * 4
    # SESL maps uniform weights only: a clear error, not a crash
    bad = evaluate_point(spec, {**point, "mode": "sesl", "sesl_dsp_share": 1.0})
    assert bad["metrics"] is None and "SESL" in bad["error"]


def test_explore_two_workers_front_and_resume(model, tmp_path):
    import optuna

    out = tmp_path / "exp"
    kwargs = {"budget_dsp": 200, "objectives": ("fps", "dsp", "snr"), "workers": 2,
                  "accuracy_samples": 2, "progress": False, "seed": 3}
    first = explore(model, out, trials=12, max_new=6, **kwargs)
    assert len([r for r in first.trials if r["metrics"] or r["error"]]) == 6
    assert first.summary["resumed_from"] is None
    before = {r["trial"]: r for r in first.trials}
    # a trial left in flight by an interrupted run
    study = optuna.load_study(study_name=STUDY_NAME, storage=f"sqlite:///{out / 'study.db'}")
    orphan = study.ask()
    orphan.suggest_categorical("mode", json.loads((out / "explore.json").read_text())
                               ["space"]["mode"])

    second = explore(model, out, trials=12, compile_top=1, **kwargs)
    assert second.summary["resumed_from"] == 6
    evaluated = [r for r in second.trials if r["metrics"] or r["error"]]
    assert len(evaluated) == 12
    for number, row in before.items():  # finished trials are kept, not re-run
        again = next(r for r in second.trials if r["trial"] == number)
        assert again["params"] == row["params"] and again["metrics"] == row["metrics"]
    stale = next(r for r in second.trials if r["trial"] == orphan.number)
    assert stale["state"] == "FAIL" and stale["metrics"] is None and stale["error"] is None

    # the baseline (default arch under the budget) was evaluated first
    assert second.baseline is not None and second.baseline["trial"] == 0
    assert "baseline" in second.summary

    # the front: feasible, mutually non-dominated, dominating every other feasible trial
    signs = _signs(("fps", "dsp", "snr"))
    front = [{**r["params"], **r["metrics"]} for r in second.front]
    assert front and all(p["fits"] for p in front)
    for a, b in itertools.permutations(front, 2):
        assert not dominates(a, b, signs)
    ids = {r["trial"] for r in second.front}
    for r in second.trials:
        if r["metrics"] and r["metrics"]["fits"] and r["trial"] not in ids:
            p = {**r["params"], **r["metrics"]}
            assert any(dominates(f, p, signs) or all(f[k] == p[k] for k in signs)
                       for f in front)

    # outputs
    for name in ("trials.csv", "trials.json", "pareto.csv", "pareto.json", "selected.json",
                 "summary.txt", "summary.json", "plots/pareto_by_scheme.png",
                 "plots/fps_vs_dsp.png", "plots/selected.png"):
        assert (out / name).exists(), name
    with open(out / "trials.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(second.trials)
    sel = json.loads((out / "selected.json").read_text())
    assert len(sel["rules"]) == 5
    assert len(sel["selected"]) + len(sel["excluded"]) == len(second.front)
    design = out / "designs" / f"trial-{second.selected[0]['trial']}"
    assert (design / "report.json").exists()
    report = json.loads((design / "report.json").read_text())
    assert report["mode"] == second.selected[0]["mode"]

    # a different problem in the same directory is refused
    with pytest.raises(ConvForgeError, match="another model"):
        explore(model, out, trials=12, **{**kwargs, "objectives": ("fps", "power")})


def test_explore_argument_errors(model, tmp_path, capsys):
    with pytest.raises(ConvForgeError, match="exactly one"):
        explore(model, tmp_path / "x", trials=2, progress=False)
    with pytest.raises(ConvForgeError, match="Unknown objective"):
        explore(model, tmp_path / "x", budget_dsp=10, objectives=("speed",), progress=False)
    with pytest.raises(ConvForgeError, match="Unknown board"):
        explore(model, tmp_path / "x", board="nope", progress=False)
    assert cli_main(["explore", str(tmp_path / "missing.onnx"), "--budget-dsp", "10",
                     "-o", str(tmp_path / "y")]) == 2
    assert "Cannot read model" in capsys.readouterr().err


def _evaluated(db):
    """``{trial number: (params, values)}`` of the trials a run finished (the study's
    SQLite file read directly, as a second process sees it)."""
    import sqlite3

    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        rows = con.execute(
            "SELECT t.number, t.state FROM trials t JOIN trial_user_attributes a "
            "ON a.trial_id = t.trial_id WHERE a.key = 'evaluated'").fetchall()
    except sqlite3.OperationalError:  # tables not created yet
        rows = []
    finally:
        con.close()
    return dict(rows)


@pytest.mark.slow  # 77 s on the loaded 2-core machine (two Dask clusters start)
def test_cli_run_killed_then_resumed(model, tmp_path):
    """A CLI run on a two-worker local cluster is killed (SIGKILL, with its Dask
    workers) once some trials are finished; the same command then finishes the study:
    the finished trials are kept, each trial is evaluated once, the total is the
    requested one and the front is non-dominated."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "exp"
    db = out / "study.db"
    trials = 10
    cmd = [sys.executable, "-c",
           "import sys; from compiler.cli import main; sys.exit(main(sys.argv[1:]))",
           "explore", str(model), "--budget-dsp", "200",
           "--trials", str(trials), "--samples", "2", "--workers", "2", "--seed", "5",
           "--no-progress", "-o", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.monotonic() + 240
    try:
        while len(_evaluated(db) if db.exists() else {}) < 3:
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "no trials finished in 240 s"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its Dask worker processes
        proc.wait()
        proc.stdout.close()
    before = _evaluated(db)
    assert 3 <= len(before) < trials
    assert not (out / "summary.json").exists()  # killed before it wrote its outputs

    again = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed_from"] == len(before)
    assert f"resumed from {len(before)}" in again.stdout
    rows = json.loads((out / "trials.json").read_text())
    evaluated = [r for r in rows if r["metrics"] is not None or r["error"] is not None]
    numbers = [r["trial"] for r in evaluated]
    assert len(numbers) == len(set(numbers)) == trials
    assert summary["trials"] == len(rows)
    after = _evaluated(db)
    assert set(before) <= set(after) and len(after) == trials
    for number, state in before.items():  # finished before the kill: kept, not re-run
        # (a trial evaluated but not yet told when killed is told its recorded result)
        assert after[number] == state if state != "RUNNING" else after[number] in (
            "COMPLETE", "FAIL")
    # trials in flight at the kill were re-queued with their points: none is lost
    stale = [r for r in rows if r not in evaluated]
    for r in stale:
        assert r["state"] == "FAIL" and r["metrics"] is None
    signs = _signs(("fps", "dsp", "snr"))
    front = json.loads((out / "pareto.json").read_text())
    assert front and all(p["fits"] for p in front)
    for a, b in itertools.permutations(front, 2):
        assert not dominates(a, b, signs)


def _row(trial, fps, dsp, snr, *, scheme="uniform", bits=8, fits=True, baseline=False,
         prune=0.0):
    return {"trial": trial, "state": "COMPLETE", "baseline": baseline,
            "params": {"mode": "seml", "conv_pi": 4, "conv_po": 4, "pw_pi": 8, "pw_po": 8, "dw": 8,
                       "buf_kib": 128, "weight_scheme": scheme, "act_bits": bits,
                       "weight_bits": bits, "prune.conv": prune},
            "metrics": {"fps": fps, "dsp": dsp, "snr_db": snr, "lut": 1000, "fits": fits},
            "error": None}


def test_comparison_with_the_default_design():
    from compiler.explore.run import compare_with_baseline

    base = _row(0, 35.0, 453, 26.3, baseline=True)
    lossy = _row(1, 90.9, 293, 15.7, scheme="pot")          # fast, cheap, inaccurate
    wide = _row(2, 76.3, 681, 26.3)                          # fast, accurate, more DSPs
    slower = _row(3, 34.4, 435, 26.3)                        # accurate, cheap, slower
    unfit = _row(4, 40.0, 400, 26.0, fits=False)             # all three, exceeds the board
    lines, out = compare_with_baseline([base, lossy, wide, slower, unfit], base, 1.0)
    assert out["found"] is None and "none in these trials" in lines[0]
    assert [b["constraint"] for b in out["binding"]] == ["accuracy", "dsp", "speed", "fit"]
    assert [b["trial"] for b in out["binding"]] == [1, 2, 3, 4]
    assert out["verdict"] == "none" and not out["strictly_faster"]
    assert "verdict: no design other than the default" in lines[1]
    assert "-10.6 dB" in lines[2] and "681 DSP" in lines[3]
    assert out["default_quantization"] == "uniform a8/w8"
    assert out["fastest_default_quantization"]["trial"] == 2
    # a wider margin admits the lossy design; within 0.5 dB, a faster accurate one wins
    _, out = compare_with_baseline([base, lossy, wide, slower], base, 11.0)
    assert out["found"]["trial"] == 1
    close = _row(5, 36.0, 450, 25.9, bits=10)
    lines, out = compare_with_baseline([base, lossy, close], base, 0.5)
    assert out["found"]["trial"] == 5 and "1.029x" in lines[0]
    assert out["verdict"] == "faster" and out["strictly_faster"]
    assert out["speed_ratio"] == pytest.approx(36.0 / 35.0)
    assert "verdict: found a faster design: 1.029x" in lines[1]
    assert "outside the margin" in lines[2]
    lines, out = compare_with_baseline([base, lossy, close], base, 0.3)
    assert out["found"] is None
    # a tie on speed is said to be one
    tie = _row(6, 35.0, 453, 26.3, bits=12)
    lines, out = compare_with_baseline([base, tie], base, 1.0)
    assert out["found"]["trial"] == 6 and "a tie on speed" in lines[0]
    assert out["verdict"] == "tie" and not out["strictly_faster"]
    assert out["speed_ratio"] == 1.0 and "no faster design" in lines[1]
    # a tie next to a strictly faster design: the faster one is the answer
    lines, out = compare_with_baseline([base, tie, close], base, 1.0)
    assert out["found"]["trial"] == 5 and out["verdict"] == "faster"
    # a faster design with more DSPs, or one that does not fit, is no answer
    lines, out = compare_with_baseline([base, _row(7, 36.0, 454, 26.3),
                                        _row(8, 40.0, 400, 26.3, fits=False)], base, 1.0)
    assert out["verdict"] == "none" and out["speed_ratio"] == 1.0


def _verdict_from_rows(rows, margin_db):
    """The comparison with the default design recomputed from the trial rows alone."""
    b = next(r for r in rows if r["baseline"] and r["state"] == "COMPLETE")["metrics"]
    qualifying = [r["metrics"]["fps"] for r in rows
                  if r["state"] == "COMPLETE" and not r["baseline"] and r["metrics"]["fits"]
                  and r["metrics"]["dsp"] <= b["dsp"]
                  and r["metrics"]["snr_db"] >= b["snr_db"] - margin_db
                  and r["metrics"]["fps"] >= b["fps"]]
    if not qualifying:
        return "none", 1.0
    best = max(qualifying)
    return ("faster" if best > b["fps"] else "tie"), best / b["fps"]


@pytest.fixture(scope="module")
def small_mobilenet(tmp_path_factory):
    from examples.models import mobilenet_v2_small

    path = tmp_path_factory.mktemp("explore") / "mobilenet_v2_small.onnx"
    onnx.save(mobilenet_v2_small(), str(path))
    return path


def test_default_design_seeded_and_verdict(small_mobilenet, tmp_path):
    """The board's default design is trial 0, its neighbours follow in order, and the
    summary's "at least as fast at no more DSPs" verdict matches the trials: on the
    Ultra96-V2 a strictly faster design at no more DSPs is found; on the PYNQ-Z2, whose
    default is the smallest core, none is (uniform 8-bit SEML only)."""
    from boards.database import get_board
    from compiler.explore.run import _baseline_point, _point_key, _warm_start

    out = tmp_path / "u96"
    res = explore(small_mobilenet, out, board="Ultra96-V2", trials=24, accuracy_samples=2,
                  workers=2, progress=False, plots=False, seed=1)
    rows = {r["trial"]: r for r in res.trials}
    base = res.baseline
    default = get_board("Ultra96-V2").default_arch()
    assert base["trial"] == 0 and base["state"] == "COMPLETE"
    p = base["params"]
    assert (p["mode"], p["conv_pi"], p["conv_po"], p["pw_pi"], p["pw_po"], p["dw"],
            p["buf_kib"], p["weight_scheme"], p["act_bits"], p["weight_bits"]) == (
        "seml", default.conv_pi, default.conv_po, default.pw_pi, default.pw_po,
        default.dw_channels, default.ibuf_bytes // 1024, "uniform", 8, 8)
    problem = get_problem(ProblemSpec(small_mobilenet.read_bytes(), "mobilenet_v2_small",
                                      board="Ultra96-V2", accuracy_samples=2, seed=1,
                                      base_arch=default))
    space = build_space(problem)
    assert _baseline_point(problem, space) == {k: v for k, v in p.items() if v is not None}
    seeds = _warm_start(p, space)
    assert len({_point_key(s) for s in seeds} | {_point_key(p)}) == len(seeds) + 1
    # multipliers moved into a non-square pointwise array, and hybrid split points
    assert any(s["pw_pi"] != s["pw_po"] for s in seeds)
    assert any(s["mode"] == "hybrid" for s in seeds)
    for i, seed in enumerate(seeds[:24 // 2 - 1], start=1):  # evaluated first, in order
        assert _point_key(rows[i]["params"]) == _point_key(seed)
    verdict, ratio = _verdict_from_rows(res.trials, 1.0)
    c = res.summary["comparison"]
    assert c["verdict"] == verdict == "faster" and c["strictly_faster"]
    assert c["speed_ratio"] == pytest.approx(ratio) and ratio > 1
    assert c["found"]["dsp"] <= base["metrics"]["dsp"]
    assert "verdict: found a faster design" in (out / "summary.txt").read_text()

    out = tmp_path / "pynq"
    res = explore(small_mobilenet, out, board="PYNQ-Z2", trials=6, accuracy_samples=2,
                  workers=2, progress=False, plots=False, seed=1, modes=["seml"],
                  schemes=["uniform"], word_sizes=[8])
    assert res.baseline["trial"] == 0
    verdict, ratio = _verdict_from_rows(res.trials, 1.0)
    c = res.summary["comparison"]
    assert c["verdict"] == verdict != "faster" and not c["strictly_faster"]
    assert c["speed_ratio"] == pytest.approx(ratio)
    assert "verdict: no " in (out / "summary.txt").read_text()


@pytest.fixture(scope="module")
def u96_problem(small_mobilenet):
    from boards.database import get_board

    spec = ProblemSpec(small_mobilenet.read_bytes(), "mobilenet_v2_small", board="Ultra96-V2",
                       accuracy_samples=2, base_arch=get_board("Ultra96-V2").default_arch())
    problem = get_problem(spec)
    return spec, problem, build_space(problem)


def test_refinement_climbs_from_the_best_design_at_no_more_dsps(u96_problem):
    """The hill climber proposes the incumbent's neighbours whose SEML core fits in the
    default's DSPs, moves to a better design when one is told, and stops at its budget."""
    import optuna

    from compiler.explore.evaluate import seml_core_dsp
    from compiler.explore.run import _baseline_point, _neighbours, _Refiner

    _, problem, space = u96_problem
    study = optuna.create_study(directions=["maximize", "minimize", "maximize"])
    refiner = _Refiner(study, space, problem, 1.0, 4)
    base = _baseline_point(problem, space)
    ref = {"fps": 100.0, "dsp": seml_core_dsp(problem, base), "snr_db": 30.0, "fits": True}
    better = {**base, "conv_pi": 1, "pw_pi": base["pw_pi"] * 2}
    refiner.tell(better, {**ref, "fps": 120.0})  # before the baseline: kept for later
    assert refiner.next() is None
    refiner.tell(base, ref, baseline=True)
    first = refiner.next()
    want = [p for p in _neighbours(better, space)
            if seml_core_dsp(problem, p) <= ref["dsp"]]
    assert first == want[0]  # the better design told earlier is the incumbent
    # a slower, a bigger or a less accurate design does not move the climber
    refiner.tell(base, {**ref, "fps": 110.0})
    refiner.tell(base, {**ref, "fps": 130.0, "dsp": ref["dsp"] + 1})
    refiner.tell(base, {**ref, "fps": 130.0, "snr_db": 28.0})
    assert refiner.next() == want[1]
    # a faster one does; proposals stop at the budget
    faster = {**base, "buf_kib": space.to_dict()["buf_kib"][0]}
    refiner.tell(faster, {**ref, "fps": 140.0})
    third = refiner.next()
    assert third in _neighbours(faster, space) and third not in (first, want[1])
    assert refiner.next() is not None and refiner.next() is None  # 4 proposed


def test_hybrid_point_evaluates_and_compiles_bit_exact(u96_problem, tmp_path):
    """A hybrid point: its frames/s is the slower part's, its DSPs the sum of both parts;
    its compile output equals the golden model bit for bit (prefix ops + SEML on the ISS)."""
    from compiler.explore.evaluate import compile_point, prepare_graph
    from compiler.explore.run import _baseline_point
    from compiler.hybrid.compile import verify_hybrid

    spec, problem, space = u96_problem
    assert "hybrid" in space.to_dict()["mode"]
    k = space.to_dict()["hybrid_layers"][1]
    point = {**_baseline_point(problem, space), "mode": "hybrid", "hybrid_layers": k,
             "conv_pi": 1, "conv_po": 1}
    m = evaluate_point(spec, point)["metrics"]
    assert m["dsp"] == m["sesl_dsp"] + m["seml_dsp"] and m["sesl_dsp"] > 0
    assert m["fps"] == pytest.approx(m["clock_mhz"] * 1e6 / m["cycles_per_frame"])
    seml = evaluate_point(spec, {**point, "mode": "seml"})["metrics"]
    assert m["snr_db"] == seml["snr_db"]  # the same quantized network
    bad = evaluate_point(spec, {**point, "hybrid_layers": 999})
    assert bad["metrics"] is None and "not a split point" in bad["error"]
    compile_point(spec, point, tmp_path / "out")
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["mode"] == "hybrid" and report["split"]["sesl_layers"] == k
    assert report["resources"]["dsp"] <= m["dsp"]
    qgraph, _ = prepare_graph(problem, point)
    verify_hybrid(tmp_path / "out", qgraph, 0)
