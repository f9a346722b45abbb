import pytest
import torch

from diamond_kedro.models.rew_end_model import RewEndModel, RewEndModelConfig, classification_metrics, init_lstm
from diamond_kedro.replay.batch import Batch

from ..model_helpers import randomize_zero_inits

torch.set_num_threads(1)


def tiny(num_actions=3, img_size=16) -> RewEndModel:
    return RewEndModel(
        RewEndModelConfig(num_actions=num_actions, img_size=img_size, cond_channels=8, channels=[8, 8], depths=[1, 1], attn_depths=[0, 0], lstm_dim=16)
    )


def make_batch(b, s, h=16, w=16, num_actions=3, seed=0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch.of(
        torch.rand(b, s, 3, h, w, generator=g) * 2 - 1,
        torch.randint(0, num_actions, (b, s), generator=g),
        rew=torch.randint(-1, 2, (b, s), generator=g).float() * 3,
    )


def test_parameter_counts_and_keys():
    for a, n in [(18, 5_902_656), (3, 5_900_736)]:
        m = RewEndModel(RewEndModelConfig(num_actions=a))
        assert sum(p.numel() for p in m.parameters()) == n
    sd = m.state_dict()
    expect = {
        "encoder.conv_in.weight": (32, 6, 3, 3),
        "encoder.blocks.0.resblocks.0.norm1.linear.weight": (64, 128),
        "encoder.blocks.3.resblocks.1.conv2.weight": (32, 32, 3, 3),
        "encoder.blocks.4.resblocks.1.attn.qkv_proj.weight": (96, 32, 1, 1),
        "encoder.blocks.4.resblocks.0.attn.norm.norm.bias": (32,),
        "encoder.downsamples.3.conv.weight": (32, 32, 3, 3),
        "act_emb.weight": (3, 128),
        "lstm.weight_ih_l0": (2048, 2048),
        "lstm.weight_hh_l0": (2048, 512),
        "lstm.bias_ih_l0": (2048,),
        "head.0.weight": (512, 512),
        "head.2.weight": (5, 512),
    }
    for k, shape in expect.items():
        assert tuple(sd[k].shape) == shape, k
    assert "head.2.bias" not in sd and not any("downsamples.0." in k or "downsamples.4." in k for k in sd)
    # conv_in 2 + 8 blocks × 8 + 2 attention blocks × 14 + 3 downsamples × 2 + act_emb + lstm 4 + head 3
    assert len(sd) == 2 + 64 + 28 + 6 + 1 + 4 + 3


def test_init_lstm():
    lstm = torch.nn.LSTM(12, 8, batch_first=True)
    init_lstm(lstm)
    torch.testing.assert_close(lstm.bias_ih_l0, torch.tensor([0.0] * 8 + [1.0] * 8 + [0.0] * 16))
    assert torch.all(lstm.bias_hh_l0 == 0)
    w = lstm.weight_hh_l0  # (32, 8): orthogonal → orthonormal columns
    torch.testing.assert_close(w.T @ w, torch.eye(8), atol=1e-5, rtol=1e-5)
    bound = (6 / (12 + 32)) ** 0.5  # Xavier-uniform bound sqrt(6 / (fan_in + fan_out))
    assert lstm.weight_ih_l0.abs().max() <= bound


def test_shapes_64_and_non_square():
    m = RewEndModel(RewEndModelConfig(num_actions=4, channels=[8] * 4, cond_channels=8, lstm_dim=16))
    obs = torch.rand(2, 5, 3, 64, 64)
    lr, le, (h, c) = m(obs, torch.randint(0, 4, (2, 5)), obs)
    assert lr.shape == (2, 5, 3) and le.shape == (2, 5, 2) and h.shape == c.shape == (1, 2, 16)
    m2 = RewEndModel(RewEndModelConfig(num_actions=4, img_size=(30, 56), channels=[8] * 4, cond_channels=8, lstm_dim=16))
    assert m2.lstm.input_size == 8 * 4 * 7  # 30→15→8→4, 56→28→14→7
    obs2 = torch.rand(2, 3, 3, 30, 56)
    assert m2(obs2, torch.zeros(2, 3, dtype=torch.long), obs2)[0].shape == (2, 3, 3)


def test_masked_steps_do_not_count():
    torch.manual_seed(0)
    m = tiny()
    randomize_zero_inits(m)
    b = make_batch(3, 8)
    b.mask_padding[0, 5:] = False  # right padding (episode ended before the window's end)
    b.mask_padding[1, :2] = False  # left padding
    loss_a, _ = m.compute_loss(b)
    # obs[0, 5] is the next frame of the real transition 4; frames 6, 7 only feed masked transitions,
    # after every real step (the LSTM is causal). Left-padded frames do feed the LSTM (gray context,
    # as in the authors' code), so only their targets are changed.
    b.obs[0, 6:] = torch.rand(2, 3, 16, 16)
    b.rew[0, 5:] = 1.0
    b.end[0, 5:] = 1
    b.has_final_obs[0] = True
    b.final_obs[0] = torch.rand(3, 16, 16)
    b.rew[1, :2] = -1.0
    loss_b, _ = m.compute_loss(b)
    assert loss_a.item() == pytest.approx(loss_b.item(), rel=1e-6)
    b.rew[2, 0] = -b.rew[2, 0] + 1  # a real step does count
    loss_c, _ = m.compute_loss(b)
    assert abs(loss_c.item() - loss_a.item()) > 1e-6


def test_final_observation_replaces_padding_at_terminal_step():
    torch.manual_seed(0)
    m = tiny()
    randomize_zero_inits(m)
    b = make_batch(2, 8)
    b.end[0, 4] = 1
    b.mask_padding[0, 5:] = False
    b.obs[0, 5:] = 0.0  # padding after the terminal step
    b.final_obs[0] = torch.rand(3, 16, 16)
    b.has_final_obs[0] = True
    loss_sub, _ = m.compute_loss(b)
    # Same loss if the frame after the terminal step *is* the final observation (it is a masked source frame).
    b2 = make_batch(2, 8)
    b2.end, b2.mask_padding, b2.final_obs, b2.has_final_obs = b.end, b.mask_padding, b.final_obs, b.has_final_obs
    b2.obs = b.obs.clone()
    b2.obs[0, 5] = b.final_obs[0]
    loss_ref, _ = m.compute_loss(b2)
    assert loss_sub.item() == pytest.approx(loss_ref.item(), rel=1e-6)
    assert torch.all(b.obs[0, 5] == 0)  # caller's batch untouched
    b.has_final_obs[0] = False
    with pytest.raises(ValueError, match="has_final_obs"):
        m.compute_loss(b)


def test_classification_metrics_by_hand():
    cm_rew = torch.tensor([[2, 1, 0], [0, 3, 1], [1, 0, 2]])  # rows true, columns predicted
    cm_end = torch.tensor([[5, 0], [0, 0]])
    out = classification_metrics(cm_rew, cm_end)
    assert out["rew_precision_class_0"] == pytest.approx(2 / 3)
    assert out["rew_recall_class_0"] == pytest.approx(2 / 3)
    assert out["rew_precision_class_1"] == pytest.approx(3 / 4)
    assert out["rew_recall_class_1"] == pytest.approx(3 / 4)
    assert out["rew_precision_class_2"] == pytest.approx(2 / 3)
    assert out["rew_recall_class_2"] == pytest.approx(2 / 3)
    assert out["rew_f1_score_class_1"] == pytest.approx(0.75)
    assert out["end_precision_class_0"] == 1.0 and out["end_f1_score_class_1"] == 0.0


def test_loss_metrics_and_confusion_counts():
    torch.manual_seed(0)
    m = tiny()
    b = make_batch(2, 6)
    b.mask_padding[1, 3:] = False
    loss, metrics = m.compute_loss(b)
    assert float(metrics["loss_total"]) == pytest.approx(float(metrics["loss_rew"] + metrics["loss_end"]), rel=1e-6)
    n_valid = 5 + 3
    assert metrics["confusion_matrix"]["rew"].sum().item() == n_valid
    assert metrics["confusion_matrix"]["end"].sum().item() == n_valid
    # true-class totals (row sums) = counts of sign(rew)+1 over valid steps
    valid = b.mask_padding[:, :-1]
    target = b.rew[:, :-1][valid].sign().long() + 1
    torch.testing.assert_close(metrics["confusion_matrix"]["rew"].sum(1), torch.bincount(target, minlength=3))


def test_predict_rew_end_samples_and_burn_in():
    torch.manual_seed(0)
    m = tiny()
    torch.nn.init.zeros_(m.head[2].weight)  # uniform categoricals
    n = 3000
    obs = torch.rand(n, 3, 16, 16)
    rew, end, (h, c) = m.predict_rew_end(obs, torch.zeros(n, dtype=torch.long), obs)
    assert rew.dtype == torch.float32 and end.dtype == torch.uint8 and h.shape == (1, n, 16)
    for v in (-1.0, 0.0, 1.0):
        assert (rew == v).float().mean().item() == pytest.approx(1 / 3, abs=0.04)
    assert end.float().mean().item() == pytest.approx(0.5, abs=0.04)

    ctx = torch.rand(2, 4, 3, 16, 16)
    act = torch.randint(0, 3, (2, 4))
    hx_cx = m.burn_in(ctx, act)
    state = None
    for t in range(3):  # the 3 context transitions, one at a time
        *_, state = m(ctx[:, t : t + 1], act[:, t : t + 1], ctx[:, t + 1 : t + 2], state)
    torch.testing.assert_close(hx_cx[0], state[0])
    torch.testing.assert_close(hx_cx[1], state[1])
