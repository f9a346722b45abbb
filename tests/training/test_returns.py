"""λ-returns (spec §5.4) against hand-computed values."""

import pytest
import torch

from diamond_kedro.training.returns import lambda_returns

# γ = λ = 0.5 keeps the arithmetic exact: γ(1−λ) = γλ = 0.25.
G, L = 0.5, 0.5


def _ret(rew, end, trunc, v, gamma=G, lambda_=L):
    t = lambda x, dt=torch.float32: torch.tensor([x], dtype=dt)
    return lambda_returns(t(rew), t(end, torch.uint8), t(trunc, torch.uint8), t(v), gamma, lambda_)[0]


def test_no_death_recursion_and_sign_clipping():
    # r = sign([1, 0, 2]) = [1, 0, 1], V̄ = [2, 4, 8]
    # G2 = 1 + 0.25·8 + 0.25·G3(=V̄2=8) = 5            (= r + γV̄: non-terminal last step)
    # G1 = 0 + 0.25·4 + 0.25·5        = 2.25
    # G0 = 1 + 0.25·2 + 0.25·2.25     = 2.0625
    g = _ret([1.0, 0.0, 2.0], [0, 0, 0], [0, 0, 0], [2.0, 4.0, 8.0])
    assert torch.allclose(g, torch.tensor([2.0625, 2.25, 5.0]))


def test_mid_sequence_end_cuts_recursion():
    # r = sign([0, -3, 1]) = [0, -1, 1], end at t=1, V̄1 = 4 must be ignored
    # G2 = 1 + 0.5·8 = 5 ; G1 = -1 (terminal: no bootstrap, no tail)
    # G0 = 0 + 0.25·2 + 0.25·(-1) = 0.25
    g = _ret([0.0, -3.0, 1.0], [0, 1, 0], [0, 0, 0], [2.0, 4.0, 8.0])
    assert torch.allclose(g, torch.tensor([0.25, -1.0, 5.0]))


def test_end_at_last_step_gives_reward_only():
    # G2 = r = 1 ; G1 = 0.25·4 + 0.25·1 = 1.25 ; G0 = 0.25·2 + 0.25·1.25 = 0.8125
    g = _ret([0.0, 0.0, 1.0], [0, 0, 1], [0, 0, 0], [2.0, 4.0, 6.0])
    assert torch.allclose(g, torch.tensor([0.8125, 1.25, 1.0]))


def test_trunc_at_last_step_bootstraps_final_obs_fully():
    # G2 = 1 + γ·V̄2(final obs) = 1 + 3 = 4 ; G1 = 0.25·4 + 0.25·4 = 2 ; G0 = 0.25·2 + 0.25·2 = 1
    g = _ret([0.0, 0.0, 1.0], [0, 0, 0], [0, 0, 1], [2.0, 4.0, 6.0])
    assert torch.allclose(g, torch.tensor([1.0, 2.0, 4.0]))


def test_mid_sequence_trunc_uses_full_bootstrap_and_cuts_tail():
    # trunc at t=0: G0 = 1 + 0.5·10 = 6 (no tail from G1) ; G2 = 0.5·8 = 4 ; G1 = 0.25·4 + 0.25·4 = 2
    g = _ret([1.0, 0.0, 0.0], [0, 0, 0], [1, 0, 0], [10.0, 4.0, 8.0])
    assert torch.allclose(g, torch.tensor([6.0, 2.0, 4.0]))


def test_paper_constants_single_steps():
    # Acceptance checks (spec §13) with γ = 0.985, λ = 0.95, T = 1:
    rew = torch.tensor([[1.0], [1.0], [1.0]])
    end = torch.tensor([[0], [1], [0]], dtype=torch.uint8)
    trunc = torch.tensor([[0], [0], [1]], dtype=torch.uint8)
    v = torch.tensor([[2.0], [2.0], [3.0]])
    g = lambda_returns(rew, end, trunc, v)  # defaults are the paper's γ, λ
    expected = torch.tensor([[1 + 0.985 * 2.0], [1.0], [1 + 0.985 * 3.0]])
    assert torch.allclose(g, expected)


def test_batched_rows_are_independent_and_no_grad():
    v = torch.tensor([[2.0, 4.0, 8.0], [2.0, 4.0, 8.0]], requires_grad=True)
    rew = torch.tensor([[1.0, 0.0, 2.0], [0.0, -3.0, 1.0]])
    end = torch.tensor([[0, 0, 0], [0, 1, 0]], dtype=torch.uint8)
    trunc = torch.zeros(2, 3, dtype=torch.uint8)
    g = lambda_returns(rew, end, trunc, v, G, L)
    assert not g.requires_grad
    assert torch.allclose(g, torch.tensor([[2.0625, 2.25, 5.0], [0.25, -1.0, 5.0]]))


def test_lambda_zero_is_one_step_td():
    # λ = 0: G_t = r_t + γ(1−d_t)V̄_t ; here γ = 0.5
    g = _ret([1.0, 0.0, 0.0], [0, 1, 0], [0, 0, 0], [2.0, 4.0, 6.0], gamma=0.5, lambda_=0.0)
    assert torch.allclose(g, torch.tensor([2.0, 0.0, 3.0]))


def test_shape_mismatch_is_a_value_error():
    with pytest.raises(ValueError, match="bootstrap_values"):
        lambda_returns(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 4))
