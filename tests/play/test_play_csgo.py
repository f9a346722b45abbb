"""Playing the CS:GO world model headless: scripted keys and mouse, step-by-step play equal to the
library's ``imagine``, upsampler on/off, contexts from the test split or spawn folders, bad input."""

from __future__ import annotations

from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from diamond_kedro.csgo.generate import imagine
from diamond_kedro.play.cli import main
from diamond_kedro.play.csgo import CsgoPlay, dataset_contexts, spawn_contexts
from diamond_kedro.play.keymaps import csgo_script_action
from diamond_kedro.play.loading import load_csgo_source
from diamond_kedro.utils.state_file import save_state_file


def session(csgo_run: tuple[Path, Path], **kw) -> CsgoPlay:
    run, data = csgo_run
    src = load_csgo_source(run=str(run))
    return CsgoPlay(src, dataset_contexts(data, src.denoiser.num_steps_conditioning), **kw)


@pytest.mark.parametrize("preset", ["fast", "higher_quality"])
def test_step_by_step_play_equals_imagine(csgo_run: tuple[Path, Path], preset: str) -> None:
    play = session(csgo_run, preset=preset)
    ctx = play.context
    actions = [csgo_script_action(s) for s in (["w"], ["w", "mx=100"], ["space", "lmb"])]
    torch.manual_seed(0)
    for a in actions:
        play.step(a)
    played = play.full.clone()
    # imagine() with the context's actions then the played ones (the last context slot is the first played one)
    seq = torch.cat((ctx.act[:-1], torch.as_tensor(np.stack(actions)))).unsqueeze(0)
    torch.manual_seed(0)
    low, full = imagine(play.denoiser, play.upsampler, ctx.low.unsqueeze(0), ctx.full_last.unsqueeze(0), seq, preset=preset)
    assert torch.equal(played, full[:, -1])
    assert torch.equal(play.low_buffer[:, -1], low[:, -1])


def test_frames_follow_the_actions_and_the_upsampler_switch(csgo_run: tuple[Path, Path]) -> None:
    def frame_after(action: list[str], upsample: bool = True) -> np.ndarray:
        play = session(csgo_run, upsample=upsample)
        torch.manual_seed(0)
        play.step(csgo_script_action(action))
        return play

    a, b, c = frame_after(["w"]), frame_after(["w"]), frame_after(["s", "mx=-300"])
    assert np.array_equal(a.frame(), b.frame())
    assert not np.array_equal(a.frame(), c.frame())
    off = frame_after(["w"], upsample=False)
    # upsampler off: the bicubic x5 upsampling of the generated low-res frame (same dynamics draw)
    assert torch.equal(off.low_buffer, a.low_buffer)
    expected = F.interpolate(off.low_buffer[:, -1], scale_factor=5, mode="bicubic").clamp(-1, 1)
    assert torch.equal(off.full, expected)
    assert off.frame().shape == (150, 280, 3)


def test_replay_policy_and_horizon(csgo_run: tuple[Path, Path]) -> None:
    run, data = csgo_run
    from dataclasses import replace

    from diamond_kedro.replay.store import ReplayStore

    contexts = dataset_contexts(data, 4, seed=0)
    low, full = ReplayStore(data / "low_res" / "test", create=False), ReplayStore(data / "full_res" / "test", create=False)
    for c in contexts:  # each context is a window of its test episode, and its continuation is the recorded one
        ep = low.load_episode(c.episode)
        assert np.array_equal(((c.low.permute(0, 2, 3, 1) + 1) * 127.5).round().numpy(), ep.obs[c.start : c.start + 4])
        assert np.array_equal(((c.full_last.permute(1, 2, 0) + 1) * 127.5).round().numpy(),
                              full.load_episode(c.episode).obs[c.start + 3])
        assert np.array_equal(c.next_act.numpy(), ep.act[c.start + 3 :])
    # three recorded actions to replay
    contexts = [replace(c, next_act=torch.as_tensor(np.stack([csgo_script_action(k) for k in (["a"], ["d"], ["r"])])))
                for c in contexts]
    play = CsgoPlay(load_csgo_source(run=str(run)), contexts, policy="replay", horizon=3)
    ctx = play.context
    used = [play.step(csgo_script_action(["w"])) for _ in range(2)]  # the player's input is ignored
    assert np.array_equal(np.stack(used), ctx.next_act[:2].numpy())  # the recorded actions that followed
    play.step()
    assert play.context is not ctx and play.episode_steps == 0  # the horizon reset to the next context
    ctx = play.context
    play.step()
    play.step()
    assert play.context is ctx and play.episode_steps == 2
    play.step()
    assert play.context is not ctx and play.episode_steps == 0  # horizon 3 again


def test_headless_cli_records_n_frames(csgo_run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run, data = csgo_run
    out = tmp_path / "csgo.mp4"
    rc = main(["csgo", "--run", str(run), "--data", str(data), "--keys", "w,w+mx=100,space+lmb", "--headless",
               "--steps", "4", "--record", str(out), "--height", "150"])
    assert rc == 0, capsys.readouterr().err
    assert imageio_ffmpeg.count_frames_and_secs(str(out))[0] == 4


def test_spawn_folders(csgo_run: tuple[Path, Path], tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    spawn = tmp_path / "spawn" / "0"
    spawn.mkdir(parents=True)
    np.save(spawn / "low_res.npy", rng.integers(0, 256, (4, 3, 30, 56), dtype=np.uint8))
    np.save(spawn / "full_res.npy", rng.integers(0, 256, (4, 3, 150, 280), dtype=np.uint8))
    act = np.zeros((4, 51), np.float32)
    act[:, 24] = act[:, 43] = 1
    np.save(spawn / "act.npy", act)
    (ctx,) = spawn_contexts(tmp_path / "spawn", 4)
    assert ctx.low.shape == (4, 3, 30, 56) and ctx.full_last.shape == (3, 150, 280) and len(ctx.next_act) == 0
    # uint8 v -> 2 v / 255 - 1
    assert ctx.low[0, 0, 0, 0].item() == pytest.approx(np.load(spawn / "low_res.npy")[0, 0, 0, 0] / 127.5 - 1)


def one_error_line(capsys: pytest.CaptureFixture, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


def test_bad_input_fails_with_one_line(csgo_run: tuple[Path, Path], atari_run: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture) -> None:
    run, data = csgo_run
    head = ["--headless", "--steps", "1"]
    assert "is a CS:GO run" in one_error_line(capsys, ["atari", "--run", str(run), *head])
    assert "has no checkpoints/state.pt" in one_error_line(capsys, ["csgo", "--run", str(atari_run), *head])
    atari_state = tmp_path / "Breakout_seed0_x" / "checkpoints" / "state.pt"
    atari_state.parent.mkdir(parents=True)
    save_state_file({"format": 1, "agent": {}, "num_actions": 4}, atari_state)
    assert "is an Atari run" in one_error_line(capsys, ["csgo", "--run", str(atari_state.parents[1]), *head])
    agent_file = atari_run / "checkpoints" / "agent_versions" / "agent_epoch_00001.pt"
    assert "is an Atari agent" in one_error_line(capsys, ["csgo", "--checkpoint", str(agent_file), *head])
    assert "unknown CS:GO key 'jump'" in one_error_line(capsys, ["csgo", "--run", str(run), "--keys", "jump", *head])
    assert "not an ingested dataset store" in one_error_line(capsys, ["csgo", "--run", str(run), "--data", str(tmp_path), *head])
    # the ci models are not the paper-size models the authors' file holds
    flat = tmp_path / "csgo.pt"
    src = load_csgo_source(run=str(run))
    torch.save({**{f"denoiser.{k}": v for k, v in src.denoiser.state_dict().items()},
                **{f"upsampler.{k}": v for k, v in src.upsampler.state_dict().items()}}, flat)
    assert "shape mismatches" in one_error_line(capsys, ["csgo", "--checkpoint", str(flat), "--spawn", str(tmp_path), *head])
