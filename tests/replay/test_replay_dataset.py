"""ReplayStoreDataset: Kedro load/save/exists/describe and pickling."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from kedro.io import DatasetError

from diamond_kedro.io.replay_dataset import ReplayStoreDataset
from diamond_kedro.replay.store import EpisodeChunk, ReplayStore


def chunk(t: int, value: int, dead: bool) -> EpisodeChunk:
    end = np.zeros(t, np.uint8)
    end[-1] = dead
    return EpisodeChunk(
        obs=np.full((t, 4, 4, 3), value, np.uint8),
        act=np.arange(t, dtype=np.int64),
        rew=np.ones(t, np.float32),
        end=end,
        trunc=np.zeros(t, np.uint8),
    )


def test_save_chunks_then_load(tmp_path):
    ds = ReplayStoreDataset(filepath=str(tmp_path / "train"), obs_shape=[4, 4, 3])
    assert not ds.exists()
    ds.save([chunk(3, 1, True), (None, chunk(2, 2, False), 4), (1, chunk(2, 3, True), 5)])
    assert ds.exists()
    store = ds.load()
    assert isinstance(store, ReplayStore)
    np.testing.assert_array_equal(store.lengths, [3, 4])
    assert store.chunk_epochs(1) == [4, 5]
    assert store.load_episode(1).obs[:, 0, 0, 0].tolist() == [2, 2, 3, 3]


def test_save_same_store_is_noop_and_foreign_store_is_refused(tmp_path):
    ds = ReplayStoreDataset(filepath=str(tmp_path / "a"))
    store = ds.load()
    store.add_chunk(chunk(2, 1, True))
    ds.save(store)  # already on disk
    assert ds.load().num_steps == 2
    other = ReplayStore(tmp_path / "b")
    with pytest.raises(DatasetError, match="only a store opened on this dataset's own folder"):
        ds.save(other)
    with pytest.raises(DatasetError, match="item 0 must be an EpisodeChunk"):
        ds.save([np.zeros(3)])


def test_describe_and_pickle(tmp_path):
    ds = ReplayStoreDataset(filepath=str(tmp_path / "t"), obs_shape=(4, 4, 3))
    assert ds._describe() == {"filepath": str(tmp_path / "t"), "obs_shape": (4, 4, 3), "repair": False}
    ds.save([chunk(2, 9, True)])
    ds2 = pickle.loads(pickle.dumps(ds))
    assert ds2.load().load_episode(0).obs[0, 0, 0, 0] == 9
