"""Videos and image grids comparing real and imagined (world-model) frames.

Frames are uint8 arrays (T, H, W, 3), the on-disk convention. Tiny 64x64 Atari frames are
upscaled by an integer factor with nearest-neighbour repetition so pixels stay crisp in the MLflow
artifact viewer. MP4 (H.264 via the ffmpeg binary of `imageio-ffmpeg`) is used when available;
otherwise, or on request, an animated GIF (Pillow), which MLflow previews inline.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from diamond_kedro.utils.atomic import atomic_write_to

SEPARATOR = 4  # pixels of white between panels (after upscaling)
MACRO_BLOCK = 16  # H.264 encoders want frame sizes divisible by 16 (yuv420p at least by 2)


def _check_frames(frames: np.ndarray, name: str) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"{name}: expected uint8 frames (T, H, W, 3), got {frames.dtype} {frames.shape}")
    if frames.shape[0] == 0:
        raise ValueError(f"{name}: no frames")
    return frames


def upscale_nearest(frames: np.ndarray, scale: int) -> np.ndarray:
    """Repeat each pixel `scale` times along H and W: (..., H, W, C) -> (..., sH, sW, C)."""
    if scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    return frames.repeat(scale, axis=-3).repeat(scale, axis=-2) if scale > 1 else frames


def abs_difference(real: np.ndarray, imagined: np.ndarray, gain: float = 4.0) -> np.ndarray:
    """|real - imagined| per pixel, multiplied by `gain` and clipped to 255 so small errors show."""
    diff = np.abs(real.astype(np.int16) - imagined.astype(np.int16)).astype(np.float32) * gain
    return np.clip(diff, 0, 255).astype(np.uint8)


def side_by_side(real: np.ndarray, imagined: np.ndarray, scale: int = 4, diff_gain: float = 4.0) -> np.ndarray:
    """Frames laid out as [ real | imagined | gain * |real - imagined| ], shape (T, sH, 3 sW + 2 sep, 3)."""
    real = _check_frames(real, "real")
    imagined = _check_frames(imagined, "imagined")
    if real.shape != imagined.shape:
        raise ValueError(f"real and imagined shapes differ: {real.shape} vs {imagined.shape}")
    panels = [upscale_nearest(p, scale) for p in (real, imagined, abs_difference(real, imagined, diff_gain))]
    t, h = panels[0].shape[:2]
    sep = np.full((t, h, SEPARATOR, 3), 255, dtype=np.uint8)
    return np.concatenate([panels[0], sep, panels[1], sep, panels[2]], axis=2)


def mp4_available() -> bool:
    """True when imageio can find an ffmpeg binary (the `imageio-ffmpeg` package ships one)."""
    try:
        import imageio_ffmpeg

        return Path(imageio_ffmpeg.get_ffmpeg_exe()).exists()
    except Exception:  # not installed, or no binary for this platform
        return False


def _pad_to_multiple(frames: np.ndarray, multiple: int) -> np.ndarray:
    t, h, w, c = frames.shape
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return frames
    return np.pad(frames, ((0, 0), (0, ph), (0, pw), (0, 0)))


def write_video(frames: np.ndarray, path: str | os.PathLike, fps: float = 15.0) -> Path:
    """Write uint8 frames (T, H, W, 3) to `path` (.mp4 or .gif); returns the path actually written.

    .mp4 needs ffmpeg (`imageio-ffmpeg`); without it the video is written as a GIF next to the
    requested path (same stem, .gif suffix). For MP4 the frame is zero-padded at the bottom/right
    to multiples of 16 so the H.264 encoder does not rescale it. Note that the GIF writer merges
    consecutive identical frames into one longer frame.
    """
    frames = _check_frames(frames, "frames")
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".mp4", ".gif"):
        raise ValueError(f"unsupported video format {path.suffix!r} for {path}: use .mp4 or .gif")
    if suffix == ".mp4" and mp4_available():
        padded = _pad_to_multiple(frames, MACRO_BLOCK)
        return atomic_write_to(
            path,
            lambda tmp: iio.imwrite(
                tmp, padded, plugin="FFMPEG", extension=".mp4", fps=fps, codec="libx264",
                pixelformat="yuv420p", macro_block_size=1, quality=8,
            ),
        )
    gif_path = path.with_suffix(".gif")
    duration_ms = 1000.0 / fps
    return atomic_write_to(
        gif_path,
        lambda tmp: iio.imwrite(tmp, frames, plugin="pillow", extension=".gif", duration=duration_ms, loop=0),
    )


def write_comparison_video(
    real: np.ndarray,
    imagined: np.ndarray,
    path: str | os.PathLike,
    fps: float = 15.0,
    scale: int = 4,
    diff_gain: float = 4.0,
) -> Path:
    """Side-by-side [real | imagined | amplified |difference|] video; returns the written path."""
    return write_video(side_by_side(real, imagined, scale, diff_gain), path, fps)


def trajectory_grid(
    real: np.ndarray | Sequence[np.ndarray],
    imagined: np.ndarray | Sequence[np.ndarray],
    path: str | os.PathLike,
    max_frames: int = 16,
    scale: int = 2,
    gap: int = 2,
) -> Path:
    """PNG grid: for each trajectory a row of real frames above a row of imagined frames.

    `real`/`imagined`: one trajectory (T, H, W, 3) or several (N, T, H, W, 3), uint8. At most
    `max_frames` frames per row (the first ones). Rows and columns are separated by `gap` white
    pixels (after upscaling).
    """
    real_arr, imag_arr = np.asarray(real), np.asarray(imagined)
    if real_arr.ndim == 4:
        real_arr, imag_arr = real_arr[None], imag_arr[None]
    if real_arr.ndim != 5 or real_arr.shape != imag_arr.shape:
        raise ValueError(
            f"expected real and imagined of equal shape (T, H, W, 3) or (N, T, H, W, 3), "
            f"got {real_arr.shape} and {imag_arr.shape}"
        )
    rows = []
    for r, im in zip(real_arr, imag_arr):
        for traj, name in ((r, "real"), (im, "imagined")):
            traj = upscale_nearest(_check_frames(traj, name)[:max_frames], scale)
            t, h, w, _ = traj.shape
            row = np.full((h, t * w + (t - 1) * gap, 3), 255, dtype=np.uint8)
            for i, frame in enumerate(traj):
                row[:, i * (w + gap) : i * (w + gap) + w] = frame
            rows.append(row)
    h_row, w_row = rows[0].shape[:2]
    grid = np.full((len(rows) * h_row + (len(rows) - 1) * gap, w_row, 3), 255, dtype=np.uint8)
    for i, row in enumerate(rows):
        grid[i * (h_row + gap) : i * (h_row + gap) + h_row] = row
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"trajectory_grid writes PNG, got {path}")
    return atomic_write_to(path, lambda tmp: iio.imwrite(tmp, grid, plugin="pillow", extension=".png"))
