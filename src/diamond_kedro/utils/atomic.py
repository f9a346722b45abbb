"""Atomic file writes: write a temporary sibling, flush it to disk, then rename over the target.

A reader (or a resumed run) therefore sees either the old file or the new one, never a torn one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch


def atomic_write(path: Path | str, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Call ``write(fileobj)`` on a temp file in ``path``'s folder, fsync, then ``os.replace`` onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (a power cut after ``os.replace`` could otherwise undo it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a directory; the rename is still atomic
    finally:
        os.close(fd)


def atomic_write_text(path: Path | str, text: str) -> None:
    atomic_write(path, lambda f: f.write(text), mode="w")


def atomic_torch_save(obj: Any, path: Path | str) -> None:
    atomic_write(path, lambda f: torch.save(obj, f))
