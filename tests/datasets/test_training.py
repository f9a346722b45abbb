"""One ci epoch of the static world-model run on each source's store (library level, the ci profile's values)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from diamond_kedro.csgo.config import parse_csgo_config
from diamond_kedro.csgo.ingest import ingest
from diamond_kedro.datasets.config import StaticWorldModelConfig, parse_static_config
from diamond_kedro.datasets.ingest import ingest_dataset
from diamond_kedro.training.csgo_run import CsgoRun, StaticWorldModelRun
from tests.csgo.synthetic import make_tar, write_hdf5
from tests.profiles import profile_parameters

from .synthetic import make_minari, write_video
from diamond_kedro.utils.state_file import load_state_file


def merged(section: str) -> dict:
    """The ci profile's values of a section (conf/base then conf/ci, merged as Kedro does)."""
    return profile_parameters("ci")[section]


def static_params(tmp_path: Path, dataset: dict) -> dict:
    p = merged("static_world_model")
    p["dataset"] = {**p["dataset"], "out_dir": str(tmp_path / "store"), **dataset}
    p["run"] = {**p["run"], "root": str(tmp_path / "runs")}
    return p


@pytest.mark.parametrize("env", ["base", "quick", "ci"])
def test_every_profile_is_valid(env: str) -> None:
    cfg = parse_static_config(profile_parameters(env)["static_world_model"])
    assert cfg.upsampling_factor is None and cfg.dataset.kind == "video"
    parse_csgo_config(profile_parameters(env)["csgo"])


def ingest_two_videos(tmp_path: Path) -> StaticWorldModelConfig:
    """Two short videos with 4 discrete actions (one a test episode), ingested; their static config."""
    raw = tmp_path / "raw"
    for v, n in ((0, 12), (1, 10)):
        write_video(raw / f"clip{v}.mp4", v, n)
        pd.DataFrame({"action": [(i + v) % 4 for i in range(n)]}).to_csv(raw / f"clip{v}.csv", index=False)
    cfg = parse_static_config(static_params(tmp_path, {"name": "vid", "path": str(raw), "test_fraction": 0.5}))
    ingest_dataset(cfg.dataset, progress=False)
    return cfg


def one_epoch(run: CsgoRun) -> dict[str, float]:
    return dict(run.run_epoch().metrics)


def test_video_discrete_without_upsampler(tmp_path: Path) -> None:
    cfg = ingest_two_videos(tmp_path)
    run = StaticWorldModelRun.open(cfg)
    assert run.key == "vid_ci" and run.model_names == ("denoiser",)
    assert run.models["denoiser"].inner_model.act_emb[0].weight.shape[0] == 4  # 4 action ids, one row each
    metrics = one_epoch(run)
    # ci: 2 optimiser steps; evaluation every epoch: test loss, fidelity vs copy-last at horizons 1 and 3, a video
    assert metrics["denoiser/train/num_batch_train_denoiser"] == 2
    assert np.isfinite(metrics["denoiser/test/loss_denoising"])
    for k in ("psnr_h1", "psnr_copy_last_h1", "ssim_h3", "ssim_copy_last_h3"):
        assert np.isfinite(metrics[f"fidelity/{k}"]), k
    assert (tmp_path / "runs/vid_ci/media/imagination_epoch_00001.mp4").is_file()
    state = load_state_file(tmp_path / "runs/vid_ci/checkpoints/state.pt")
    assert state["action"] == {"kind": "discrete", "dim": 4} and set(state["models"]) == {"denoiser"}
    again = StaticWorldModelRun.open(cfg)  # resumes
    assert again.counters.epoch == 1 and again.counters.num_batch_train == {"denoiser": 2}


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_minari_with_an_upsampler(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    path = make_minari(tmp_path / "minari", "test/grid-v0", [9, 8, 10])
    cfg = parse_static_config(static_params(tmp_path, {"name": "grid", "kind": "minari", "path": str(path),
                                                       "low_res_size": [16, 16], "test_fraction": 0.34}))
    assert cfg.upsampling_factor == 2
    ingest_dataset(cfg.dataset, progress=False)
    run = StaticWorldModelRun.open(cfg)
    assert run.model_names == ("denoiser", "upsampler") and run.models["upsampler"].cfg.upsampling_factor == 2
    metrics = one_epoch(run)
    assert metrics["upsampler/train/num_batch_train_upsampler"] == 2
    assert np.isfinite(metrics["upsampler/test/loss_denoising"]) and "fidelity/psnr_h1" in metrics


def test_csgo_files_of_37_frames_train_a_ci_epoch(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    files = [write_hdf5(tmp_path / "staging" / f"hdf5_dm_july2021_{n}.hdf5", n, 37) for n in (1, 2)]
    make_tar(raw / "hdf5_dm_july2021_1_to_2.tar", files)
    split = tmp_path / "split.txt"
    split.write_text("hdf5_dm_july2021_2.hdf5\n")
    p = merged("csgo")
    p["data"] = {**p["data"], "source_dir": str(raw), "out_dir": str(tmp_path / "csgo"),
                 "test_split_file": str(split)}
    p["run"] = {**p["run"], "root": str(tmp_path / "runs")}
    cfg = parse_csgo_config(p)
    d = cfg.data
    ingest(d.source_dir, d.out_dir, d.test_split_file, d.frames_per_file, d.frame_size, d.low_res_size, fsync=False,
           progress=False)
    run = CsgoRun.open(cfg)
    assert run.key == "csgo_ci" and run.kind == "csgo"
    metrics = one_epoch(run)
    assert metrics["denoiser/train/num_batch_train_denoiser"] == 2 and metrics["upsampler/train/num_batch_train_upsampler"] == 2
    assert json.loads((tmp_path / "runs/csgo_ci/metrics.json").read_text())["epoch"] == 1


def test_static_run_honours_run_amp_and_run_compile(tmp_path: Path, monkeypatch, caplog) -> None:
    """The static family reads the same ``run.amp`` / ``run.compile`` as Atari (one resolution, one compile)."""
    from diamond_kedro.datasets import config as static_config
    from diamond_kedro.datasets.config import StaticWorldModelConfigError

    raw = tmp_path / "raw"
    for v, n in ((0, 12), (1, 10)):
        write_video(raw / f"clip{v}.mp4", v, n)
        pd.DataFrame({"action": [(i + v) % 4 for i in range(n)]}).to_csv(raw / f"clip{v}.csv", index=False)
    params = static_params(tmp_path, {"name": "vid", "path": str(raw), "test_fraction": 0.5})
    assert parse_static_config(params).run.amp is False and parse_static_config(params).run.compile is False

    # run.bf16, the old name: the same setting (over conf/base's run.amp), with a one-line warning
    static_config._warn_bf16.cache_clear()
    old = parse_static_config({**params, "run": {**params["run"], "bf16": True}})
    assert old.run.amp is True and "bf16" not in old.run.model_dump()
    assert [r.getMessage() for r in caplog.records if "bf16" in r.getMessage()] == [
        "run.bf16 is deprecated: write run.amp (true | false | auto) instead; bf16: True is amp: True (it overrides "
        "run.amp)"]
    with pytest.raises(StaticWorldModelConfigError, match="run.amp"):
        parse_static_config({**params, "run": {**params["run"], "amp": "maybe"}})
    assert parse_csgo_config({"run": {"bf16": True}}).run.amp is True

    cfg = parse_static_config({**params, "run": {**params["run"], "amp": "auto", "compile": "max-autotune"}})
    ingest_dataset(cfg.dataset, progress=False)
    resolved: list = []
    monkeypatch.setattr("diamond_kedro.training.run_common.resolve_amp",
                        lambda setting, device: resolved.append((setting, device.type)) or True)
    run = StaticWorldModelRun.open(cfg)
    try:
        assert run.amp is True and resolved == [("auto", "cpu")]
        inner = run.models["denoiser"].inner_model
        assert inner._compiled_call_impl is not None  # nn.Module.compile in place: wrapped, called lazily
        assert not any("_orig_mod" in k for k in run.models["denoiser"].state_dict())  # checkpoint keys unchanged
        run.begin_epoch()
        assert run.pending.tags["precision"] == "bf16 autocast"
        with run._autocast():
            assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    finally:
        run.close()


def test_a_run_saved_with_run_bf16_resumes_without_a_changed_parameter(tmp_path: Path) -> None:
    from diamond_kedro.utils.state_file import save_state_file

    cfg = ingest_two_videos(tmp_path)
    run = StaticWorldModelRun.open(cfg)
    run.run_epoch()
    run.close()
    state_path = tmp_path / "runs/vid_ci/checkpoints/state.pt"
    state = load_state_file(state_path)  # as a run from before run.amp wrote it: run.bf16, no amp/compile
    old_run = {k: v for k, v in state["config"]["run"].items() if k not in ("amp", "compile")}
    state["config"]["run"] = {**old_run, "bf16": False}
    save_state_file(state, state_path)
    again = StaticWorldModelRun.open(cfg)
    try:
        assert again.counters.epoch == 1 and again.changed_params == ""
    finally:
        again.close()
    state["config"]["run"] = {**old_run, "bf16": True}  # it did train in bf16: that is a change, and said
    save_state_file(state, state_path)
    again = StaticWorldModelRun.open(cfg)
    try:
        assert again.changed_params == "run.amp (True -> False)"
    finally:
        again.close()
