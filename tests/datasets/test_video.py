"""Video files + action tables -> replay stores: frames, actions, episodes, split, and bad files named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from diamond_kedro.datasets.config import DatasetConfig
from diamond_kedro.datasets.ingest import ingest_dataset
from diamond_kedro.datasets.writer import DatasetError
from diamond_kedro.replay.store import ReplayStore

from .synthetic import colour, nothing_written, write_video

TOL = 6  # h264 / vp9 at default quality on flat colours: measured error <= 3 levels


def cfg(tmp_path: Path, raw: Path, **kw) -> DatasetConfig:
    base = {"name": "game", "kind": "video", "path": str(raw), "out_dir": str(tmp_path / "out"),
            "frame_size": [32, 32], "fsync": False, "test_fraction": 0.0}
    return DatasetConfig.model_validate({**base, **kw})


def store(tmp_path: Path, res: str, split: str) -> ReplayStore:
    return ReplayStore(tmp_path / "out" / res / split, create=False)


def check_padded_frames(obs: np.ndarray, video: int, first: int = 0) -> None:
    """48x64 padded into 32x32: black rows 0-3 and 28-31, the flat colour in between."""
    assert obs.shape[1:] == (32, 32, 3) and obs.dtype == np.uint8
    assert obs[:, :4].max() <= TOL and obs[:, 28:].max() <= TOL
    for i, frame in enumerate(obs):
        want = np.array(colour(video, first + i))
        assert np.abs(frame[6:26].astype(int) - want).max() <= TOL, (video, first + i)


@pytest.fixture
def sidecar(tmp_path: Path) -> Path:
    """clip_a.mp4 (10 frames) and sub/clip_b.webm (8 frames), each with a sidecar CSV of discrete ids."""
    raw = tmp_path / "raw"
    write_video(raw / "clip_a.mp4", 0, 10)
    write_video(raw / "sub" / "clip_b.webm", 1, 8)
    pd.DataFrame({"frame": range(10), "action": [i % 3 for i in range(10)]}).to_csv(raw / "clip_a.csv", index=False)
    # rows out of order: the frame column orders them
    pd.DataFrame({"frame": [7, 6, 5, 4, 3, 2, 1, 0], "action": [5, 0, 0, 0, 0, 0, 0, 1]}).to_csv(
        raw / "sub" / "clip_b.csv", index=False)
    return raw


def test_videos_with_sidecar_tables_discrete_actions_and_a_listed_test_file(sidecar: Path, tmp_path: Path) -> None:
    split = tmp_path / "test.txt"
    split.write_text("clip_b.webm\n")
    summary = ingest_dataset(cfg(tmp_path, sidecar, test_split_file=str(split)), progress=False)
    assert summary.ingested == 2 and summary.num_episodes == {"train": 1, "test": 1}
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert index["action"] == {"kind": "discrete", "dim": 6}  # largest id 5 -> 6 ids
    assert index["splits"] == {"train": ["clip_a.mp4"], "test": ["sub/clip_b.webm"]}
    assert index["low_res_size"] is None and not (tmp_path / "out" / "full_res").exists()
    a = store(tmp_path, "low_res", "train").load_episode(0)
    check_padded_frames(a.obs, 0)
    np.testing.assert_array_equal(a.act, [0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    assert a.act.dtype == np.int64 and not a.rew.any() and not a.end.any()
    b = store(tmp_path, "low_res", "test").load_episode(0)
    check_padded_frames(b.obs, 1)
    np.testing.assert_array_equal(b.act, [1, 0, 0, 0, 0, 0, 0, 5])
    # resumable: a second call finds both files done
    again = ingest_dataset(cfg(tmp_path, sidecar, test_split_file=str(split)), progress=False)
    assert (again.ingested, again.skipped_existing) == (0, 2)


def test_one_table_episode_column_multi_hot_and_an_upsampler(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    write_video(raw / "run.mp4", 2, 12)
    acts = np.array([[i % 2, (i // 2) % 2, 1] for i in range(12)])
    table = pd.DataFrame({"file": "run.mp4", "frame": range(12), "episode": [0] * 5 + [1] * 7,
                          "jump": acts[:, 0], "left": acts[:, 1], "fire": acts[:, 2],
                          "reward": np.arange(12) / 10, "terminated": [0, 0, 0, 0, 1] + [0] * 7})
    table.to_parquet(tmp_path / "actions.parquet")
    c = cfg(tmp_path, raw, low_res_size=[16, 16], test_fraction=0.5,
        video={"actions_file": str(tmp_path / "actions.parquet"), "action_columns": ["jump", "left", "fire"],
               "episode_column": "episode"})
    assert c.upsampling_factor == 2
    summary = ingest_dataset(c, progress=False)
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert index["action"] == {"kind": "multi_hot", "dim": 3}
    # two episodes; fraction 0.5 of 2 -> 1 test episode at sorted position int(0.5 * 2) = 1
    assert index["splits"] == {"train": ["run.mp4#0"], "test": ["run.mp4#1"]} and summary.ingested == 1
    ep0, ep1 = store(tmp_path, "full_res", "train").load_episode(0), store(tmp_path, "full_res", "test").load_episode(0)
    assert len(ep0.obs) == 5 and len(ep1.obs) == 7
    check_padded_frames(ep1.obs, 2, first=5)
    np.testing.assert_array_equal(ep1.act, acts[5:].astype(np.float32))
    np.testing.assert_allclose(ep0.rew, np.arange(5) / 10, rtol=1e-6)
    np.testing.assert_array_equal(ep0.end, [0, 0, 0, 0, 1])
    low = store(tmp_path, "low_res", "test").load_episode(0)
    assert low.obs.shape == (7, 16, 16, 3)  # the same episode at half the size: bars of 2 rows (the filter
    # blurs row 1 and 14), the colour in rows 4-11
    assert low.obs[:, 0].max() <= TOL and low.obs[:, 15].max() <= TOL
    for i in range(7):
        assert np.abs(low.obs[i, 4:12].astype(int) - colour(2, 5 + i)).max() <= TOL


def test_a_column_of_vectors_is_continuous(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    write_video(raw / "drive.mp4", 0, 6)
    (raw / "drive.csv").write_text("steer\n" + "".join(f'"[{i / 10}, -1]"\n' for i in range(6)))
    ingest_dataset(cfg(tmp_path, raw, video={"action_columns": ["steer"], "frame_column": None}), progress=False)
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert index["action"] == {"kind": "continuous", "dim": 2}
    ep = store(tmp_path, "low_res", "train").load_episode(0)
    np.testing.assert_allclose(ep.act, [[i / 10, -1] for i in range(6)], rtol=1e-6)
    # one real-valued column: vectors of width 1
    (raw / "drive.csv").write_text("steer\n" + "".join(f"{i / 4}\n" for i in range(6)))
    c = cfg(tmp_path, raw, out_dir=str(tmp_path / "out1"), video={"action_columns": ["steer"], "frame_column": None})
    ingest_dataset(c, progress=False)
    assert json.loads((tmp_path / "out1" / "index.json").read_text())["action"] == {"kind": "continuous", "dim": 1}
    ep = ReplayStore(tmp_path / "out1" / "low_res" / "train", create=False).load_episode(0)
    np.testing.assert_allclose(ep.act, [[i / 4] for i in range(6)], rtol=1e-6)


def _corrupt(raw: Path) -> str:
    good = (raw / "clip_a.mp4").read_bytes()
    (raw / "zz.mp4").write_bytes(good[: len(good) // 3])  # cut before the index: undecodable
    (raw / "zz.csv").write_text("frame,action\n" + "".join(f"{i},0\n" for i in range(10)))
    return "cannot decode the video"


def _short_table(raw: Path) -> str:
    write_video(raw / "zz.mp4", 3, 9)
    (raw / "zz.csv").write_text("frame,action\n" + "".join(f"{i},1\n" for i in range(7)))
    return r"zz.mp4 has 9 frames but .*zz.csv has 7 rows for it \(rows missing from the table from frame 7"


def _wrong_width(raw: Path) -> str:
    write_video(raw / "zz.mp4", 3, 5)
    rows = ["0 1", "1 0", "0 1", "1 0 1", "0 0"]  # row 3 has three values
    (raw / "zz.csv").write_text("frame,action\n" + "".join(f'{i},"{r}"\n' for i, r in enumerate(rows)))
    return r"zz.csv: row 3 \(zz.mp4 frame 3\): action column 'action' has 3 values, expected 2"


@pytest.mark.parametrize("make_bad", [_corrupt, _short_table, _wrong_width], ids=["corrupt_video", "short_table",
                                                                                  "wrong_width"])
def test_a_bad_file_is_named_and_nothing_of_it_is_written(tmp_path: Path, make_bad) -> None:
    raw = tmp_path / "raw"
    write_video(raw / "clip_a.mp4", 0, 4)
    if make_bad is _wrong_width:
        (raw / "clip_a.csv").write_text('frame,action\n0,"1 0"\n1,"0 1"\n2,"1 1"\n3,"0 0"\n')
    else:
        (raw / "clip_a.csv").write_text("frame,action\n0,0\n1,1\n2,1\n3,0\n")
    message = make_bad(raw)  # zz.* sorts after clip_a: clip_a is committed first
    c = cfg(tmp_path, raw)
    with pytest.raises(DatasetError, match=message) as err:
        ingest_dataset(c, progress=False)
    assert "zz." in str(err.value) and "\n" not in str(err.value)
    if make_bad is _wrong_width:  # a table error is found while listing: nothing but the writer's lock
        assert nothing_written(tmp_path / "out")
    else:  # a video error when its turn comes: clip_a was committed, nothing of zz was written
        index = json.loads((tmp_path / "out" / "index.json").read_text())
        assert index["splits"]["train"] == ["clip_a.mp4"] and index["in_progress"] is None
        s = store(tmp_path, "low_res", "train")
        assert s.num_episodes == 1 and s.lengths.tolist() == [4]
    # skip mode records the file and its error, and carries on
    summary = ingest_dataset(cfg(tmp_path, raw, on_bad_file="skip"), progress=False)
    assert list(summary.bad_files) == ["zz.mp4"] and summary.ingested == (1 if make_bad is _wrong_width else 0)
    assert "zz.mp4" in json.loads((tmp_path / "out" / "index.json").read_text())["bad_files"]


def test_missing_action_column_and_missing_table_are_clear(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    write_video(raw / "clip.mp4", 0, 3)
    with pytest.raises(DatasetError, match=r"clip.mp4: no action table clip.csv or clip.parquet"):
        ingest_dataset(cfg(tmp_path, raw), progress=False)
    (raw / "clip.csv").write_text("frame,act\n0,0\n1,0\n2,0\n")
    with pytest.raises(DatasetError, match=r"clip.csv: no action column 'action'"):
        ingest_dataset(cfg(tmp_path, raw), progress=False)
    assert nothing_written(tmp_path / "out")


def test_a_video_killed_between_its_episodes_is_rolled_back_and_redone(tmp_path: Path, monkeypatch) -> None:
    raw = tmp_path / "raw"
    write_video(raw / "long.mp4", 1, 9)
    pd.DataFrame({"action": [i % 2 for i in range(9)], "episode": [0] * 4 + [1] * 5}).to_csv(raw / "long.csv",
                                                                                            index=False)
    c = cfg(tmp_path, raw, video={"episode_column": "episode", "frame_column": None})
    real_add = ReplayStore.add_chunk

    def killed_on_the_second_episode(self, chunk, episode_id=None, epoch=0):
        if self.num_episodes == 1:
            raise KeyboardInterrupt("killed after the first episode of long.mp4 was written")
        return real_add(self, chunk, episode_id, epoch)

    monkeypatch.setattr(ReplayStore, "add_chunk", killed_on_the_second_episode)
    with pytest.raises(KeyboardInterrupt):
        ingest_dataset(c, progress=False)
    monkeypatch.setattr(ReplayStore, "add_chunk", real_add)
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert index["in_progress"] == {"file_id": "long.mp4"} and index["splits"]["train"] == []
    summary = ingest_dataset(c, progress=False)
    assert summary.recovered == "long.mp4" and summary.ingested == 1
    s = store(tmp_path, "low_res", "train")
    assert s.lengths.tolist() == [4, 5]  # the half-written file's first episode was rolled back, not duplicated
    np.testing.assert_array_equal(s.load_episode(1).act, [0, 1, 0, 1, 0])
