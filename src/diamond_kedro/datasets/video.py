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

Frames are decoded to RGB with imageio-ffmpeg (the ffmpeg binary it ships, already a dependency), streamed
into one array of the table's length. Each video is one unit: it is decoded and checked against its rows in
full before anything of it is written. Errors name the video, the table and the (0-based data) row: an
undecodable video, fewer or more rows than frames, a vector of the wrong width, a non-numeric, non-finite or
out-of-range action, a reward that is not finite, a termination that is not 0 or 1.

The tables are all read and checked when the source is made, so the action width and kind are decided over
the rows of every table (the width most rows have; or ``dataset.action_kind`` + ``dataset.num_actions`` when
declared) and one bad cell makes its file bad -- named with its row -- instead of changing the dataset. With
``dataset.on_bad_file: skip`` such a file is left out as if it were absent (its rows take no part in the
choice of kind and width, its episodes none in the split).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from diamond_kedro.datasets.writer import ActionSpec, DatasetError, RawEpisode, SourceNotFound, Unit

VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".avi", ".mov")
TABLE_SUFFIXES = (".csv", ".parquet")


def read_table(path: Path) -> pd.DataFrame:
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except Exception as exc:  # pandas raises many parser-specific types
        raise DatasetError(f"{path}: cannot read the action table: {exc}") from exc


def _video_frames(path: Path) -> tuple[tuple[int, int], Any]:
    """((H, W), generator of raw RGB frame bytes) of a video; DatasetError naming it when ffmpeg cannot."""
    import imageio_ffmpeg

    try:
        gen = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
        meta = next(gen)
    except (OSError, RuntimeError, StopIteration, ValueError) as exc:
        raise _decode_error(path, exc) from exc
    w, h = meta["size"]
    return (int(h), int(w)), gen


def _decode_error(path: Path, exc: BaseException) -> DatasetError:
    first = str(exc).strip().splitlines()
    return DatasetError(f"{path}: cannot decode the video: {first[-1] if first else type(exc).__name__}")


def decode_video(path: Path, num_frames: int | None = None) -> np.ndarray:
    """uint8 (T, H, W, 3) RGB frames of a video; DatasetError naming it when ffmpeg cannot decode it.

    With ``num_frames`` (the rows the action table has for it) the frames are streamed into one array of that
    length, never held twice, and a video with another number of frames raises (frames beyond it are
    counted, not kept). Without it the frames are gathered and stacked."""
    (h, w), gen = _video_frames(path)
    if num_frames is None:
        try:
            frames = [np.frombuffer(b, dtype=np.uint8).reshape(h, w, 3) for b in gen]
        except (OSError, RuntimeError, ValueError) as exc:
            raise _decode_error(path, exc) from exc
        if not frames:
            raise DatasetError(f"{path}: the video has no frames")
        return np.stack(frames)
    out = np.empty((num_frames, h, w, 3), dtype=np.uint8)
    n = 0
    try:
        for b in gen:
            if n < num_frames:
                out[n] = np.frombuffer(b, dtype=np.uint8).reshape(h, w, 3)
            n += 1
    except (OSError, RuntimeError, ValueError) as exc:
        raise _decode_error(path, exc) from exc
    finally:
        gen.close()
    if n == 0:
        raise DatasetError(f"{path}: the video has no frames")
    if n != num_frames:
        raise FrameCountError(path, n, num_frames)
    return out


class FrameCountError(DatasetError):
    """A video has another number of frames than its table has rows."""

    def __init__(self, path: Path, frames: int, rows: int) -> None:
        self.frames, self.rows = frames, rows
        super().__init__(f"{path}: {frames} frames, {rows} expected")


_SPLIT = re.compile(r"[\s,;]+")


def _parse_vector(value: Any) -> np.ndarray:
    """The numbers of one action cell (a scalar, a list, or text such as ``"0 1 0"`` / ``"[0.5, -1]"``);
    ValueError when it is empty, not numbers, or not finite."""
    if isinstance(value, str):
        text = value.strip().strip("[]()")
        vec = np.array([float(v) for v in _SPLIT.split(text) if v], dtype=np.float64)
    elif isinstance(value, (list, tuple, np.ndarray)):
        vec = np.asarray(value, dtype=np.float64).reshape(-1)
    elif value is None:
        raise ValueError("empty")
    else:
        vec = np.asarray(float(value), dtype=np.float64).reshape(1)
    if vec.size == 0 or not np.isfinite(vec).all():
        raise ValueError("empty or not finite")
    return vec


def _cell(value: Any) -> str:
    """A table cell as the message shows it: ``'abc'``, ``inf``, ``-1``, ``empty``."""
    if isinstance(value, np.generic):
        value = value.item()
    return "empty" if value is None or (isinstance(value, float) and np.isnan(value)) else repr(value)


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
            raise SourceNotFound(f"video folder {self.root} does not exist (dataset.path)")
        if not action_columns:
            raise DatasetError("dataset.video.action_columns must name at least one column of the action table")
        self.action_columns = list(action_columns)
        self.frame_column, self.episode_column = frame_column, episode_column
        self.extra_columns = {"rew": reward_column, "end": terminated_column, "trunc": truncated_column}
        videos = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
        if not videos:
            raise SourceNotFound(f"no video files ({', '.join(VIDEO_SUFFIXES)}) under {self.root} (dataset.path)")
        self.videos = {p.relative_to(self.root).as_posix(): p for p in videos}
        # per video: the error that makes it a bad file (found here, raised when its unit is read)
        self.errors: dict[str, str] = {}

        # The tables are small (one row per frame): read and check them all now, so the action kind and width
        # are decided over every table, and the episode names (which the split needs) are known, before any
        # video is decoded.
        self.tables: dict[str, tuple[pd.DataFrame, Path]] = {}
        if actions_file is not None:
            table_path = Path(actions_file)
            if not table_path.is_file():
                raise SourceNotFound(f"action table {table_path} does not exist (dataset.video.actions_file)")
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
                    self.errors[vid] = (f"{p}: no action table {p.with_suffix('.csv').name} or "
                                        f"{p.with_suffix('.parquet').name} next to it (or set dataset.video.actions_file)")
                    continue
                try:
                    self.tables[vid] = (read_table(side[0]), side[0])
                except DatasetError as exc:
                    self.errors[vid] = str(exc)

        self.ordered: dict[str, pd.DataFrame] = {}
        self.episodes: dict[str, list[tuple[str, slice]]] = {}
        cells: dict[str, list[np.ndarray]] = {}
        for vid in self.videos:
            if vid in self.errors:
                continue
            try:
                table, tpath = self.tables[vid]
                missing = [c for c in self.action_columns if c not in table.columns]
                if missing:
                    raise DatasetError(f"{tpath}: no action column {', '.join(map(repr, missing))} "
                                       f"(dataset.video.action_columns); columns: {', '.join(map(str, table.columns))}")
                if not len(table):
                    raise DatasetError(f"{tpath}: no rows for {vid} (one row per frame)")
                self.ordered[vid] = self._ordered(vid)
                self.episodes[vid] = self._episodes(vid, self.ordered[vid])
                cells[vid] = self._parse_actions(vid, self.ordered[vid])
            except DatasetError as exc:
                self.errors[vid] = str(exc)
        self.spec = self._choose_spec(cells, action_kind, num_actions)
        for vid in list(self.actions):
            try:
                self.extras[vid] = self._extra_values(vid, self.ordered[vid])
            except DatasetError as exc:
                self.errors[vid] = str(exc)
                del self.actions[vid]

    # -- actions -----------------------------------------------------------------------------------
    def _where(self, vid: str, rows: pd.DataFrame, i: int) -> str:
        return f"{self.tables[vid][1]}: row {rows.index[i]} ({vid} frame {i})"

    def _parse_actions(self, vid: str, rows: pd.DataFrame) -> np.ndarray | list[np.ndarray]:
        """The rows' actions: an (N, A) float64 array, or -- when the rows of one vector column differ in
        width -- a list of 1-D vectors; DatasetError naming the first row that is empty, not numbers or not
        finite."""
        col = self.action_columns[0]
        if len(self.action_columns) > 1 or pd.api.types.is_numeric_dtype(rows[col]):
            cols = self.action_columns
            values = rows[cols].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
            bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
            if bad.size:
                i = int(bad[0])
                cells = [_cell(v) for v in rows.iloc[i][cols].tolist()]
                raise DatasetError(f"{self._where(vid, rows, i)}: action {', '.join(cells)} in "
                                   f"{'columns' if len(cols) > 1 else 'column'} {', '.join(map(repr, cols))} is "
                                   "empty, not numeric or not finite")
            return values
        out = []
        for i, value in enumerate(rows[col]):  # text or lists: each cell on its own
            try:
                out.append(_parse_vector(value))
            except (TypeError, ValueError):
                raise DatasetError(f"{self._where(vid, rows, i)}: action {_cell(value)} in column {col!r} is not a "
                                   "finite number or vector of numbers") from None
        return np.stack(out) if len({v.size for v in out}) == 1 else out

    def _choose_spec(self, cells: dict[str, np.ndarray | list[np.ndarray]], action_kind: str,
                     num_actions: int | None) -> ActionSpec:
        """Width and kind over the rows of every table that parsed; files that disagree become bad files."""
        declared = action_kind != "auto"
        if action_kind == "discrete":
            width = 1
        elif declared and num_actions is not None:
            width = num_actions
        elif len(self.action_columns) > 1:
            width = len(self.action_columns)
        else:
            counts: dict[int, int] = {}
            for vecs in cells.values():
                if isinstance(vecs, np.ndarray):
                    counts[vecs.shape[1]] = counts.get(vecs.shape[1], 0) + len(vecs)
                    continue
                for v in vecs:
                    counts[v.size] = counts.get(v.size, 0) + 1
            ranked = sorted(counts.items(), key=lambda kv: -kv[1])
            if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
                raise DatasetError(
                    f"the action tables under {self.root} disagree on the action width ("
                    + ", ".join(f"{n} rows of {w} values" for w, n in ranked)
                    + "): set dataset.action_kind and dataset.num_actions")
            width = ranked[0][0] if ranked else 1
        self.actions: dict[str, np.ndarray] = {}
        self.extras: dict[str, dict[str, np.ndarray]] = {}
        col = " + ".join(map(repr, self.action_columns))
        for vid, vecs in cells.items():
            rows = self.ordered[vid]
            sizes = [vecs.shape[1]] * len(vecs) if isinstance(vecs, np.ndarray) else [v.size for v in vecs]
            wrong = next((i for i, n in enumerate(sizes) if n != width), None)
            if wrong is not None:
                self.errors[vid] = (f"{self._where(vid, rows, wrong)}: action column {col} has {sizes[wrong]} "
                                    f"values, expected {width}")
                continue
            self.actions[vid] = vecs if isinstance(vecs, np.ndarray) else np.stack(vecs)  # (N, width)
        acts = np.concatenate(list(self.actions.values())) if self.actions else np.zeros((0, width))
        if action_kind == "auto":
            if width == 1:
                action_kind = "discrete" if (acts == np.round(acts)).all() else "continuous"
            else:
                action_kind = "multi_hot" if np.isin(acts, (0, 1)).all() else "continuous"
        if action_kind == "discrete":
            if len(self.action_columns) != 1:
                raise DatasetError(f"dataset.action_kind is discrete but {len(self.action_columns)} action columns "
                                   "are given; a discrete action is one column of integer ids")
            ids = acts[:, 0]
            if num_actions is not None:
                dim = num_actions
            else:
                ok = ids[(ids == np.round(ids)) & (ids >= 0)]
                dim = int(ok.max()) + 1 if ok.size else 1
        else:
            dim = width
            if num_actions is not None and num_actions != dim:
                raise DatasetError(f"dataset.num_actions is {num_actions} but the action tables have {dim} values per row")
        spec = ActionSpec(action_kind, dim)
        for vid in list(self.actions):  # every value in range of the chosen spec, or the file is bad (named row)
            a = self.actions[vid]
            if spec.kind == "discrete":
                bad = np.flatnonzero((a[:, 0] != np.round(a[:, 0])) | (a[:, 0] < 0) | (a[:, 0] >= dim))
                what = f"is not an action id in [0, {dim})"
            elif spec.kind == "multi_hot":
                bad = np.flatnonzero(~np.isin(a, (0, 1)).all(axis=1))
                what = "holds values other than 0 and 1 (multi_hot)"
            else:
                bad = np.zeros(0, int)
            if bad.size:
                i = int(bad[0])
                value = a[i, 0] if width == 1 else a[i].tolist()
                self.errors[vid] = f"{self._where(vid, self.ordered[vid], i)}: action {value} {what}"
                del self.actions[vid]
            else:
                self.actions[vid] = a[:, 0] if width == 1 else a
        return spec

    def _extra_values(self, vid: str, rows: pd.DataFrame) -> dict[str, np.ndarray]:
        """Rewards (finite) and terminated/truncated (0 or 1, only on an episode's last row) of ``rows``."""
        out = {}
        for key, col in self.extra_columns.items():
            if col not in rows.columns:
                continue
            raw = rows[col]
            vals = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
            if key == "rew":
                with np.errstate(over="ignore"):
                    bad = np.flatnonzero(~np.isfinite(vals.astype(np.float32)))
                what = "a finite number"
            else:
                bad = np.flatnonzero(~np.isin(vals, (0.0, 1.0)))
                what = "0 or 1"
            if bad.size:
                i = int(bad[0])
                raise DatasetError(f"{self._where(vid, rows, i)}: column {col!r} is {_cell(raw.iloc[i])}, "
                                   f"expected {what}")
            out[key] = vals
        flags = [out[k] for k in ("end", "trunc") if k in out]
        if flags:
            ended = np.logical_or.reduce(flags)
            for _, sl in self.episodes[vid]:
                early = np.flatnonzero(ended[sl][:-1])
                if early.size:
                    i = sl.start + int(early[0])
                    raise DatasetError(f"{self._where(vid, rows, i)}: terminated/truncated before the last row of "
                                       "its episode (an episode ends at its last row; set dataset.video.episode_column)")
        return out

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
            names = tuple(n for n, _ in self.episodes[vid]) if vid in self.episodes else (vid,)
            out.append(Unit(vid, names, str(p), error=self.errors.get(vid)))
        return out

    def settings(self) -> dict[str, Any]:
        return {"path": str(self.root), "action_columns": self.action_columns, "episode_column": self.episode_column}

    def read(self, unit: Unit) -> list[RawEpisode]:
        vid = unit.file_id
        if vid in self.errors:
            raise DatasetError(self.errors[vid])
        path, (_, tpath) = self.videos[vid], self.tables[vid]
        table, act, extra = self.ordered[vid], self.actions[vid], self.extras[vid]
        try:
            frames = decode_video(path, len(table))
        except FrameCountError as exc:
            first = min(exc.rows, exc.frames)
            what = "rows missing from" if exc.rows < exc.frames else "rows too many in"
            raise DatasetError(f"{path} has {exc.frames} frames but {tpath} has {exc.rows} rows for it "
                               f"({what} the table from frame {first}; one row per frame)") from None
        out = []
        for name, sl in self.episodes[vid]:
            out.append(RawEpisode(name, frames[sl], act[sl], **{k: v[sl] for k, v in extra.items()}))
        return out
