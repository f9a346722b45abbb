"""Atomic file writes, the one implementation the package uses: write a temporary sibling, flush it to disk,
rename it over the target, then fsync the folder.

A reader (or a resumed run) therefore sees either the old file or the new one, never a torn one, and the
rename itself survives a power cut (without the folder's fsync the new name may not be on disk yet).

* ``atomic_write`` / ``atomic_write_text`` / ``atomic_torch_save``: the content is written through a file object.
* ``atomic_write_to``: for writers that want a file *name* (imageio, matplotlib, ffmpeg).
* ``durable_replace``: the rename + folder fsync alone, for a file or folder already complete (a recorded
  video, a replay store's episodes folder moved aside, a corrupt chunk quarantined).
* ``fsync_dir``: a folder's entries made durable (after a mkdir or an unlink that must stick).

``fsync=False`` (the replay stores' and dataset writer's option, for scratch data) keeps the
atomicity and skips the fsyncs.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable


def atomic_write(
    path: Path | str, write: Callable[[Any], None], mode: str = "wb", *, fsync: bool = True, tmp: Path | str | None = None
) -> None:
    """Call ``write(fileobj)`` on a temp file in ``path``'s folder, fsync it, ``os.replace`` it onto ``path``
    and fsync the folder. ``tmp``: a fixed temp name (the replay store's ``<name>.tmp``, which its repair
    recognises); by default a fresh hidden ``.<name>.XXXX.tmp``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if tmp is None:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        opened = os.fdopen(fd, mode)
    else:
        opened = open(tmp, mode)
    try:
        with opened as f:
            write(f)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        # no partial file under the real name; the temp file goes too (a hard crash may still leave it:
        # readers ignore *.tmp)
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent, fsync)


def atomic_write_text(path: Path | str, text: str, *, fsync: bool = True) -> None:
    atomic_write(path, lambda f: f.write(text), mode="w", fsync=fsync)


def atomic_torch_save(obj: Any, path: Path | str) -> None:
    import torch  # here, so that the replay store (which writes through this module) does not load torch

    atomic_write(path, lambda f: torch.save(obj, f))


def atomic_write_to(path: Path | str, write_to: Callable[[str], Any], *, fsync: bool = True) -> Path:
    """Call ``write_to(tmp_name)`` (a temp file in ``path``'s folder with ``path``'s suffix, for writers that
    pick the format from it), then make it ``path`` as ``atomic_write`` does. Returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    try:
        write_to(str(tmp))
        durable_replace(tmp, path, fsync=fsync)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def temp_sibling(path: Path | str) -> Path:
    """A new empty hidden file ``.<stem>.XXXX<suffix>`` beside ``path``, to be written and then
    ``durable_replace``d onto it (the suffix lets writers pick the format from the name)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    return Path(tmp)


def durable_replace(src: Path | str, dst: Path | str, *, fsync: bool = True) -> None:
    """``os.replace(src, dst)`` made durable: ``src``'s content is fsynced first (a file, or a folder's
    entries), then, after the rename, the folder of ``dst`` (and of ``src``, when it is another one)."""
    src, dst = Path(src), Path(dst)
    if fsync:
        _fsync_path(src)
    os.replace(src, dst)
    fsync_dir(dst.parent, fsync)
    if src.parent.resolve() != dst.parent.resolve():
        fsync_dir(src.parent, fsync)


def fsync_dir(folder: Path | str, enabled: bool = True) -> None:
    """Make a folder's entries durable (a rename, create or unlink in it); a no-op when not ``enabled``."""
    if enabled:
        _fsync_path(Path(folder))


def _fsync_path(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a directory; the rename is still atomic
    finally:
        os.close(fd)
