"""Autocast scope (issue 21): recurrent states stay fp32 under bf16 autocast; bf16 only where native on CUDA."""

from unittest import mock

import torch

from diamond_kedro.envs.world_model_env import WorldModelEnv, WorldModelEnvConfig
from diamond_kedro.models.actor_critic import ActorCritic, ActorCriticConfig
from diamond_kedro.models.denoiser import Denoiser, DenoiserConfig
from diamond_kedro.models.rew_end_model import RewEndModel, RewEndModelConfig
from diamond_kedro.models.unet import InnerModelConfig
from diamond_kedro.replay.batch import Batch
from diamond_kedro.training.imagination import RolloutLoop, actor_critic_loss
from diamond_kedro.utils import precision

A, S, L = 3, 16, 4


def tiny_world(num_envs: int = 4, horizon: int = 2):
    torch.manual_seed(0)
    den = Denoiser(DenoiserConfig(inner_model=InnerModelConfig(num_actions=A, cond_channels=16, channels=[8, 8], depths=[1, 1], attn_depths=[0, 0])))
    rem = RewEndModel(RewEndModelConfig(num_actions=A, img_size=S, cond_channels=8, channels=[8, 8], depths=[1, 1], attn_depths=[0, 0], lstm_dim=16))
    ac = ActorCritic(ActorCriticConfig(num_actions=A, channels=(4, 4, 8, 8), lstm_dim=16, img_size=S))

    def contexts(n: int) -> Batch:
        return Batch.of(torch.rand(n, L, 3, S, S) * 2 - 1, torch.randint(0, A, (n, L)))

    env = WorldModelEnv(den, rem, contexts, WorldModelEnvConfig(horizon=horizon, num_batches_to_preload=2), num_envs=num_envs)
    return env, rem, ac


def test_carried_recurrent_states_stay_fp32_under_bf16_autocast():
    env, rem, ac = tiny_world()
    loop = RolloutLoop(env, ac)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        rollout = loop.run(5)  # horizon 2: every row is truncated twice, so the burn-in path runs too
        loss, _ = actor_critic_loss(rollout)
        # the reward/end model's nn.LSTM on its own, as imagination and its training call it
        b = Batch.of(torch.rand(2, 3, 3, S, S), torch.zeros(2, 3, dtype=torch.long))
        _, _, (h_rem, c_rem) = rem(b.obs, b.act, b.obs)
        h_ac, c_ac = ac.burn_in(torch.rand(2, 3, 3, S, S))
    assert rollout.trunc.sum() > 0
    assert [s.dtype for s in loop.hx_cx] == [torch.float32, torch.float32]
    assert [s.dtype for s in (h_ac, c_ac)] == [torch.float32, torch.float32]
    assert [s.dtype for s in (env.hx, env.cx, env.contexts.hx, env.contexts.cx)] == [torch.float32] * 4
    assert [s.dtype for s in (h_rem, c_rem)] == [torch.float32, torch.float32]
    loss.backward()  # gradients flow through the fp32 cell into the bf16 encoder
    assert ac.encoder.encoder[0].weight.grad is not None


def test_lstm_under_autocast_equals_fp32_on_the_same_features():
    """The cell runs in fp32 on the (bf16) encoder's features: the state equals an fp32 cell on them."""
    _, _, ac = tiny_world()
    obs = torch.rand(3, 3, S, S) * 2 - 1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        feats = ac.encode(obs)
        _, _, (h, c) = ac(obs)
    h_ref, c_ref = ac.lstm(feats.float())
    torch.testing.assert_close(h, h_ref, rtol=0, atol=0)
    torch.testing.assert_close(c, c_ref, rtol=0, atol=0)


def test_bf16_auto_refuses_emulated_bf16_on_cuda():
    """``is_bf16_supported()`` says yes on GPUs that only emulate bf16 (V100, T4): auto must ask for native."""
    calls = []

    def supported(including_emulation: bool = True) -> bool:
        calls.append(including_emulation)
        return including_emulation  # an emulating GPU: yes with emulation, no without

    with mock.patch.object(torch.cuda, "is_bf16_supported", supported):
        assert precision.resolve_amp("auto", torch.device("cuda")) is False
    assert calls == [False]

    with mock.patch.object(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True):
        assert precision.resolve_amp("auto", torch.device("cuda")) is True  # a native-bf16 GPU (Ampere+)
