"""Seed 001's DPD sweep: the 1,344 configurations of the 1-D CNN pre-distorter (needs torch).

kernel {3, 5, 7, 11} x quantization {none, PoT, APoT} x hidden layers {2, 3} x hidden
channels {2, 4, 6, 8, 10, 14, 16} x pruning {0, 30, 65, 83, 91, 95, 98, 99} %. Each of
the 56 architectures is trained once in float by indirect learning on Dask
(``examples/dpd/train.py``); its 24 (quantization, pruning) variants are pruned,
quantized and fine-tuned from it. Writes ``benchmarks/results/dpd_sweep.json``;
``python -m examples.dpd.study`` turns it into the Pareto fronts, the exclusion rules,
the tables and the plots.

Usage: ``nice python benchmarks/bench_dpd_sweep.py [--workers 2] [--steps 300]
[--finetune 40] [--length 2048] [--scheduler tcp://HOST:8786]``
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

KERNELS = (3, 5, 7, 11)
LAYERS = (2, 3)
CHANNELS = (2, 4, 6, 8, 10, 14, 16)


def _task(kernel, layers, channels, length, steps, finetune, seed):
    from examples.dpd.train import make_data, train_architecture

    data = make_data(length, seed)
    return train_architecture(kernel, layers, channels, data, steps=steps, finetune=finetune,
                              seed=seed)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--scheduler", default=None)
    p.add_argument("--steps", type=int, default=300, help="float training steps")
    p.add_argument("--finetune", type=int, default=40, help="fine-tuning steps per variant")
    p.add_argument("--length", type=int, default=2048, help="training / test samples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--archs", nargs="+", metavar="K_L_C",
                   help="only these architectures (kernel_layers_channels, e.g. 5_2_4), "
                        "with every quantization and pruning level")
    p.add_argument("-o", "--output", default=str(ROOT / "benchmarks/results/dpd_sweep.json"))
    args = p.parse_args(argv)
    archs = list(itertools.product(KERNELS, LAYERS, CHANNELS))
    if args.archs:
        try:
            archs = [tuple(int(v) for v in a.split("_")) for a in args.archs]
        except ValueError:
            p.error(f"--archs takes kernel_layers_channels (e.g. 5_2_4), not {args.archs}")
        bad = [a for a in archs if len(a) != 3]
        if bad:
            p.error(f"--archs takes kernel_layers_channels (e.g. 5_2_4), not {bad}")
    try:
        import torch  # noqa: F401
    except ImportError:
        print("bench_dpd_sweep: torch is not installed (pip install -e '.[torch]'); skipped")
        return 0
    from distributed import Client, LocalCluster, as_completed
    from tqdm import tqdm

    from examples.dpd.train import make_data

    start = time.perf_counter()
    if args.scheduler:
        client, cluster = Client(args.scheduler), None
    else:
        cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
    # largest first: the long tasks do not end up last
    archs.sort(key=lambda a: -(a[0] * a[1] * a[2] ** 2))
    futures = [client.submit(_task, k, layers, c, args.length, args.steps, args.finetune,
                             args.seed, pure=False) for k, layers, c in archs]
    rows = []
    for fut in tqdm(as_completed(futures), total=len(futures), desc="dpd sweep",
                    unit="arch"):
        rows.extend(fut.result())
    client.close()
    if cluster is not None:
        cluster.close()
    elapsed = time.perf_counter() - start
    data = make_data(args.length, args.seed)
    rows.sort(key=lambda r: (r["kernel"], r["quant"], r["layers"], r["channels"],
                             r["pruning"]))
    out = {"configurations": len(rows), "seconds": elapsed, "workers": args.workers,
           "steps": args.steps, "finetune": args.finetune, "length": args.length,
           "baseline_nmse_db": data.baseline_nmse, "rows": rows}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(out) + "\n")
    print(f"{len(rows)} configurations in {elapsed:.0f} s ({args.workers} workers); PA "
          f"alone {data.baseline_nmse:.2f} dB NMSE; best "
          f"{min(r['nmse'] for r in rows):.2f} dB; wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
