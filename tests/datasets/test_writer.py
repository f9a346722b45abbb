"""The replay-store writer's pure parts: resizing, action specs, the split (hand-computed expectations)."""

from __future__ import annotations

import numpy as np
import pytest

from diamond_kedro.datasets.writer import (
    ActionSpec, DatasetError, choose_test_episodes, fit_box, infer_action_kind, resize_frames,
)
from diamond_kedro.training.csgo_run import fidelity_at_horizons


def test_fit_box_keeps_the_aspect_ratio() -> None:
    # 150x280 into 64x64: scale min(64/150, 64/280) = 0.2286 -> 34.29 x 64 -> 34 x 64, centred: top (64-34)//2 = 15
    assert fit_box((150, 280), (64, 64)) == (34, 64, 15, 0)
    # 48x64 into 32x32: scale 0.5 -> 24 x 32, top 4
    assert fit_box((48, 64), (32, 32)) == (24, 32, 4, 0)
    # a tall 64x16 into 32x32: scale 0.5 -> 32 x 8, left (32-8)//2 = 12
    assert fit_box((64, 16), (32, 32)) == (32, 8, 0, 12)


def test_pad_letterboxes_and_stretch_fills() -> None:
    x = np.zeros((1, 48, 64, 3), dtype=np.uint8)
    x[..., :32, :] = (200, 10, 10)  # left half red
    x[..., 32:, :] = (10, 10, 200)  # right half blue
    pad = resize_frames(x, (32, 32), "pad")[0]
    assert pad.shape == (32, 32, 3) and pad.dtype == np.uint8
    assert not pad[:4].any() and not pad[28:].any()  # black bars: rows 0-3 and 28-31
    assert (pad[4:28, :14] == (200, 10, 10)).all() and (pad[4:28, 18:] == (10, 10, 200)).all()
    stretch = resize_frames(x, (32, 32), "stretch")[0]
    assert (stretch[:, :14] == (200, 10, 10)).all() and (stretch[:, 18:] == (10, 10, 200)).all()
    # frames already at the size are passed through untouched (the CS:GO path's full-res frames)
    assert resize_frames(x, (48, 64), "pad") is x


def test_action_specs_check_and_name_the_bad_step() -> None:
    d = ActionSpec("discrete", 4)
    np.testing.assert_array_equal(d.check(np.array([0.0, 3.0, 1.0]), "f"), [0, 3, 1])
    assert d.check(np.array([0.0, 3.0]), "f").dtype == np.int64
    with pytest.raises(DatasetError, match=r"clip.mp4: step 2: action id 4 outside \[0, 4\)"):
        d.check(np.array([0, 1, 4]), "clip.mp4")
    with pytest.raises(DatasetError, match="step 1: discrete action 1.5 is not an integer"):
        d.check(np.array([0, 1.5]), "f")
    m = ActionSpec("multi_hot", 3)
    with pytest.raises(DatasetError, match="step 1: multi-hot action holds values other than 0 and 1"):
        m.check(np.array([[0, 1, 0], [0, 0.5, 1]]), "f")
    with pytest.raises(DatasetError, match=r"actions have width 2, expected 3 \(continuous\)"):
        ActionSpec("continuous", 3).check(np.zeros((5, 2)), "f")
    with pytest.raises(ValueError, match="action kind"):
        ActionSpec("analog", 2)
    assert infer_action_kind(np.array([1, 2])) == "discrete"
    assert infer_action_kind(np.array([[0, 1], [1, 1]])) == "multi_hot"
    assert infer_action_kind(np.array([[0.5, 1], [1, 1]])) == "continuous"


def test_split_by_fraction_is_evenly_spaced_and_order_free() -> None:
    names = [f"ep{i}" for i in range(10)]
    # k = round(0.2 * 10) = 2 at sorted positions int(0.5 * 10/2) = 2 and int(1.5 * 10/2) = 7
    assert choose_test_episodes(names[::-1], None, 0.2) == {"ep2", "ep7"}
    assert choose_test_episodes(names, None, 0.0) == set()
    assert choose_test_episodes(["a", "b"], None, 0.01) == {"b"}  # at least one, never all: int(0.5*2/1) = 1
    assert choose_test_episodes(["only"], None, 0.5) == set()  # one episode trains
    # a list names files (by path or bare name) or single episodes of a file
    eps = ["clips/a.mp4#0", "clips/a.mp4#1", "clips/b.mp4", "c.mp4#7"]
    assert choose_test_episodes(eps, {"a.mp4", "c.mp4#7"}, None) == {"clips/a.mp4#0", "clips/a.mp4#1", "c.mp4#7"}


def test_fidelity_against_hand_computed_psnr() -> None:
    real = np.full((4, 16, 16, 3), 100, dtype=np.uint8)  # the last context frame + 3 real future frames
    imagined = np.full((3, 16, 16, 3), 110, dtype=np.uint8)
    m = fidelity_at_horizons(real, imagined, [1, 3, 9])
    # PSNR = 10 log10(255^2 / MSE), MSE = 10^2 -> 28.1308 dB; copying the last frame is exact here (100 dB cap)
    assert m["psnr_h1"] == pytest.approx(10 * np.log10(255**2 / 100), abs=1e-3)
    assert m["psnr_copy_last_h3"] == 100.0 and m["ssim_copy_last_h1"] == pytest.approx(1.0)
    assert m["ssim_h3"] < 1.0
    assert "psnr_h9" not in m  # beyond the imagined horizon


def test_config_derives_the_upsampling_factor_and_names_bad_values() -> None:
    from diamond_kedro.datasets.config import StaticWorldModelConfigError, parse_static_config

    cfg = parse_static_config({"dataset": {"frame_size": [150, 280], "low_res_size": [30, 56]}})
    assert cfg.upsampling_factor == 5 and cfg.run_key == "mygame_default"
    assert parse_static_config({}).upsampling_factor is None  # no low_res_size: no upsampler
    for bad, where in (({"frame_size": [64, 64], "low_res_size": [30, 30]}, "integer factor"),  # 64/30 not whole
                       ({"frame_size": [60, 80], "low_res_size": [30, 20]}, "integer factor"),  # 2 vs 4
                       ({"kind": "youtube"}, "static_world_model.dataset.kind"),
                       ({"name": "atari"}, "static_world_model.dataset.name"),
                       ({"test_fraction": 1.0}, "static_world_model.dataset.test_fraction")):
        with pytest.raises(StaticWorldModelConfigError, match=where):
            parse_static_config({"dataset": bad})
    with pytest.raises(StaticWorldModelConfigError, match="static_world_model.upsampler.model.upsampling_factor"):
        parse_static_config({"upsampler": {"model": {"upsampling_factor": 5}}})  # derived, not set


def test_time_split_cut_of_a_single_episode() -> None:
    from diamond_kedro.datasets.writer import time_split_cut

    # T=37, 10 %: round(3.7) = 4 test frames -> cut at 33
    assert time_split_cut(37, 0.1) == 33
    # T=11, 10 %: round(1.1) = 1, raised to 2 frames (one transition) -> cut at 9
    assert time_split_cut(11, 0.1) == 9
    # T=5, 90 %: round(4.5) = 4 (banker's rounding), capped so training keeps 2 frames -> cut at 2
    assert time_split_cut(5, 0.9) == 2
    # too short for two parts of 2 frames, or no test fraction: no split
    assert time_split_cut(3, 0.5) is None and time_split_cut(100, 0.0) is None


class _OneEpisode:
    """A source of one unit holding one episode whose frame i is filled with the value i (so the split is visible)."""

    kind = "fake"

    def __init__(self, t: int, name: str = "clip.mp4") -> None:
        self.t, self.name = t, name

    def units(self):
        from diamond_kedro.datasets.writer import Unit

        return [Unit(self.name, (self.name,), self.name)]

    def action_spec(self) -> ActionSpec:
        return ActionSpec("discrete", 3)

    def settings(self) -> dict:
        return {}

    def read(self, unit):
        from diamond_kedro.datasets.writer import RawEpisode

        obs = np.broadcast_to(np.arange(self.t, dtype=np.uint8)[:, None, None, None], (self.t, 8, 8, 3)).copy()
        end = np.zeros(self.t, np.uint8)
        end[-1] = 1
        return [RawEpisode(self.name, obs, np.arange(self.t) % 3, end=end)]


def test_a_single_video_gets_its_last_frames_as_test_episode(tmp_path, caplog) -> None:
    from diamond_kedro.datasets.writer import write_dataset
    from diamond_kedro.replay.store import ReplayStore

    summary = write_dataset(_OneEpisode(20), tmp_path / "ds", (8, 8), None, test_fraction=0.2, fsync=False, progress=False)
    assert summary.num_episodes == {"train": 1, "test": 1}
    import json

    index = json.loads((tmp_path / "ds/index.json").read_text())
    # 20 frames, 20 % -> 4 test frames: [16:20]; training keeps [:16]; no segment can cross the cut
    assert index["splits"] == {"train": ["clip.mp4[:16]"], "test": ["clip.mp4[16:20]"]}
    train = ReplayStore(tmp_path / "ds/low_res/train", create=False).load_episode(0)
    test = ReplayStore(tmp_path / "ds/low_res/test", create=False).load_episode(0)
    assert list(train.obs[:, 0, 0, 0]) == list(range(16)) and list(test.obs[:, 0, 0, 0]) == [16, 17, 18, 19]
    assert list(train.act) == [i % 3 for i in range(16)] and list(test.act) == [i % 3 for i in range(16, 20)]
    # the recording's end stays with the test part; the training part is truncated at the cut
    assert train.end.sum() == 0 and train.trunc[-1] == 1 and test.end[-1] == 1

    # fraction 0: no test episode, and the ingest says evaluation will be skipped
    with caplog.at_level("WARNING", logger="diamond_kedro.datasets.writer"):
        summary = write_dataset(_OneEpisode(20), tmp_path / "none", (8, 8), None, test_fraction=0.0, fsync=False,
                                progress=False)
    assert summary.num_episodes == {"train": 1, "test": 0}
    assert any("no test episodes: evaluation" in r.getMessage() for r in caplog.records)
