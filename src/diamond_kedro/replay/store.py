"""Append-only, memory-mapped replay store of episodes (spec §1.5, re-designed on Arrow).

The authors keep one ``torch.save`` file per episode and *rewrite* it each time the in-progress
episode grows. Here an episode is a sequence of immutable **chunks**; the collector's in-progress
episode continues in the next epoch by appending a new chunk, so existing files are never
rewritten (cheap for DVC, safe against crashes).

On-disk layout of one store (``root`` is e.g. ``data/<game>/<seed>/train``)::

    root/manifest.json                          # derived summary, rebuildable from the files
    root/episodes/000000/chunk_0000.arrow       # Arrow IPC file, one record batch, uncompressed
    root/episodes/000000/chunk_0001.arrow       # ... continuation of episode 0 (next epoch)
    root/episodes/000001/chunk_0000.arrow

Each chunk file has columns ``obs`` (fixed_size_list<uint8>[H*W*C], one frame per row, HWC RGB),
``act`` (int64, or fixed_size_list<float32|uint8>[A] multi-hot), ``rew`` float32, ``end`` uint8,
``trunc`` uint8; its schema metadata holds the episode id, chunk index, epoch tag, shapes, and the
raw bytes of the final observation (only for a chunk that ends its episode). Files are opened
with ``pyarrow.memory_map`` and exposed as zero-copy, read-only numpy views, so opening a
100k-step store costs one footer read per file, not a read of the pixels.

Atomicity: every file is written to ``<name>.tmp``, fsynced, then ``os.replace``d into place (and
the directory fsynced). The chunk is written before the manifest, so a crash can leave (a) a stray
``*.tmp`` file -- always ignored -- or (b) a chunk the manifest does not list. Opening checks the
manifest against the files and raises :class:`ManifestMismatchError` naming the files; opening
with ``repair=True`` (or :meth:`ReplayStore.rebuild_manifest`) rebuilds it from the files. Data is
never deleted silently: an unreadable newest chunk is only *renamed* to ``*.corrupt`` on repair.

Single writer: one :class:`ReplayStore` object per folder mutates it; another object sees the
changes after :meth:`ReplayStore.refresh`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa

from diamond_kedro.errors import UserError
from diamond_kedro.utils.atomic import atomic_write, durable_replace, fsync_dir

MANIFEST_NAME = "manifest.json"
EPISODES_DIR = "episodes"
TMP_SUFFIX = ".tmp"  # DVC / git should ignore "*.tmp"
CORRUPT_SUFFIX = ".corrupt"  # quarantined chunk files (kept, never deleted by the store)
FORMAT_NAME = "diamond-kedro-replay"
FORMAT_VERSION = 1
_META_KEY = b"diamond_kedro.replay"
_FINAL_OBS_KEY = b"diamond_kedro.final_obs"
_EPISODE_DIR_RE = re.compile(r"^\d{6}$")
_CHUNK_FILE_RE = re.compile(r"^chunk_(\d{4})\.arrow$")
_MULTI_HOT_DTYPES = (np.dtype(np.float32), np.dtype(np.uint8))


class ReplayStoreError(UserError, ValueError):
    """Base class of the store's errors (a ValueError: it is always about bad input/data)."""


class CorruptChunkError(ReplayStoreError):
    """A chunk file cannot be read (truncated, not Arrow, wrong schema or metadata)."""


class ManifestMismatchError(ReplayStoreError):
    """``manifest.json`` disagrees with the chunk files on disk."""


# --------------------------------------------------------------------------------------------
# In-memory records
# --------------------------------------------------------------------------------------------


def _check_array(name: str, value: Any, dtype: np.dtype | tuple[np.dtype, ...], ndim: int) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise ValueError(f"EpisodeChunk.{name} must be a numpy array, got {type(value).__name__}")
    allowed = dtype if isinstance(dtype, tuple) else (dtype,)
    if value.dtype not in allowed:
        want = " or ".join(str(d) for d in allowed)
        raise ValueError(f"EpisodeChunk.{name} has dtype {value.dtype}, expected {want}")
    if value.ndim != ndim:
        raise ValueError(f"EpisodeChunk.{name} has shape {value.shape} ({value.ndim}-D), expected {ndim}-D")
    return value


@dataclass
class _Steps:
    """T consecutive steps (numpy, spec §0.2 indexing): obs[t] is the frame on which act[t] was taken;
    rew/end/trunc[t] are its consequences."""

    obs: np.ndarray  # uint8 (T, H, W, C)
    act: np.ndarray  # int64 (T,)  or  float32/uint8 (T, A) multi-hot
    rew: np.ndarray  # float32 (T,)
    end: np.ndarray  # uint8 (T,)
    trunc: np.ndarray  # uint8 (T,)

    @property
    def length(self) -> int:
        return int(self.obs.shape[0])

    @property
    def dead(self) -> bool:
        """Whether the last step ends the episode (end OR trunc)."""
        return bool(self.end[-1] or self.trunc[-1])


@dataclass
class EpisodeChunk(_Steps):
    """Steps of one episode as written by the collector. ``final_obs`` is the frame that followed the last
    step when that step ended the episode (end or trunc); it is only allowed then."""

    final_obs: np.ndarray | None = None  # uint8 (H, W, C)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        obs = _check_array("obs", self.obs, np.dtype(np.uint8), 4)
        if self.act.ndim == 1:
            _check_array("act", self.act, np.dtype(np.int64), 1)
        else:
            _check_array("act", self.act, _MULTI_HOT_DTYPES, 2)
        _check_array("rew", self.rew, np.dtype(np.float32), 1)
        _check_array("end", self.end, np.dtype(np.uint8), 1)
        _check_array("trunc", self.trunc, np.dtype(np.uint8), 1)
        t = obs.shape[0]
        if t == 0:
            raise ValueError("EpisodeChunk.obs is empty: a chunk needs at least one step")
        if min(obs.shape[1:]) == 0:
            raise ValueError(f"EpisodeChunk.obs has an empty frame shape {obs.shape[1:]}")
        for name in ("act", "rew", "end", "trunc"):
            n = getattr(self, name).shape[0]
            if n != t:
                raise ValueError(f"EpisodeChunk.{name} has {n} steps but obs has {t}")
        if not np.all(np.isfinite(self.rew)):
            bad = int(np.flatnonzero(~np.isfinite(self.rew))[0])
            raise ValueError(f"EpisodeChunk.rew[{bad}] = {self.rew[bad]} is not finite")
        for name in ("end", "trunc"):
            v = getattr(self, name)
            if v.max() > 1:
                raise ValueError(f"EpisodeChunk.{name} must hold 0/1, found value {int(v.max())}")
        dead = (self.end | self.trunc)[:-1]
        if dead.any():
            bad = int(np.flatnonzero(dead)[0])
            raise ValueError(
                f"EpisodeChunk has end/trunc at step {bad} of {t}: an episode can only end at its last step"
            )
        if self.final_obs is not None:
            _check_array("final_obs", self.final_obs, np.dtype(np.uint8), 3)
            if self.final_obs.shape != obs.shape[1:]:
                raise ValueError(
                    f"EpisodeChunk.final_obs has shape {self.final_obs.shape}, expected {obs.shape[1:]}"
                )
            if not self.dead:
                raise ValueError(
                    "EpisodeChunk.final_obs is only allowed when the chunk's last step has end or trunc"
                )


@dataclass
class Episode(_Steps):
    """A whole stored episode (read-only numpy arrays; zero-copy views for single-chunk episodes)."""

    final_obs: np.ndarray | None
    episode_id: int

    @property
    def finished(self) -> bool:
        return self.dead


@dataclass
class _Chunk:
    """One mapped chunk file: its manifest record plus the zero-copy arrays."""

    episode_id: int
    index: int
    epoch: int
    relpath: str
    obs: np.ndarray
    act: np.ndarray
    rew: np.ndarray
    end: np.ndarray
    trunc: np.ndarray
    final_obs: np.ndarray | None
    # summaries (spec §1.5 counters): sign(rew) counts for -1/0/+1, number of end==1, raw return
    rew_counts: tuple[int, int, int] = field(init=False)
    end_count: int = field(init=False)
    ret: float = field(init=False)

    def __post_init__(self) -> None:
        sign = np.sign(self.rew)
        self.rew_counts = (int((sign < 0).sum()), int((sign == 0).sum()), int((sign > 0).sum()))
        self.end_count = int(self.end.sum())
        self.ret = float(self.rew.sum(dtype=np.float64))

    @property
    def length(self) -> int:
        return int(self.obs.shape[0])

    @property
    def dead(self) -> bool:
        return bool(self.end[-1] or self.trunc[-1])

    def record(self) -> dict[str, Any]:
        return {
            "file": self.relpath,
            "length": self.length,
            "epoch": self.epoch,
            "dead": self.dead,
            "has_final_obs": self.final_obs is not None,
            "rew_counts": list(self.rew_counts),
            "end_count": self.end_count,
            "return": self.ret,
        }


# --------------------------------------------------------------------------------------------
# File helpers
# --------------------------------------------------------------------------------------------


def _chunk_relpath(episode_id: int, index: int) -> str:
    return f"{EPISODES_DIR}/{episode_id:06d}/chunk_{index:04d}.arrow"


def _act_spec(act: np.ndarray) -> tuple[str, tuple[int, ...]]:
    return str(act.dtype), tuple(int(d) for d in act.shape[1:])


def _write_chunk(path: Path, chunk: EpisodeChunk, episode_id: int, index: int, epoch: int, fsync: bool) -> None:
    t = chunk.length
    frame = int(np.prod(chunk.obs.shape[1:]))
    obs = pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(chunk.obs).reshape(-1)), frame)
    if chunk.act.ndim == 1:
        act = pa.array(np.ascontiguousarray(chunk.act))
    else:
        act = pa.FixedSizeListArray.from_arrays(
            pa.array(np.ascontiguousarray(chunk.act).reshape(-1)), chunk.act.shape[1]
        )
    act_dtype, act_shape = _act_spec(chunk.act)
    meta = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "episode_id": episode_id,
        "chunk_index": index,
        "epoch": epoch,
        "length": t,
        "obs_shape": list(chunk.obs.shape[1:]),
        "act_dtype": act_dtype,
        "act_shape": list(act_shape),
        "has_final_obs": chunk.final_obs is not None,
    }
    metadata = {_META_KEY: json.dumps(meta).encode()}
    if chunk.final_obs is not None:
        metadata[_FINAL_OBS_KEY] = np.ascontiguousarray(chunk.final_obs).tobytes()
    batch = pa.record_batch(
        {
            "obs": obs,
            "act": act,
            "rew": pa.array(chunk.rew),
            "end": pa.array(chunk.end),
            "trunc": pa.array(chunk.trunc),
        }
    )
    schema = batch.schema.with_metadata(metadata)

    def write(f: Any) -> None:
        with pa.ipc.new_file(f, schema) as writer:  # uncompressed: memory-mappable, zero-copy
            writer.write_batch(batch.replace_schema_metadata(metadata))

    atomic_write(path, write, fsync=fsync, tmp=path.with_name(path.name + TMP_SUFFIX))


def _column_numpy(col: pa.Array, dtype: np.dtype, inner_shape: tuple[int, ...]) -> np.ndarray:
    if inner_shape:
        values = col.flatten()  # respects the array offset of a FixedSizeList
        arr = values.to_numpy(zero_copy_only=True)
        return arr.reshape((len(col), *inner_shape))
    return col.to_numpy(zero_copy_only=True)


def _read_chunk(root: Path, relpath: str) -> _Chunk:
    """Map one chunk file; any problem -> CorruptChunkError naming the file."""
    path = root / relpath
    try:
        mm = pa.memory_map(str(path), "r")
        try:
            reader = pa.ipc.open_file(mm)
            if reader.num_record_batches != 1:
                raise ValueError(f"expected 1 record batch, found {reader.num_record_batches}")
            batch = reader.get_batch(0)
            metadata = reader.schema.metadata or {}
        finally:
            mm.close()  # the buffers keep the mapping alive; the file descriptor is released
        if _META_KEY not in metadata:
            raise ValueError("missing diamond_kedro.replay schema metadata")
        meta = json.loads(metadata[_META_KEY])
        if meta.get("format") != FORMAT_NAME or meta.get("version") != FORMAT_VERSION:
            raise ValueError(f"unknown format {meta.get('format')!r} version {meta.get('version')!r}")
        obs_shape = tuple(int(d) for d in meta["obs_shape"])
        act_shape = tuple(int(d) for d in meta["act_shape"])
        act_dtype = np.dtype(meta["act_dtype"])
        n = batch.num_rows
        if n != meta["length"] or n == 0:
            raise ValueError(f"has {n} rows, metadata says {meta['length']}")
        obs = _column_numpy(batch.column("obs"), np.dtype(np.uint8), obs_shape)
        act = _column_numpy(batch.column("act"), act_dtype, act_shape)
        rew = batch.column("rew").to_numpy(zero_copy_only=True)
        end = batch.column("end").to_numpy(zero_copy_only=True)
        trunc = batch.column("trunc").to_numpy(zero_copy_only=True)
        for name, arr, want in (
            ("obs", obs, np.uint8),
            ("act", act, act_dtype),
            ("rew", rew, np.float32),
            ("end", end, np.uint8),
            ("trunc", trunc, np.uint8),
        ):
            if arr.dtype != np.dtype(want):
                raise ValueError(f"column {name} has dtype {arr.dtype}, expected {np.dtype(want)}")
        final_obs = None
        if meta["has_final_obs"]:
            raw = metadata.get(_FINAL_OBS_KEY)
            if raw is None or len(raw) != int(np.prod(obs_shape)):
                raise ValueError("final observation bytes missing or of the wrong size")
            final_obs = np.frombuffer(raw, dtype=np.uint8).reshape(obs_shape)
    except (pa.ArrowException, OSError, ValueError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise CorruptChunkError(f"replay chunk file {path} is unreadable or corrupt: {exc}") from exc
    expected_rel = _chunk_relpath(int(meta["episode_id"]), int(meta["chunk_index"]))
    if expected_rel != relpath:
        raise CorruptChunkError(
            f"replay chunk file {path} says it is episode {meta['episode_id']} chunk "
            f"{meta['chunk_index']} (expected at {expected_rel})"
        )
    return _Chunk(
        episode_id=int(meta["episode_id"]),
        index=int(meta["chunk_index"]),
        epoch=int(meta["epoch"]),
        relpath=relpath,
        obs=obs,
        act=act,
        rew=rew,
        end=end,
        trunc=trunc,
        final_obs=final_obs,
    )


def _list_chunk_files(root: Path) -> tuple[list[str], list[Path]]:
    """Chunk files (relative, sorted by (episode, chunk)) and leftover temp files under root."""
    chunks: list[tuple[int, int, str]] = []
    tmps: list[Path] = []
    for p in root.iterdir():
        if p.name.endswith(TMP_SUFFIX):
            tmps.append(p)
    ep_root = root / EPISODES_DIR
    if ep_root.is_dir():
        for ep_dir in ep_root.iterdir():
            if ep_dir.name.endswith(TMP_SUFFIX):
                tmps.append(ep_dir)
                continue
            if not ep_dir.is_dir() or not _EPISODE_DIR_RE.match(ep_dir.name):
                continue
            for f in ep_dir.iterdir():
                if f.name.endswith(TMP_SUFFIX):
                    tmps.append(f)
                    continue
                m = _CHUNK_FILE_RE.match(f.name)
                if m:  # *.corrupt and unknown files are left alone
                    eid, k = int(ep_dir.name), int(m.group(1))
                    chunks.append((eid, k, _chunk_relpath(eid, k)))
    chunks.sort()
    return [c[2] for c in chunks], tmps


# --------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------


class ReplayStore:
    """An append-only episode store in one folder (see the module docstring for the layout).

    Args:
        root: the store folder; created (with an empty manifest) if it does not exist.
        obs_shape: expected (H, W, C); checked against the store, or fixed for an empty one.
        repair: if the manifest disagrees with the files, rebuild it from the files (and remove
            ``*.tmp`` leftovers, quarantine an unreadable *newest* chunk as ``*.corrupt``)
            instead of raising.
        create: create the folder if missing (otherwise FileNotFoundError).
        fsync: fsync files and folders on every write (durable across power loss; ~4 fsyncs per
            chunk). ``False`` keeps the tmp+rename atomicity against process crashes only.
        cache_bytes: bound on the concatenated copies of multi-chunk episodes that
            :meth:`load_episode` keeps (single-chunk episodes are zero-copy views, always kept).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        obs_shape: tuple[int, int, int] | None = None,
        *,
        repair: bool = False,
        create: bool = True,
        fsync: bool = True,
        cache_bytes: int = 256 * 2**20,
    ) -> None:
        self.root = Path(root)
        self.cache_bytes = int(cache_bytes)
        self._fsync = bool(fsync)
        self._defer_manifest = False
        self._expected_obs_shape = tuple(int(d) for d in obs_shape) if obs_shape is not None else None
        if not self.root.exists():
            if not create:
                raise FileNotFoundError(f"replay store folder {self.root} does not exist")
            self.root.mkdir(parents=True, exist_ok=True)  # another process may create it at the same moment
        elif not self.root.is_dir():
            raise ReplayStoreError(f"replay store path {self.root} is not a folder")
        self._load(repair=repair)

    # ---- opening / verification ------------------------------------------------------------

    def _reset_state(self) -> None:
        self._episodes: list[list[_Chunk]] = []
        # load_episode cache: zero-copy views of single-chunk episodes cost nothing and stay;
        # concatenated copies of multi-chunk episodes are kept LRU up to cache_bytes.
        self._cache: OrderedDict[int, Episode] = OrderedDict()
        self._cache_copied_bytes: dict[int, int] = {}
        self._chunk_starts: dict[int, np.ndarray] = {}
        self.obs_shape: tuple[int, ...] | None = None
        self.act_dtype: np.dtype | None = None
        self.act_shape: tuple[int, ...] | None = None
        self.version = 0  # bumped on every mutation (samplers cache on it)
        self._lengths_cache: tuple[int, np.ndarray] | None = None

    def _load(self, repair: bool) -> None:
        self._reset_state()
        manifest_path = self.root / MANIFEST_NAME
        relpaths, tmps = _list_chunk_files(self.root)
        if repair:
            for tmp in tmps:
                shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
        chunks = self._read_all(relpaths, repair=repair)
        self._install(chunks)
        if not manifest_path.exists():
            if chunks and not repair:
                raise ManifestMismatchError(
                    f"replay store {self.root} has {len(chunks)} chunk files but no {MANIFEST_NAME}; "
                    "open it with repair=True to rebuild the manifest from the files"
                )
            self._apply_expected_shape()
            self._write_manifest()
            return
        try:
            on_disk = json.loads(manifest_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            if not repair:
                raise ManifestMismatchError(
                    f"manifest {manifest_path} is unreadable ({exc}); open with repair=True to rebuild it"
                ) from exc
            on_disk = {}
        if not chunks and on_disk.get("obs_shape") is not None:
            # an empty (e.g. cleared) store remembers its frame and action format
            self.obs_shape = tuple(on_disk["obs_shape"])
            if on_disk.get("act_dtype") is not None:
                self.act_dtype = np.dtype(on_disk["act_dtype"])
                self.act_shape = tuple(on_disk["act_shape"])
        problems = self._compare_manifest(on_disk)
        if problems:
            if not repair:
                raise ManifestMismatchError(
                    f"manifest {manifest_path} is out of step with the chunk files: "
                    + "; ".join(problems[:5])
                    + (f"; ... ({len(problems)} problems)" if len(problems) > 5 else "")
                    + ". Open with repair=True (or call rebuild_manifest) to rebuild it from the files."
                )
            self._write_manifest()
        self._apply_expected_shape()

    def _apply_expected_shape(self) -> None:
        want = self._expected_obs_shape
        if want is None:
            return
        if self.obs_shape is None:
            self.obs_shape = want
            self._write_manifest()
        elif self.obs_shape != want:
            raise ReplayStoreError(
                f"replay store {self.root} holds observations of shape {self.obs_shape}, "
                f"but obs_shape={want} was requested"
            )

    def _read_all(self, relpaths: list[str], repair: bool) -> list[_Chunk]:
        chunks: list[_Chunk] = []
        for i, rel in enumerate(relpaths):
            try:
                chunks.append(_read_chunk(self.root, rel))
            except CorruptChunkError:
                newest = i == len(relpaths) - 1
                if repair and newest:
                    # A half-written newest chunk can only come from a crash mid-append: keep the
                    # bytes (renamed, ignored from now on) so nothing is lost silently.
                    src = self.root / rel
                    durable_replace(src, src.with_name(src.name + CORRUPT_SUFFIX), fsync=self._fsync)
                    continue
                if repair:
                    raise CorruptChunkError(
                        f"replay chunk file {self.root / rel} is corrupt and is not the newest chunk: "
                        "refusing to repair automatically (later data depends on it)"
                    ) from None
                raise
        self._check_structure(chunks)
        return chunks

    def _check_structure(self, chunks: list[_Chunk]) -> None:
        """Episode ids 0..N-1 and chunk indices 0..k-1 contiguous; only last chunks end episodes;
        epochs non-decreasing in write order; one frame/action format."""
        prev: _Chunk | None = None
        for c in chunks:
            path = self.root / c.relpath
            if prev is None or c.episode_id != prev.episode_id:
                want_ep = 0 if prev is None else prev.episode_id + 1
                if c.episode_id != want_ep or c.index != 0:
                    raise ReplayStoreError(
                        f"replay store {self.root}: chunk file {path} follows a gap "
                        f"(expected episode {want_ep} chunk 0); missing episode data cannot be repaired"
                    )
            else:
                if c.index != prev.index + 1:
                    raise ReplayStoreError(
                        f"replay store {self.root}: chunk file {path} follows a gap "
                        f"(expected chunk {prev.index + 1}); missing episode data cannot be repaired"
                    )
                if prev.dead:
                    raise ReplayStoreError(
                        f"replay store {self.root}: chunk file {path} continues episode {c.episode_id}, "
                        f"which already ended in {self.root / prev.relpath}"
                    )
            if prev is not None and c.epoch < prev.epoch:
                raise ReplayStoreError(
                    f"replay store {self.root}: chunk file {path} has epoch {c.epoch}, older than the "
                    f"previous chunk's epoch {prev.epoch}"
                )
            if prev is not None:
                if c.obs.shape[1:] != prev.obs.shape[1:]:
                    raise ReplayStoreError(
                        f"chunk file {path} has frames of shape {c.obs.shape[1:]}, the store has {prev.obs.shape[1:]}"
                    )
                if _act_spec(c.act) != _act_spec(prev.act):
                    raise ReplayStoreError(
                        f"chunk file {path} has actions {_act_spec(c.act)}, the store has {_act_spec(prev.act)}"
                    )
            prev = c

    def _install(self, chunks: list[_Chunk]) -> None:
        for c in chunks:
            if c.index == 0:
                self._episodes.append([])
            self._episodes[-1].append(c)
        if chunks:
            self.obs_shape = tuple(chunks[0].obs.shape[1:])
            self.act_dtype = chunks[0].act.dtype
            self.act_shape = tuple(chunks[0].act.shape[1:])

    def _compare_manifest(self, on_disk: dict[str, Any]) -> list[str]:
        want = self.manifest()
        problems: list[str] = []
        disk_eps = on_disk.get("episodes")
        if on_disk.get("format") != FORMAT_NAME or not isinstance(disk_eps, list):
            return [f"not a {FORMAT_NAME} manifest"]
        listed = {c["file"]: c for e in disk_eps for c in e.get("chunks", [])}
        present = {c["file"]: c for e in want["episodes"] for c in e["chunks"]}
        for rel in sorted(set(listed) - set(present)):
            problems.append(f"listed file {self.root / rel} is missing")
        for rel in sorted(set(present) - set(listed)):
            problems.append(f"file {self.root / rel} is not in the manifest")
        for rel in sorted(set(present) & set(listed)):
            if listed[rel] != present[rel]:
                problems.append(f"entry for {self.root / rel} differs from the file ({listed[rel]} vs {present[rel]})")
        if not problems:
            for key in ("num_episodes", "num_steps", "counter_rew", "counter_end", "episodes"):
                if on_disk.get(key) != want[key]:
                    problems.append(f"field {key!r} differs from the files")
        return problems

    def refresh(self) -> None:
        """Re-open from disk (picks up chunks written by another ReplayStore object)."""
        version = self.version
        self._load(repair=False)
        self.version = version + 1

    def rebuild_manifest(self) -> dict[str, Any]:
        """Rebuild ``manifest.json`` from the chunk files (the documented repair) and return it."""
        version = self.version
        self._load(repair=True)
        self._write_manifest()
        self.version = version + 1
        return self.manifest()

    # ---- manifest --------------------------------------------------------------------------

    def manifest(self) -> dict[str, Any]:
        """The summary written to ``manifest.json`` (derived from the mapped chunks)."""
        episodes = []
        for eid, chunks in enumerate(self._episodes):
            episodes.append(
                {
                    "id": eid,
                    "length": sum(c.length for c in chunks),
                    "num_chunks": len(chunks),
                    "finished": chunks[-1].dead,
                    "return": float(sum(c.ret for c in chunks)),
                    "chunks": [c.record() for c in chunks],
                }
            )
        rew = self.counter_rew
        end = self.counter_end
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "obs_shape": list(self.obs_shape) if self.obs_shape is not None else None,
            "act_dtype": str(self.act_dtype) if self.act_dtype is not None else None,
            "act_shape": list(self.act_shape) if self.act_shape is not None else None,
            "num_episodes": self.num_episodes,
            "num_steps": self.num_steps,
            "counter_rew": {str(k): rew[k] for k in (-1, 0, 1)},
            "counter_end": {str(k): end[k] for k in (0, 1)},
            "episodes": episodes,
        }

    def _write_manifest(self) -> None:
        if self._defer_manifest:
            return
        text = json.dumps(self.manifest())  # compact: the C encoder, O(size) per write
        path = self.root / MANIFEST_NAME
        atomic_write(path, lambda f: f.write(text.encode()), fsync=self._fsync, tmp=path.with_name(path.name + TMP_SUFFIX))

    # ---- summaries -------------------------------------------------------------------------

    @property
    def num_episodes(self) -> int:
        return len(self._episodes)

    @property
    def num_steps(self) -> int:
        return int(self.lengths.sum())

    @property
    def lengths(self) -> np.ndarray:
        """Episode lengths (int64, read-only; cached until the next mutation)."""
        cached = getattr(self, "_lengths_cache", None)
        if cached is None or cached[0] != self.version or len(cached[1]) != len(self._episodes):
            arr = np.array([sum(c.length for c in chunks) for chunks in self._episodes], dtype=np.int64)
            arr.flags.writeable = False
            cached = (self.version, arr)
            self._lengths_cache = cached
        return cached[1]

    @property
    def episode_ids(self) -> list[int]:
        return list(range(self.num_episodes))

    @property
    def counter_rew(self) -> Counter[int]:
        """Counts of sign(rew) over all stored steps, keys -1, 0, 1 (spec §1.5)."""
        counts = np.zeros(3, dtype=np.int64)
        for chunks in self._episodes:
            for c in chunks:
                counts += c.rew_counts
        return Counter({-1: int(counts[0]), 0: int(counts[1]), 1: int(counts[2])})

    @property
    def counter_end(self) -> Counter[int]:
        """Counts of end over all stored steps, keys 0, 1 (spec §1.5)."""
        ones = sum(c.end_count for chunks in self._episodes for c in chunks)
        return Counter({0: self.num_steps - ones, 1: ones})

    @property
    def max_epoch(self) -> int | None:
        return self._episodes[-1][-1].epoch if self._episodes else None

    def is_finished(self, episode_id: int) -> bool:
        return self._chunks_of(episode_id)[-1].dead

    def episode_return(self, episode_id: int) -> float:
        return float(sum(c.ret for c in self._chunks_of(episode_id)))

    def __len__(self) -> int:
        return self.num_episodes

    def __repr__(self) -> str:
        return f"ReplayStore({str(self.root)!r}, episodes={self.num_episodes}, steps={self.num_steps})"

    # ---- writing ---------------------------------------------------------------------------

    def add_chunk(self, chunk: EpisodeChunk, episode_id: int | None = None, epoch: int = 0) -> int:
        """Append ``chunk`` and return its episode id.

        ``episode_id=None`` (or ``== num_episodes``) starts a new episode. Otherwise it must be the
        last episode and that episode must still be open (its last chunk has neither end nor
        trunc): only the newest episode can grow, which keeps ids in chronological order and makes
        :meth:`rollback` a suffix deletion. ``epoch`` tags the chunk; it may not decrease.
        """
        if not isinstance(chunk, EpisodeChunk):
            raise TypeError(f"add_chunk expects an EpisodeChunk, got {type(chunk).__name__}")
        chunk.validate()  # the arrays may have been mutated since construction
        epoch = int(epoch)
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        if self.max_epoch is not None and epoch < self.max_epoch:
            raise ValueError(f"epoch {epoch} is older than the store's newest chunk (epoch {self.max_epoch})")
        frame_shape = tuple(chunk.obs.shape[1:])
        if self.obs_shape is not None and frame_shape != self.obs_shape:
            raise ValueError(f"chunk obs frames have shape {frame_shape}, the store at {self.root} holds {self.obs_shape}")
        act_dtype, act_shape = _act_spec(chunk.act)
        if self.act_dtype is not None and (np.dtype(act_dtype), act_shape) != (self.act_dtype, self.act_shape):
            raise ValueError(
                f"chunk act has dtype {act_dtype} and per-step shape {act_shape}, the store holds "
                f"{self.act_dtype} {self.act_shape}"
            )
        n = self.num_episodes
        if episode_id is None or episode_id == n:
            eid, index = n, 0
        else:
            eid = int(episode_id)
            if eid != n - 1:
                raise ValueError(
                    f"cannot append to episode {episode_id}: only the newest episode ({n - 1}) can be "
                    f"continued, or pass None / {n} to start a new one"
                )
            if self._episodes[eid][-1].dead:
                raise ValueError(f"cannot append to episode {eid}: it already ended (end or trunc)")
            index = len(self._episodes[eid])
        rel = _chunk_relpath(eid, index)
        path = self.root / rel
        if path.exists():
            raise ReplayStoreError(f"refusing to overwrite existing chunk file {path}; the store is out of step")
        new_dir = not path.parent.exists()
        path.parent.mkdir(parents=True, exist_ok=True)
        if new_dir:
            fsync_dir(path.parent.parent, self._fsync)
        _write_chunk(path, chunk, eid, index, epoch, self._fsync)
        mapped = _read_chunk(self.root, rel)
        if index == 0:
            self._episodes.append([mapped])
        else:
            self._episodes[eid].append(mapped)
        self.obs_shape, self.act_dtype, self.act_shape = frame_shape, np.dtype(act_dtype), act_shape
        self._invalidate(eid)
        self._write_manifest()
        return eid

    def add_chunks(self, items: list[tuple[int | None, EpisodeChunk, int]]) -> list[int]:
        """Append several ``(episode_id_or_None, chunk, epoch)`` with one manifest write at the end
        (bulk import). A crash midway leaves chunk files the manifest does not list: repairable."""
        ids: list[int] = []
        self._defer_manifest = True
        try:
            for eid, chunk, epoch in items:
                ids.append(self.add_chunk(chunk, eid, epoch))
        finally:
            self._defer_manifest = False
            self._write_manifest()
        return ids

    def add_episode(self, chunk: EpisodeChunk, epoch: int = 0) -> int:
        """Store a whole episode (one chunk) under a new id."""
        return self.add_chunk(chunk, None, epoch)

    def rollback(self, max_epoch: int) -> int:
        """Delete every chunk whose epoch tag is > ``max_epoch``; return how many were deleted.

        Epochs never decrease in write order, so those chunks are the newest ones; deleting
        newest-first keeps episode ids and chunk indices contiguous at every moment (a crash
        midway leaves a consistent prefix that ``repair=True`` re-manifests). An episode whose
        ending chunk is removed becomes open again.
        """
        removed = 0
        while self._episodes and self._episodes[-1][-1].epoch > max_epoch:
            chunks = self._episodes[-1]
            c = chunks.pop()
            path = self.root / c.relpath
            path.unlink()
            removed += 1
            if not chunks:
                self._episodes.pop()
                try:
                    path.parent.rmdir()
                except OSError:
                    pass  # e.g. a quarantined *.corrupt file lives there: keep it
            self._invalidate(c.episode_id)
        if removed:
            fsync_dir(self.root / EPISODES_DIR, self._fsync)
            self._write_manifest()
        return removed

    def clear(self) -> None:
        """Remove every episode (the test store is emptied before each evaluation).

        The episodes folder is first renamed to ``episodes.<random>.tmp`` (one atomic step, after
        which the store reads as empty), then the manifest is written, then the folder deleted.
        The frame/action format is kept in the manifest.
        """
        ep_root = self.root / EPISODES_DIR
        if ep_root.exists():
            trash = self.root / f"{EPISODES_DIR}.{uuid.uuid4().hex}{TMP_SUFFIX}"
            durable_replace(ep_root, trash, fsync=self._fsync)
        else:
            trash = None
        self._episodes = []
        self._cache.clear()
        self._cache_copied_bytes.clear()
        self._chunk_starts.clear()
        self.version += 1
        self._write_manifest()
        if trash is not None:
            shutil.rmtree(trash)

    def _invalidate(self, episode_id: int) -> None:
        self._cache.pop(episode_id, None)
        self._cache_copied_bytes.pop(episode_id, None)
        self._chunk_starts.pop(episode_id, None)
        self.version += 1

    # ---- reading ---------------------------------------------------------------------------

    def _chunks_of(self, episode_id: int) -> list[_Chunk]:
        if not 0 <= episode_id < self.num_episodes:
            raise KeyError(f"episode {episode_id} not in replay store {self.root} ({self.num_episodes} episodes)")
        return self._episodes[episode_id]

    def load_episode(self, episode_id: int) -> Episode:
        """The whole episode as read-only numpy arrays (views of the mapped file when it has one
        chunk, one concatenated copy otherwise); cached until the episode changes."""
        cached = self._cache.get(episode_id)
        if cached is not None:
            self._cache.move_to_end(episode_id)
            return cached
        chunks = self._chunks_of(episode_id)

        def cat(name: str) -> np.ndarray:
            if len(chunks) == 1:
                return getattr(chunks[0], name)
            out = np.concatenate([getattr(c, name) for c in chunks])
            out.flags.writeable = False
            return out

        ep = Episode(
            episode_id=episode_id,
            obs=cat("obs"),
            act=cat("act"),
            rew=cat("rew"),
            end=cat("end"),
            trunc=cat("trunc"),
            final_obs=chunks[-1].final_obs,
        )
        self._cache[episode_id] = ep
        if len(chunks) > 1:
            self._cache_copied_bytes[episode_id] = sum(
                getattr(ep, n).nbytes for n in ("obs", "act", "rew", "end", "trunc")
            )
            while sum(self._cache_copied_bytes.values()) > self.cache_bytes and len(self._cache_copied_bytes) > 1:
                oldest = next(k for k in self._cache if k in self._cache_copied_bytes)
                self._cache.pop(oldest)
                self._cache_copied_bytes.pop(oldest)
        return ep

    def load_all(self) -> list[Episode]:
        """Every episode (views for single-chunk episodes; multi-chunk ones are concatenated copies,
        so holding the list costs RAM for those -- iterate the store to stream instead)."""
        return [self.load_episode(i) for i in range(self.num_episodes)]

    def __iter__(self) -> Iterator[Episode]:
        for i in range(self.num_episodes):
            yield self.load_episode(i)

    def iter_chunks(self, episode_id: int) -> Iterator[EpisodeChunk]:
        """The stored chunks of one episode (read-only views), e.g. to copy a store."""
        for c in self._chunks_of(episode_id):
            yield EpisodeChunk(c.obs, c.act, c.rew, c.end, c.trunc, c.final_obs)

    def chunk_epochs(self, episode_id: int) -> list[int]:
        return [c.epoch for c in self._chunks_of(episode_id)]

    def final_obs(self, episode_id: int) -> np.ndarray | None:
        return self._chunks_of(episode_id)[-1].final_obs

    def copy_window(self, episode_id: int, lo: int, hi: int, out: dict[str, np.ndarray]) -> None:
        """Copy steps [lo, hi) of an episode into ``out[name][0 : hi-lo]`` for each name in
        obs/act/rew/end/trunc present in ``out`` -- straight from the mapped chunks, across chunk
        boundaries, without concatenating the episode (the sampler's hot path)."""
        chunks = self._chunks_of(episode_id)
        if len(chunks) == 1:
            c = chunks[0]
            for name, dst in out.items():
                dst[: hi - lo] = getattr(c, name)[lo:hi]
            return
        starts = self._chunk_starts.get(episode_id)
        if starts is None:
            starts = np.cumsum([0] + [c.length for c in chunks])
            self._chunk_starts[episode_id] = starts
        k = int(np.searchsorted(starts, lo, side="right")) - 1
        pos = lo
        while pos < hi:
            c = chunks[k]
            a, b = pos - starts[k], min(hi, starts[k + 1]) - starts[k]
            for name, dst in out.items():
                dst[pos - lo : pos - lo + (b - a)] = getattr(c, name)[a:b]
            pos += b - a
            k += 1

    # ---- pickling (Kedro ParallelRunner): re-open from the folder ---------------------------

    def __getstate__(self) -> dict[str, Any]:
        return {"root": str(self.root), "obs_shape": self._expected_obs_shape, "fsync": self._fsync}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["root"], state["obs_shape"], create=False, fsync=state["fsync"])  # type: ignore[misc]
