"""Every bad value is named (file and row) and none changes the data: a bad file stops the ingest in one line
before anything is written (``on_bad_file: raise``), or is left out as if it were absent (``skip``)."""

from __future__ import annotations

import json
import logging
import shutil
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from diamond_kedro.datasets.config import DatasetConfig
from diamond_kedro.datasets.csgo_hdf5 import CsgoDataError
from diamond_kedro.datasets.ingest import ingest_dataset
from diamond_kedro.datasets.video import decode_video
from diamond_kedro.datasets.writer import DatasetError
from diamond_kedro.replay.store import ReplayStore

from .synthetic import H, W, make_minari, nothing_written, write_video


def cfg(raw: Path, out: Path, **kw) -> DatasetConfig:
    base = {"name": "game", "kind": "video", "path": str(raw), "out_dir": str(out), "frame_size": [16, 16],
            "fsync": False, "test_fraction": 0.34}
    return DatasetConfig.model_validate({**base, **kw})


def dump(out: Path) -> dict:
    """What an ingest made: the index's action, splits and bad files, and every stored episode."""
    index = json.loads((out / "index.json").read_text())
    episodes = {}
    for split in ("train", "test"):
        s = ReplayStore(out / "low_res" / split, create=False)
        for eid in range(s.num_episodes):
            ep = s.load_episode(eid)
            episodes[(split, eid)] = {f: getattr(ep, f).tolist() for f in ("act", "rew", "end", "trunc")}
    return {"action": index["action"], "splits": index["splits"], "bad_files": sorted(index["bad_files"]),
            "episodes": episodes}


def table(n: int, actions: list, **extra) -> pd.DataFrame:
    return pd.DataFrame({"frame": range(n), "action": actions, **extra})


# three videos of discrete ids (3 ids: 0..2) with rewards and terminations; the bad cell goes into the FIRST
# table (a.mp4), the one whose first value decided the action type of the whole dataset before
CASES = {
    "abc_action": ("action", 0, "abc", r"a\.csv: row 0 \(a\.mp4 frame 0\): action 'abc'"),
    "inf_reward": ("reward", 2, "inf", r"a\.csv: row 2 \(a\.mp4 frame 2\): column 'reward' is inf, expected a finite"),
    "terminated_minus_1": ("terminated", 1, "-1", r"a\.csv: row 1 \(a\.mp4 frame 1\): column 'terminated' is -1"),
    "terminated_half": ("terminated", 3, "0.5", r"a\.csv: row 3 \(a\.mp4 frame 3\): column 'terminated' is 0\.5"),
}


def write_good(raw: Path, names=("a", "b", "c")) -> None:
    for v, name in enumerate(names):
        n = 4 + v
        write_video(raw / f"{name}.mp4", v, n)
        rows = table(n, [(i + v) % 3 for i in range(n)], reward=[0.5 * i for i in range(n)],
                     terminated=[0] * (n - 1) + [1])
        rows.to_csv(raw / f"{name}.csv", index=False)


def spoil(csv: Path, column: str, row: int, value: str) -> None:
    lines = csv.read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[1 + row].split(",")
    cells[header.index(column)] = value
    lines[1 + row] = ",".join(cells)
    csv.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_cell_is_named_and_the_dataset_is_as_if_its_file_were_absent(tmp_path: Path, case: str, caplog) -> None:
    column, row, value, message = CASES[case]
    raw = tmp_path / "raw"
    write_good(raw)
    spoil(raw / "a.csv", column, row, value)
    # on_bad_file: raise -> one line naming file and row, and nothing written
    with pytest.raises(DatasetError, match=message) as err:
        ingest_dataset(cfg(raw, tmp_path / "out"), progress=False)
    assert "\n" not in str(err.value)
    assert nothing_written(tmp_path / "out")
    # on_bad_file: skip -> a warning names the file; the dataset equals one made without that file
    with caplog.at_level(logging.WARNING, logger="diamond_kedro.datasets.writer"):
        summary = ingest_dataset(cfg(raw, tmp_path / "skip", on_bad_file="skip"), progress=False)
    assert list(summary.bad_files) == ["a.mp4"] and summary.ingested == 2
    assert any("skipping" in r.getMessage() and "a.csv: row" in r.getMessage() for r in caplog.records)
    absent = tmp_path / "absent"
    shutil.copytree(raw, absent)
    (absent / "a.mp4").unlink()
    (absent / "a.csv").unlink()
    ingest_dataset(cfg(absent, tmp_path / "ref"), progress=False)
    got, want = dump(tmp_path / "skip"), dump(tmp_path / "ref")
    assert got["bad_files"] == ["a.mp4"] and want["bad_files"] == []
    assert got["action"] == want["action"] == {"kind": "discrete", "dim": 3}
    got.pop("bad_files"), want.pop("bad_files")
    assert got == want


def test_a_wrong_width_in_the_only_table_names_its_row_and_the_width(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    write_video(raw / "only.mp4", 0, 5)
    rows = ["0 1", "1 0", "0 1", "1 0 1", "0 0"]  # row 3 has three values, the others two
    (raw / "only.csv").write_text("frame,action\n" + "".join(f'{i},"{r}"\n' for i, r in enumerate(rows)))
    with pytest.raises(DatasetError, match=r"only\.csv: row 3 \(only\.mp4 frame 3\): action column 'action' has 3 "
                                           r"values, expected 2$"):
        ingest_dataset(cfg(raw, tmp_path / "out", test_fraction=0), progress=False)
    summary = ingest_dataset(cfg(raw, tmp_path / "out", test_fraction=0, on_bad_file="skip"), progress=False)
    assert list(summary.bad_files) == ["only.mp4"] and summary.num_episodes == {"train": 0, "test": 0}


def test_a_declared_kind_and_width_are_used_as_given(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    write_video(raw / "a.mp4", 0, 3)
    (raw / "a.csv").write_text('frame,action\n0,"1 0 1"\n1,"0 1 0"\n2,"1 1 0"\n')
    write_video(raw / "b.mp4", 1, 2)
    (raw / "b.csv").write_text('frame,action\n0,"1 0"\n1,"0 1"\n')
    with pytest.raises(DatasetError, match=r"b\.csv: row 0 \(b\.mp4 frame 0\): .* has 2 values, expected 3"):
        ingest_dataset(cfg(raw, tmp_path / "out", action_kind="multi_hot", num_actions=3), progress=False)


def write_hdf5_frames(path: Path, shape: tuple[int, ...], n: int = 1) -> Path:
    """An HDF5 file whose frames declare ``shape``: chunked, compressed, never written -- a few KB on disk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for i in range(n):
            f.create_dataset(f"frame_{i}_x", shape=shape, dtype=np.uint8, chunks=(64, 64, 3), compression="gzip")
            f.create_dataset(f"frame_{i}_y", data=np.zeros(51))
    return path


def test_an_hdf5_declaring_a_huge_frame_is_refused_before_allocation(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    bomb = write_hdf5_frames(raw / "loose" / "bomb_1.hdf5", (4000, 8000, 3))  # 96 MB declared
    assert bomb.stat().st_size < 64 * 1024
    d = {"kind": "csgo_hdf5", "frame_size": [30, 56], "test_fraction": 0}
    tracemalloc.start()
    try:
        with pytest.raises(CsgoDataError, match=r"bomb_1\.hdf5: frame_0_x declares frames of 4000x8000, larger than "
                                                r"2160x3840 \(dataset\.csgo_hdf5\.max_frame_size\)"):
            ingest_dataset(cfg(raw, tmp_path / "out", **d), progress=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20, peak  # the 96 MB were never allocated
    # the bound is the config's: raised above the declared size the same file is read (zeros: its fill value)
    ok = ingest_dataset(cfg(raw, tmp_path / "out2", **d, csgo_hdf5={"max_frame_size": [4000, 8000]}), progress=False)
    assert ok.ingested == 1


def test_an_unreadable_tar_is_one_bad_file_not_the_end_of_the_listing(tmp_path: Path) -> None:
    from tests.csgo.synthetic import write_hdf5

    raw = tmp_path / "raw"
    write_hdf5(raw / "loose" / "hdf5_dm_july2021_3.hdf5", 3, 4)
    (raw / "hdf5_dm_july2021_1_to_2.tar").write_bytes(b"\x00" * 100 + b"not a tar" * 200)
    d = {"kind": "csgo_hdf5", "frame_size": [30, 56], "test_fraction": 0}
    with pytest.raises(DatasetError, match=r"^cannot read tar archive .*hdf5_dm_july2021_1_to_2\.tar") as err:
        ingest_dataset(cfg(raw, tmp_path / "out", **d), progress=False)
    assert "\n" not in str(err.value) and nothing_written(tmp_path / "out")
    summary = ingest_dataset(cfg(raw, tmp_path / "out", **d, on_bad_file="skip"), progress=False)
    assert list(summary.bad_files) == ["hdf5_dm_july2021_1_to_2.tar"] and summary.ingested == 1
    assert json.loads((tmp_path / "out" / "index.json").read_text())["splits"]["train"] == [
        "loose/hdf5_dm_july2021_3.hdf5"]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_minari_reward_that_is_not_finite_is_named_and_skipped(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    path = make_minari(tmp_path / "minari", "test/grid-v0", [4, 5, 3], bad_reward=(1, 2))
    d = {"kind": "minari", "frame_size": [20, 24], "test_fraction": 0}
    with pytest.raises(DatasetError, match=r"episode 1: step 2: reward inf is not a finite float32$"):
        ingest_dataset(cfg(path, tmp_path / "out", **d), progress=False)
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert index["splits"]["train"] == ["episode_0"] and index["in_progress"] is None  # nothing of episode 1
    assert ReplayStore(tmp_path / "out" / "low_res" / "train", create=False).num_episodes == 1
    summary = ingest_dataset(cfg(path, tmp_path / "out", **d, on_bad_file="skip"), progress=False)
    assert list(summary.bad_files) == ["episode_1"]
    assert json.loads((tmp_path / "out" / "index.json").read_text())["splits"]["train"] == ["episode_0", "episode_2"]


def test_decode_video_streams_into_one_array(tmp_path: Path) -> None:
    n = 25
    path = write_video(tmp_path / "v.mp4", 0, n)
    size = n * H * W * 3
    tracemalloc.start()
    try:
        frames = decode_video(path, n)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert frames.shape == (n, H, W, 3)
    assert peak < 1.3 * size, (peak, size)  # one copy of the video (a stack of a list held two)
    with pytest.raises(DatasetError, match=r"v\.mp4: 25 frames, 24 expected"):
        decode_video(path, n - 1)


def test_bad_cells_in_several_action_columns_and_ids_beyond_the_declared_count(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    for v, name in enumerate(("a", "b")):
        write_video(raw / f"{name}.mp4", v, 3)
        pd.DataFrame({"frame": range(3), "jump": [0, 1, 0], "fire": [1, 1, 0]}).to_csv(raw / f"{name}.csv", index=False)
    spoil(raw / "b.csv", "fire", 2, "abc")
    video = {"action_columns": ["jump", "fire"]}
    with pytest.raises(DatasetError, match=r"b\.csv: row 2 \(b\.mp4 frame 2\): action 0, 'abc' in columns 'jump', "
                                           r"'fire' is empty, not numeric or not finite$"):
        ingest_dataset(cfg(raw, tmp_path / "out", video=video), progress=False)
    summary = ingest_dataset(cfg(raw, tmp_path / "skip", video=video, on_bad_file="skip"), progress=False)
    assert list(summary.bad_files) == ["b.mp4"]
    assert json.loads((tmp_path / "skip" / "index.json").read_text())["action"] == {"kind": "multi_hot", "dim": 2}
    # discrete ids with a declared count: an id beyond it is a bad row, not a larger action space
    (raw / "b.csv").write_text("frame,action\n0,1\n1,4\n2,0\n")
    (raw / "a.csv").write_text("frame,action\n0,1\n1,2\n2,0\n")
    with pytest.raises(DatasetError, match=r"b\.csv: row 1 \(b\.mp4 frame 1\): action 4\.0 is not an action id in "
                                           r"\[0, 3\)$"):
        ingest_dataset(cfg(raw, tmp_path / "ids", action_kind="discrete", num_actions=3), progress=False)
