"""A Minari dataset made here with the minari API (image observations, no download) -> replay stores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from diamond_kedro.datasets.config import DatasetConfig
from diamond_kedro.datasets.ingest import ingest_dataset
from diamond_kedro.datasets.writer import DatasetError
from diamond_kedro.replay.store import ReplayStore

from .synthetic import make_minari


def cfg(tmp_path: Path, path: Path, **kw) -> DatasetConfig:
    return DatasetConfig.model_validate({"name": "gridworld", "kind": "minari", "path": str(path),
                                         "out_dir": str(tmp_path / "out"), "frame_size": [20, 24],
                                         "fsync": False, "test_fraction": 0.34, **kw})


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_discrete_minari_episodes_keep_obs_t_act_t_rewards_and_terminations(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    path = make_minari(tmp_path / "minari", "test/grid-v0", [6, 7, 5])
    summary = ingest_dataset(cfg(tmp_path, path), progress=False)
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert index["action"] == {"kind": "discrete", "dim": 5}  # Discrete(5)
    # round(0.34 * 3) = 1 test episode at sorted position int(0.5 * 3) = 1 -> episode_1
    assert index["splits"] == {"train": ["episode_0", "episode_2"], "test": ["episode_1"]}
    assert summary.num_episodes == {"train": 2, "test": 1}
    ep = ReplayStore(tmp_path / "out" / "low_res" / "test", create=False).load_episode(0)
    # Minari holds T + 1 = 8 observations for T = 7 actions; obs[t] is the frame act[t] was taken on
    assert ep.obs.shape == (7, 20, 24, 3)
    np.testing.assert_array_equal(ep.obs[:, 0, 0, 0], [10 * i + 1 for i in range(7)])
    np.testing.assert_array_equal(ep.act, np.arange(7) % 5)
    np.testing.assert_array_equal(ep.rew, np.arange(7, dtype=np.float32))
    np.testing.assert_array_equal(ep.end, [0] * 6 + [1])


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_box_actions_are_continuous_and_grey_frames_become_rgb(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    path = make_minari(tmp_path / "minari", "test/car-v0", [4], action="box", obs_shape=(10, 12))
    ingest_dataset(cfg(tmp_path, path / "data", test_fraction=0.0, frame_size=[10, 12]), progress=False)
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert index["action"] == {"kind": "continuous", "dim": 2}
    ep = ReplayStore(tmp_path / "out" / "low_res" / "train", create=False).load_episode(0)
    assert ep.obs.shape == (4, 10, 12, 3) and (ep.obs[2] == 20).all()
    np.testing.assert_allclose(ep.act, np.stack([np.linspace(-1, 1, 4), np.full(4, 0.25)], 1), rtol=1e-6)
    with pytest.raises(DatasetError, match="action_kind is discrete but the action space is Box"):
        ingest_dataset(cfg(tmp_path, path, action_kind="discrete", out_dir=str(tmp_path / "o2")), progress=False)


def test_a_folder_that_is_not_a_minari_dataset_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nothing_here is not a local Minari dataset"):
        ingest_dataset(cfg(tmp_path, tmp_path / "nothing_here"), progress=False)
