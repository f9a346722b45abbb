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

The code is split by job: :mod:`.records` (what is stored, in memory, and the errors), :mod:`.codec`
(the Arrow chunk files), :mod:`.manifest` (the manifest and its repair) and this module (the store API);
every public name of the others is importable from here too.

Single writer: one :class:`ReplayStore` object per folder mutates it; another object sees the
changes after :meth:`ReplayStore.refresh`.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from diamond_kedro.replay.codec import (  # noqa: F401  (public names of this module since the start)
    EPISODES_DIR,
    FORMAT_NAME,
    FORMAT_VERSION,
    TMP_SUFFIX,
    act_spec,
    chunk_relpath,
    read_chunk,
    write_chunk,
)
from diamond_kedro.replay.manifest import (  # noqa: F401
    CORRUPT_SUFFIX,
    MANIFEST_NAME,
    build_manifest,
    compare_manifest,
    list_chunk_files,
    read_chunks,
    write_manifest,
)
from diamond_kedro.replay.records import (  # noqa: F401
    CorruptChunkError,
    Episode,
    EpisodeChunk,
    ManifestMismatchError,
    MappedChunk,
    ReplayStoreError,
)
from diamond_kedro.utils.atomic import durable_replace, fsync_dir


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
        self._episodes: list[list[MappedChunk]] = []
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
        relpaths, tmps = list_chunk_files(self.root)
        if repair:
            for tmp in tmps:
                shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
        chunks = read_chunks(self.root, relpaths, repair=repair, fsync=self._fsync)
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
        problems = compare_manifest(self.root, on_disk, self.manifest())
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

    def _install(self, chunks: list[MappedChunk]) -> None:
        for c in chunks:
            if c.index == 0:
                self._episodes.append([])
            self._episodes[-1].append(c)
        if chunks:
            self.obs_shape = tuple(chunks[0].obs.shape[1:])
            self.act_dtype = chunks[0].act.dtype
            self.act_shape = tuple(chunks[0].act.shape[1:])

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
        return build_manifest(
            self._episodes,
            obs_shape=self.obs_shape,
            act_dtype=self.act_dtype,
            act_shape=self.act_shape,
            num_steps=self.num_steps,
            counter_rew=self.counter_rew,
            counter_end=self.counter_end,
        )

    def _write_manifest(self) -> None:
        if self._defer_manifest:
            return
        write_manifest(self.root, self.manifest(), self._fsync)

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
        act_dtype, act_shape = act_spec(chunk.act)
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
        rel = chunk_relpath(eid, index)
        path = self.root / rel
        if path.exists():
            raise ReplayStoreError(f"refusing to overwrite existing chunk file {path}; the store is out of step")
        new_dir = not path.parent.exists()
        path.parent.mkdir(parents=True, exist_ok=True)
        if new_dir:
            fsync_dir(path.parent.parent, self._fsync)
        write_chunk(path, chunk, eid, index, epoch, self._fsync)
        mapped = read_chunk(self.root, rel)
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

    def _chunks_of(self, episode_id: int) -> list[MappedChunk]:
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
