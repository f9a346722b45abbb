"""ReplayStore: round trip, chunked episodes, manifest counters, atomicity, repair, rollback."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from diamond_kedro.replay import store as store_mod
from diamond_kedro.replay.store import (
    CorruptChunkError,
    EpisodeChunk,
    ManifestMismatchError,
    ReplayStore,
    ReplayStoreError,
)

H, W = 6, 5


def make_chunk(t: int, seed: int = 0, end: bool = False, trunc: bool = False, final: bool | None = None,
               rew: list[float] | None = None) -> EpisodeChunk:
    rng = np.random.default_rng(seed)
    e = np.zeros(t, np.uint8)
    tr = np.zeros(t, np.uint8)
    e[-1], tr[-1] = end, trunc
    r = np.asarray(rew, np.float32) if rew is not None else rng.choice([-1.0, 0.0, 0.5], t).astype(np.float32)
    dead = end or trunc
    fo = rng.integers(0, 256, (H, W, 3), dtype=np.uint8) if (dead if final is None else final) else None
    return EpisodeChunk(
        obs=rng.integers(0, 256, (t, H, W, 3), dtype=np.uint8),
        act=rng.integers(0, 4, t).astype(np.int64),
        rew=r,
        end=e,
        trunc=tr,
        final_obs=fo,
    )


def chunk_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.arrow"))


def test_round_trip_exact_values_after_reopen(tmp_path):
    a, b = make_chunk(7, seed=1, end=True), make_chunk(4, seed=2, trunc=True)
    s = ReplayStore(tmp_path / "train")
    assert s.add_chunk(a) == 0
    assert s.add_chunk(b) == 1
    s2 = ReplayStore(tmp_path / "train")
    for eid, src in ((0, a), (1, b)):
        ep = s2.load_episode(eid)
        for name in ("obs", "act", "rew", "end", "trunc", "final_obs"):
            got, want = getattr(ep, name), getattr(src, name)
            assert got.dtype == want.dtype and got.shape == want.shape, name
            np.testing.assert_array_equal(got, want)
    assert s2.obs_shape == (H, W, 3)
    assert s2.load_episode(0).obs.flags.writeable is False  # memory-mapped read-only view
    assert chunk_files(tmp_path / "train") == [
        "episodes/000000/chunk_0000.arrow",
        "episodes/000001/chunk_0000.arrow",
    ]


def test_multi_hot_actions_round_trip(tmp_path):
    c = make_chunk(3, end=True)
    act = np.array([[1, 0, 1], [0, 0, 0], [1, 1, 1]], np.uint8)
    s = ReplayStore(tmp_path)
    s.add_chunk(EpisodeChunk(c.obs, act, c.rew, c.end, c.trunc, c.final_obs))
    got = ReplayStore(tmp_path).load_episode(0).act
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, act)


def test_chunk_append_continues_the_open_episode(tmp_path):
    first, second = make_chunk(5, seed=3), make_chunk(6, seed=4, end=True)
    s = ReplayStore(tmp_path)
    eid = s.add_chunk(first, epoch=0)
    assert not s.is_finished(eid)
    assert s.add_chunk(second, eid, epoch=1) == eid
    assert s.is_finished(eid)
    assert s.num_episodes == 1 and s.num_steps == 11
    s2 = ReplayStore(tmp_path)
    ep = s2.load_episode(0)
    np.testing.assert_array_equal(ep.obs, np.concatenate([first.obs, second.obs]))
    np.testing.assert_array_equal(ep.rew, np.concatenate([first.rew, second.rew]))
    np.testing.assert_array_equal(ep.final_obs, second.final_obs)
    assert s2.chunk_epochs(0) == [0, 1]
    assert chunk_files(tmp_path) == ["episodes/000000/chunk_0000.arrow", "episodes/000000/chunk_0001.arrow"]


def test_load_episode_cache_is_invalidated_on_append(tmp_path):
    s = ReplayStore(tmp_path)
    eid = s.add_chunk(make_chunk(3, seed=1))
    assert s.load_episode(eid).length == 3
    s.add_chunk(make_chunk(2, seed=2), eid)
    assert s.load_episode(eid).length == 5


def test_appending_to_finished_or_old_episode_is_an_error(tmp_path):
    s = ReplayStore(tmp_path)
    s.add_chunk(make_chunk(3, end=True))
    with pytest.raises(ValueError, match="already ended"):
        s.add_chunk(make_chunk(2), 0)
    s.add_chunk(make_chunk(2))  # episode 1, open
    s.add_chunk(make_chunk(2))  # episode 2 (the collector restarted): 1 stays open forever
    with pytest.raises(ValueError, match="only the newest episode"):
        s.add_chunk(make_chunk(2), 1)
    s.add_chunk(make_chunk(2, seed=9), 2, epoch=5)
    with pytest.raises(ValueError, match="older than"):  # epochs never go back in time
        s.add_chunk(make_chunk(1), None, epoch=4)
    assert [s.is_finished(i) for i in range(s.num_episodes)] == [True, False, False]


def test_manifest_counters_match_hand_counts(tmp_path):
    s = ReplayStore(tmp_path)
    # episode 0: rew [1, 0, -2, 0.5], ends; episode 1: rew [0, 0, 3] open then [-1] truncated
    s.add_chunk(make_chunk(4, end=True, rew=[1, 0, -2, 0.5]))
    eid = s.add_chunk(make_chunk(3, rew=[0, 0, 3]))
    s.add_chunk(make_chunk(1, trunc=True, rew=[-1]), eid)
    # hand count: signs  +1: 1, 0.5, 3 -> 3 ; 0: 0, 0, 0 -> 3 ; -1: -2, -1 -> 2 ; end==1 once (trunc is not end)
    assert s.counter_rew == Counter({1: 3, 0: 3, -1: 2})
    assert s.counter_end == Counter({0: 7, 1: 1})
    m = json.loads((tmp_path / "manifest.json").read_text())
    assert m["num_episodes"] == 2 and m["num_steps"] == 8
    assert m["counter_rew"] == {"-1": 2, "0": 3, "1": 3}
    assert m["counter_end"] == {"0": 7, "1": 1}
    e0, e1 = m["episodes"]
    assert (e0["length"], e0["num_chunks"], e0["finished"], e0["return"]) == (4, 1, True, -0.5)
    assert (e1["length"], e1["num_chunks"], e1["finished"], e1["return"]) == (4, 2, True, 2.0)
    np.testing.assert_array_equal(s.lengths, [4, 4])


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("obs", np.zeros((3, H, W, 3), np.float32), "obs has dtype float32"),
        ("obs", np.zeros((3, H, W), np.uint8), r"obs has shape \(3, 6, 5\)"),
        ("act", np.zeros(3, np.int32), "act has dtype int32"),
        ("rew", np.zeros(3, np.float64), "rew has dtype float64"),
        ("rew", np.zeros(2, np.float32), "rew has 2 steps but obs has 3"),
        ("end", np.array([0, 0, 2], np.uint8), "end must hold 0/1"),
        ("end", np.array([1, 0, 0], np.uint8), "end/trunc at step 0"),
        ("trunc", np.zeros(3, bool), "trunc has dtype bool"),
        ("final_obs", np.zeros((H, W, 3), np.uint8), "final_obs is only allowed"),
    ],
)
def test_bad_chunk_is_rejected_naming_the_field(field, value, match):
    c = make_chunk(3, seed=5)
    fields = dict(obs=c.obs, act=c.act, rew=c.rew, end=c.end, trunc=c.trunc, final_obs=None)
    fields[field] = value
    with pytest.raises(ValueError, match=match):
        EpisodeChunk(**fields)


def test_store_rejects_a_different_frame_shape(tmp_path):
    s = ReplayStore(tmp_path, obs_shape=(H, W, 3))
    c = make_chunk(2)
    with pytest.raises(ValueError, match=r"shape \(6, 6, 3\)"):
        s.add_chunk(EpisodeChunk(np.zeros((2, 6, 6, 3), np.uint8), c.act, c.rew, c.end, c.trunc))
    with pytest.raises(ReplayStoreError, match="obs_shape"):
        ReplayStore(tmp_path, obs_shape=(64, 64, 3))


def test_crash_between_temp_write_and_rename_loses_nothing(tmp_path, monkeypatch):
    s = ReplayStore(tmp_path)
    kept = make_chunk(4, seed=1, end=True)
    s.add_chunk(kept)
    real_replace = os.replace

    def crash(src, dst):
        if str(dst).endswith(".arrow"):
            raise OSError("simulated crash during rename")
        return real_replace(src, dst)

    monkeypatch.setattr(store_mod.os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        s.add_chunk(make_chunk(3, seed=2))
    monkeypatch.undo()
    assert s.num_episodes == 1  # in-memory state untouched
    # a hard crash would leave the temp file behind: emulate it
    tmp = tmp_path / "episodes/000001/chunk_0000.arrow.tmp"
    tmp.parent.mkdir(exist_ok=True)
    tmp.write_bytes(b"half written")
    s2 = ReplayStore(tmp_path)  # opens fine, the .tmp is ignored
    assert s2.num_episodes == 1
    np.testing.assert_array_equal(s2.load_episode(0).obs, kept.obs)
    assert tmp.exists()
    ReplayStore(tmp_path, repair=True)
    assert not tmp.exists()  # repair removes leftovers
    # and the next write reuses the slot cleanly
    s3 = ReplayStore(tmp_path)
    assert s3.add_chunk(make_chunk(2, seed=3)) == 1


def test_crash_after_rename_before_manifest_is_detected_and_repaired(tmp_path, monkeypatch):
    s = ReplayStore(tmp_path)
    s.add_chunk(make_chunk(4, seed=1, end=True))
    monkeypatch.setattr(ReplayStore, "_write_manifest", lambda self: (_ for _ in ()).throw(OSError("crash")))
    with pytest.raises(OSError):
        s.add_chunk(make_chunk(3, seed=2, end=True))
    monkeypatch.undo()
    with pytest.raises(ManifestMismatchError, match=r"episodes/000001/chunk_0000\.arrow is not in the manifest"):
        ReplayStore(tmp_path)
    s2 = ReplayStore(tmp_path, repair=True)
    assert s2.num_episodes == 2 and s2.num_steps == 7
    assert json.loads((tmp_path / "manifest.json").read_text())["num_steps"] == 7
    ReplayStore(tmp_path)  # consistent again


def test_manifest_listing_a_missing_file_is_detected(tmp_path):
    s = ReplayStore(tmp_path)
    s.add_chunk(make_chunk(4, seed=1, end=True))
    s.add_chunk(make_chunk(3, seed=2, end=True))
    (tmp_path / "episodes/000001/chunk_0000.arrow").unlink()
    with pytest.raises(ManifestMismatchError, match=r"000001/chunk_0000\.arrow is missing"):
        ReplayStore(tmp_path)
    s2 = ReplayStore(tmp_path, repair=True)
    assert s2.num_episodes == 1 and s2.num_steps == 4


def test_rebuild_manifest_reproduces_the_written_one(tmp_path):
    s = ReplayStore(tmp_path)
    s.add_chunk(make_chunk(4, seed=1, end=True))
    eid = s.add_chunk(make_chunk(3, seed=2), epoch=2)
    s.add_chunk(make_chunk(2, seed=3), eid, epoch=3)
    before = json.loads((tmp_path / "manifest.json").read_text())
    (tmp_path / "manifest.json").unlink()
    with pytest.raises(ManifestMismatchError, match="no manifest.json"):
        ReplayStore(tmp_path)
    rebuilt = ReplayStore(tmp_path, repair=True).manifest()
    assert rebuilt == before
    assert s.rebuild_manifest() == before


def test_truncated_chunk_file_names_the_file(tmp_path):
    s = ReplayStore(tmp_path)
    s.add_chunk(make_chunk(4, seed=1, end=True))
    s.add_chunk(make_chunk(3, seed=2, end=True))
    path = tmp_path / "episodes/000001/chunk_0000.arrow"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptChunkError, match=r"000001/chunk_0000\.arrow"):
        ReplayStore(tmp_path)
    # repair quarantines the newest chunk (renamed, not deleted)
    s2 = ReplayStore(tmp_path, repair=True)
    assert s2.num_episodes == 1
    quarantined = path.with_name(path.name + ".corrupt")
    assert quarantined.read_bytes() == data[: len(data) // 2]


def test_corrupt_chunk_that_is_not_the_newest_is_not_repaired(tmp_path):
    s = ReplayStore(tmp_path)
    s.add_chunk(make_chunk(4, seed=1, end=True))
    s.add_chunk(make_chunk(3, seed=2, end=True))
    path = tmp_path / "episodes/000000/chunk_0000.arrow"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CorruptChunkError, match=r"000000/chunk_0000\.arrow.*not the newest"):
        ReplayStore(tmp_path, repair=True)
    assert path.exists()


def test_rollback_removes_newer_epochs_and_reopens_episode(tmp_path):
    s = ReplayStore(tmp_path)
    s.add_chunk(make_chunk(4, seed=1, end=True), epoch=0)
    eid = s.add_chunk(make_chunk(3, seed=2), epoch=1)
    s.add_chunk(make_chunk(2, seed=3, end=True), eid, epoch=2)  # episode 1 ends in epoch 2
    s.add_chunk(make_chunk(5, seed=4), epoch=2)  # episode 2 started in epoch 2
    assert s.rollback(1) == 2
    assert s.num_episodes == 2 and s.num_steps == 7
    assert not s.is_finished(1)  # the ending chunk is gone: the episode is open again
    assert chunk_files(tmp_path) == ["episodes/000000/chunk_0000.arrow", "episodes/000001/chunk_0000.arrow"]
    s2 = ReplayStore(tmp_path)  # manifest consistent with the files
    assert s2.num_steps == 7
    s2.add_chunk(make_chunk(2, seed=5), 1, epoch=2)  # the episode can be continued again
    assert s2.rollback(5) == 0


def test_clear_empties_store_but_keeps_format(tmp_path):
    s = ReplayStore(tmp_path)
    s.add_chunk(make_chunk(4, seed=1, end=True))
    s.clear()
    assert s.num_episodes == 0 and chunk_files(tmp_path) == []
    s2 = ReplayStore(tmp_path)
    assert s2.num_episodes == 0 and s2.obs_shape == (H, W, 3)
    assert s2.add_chunk(make_chunk(2, seed=2, end=True)) == 0


def test_pickle_reopens_the_folder(tmp_path):
    import pickle

    s = ReplayStore(tmp_path)
    c = make_chunk(3, seed=1, end=True)
    s.add_chunk(c)
    s2 = pickle.loads(pickle.dumps(s))
    np.testing.assert_array_equal(s2.load_episode(0).obs, c.obs)


def test_load_episode_cache_bound_keeps_results_correct(tmp_path):
    s = ReplayStore(tmp_path, cache_bytes=0)  # every multi-chunk concatenation is evicted at once
    parts = {}
    for eid in range(3):
        a, b = make_chunk(3, seed=10 + eid), make_chunk(2, seed=20 + eid, end=True)
        s.add_chunk(a)
        s.add_chunk(b, eid)
        parts[eid] = np.concatenate([a.obs, b.obs])
    for eid in (0, 1, 2, 0):
        np.testing.assert_array_equal(s.load_episode(eid).obs, parts[eid])
    assert len(s._cache_copied_bytes) == 1  # only the most recent copy is kept
