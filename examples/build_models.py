"""Write the example models to a directory as ``<name>.onnx``.

Usage: ``python examples/build_models.py [OUT_DIR] [--only NAME ...] [--opset N]``
(default directory ``build/models``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import onnx

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples.compact_models import COMPACT_EXAMPLES
from examples.models import DEFAULT_OPSET, EXAMPLES

EXAMPLES = {**EXAMPLES, **COMPACT_EXAMPLES}


def build(out_dir, names=None, opset: int = DEFAULT_OPSET) -> list[Path]:
    """Build the named examples (default all) into ``out_dir``; return the paths."""
    names = list(EXAMPLES) if not names else list(names)
    unknown = [n for n in names if n not in EXAMPLES]
    if unknown:
        raise ValueError(f"Unknown example(s) {', '.join(unknown)}; known: "
                         f"{', '.join(EXAMPLES)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        path = out / f"{name}.onnx"
        onnx.save(EXAMPLES[name](opset=opset), str(path))
        paths.append(path)
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", nargs="?", default="build/models")
    parser.add_argument("--only", nargs="+", metavar="NAME", choices=list(EXAMPLES),
                        help="build only these examples")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    args = parser.parse_args(argv)
    for path in build(args.out_dir, args.only, args.opset):
        print(f"wrote {path} ({path.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
