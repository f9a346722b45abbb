"""The store's manifest and its repair: ``manifest.json`` is a derived summary of the chunk files, rebuilt
from them when it is out of step (a crash between a chunk's rename and the manifest's rewrite).

Opening lists the chunk files (``list_chunk_files``; ``*.tmp`` leftovers are never read), maps them in
order (``read_chunks``), checks they form a store (episode ids and chunk indices contiguous, only a last
chunk ends an episode, epochs non-decreasing, one frame/action format: ``check_structure``) and compares
the manifest on disk with the one the files give (``compare_manifest``). Data is never deleted silently:
an unreadable newest chunk is only *renamed* to ``*.corrupt`` on repair.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from diamond_kedro.replay.codec import EPISODES_DIR, FORMAT_NAME, FORMAT_VERSION, TMP_SUFFIX, act_spec, chunk_relpath, read_chunk
from diamond_kedro.replay.records import CorruptChunkError, MappedChunk, ReplayStoreError
from diamond_kedro.utils.atomic import atomic_write, durable_replace

MANIFEST_NAME = "manifest.json"
CORRUPT_SUFFIX = ".corrupt"  # quarantined chunk files (kept, never deleted by the store)
_EPISODE_DIR_RE = re.compile(r"^\d{6}$")
_CHUNK_FILE_RE = re.compile(r"^chunk_(\d{4})\.arrow$")


def list_chunk_files(root: Path) -> tuple[list[str], list[Path]]:
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
                    chunks.append((eid, k, chunk_relpath(eid, k)))
    chunks.sort()
    return [c[2] for c in chunks], tmps


def read_chunks(root: Path, relpaths: list[str], repair: bool, fsync: bool = True) -> list[MappedChunk]:
    """Map every chunk file, in order, and check they form a store (``check_structure``). With ``repair``
    an unreadable *newest* chunk is quarantined as ``*.corrupt`` (a crash mid-append); any other one raises."""
    chunks: list[MappedChunk] = []
    for i, rel in enumerate(relpaths):
        try:
            chunks.append(read_chunk(root, rel))
        except CorruptChunkError:
            newest = i == len(relpaths) - 1
            if repair and newest:
                # A half-written newest chunk can only come from a crash mid-append: keep the
                # bytes (renamed, ignored from now on) so nothing is lost silently.
                src = root / rel
                durable_replace(src, src.with_name(src.name + CORRUPT_SUFFIX), fsync=fsync)
                continue
            if repair:
                raise CorruptChunkError(
                    f"replay chunk file {root / rel} is corrupt and is not the newest chunk: "
                    "refusing to repair automatically (later data depends on it)"
                ) from None
            raise
    check_structure(root, chunks)
    return chunks


def check_structure(root: Path, chunks: list[MappedChunk]) -> None:
    """Episode ids 0..N-1 and chunk indices 0..k-1 contiguous; only last chunks end episodes;
    epochs non-decreasing in write order; one frame/action format."""
    prev: MappedChunk | None = None
    for c in chunks:
        path = root / c.relpath
        if prev is None or c.episode_id != prev.episode_id:
            want_ep = 0 if prev is None else prev.episode_id + 1
            if c.episode_id != want_ep or c.index != 0:
                raise ReplayStoreError(
                    f"replay store {root}: chunk file {path} follows a gap "
                    f"(expected episode {want_ep} chunk 0); missing episode data cannot be repaired"
                )
        else:
            if c.index != prev.index + 1:
                raise ReplayStoreError(
                    f"replay store {root}: chunk file {path} follows a gap "
                    f"(expected chunk {prev.index + 1}); missing episode data cannot be repaired"
                )
            if prev.dead:
                raise ReplayStoreError(
                    f"replay store {root}: chunk file {path} continues episode {c.episode_id}, "
                    f"which already ended in {root / prev.relpath}"
                )
        if prev is not None and c.epoch < prev.epoch:
            raise ReplayStoreError(
                f"replay store {root}: chunk file {path} has epoch {c.epoch}, older than the "
                f"previous chunk's epoch {prev.epoch}"
            )
        if prev is not None:
            if c.obs.shape[1:] != prev.obs.shape[1:]:
                raise ReplayStoreError(
                    f"chunk file {path} has frames of shape {c.obs.shape[1:]}, the store has {prev.obs.shape[1:]}"
                )
            if act_spec(c.act) != act_spec(prev.act):
                raise ReplayStoreError(
                    f"chunk file {path} has actions {act_spec(c.act)}, the store has {act_spec(prev.act)}"
                )
        prev = c


def compare_manifest(root: Path, on_disk: dict[str, Any], want: dict[str, Any]) -> list[str]:
    """How the manifest read from disk differs from ``want`` (the one the chunk files give), one line each."""
    problems: list[str] = []
    disk_eps = on_disk.get("episodes")
    if on_disk.get("format") != FORMAT_NAME or not isinstance(disk_eps, list):
        return [f"not a {FORMAT_NAME} manifest"]
    listed = {c["file"]: c for e in disk_eps for c in e.get("chunks", [])}
    present = {c["file"]: c for e in want["episodes"] for c in e["chunks"]}
    for rel in sorted(set(listed) - set(present)):
        problems.append(f"listed file {root / rel} is missing")
    for rel in sorted(set(present) - set(listed)):
        problems.append(f"file {root / rel} is not in the manifest")
    for rel in sorted(set(present) & set(listed)):
        if listed[rel] != present[rel]:
            problems.append(f"entry for {root / rel} differs from the file ({listed[rel]} vs {present[rel]})")
    if not problems:
        for key in ("num_episodes", "num_steps", "counter_rew", "counter_end", "episodes"):
            if on_disk.get(key) != want[key]:
                problems.append(f"field {key!r} differs from the files")
    return problems


def build_manifest(
    chunks_by_episode: list[list[MappedChunk]],
    *,
    obs_shape: tuple[int, ...] | None,
    act_dtype: np.dtype | None,
    act_shape: tuple[int, ...] | None,
    num_steps: int,
    counter_rew: Counter[int],
    counter_end: Counter[int],
) -> dict[str, Any]:
    """The summary written to ``manifest.json`` (derived from the mapped chunks)."""
    episodes = []
    for eid, chunks in enumerate(chunks_by_episode):
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
    rew = counter_rew
    end = counter_end
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "obs_shape": list(obs_shape) if obs_shape is not None else None,
        "act_dtype": str(act_dtype) if act_dtype is not None else None,
        "act_shape": list(act_shape) if act_shape is not None else None,
        "num_episodes": len(episodes),
        "num_steps": num_steps,
        "counter_rew": {str(k): rew[k] for k in (-1, 0, 1)},
        "counter_end": {str(k): end[k] for k in (0, 1)},
        "episodes": episodes,
    }


def write_manifest(root: Path, manifest: dict[str, Any], fsync: bool = True) -> None:
    """``manifest.json`` rewritten atomically (via ``manifest.json.tmp``, which opening ignores)."""
    text = json.dumps(manifest)  # compact: the C encoder, O(size) per write
    path = root / MANIFEST_NAME
    atomic_write(path, lambda f: f.write(text.encode()), fsync=fsync, tmp=path.with_name(path.name + TMP_SUFFIX))
