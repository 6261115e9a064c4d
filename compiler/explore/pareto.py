"""Pareto fronts and the five exclusion rules of seed 001.

A *point* is a plain dict of metrics. :func:`pareto_front` keeps the points that no
other point dominates; :func:`exclusion_rules` then picks among Pareto solutions that
differ on one axis only, or overlap, by seed 001's rules:

1. solutions that vary on the cost axis (``nnz``) at constant error (``nmse``):
   keep the lowest cost, ``s* = argmin nnz(s)``;
2. solutions that vary on the error axis at constant cost: keep the lowest error,
   ``s* = argmin nmse(s)``;
3. solutions that overlap (same cost and error) with different quantizations: keep
   the most power-efficient, ``s* = argmin P(s)``;
4. overlapping solutions with the same quantization: keep the fewest channels,
   ``s* = argmin C(s)``;
5. overlapping solutions with the same quantization and channels: keep the fewest
   hidden layers, ``s* = argmin H(s)``.

"Constant" and "same" are judged with tolerances: values within ``error_tol``
(default 0.1 dB) of the smallest value of their group count as equal on the error
axis, within ``cost_tol`` (default 0: exact) on the cost axis. Rules 1 and 2 are
applied in turn, then rules 3 to 5 inside each remaining overlap group; a group still
tied after rule 5 keeps its first point (input order). Every excluded point records
the rule that removed it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["RULES", "dominates", "exclusion_rules", "merge_fronts", "pareto_front"]

#: The rules by number, as the reports cite them.
RULES = {
    1: "same error, different cost: keep the lowest cost",
    2: "same cost, different error: keep the lowest error",
    3: "overlap, different quantizations: keep the lowest power",
    4: "overlap, same quantization: keep the fewest channels",
    5: "overlap, same quantization and channels: keep the fewest hidden layers",
}


def _vector(point, objectives):
    """Objective values as "smaller is better" (``objectives``: ``{name: +1|-1}``,
    -1 meaning maximized)."""
    out = []
    for name, sign in objectives.items():
        value = point[name]
        if value is None or (isinstance(value, float) and math.isnan(value)):
            value = math.inf if sign > 0 else -math.inf
        out.append(sign * value)
    return out


def dominates(a, b, objectives) -> bool:
    """Whether point ``a`` dominates ``b``: no worse on every objective, better on one.

    ``objectives`` maps metric names to ``+1`` (minimized) or ``-1`` (maximized).
    """
    va, vb = _vector(a, objectives), _vector(b, objectives)
    return all(x <= y for x, y in zip(va, vb)) and any(x < y for x, y in zip(va, vb))


def pareto_front(points: Sequence[dict], objectives: dict) -> list[dict]:
    """The points no other point dominates, in input order (ties are all kept)."""
    if not objectives:
        raise ValueError("pareto_front needs at least one objective")
    vectors = [_vector(p, objectives) for p in points]
    keep = []
    for i, vi in enumerate(vectors):
        dominated = False
        for j, vj in enumerate(vectors):
            if j != i and all(x <= y for x, y in zip(vj, vi)) \
                    and any(x < y for x, y in zip(vj, vi)):
                dominated = True
                break
        if not dominated:
            keep.append(points[i])
    return keep


def merge_fronts(fronts: dict, objectives: dict) -> list[dict]:
    """Seed 001's second step: the Pareto front of the union of per-scheme fronts."""
    union = [p for front in fronts.values() for p in front]
    return pareto_front(union, objectives)


def _bins(values, tol) -> list:
    """Bin numbers (ordered like the values) grouping values within ``tol`` of the
    smallest value of their bin; ``tol = 0`` groups equal values only."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0] * len(values)
    current, start = -1, None
    for i in order:
        v = values[i]
        if start is None or v - start > tol:
            current, start = current + 1, v
        out[i] = current
    return out


def exclusion_rules(points: Sequence[dict], *, cost: str = "nnz", error: str = "nmse",
                    power: str = "power", quant: str = "quant", channels: str = "channels",
                    layers: str = "layers", cost_tol: float = 0.0,
                    error_tol: float = 0.1) -> tuple[list[dict], list[dict]]:
    """Apply the five exclusion rules to Pareto solutions ``points``.

    Parameters
    ----------
    points : sequence of dict
        Each with the metrics named by ``cost``, ``error`` (both minimized), ``power``,
        ``quant``, ``channels`` and ``layers``.
    cost_tol, error_tol : float
        Resolution at which two cost / error values count as equal (0: exact).

    Returns
    -------
    (selected, excluded)
        ``selected``: the surviving points (input order); ``excluded``: the others,
        each a copy with ``"excluded_by"`` (rule number) and ``"excluded_for"`` (the
        index in ``points`` of the point that won).
    """
    alive = list(range(len(points)))
    reason = {}
    cost_bin = _bins([p[cost] for p in points], cost_tol)
    error_bin = _bins([p[error] for p in points], error_tol)

    def apply(groups, better, rule):
        nonlocal alive
        for members in groups.values():
            if len(members) < 2:
                continue
            best = min(better(i) for i in members)
            winners = [i for i in members if better(i) == best]
            for i in members:
                if i not in winners:
                    reason[i] = (rule, winners[0])
        alive = [i for i in alive if i not in reason]

    def group(key):
        out = {}
        for i in alive:
            out.setdefault(key(i), []).append(i)
        return out

    # Rule 1: constant error, varying cost -> lowest cost.
    apply(group(lambda i: error_bin[i]), lambda i: cost_bin[i], 1)
    # Rule 2: constant cost, varying error -> lowest error.
    apply(group(lambda i: cost_bin[i]), lambda i: error_bin[i], 2)
    # Rules 3-5 inside each overlap group (same cost and error after rules 1-2).
    overlaps = group(lambda i: (cost_bin[i], error_bin[i]))
    for members in overlaps.values():
        if len(members) < 2:
            continue
        current = list(members)
        quants = {points[i][quant] for i in current}
        if len(quants) > 1:
            # Rule 3: different quantizations -> the most power-efficient.
            best = min(points[i][power] for i in current)
            for i in current:
                if points[i][power] != best:
                    reason[i] = (3, next(j for j in current if points[j][power] == best))
            current = [i for i in current if i not in reason]
        # Rules 4 and 5 within each quantization of what is left.
        by_quant = {}
        for i in current:
            by_quant.setdefault(points[i][quant], []).append(i)
        for same_q in by_quant.values():
            fewest = min(points[i][channels] for i in same_q)
            win = next(j for j in same_q if points[j][channels] == fewest)
            for i in same_q:
                if points[i][channels] != fewest:
                    reason[i] = (4, win)
            same_c = [i for i in same_q if i not in reason]
            lowest = min(points[i][layers] for i in same_c)
            win = next(j for j in same_c if points[j][layers] == lowest)
            for i in same_c:
                if points[i][layers] != lowest:
                    reason[i] = (5, win)
            rest = [i for i in same_c if i not in reason]
            for i in rest[1:]:  # identical on every criterion: keep the first
                reason[i] = (5, rest[0])
        # Different quantizations left tied on power: keep one per overlap group.
        left = [i for i in members if i not in reason]
        for i in left[1:]:
            reason[i] = (3, left[0])
    selected = [points[i] for i in range(len(points)) if i not in reason]
    excluded = [{**points[i], "excluded_by": reason[i][0], "excluded_for": reason[i][1]}
                for i in sorted(reason)]
    return selected, excluded
