"""Ingest the static CS:GO dataset (spec §7.1) into our replay format, one HDF5 file at a time.

Input, as published (``dataset_dm_scraped_dust2``): ``.tar`` archives ``hdf5_dm_july2021_<a>_to_<b>.tar``
of HDF5 files ``hdf5_dm_july2021_<n>.hdf5`` -- or a folder of already extracted HDF5 files. Each file is one
episode of 1000 frames: ``frame_<i>_x`` 150x280x3 uint8 **BGR**, ``frame_<i>_y`` the 51-dim action (§7.2).
Tar members are read in place (``tarfile.extractfile`` is seekable for plain tars and h5py reads file
objects), so the 660 GB never need to be extracted nor held in memory: one file (126 MB of pixels) at a time.

Output (``out_dir``)::

    full_res/{train,test}/   ReplayStore, obs uint8 (1000, 150, 280, 3) RGB per episode
    low_res/{train,test}/    ReplayStore, obs uint8 (1000, 30, 56, 3) RGB, same episode ids
    index.json               episode id -> original file id ("<folder>/<file name>") per split, + bookkeeping

``act`` float32 (T, 51), ``rew`` 0, ``end`` 0, ``trunc`` 0. The split: a file whose *name* is listed in the
test-split file (the published 500 names by default) goes to ``test``, every other one to ``train``.
The replay store has no per-episode metadata, so the original file id lives in ``index.json`` (list
position = episode id), written atomically.

Low resolution: bicubic **with antialiasing** in torch (``F.interpolate(..., antialias=True)``) on the
0..255 values, then clamped and rounded to uint8. Why torch and not ``cv2.INTER_CUBIC``: the authors used
``torchvision.transforms.functional.resize(..., BICUBIC)`` on tensors, which *is* this call (antialias is on
by default for tensors in torchvision >= 0.17), so our 30x56 frames have the statistics of the frames the
published model was trained on; ``cv2.INTER_CUBIC`` does not antialias and aliases badly at a 5x downscale.
Unlike the authors (spec §12.19) we clamp before the uint8 conversion (bicubic overshoots 0..255).

Resumable: each file is committed by the ``index.json`` rewrite that follows its two chunk writes, and a
chunk's epoch tag is its episode id + 1. On restart, chunks beyond what the index lists (a file killed
half-way; ``in_progress`` names it) are rolled back and the file is ingested again; files already in the
index are skipped. A corrupt HDF5 file, a missing key or a wrong frame size raises :class:`CsgoDataError`
naming the file *before* anything of that file is written, so nothing already ingested is touched.
"""

from __future__ import annotations

import json
import logging
import re
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import IO, Any

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from diamond_kedro.csgo.actions import ACTION_DIM
from diamond_kedro.replay.store import EpisodeChunk, ReplayStore
from diamond_kedro.utils.atomic import atomic_write_text

log = logging.getLogger(__name__)

PREFIX = "hdf5_dm_july2021_"
SPLITS = ("train", "test")
INDEX_NAME = "index.json"
INDEX_FORMAT = "diamond-kedro-csgo-index"
_RESIZE_BATCH = 200  # frames per bicubic call: bounds the float32 copy to ~100 MB


class CsgoDataError(ValueError):
    """The published data is not as expected (corrupt file, missing key, wrong size...); names the file."""


# --------------------------------------------------------------------------------------------------
# paths
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CsgoDataPaths:
    root: Path

    def store(self, resolution: str, split: str) -> Path:
        if resolution not in ("low_res", "full_res") or split not in SPLITS:
            raise ValueError(f"unknown store {resolution}/{split}")
        return self.root / resolution / split

    @property
    def index(self) -> Path:
        return self.root / INDEX_NAME


def load_index(root: str | Path) -> dict[str, Any]:
    """The ingest index of ``root`` (raises a clear error when the dataset was never ingested)."""
    path = CsgoDataPaths(Path(root)).index
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: ingest the CS:GO dataset first (kedro run --pipeline=csgo_ingest)")
    try:
        index = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CsgoDataError(f"{path} is not valid JSON: {exc}") from exc
    if index.get("format") != INDEX_FORMAT:
        raise CsgoDataError(f"{path} is not a CS:GO ingest index (format {index.get('format')!r})")
    return index


def episode_file_ids(root: str | Path, split: str) -> list[str]:
    """Original file id ("<folder>/<file name>") of each episode id of a split."""
    return list(load_index(root)["splits"][split])


# --------------------------------------------------------------------------------------------------
# sources: a folder of tars and/or HDF5 files
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """One HDF5 file of the dataset, inside a tar archive or on its own."""

    file_id: str  # "<folder>/<file name>", the authors' original_file_id
    name: str  # the file name, what the test split lists
    path: Path  # the HDF5 file, or the tar archive holding it
    member: str | None = None  # the member name inside the tar

    @property
    def where(self) -> str:
        return f"{self.path}:{self.member}" if self.member else str(self.path)


def _file_number(name: str) -> int:
    m = re.search(r"_(\d+)\.hdf5$", name)
    if m is None:
        raise CsgoDataError(f"HDF5 file name {name!r} does not end in _<number>.hdf5 (expected {PREFIX}<n>.hdf5)")
    return int(m.group(1))


def tar_folder_name(tar_path: Path) -> str:
    """The authors' folder for a tar: its stem after the prefix with ``_to_`` -> ``-`` (e.g. ``1-200``)."""
    stem = tar_path.name.removesuffix(".tar")
    return "-".join(stem[len(PREFIX) :].split("_to_")) if stem.startswith(PREFIX) else stem


def find_sources(source_dir: str | Path) -> list[Source]:
    """Every HDF5 file under ``source_dir`` (``*.tar`` archives are listed, not extracted), sorted by the
    number at the end of the file name as the authors' dataset does."""
    root = Path(source_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"CS:GO source folder {root} does not exist (csgo.data.source_dir)")
    sources: list[Source] = []
    for tar_path in sorted(root.rglob("*.tar")):
        folder = tar_folder_name(tar_path)
        try:
            with tarfile.open(tar_path, "r:") as tf:
                members = [m for m in tf.getmembers() if m.isfile() and m.name.endswith(".hdf5")]
        except (tarfile.TarError, OSError) as exc:
            raise CsgoDataError(f"cannot read tar archive {tar_path}: {exc}") from exc
        for m in members:
            name = Path(m.name).name
            sources.append(Source(f"{folder}/{name}", name, tar_path, m.name))
    for path in sorted(root.rglob("*.hdf5")):
        sources.append(Source(f"{path.parent.name}/{path.name}", path.name, path))
    seen: dict[str, Source] = {}
    for s in sources:
        if s.file_id in seen:
            raise CsgoDataError(f"file id {s.file_id} appears twice: {seen[s.file_id].where} and {s.where}")
        seen[s.file_id] = s
    return sorted(sources, key=lambda s: (_file_number(s.name), s.file_id))


def load_test_split(path: str | Path | None) -> set[str]:
    """File names of the test split (one per line; ``#`` comments). ``None`` = the published 500-file list."""
    if path is None:
        text = resources.files("diamond_kedro.csgo").joinpath("test_split.txt").read_text()
    else:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(
                f"CS:GO test-split list {p} does not exist (csgo.data.test_split_file); it lists one HDF5 file "
                "name per line, e.g. hdf5_dm_july2021_3.hdf5; set it to null for the published 500-file split"
            )
        text = p.read_text()
    names = {line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")}
    return {Path(n).name for n in names}


@contextmanager
def _open_source(source: Source) -> Iterator[IO[bytes] | Path]:
    if source.member is None:
        yield source.path
        return
    with tarfile.open(source.path, "r:") as tf:
        f = tf.extractfile(source.member)
        if f is None:
            raise CsgoDataError(f"{source.where}: not a regular file in the archive")
        with f:
            yield f


# --------------------------------------------------------------------------------------------------
# reading one file
# --------------------------------------------------------------------------------------------------


def read_episode(
    source: Source, frames_per_file: int = 1000, frame_size: tuple[int, int] = (150, 280)
) -> tuple[np.ndarray, np.ndarray]:
    """(obs uint8 (T, H, W, 3) **RGB**, act float32 (T, 51)) of one HDF5 file, fully validated.

    Raises CsgoDataError naming the file for an unreadable file, a missing ``frame_<i>_x/y`` key, a frame
    count other than ``frames_per_file``, a frame of the wrong shape/dtype, or a non-finite action.
    """
    h, w = frame_size
    try:
        with _open_source(source) as src:
            with h5py.File(src, "r") as f:
                keys = set(f.keys())
                n_x = sum(1 for k in keys if re.fullmatch(r"frame_\d+_x", k))
                obs = np.empty((frames_per_file, h, w, 3), dtype=np.uint8)
                act = np.empty((frames_per_file, ACTION_DIM), dtype=np.float32)
                for i in range(frames_per_file):
                    kx, ky = f"frame_{i}_x", f"frame_{i}_y"
                    for k in (kx, ky):
                        if k not in keys:
                            raise CsgoDataError(
                                f"{source.where}: missing key {k!r} (the file has {n_x} frames, expected {frames_per_file})"
                            )
                    x = f[kx]
                    if x.shape != (h, w, 3) or x.dtype != np.uint8:
                        raise CsgoDataError(
                            f"{source.where}: {kx} has shape {x.shape} and dtype {x.dtype}, expected ({h}, {w}, 3) uint8"
                        )
                    obs[i] = x[()][..., ::-1]  # BGR -> RGB
                    y = np.asarray(f[ky][()], dtype=np.float32).reshape(-1)
                    if y.shape != (ACTION_DIM,):
                        raise CsgoDataError(f"{source.where}: {ky} has {y.size} values, expected {ACTION_DIM}")
                    if not np.isfinite(y).all():
                        raise CsgoDataError(f"{source.where}: {ky} holds non-finite values")
                    act[i] = y
                if n_x != frames_per_file:
                    raise CsgoDataError(f"{source.where}: has {n_x} frames, expected exactly {frames_per_file}")
    except CsgoDataError:
        raise
    except (OSError, KeyError, ValueError, TypeError, tarfile.TarError) as exc:  # h5py reports corruption as OSError
        raise CsgoDataError(f"{source.where}: unreadable or corrupt HDF5 file: {exc}") from exc
    return obs, act


def downscale(obs: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 (T, H, W, 3) -> uint8 (T, h, w, 3): antialiased bicubic (torchvision's tensor resize), clamped,
    rounded. See the module docstring for why this and not cv2."""
    out = np.empty((obs.shape[0], *size, 3), dtype=np.uint8)
    for lo in range(0, obs.shape[0], _RESIZE_BATCH):
        x = torch.from_numpy(np.ascontiguousarray(obs[lo : lo + _RESIZE_BATCH])).permute(0, 3, 1, 2).float()
        y = F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True)
        out[lo : lo + _RESIZE_BATCH] = y.clamp_(0, 255).round_().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return out


# --------------------------------------------------------------------------------------------------
# the ingest
# --------------------------------------------------------------------------------------------------


@dataclass
class IngestSummary:
    ingested: int = 0  # files added by this call
    skipped_existing: int = 0  # files already in the index
    bad_files: dict[str, str] = field(default_factory=dict)  # file id -> error (on_bad_file="skip")
    num_episodes: dict[str, int] = field(default_factory=dict)  # per split, after the call
    recovered: str | None = None  # the half-ingested file that was rolled back and redone


def _new_index(frames_per_file: int, frame_size: tuple[int, int], low_res_size: tuple[int, int]) -> dict[str, Any]:
    return {
        "format": INDEX_FORMAT,
        "version": 1,
        "frames_per_file": frames_per_file,
        "frame_size": list(frame_size),
        "low_res_size": list(low_res_size),
        "splits": {s: [] for s in SPLITS},
        "in_progress": None,
        "bad_files": {},
    }


def ingest(
    source_dir: str | Path,
    out_dir: str | Path,
    test_split_file: str | Path | None = None,
    frames_per_file: int = 1000,
    frame_size: tuple[int, int] = (150, 280),
    low_res_size: tuple[int, int] = (30, 56),
    on_bad_file: str = "raise",
    fsync: bool = True,
    progress: bool = True,
) -> IngestSummary:
    """Ingest (or resume ingesting) every HDF5 file of ``source_dir`` into ``out_dir`` (module docstring)."""
    if on_bad_file not in ("raise", "skip"):
        raise ValueError(f"on_bad_file must be 'raise' or 'skip', got {on_bad_file!r}")
    frame_size, low_res_size = tuple(frame_size), tuple(low_res_size)
    test_names = load_test_split(test_split_file)
    sources = find_sources(source_dir)
    paths = CsgoDataPaths(Path(out_dir))
    paths.root.mkdir(parents=True, exist_ok=True)

    if paths.index.exists():
        index = load_index(paths.root)
        for key, want in (("frames_per_file", frames_per_file), ("frame_size", list(frame_size)),
                          ("low_res_size", list(low_res_size))):
            if index[key] != want:
                raise CsgoDataError(f"{paths.index} was ingested with {key}={index[key]}, now {want}: use another out_dir")
    else:
        index = _new_index(frames_per_file, frame_size, low_res_size)

    # repair=True: a chunk renamed into place before its manifest rewrite is re-manifested; *.tmp removed.
    stores = {
        (res, split): ReplayStore(paths.store(res, split), (*size, 3), repair=True, fsync=fsync)
        for res, size in (("full_res", frame_size), ("low_res", low_res_size))
        for split in SPLITS
    }
    summary = IngestSummary()
    # Reconcile: the index is the commit record; drop whatever a killed call wrote beyond it.
    for (res, split), store in stores.items():
        n = len(index["splits"][split])
        if store.num_episodes < n:
            raise CsgoDataError(
                f"{store.root} holds {store.num_episodes} episodes but {paths.index} lists {n}: episodes are missing "
                "and cannot be recovered from the index; re-ingest into a new out_dir"
            )
        if store.num_episodes > n:
            store.rollback(n)  # epoch tag = episode id + 1, so this removes episode ids >= n
    if index["in_progress"] is not None:
        summary.recovered = index["in_progress"]["file_id"]
        log.warning("CS:GO ingest: %s was half-ingested when the last call stopped; redoing it", summary.recovered)
        index["in_progress"] = None
        atomic_write_text(paths.index, json.dumps(index, indent=1))

    done = {fid for split in SPLITS for fid in index["splits"][split]} | set(index["bad_files"])
    todo = [s for s in sources if s.file_id not in done]
    summary.skipped_existing = len(sources) - len(todo)
    for source in tqdm(todo, desc="CS:GO ingest", unit="file", disable=not progress or not todo):
        try:
            obs, act = read_episode(source, frames_per_file, frame_size)
        except CsgoDataError as exc:
            if on_bad_file == "raise":
                raise
            log.error("skipping %s", exc)
            index["bad_files"][source.file_id] = str(exc)
            summary.bad_files[source.file_id] = str(exc)
            atomic_write_text(paths.index, json.dumps(index, indent=1))
            continue
        low = downscale(obs, low_res_size)
        split = "test" if source.name in test_names else "train"
        eid = len(index["splits"][split])
        index["in_progress"] = {"file_id": source.file_id, "split": split, "episode_id": eid}
        atomic_write_text(paths.index, json.dumps(index, indent=1))
        zeros_f, zeros_u8 = np.zeros(frames_per_file, np.float32), np.zeros(frames_per_file, np.uint8)
        for res, frames in (("full_res", obs), ("low_res", low)):
            chunk = EpisodeChunk(obs=frames, act=act, rew=zeros_f, end=zeros_u8, trunc=zeros_u8)
            got = stores[(res, split)].add_chunk(chunk, None, epoch=eid + 1)
            assert got == eid, (res, split, got, eid)
        index["splits"][split].append(source.file_id)
        index["in_progress"] = None
        atomic_write_text(paths.index, json.dumps(index, indent=1))
        summary.ingested += 1
    summary.num_episodes = {s: len(index["splits"][s]) for s in SPLITS}
    log.info("CS:GO ingest: %d new files, %d already there, episodes %s", summary.ingested, summary.skipped_existing,
             summary.num_episodes)
    return summary
