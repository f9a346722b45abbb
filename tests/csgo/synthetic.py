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
