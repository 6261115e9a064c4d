"""Atomic writing of a compiled output directory.

All files are written into a fresh temporary directory next to the target, which
then replaces the target with renames, so a compile that fails at any point
leaves either the previous complete output or nothing -- never a half-written
directory.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from compiler.errors import ConvForgeError

__all__ = ["MARKER", "write_output_dir"]

#: The file that marks a directory as a ConvForge output (safe to replace).
MARKER = "manifest.json"


def write_output_dir(out_dir, files: dict) -> Path:
    """Write ``files`` (name -> bytes or str) as the directory ``out_dir``.

    Raises
    ------
    ConvForgeError
        ``out_dir`` exists and is not a ConvForge output directory (refusing to
        replace unrelated files).
    """
    out = Path(out_dir)
    if out.exists():
        if not out.is_dir():
            raise ConvForgeError(f"Output path {out} exists and is not a directory; choose "
                                 f"another -o")
        if any(out.iterdir()) and not (out / MARKER).is_file():
            raise ConvForgeError(f"Output directory {out} is not empty and holds no {MARKER}; "
                                 f"refusing to replace it, choose another -o")
    parent = out.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=parent))
    try:
        for name, content in files.items():
            data = content.encode() if isinstance(content, str) else bytes(content)
            with open(tmp / name, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        old = None
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=parent))
            old.rmdir()
            os.rename(out, old)
        try:
            os.rename(tmp, out)
        except BaseException:
            if old is not None:
                os.rename(old, out)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
