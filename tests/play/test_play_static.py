"""``diamond-kedro play static|csgo --run`` on a static_world_model run: one ci epoch trained by the real Kedro
project on one video + action table (discrete actions, no upsampler), then played headless."""

from __future__ import annotations

import json
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from diamond_kedro.csgo.generate import imagine_dynamics
from diamond_kedro.play.cli import main
from diamond_kedro.play.csgo import CsgoPlay, dataset_contexts
from diamond_kedro.play.loading import load_csgo_source
from tests.datasets.synthetic import write_video
from tests.pipelines.conftest import copy_project, kedro_run

FRAMES = 24


@pytest.fixture(scope="module")
def static_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project folder after static_world_model_ingest + one static_world_model epoch on clip.mp4 + clip.csv."""
    base = tmp_path_factory.mktemp("static_play")
    (base / "project").mkdir()
    project = copy_project(base / "project")
    raw = base / "raw"
    write_video(raw / "clip.mp4", 0, FRAMES)
    pd.DataFrame({"frame": range(FRAMES), "action": [i % 3 for i in range(FRAMES)]}).to_csv(raw / "clip.csv", index=False)
    ci = project / "conf/ci/parameters_static_world_model.yml"
    params = yaml.safe_load(ci.read_text())
    # one video: its last 30 % (round(7.2) = 7 frames) is the test episode, enough for contexts of L frames
    params["static_world_model"]["dataset"].update(name="oneclip", path=str(raw), test_fraction=0.3)
    ci.write_text(yaml.safe_dump(params))
    kedro_run(project, "--pipelines=static_world_model_ingest", "--env=ci")
    kedro_run(project, "--pipelines=static_world_model", "--env=ci")
    return project


def test_one_video_is_split_in_time_and_evaluated(static_run: Path) -> None:
    index = json.loads((static_run / "data/static/oneclip/index.json").read_text())
    assert index["action"] == {"kind": "discrete", "dim": 3}
    assert index["splits"] == {"train": ["clip.mp4[:17]"], "test": ["clip.mp4[17:24]"]}
    metrics = json.loads((static_run / "data/runs/oneclip_ci/metrics.json").read_text())
    assert "denoiser/test/loss_denoising" in metrics  # evaluation ran on the time-split test episode


@pytest.mark.parametrize("family", ["static", "csgo"])
def test_play_loads_and_records_a_static_world_model_run(static_run: Path, tmp_path: Path, family: str,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(static_run)  # the run's config names its dataset relative to the project
    out = tmp_path / "play.mp4"
    rc = main([family, "--run", "data/runs/oneclip_ci", "--headless", "--steps", "3", "--record", str(out),
               "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["steps"] == 3
    assert imageio_ffmpeg.count_frames_and_secs(str(out))[0] == 3
    # the CS:GO keyboard script cannot drive discrete actions: one line, exit 2
    assert main([family, "--run", "data/runs/oneclip_ci", "--headless", "--steps", "1", "--keys", "w"]) == 2
    assert "has discrete actions of width 3: use --policy replay or random" in capsys.readouterr().err


def test_replayed_steps_equal_imagine(static_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(static_run)
    src = load_csgo_source(run="data/runs/oneclip_ci")
    assert src.family == "static_world_model" and src.upsampler is None and src.action.to_dict() == {"kind": "discrete", "dim": 3}
    L = src.denoiser.num_steps_conditioning
    play = CsgoPlay(src, dataset_contexts(src.data_root, L))
    assert play.policy == "replay"  # no keyboard map for discrete ids: the recorded actions drive it
    ctx = play.context
    assert ctx.act.dtype == torch.long and ctx.act.shape == (L,)
    n = min(3, len(ctx.next_act))  # the steps before the recorded actions run out (>= 1: the newest frame's)
    torch.manual_seed(0)
    played = [int(play.step()) for _ in range(n)]
    assert played == [int(a) for a in ctx.next_act[:n]]  # the recorded continuation
    seq = torch.cat((ctx.act[:-1], torch.as_tensor(played))).unsqueeze(0)
    torch.manual_seed(0)
    imagined = imagine_dynamics(play.denoiser, ctx.low.unsqueeze(0), seq)
    assert torch.equal(play.full, imagined[:, -1])  # no upsampler: the shown frame is the dynamics model's
    assert np.array_equal(play.frame(), play.low_res_frame())


def test_play_a_static_run_with_an_upsampler_and_multi_hot_actions(tmp_path_factory: pytest.TempPathFactory,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture) -> None:
    base = tmp_path_factory.mktemp("static_up")
    (base / "project").mkdir()
    project = copy_project(base / "project")
    raw = base / "raw"
    for v in (0, 1):  # two videos: one is the test episode
        write_video(raw / f"clip{v}.mp4", v, 12)
        pd.DataFrame({"frame": range(12), "jump": [i % 2 for i in range(12)], "fire": [(i // 3) % 2 for i in range(12)]}
                     ).to_csv(raw / f"clip{v}.csv", index=False)
    ci = project / "conf/ci/parameters_static_world_model.yml"
    params = yaml.safe_load(ci.read_text())
    params["static_world_model"]["dataset"].update(name="upclips", path=str(raw), low_res_size=[16, 16],
                                                   video={"action_columns": ["jump", "fire"]})
    ci.write_text(yaml.safe_dump(params))
    kedro_run(project, "--pipelines=static_world_model_ingest", "--env=ci")
    kedro_run(project, "--pipelines=static_world_model", "--env=ci")

    monkeypatch.chdir(project)
    src = load_csgo_source(run="data/runs/upclips_ci")
    assert src.upsampler is not None and src.action.to_dict() == {"kind": "multi_hot", "dim": 2}
    play = CsgoPlay(src, dataset_contexts(src.data_root, src.denoiser.num_steps_conditioning), policy="random")
    a = play.step()
    assert a.shape == (2,) and set(a.tolist()) <= {0.0, 1.0}
    assert play.frame().shape == (32, 32, 3) and play.low_res_frame().shape == (16, 16, 3)  # upsampled x2
    assert play.cycle_policy() == "replay" and play.cycle_policy() == "random"  # no "human" for 2 keys
    rc = main(["static", "--run", "data/runs/upclips_ci", "--headless", "--steps", "2", "--policy", "random"])
    assert rc == 0, capsys.readouterr().err


def test_contexts_come_from_the_training_split_when_the_test_part_is_too_short(static_run: Path) -> None:
    data = static_run / "data/static/oneclip"  # test episode: 7 frames, training episode: 17
    assert all(c.name.startswith("test episode 0 @ ") for c in dataset_contexts(data, 7))
    longer = dataset_contexts(data, 8)
    assert len(longer) == 1 and longer[0].name.startswith("train episode 0 @ ") and longer[0].low.shape[0] == 8
    with pytest.raises(Exception, match="no test or training episode has 18 frames"):
        dataset_contexts(data, 18)
