"""PNG plots of an exploration (matplotlib, no display needed)."""

from __future__ import annotations

import math
from pathlib import Path

from .pareto import pareto_front

__all__ = ["plot_exploration", "scheme_fronts_plot"]

COLORS = {"uniform": "tab:blue", "pot": "tab:orange", "apot": "tab:green",
          "none": "tab:blue"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    tmp.replace(path)


def scheme_fronts_plot(points, path, *, x: str, y: str, scheme: str, x_label: str,
                       y_label: str, title: str, minimize_y: bool = True,
                       highlight=()) -> None:
    """Scatter ``points`` (dicts) of every scheme, with each scheme's 2-D Pareto front
    (``x`` minimized, ``y`` minimized or maximized) as a step line; ``highlight``
    points are circled."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    schemes = sorted({p[scheme] for p in points})
    for s in schemes:
        pts = [p for p in points if p[scheme] == s and math.isfinite(p[y])]
        color = COLORS.get(s)
        ax.scatter([p[x] for p in pts], [p[y] for p in pts], s=10, alpha=0.35, color=color)
        front = pareto_front(pts, {x: 1, y: 1 if minimize_y else -1})
        front.sort(key=lambda p: p[x])
        ax.step([p[x] for p in front], [p[y] for p in front], where="post", color=color,
                label=f"{s} (front: {len(front)})")
        ax.scatter([p[x] for p in front], [p[y] for p in front], s=22, color=color)
    if highlight:
        ax.scatter([p[x] for p in highlight], [p[y] for p in highlight], s=90,
                   facecolors="none", edgecolors="black", label="selected")
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, Path(path))
    plt.close(fig)


def plot_exploration(out_dir, feasible, front, selected, baseline) -> list[Path]:
    """``pareto_by_scheme.png`` (SNR vs DSP per weight scheme), ``fps_vs_dsp.png`` and
    ``selected.png`` in ``out_dir``; returns the paths."""
    plt = _plt()
    out = Path(out_dir)
    pts = [{"trial": r["trial"], **r["params"], **r["metrics"]} for r in feasible]
    paths = []
    finite = [p for p in pts if math.isfinite(p["snr_db"])]
    path = out / "pareto_by_scheme.png"
    scheme_fronts_plot(finite, path, x="dsp", y="snr_db", scheme="weight_scheme",
                       x_label="DSP slices", y_label="SNR vs float (dB)",
                       title="Accuracy vs DSP: Pareto front per weight scheme",
                       minimize_y=False,
                       highlight=[p for p in selected if math.isfinite(p["snr_db"])])
    paths.append(path)

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    ids = {r["trial"] for r in front}
    for mode in sorted({p["mode"] for p in pts}):
        mp = [p for p in pts if p["mode"] == mode]
        ax.scatter([p["dsp"] for p in mp], [p["fps"] for p in mp], s=12, alpha=0.5,
                   label=f"{mode} designs")
    fp = sorted((p for p in pts if p["trial"] in ids), key=lambda p: p["dsp"])
    ax.scatter([p["dsp"] for p in fp], [p["fps"] for p in fp], s=30, color="red",
               label="Pareto front")
    if baseline is not None and baseline.get("metrics"):
        b = baseline["metrics"]
        ax.scatter([b["dsp"]], [b["fps"]], marker="*", s=200, color="black",
                   label="default design")
    ax.set_xlabel("DSP slices")
    ax.set_ylabel("frames/s")
    ax.set_yscale("log")
    ax.set_title("Throughput vs DSP")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    path = out / "fps_vs_dsp.png"
    _save(fig, path)
    plt.close(fig)
    paths.append(path)

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for p in pts:
        ax.scatter(p["energy_mj"], p["nmse_db"], s=8, color="lightgray")
    for p in selected:
        ax.scatter(p["energy_mj"], p["nmse_db"], s=40,
                   color=COLORS.get(p["weight_scheme"], "black"))
        ax.annotate(f"#{p['trial']}", (p["energy_mj"], p["nmse_db"]), fontsize=7,
                    xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("energy per frame (mJ, power model)")
    ax.set_ylabel("NMSE vs float (dB)")
    ax.set_title(f"Selected designs ({len(selected)}) after the exclusion rules")
    ax.grid(alpha=0.3)
    path = out / "selected.png"
    _save(fig, path)
    plt.close(fig)
    paths.append(path)
    return paths
