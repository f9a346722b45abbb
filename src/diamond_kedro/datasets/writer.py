"""The one replay-store writer every static gameplay source feeds (CS:GO HDF5, Minari, video + action table).

A *source* lists **units** (a file: one HDF5 file, one video, one Minari episode) and reads one unit at a time
into fully validated :class:`RawEpisode` s (RGB uint8 frames of any size, actions, optional rewards and
terminations). The writer resizes the frames, splits episodes into train/test and appends them to::

    <out_dir>/full_res/{train,test}/   ReplayStore at dataset.frame_size         (only with an upsampler)
    <out_dir>/low_res/{train,test}/    ReplayStore at the dynamics resolution    (always; same episode ids)
    <out_dir>/index.json               splits (episode names by episode id), settings, action spec, bad files

Without an upsampler (``low_res_size`` None) the dynamics model works at ``frame_size`` and only ``low_res/``
exists, holding frames of ``frame_size`` (one store layout for the run to read).

Resumable per unit: a unit is committed by the ``index.json`` rewrite that follows its chunk writes (chunk
epoch tag = episode id + 1). On restart, chunks beyond what the index lists (a unit killed half-way,
``in_progress`` names it) are rolled back and that unit is redone; committed units are skipped. A unit that
fails validation raises :class:`DatasetError` naming the file (and row) *before* any of it is written: its
actions, rewards (finite) and terminations (0 or 1, only at the last step) are all checked first. A unit the
source found bad while listing (``Unit.error``) stops an ``on_bad_file="raise"`` ingest before anything is
written; with ``"skip"`` every bad unit is recorded in ``bad_files`` and the dataset is as if it were absent
(its episodes take no part in the split).

Resizing (``resize``): ``pad`` keeps the aspect ratio (scale to fit, centred, black bars) and ``stretch``
scales each axis independently. Frames already at the target size are copied unchanged. Both use
antialiased bicubic in torch, clamped and rounded -- the filter the CS:GO frames were downscaled with
(see :func:`downscale`).

Actions (``ActionSpec``): ``discrete`` (int64 ids < n, an embedding row per id), ``multi_hot`` (float32 0/1
vectors of width n, the sum of the rows of the pressed entries, as CS:GO) or ``continuous`` (float32 vectors
of width n, the same table used as a bias-free linear map). The kind is chosen by the source from the data
(or set in the config), recorded in the index and checked for every episode.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from diamond_kedro.replay.store import EpisodeChunk, ReplayStore
from diamond_kedro.utils.atomic import atomic_write_text
from diamond_kedro.errors import UserError
from diamond_kedro.utils.run_lock import FolderLock

log = logging.getLogger(__name__)

SPLITS = ("train", "test")
RESOLUTIONS = ("low_res", "full_res")
INDEX_NAME = "index.json"
INDEX_FORMAT = "diamond-kedro-static-dataset"
LEGACY_CSGO_FORMAT = "diamond-kedro-csgo-index"  # indexes written before the static_world_model family
ACTION_KINDS = ("discrete", "multi_hot", "continuous")
_RESIZE_BATCH = 200  # frames per bicubic call: bounds the float32 copy to ~100 MB at 150x280


class DatasetError(UserError, ValueError):
    """A source file is not as expected (corrupt, missing rows, wrong width...); the message names it."""


class SourceNotFound(UserError, FileNotFoundError):
    """The raw gameplay a dataset is ingested from (folder, files, action table) is not where the config says."""


class DatasetNotIngested(UserError, FileNotFoundError):
    """A run or play asks for a dataset that was never ingested; the message names the ingest command."""


# --------------------------------------------------------------------------------------------------
# actions
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActionSpec:
    """How actions are stored and embedded: ``kind`` in ACTION_KINDS, ``dim`` = number of discrete actions
    or the vector width (the denoiser's ``num_actions``)."""

    kind: str
    dim: int

    def __post_init__(self) -> None:
        if self.kind not in ACTION_KINDS:
            raise ValueError(f"action kind must be one of {', '.join(ACTION_KINDS)}, got {self.kind!r}")
        if int(self.dim) < 1:
            raise ValueError(f"action dim must be >= 1, got {self.dim}")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "dim": int(self.dim)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ActionSpec":
        return cls(str(d["kind"]), int(d["dim"]))

    def check(self, act: np.ndarray, where: str) -> np.ndarray:
        """Return ``act`` in its stored dtype, or raise DatasetError naming ``where`` and the first bad step."""
        a = np.asarray(act)
        if self.kind == "discrete":
            if a.ndim == 2 and a.shape[1] == 1:
                a = a[:, 0]
            if a.ndim != 1:
                raise DatasetError(f"{where}: discrete actions must be one id per step, got shape {a.shape}")
            if not np.issubdtype(a.dtype, np.integer):
                if not np.isfinite(a).all() or (a != np.round(a)).any():
                    bad = int(np.flatnonzero(~np.isfinite(a) | (a != np.round(a)))[0])
                    raise DatasetError(f"{where}: step {bad}: discrete action {float(a[bad])} is not an integer id")
            a = a.astype(np.int64)
            out = np.flatnonzero((a < 0) | (a >= self.dim))
            if out.size:
                raise DatasetError(f"{where}: step {int(out[0])}: action id {a[out[0]]} outside [0, {self.dim})")
            return a
        if a.ndim == 1 and self.dim == 1:
            a = a[:, None]  # one real-valued column: vectors of width 1
        if a.ndim != 2 or a.shape[1] != self.dim:
            width = a.shape[1] if a.ndim == 2 else "a scalar"
            raise DatasetError(f"{where}: actions have width {width}, expected {self.dim} ({self.kind})")
        a = a.astype(np.float32)
        bad = np.flatnonzero(~np.isfinite(a).all(axis=1))
        if bad.size:
            raise DatasetError(f"{where}: step {int(bad[0])}: non-finite action values")
        if self.kind == "multi_hot":
            bad = np.flatnonzero(~np.isin(a, (0.0, 1.0)).all(axis=1))
            if bad.size:
                raise DatasetError(f"{where}: step {int(bad[0])}: multi-hot action holds values other than 0 and 1")
        return a


def infer_action_kind(act: np.ndarray) -> str:
    """The kind the data suggests: one integer per step -> discrete; vectors of 0/1 -> multi_hot; else continuous."""
    a = np.asarray(act)
    if a.ndim == 1 or (a.ndim == 2 and a.shape[1] == 1 and np.issubdtype(a.dtype, np.integer)):
        return "discrete"
    if a.size and np.isin(a, (0, 1)).all():
        return "multi_hot"
    return "continuous"


# --------------------------------------------------------------------------------------------------
# frames
# --------------------------------------------------------------------------------------------------


def downscale(obs: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 (T, H, W, 3) -> uint8 (T, h, w, 3): antialiased bicubic (torchvision's tensor resize), clamped,
    rounded. The CS:GO frames the published model saw were made with this filter (torchvision resize on
    tensors); cv2's INTER_CUBIC does not antialias and aliases badly at a 5x downscale."""
    out = np.empty((obs.shape[0], *size, 3), dtype=np.uint8)
    for lo in range(0, obs.shape[0], _RESIZE_BATCH):
        x = torch.from_numpy(np.ascontiguousarray(obs[lo : lo + _RESIZE_BATCH])).permute(0, 3, 1, 2).float()
        y = F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True)
        out[lo : lo + _RESIZE_BATCH] = y.clamp_(0, 255).round_().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return out


def fit_box(src: tuple[int, int], dst: tuple[int, int]) -> tuple[int, int, int, int]:
    """For ``pad``: (h, w, top, left) of the largest ``src``-shaped box that fits in ``dst``, centred."""
    (sh, sw), (dh, dw) = src, dst
    scale = min(dh / sh, dw / sw)
    h, w = max(1, min(dh, round(sh * scale))), max(1, min(dw, round(sw * scale)))
    return h, w, (dh - h) // 2, (dw - w) // 2


def resize_frames(obs: np.ndarray, size: tuple[int, int], mode: str = "pad") -> np.ndarray:
    """uint8 (T, H, W, 3) -> uint8 (T, *size, 3); ``pad`` keeps the aspect ratio (black bars), ``stretch`` not."""
    if tuple(obs.shape[1:3]) == tuple(size):
        return obs
    if mode == "stretch":
        return downscale(obs, size)
    if mode != "pad":
        raise ValueError(f"resize must be 'pad' or 'stretch', got {mode!r}")
    h, w, top, left = fit_box(obs.shape[1:3], size)
    out = np.zeros((obs.shape[0], *size, 3), dtype=np.uint8)
    out[:, top : top + h, left : left + w] = downscale(obs, (h, w)) if (h, w) != obs.shape[1:3] else obs
    return out


# --------------------------------------------------------------------------------------------------
# sources
# --------------------------------------------------------------------------------------------------


@dataclass
class RawEpisode:
    """One episode as a source reads it: ``obs`` uint8 (T, H, W, 3) RGB, ``act`` (T,) or (T, A); ``rew``,
    ``end`` (termination), ``trunc`` optional (zeros when the source has none). ``name`` is the episode's
    name in the index and the test-split list."""

    name: str
    obs: np.ndarray
    act: np.ndarray
    rew: np.ndarray | None = None
    end: np.ndarray | None = None
    trunc: np.ndarray | None = None


@dataclass(frozen=True)
class Unit:
    """One file of a source: ingested (or rolled back) as a whole. ``episodes`` are the names of the episodes
    it holds, known before reading (the split is decided from them)."""

    file_id: str
    episodes: tuple[str, ...]
    where: str  # for messages: the path (and member / row range)
    # Found bad while listing (unreadable archive, bad table row...): the unit is never read; "raise" stops
    # before anything is written, "skip" records it as a bad file, and its episodes take no part in the split.
    error: str | None = None


class Source(Protocol):
    kind: str

    def units(self) -> list[Unit]: ...

    def action_spec(self) -> ActionSpec: ...

    def read(self, unit: Unit) -> list[RawEpisode]: ...

    def settings(self) -> dict[str, Any]:
        """Source options that change what is written (a resumed ingest must use the same ones)."""
        ...


# --------------------------------------------------------------------------------------------------
# index and paths
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetPaths:
    root: Path

    def store(self, resolution: str, split: str) -> Path:
        if resolution not in RESOLUTIONS or split not in SPLITS:
            raise ValueError(f"unknown store {resolution}/{split}")
        return self.root / resolution / split

    @property
    def index(self) -> Path:
        return self.root / INDEX_NAME


def load_index(root: str | Path, hint: str = "kedro run --pipelines=static_world_model_ingest") -> dict[str, Any]:
    """The ingest index of ``root``; raises a clear error when the dataset was never ingested.

    Indexes written before the static_world_model family (CS:GO only) read as multi-hot 51-dim actions
    with an upsampler."""
    path = DatasetPaths(Path(root)).index
    if not path.exists():
        raise DatasetNotIngested(f"{path} does not exist: ingest the dataset first ({hint})")
    try:
        index = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path} is not valid JSON: {exc}") from exc
    fmt = index.get("format")
    if fmt == LEGACY_CSGO_FORMAT:
        index.setdefault("action", {"kind": "multi_hot", "dim": 51})
        index.setdefault("source", {"kind": "csgo_hdf5"})
    elif fmt != INDEX_FORMAT:
        raise DatasetError(f"{path} is not a dataset ingest index (format {fmt!r})")
    return index


def dataset_action_spec(root: str | Path) -> ActionSpec:
    return ActionSpec.from_dict(load_index(root)["action"])


def choose_test_episodes(names: Sequence[str], test_names: set[str] | None, test_fraction: float | None) -> set[str]:
    """The test split: the listed names (an episode ``dir/file#k`` is listed by itself, by ``dir/file`` or by
    the bare file name), or
    ``round(fraction * n)`` episodes evenly spaced over the sorted names (at least one when fraction > 0
    and n >= 2), so the choice does not depend on the order files are read in."""
    if test_names is not None:
        def listed(n: str) -> bool:
            file = n.split("#", 1)[0]
            return any(c in test_names for c in (n, file, n.rsplit("/", 1)[-1], file.rsplit("/", 1)[-1]))

        return {n for n in names if listed(n)}
    if not test_fraction:
        return set()
    ordered = sorted(names)
    n = len(ordered)
    k = min(n - 1, max(1, round(test_fraction * n))) if n >= 2 else 0
    # positions (i + 0.5) * n / k: spread over the list, deterministic
    return {ordered[min(n - 1, int((i + 0.5) * n / k))] for i in range(k)}


MIN_TIME_SPLIT_FRAMES = 2  # each part of a time-split episode keeps at least one transition


def time_split_cut(num_frames: int, test_fraction: float) -> int | None:
    """Where a dataset of ONE episode (one video) is cut in time: frames ``[cut:]`` become the test episode and
    ``[:cut]`` the training one, so a single recording still gets a test split. The test part has
    ``round(test_fraction * T)`` frames, at least 2 (one transition), and the training part keeps at least 2;
    None (no split) when the episode is too short for that or the fraction is 0."""
    if not test_fraction or num_frames < 2 * MIN_TIME_SPLIT_FRAMES:
        return None
    k = min(num_frames - MIN_TIME_SPLIT_FRAMES, max(MIN_TIME_SPLIT_FRAMES, round(test_fraction * num_frames)))
    return num_frames - k


def time_split_names(name: str, cut: int, num_frames: int) -> tuple[str, str]:
    """The index names of the two parts of a time-split episode: ``<name>[:cut]`` (train), ``<name>[cut:]`` (test)."""
    return f"{name}[:{cut}]", f"{name}[{cut}:{num_frames}]"


# --------------------------------------------------------------------------------------------------
# the ingest
# --------------------------------------------------------------------------------------------------


@dataclass
class IngestSummary:
    ingested: int = 0  # units (files) added by this call
    skipped_existing: int = 0  # units already in the index
    bad_files: dict[str, str] = field(default_factory=dict)  # file id -> error (on_bad_file="skip")
    num_episodes: dict[str, int] = field(default_factory=dict)  # per split, after the call
    recovered: str | None = None  # the half-ingested unit that was rolled back and redone
    action: dict[str, Any] = field(default_factory=dict)


def check_steps(ep: RawEpisode, t: int, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rew float32, end uint8, trunc uint8) of ``ep`` as stored, or DatasetError naming ``where`` and the step.

    Every value is checked before it is cast, so that a termination of -1 or 0.5 or a reward that is not
    finite (in float32: 1e39 is not) is an error here, before any of the unit is written -- never a silent
    cast or a failure half-way through the writes."""
    rew = np.zeros(t, np.float32)
    if ep.rew is not None:
        raw = np.asarray(ep.rew)
        if raw.size != t:
            raise DatasetError(f"{where}: {raw.size} rewards for {t} frames")
        try:
            with np.errstate(over="ignore", invalid="ignore"):
                rew = raw.reshape(t).astype(np.float32)
        except (TypeError, ValueError):
            raise DatasetError(f"{where}: rewards are not numbers ({raw.dtype})") from None
        bad = np.flatnonzero(~np.isfinite(rew))
        if bad.size:
            i = int(bad[0])
            raise DatasetError(f"{where}: step {i}: reward {raw.reshape(t)[i].item()!r} is not a finite float32")
    flags = {}
    for name, value in (("terminated", ep.end), ("truncated", ep.trunc)):
        if value is None:
            flags[name] = np.zeros(t, np.uint8)
            continue
        raw = np.asarray(value)
        if raw.size != t:
            raise DatasetError(f"{where}: {raw.size} {name} values for {t} frames")
        raw = raw.reshape(t)
        try:
            ok = np.isin(raw.astype(np.float64), (0.0, 1.0))
        except (TypeError, ValueError):
            raise DatasetError(f"{where}: {name} values are not 0/1 ({raw.dtype})") from None
        bad = np.flatnonzero(~ok)
        if bad.size:
            i = int(bad[0])
            raise DatasetError(f"{where}: step {i}: {name} is {raw[i].item()!r}, expected 0 or 1")
        flags[name] = raw.astype(np.uint8)
    end, trunc = flags["terminated"], flags["truncated"]
    early = np.flatnonzero((end | trunc)[:-1])
    if early.size:
        raise DatasetError(f"{where}: step {int(early[0])} of {t}: terminated/truncated before the episode's last "
                           "step (an episode ends at its last step; split it into episodes)")
    return rew, end, trunc


def write_dataset(source: Source, out_dir: str | Path, *args: Any, **kwargs: Any) -> IngestSummary:
    """Ingest (or resume ingesting) every unit of ``source`` into ``out_dir`` (module docstring), as the
    folder's one writer: its lock (``utils.run_lock``) is taken before the index or a store is read or
    repaired, so a second ingest into the same folder fails at once naming the holder."""
    with FolderLock(Path(out_dir), "dataset"):
        return _write_dataset(source, out_dir, *args, **kwargs)


def _write_dataset(
    source: Source,
    out_dir: str | Path,
    frame_size: tuple[int, int],
    low_res_size: tuple[int, int] | None,
    *,
    resize: str = "pad",
    test_names: set[str] | None = None,
    test_fraction: float | None = None,
    on_bad_file: str = "raise",
    fsync: bool = True,
    progress: bool = True,
    extra_index: dict[str, Any] | None = None,
) -> IngestSummary:
    """Ingest (or resume ingesting) every unit of ``source`` into ``out_dir`` (module docstring)."""
    if on_bad_file not in ("raise", "skip"):
        raise ValueError(f"on_bad_file must be 'raise' or 'skip', got {on_bad_file!r}")
    frame_size = tuple(int(v) for v in frame_size)
    low_res_size = tuple(int(v) for v in low_res_size) if low_res_size is not None else None
    units = source.units()
    spec = source.action_spec()
    paths = DatasetPaths(Path(out_dir))
    if on_bad_file == "raise":  # a file found bad while listing stops the ingest before anything is written
        known = load_index(paths.root) if paths.index.exists() else {}
        done = set(known.get("units", [])) | set(known.get("bad_files", {}))
        bad = next((u for u in units if u.error is not None and u.file_id not in done), None)
        if bad is not None:
            raise DatasetError(bad.error)
    paths.root.mkdir(parents=True, exist_ok=True)
    settings = {
        "frame_size": list(frame_size),
        "low_res_size": list(low_res_size) if low_res_size is not None else None,
        "resize": resize,
        "action": spec.to_dict(),
        "source": {"kind": source.kind, **source.settings()},
    }

    if paths.index.exists():
        index = load_index(paths.root)
        for key, want in settings.items():
            have = index.get(key)
            if key == "source":  # the source folder may move; its kind and options may not
                have = {k: v for k, v in (have or {}).items() if k != "path"}
                want = {k: v for k, v in want.items() if k != "path"}
            if key == "resize" and have is None:
                continue  # legacy CS:GO index: frames were never resized
            if key == "source" and index.get("format") == LEGACY_CSGO_FORMAT:
                continue
            if have != want:
                raise DatasetError(f"{paths.index} was ingested with {key}={have}, now {want}: use another out_dir")
    else:
        index = {"format": INDEX_FORMAT, "version": 1, **settings, **(extra_index or {}),
                 "splits": {s: [] for s in SPLITS}, "units": [], "in_progress": None, "bad_files": {}}

    # full_res first, then low_res (the order chunks have always been written in)
    resolutions = ([("full_res", frame_size)] if low_res_size else []) + [("low_res", low_res_size or frame_size)]
    # repair=True: a chunk renamed into place before its manifest rewrite is re-manifested; *.tmp removed.
    stores = {
        (res, split): ReplayStore(paths.store(res, split), (*size, 3), repair=True, fsync=fsync)
        for res, size in resolutions
        for split in SPLITS
    }
    summary = IngestSummary(action=spec.to_dict())
    # Reconcile: the index is the commit record; drop whatever a killed call wrote beyond it.
    for (res, split), store in stores.items():
        n = len(index["splits"][split])
        if store.num_episodes < n:
            raise DatasetError(
                f"{store.root} holds {store.num_episodes} episodes but {paths.index} lists {n}: episodes are missing "
                "and cannot be recovered from the index; re-ingest into a new out_dir"
            )
        if store.num_episodes > n:
            store.rollback(n)  # epoch tag = episode id + 1, so this removes episode ids >= n
    if index["in_progress"] is not None:
        summary.recovered = index["in_progress"]["file_id"]
        log.warning("ingest: %s was half-ingested when the last call stopped; redoing it", summary.recovered)
        index["in_progress"] = None
        atomic_write_text(paths.index, json.dumps(index, indent=1))

    done_units = set(index.get("units", [])) | set(index["bad_files"])
    if index.get("format") == LEGACY_CSGO_FORMAT:
        # CS:GO: one episode per file, named by its file id
        done_units |= {fid for split in SPLITS for fid in index["splits"][split]}
    todo = [u for u in units if u.file_id not in done_units]
    summary.skipped_existing = len(units) - len(todo)
    all_names = [e for u in units if u.error is None for e in u.episodes]  # a bad file is as if absent
    test_set = choose_test_episodes(all_names, test_names, test_fraction)
    # one episode in all (one video): no episode can be held out, so its last frames are (time_split_cut);
    # the two parts are separate episodes, so no training or test segment crosses the cut
    split_in_time = test_names is None and bool(test_fraction) and len(all_names) == 1
    for unit in tqdm(todo, desc=f"{source.kind} ingest", unit="file", disable=True if not progress or not todo else None):  # None: no bar when stderr is not a terminal
        try:
            if unit.error is not None:
                raise DatasetError(unit.error)
            episodes = source.read(unit)
            prepared = []
            for ep in episodes:
                where = f"{unit.where} (episode {ep.name})" if len(episodes) > 1 else unit.where
                t = len(ep.obs)
                if ep.obs.ndim != 4 or ep.obs.shape[-1] != 3 or ep.obs.dtype != np.uint8 or t < 1:
                    raise DatasetError(f"{where}: frames must be uint8 (T>=1, H, W, 3), got {ep.obs.dtype} {ep.obs.shape}")
                act = spec.check(ep.act, where)
                if len(act) != t:
                    raise DatasetError(f"{where}: {len(act)} actions for {t} frames")
                prepared.append((ep, act, *check_steps(ep, t, where)))
        except DatasetError as exc:
            if on_bad_file == "raise":
                raise
            log.warning("skipping %s", exc)
            index["bad_files"][unit.file_id] = str(exc)
            summary.bad_files[unit.file_id] = str(exc)
            atomic_write_text(paths.index, json.dumps(index, indent=1))
            continue
        index["in_progress"] = {"file_id": unit.file_id}
        atomic_write_text(paths.index, json.dumps(index, indent=1))
        for ep, act, rew, end, trunc in prepared:  # rew/end/trunc already checked (check_steps)
            t = len(ep.obs)
            full = resize_frames(ep.obs, frame_size, resize)
            frames = {"full_res": full, "low_res": downscale(full, low_res_size) if low_res_size else full}
            parts = [("test" if ep.name in test_set else "train", ep.name, slice(0, t))]
            cut = time_split_cut(t, test_fraction or 0.0) if split_in_time else None
            if cut is not None:
                train_name, test_name = time_split_names(ep.name, cut, t)
                parts = [("train", train_name, slice(0, cut)), ("test", test_name, slice(cut, t))]
                trunc = trunc.copy()
                trunc[cut - 1] = max(trunc[cut - 1], 1 - end[cut - 1])  # the training part is cut, not ended
                log.info("%s is the only episode: frames [%d:%d] are its test episode", ep.name, cut, t)
            for split, name, sl in parts:
                eid = len(index["splits"][split])
                for res, _ in resolutions:
                    chunk = EpisodeChunk(obs=frames[res][sl], act=act[sl], rew=rew[sl], end=end[sl], trunc=trunc[sl])
                    got = stores[(res, split)].add_chunk(chunk, None, epoch=eid + 1)
                    assert got == eid, (res, split, got, eid)
                index["splits"][split].append(name)
        if index.get("format") != LEGACY_CSGO_FORMAT:
            index.setdefault("units", []).append(unit.file_id)
        index["in_progress"] = None
        atomic_write_text(paths.index, json.dumps(index, indent=1))
        summary.ingested += 1
    summary.num_episodes = {s: len(index["splits"][s]) for s in SPLITS}
    if not index["splits"]["test"]:
        log.warning("%s has no test episodes: evaluation (test losses, imagination video, fidelity) will be skipped; "
                    "set dataset.test_fraction > 0 or dataset.test_split_file and ingest into a new out_dir", paths.root)
    log.info("%s ingest: %d new files, %d already there, episodes %s", source.kind, summary.ingested,
             summary.skipped_existing, summary.num_episodes)
    return summary

