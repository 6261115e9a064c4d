"""Atomic writing of a compiled output directory.

All files are written into a fresh temporary directory next to the target, which
then replaces the target with renames, so a compile that fails at any point
leaves either the previous complete output or nothing -- never a half-written
directory. A process killed while writing (``SIGKILL``) cannot remove its
temporary directory: it stays hidden next to the target (``.OUT.tmp-PID-*``) and
the next write of ``OUT`` removes it once process ``PID`` is gone.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from compiler.errors import ConvForgeError

__all__ = ["MARKER", "write_file", "write_output_dir"]

#: The file that marks a directory as a ConvForge output (safe to replace).
MARKER = "manifest.json"


def write_output_dir(out_dir, files: dict) -> Path:
    """Write ``files`` (name -> bytes or str) as the directory ``out_dir``.

    Raises
    ------
    ConvForgeError
        ``out_dir`` exists and is not a ConvForge output directory (refusing to
        replace unrelated files), its parent cannot be created, or writing fails
        (the previous output, if any, is then left as it was).
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
    try:
        parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(parent, out.name)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=parent))
    except OSError as e:
        raise ConvForgeError(f"Output directory {out} cannot be created in {parent} "
                             f"({e.strerror or e}); choose another -o") from None
    try:
        for name, content in files.items():
            data = content.encode() if isinstance(content, str) else bytes(content)
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)  # "dir/file" names
            with open(tmp / name, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        old = None
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-{os.getpid()}-", dir=parent))
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
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):
            state = "its previous contents are unchanged" if out.exists() else "nothing was written"
            raise ConvForgeError(f"Writing output directory {out} failed ({e.strerror or e}); "
                                 f"{state}") from e
        raise
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by another user
        return True
    return True


def _remove_stale(parent: Path, name: str) -> None:
    """Remove the temporary directories of earlier writes of ``name`` whose process died."""
    for kind in ("tmp", "old"):
        prefix = f".{name}.{kind}-"
        for path in parent.iterdir():
            if not path.name.startswith(prefix) or not path.is_dir():
                continue
            pid = path.name[len(prefix):].split("-", 1)[0]
            if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
                shutil.rmtree(path, ignore_errors=True)


def write_file(path, content, option: str) -> Path:
    """Write ``content`` (bytes or str) to the file ``path`` a user named with ``option``.

    Missing parent directories are created.

    Raises
    ------
    ConvForgeError
        The file cannot be written (its parent is a file, it is a directory, no
        permission...), naming the option and the path.
    """
    path = Path(path)
    data = content.encode() if isinstance(content, str) else bytes(content)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    except OSError as e:
        raise ConvForgeError(f"{option} {path}: cannot write it ({e.strerror or e}); choose "
                             f"another path") from None
    return path
