"""Small gameplay recordings made in the tests: videos + action tables, Minari datasets."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

H, W = 48, 64  # a 4:3 recording: padding it into 32x32 leaves 4 black rows above and below (scale 1/2)


def colour(video: int, i: int) -> tuple[int, int, int]:
    """Frame i of video v is one flat colour: R encodes the frame, G the video (far from 0/255 so that
    the lossy codecs' rounding stays within a few levels)."""
    return (20 + 8 * i, 80 + 40 * video, 50)


def frames(video: int, n: int) -> np.ndarray:
    out = np.empty((n, H, W, 3), dtype=np.uint8)
    for i in range(n):
        out[i] = colour(video, i)
    return out


def write_video(path: Path, video: int, n: int, fps: float = 10.0) -> Path:
    import imageio_ffmpeg

    path.parent.mkdir(parents=True, exist_ok=True)
    codec = {"codec": "libvpx-vp9"} if path.suffix == ".webm" else {}
    writer = imageio_ffmpeg.write_frames(str(path), (W, H), fps=fps, macro_block_size=1, **codec)
    writer.send(None)
    for f in frames(video, n):
        writer.send(np.ascontiguousarray(f))
    writer.close()
    return path


def make_minari(root: Path, dataset_id: str, episode_lengths: list[int], action: str = "discrete",
                obs_shape: tuple[int, ...] = (20, 24, 3), bad_reward: tuple[int, int] | None = None) -> Path:
    """A local Minari dataset (no download) with uint8 image observations; returns its folder."""
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    import gymnasium as gym
    import minari
    from minari.data_collector.episode_buffer import EpisodeBuffer

    obs_space = gym.spaces.Box(0, 255, obs_shape, np.uint8)
    act_space = gym.spaces.Discrete(5) if action == "discrete" else gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    buffers = []
    for e, t in enumerate(episode_lengths):
        obs = np.empty((t + 1, *obs_shape), dtype=np.uint8)
        for i in range(t + 1):
            obs[i] = 10 * i + e  # frame i of episode e is the flat value 10 i + e
        act = (np.arange(t) % 5) if action == "discrete" else np.stack([np.linspace(-1, 1, t), np.full(t, 0.25)], 1)
        rewards = list(np.arange(t, dtype=float))
        if bad_reward is not None and bad_reward[0] == e:  # (episode, step) whose reward is inf
            rewards[bad_reward[1]] = float("inf")
        buffers.append(EpisodeBuffer(
            id=e, observations=obs, actions=act.astype(act_space.dtype), rewards=rewards,
            terminations=[False] * (t - 1) + [True], truncations=[False] * t,
        ))
    minari.create_dataset_from_buffers(dataset_id, buffers, observation_space=obs_space, action_space=act_space,
                                       algorithm_name="test", description="test", jpeg_encoding=False)
    return root / dataset_id


def nothing_written(out: Path) -> bool:
    """No dataset file in ``out``: at most the writer's lock (``.lock``, ``.lock.json``), which is taken before
    anything is read or written, may be there."""
    return not out.exists() or {p.name for p in out.iterdir()} <= {".lock", ".lock.json"}
