"""The fast paths of the blocks compute the same function as the plain formulas (values and gradients)."""

import json

import pytest
import torch

import diamond_kedro.models.blocks as blocks
from diamond_kedro.models.blocks import LAYOUT_ENV, AdaGroupNorm, conv_layout
from diamond_kedro.utils import layout_probe
from diamond_kedro.models.denoiser import Denoiser, DenoiserConfig
from diamond_kedro.models.unet import InnerModelConfig, probe_conv_layouts

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


def test_conv_layout_follows_the_override_and_inner_model_output_is_contiguous(monkeypatch):
    x = torch.randn(2, 8, 4, 4)
    monkeypatch.setenv(LAYOUT_ENV, "channels_last")
    assert conv_layout(x, probe_conv_layouts).is_contiguous(memory_format=torch.channels_last)
    torch.manual_seed(0)
    cfg = InnerModelConfig(num_actions=3, cond_channels=8, depths=[1, 1], channels=[8, 8], attn_depths=[False, True])
    den = Denoiser(DenoiserConfig(inner_model=cfg))
    torch.nn.init.normal_(den.inner_model.conv_out.weight, std=0.1)  # non-zero output
    noisy, obs, act = torch.randn(2, 3, 8, 8), torch.randn(2, 12, 8, 8), torch.randint(0, 3, (2, 4))
    out = den.inner_model(noisy, torch.zeros(2), obs, act)
    assert out.is_contiguous()
    # Same values when every op runs in the default layout.
    monkeypatch.setenv(LAYOUT_ENV, "contiguous")
    assert conv_layout(x, probe_conv_layouts) is x
    ref = den.inner_model(noisy, torch.zeros(2), obs, act)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    monkeypatch.setenv(LAYOUT_ENV, "nhwc")
    with pytest.raises(ValueError, match="DIAMOND_CONV_LAYOUT='nhwc'"):
        conv_layout(x, probe_conv_layouts)


def test_layout_choice_is_probed_once_per_machine_and_cached_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("DIAMOND_CACHE_DIR", str(tmp_path))
    calls = []

    def probe(cl, contiguous):
        def run():
            calls.append(1)
            return {"channels_last": cl, "contiguous": contiguous}

        return run

    assert layout_probe.cached_choice(probe(1.0, 2.0)) is True
    assert len(calls) == 1
    # The second process on this machine reads the file instead of measuring.
    assert layout_probe.cached_choice(probe(9.0, 1.0)) is True
    assert len(calls) == 1
    saved = json.loads((tmp_path / "kernel_choices.json").read_text())
    assert saved["conv_layout"][layout_probe.machine_key()]["choice"] == "channels_last"
    # Another thread count is another machine key: measured afresh; a 3 % win is not enough to switch.
    threads = torch.get_num_threads()
    torch.set_num_threads(threads + 1)
    try:
        assert layout_probe.cached_choice(probe(0.97, 1.0)) is False
    finally:
        torch.set_num_threads(threads)
    assert len(calls) == 2
    # A corrupt cache is measured over, not trusted.
    (tmp_path / "kernel_choices.json").write_text("{not json")
    assert layout_probe.cached_choice(probe(2.0, 1.0)) is False
    assert len(calls) == 3


def test_layout_probe_times_both_layouts_even_when_first_asked_without_grad(tmp_path, monkeypatch):
    times = probe_conv_layouts(repeats=1)
    assert set(times) == {"channels_last", "contiguous"} and all(t > 0 for t in times.values())
    # a first use from sampling code (no_grad, inference_mode) still probes with a backward pass
    monkeypatch.setenv("DIAMOND_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(blocks, "_layout_choice", {})
    with torch.inference_mode():
        blocks.channels_last_pays(probe_conv_layouts)
    assert (tmp_path / "kernel_choices.json").is_file()
