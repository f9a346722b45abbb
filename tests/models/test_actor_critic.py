"""Actor-critic architecture (spec §5.1, Appendix B)."""

import math

import pytest
import torch

from diamond_kedro.models.actor_critic import ActorCritic, ActorCriticConfig


@pytest.fixture(scope="module")
def paper_model() -> ActorCritic:
    torch.manual_seed(0)
    return ActorCritic(ActorCriticConfig(num_actions=18))


def _num_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_parameter_counts(paper_model):
    # Hand count: encoder 896 + 2·(64 + 9,248) + (64 + 18,496 + 2,112) + (128 + 36,928) = 77,248;
    # LSTMCell 4·512·(1024 + 512) + 2·2048 = 3,149,824; critic 513; actor 513·A.
    assert 77_248 + 3_149_824 + 513 + 513 * 18 == 3_236_819
    assert _num_params(paper_model) == 3_236_819
    assert _num_params(ActorCritic(ActorCriticConfig(num_actions=3))) == 3_229_124
    assert _num_params(ActorCritic(ActorCriticConfig(num_actions=4))) == 3_229_637


def test_state_dict_keys_and_shapes(paper_model):
    expected = {
        "encoder.encoder.0.weight": (32, 3, 3, 3),
        "encoder.encoder.0.bias": (32,),
    }
    for idx, (cin, cout) in zip((1, 3, 5, 7), ((32, 32), (32, 32), (32, 64), (64, 64))):
        expected[f"encoder.encoder.{idx}.f.0.norm.weight"] = (cin,)
        expected[f"encoder.encoder.{idx}.f.0.norm.bias"] = (cin,)
        expected[f"encoder.encoder.{idx}.f.2.weight"] = (cout, cin, 3, 3)
        expected[f"encoder.encoder.{idx}.f.2.bias"] = (cout,)
    expected["encoder.encoder.5.skip_projection.weight"] = (64, 32, 1, 1)
    expected["encoder.encoder.5.skip_projection.bias"] = (64,)
    expected.update(
        {
            "lstm.weight_ih": (2048, 1024),
            "lstm.weight_hh": (2048, 512),
            "lstm.bias_ih": (2048,),
            "lstm.bias_hh": (2048,),
            "critic_linear.weight": (1, 512),
            "critic_linear.bias": (1,),
            "actor_linear.weight": (18, 512),
            "actor_linear.bias": (18,),
        }
    )
    got = {k: tuple(v.shape) for k, v in paper_model.state_dict().items()}
    assert got == expected
    # max-pools at 2, 4, 6, 8
    seq = paper_model.encoder.encoder
    assert [type(seq[i]).__name__ for i in (2, 4, 6, 8)] == ["MaxPool2d"] * 4
    # GroupNorm groups = max(1, C // 32): 1 for 32 channels, 2 for 64
    assert seq[1].f[0].norm.num_groups == 1 and seq[7].f[0].norm.num_groups == 2


def test_official_style_state_dict_loads_strictly(paper_model):
    fresh = ActorCritic(ActorCriticConfig(num_actions=18))
    sd = {k: torch.randn_like(v) for k, v in paper_model.state_dict().items()}
    missing, unexpected = fresh.load_state_dict(sd, strict=True)
    assert not missing and not unexpected


def test_initial_policy_uniform_and_value_zero(paper_model):
    obs = torch.rand(5, 3, 64, 64) * 2 - 1
    logits, value, (h, c) = paper_model(obs)
    assert logits.shape == (5, 18) and value.shape == (5,) and h.shape == c.shape == (5, 512)
    probs = torch.softmax(logits, dim=-1)
    assert torch.equal(probs, torch.full((5, 18), 1 / 18))
    assert torch.equal(value, torch.zeros(5))
    assert h.abs().sum() > 0  # the trunk itself is not zero


def test_lstm_init(paper_model):
    lstm = paper_model.lstm
    n = 512
    bias_ih = lstm.bias_ih.detach()
    # gate order i, f, g, o: only the forget-gate slice [512:1024] is 1
    assert torch.equal(bias_ih[n : 2 * n], torch.ones(n))
    assert torch.equal(torch.cat([bias_ih[:n], bias_ih[2 * n :]]), torch.zeros(3 * n))
    assert torch.equal(lstm.bias_hh.detach(), torch.zeros(4 * n))
    # orthogonal (2048, 512): columns orthonormal, W^T W = I
    w_hh = lstm.weight_hh.detach().double()
    assert torch.allclose(w_hh.T @ w_hh, torch.eye(n, dtype=torch.float64), atol=1e-5)
    # Xavier-uniform: U(-b, b), b = sqrt(6 / (fan_in + fan_out)) = sqrt(6 / 3072); std = b / sqrt(3)
    b = math.sqrt(6 / (1024 + 2048))
    w_ih = lstm.weight_ih.detach()
    assert w_ih.abs().max() <= b
    assert abs(w_ih.std().item() - b / math.sqrt(3)) < 0.01 * b


def test_burn_in_equals_sequential_forwards():
    torch.manual_seed(1)
    m = ActorCritic(ActorCriticConfig(num_actions=3, channels=(4, 4, 8, 8), lstm_dim=16, img_size=16))
    frames = torch.rand(2, 3, 3, 16, 16) * 2 - 1
    state = None
    for i in range(3):
        _, _, state = m(frames[:, i], state)
    h, c = m.burn_in(frames)
    assert torch.allclose(h, state[0], atol=1e-6) and torch.allclose(c, state[1], atol=1e-6)


def test_bad_config_and_input_raise():
    with pytest.raises(ValueError, match="img_size"):
        ActorCriticConfig(num_actions=3, img_size=60)
    m = ActorCritic(ActorCriticConfig(num_actions=3, channels=(4, 4, 8, 8), lstm_dim=16, img_size=16))
    with pytest.raises(ValueError, match="obs"):
        m(torch.zeros(3, 16, 16))
