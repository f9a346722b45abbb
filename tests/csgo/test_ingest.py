"""Ingest of the published CS:GO layout (spec §7.1) from synthetic HDF5 files and a tar of them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from diamond_kedro.csgo.ingest import ingest
from diamond_kedro.datasets.csgo_hdf5 import CsgoDataError, find_sources, load_test_split
from diamond_kedro.datasets.writer import downscale
from diamond_kedro.replay.store import ReplayStore

from .synthetic import action, make_tar, write_hdf5

T = 12  # frames per synthetic file (the published files have 1000; everything else is the published layout)


def rgb(file_number: int, i: int) -> tuple[int, int, int]:
    """The synthetic BGR frame is B = 10 + i, G = 100 + file, R = 200 + i % 50, so RGB reverses it."""
    return (200 + i % 50, 100 + file_number, 10 + i)


@pytest.fixture
def source(tmp_path: Path) -> tuple[Path, Path]:
    raw = tmp_path / "raw"
    raw.mkdir()
    files = [write_hdf5(tmp_path / "staging" / f"hdf5_dm_july2021_{n}.hdf5", n, T) for n in (1, 2)]
    make_tar(raw / "hdf5_dm_july2021_1_to_2.tar", files)
    write_hdf5(raw / "extra" / "hdf5_dm_july2021_3.hdf5", 3, T)
    split = tmp_path / "test_split.txt"
    split.write_text("# comment\nhdf5_dm_july2021_2.hdf5\n")
    return raw, split


def run(raw: Path, split: Path, out: Path, **kw):
    return ingest(raw, out, split, frames_per_file=T, fsync=False, progress=False, **kw)


def stores(out: Path) -> dict[str, ReplayStore]:
    return {f"{r}/{s}": ReplayStore(out / r / s, create=False) for r in ("low_res", "full_res") for s in ("train", "test")}


def check_episode(out: Path, split: str, eid: int, file_number: int) -> None:
    for res, (h, w) in (("full_res", (150, 280)), ("low_res", (30, 56))):
        ep = ReplayStore(out / res / split, create=False).load_episode(eid)
        assert ep.obs.shape == (T, h, w, 3) and ep.obs.dtype == np.uint8
        for i in (0, 5, T - 1):
            # constant frames: antialiased bicubic weights sum to 1, so the low-res frame has the same colour
            assert (ep.obs[i] == np.array(rgb(file_number, i), dtype=np.uint8)).all(), (res, i)
        assert ep.act.dtype == np.float32 and ep.act.shape == (T, 51)
        np.testing.assert_array_equal(ep.act, np.stack([action(file_number, i) for i in range(T)]).astype(np.float32))
        assert not ep.rew.any() and not ep.end.any() and not ep.trunc.any()


def test_ingest_values_bgr_to_rgb_sizes_and_split(source, tmp_path: Path) -> None:
    raw, split = source
    out = tmp_path / "out"
    summary = run(raw, split, out)
    assert summary.ingested == 3 and summary.num_episodes == {"train": 2, "test": 1}
    index = json.loads((out / "index.json").read_text())
    # tar hdf5_dm_july2021_1_to_2.tar -> folder "1-2" (the authors' original_file_id); loose files keep their folder
    assert index["splits"] == {
        "train": ["1-2/hdf5_dm_july2021_1.hdf5", "extra/hdf5_dm_july2021_3.hdf5"],
        "test": ["1-2/hdf5_dm_july2021_2.hdf5"],
    }
    check_episode(out, "train", 0, 1)
    check_episode(out, "train", 1, 3)
    check_episode(out, "test", 0, 2)
    # idempotent: a second call finds everything done
    again = run(raw, split, out)
    assert (again.ingested, again.skipped_existing) == (0, 3)
    assert {k: s.num_episodes for k, s in stores(out).items()} == {
        "low_res/train": 2, "low_res/test": 1, "full_res/train": 2, "full_res/test": 1}


def test_downscale_is_monotone_across_an_edge_and_clamped() -> None:
    # left half black, right half white: bicubic overshoots below 0 / above 255 next to the edge; without the
    # clamp the uint8 conversion would wrap (e.g. -3 -> 253) and break monotonicity along x.
    x = np.zeros((1, 150, 280, 3), dtype=np.uint8)
    x[:, :, 140:] = 255
    y = downscale(x, (30, 56))[0, 0, :, 0].astype(int)
    assert y.shape == (56,)
    assert y[0] == 0 and y[-1] == 255 and (np.diff(y) >= 0).all(), y
    assert y[27] < 128 < y[28]  # the edge stays between low-res columns 27 and 28 (140 / 5 = 28)


def test_published_split_has_500_files_and_missing_list_is_a_clear_error(tmp_path: Path) -> None:
    names = load_test_split(None)
    assert len(names) == 500 and "hdf5_dm_july2021_3.hdf5" in names and "hdf5_dm_july2021_1.hdf5" not in names
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        load_test_split(tmp_path / "nope.txt")


def test_resumes_after_an_interrupted_file(source, tmp_path: Path, monkeypatch) -> None:
    raw, split = source
    out = tmp_path / "out"
    real_add = ReplayStore.add_chunk

    def crash_on_second_low_res_train(self, chunk, episode_id=None, epoch=0):
        if self.root == out / "low_res" / "train" and self.num_episodes == 1:
            raise KeyboardInterrupt("killed after the full-res chunk of file 3 was written")
        return real_add(self, chunk, episode_id, epoch)

    monkeypatch.setattr(ReplayStore, "add_chunk", crash_on_second_low_res_train)
    with pytest.raises(KeyboardInterrupt):
        run(raw, split, out)
    monkeypatch.setattr(ReplayStore, "add_chunk", real_add)
    index = json.loads((out / "index.json").read_text())
    assert index["in_progress"]["file_id"] == "extra/hdf5_dm_july2021_3.hdf5"
    assert ReplayStore(out / "full_res" / "train").num_episodes == 2  # the half-ingested file's chunk is there

    summary = run(raw, split, out)
    assert summary.recovered == "extra/hdf5_dm_july2021_3.hdf5"
    assert (summary.ingested, summary.skipped_existing) == (1, 2)
    assert {k: s.num_episodes for k, s in stores(out).items()} == {
        "low_res/train": 2, "low_res/test": 1, "full_res/train": 2, "full_res/test": 1}
    check_episode(out, "train", 1, 3)
    assert json.loads((out / "index.json").read_text())["in_progress"] is None


@pytest.mark.parametrize(
    "make_bad, message",
    [
        (lambda p: p.write_bytes(b"\x89HDF\r\n\x1a\n" + b"garbage" * 100), "unreadable or corrupt HDF5"),
        (lambda p: write_hdf5(p, 4, T, skip_key="frame_3_y"), "missing key 'frame_3_y'"),
        (lambda p: write_hdf5(p, 4, T, bad_shape_at=2), r"frame_2_x has shape \(149, 280, 3\)"),
        (lambda p: write_hdf5(p, 4, T - 1), "missing key 'frame_11_x'"),
    ],
    ids=["corrupt", "missing_key", "wrong_frame_size", "too_few_frames"],
)
def test_bad_file_is_named_and_nothing_ingested_is_lost(source, tmp_path: Path, make_bad, message) -> None:
    raw, split = source
    out = tmp_path / "out"
    bad = raw / "extra" / "hdf5_dm_july2021_4.hdf5"  # sorted last: files 1-3 are ingested before it
    make_bad(bad)
    with pytest.raises(CsgoDataError, match=message) as err:
        run(raw, split, out)
    assert "hdf5_dm_july2021_4.hdf5" in str(err.value)
    # files 1-3 are committed, and the stores open cleanly (no repair needed) with their data intact
    index = json.loads((out / "index.json").read_text())
    assert index["in_progress"] is None and len(index["splits"]["train"]) == 2
    assert {k: s.num_episodes for k, s in stores(out).items()} == {
        "low_res/train": 2, "low_res/test": 1, "full_res/train": 2, "full_res/test": 1}
    check_episode(out, "train", 1, 3)
    # skip mode records the file and carries on
    summary = run(raw, split, out, on_bad_file="skip")
    assert list(summary.bad_files) == ["extra/hdf5_dm_july2021_4.hdf5"] and summary.ingested == 0


def test_missing_source_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="csgo.data.source_dir"):
        ingest(tmp_path / "absent", tmp_path / "out", None, progress=False)


def test_reads_the_tar_in_place_without_extracting(source, tmp_path: Path) -> None:
    raw, split = source
    sources = find_sources(raw)
    assert [s.file_id for s in sources] == [
        "1-2/hdf5_dm_july2021_1.hdf5", "1-2/hdf5_dm_july2021_2.hdf5", "extra/hdf5_dm_july2021_3.hdf5"]
    run(raw, split, tmp_path / "out")
    assert sorted(p.name for p in raw.rglob("*.hdf5")) == ["hdf5_dm_july2021_3.hdf5"]  # nothing was extracted
