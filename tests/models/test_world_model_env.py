import torch
from torch import nn

from diamond_kedro.envs.world_model_env import WorldModelEnv, WorldModelEnvConfig
from diamond_kedro.models.denoiser import Denoiser, DenoiserConfig
from diamond_kedro.models.rew_end_model import RewEndModel, RewEndModelConfig
from diamond_kedro.models.unet import InnerModelConfig
from diamond_kedro.replay.batch import Batch

torch.set_num_threads(1)
A, H, W, L = 3, 16, 16, 4


class FixedLogits(nn.Module):
    """Replaces the head's last layer: constant logits (rew classes 0..2, end classes 0..1)."""

    def __init__(self, logits):
        super().__init__()
        self.logits = torch.tensor(logits)

    def forward(self, x):
        return self.logits.expand(*x.shape[:-1], 5)


class ContextSource:
    """Context k (counting from 0) has every pixel of frame j equal to (k % 50 + j) / 100."""

    def __init__(self):
        self.k, self.calls = 0, 0

    def __call__(self, n):
        self.calls += 1
        ids = torch.arange(self.k, self.k + n) % 50
        self.k += n
        obs = ((ids[:, None] + torch.arange(L)[None]) / 100.0)[:, :, None, None, None].expand(n, L, 3, H, W).clone()
        return Batch.of(obs, torch.zeros(n, L, dtype=torch.long))


def make_env(end_logits, horizon=4, num_envs=3, preload=2):
    torch.manual_seed(0)
    den = Denoiser(DenoiserConfig(inner_model=InnerModelConfig(num_actions=A, cond_channels=16, channels=[8, 8], depths=[1, 1], attn_depths=[0, 0])))
    rem = RewEndModel(RewEndModelConfig(num_actions=A, img_size=H, cond_channels=8, channels=[8, 8], depths=[1, 1], attn_depths=[0, 0], lstm_dim=16))
    rem.head[2] = FixedLogits([-20.0, 20.0, -20.0] + end_logits)
    src = ContextSource()
    env = WorldModelEnv(den, rem, src, WorldModelEnvConfig(horizon=horizon, num_batches_to_preload=preload), num_envs=num_envs)
    return env, src


def test_truncates_at_horizon_with_final_and_burnin_obs():
    env, src = make_env([20.0, -20.0], horizon=4)  # never terminates
    obs = env.reset()
    assert obs.shape == (3, 3, H, W) and env.num_envs == 3 and env.num_actions == A
    torch.testing.assert_close(obs[:, 0, 0, 0], torch.tensor([3, 4, 5]) / 100.0)  # last frame of contexts 0..2
    generated = []
    for t in range(4):
        obs, rew, end, trunc, info = env.step(torch.randint(0, A, (3,)))
        assert rew.shape == (3,) and rew.dtype == torch.float32 and torch.all(rew == 0)
        assert end.dtype == torch.uint8 and trunc.dtype == torch.uint8 and torch.all(end == 0)
        if t < 3:
            assert torch.all(trunc == 0) and list(info) == ["dead_rows"] and info["dead_rows"].numel() == 0
            generated.append(obs)
    assert torch.all(trunc == 1)
    assert info["final_observation"].shape == (3, 3, H, W)
    assert info["burnin_obs"].shape == (3, L - 1, 3, H, W)
    # new contexts 3, 4, 5: burn-in frames are their first L-1 frames, returned obs their last frame
    torch.testing.assert_close(info["burnin_obs"][:, :, 0, 0, 0], (torch.tensor([3, 4, 5])[:, None] + torch.arange(3)) / 100.0)
    torch.testing.assert_close(obs[:, 0, 0, 0], (torch.tensor([3, 4, 5]) + 3) / 100.0)
    levels = (info["final_observation"] + 1) * 127.5
    torch.testing.assert_close(levels, levels.round(), atol=1e-3, rtol=0)  # generated frames are 8-bit
    # the frame buffer shifted: after 3 steps the context is [ctx frame 3, gen 1, gen 2, gen 3]
    assert src.calls == 2  # one preload of 2 batches of 3 contexts served 6 contexts


def test_termination_resets_only_dead_rows_and_refills():
    env, src = make_env([-20.0, 20.0], horizon=15, num_envs=2, preload=1)  # always terminates
    env.reset()
    obs, rew, end, trunc, info = env.step(torch.zeros(2, dtype=torch.long))
    assert torch.all(end == 1) and torch.all(trunc == 0)
    assert info["final_observation"].shape == (2, 3, H, W) and info["burnin_obs"].shape == (2, L - 1, 3, H, W)
    # a stock of one batch (2 contexts) was used up by reset; the dead rows needed a refill
    assert src.calls == 2
    torch.testing.assert_close(obs[:, 0, 0, 0], (torch.tensor([2, 3]) + 3) / 100.0)
    assert torch.all(env.ep_len == 0)


def test_bf16_autocast_steps_through_resets_of_dead_rows():
    """run.amp: the reward/end model's LSTM answers in bf16 under autocast; contexts refilled outside autocast
    (at reset) and inside it (mid-rollout) must still fit the env's recurrent state."""
    env, _ = make_env([-20.0, 20.0], horizon=15, num_envs=2, preload=1)  # every step ends every row
    env.reset()  # contexts burnt in outside autocast
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for _ in range(3):  # each step resets both rows, refilling the stock under autocast
            obs, rew, end, trunc, info = env.step(torch.zeros(2, dtype=torch.long))
            assert torch.all(end == 1) and info["final_observation"].shape == (2, 3, H, W)
    assert env.hx.dtype == env.cx.dtype == torch.float32
    assert torch.isfinite(obs).all()
