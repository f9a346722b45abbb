"""Playing an Atari world model headless: scripted keys, policies, side-by-side with the real emulator,
mp4 recording, MLflow model registry round trip, and one-line errors for bad input."""

from __future__ import annotations

from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import torch

from diamond_kedro.envs.atari import TorchAtariEnv
from diamond_kedro.models.agent import load_checkpoint, save_checkpoint
from diamond_kedro.play.atari import AtariPlay
from diamond_kedro.play.cli import main
from diamond_kedro.play.loading import PlayError, load_atari_source, load_run_folder


def frames_in(path: Path) -> int:
    return imageio_ffmpeg.count_frames_and_secs(str(path))[0]


def test_scripted_keys_and_policies_give_the_expected_actions(atari_run: Path) -> None:
    torch.manual_seed(0)
    play = AtariPlay(load_run_folder(atari_run), policy="human", contexts="env", seed=1)
    # Breakout: NOOP 0, FIRE 1, RIGHT 2, LEFT 3
    taken = [play.step(c) for c in ({"fire"}, {"right"}, {"left"}, set(), {"up", "right"})]
    assert taken == [1, 2, 3, 0, 2]
    play.cycle_policy()
    assert play.policy == "agent"
    # the agent's zero-initialised policy head is uniform: 2 bits of entropy over 4 actions
    play.step()
    assert play.last_entropy == pytest.approx(2.0, abs=1e-5)
    play.cycle_policy()
    assert play.policy == "random" and all(0 <= play.step() < 4 for _ in range(3))
    play.close()


def test_frames_follow_the_actions(atari_run: Path) -> None:
    def rollout(actions: list[int]) -> list[np.ndarray]:
        torch.manual_seed(0)
        play = AtariPlay(load_run_folder(atari_run), policy="human", contexts="env", seed=3)
        out = []
        for a in actions:
            play.step(action=a)
            out.append(play.imagined.frame.copy())
        play.close()
        return out

    a, b, c = rollout([1, 2, 2]), rollout([1, 2, 2]), rollout([1, 3, 3])
    assert all(np.array_equal(x, y) for x, y in zip(a, b))  # same seed, same actions: same frames
    assert np.array_equal(a[0], c[0])
    assert not np.array_equal(a[1], c[1])  # another action: another next frame


def test_side_by_side_real_env_is_a_plain_env_rollout(atari_run: Path) -> None:
    torch.manual_seed(0)
    play = AtariPlay(load_run_folder(atari_run), policy="random", side_by_side=True, horizon=50, seed=5)
    trace = play.trace
    first = play.real.frame.copy()
    assert np.array_equal(play.imagined.frame, first)  # both panels start from the same frame
    real_frames = []
    for _ in range(12):
        play.step()
        real_frames.append(play.real.frame.copy())
    assert play.trace is trace and len(trace.actions) == 12  # one real episode beside one imagined one
    # a fresh test env (no life-loss end), same seed, same actions: the same frames
    env = TorchAtariEnv("Breakout", num_envs=1, done_on_life_loss=False, screen_size=32)
    env.reset(seed=trace.seed)
    for a in trace.context_actions:
        env.step(torch.tensor([a]))
    assert np.array_equal(env.obs_uint8[0], first)
    for a, frame in zip(trace.actions, real_frames):
        env.step(torch.tensor([a]))
        assert np.array_equal(env.obs_uint8[0], frame)
    env.close()
    play.close()


def test_headless_cli_records_n_frames(atari_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out, shot = tmp_path / "out.mp4", tmp_path / "shot.png"
    rc = main(["atari", "--run", str(atari_run), "--keys", "fire,right,left", "--headless", "--steps", "7",
               "--record", str(out), "--screenshot", str(shot), "--side-by-side", "--height", "64"])
    assert rc == 0, capsys.readouterr().err
    assert frames_in(out) == 7
    assert shot.stat().st_size > 0
    assert not list(tmp_path.glob(".*"))  # no temporary files left


def test_mlflow_registry_round_trip(atari_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture) -> None:
    from mlflow import MlflowClient

    from diamond_kedro.hooks import MlflowTrackingHook
    from diamond_kedro.reporting import EpochReport

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    agent_file = atari_run / "checkpoints" / "agent_versions" / "agent_epoch_00001.pt"
    hook = MlflowTrackingHook()
    hook._conf = {"experiment_name": "diamond-atari", "artifact_location": str(tmp_path / "mlruns")}
    hook._client = client = MlflowClient(tracking_uri=uri)
    report = EpochReport(epoch=5, run_key="Breakout_seed0_ci", params={"env.game": "Breakout", "denoiser.model.channels": [8, 8]},
                         artifacts=[("checkpoints", agent_file)])
    hook._log(report)
    hook._log(report)  # a report re-emitted after a crash adds no second version
    versions = client.search_model_versions("name='diamond-Breakout'")
    assert [(str(v.version), v.tags["epoch"], v.tags["game"]) for v in versions] == [("1", "5", "Breakout")]
    assert '"denoiser.model.channels": [8, 8]' in versions[0].description

    src = load_atari_source(mlflow_uri="models:/diamond-Breakout/latest")
    assert src.game == "Breakout"
    original = load_checkpoint(agent_file).state_dict()
    assert all(torch.equal(v, original[k]) for k, v in src.agent.state_dict().items())
    with pytest.raises(PlayError, match="no version 7"):
        load_atari_source(mlflow_uri="models:/diamond-Breakout/7")

    # play it from the registry, headless, and log the video to MLflow
    rc = main(["atari", "--mlflow", "models:/diamond-Breakout/1", "--policy", "agent", "--headless", "--steps", "3",
               "--record", str(tmp_path / "v.mp4"), "--log-mlflow", "--height", "32"])
    assert rc == 0, capsys.readouterr().err
    play_exp = client.get_experiment_by_name("diamond-play")
    assert play_exp.tags["mlflow.experimentKind"] == "custom_model_development"
    (run,) = client.search_runs([play_exp.experiment_id])
    assert run.data.metrics["steps"] == 3
    assert [f.path for f in client.list_artifacts(run.info.run_id, "play")] == ["play/v.mp4"]


def one_error_line(capsys: pytest.CaptureFixture, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


def test_bad_input_fails_with_one_line(atari_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    head = ["--headless", "--steps", "1"]
    agent_file = atari_run / "checkpoints" / "agent_versions" / "agent_epoch_00001.pt"
    assert "does not exist" in one_error_line(capsys, ["atari", "--run", str(tmp_path / "nope"), *head])
    assert "Unknown game 'Tetris'" in one_error_line(capsys, ["atari", "--agent", str(agent_file), "--game", "Tetris", *head])
    assert "has 4 actions but Pong has 6" in one_error_line(capsys, ["atari", "--agent", str(agent_file), "--game", "Pong", *head])
    assert "needs --steps" in one_error_line(capsys, ["atari", "--run", str(atari_run), "--headless"])
    assert "give exactly one of" in one_error_line(capsys, ["atari", "--run", str(atari_run), "--agent", str(agent_file), *head])
    assert "of --record" in one_error_line(capsys, ["atari", "--run", str(atari_run), "--record", str(tmp_path / "no" / "a.mp4"), *head])
    assert "writes an .mp4" in one_error_line(capsys, ["atari", "--run", str(atari_run), "--record", str(tmp_path / "a.avi"), *head])
    assert "unknown Atari key 'jump'" in one_error_line(capsys, ["atari", "--run", str(atari_run), "--keys", "jump", *head])

    # an agent file outside a run folder does not say its game
    loose = tmp_path / "agent.pt"
    loose.write_bytes(agent_file.read_bytes())
    assert "pass --game" in one_error_line(capsys, ["atari", "--agent", str(loose), *head])
    # our ci agent given as the authors' (paper-size) file: a shape mismatch, on one line
    flat = tmp_path / "flat.pt"
    torch.save(load_checkpoint(agent_file).state_dict(), flat)
    assert "shape mismatches" in one_error_line(capsys, ["atari", "--authors", str(flat), "--game", "Breakout", *head])
    # a CS:GO world model given to play atari
    csgo = tmp_path / "csgo.pt"
    torch.save({"denoiser.inner_model.conv_in.weight": torch.zeros(1), "upsampler.inner_model.conv_in.weight": torch.zeros(1)}, csgo)
    assert "is a CS:GO world model" in one_error_line(capsys, ["atari", "--authors", str(csgo), "--game", "Breakout", *head])
    # a denoiser checkpoint is not an agent
    den = tmp_path / "Breakout_seed0_x" / "den.pt"
    den.parent.mkdir()
    agent = load_checkpoint(agent_file)
    save_checkpoint(den, agent.denoiser, agent.cfg.denoiser)
    assert "not an agent" in one_error_line(capsys, ["atari", "--agent", str(den), *head])
    # a window without a display
    for var in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER"):
        monkeypatch.delenv(var, raising=False)
    assert "no display found" in one_error_line(capsys, ["atari", "--run", str(atari_run)])


def test_contexts_come_from_the_run_test_replay(atari_run: Path, tmp_path: Path) -> None:
    import shutil

    from diamond_kedro.replay.store import EpisodeChunk, ReplayStore

    with pytest.raises(PlayError, match="no run replay"):
        AtariPlay(load_run_folder(atari_run), contexts="replay")
    run = tmp_path / "Breakout_seed0_ci"
    shutil.copytree(atari_run, run)
    rng = np.random.default_rng(0)
    n = 10
    obs = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    ReplayStore(run / "replay" / "test", fsync=False).add_episode(EpisodeChunk(
        obs=obs, act=rng.integers(0, 4, n), rew=np.zeros(n, np.float32), end=np.zeros(n, np.uint8),
        trunc=np.zeros(n, np.uint8)))
    play = AtariPlay(load_run_folder(run), policy="agent")
    assert play.contexts == "replay" and play.real_env is None
    for _ in range(3):
        # the first frame of each world-model episode is a stored frame of the test episode
        assert any(np.array_equal(play.imagined.frame, o) for o in obs)
        play.reset()
    play.step()


def test_window_loop_reads_key_events(atari_run: Path) -> None:
    """The windowed path (set_mode, flip, frame clock) under SDL's dummy driver, driven by posted key events."""
    from diamond_kedro.play.cli import build_parser, play_loop
    from diamond_kedro.play.display import Screen

    args = build_parser().parse_args(["atari", "--run", str(atari_run), "--steps", "2", "--height", "32", "--fps", "1000"])
    play = AtariPlay(load_run_folder(atari_run), contexts="env", policy="human")
    screen = Screen("test", (32, 32), 1, headless=False, height=32)
    pg = screen.pg
    try:
        pg.event.post(pg.event.Event(pg.KEYDOWN, key=pg.K_d))
        assert play_loop(play, screen, args, "atari")["steps"] == 2
        assert play.last_action == 2  # D held: RIGHT
        pg.event.post(pg.event.Event(pg.KEYUP, key=pg.K_d))
        pg.event.post(pg.event.Event(pg.KEYDOWN, key=pg.K_SPACE))
        play_loop(play, screen, args, "atari")
        assert play.last_action == 1  # space held: FIRE
        pg.event.post(pg.event.Event(pg.KEYDOWN, key=pg.K_m))
        play_loop(play, screen, args, "atari")
        assert play.policy == "agent"
        pg.event.post(pg.event.Event(pg.KEYDOWN, key=pg.K_ESCAPE))
        assert play_loop(play, screen, args, "atari")["steps"] == 0
    finally:
        screen.close()
        play.close()


def test_authors_agent_file_plays(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A flat state dict of the paper-size agent (the authors' file layout, spec Appendix B): random weights."""
    from diamond_kedro.models.agent import Agent, AgentConfig

    torch.manual_seed(0)
    flat = tmp_path / "Breakout.pt"
    torch.save(Agent(AgentConfig(num_actions=4)).state_dict(), flat)
    src = load_atari_source(authors=str(flat), game="breakout")
    assert src.game == "Breakout" and src.agent.cfg.actor_critic.img_size == 64 and src.run_root is None
    with pytest.raises(PlayError, match="needs --game"):
        load_atari_source(authors=str(flat))
    rc = main(["atari", "--authors", str(flat), "--game", "Breakout", "--policy", "agent", "--headless", "--steps", "2",
               "--denoising-steps", "1", "--height", "64"])
    assert rc == 0, capsys.readouterr().err


def test_registered_model_names_are_valid_for_every_game() -> None:
    from types import SimpleNamespace

    from diamond_kedro.hooks import registered_model_name

    def name(game: str, kind: str = "atari") -> str:
        return registered_model_name(SimpleNamespace(kind=kind, params={"env.game": game}, run_key=f"{game}_seed0_x"))

    assert name("Breakout") == name("BreakoutNoFrameskip-v4") == "diamond-Breakout"
    # our own game's gymnasium id has a '/', which MLflow refuses in a model name
    assert name("Catch") == name("diamond_kedro/Catch-v0") == "diamond-Catch"
    assert name("ignored", kind="csgo") == "diamond-csgo"
