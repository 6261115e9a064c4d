"""Pareto fronts, seed 001's five exclusion rules and the power model, on hand-built
point sets (no search, no cluster)."""

from __future__ import annotations

import itertools
import math

import pytest

from compiler.explore.pareto import dominates, exclusion_rules, merge_fronts, pareto_front
from compiler.explore.power import estimate_power


def pt(i, nnz, nmse, quant="apot", power=1.0, channels=4, layers=2):
    return {"id": i, "nnz": nnz, "nmse": nmse, "quant": quant, "power": power,
            "channels": channels, "layers": layers}


def ids(points):
    return [p["id"] for p in points]


# Pareto fronts --------------------------------------------------------------------------

def test_pareto_front_keeps_exactly_the_non_dominated_points():
    pts = [pt(0, 10, -20), pt(1, 20, -30), pt(2, 15, -19), pt(3, 30, -30), pt(4, 5, -5),
           pt(5, 10, -20)]
    front = pareto_front(pts, {"nnz": 1, "nmse": 1})
    # 2 is dominated by 0; 3 by 1; 0 and 5 tie (both kept); 4 is the cheapest
    assert ids(front) == [0, 1, 4, 5]
    for a, b in itertools.permutations(front, 2):
        assert not dominates(a, b, {"nnz": 1, "nmse": 1})


def test_pareto_front_maximized_objective_and_merge():
    pts = [{"id": 0, "fps": 10, "dsp": 5}, {"id": 1, "fps": 20, "dsp": 5},
           {"id": 2, "fps": 30, "dsp": 9}, {"id": 3, "fps": 25, "dsp": 10}]
    assert ids(pareto_front(pts, {"fps": -1, "dsp": 1})) == [1, 2]
    fronts = {"a": [pt(0, 10, -20)], "b": [pt(1, 10, -25), pt(2, 4, -10)]}
    assert ids(merge_fronts(fronts, {"nnz": 1, "nmse": 1})) == [1, 2]
    with pytest.raises(ValueError):
        pareto_front(pts, {})


def test_pareto_front_nan_counts_as_worst():
    pts = [{"id": 0, "x": math.nan, "y": 1}, {"id": 1, "x": 1, "y": 1}]
    assert ids(pareto_front(pts, {"x": 1, "y": 1})) == [1]


# The five exclusion rules ---------------------------------------------------------------

def test_rule1_constant_error_keeps_the_lowest_cost():
    # one-axis case: the nmse is the same (within 0.1 dB), only nnz varies
    pts = [pt(0, 40, -28.63), pt(1, 20, -28.64), pt(2, 30, -28.66)]
    sel, exc = exclusion_rules(pts)
    assert ids(sel) == [1]
    assert {e["id"]: e["excluded_by"] for e in exc} == {0: 1, 2: 1}
    assert all(e["excluded_for"] == 1 for e in exc)


def test_rule2_constant_cost_keeps_the_lowest_error():
    # one-axis case: nnz constant, nmse varies
    pts = [pt(0, 78, -29.88), pt(1, 78, -30.13), pt(2, 78, -12.0)]
    sel, exc = exclusion_rules(pts)
    assert ids(sel) == [1]
    assert {e["id"]: e["excluded_by"] for e in exc} == {0: 2, 2: 2}


def test_rule3_overlap_with_different_quantizations_keeps_the_lowest_power():
    pts = [pt(0, 20, -28.6, "no_quant", power=1.2), pt(1, 20, -28.6, "apot", power=0.77),
           pt(2, 20, -28.6, "pot", power=0.9)]
    sel, exc = exclusion_rules(pts)
    assert ids(sel) == [1]
    assert {e["id"]: e["excluded_by"] for e in exc} == {0: 3, 2: 3}


def test_rule4_overlap_with_the_same_quantization_keeps_the_fewest_channels():
    pts = [pt(0, 16, -28.3, channels=8), pt(1, 16, -28.3, channels=4),
           pt(2, 16, -28.3, channels=14)]
    sel, exc = exclusion_rules(pts)
    assert ids(sel) == [1]
    assert {e["id"]: e["excluded_by"] for e in exc} == {0: 4, 2: 4}


def test_rule5_same_quantization_and_channels_keeps_the_fewest_hidden_layers():
    pts = [pt(0, 6, -25.8, channels=8, layers=3), pt(1, 6, -25.8, channels=8, layers=2)]
    sel, exc = exclusion_rules(pts)
    assert ids(sel) == [1]
    assert exc[0]["id"] == 0 and exc[0]["excluded_by"] == 5


def test_rules_on_a_mixed_set_with_overlaps_and_one_axis_groups():
    pts = [
        pt(0, 78, -30.13, "no_quant", 1.2, 2, 2),   # rule 2 winner at nnz 78
        pt(1, 78, -29.88, "no_quant", 1.1, 8, 2),   # rule 2: same nnz, worse nmse
        pt(2, 20, -28.63, "apot", 0.8, 14, 2),      # overlaps with 3 (different quant)
        pt(3, 20, -28.63, "pot", 0.9, 14, 2),       # rule 3: more power
        pt(4, 34, -28.66, "no_quant", 1.0, 10, 2),  # rule 1: same nmse as 2, more nnz
        pt(5, 6, -25.80, "apot", 0.7, 8, 2),        # overlaps with 6 (same quant)
        pt(6, 6, -25.80, "apot", 0.7, 8, 3),        # rule 5: more hidden layers
        pt(7, 2, -12.84, "apot", 0.9, 4, 2),        # alone
    ]
    sel, exc = exclusion_rules(pts)
    assert ids(sel) == [0, 2, 5, 7]
    assert {e["id"]: e["excluded_by"] for e in exc} == {1: 2, 3: 3, 4: 1, 6: 5}


def test_rules_keep_distinct_points_and_are_order_independent_in_outcome():
    pts = [pt(0, 10, -30), pt(1, 5, -20), pt(2, 2, -10)]
    sel, exc = exclusion_rules(pts)
    assert ids(sel) == [0, 1, 2] and exc == []
    sel2, _ = exclusion_rules(list(reversed(pts)))
    assert sorted(ids(sel2)) == [0, 1, 2]


def test_identical_points_keep_one():
    pts = [pt(0, 6, -25.8), pt(1, 6, -25.8)]
    sel, exc = exclusion_rules(pts)
    assert ids(sel) == [0] and exc[0]["id"] == 1


def test_rules_with_custom_axes_and_tolerances():
    pts = [{"id": 0, "dsp": 100, "err": -30.0, "w": 1.0, "q": "u", "c": 1, "h": 1},
           {"id": 1, "dsp": 104, "err": -30.0, "w": 1.0, "q": "u", "c": 1, "h": 1}]
    # dsp counted in steps of 10: the two overlap, identical otherwise -> keep the first
    sel, _ = exclusion_rules(pts, cost="dsp", error="err", power="w", quant="q",
                             channels="c", layers="h", cost_tol=10)
    assert ids(sel) == [0]
    sel, _ = exclusion_rules(pts, cost="dsp", error="err", power="w", quant="q",
                             channels="c", layers="h")
    assert ids(sel) == [0]  # exact: rule 1 (same error, lower cost)


# Power model ----------------------------------------------------------------------------

def test_power_model_terms_scale_with_clock_activity_and_resources():
    res = {"lut": 10_000, "ff": 20_000, "dsp": 100, "bram36": 10}
    p = estimate_power(res, 100.0, family="xcup", device_luts=230_400)
    p2 = estimate_power(res, 200.0, family="xcup", device_luts=230_400)
    assert p2["dynamic_w"] == pytest.approx(2 * p["dynamic_w"])
    assert p2["static_w"] == p["static_w"] > 0
    idle = estimate_power(res, 100.0, family="xcup", mac_activity=0.0)
    assert idle["terms"]["dsp"] == 0 and idle["dynamic_w"] < p["dynamic_w"]
    assert p["total_w"] == pytest.approx(p["static_w"] + p["dynamic_w"])
    # 100 DSP at activity 1, 2.6 uW/MHz, 100 MHz
    assert p["terms"]["dsp"] == pytest.approx(100 * 2.6 * 100 * 1e-6)
    with pytest.raises(ValueError, match="mac_activity"):
        estimate_power(res, 100.0, mac_activity=1.5)
    with pytest.raises(ValueError, match="family"):
        estimate_power(res, 100.0, family="stratix")
