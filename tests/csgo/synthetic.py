"""Synthetic CS:GO files in the exact published layout (spec §7.1), small enough for tests."""

from __future__ import annotations

import tarfile
from pathlib import Path

import h5py
import numpy as np

H, W = 150, 280


def frame(file_number: int, i: int) -> np.ndarray:
    """A BGR frame whose three channels differ and encode (file, frame): B = 10 + i, G = 100 + file, R = 200 + (i % 50)."""
    x = np.empty((H, W, 3), dtype=np.uint8)
    x[..., 0] = 10 + i
    x[..., 1] = 100 + file_number
    x[..., 2] = 200 + (i % 50)
    return x


def action(file_number: int, i: int) -> np.ndarray:
    y = np.zeros(51, dtype=np.float64)  # the published files store float vectors
    y[(file_number + i) % 11] = 1
    y[13 + i % 23] = 1
    y[36 + i % 15] = 1
    return y


def write_hdf5(path: Path, file_number: int, num_frames: int, *, skip_key: str | None = None,
               bad_shape_at: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for i in range(num_frames):
            x = frame(file_number, i)
            if bad_shape_at == i:
                x = x[:-1]
            for key, value in ((f"frame_{i}_x", x), (f"frame_{i}_y", action(file_number, i))):
                if key != skip_key:
                    f.create_dataset(key, data=value)
            f.create_dataset(f"frame_{i}_helperarr", data=np.zeros(4))  # other keys exist and are ignored
    return path


def make_tar(tar_path: Path, files: list[Path]) -> Path:
    with tarfile.open(tar_path, "w") as tf:
        for p in files:
            tf.add(p, arcname=p.name)
    return tar_path


def published_layout_project(tmp_path: Path, num_frames: int) -> tuple[Path, str]:
    """A fresh project copy and the ``--params`` string that ingests three synthetic files in the published
    layout (one ``.tar`` of HDF5 files; file 2 is the test split) — shared by the pipeline and DDP tests."""
    from tests.pipelines.conftest import copy_project

    (tmp_path / "project").mkdir()
    project = copy_project(tmp_path / "project")
    raw = tmp_path / "raw"
    raw.mkdir()
    files = [write_hdf5(tmp_path / "staging" / f"hdf5_dm_july2021_{n}.hdf5", n, num_frames) for n in (1, 2, 3)]
    make_tar(raw / "hdf5_dm_july2021_1_to_3.tar", files)
    split = tmp_path / "split.txt"
    split.write_text("hdf5_dm_july2021_2.hdf5\n")
    return project, f"csgo.data.source_dir={raw},csgo.data.test_split_file={split},csgo.data.frames_per_file={num_frames}"
