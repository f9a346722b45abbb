"""The chunk file format: one Arrow IPC file per chunk (see :mod:`diamond_kedro.replay.store` for the
layout), written atomically through ``utils.atomic`` and read back as zero-copy, read-only numpy views.

Columns ``obs`` (fixed_size_list<uint8>[H*W*C], one frame per row, HWC RGB), ``act`` (int64, or
fixed_size_list<float32|uint8>[A] multi-hot), ``rew`` float32, ``end`` uint8, ``trunc`` uint8; the schema
metadata holds the episode id, chunk index, epoch tag, shapes, and the raw bytes of the final observation
(only for a chunk that ends its episode). Any unreadable file raises :class:`CorruptChunkError` naming it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from diamond_kedro.replay.records import CorruptChunkError, EpisodeChunk, MappedChunk
from diamond_kedro.utils.atomic import atomic_write

EPISODES_DIR = "episodes"
TMP_SUFFIX = ".tmp"  # DVC / git should ignore "*.tmp"
FORMAT_NAME = "diamond-kedro-replay"
FORMAT_VERSION = 1
_META_KEY = b"diamond_kedro.replay"
_FINAL_OBS_KEY = b"diamond_kedro.final_obs"


def chunk_relpath(episode_id: int, index: int) -> str:
    return f"{EPISODES_DIR}/{episode_id:06d}/chunk_{index:04d}.arrow"


def act_spec(act: np.ndarray) -> tuple[str, tuple[int, ...]]:
    return str(act.dtype), tuple(int(d) for d in act.shape[1:])


def write_chunk(path: Path, chunk: EpisodeChunk, episode_id: int, index: int, epoch: int, fsync: bool) -> None:
    t = chunk.length
    frame = int(np.prod(chunk.obs.shape[1:]))
    obs = pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(chunk.obs).reshape(-1)), frame)
    if chunk.act.ndim == 1:
        act = pa.array(np.ascontiguousarray(chunk.act))
    else:
        act = pa.FixedSizeListArray.from_arrays(
            pa.array(np.ascontiguousarray(chunk.act).reshape(-1)), chunk.act.shape[1]
        )
    act_dtype, act_shape = act_spec(chunk.act)
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


def read_chunk(root: Path, relpath: str) -> MappedChunk:
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
    expected_rel = chunk_relpath(int(meta["episode_id"]), int(meta["chunk_index"]))
    if expected_rel != relpath:
        raise CorruptChunkError(
            f"replay chunk file {path} says it is episode {meta['episode_id']} chunk "
            f"{meta['chunk_index']} (expected at {expected_rel})"
        )
    return MappedChunk(
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
