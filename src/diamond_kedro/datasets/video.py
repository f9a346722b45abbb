"""Source: video files (mp4, webm, mkv, avi, mov) + an action table with one row per frame.

Layout (``dataset.path`` is a folder, searched recursively for videos)::

    clips/level1.mp4   clips/level1.csv      a sidecar table per video (same stem, .csv or .parquet), or
    clips/level2.webm  actions.parquet       one table for all videos (``video.actions_file``) whose
                                             ``video.file_column`` names the video (file name or relative path)

Table columns:

* the action: ``video.action_columns`` -- one column of integer ids (``discrete``), several 0/1 columns
  (``multi_hot``), several real-valued columns (``continuous``), or one column holding a whole vector per row
  (a Parquet list, or text such as ``"0 1 0"`` / ``"[0.5, -1]"``);
* ``video.frame_column`` (optional, default ``frame``): the frame index; when present rows are ordered by it
  and it must run 0 .. T-1 per video, otherwise rows are taken in file order;
* ``video.episode_column`` (optional): splits a video into episodes (consecutive rows with one value);
  without it every video is one episode;
* ``reward`` / ``terminated`` / ``truncated`` (optional, names configurable): stored when present.

Frames are decoded to RGB with imageio-ffmpeg (the ffmpeg binary it ships, already a dependency). Each video
is one unit: it is decoded and checked against its rows in full before anything of it is written. Errors
name the video, the table and the (0-based data) row: an undecodable video, fewer or more rows than frames,
a vector of the wrong width, a non-numeric or out-of-range action.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from diamond_kedro.datasets.writer import ActionSpec, DatasetError, RawEpisode, Unit

VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".avi", ".mov")
TABLE_SUFFIXES = (".csv", ".parquet")


def read_table(path: Path) -> pd.DataFrame:
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except Exception as exc:  # pandas raises many parser-specific types
        raise DatasetError(f"{path}: cannot read the action table: {exc}") from exc


def decode_video(path: Path) -> np.ndarray:
    """uint8 (T, H, W, 3) RGB frames of a video; DatasetError naming it when ffmpeg cannot decode it."""
    import imageio_ffmpeg

    try:
        gen = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
        meta = next(gen)
        w, h = meta["size"]
        frames = [np.frombuffer(b, dtype=np.uint8).reshape(h, w, 3) for b in gen]
    except (OSError, RuntimeError, StopIteration, ValueError) as exc:
        first = str(exc).strip().splitlines()
        raise DatasetError(f"{path}: cannot decode the video: {first[-1] if first else type(exc).__name__}") from exc
    if not frames:
        raise DatasetError(f"{path}: the video has no frames")
    return np.stack(frames)


_SPLIT = re.compile(r"[\s,;]+")


def _parse_vector(value: Any) -> np.ndarray:
    if isinstance(value, str):
        text = value.strip().strip("[]()")
        return np.array([float(v) for v in _SPLIT.split(text) if v], dtype=np.float64)
    return np.asarray(value, dtype=np.float64).reshape(-1)


class VideoSource:
    """Videos + action tables as a writer source (module docstring)."""

    kind = "video"

    def __init__(
        self,
        path: str | Path,
        action_columns: list[str],
        action_kind: str = "auto",
        num_actions: int | None = None,
        actions_file: str | Path | None = None,
        file_column: str = "file",
        frame_column: str | None = "frame",
        episode_column: str | None = None,
        reward_column: str = "reward",
        terminated_column: str = "terminated",
        truncated_column: str = "truncated",
    ) -> None:
        self.root = Path(path)
        if not self.root.is_dir():
            raise FileNotFoundError(f"video folder {self.root} does not exist (dataset.path)")
        if not action_columns:
            raise ValueError("dataset.video.action_columns must name at least one column of the action table")
        self.action_columns = list(action_columns)
        self.frame_column, self.episode_column = frame_column, episode_column
        self.extra_columns = {"rew": reward_column, "end": terminated_column, "trunc": truncated_column}
        videos = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
        if not videos:
            raise FileNotFoundError(f"no video files ({', '.join(VIDEO_SUFFIXES)}) under {self.root} (dataset.path)")
        self.videos = {p.relative_to(self.root).as_posix(): p for p in videos}

        # The tables are small (one row per frame): read them all now, so the action kind and the episode
        # names (which the split needs) are known before any video is decoded.
        self.tables: dict[str, tuple[pd.DataFrame, Path]] = {}
        if actions_file is not None:
            table_path = Path(actions_file)
            if not table_path.is_file():
                raise FileNotFoundError(f"action table {table_path} does not exist (dataset.video.actions_file)")
            table = read_table(table_path)
            if len(self.videos) > 1 or file_column in table.columns:
                if file_column not in table.columns:
                    raise DatasetError(f"{table_path}: no column {file_column!r} naming the video of each row "
                                       f"(dataset.video.file_column); columns: {', '.join(map(str, table.columns))}")
                names = table[file_column].astype(str)
                for vid, p in self.videos.items():
                    rows = table[(names == vid) | (names == p.name)]
                    self.tables[vid] = (rows, table_path)
            else:
                self.tables[next(iter(self.videos))] = (table, table_path)
        else:
            for vid, p in self.videos.items():
                side = [p.with_suffix(s) for s in TABLE_SUFFIXES if p.with_suffix(s).is_file()]
                if not side:
                    raise DatasetError(f"{p}: no action table {p.with_suffix('.csv').name} or "
                                       f"{p.with_suffix('.parquet').name} next to it (or set dataset.video.actions_file)")
                self.tables[vid] = (read_table(side[0]), side[0])
        for vid, (table, tpath) in self.tables.items():
            missing = [c for c in self.action_columns if c not in table.columns]
            if missing:
                raise DatasetError(f"{tpath}: no action column {', '.join(map(repr, missing))} "
                                   f"(dataset.video.action_columns); columns: {', '.join(map(str, table.columns))}")
        self.spec = self._choose_spec(action_kind, num_actions)

    # -- actions -----------------------------------------------------------------------------------
    def _vector_column(self) -> bool:
        """One action column whose cells are whole vectors (text or lists), not scalars."""
        if len(self.action_columns) != 1:
            return False
        col = self.action_columns[0]
        for table, _ in self.tables.values():
            if len(table):
                first = table[col].iloc[0]
                return isinstance(first, (str, list, tuple, np.ndarray))
        return False

    def _raw_actions(self, vid: str, rows: pd.DataFrame) -> np.ndarray:
        """(N,) or (N, A) float64 actions of ``rows``; errors name the table and the row."""
        _, tpath = self.tables[vid]
        if self._vector_column():
            col = self.action_columns[0]
            out, width = [], None
            for i, (row_id, value) in enumerate(zip(rows.index, rows[col])):
                try:
                    vec = _parse_vector(value)
                except (TypeError, ValueError):
                    raise DatasetError(f"{tpath}: row {row_id} ({vid} frame {i}): action {value!r} is not a "
                                       "vector of numbers") from None
                want = self.spec.dim if getattr(self, "spec", None) is not None else width
                if want is not None and vec.size != want:
                    raise DatasetError(f"{tpath}: row {row_id} ({vid} frame {i}): action column {col!r} has "
                                       f"{vec.size} values, expected {want}")
                width = vec.size
                out.append(vec)
            return np.stack(out) if out else np.zeros((0, width or 0))
        values = rows[self.action_columns].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
        bad = np.flatnonzero(np.isnan(values).any(axis=1))
        if bad.size:
            row_id = rows.index[bad[0]]
            cells = rows.loc[row_id, self.action_columns].tolist()
            raise DatasetError(f"{tpath}: row {row_id} ({vid} frame {int(bad[0])}): action {cells} is empty or not numeric")
        return values[:, 0] if len(self.action_columns) == 1 else values

    def _choose_spec(self, action_kind: str, num_actions: int | None) -> ActionSpec:
        self.spec = None
        # A table with a bad row is left out here; reading its video raises the error (naming file and row),
        # so that one bad file does not stop the others (dataset.on_bad_file).
        per_video = {}
        for vid in self.videos:
            try:
                per_video[vid] = self._raw_actions(vid, self._ordered(vid))
            except DatasetError:
                continue
        if len({a.shape[1:] for a in per_video.values()}) > 1:
            raise DatasetError(f"the action tables under {self.root} disagree on the action width: " + ", ".join(
                f"{vid}: {a.shape[1] if a.ndim == 2 else 1}" for vid, a in per_video.items()))
        acts = np.concatenate(list(per_video.values())) if per_video else np.zeros(0)
        if action_kind == "auto":
            if acts.ndim == 1:
                action_kind = "discrete" if (acts == np.round(acts)).all() else "continuous"
            else:
                action_kind = "multi_hot" if np.isin(acts, (0, 1)).all() else "continuous"
        if action_kind == "discrete":
            if acts.ndim != 1:
                raise DatasetError(f"dataset.action_kind is discrete but {len(self.action_columns)} action columns "
                                   "are given; a discrete action is one column of integer ids")
            dim = num_actions if num_actions is not None else int(acts.max()) + 1 if acts.size else 1
        else:
            dim = acts.shape[1] if acts.ndim == 2 else 1
            if num_actions is not None and num_actions != dim:
                raise DatasetError(f"dataset.num_actions is {num_actions} but the action tables have {dim} values per row")
        return ActionSpec(action_kind, dim)

    def action_spec(self) -> ActionSpec:
        return self.spec

    # -- units ---------------------------------------------------------------------------------------
    def _ordered(self, vid: str) -> pd.DataFrame:
        table, tpath = self.tables[vid]
        if self.frame_column and self.frame_column in table.columns:
            frames = pd.to_numeric(table[self.frame_column], errors="coerce")
            table = table.assign(_frame=frames).sort_values("_frame", kind="stable")
            expect = np.arange(len(table))
            got = table["_frame"].to_numpy()
            bad = np.flatnonzero(got != expect)
            if bad.size:
                row_id = table.index[bad[0]]
                raise DatasetError(f"{tpath}: row {row_id}: {vid} frame index {got[bad[0]]}, expected {bad[0]} "
                                   f"(column {self.frame_column!r} must run 0 .. number of frames - 1 per video)")
        return table

    def _episodes(self, vid: str, table: pd.DataFrame) -> list[tuple[str, slice]]:
        if not self.episode_column:
            return [(vid, slice(0, len(table)))]
        _, tpath = self.tables[vid]
        if self.episode_column not in table.columns:
            raise DatasetError(f"{tpath}: no episode column {self.episode_column!r} (dataset.video.episode_column)")
        values = table[self.episode_column].astype(str).to_numpy()
        starts = [0] + [i for i in range(1, len(values)) if values[i] != values[i - 1]]
        bounds = starts + [len(values)]
        names = [f"{vid}#{values[s]}" for s in starts]
        if len(set(names)) != len(names):
            raise DatasetError(f"{tpath}: episode values of {vid} are not contiguous (an episode's rows must be consecutive)")
        return [(n, slice(a, b)) for n, a, b in zip(names, bounds[:-1], bounds[1:])]

    def units(self) -> list[Unit]:
        out = []
        for vid, p in self.videos.items():
            try:
                names = tuple(n for n, _ in self._episodes(vid, self._ordered(vid)))
            except DatasetError:
                names = (vid,)  # its table is bad: read() raises the error when this unit's turn comes
            out.append(Unit(vid, names, str(p)))
        return out

    def settings(self) -> dict[str, Any]:
        return {"path": str(self.root), "action_columns": self.action_columns, "episode_column": self.episode_column}

    def read(self, unit: Unit) -> list[RawEpisode]:
        vid = unit.file_id
        path, (_, tpath) = self.videos[vid], self.tables[vid]
        table = self._ordered(vid)
        frames = decode_video(path)
        if len(table) != len(frames):
            first = min(len(table), len(frames))
            what = "rows missing from" if len(table) < len(frames) else "rows too many in"
            raise DatasetError(f"{path} has {len(frames)} frames but {tpath} has {len(table)} rows for it "
                               f"({what} the table from frame {first}; one row per frame)")
        act = self._raw_actions(vid, table)
        extra = {}
        for key, col in self.extra_columns.items():
            if col in table.columns:
                vals = pd.to_numeric(table[col], errors="coerce").to_numpy(dtype=np.float64)
                if np.isnan(vals).any():
                    row_id = table.index[int(np.flatnonzero(np.isnan(vals))[0])]
                    raise DatasetError(f"{tpath}: row {row_id}: column {col!r} is empty or not numeric")
                extra[key] = vals
        out = []
        for name, sl in self._episodes(vid, table):
            out.append(RawEpisode(name, frames[sl], act[sl], **{k: v[sl] for k, v in extra.items()}))
        return out
