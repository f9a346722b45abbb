"""The fast paths of the blocks compute the same function as the plain formulas (values and gradients)."""

import torch

import diamond_kedro.models.unet as unet
from diamond_kedro.models.blocks import AdaGroupNorm, conv_layout
from diamond_kedro.models.denoiser import Denoiser, DenoiserConfig
from diamond_kedro.models.unet import InnerModelConfig

torch.set_num_threads(1)


def formula(x, cond, m, groups):
    """GN(x)·(1 + s) + b written out: per-sample, per-group mean and biased variance, eps 1e-5."""
    b, c, h, w = x.shape
    g = x.reshape(b, groups, -1)
    mean, var = g.mean(-1, keepdim=True), g.var(-1, unbiased=False, keepdim=True)
    xn = ((g - mean) / torch.sqrt(var + 1e-5)).reshape(b, c, h, w)
    s_b = cond @ m.linear.weight.T + m.linear.bias
    return xn * (1 + s_b[:, :c, None, None]) + s_b[:, c:, None, None]


def test_ada_group_norm_both_layouts_match_formula_with_gradients():
    torch.manual_seed(0)
    m = AdaGroupNorm(64, 16)
    x, cond = torch.randn(3, 64, 5, 6), torch.randn(3, 16)
    upstream = torch.randn(3, 64, 5, 6)
    grads = []
    for layout in (torch.contiguous_format, torch.channels_last):
        xi = x.clone().contiguous(memory_format=layout).requires_grad_()
        y = m(xi, cond)
        torch.testing.assert_close(y, formula(x, cond, m, 2), atol=1e-5, rtol=1e-5)
        m.zero_grad()
        y.backward(upstream)
        grads.append((xi.grad.clone(), m.linear.weight.grad.clone()))
    # Reference gradients through the written-out formula.
    xr = x.clone().requires_grad_()
    m.zero_grad()
    formula(xr, cond, m, 2).backward(upstream)
    for gx, gw in grads:
        torch.testing.assert_close(gx, xr.grad, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(gw, m.linear.weight.grad, atol=1e-4, rtol=1e-4)


def test_conv_layout_is_channels_last_on_cpu_and_inner_model_output_is_contiguous(monkeypatch):
    x = torch.randn(2, 8, 4, 4)
    assert conv_layout(x).is_contiguous(memory_format=torch.channels_last)
    torch.manual_seed(0)
    cfg = InnerModelConfig(num_actions=3, cond_channels=8, depths=[1, 1], channels=[8, 8], attn_depths=[False, True])
    den = Denoiser(DenoiserConfig(inner_model=cfg))
    torch.nn.init.normal_(den.inner_model.conv_out.weight, std=0.1)  # non-zero output
    noisy, obs, act = torch.randn(2, 3, 8, 8), torch.randn(2, 12, 8, 8), torch.randint(0, 3, (2, 4))
    out = den.inner_model(noisy, torch.zeros(2), obs, act)
    assert out.is_contiguous()
    # Same values when every op runs in the default layout (conv_layout made a no-op).
    monkeypatch.setattr(unet, "conv_layout", lambda t: t)
    ref = den.inner_model(noisy, torch.zeros(2), obs, act)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
