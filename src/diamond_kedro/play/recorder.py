"""Streaming mp4 writer (H.264 through imageio-ffmpeg's ffmpeg binary), atomic: temp file, then rename.

Frames are streamed to ffmpeg as they come, so a long session does not hold its video in memory. The file
appears under its name only once complete; an interrupted or failed recording leaves nothing behind.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from diamond_kedro.utils.atomic import durable_replace, temp_sibling

MACRO_BLOCK = 16  # frames are zero-padded to multiples of 16 so the encoder does not rescale them


class Mp4Recorder:
    def __init__(self, path: str | os.PathLike, fps: float = 15.0) -> None:
        from diamond_kedro.play.loading import PlayError

        self.path = Path(path)
        if self.path.suffix.lower() != ".mp4":
            raise PlayError(f"--record writes an .mp4 file, got {self.path}")
        if fps <= 0:
            raise PlayError(f"--fps must be > 0, got {fps}")
        if not self.path.parent.exists():
            raise PlayError(f"folder {self.path.parent} of --record {self.path} does not exist")
        self.fps = float(fps)
        self.num_frames = 0
        self._gen = None
        self._shape: tuple[int, int] | None = None
        self._tmp = temp_sibling(self.path)

    def add(self, frame: np.ndarray) -> None:
        import imageio_ffmpeg

        h, w = frame.shape[:2]
        ph, pw = (-h) % MACRO_BLOCK, (-w) % MACRO_BLOCK
        if ph or pw:
            frame = np.pad(frame, ((0, ph), (0, pw), (0, 0)))
        if self._gen is None:
            self._shape = frame.shape[:2]
            self._gen = imageio_ffmpeg.write_frames(
                str(self._tmp), (frame.shape[1], frame.shape[0]), fps=self.fps, codec="libx264",
                pix_fmt_out="yuv420p", quality=8, macro_block_size=1, ffmpeg_log_level="error",
            )
            self._gen.send(None)
        if frame.shape[:2] != self._shape:
            raise ValueError(f"frame size changed during recording: {frame.shape[:2]} vs {self._shape}")
        self._gen.send(np.ascontiguousarray(frame, dtype=np.uint8))
        self.num_frames += 1

    def close(self) -> Path | None:
        """Finish the file and move it to its name; returns the path (None if no frame was recorded)."""
        if self._gen is None:
            self._tmp.unlink(missing_ok=True)
            return None
        self._gen.close()
        self._gen = None
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self._tmp, 0o666 & ~umask)  # mkstemp's 0600 would make the video private to its writer
        durable_replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        if self._gen is not None:
            try:
                self._gen.close()
            except Exception:
                pass
            self._gen = None
        self._tmp.unlink(missing_ok=True)
