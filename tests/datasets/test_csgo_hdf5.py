"""The CS:GO layout as a source: any number of frames per file, and the same stores through both pipelines."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from diamond_kedro.csgo.ingest import ingest
from diamond_kedro.datasets.csgo_hdf5 import CsgoDataError
from diamond_kedro.datasets.config import DatasetConfig
from diamond_kedro.datasets.ingest import ingest_dataset
from diamond_kedro.replay.store import ReplayStore
from tests.csgo.synthetic import action, make_tar, write_hdf5

T = 37  # not the published 1000


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    raw = tmp_path / "raw"
    raw.mkdir()
    files = [write_hdf5(tmp_path / "staging" / f"hdf5_dm_july2021_{n}.hdf5", n, T) for n in (1, 2)]
    make_tar(raw / "hdf5_dm_july2021_1_to_2.tar", files)
    write_hdf5(raw / "loose" / "hdf5_dm_july2021_3.hdf5", 3, 20)  # files need not agree on their length
    return raw


def test_any_number_of_frames_and_the_same_stores_as_the_csgo_pipeline(raw: Path, tmp_path: Path) -> None:
    split = tmp_path / "split.txt"
    split.write_text("hdf5_dm_july2021_2.hdf5\n")
    ingest(raw, tmp_path / "csgo", split, fsync=False, progress=False)  # frames_per_file None: any count
    d = DatasetConfig.model_validate({
        "name": "csgo2", "kind": "csgo_hdf5", "path": str(raw), "out_dir": str(tmp_path / "static"),
        "frame_size": [150, 280], "low_res_size": [30, 56], "resize": "stretch", "test_split_file": str(split),
        "fsync": False,
    })
    ingest_dataset(d, progress=False)
    a, b = (json.loads((tmp_path / p / "index.json").read_text()) for p in ("csgo", "static"))
    assert a["splits"] == b["splits"] == {
        "train": ["1-2/hdf5_dm_july2021_1.hdf5", "loose/hdf5_dm_july2021_3.hdf5"], "test": ["1-2/hdf5_dm_july2021_2.hdf5"]}
    assert a["action"] == b["action"] == {"kind": "multi_hot", "dim": 51}
    for res in ("low_res", "full_res"):
        for split_name in ("train", "test"):
            s1 = ReplayStore(tmp_path / "csgo" / res / split_name, create=False)
            s2 = ReplayStore(tmp_path / "static" / res / split_name, create=False)
            assert s1.lengths.tolist() == s2.lengths.tolist()
            for eid in range(s1.num_episodes):
                e1, e2 = s1.load_episode(eid), s2.load_episode(eid)
                for f in ("obs", "act", "rew", "end", "trunc"):
                    np.testing.assert_array_equal(getattr(e1, f), getattr(e2, f))
    ep = ReplayStore(tmp_path / "csgo" / "low_res" / "train", create=False).load_episode(1)
    assert ep.obs.shape == (20, 30, 56, 3)  # file 3 has 20 frames
    np.testing.assert_array_equal(ep.act, np.stack([action(3, i) for i in range(20)]).astype(np.float32))
    assert ReplayStore(tmp_path / "csgo" / "full_res" / "test", create=False).lengths.tolist() == [T]


def test_frames_per_file_still_enforces_a_count_when_set(raw: Path, tmp_path: Path) -> None:
    with pytest.raises(CsgoDataError, match=r"hdf5_dm_july2021_3.hdf5: missing key 'frame_20_x'"):
        ingest(raw, tmp_path / "out", None, frames_per_file=T, fsync=False, progress=False)


def test_an_index_written_before_the_static_family_resumes(raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "csgo"
    ingest(raw, out, None, fsync=False, progress=False)
    index = json.loads((out / "index.json").read_text())
    legacy = {"format": "diamond-kedro-csgo-index", "version": 1, "frames_per_file": None,
              "frame_size": [150, 280], "low_res_size": [30, 56], "splits": index["splits"],
              "in_progress": None, "bad_files": {}}  # the keys the old ingest wrote
    (out / "index.json").write_text(json.dumps(legacy))
    write_hdf5(raw / "loose" / "hdf5_dm_july2021_4.hdf5", 4, 5)
    summary = ingest(raw, out, None, fsync=False, progress=False)
    assert (summary.ingested, summary.skipped_existing) == (1, 3)
    after = json.loads((out / "index.json").read_text())
    assert after["format"] == "diamond-kedro-csgo-index" and after["splits"]["train"][-1] == "loose/hdf5_dm_july2021_4.hdf5"
