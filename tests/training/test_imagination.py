"""Rollout loop and actor-critic loss (spec §5.3, §5.4) on tiny deterministic fake envs."""

import torch
import torch.nn as nn

from diamond_kedro.models.actor_critic import ActorCritic, ActorCriticConfig
from diamond_kedro.training.imagination import RolloutLoop, actor_critic_loss
from diamond_kedro.training.optim import make_optimizer, optimizer_step

torch.set_num_threads(1)
S = 16  # tiny frames: 4 max-pools -> 1x1


def tiny_model(num_actions: int = 3, seed: int = 0, random_heads: bool = True) -> ActorCritic:
    torch.manual_seed(seed)
    m = ActorCritic(ActorCriticConfig(num_actions=num_actions, channels=(4, 4, 8, 8), lstm_dim=16, img_size=S))
    if random_heads:  # the paper's zero heads would make every value 0 and hide bugs
        for head in (m.actor_linear, m.critic_linear):
            nn.init.normal_(head.weight)
            nn.init.normal_(head.bias)
    return m


def img(v: float, n: int = 1) -> torch.Tensor:
    return torch.full((n, 3, S, S), v)


# Action-independent episodes. Row 0 ends (end=1) after every 3rd step, row 1 is truncated after
# every 4th step, row 2 never dies. Frames encode (row, episode, step) so every frame differs.
DEATH = {0: (3, "end"), 1: (4, "trunc"), 2: (10**9, None)}


def frame(row: int, ep: int, s: int) -> float:
    return -0.8 + 0.1 * s + 0.3 * row + 0.05 * ep


def final_frame(row: int, ep: int) -> float:
    return 0.9 - 0.1 * row - 0.07 * ep


def burnin_frame(row: int, ep: int, j: int) -> float:
    return -0.5 + 0.2 * j - 0.1 * row + 0.03 * ep


class ScheduledEnv:
    num_envs, num_actions = 3, 3

    def __init__(self, with_burnin: bool) -> None:
        self.with_burnin = with_burnin
        self.ep = [0, 0, 0]
        self.s = [0, 0, 0]
        self.num_resets = 0

    def _obs(self) -> torch.Tensor:
        return torch.cat([img(frame(i, self.ep[i], self.s[i])) for i in range(3)])

    def reset(self) -> torch.Tensor:
        self.num_resets += 1
        return self._obs()

    def step(self, act):
        assert act.shape == (3,) and act.dtype == torch.int64
        rew = torch.tensor([float(self.s[i]) for i in range(3)])
        end = torch.zeros(3, dtype=torch.uint8)
        trunc = torch.zeros(3, dtype=torch.uint8)
        finals, burnins = [], []
        for i in range(3):
            every, kind = DEATH[i]
            self.s[i] += 1
            if self.s[i] == every:
                (end if kind == "end" else trunc)[i] = 1
                finals.append(img(final_frame(i, self.ep[i])))
                self.ep[i] += 1
                self.s[i] = 0
                burnins.append(torch.cat([img(burnin_frame(i, self.ep[i], j)) for j in range(3)])[None])
        info = {"final_observation": torch.cat(finals) if finals else torch.zeros(0, 3, S, S)}
        if self.with_burnin and burnins:
            info["burnin_obs"] = torch.cat(burnins)
        return self._obs(), rew, end, trunc, info


@torch.no_grad()
def reference_row(model, row: int, n_steps: int, with_burnin: bool):
    """Spec §5.3 for one env, one step at a time: values, bootstrap values, final (h, c)."""
    h, c = model.zero_state(1)  # first reset: no burn-in
    ep, s = 0, 0
    values, finals = [], {}
    every, _ = DEATH[row]
    for g in range(n_steps):
        _, v, (h, c) = model(img(frame(row, ep, s)), (h, c))
        values.append(v.item())
        s += 1
        if s == every:  # died at g: bootstrap from the final frame with the state after step g
            finals[g] = model(img(final_frame(row, ep)), (h, c))[1].item()
            ep, s = ep + 1, 0
            h, c = model.zero_state(1)
            if with_burnin:
                for j in range(3):
                    _, _, (h, c) = model(img(burnin_frame(row, ep, j)), (h, c))
    v_next = model(img(frame(row, ep, s)), (h, c))[1].item()
    boots = [finals.get(g, values[g + 1] if g + 1 < n_steps else v_next) for g in range(n_steps)]
    return values, boots, (h, c)


def _check_against_reference(with_burnin: bool):
    model = tiny_model()
    env = ScheduledEnv(with_burnin)
    loop = RolloutLoop(env, model)
    r1 = loop.run(4)
    loss, _ = actor_critic_loss(r1, 0.985, 0.95)
    loss.backward()  # frees the first chunk's graph
    r2 = loop.run(4)  # must not backprop into chunk 1: (h, c) were detached at the start of the call
    loss2, _ = actor_critic_loss(r2, 0.985, 0.95)
    loss2.backward()
    assert env.num_resets == 1

    # shapes / dtypes
    assert r1.obs.shape == (3, 4, 3, S, S) and r1.logits.shape == (3, 4, 3)
    for x in (r1.act, r1.rew, r1.end, r1.trunc, r1.values, r1.bootstrap_values):
        assert x.shape == (3, 4)
    assert r1.act.dtype == torch.int64 and r1.end.dtype == torch.uint8
    assert r1.values.requires_grad and not r1.bootstrap_values.requires_grad
    assert len(r1.infos) == 4
    # obs[t] is the frame the action was taken on; row 0's episode 1 starts at global step 3
    assert r1.obs[0, 3, 0, 0, 0].item() == torch.tensor(frame(0, 1, 0)).item()
    # deaths where scheduled: row 0 end at global 2, 5; row 1 trunc at global 3, 7
    end = torch.cat([r1.end, r2.end], 1)
    trunc = torch.cat([r1.trunc, r2.trunc], 1)
    assert end[0].nonzero().flatten().tolist() == [2, 5] and not end[1:].any()
    assert trunc[1].nonzero().flatten().tolist() == [3, 7] and not trunc[[0, 2]].any()

    values = torch.cat([r1.values, r2.values], 1).detach()
    boots = torch.cat([r1.bootstrap_values, r2.bootstrap_values], 1)
    for row in range(3):
        ref_v, ref_b, (h, c) = reference_row(model, row, 8, with_burnin)
        assert torch.allclose(values[row], torch.tensor(ref_v), atol=1e-5), row
        assert torch.allclose(boots[row], torch.tensor(ref_b), atol=1e-5), row
        assert torch.allclose(loop.hx_cx[0][row], h[0], atol=1e-5)
        assert torch.allclose(loop.hx_cx[1][row], c[0], atol=1e-5)
    return model, loop, r1, r2


def test_rollout_matches_step_by_step_reference_with_burnin():
    model, loop, r1, r2 = _check_against_reference(with_burnin=True)
    # Row 1 died at the chunk's last step: its state is the burn-in state over its 3 new context
    # frames (not zero), and its bootstrap is the value of its final frame, not of the new obs.
    h, c = loop.hx_cx
    assert h[1].abs().sum() > 0
    with torch.no_grad():
        h_b, _ = model.burn_in(torch.cat([img(burnin_frame(1, 2, j)) for j in range(3)])[None])
    assert torch.allclose(h[1], h_b[0], atol=1e-6)
    # Row 0 died at t=2 of chunk 1: bootstrap[t=2] = V(final frame) from the state after that step
    assert r1.end[0, 2] == 1


def test_rollout_zeroes_state_of_dead_envs_without_burnin():
    model, loop, r1, r2 = _check_against_reference(with_burnin=False)
    h, c = loop.hx_cx
    # row 1 was truncated at the last step of chunk 2: its (h, c) are exactly zero, the others not
    assert torch.equal(h[1], torch.zeros(16)) and torch.equal(c[1], torch.zeros(16))
    assert h[0].abs().sum() > 0 and h[2].abs().sum() > 0


def test_first_reset_has_no_burnin():
    model = tiny_model()
    loop = RolloutLoop(ScheduledEnv(with_burnin=True), model)
    r = loop.run(1)
    with torch.no_grad():
        _, v0, _ = model(torch.cat([img(frame(i, 0, 0)) for i in range(3)]))  # zero state
    assert torch.allclose(r.values[:, 0].detach(), v0, atol=1e-6)


class StubRng:
    def __init__(self, seq):
        self.seq = list(seq)

    def random(self) -> float:
        return self.seq.pop(0)


class ConstEnv:
    """Bandit: constant frame, every step terminal, reward 1 for action ``good`` else 0."""

    def __init__(self, num_envs: int, num_actions: int, good: int = 2) -> None:
        self.num_envs, self.num_actions, self.good = num_envs, num_actions, good

    def reset(self):
        return img(0.0, self.num_envs)

    def step(self, act):
        rew = (act == self.good).float()
        end = torch.ones(self.num_envs, dtype=torch.uint8)
        trunc = torch.zeros(self.num_envs, dtype=torch.uint8)
        info = {"final_observation": img(0.5, self.num_envs)}
        return img(0.0, self.num_envs), rew, end, trunc, info


def test_epsilon_one_coin_flip_for_all_envs():
    model = tiny_model(num_actions=4, random_heads=False)
    with torch.no_grad():
        model.actor_linear.bias.copy_(torch.tensor([100.0, 0.0, 0.0, 0.0]))  # greedy: always 0
    loop = RolloutLoop(ConstEnv(64, 4), model, epsilon=0.5, rng=StubRng([0.9, 0.1, 0.9, 0.2]))
    act = loop.run(4).act
    # coin 0.9 >= ε: policy for every env; coin < ε: uniform random for every env (all 64 zero: 4^-64)
    assert (act[:, 0] == 0).all() and (act[:, 2] == 0).all()
    assert (act[:, 1] != 0).any() and (act[:, 3] != 0).any()


def test_loss_values_on_hand_checkable_rollout():
    # Zero heads: uniform policy over 3 actions, V = 0. Bandit: every step terminal, G = r.
    model = tiny_model(num_actions=3, random_heads=False)
    r = RolloutLoop(ConstEnv(8, 3), model).run(2)
    loss, m = actor_critic_loss(r, 0.985, 0.95, weight_value_loss=1.0, weight_entropy_loss=0.001)
    g = r.rew  # terminal every step
    # loss_actions = −mean(log(1/3)·(G − 0)) = ln3·mean(r); loss_values = mean(r²); entropy = ln 3
    ln3 = torch.log(torch.tensor(3.0)).item()
    assert abs(m["loss_actions"] - ln3 * g.mean().item()) < 1e-6
    assert abs(m["loss_values"] - (g**2).mean().item()) < 1e-6
    assert abs(m["loss_entropy"] + 0.001 * ln3) < 1e-7
    assert abs(m["policy_entropy"] - torch.log2(torch.tensor(3.0)).item()) < 1e-6  # bits
    assert abs(m["loss_total"] - loss.item()) < 1e-6
    assert abs(m["imagined_return_mean"] - g.mean().item()) < 1e-6
    # Stop-grad advantage: V gets gradient only from the value loss, dL/dV_t = 2(V_t − G_t)/n, so the
    # critic bias gradient is −2·mean(G) (without the stop-grad it would also get −ln 3).
    loss.backward()
    assert abs(model.critic_linear.bias.grad.item() + 2 * g.mean().item()) < 1e-6
    # Actor bias: d/db_j of −mean(log π(a)·G) = −mean(G·(1[a=j] − 1/3)); the entropy term has zero
    # gradient at the uniform policy (its maximum).
    onehot = torch.nn.functional.one_hot(r.act, 3).float()
    expected = -(g[..., None] * (onehot - 1 / 3)).mean((0, 1))
    assert torch.allclose(model.actor_linear.bias.grad, expected, atol=1e-6)


def test_actor_critic_updates_learn_the_rewarded_action():
    torch.manual_seed(0)
    model = tiny_model(num_actions=3, random_heads=False)
    loop = RolloutLoop(ConstEnv(16, 3, good=2), model)
    opt = make_optimizer(model, lr=3e-3, weight_decay=0.0)

    def p_good() -> float:
        with torch.no_grad():
            return torch.softmax(model(img(0.0))[0], -1)[0, 2].item()

    assert abs(p_good() - 1 / 3) < 1e-6
    for _ in range(25):
        loss, _ = actor_critic_loss(loop.run(4), 0.985, 0.95)
        optimizer_step(model, opt, None, loss, max_grad_norm=100.0)
    assert p_good() > 0.6
