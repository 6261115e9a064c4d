"""The ULX3S-85F bitstream of the default ULX3S arch: yosys + nextpnr-ecp5 + ecppack
(YoWASP), build time, utilization and Fmax.

Prints the figures and writes ``benchmarks/results/ulx3s_build.json``.
Run: ``.venv/bin/python benchmarks/bench_ulx3s_build.py [BUILD_DIR]`` (default: a
temporary directory). A whole-core build takes tens of minutes on a loaded 2-core
machine.
"""

import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main():
    sys.path.insert(0, str(HERE.parent))
    from boards.build import build_board
    from boards.database import get_board
    from boards.ulx3s import ULX3S_ARCH

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tmp) / "ulx3s"
        start = time.perf_counter()
        summary = build_board(get_board("ULX3S-85F"), ULX3S_ARCH, out)
        summary["wall_seconds"] = round(time.perf_counter() - start, 1)
        summary["bitstream_bytes"] = (out / summary["bitstream"]).stat().st_size
    print(f"ULX3S-85F, arch {ULX3S_ARCH.name}: {summary['wall_seconds']:.0f} s, bitstream "
          f"{summary['bitstream_bytes']:,} bytes")
    for cell, use in sorted(summary["utilization"].items()):
        print(f"  {cell:16s} {use['used']:>7,} / {use['available']:>7,}")
    for clock, f in summary["fmax"].items():
        print(f"  Fmax {clock}: {f['achieved']:.1f} MHz (target {f['constraint']:.1f} MHz)")
    path = summary.get("critical_path")
    if path:
        print(f"  critical path {path['delay_ns']} ns ({path['logic_ns']} ns logic, "
              f"{path['steps']} segments) from {path['start_cell']} to {path['end_cell']}")
        for src in path["sources"]:
            print(f"    {src}")
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    (results / "ulx3s_build.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
