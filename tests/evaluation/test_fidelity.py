"""World-model fidelity on a deterministic toy world: a 2-pixel-wide white bar on a black 16x16 screen
moves one column left (action 0) or right (action 1) per step, wrapping around. The next frame is a
function of the last frame and the action, so a denoiser trained for a few seconds predicts it far
better than copying the last frame."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from diamond_kedro.evaluation.fidelity import (
    Context,
    choose_contexts,
    plot_fidelity_curves,
    world_model_fidelity,
)
from diamond_kedro.models.denoiser import Denoiser, DenoiserConfig
from diamond_kedro.models.rew_end_model import RewEndModel, RewEndModelConfig
from diamond_kedro.models.unet import InnerModelConfig
from diamond_kedro.replay.batch import Batch
from diamond_kedro.replay.store import EpisodeChunk, ReplayStore

torch.set_num_threads(1)
W, L = 16, 2


def bar_frames(xs: list[int]) -> np.ndarray:
    f = np.zeros((len(xs), W, W, 3), np.uint8)
    for i, x in enumerate(xs):
        f[i, :, x] = 255
        f[i, :, (x + 1) % W] = 255
    return f


def bar_trajectory(rng: np.random.Generator, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """num_frames frames and the num_frames actions taken on them (the last action leads past the end)."""
    act = rng.integers(0, 2, num_frames)
    xs = [int(rng.integers(W))]
    for t in range(num_frames - 1):
        xs.append((xs[-1] + 2 * int(act[t]) - 1) % W)
    return bar_frames(xs), act.astype(np.int64)


def bar_batch(rng: np.random.Generator, batch_size: int, seq_len: int) -> Batch:
    obs, act = zip(*(bar_trajectory(rng, seq_len) for _ in range(batch_size)))
    return Batch.of(
        torch.as_tensor(np.stack(obs)).permute(0, 1, 4, 2, 3).float() / 127.5 - 1, torch.as_tensor(np.stack(act))
    )


def tiny_denoiser() -> Denoiser:
    inner = InnerModelConfig(
        num_actions=2, num_steps_conditioning=L, cond_channels=16, channels=[16, 16], depths=[1, 1],
        attn_depths=[False, False],
    )
    return Denoiser(DenoiserConfig(inner_model=inner, num_autoregressive_steps=0))


def bar_store(root: Path, num_episodes: int, num_steps: int, seed: int) -> ReplayStore:
    """Episodes of ``num_steps`` steps that end (end=1 at the last step) with a final observation."""
    rng = np.random.default_rng(seed)
    store = ReplayStore(root, fsync=False)
    for _ in range(num_episodes):
        frames, act = bar_trajectory(rng, num_steps + 1)  # the extra frame is the final observation
        rew = np.zeros(num_steps, np.float32)
        rew[act[:num_steps] == 1] = 1.0  # a reward for moving right
        end = np.zeros(num_steps, np.uint8)
        end[-1] = 1
        chunk = EpisodeChunk(frames[:-1], act[:num_steps], rew, end, np.zeros(num_steps, np.uint8), frames[-1])
        store.add_episode(chunk)
    return store


@pytest.fixture(scope="module")
def trained_denoiser() -> Denoiser:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    den = tiny_denoiser()
    opt = torch.optim.AdamW(den.parameters(), lr=1e-3)
    for _ in range(150):  # ~15 s on one CPU thread; reaches ~30 dB at horizon 1
        loss, _ = den.compute_loss(bar_batch(rng, 32, L + 1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return den


def test_choose_contexts_counts_by_hand(tmp_path: Path) -> None:
    # one episode of 10 steps + final observation = 11 frames; L = 2, longest horizon 4:
    # starts s = 0..8 have >= 1 frame to predict (s + 2 <= 10); full horizon needs s + 2 + 4 <= 11 -> s = 0..5
    store = bar_store(tmp_path / "s", num_episodes=1, num_steps=10, seed=1)
    everything = choose_contexts(store, L, 4, num_contexts=100)
    assert sorted((c.start, c.length) for c in everything) == [(s, 4) for s in range(6)] + [(6, 3), (7, 2), (8, 1)]
    # asking for 7: the 6 full-horizon contexts first, then one shorter
    some = choose_contexts(store, L, 4, num_contexts=7, seed=3)
    assert sum(c.length == 4 for c in some) == 6 and len(some) == 7
    assert choose_contexts(store, L, 4, num_contexts=7, seed=3) == some  # seeded
    assert choose_contexts(store, 11, 4, num_contexts=7) == []  # no episode has more than 11 frames


def test_fidelity_beats_copy_last_frame(trained_denoiser: Denoiser, tmp_path: Path) -> None:
    store = bar_store(tmp_path / "test", num_episodes=2, num_steps=20, seed=7)
    rew_end = RewEndModel(
        RewEndModelConfig(num_actions=2, lstm_dim=16, img_size=W, cond_channels=8, depths=[1, 1], channels=[8, 8],
                          attn_depths=[False, False])
    )
    result = world_model_fidelity(
        trained_denoiser, rew_end, store, horizons=(1, 4), num_contexts=8, batch_size=5, seed=0
    )
    m = result.metrics
    # copy-last at horizon 1: the bar moved by exactly one column, so 2 columns of 16 pixels (3 channels)
    # differ by the full range: MSE = 2*16/(16*16) = 1/8 on the [0, 1] scale -> PSNR = 10 log10(8) dB.
    assert m["fidelity/psnr_copy_last_h1"] == pytest.approx(10 * math.log10(8), abs=1e-9)
    assert m["fidelity/psnr_h1"] > m["fidelity/psnr_copy_last_h1"] + 10
    assert m["fidelity/ssim_h1"] > m["fidelity/ssim_copy_last_h1"]
    for key in ("psnr", "ssim", "psnr_copy_last", "ssim_copy_last"):
        assert result.curves[key].shape == (4,) and np.all(np.isfinite(result.curves[key]))
    # 2 episodes x 21 frames offer 2 x 16 full-horizon starts (s + 2 + 4 <= 21): all 8 contexts reach h = 4
    assert m["fidelity/num_contexts_h4"] == 8 and result.curves["count"].tolist() == [8, 8, 8, 8]
    # every valid transition is counted once in each confusion matrix: 8 contexts x 4 steps
    for name, cm in result.confusion.items():
        assert cm.sum() == 32, name
    # true classes come from the store: reward class 2 (+1) exactly where the action was "right"
    actions_right = sum(
        int(np.asarray(store.load_episode(c.episode_id).act)[c.start + L - 1 : c.start + L - 1 + c.length].sum())
        for c in result.contexts
    )
    assert result.confusion["rew_real"][2].sum() == actions_right
    assert result.confusion["rew_real"][0].sum() == 0  # no negative rewards in this world
    for key in ("rew_accuracy", "end_accuracy", "rew_accuracy_real", "end_accuracy_real"):
        assert 0.0 <= m[f"fidelity/{key}"] <= 1.0
    # the video holds the first context's 4 real and imagined frames; the real ones are the store's
    c0: Context = result.contexts[0]
    ep = store.load_episode(c0.episode_id)
    frames = np.concatenate([np.asarray(ep.obs), np.asarray(ep.final_obs)[None]])
    assert np.array_equal(result.video_real, frames[c0.start + L : c0.start + L + 4])
    assert result.video_imagined.shape == (4, W, W, 3) and result.video_imagined.dtype == np.uint8
    assert trained_denoiser.training and rew_end.training  # modes restored
    assert plot_fidelity_curves(result, tmp_path / "curves.png").stat().st_size > 0
    saved = json.loads(result.write_json(tmp_path / "f.json").read_text())
    assert saved["metrics"] == m and saved["confusion"]["end_real"] == result.confusion["end_real"].tolist()
