"""Every atomic write of the package goes through ``utils/atomic.py`` and is durable: the new content is
fsynced before the rename, and the folder holding the new name is fsynced after it.

``os.fsync`` and ``os.replace`` are wrapped to log what they got (``os.fstat`` of the fsynced fd: inode and
whether it is a folder), then each writer is run for real on a temporary folder.
"""

from __future__ import annotations

import ast
import os
import stat
from pathlib import Path

import numpy as np
import pytest

import diamond_kedro

SRC = Path(diamond_kedro.__file__).resolve().parent


@pytest.fixture
def fs_log(monkeypatch):
    events: list[tuple] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        st = os.fstat(fd)
        events.append(("fsync", st.st_ino, stat.S_ISDIR(st.st_mode)))
        return real_fsync(fd)

    def replace(src, dst, *args, **kwargs):
        src_ino = os.stat(src).st_ino
        real_replace(src, dst, *args, **kwargs)
        events.append(("replace", src_ino, os.stat(Path(dst).parent).st_ino, str(dst)))

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return events


def assert_durable(events: list[tuple], *names: str) -> None:
    """Each of ``names`` was renamed into place, its content fsynced before and its folder after."""
    replaced = {Path(e[3]).name for e in events if e[0] == "replace"}
    assert set(names) <= replaced, f"not written through a rename: {set(names) - replaced}"
    for i, event in enumerate(events):
        if event[0] != "replace":
            continue
        _, src_ino, dir_ino, dst = event
        assert any(e[0] == "fsync" and e[1] == src_ino for e in events[:i]), f"{dst}: content not fsynced before the rename"
        assert any(e[0] == "fsync" and e[1] == dir_ino and e[2] for e in events[i + 1 :]), f"{dst}: folder not fsynced after the rename"


def test_atomic_write_text_fsyncs_the_file_then_the_folder(tmp_path, fs_log):
    from diamond_kedro.utils.atomic import atomic_write_text

    atomic_write_text(tmp_path / "a" / "x.json", "{}")
    assert_durable(fs_log, "x.json")
    assert (tmp_path / "a" / "x.json").read_text() == "{}"
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["x.json"]  # no temp file left


def test_replay_store_chunks_manifest_and_clear(tmp_path, fs_log):
    from diamond_kedro.replay.store import EpisodeChunk, ReplayStore

    store = ReplayStore(tmp_path / "store")
    t = 3
    chunk = EpisodeChunk(
        obs=np.zeros((t, 3, 8, 8), np.uint8), act=np.zeros(t, np.int64), rew=np.zeros(t, np.float32),
        end=np.zeros(t, np.uint8), trunc=np.zeros(t, np.uint8),
    )
    store.add_episode(chunk)
    assert_durable(fs_log, "chunk_0000.arrow", "manifest.json")
    chunk_dir = os.stat(tmp_path / "store" / "episodes" / "000000").st_ino
    assert ("fsync", chunk_dir, True) in fs_log  # the chunk's own folder, not only the store's
    fs_log.clear()
    store.clear()  # the episodes folder is renamed aside in one step
    assert_durable(fs_log, "manifest.json")
    assert any(Path(e[3]).name.startswith("episodes.") for e in fs_log if e[0] == "replace")


def test_pictures_and_videos_of_evaluation(tmp_path, fs_log):
    from diamond_kedro.evaluation.video import trajectory_grid, write_video

    frames = np.zeros((2, 8, 8, 3), np.uint8)
    write_video(frames, tmp_path / "v.gif", fps=4)
    trajectory_grid(frames, frames, tmp_path / "g.png")
    assert_durable(fs_log, "v.gif", "g.png")


def test_figures_of_score_reports(tmp_path, fs_log):
    from matplotlib.figure import Figure

    from diamond_kedro.evaluation.scores import _save_figure_atomic

    _save_figure_atomic(Figure(figsize=(1, 1)), tmp_path / "f.png")
    assert_durable(fs_log, "f.png")


def test_play_recording_and_screenshot(tmp_path, fs_log):
    pytest.importorskip("imageio_ffmpeg")
    from diamond_kedro.play.cli import _save_png
    from diamond_kedro.play.recorder import Mp4Recorder

    rec = Mp4Recorder(tmp_path / "r.mp4", fps=4)
    for _ in range(2):
        rec.add(np.zeros((16, 16, 3), np.uint8))
    rec.close()
    _save_png(str(tmp_path / "s.png"), np.zeros((4, 4, 3), np.uint8))
    assert_durable(fs_log, "r.mp4", "s.png")


def test_lock_holder_info(tmp_path, fs_log):
    from diamond_kedro.utils.run_lock import INFO_NAME, FolderLock

    with FolderLock(tmp_path, "run"):
        assert_durable(fs_log, INFO_NAME)


def test_no_rename_outside_the_atomic_module():
    """``os.replace`` / ``os.rename`` / ``Path.rename`` / ``Path.replace`` / temp files: only in utils/atomic.py
    (``str.replace`` has string arguments and is told apart by them)."""
    found = []
    for path in SRC.rglob("*.py"):
        if path == SRC / "utils" / "atomic.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            name, owner = node.func.attr, node.func.value
            is_os = isinstance(owner, ast.Name) and owner.id in ("os", "tempfile", "shutil")
            string_args = any(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in node.args)
            if (is_os and name in ("replace", "rename", "renames", "mkstemp", "move", "NamedTemporaryFile")) or (
                name in ("rename", "replace") and not is_os and len(node.args) == 1 and not string_args
                and not (isinstance(owner, ast.Name) and owner.id in ("dataclasses",))
            ):
                found.append(f"{path.relative_to(SRC)}:{node.lineno}: {ast.unparse(node)[:80]}")
    assert not found, "renames outside utils/atomic.py:\n" + "\n".join(found)
