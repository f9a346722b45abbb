"""λ-returns over an imagined (or real) chunk of T steps (spec §5.4)."""

from __future__ import annotations

import torch
from torch import Tensor


@torch.no_grad()
def lambda_returns(
    rew: Tensor,
    end: Tensor,
    trunc: Tensor,
    bootstrap_values: Tensor,
    gamma: float = 0.985,
    lambda_: float = 0.95,
) -> Tensor:
    """TD(λ) targets G (N, T) for rewards/ends/truncs/bootstrap values of shape (N, T).

    With r = sign(rew), d = end, u = trunc and V̄_t the value of the state after step t (or of the
    final observation when the episode died at t):

        G_t = r_t + γ(1 − d_t)·[(1 − u_t)(1 − λ) + u_t]·V̄_t + γλ·(1 − max(d_t, u_t))·G_{t+1},
        G_T ≡ V̄_{T−1}.

    So a terminal step gives G = r, a truncated step G = r + γ V̄(final obs), and a non-terminal last
    step r + γ V̄. Computed without gradient (targets are constants for both losses).
    """
    if not (rew.ndim == 2 and rew.shape == end.shape == trunc.shape == bootstrap_values.shape):
        raise ValueError(
            "lambda_returns expects four (N, T) tensors of equal shape, got "
            f"rew {tuple(rew.shape)}, end {tuple(end.shape)}, trunc {tuple(trunc.shape)}, "
            f"bootstrap_values {tuple(bootstrap_values.shape)}"
        )
    v = bootstrap_values.float()
    r = rew.float().sign()  # sign-clipping (a no-op for imagined rewards, which are already in {-1,0,1})
    d = end.float()
    u = trunc.float()
    not_dead = 1.0 - torch.maximum(d, u)
    # One-step part, then the backward recursion adds the λ-weighted tail.
    g = r + gamma * (1.0 - d) * ((1.0 - u) * (1.0 - lambda_) + u) * v
    nxt = v[:, -1]  # G_T ≡ V̄_{T-1}
    for t in reversed(range(r.shape[1])):
        g[:, t] += gamma * lambda_ * not_dead[:, t] * nxt
        nxt = g[:, t]
    return g
