"""Comparison videos and grids: written files read back with the expected frame count and size."""

import imageio.v3 as iio
import numpy as np
import pytest

from diamond_kedro.evaluation.video import (
    abs_difference,
    mp4_available,
    side_by_side,
    trajectory_grid,
    write_comparison_video,
)


def _frames(seed: int, t: int = 6, h: int = 64, w: int = 64) -> np.ndarray:
    # Few distinct colours per frame (like Atari) so the 256-colour GIF palette is lossless,
    # and each frame different from the last (the GIF writer merges identical neighbours).
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, (8, 3), dtype=np.uint8)
    return palette[rng.integers(0, 8, (t, h, w))]


def test_side_by_side_layout():
    real, imag = _frames(0), _frames(1)
    out = side_by_side(real, imag, scale=4, diff_gain=4.0)
    # width: 3 panels of 64*4 = 256 plus 2 separators of 4 px = 776; height 256
    assert out.shape == (6, 256, 776, 3) and out.dtype == np.uint8
    # nearest-neighbour upscaling: each source pixel is a 4x4 block
    np.testing.assert_array_equal(out[2, 4:8, 8:12], np.broadcast_to(real[2, 1, 2], (4, 4, 3)))
    np.testing.assert_array_equal(out[2, 0, 260:264], np.broadcast_to(imag[2, 0, 0], (4, 3)))
    # difference panel: |100 - 90| * 4 = 40; |0 - 200| * 4 = 800 -> clipped to 255
    d = abs_difference(np.array([[[[100, 0, 5]]]], np.uint8), np.array([[[[90, 200, 5]]]], np.uint8), gain=4.0)
    np.testing.assert_array_equal(d[0, 0, 0], [40, 255, 0])


def test_gif_round_trip(tmp_path):
    real, imag = _frames(0), _frames(1)
    path = write_comparison_video(real, imag, tmp_path / "cmp.gif", fps=10, scale=2)
    assert path == tmp_path / "cmp.gif"
    back = iio.imread(path, index=None)
    # 6 frames of height 64*2 = 128, width 3*128 + 2*4 = 392
    assert back.shape[:3] == (6, 128, 392)
    np.testing.assert_array_equal(back[0, :128, :128, :3], real[0].repeat(2, 0).repeat(2, 1))
    assert [p.name for p in tmp_path.iterdir()] == ["cmp.gif"]  # no temp file left behind


def test_mp4_round_trip_or_gif_fallback(tmp_path):
    real, imag = _frames(2, t=9), _frames(3, t=9)
    path = write_comparison_video(real, imag, tmp_path / "cmp.mp4", fps=15, scale=4)
    if mp4_available():
        assert path.suffix == ".mp4"
        back = np.stack(list(iio.imiter(path, plugin="FFMPEG")))
        # 256 x 776 padded to multiples of 16 -> 256 x 784
        assert back.shape == (9, 256, 784, 3)
    else:
        assert path == tmp_path / "cmp.gif"
        assert iio.imread(path, index=None).shape[:3] == (9, 256, 776)


def test_trajectory_grid(tmp_path):
    real = np.stack([_frames(4, t=5, h=8, w=8), _frames(5, t=5, h=8, w=8)])  # (N=2, T=5, 8, 8, 3)
    imag = np.stack([_frames(6, t=5, h=8, w=8), _frames(7, t=5, h=8, w=8)])
    path = trajectory_grid(real, imag, tmp_path / "grid.png", max_frames=4, scale=2, gap=2)
    grid = iio.imread(path)
    # 4 rows (real, imagined per trajectory) of 16 px + 3 gaps of 2 -> 70; 4 frames of 16 + 3 gaps -> 70
    assert grid.shape == (70, 70, 3)
    # second row (imagined of trajectory 0), second frame, top-left pixel
    np.testing.assert_array_equal(grid[18, 18], imag[0, 1, 0, 0])
    with pytest.raises(ValueError, match="PNG"):
        trajectory_grid(real, imag, tmp_path / "grid.jpg")
