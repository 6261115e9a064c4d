"""The DPD study of examples/dpd: the GMP power amplifier, the indirect-learning CNN
(torch; skipped without it), and seed 001's selection on a sweep's rows."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from compiler.explore.pareto import dominates
from examples.dpd.pa import A, gmp, linear_gain, nmse_db, ofdm_signal
from examples.dpd.study import datapath_resources, select, table_one


def test_gmp_terms_and_memory():
    x = ofdm_signal(512, seed=3)
    # only the linear tap: the PA is a gain
    a = np.zeros_like(A)
    a[0, 0] = 2.0
    assert np.allclose(gmp(x, a, {}), 2 * x)
    # one memory tap delays by one sample
    a = np.zeros_like(A)
    a[0, 1] = 1.0
    y = gmp(x, a, {})
    assert y[0] == 0 and np.allclose(y[1:], x[:-1])
    # a third-order lagging cross term x(n) |x(n-1)|^2
    a = np.zeros_like(A)
    y = gmp(x, a, {(2, 0, 1): 1.0})
    assert np.allclose(y[1:], x[1:] * np.abs(x[:-1]) ** 2) and y[0] == 0
    # the documented PA compresses: about -26 dB NMSE against its linear gain
    y = gmp(x)
    g = linear_gain(x, y)
    assert -30 < nmse_db(g * x, y) < -22
    assert np.sqrt(np.mean(np.abs(x) ** 2)) == pytest.approx(0.25)


def _rows():
    rng = np.random.default_rng(0)
    rows = []
    for k, q, layers, c, pr in itertools.product((3, 5), ("none", "pot", "apot"), (2, 3),
                                                 (2, 4), (0, 65, 95)):
        total = 2 * c * k + (layers - 1) * c * c * k + c * 2 * k
        nnz = round(total * (1 - pr / 100))
        nmse = -30 + 20 * pr / 100 + rng.normal(0, 1) + (2 if q == "pot" else 0)
        rows.append({"kernel": k, "quant": q, "layers": layers, "channels": c,
                     "pruning": pr, "nmse": float(nmse), "nnz": nnz, "weights": total})
    # an exact overlap with another quantization (rule 3 decides by power)
    rows.append({**rows[0], "quant": "apot"})
    return rows


def test_selection_on_a_sweep():
    rows = _rows()
    result = select(rows)
    objectives = {"nnz": 1, "nmse": 1}
    for q, front in result["fronts"].items():
        assert front and all(p["quant"] == q for p in front)
        for a, b in itertools.permutations(front, 2):
            assert not dominates(a, b, objectives)
    merged_ids = {p["id"] for p in result["merged"]}
    per_scheme_ids = {p["id"] for f in result["fronts"].values() for p in f}
    assert merged_ids <= per_scheme_ids
    selected_ids = {p["id"] for p in result["selected"]}
    assert selected_ids <= merged_ids
    assert len(result["selected"]) + len(result["excluded"]) == len(result["merged"])
    text = table_one(result["selected"])
    assert text.count("\n") == len(result["selected"]) + 1


def test_datapath_power_model_orders_the_schemes():
    row = {"nnz": 20, "quant": "none"}
    assert datapath_resources(row)["dsp"] == 20
    assert datapath_resources({**row, "quant": "apot"})["dsp"] == 0
    assert (datapath_resources({**row, "quant": "apot"})["lut"]
            > datapath_resources({**row, "quant": "pot"})["lut"])


def test_indirect_learning_trains_a_better_than_nothing_dpd():
    torch = pytest.importorskip("torch")
    from compiler.quant.weights import weight_levels
    from examples.dpd.train import POT_EXP_BITS, WEIGHT_BITS, make_data, train_architecture

    assert torch.__version__.startswith("2.13")
    data = make_data(1024, seed=0)
    rows = train_architecture(3, 2, 4, data, steps=150, finetune=10,
                              quants=("none", "apot"), prunings=(0, 95))
    assert [(r["quant"], r["pruning"]) for r in rows] == [
        ("none", 0), ("none", 95), ("apot", 0), ("apot", 95)]
    dense, pruned, apot, _ = rows
    assert dense["nmse"] < data.baseline_nmse  # the DPD linearizes
    assert pruned["nmse"] > dense["nmse"]
    assert pruned["nnz"] <= round(0.05 * pruned["weights"]) + 3
    assert dense["nnz"] == dense["weights"]
    # APoT weights lie on the PE's levels (one scale per output channel)
    levels = weight_levels("apot", WEIGHT_BITS, POT_EXP_BITS).astype(float)
    for w, _ in apot["params"]:
        w = np.asarray(w)
        for row in w:
            nz = row[row != 0]
            if nz.size:
                ratio = nz / (np.abs(nz).max() / levels.max())
                assert np.allclose(ratio, levels[np.abs(levels[:, None] - ratio).argmin(0)],
                                   atol=1e-4)

    # the trained network compiles to a SESL pipeline (the skip included)
    from compiler.pipeline import import_model
    from examples.dpd.study import _onnx

    graph = import_model(_onnx(dense, data.out_scale))
    kinds = [layer.kind.value for layer in graph.layers]
    assert kinds.count("add") == 1 and len(graph.layers) >= 4
