"""Imagination at 30x56 then 150x280 with the `fast` and `higher_quality` presets (spec §7.5, §7.6)."""

from __future__ import annotations

import pytest
import torch

from diamond_kedro.csgo.actions import encode_action
from diamond_kedro.csgo.config import CsgoConfig
from diamond_kedro.csgo.generate import imagine, to_uint8_frames
from diamond_kedro.builders import build_models


def tiny_models():
    torch.manual_seed(0)
    cfg = CsgoConfig.model_validate({
        "denoiser": {"model": {"cond_channels": 16, "channels": [4, 4], "depths": [1, 1], "attn_depths": [False, False]}},
        "upsampler": {"model": {"cond_channels": 16, "channels": [4, 4, 4, 4], "depths": [1, 1, 1, 1],
                                "attn_depths": [False, False, False, False]}},
    })
    return build_models(cfg)


@pytest.mark.parametrize("preset, nfe_dynamics, nfe_upsampler", [("fast", 1, 1), ("higher_quality", 3, 10)])
def test_shapes_values_and_function_evaluations(preset: str, nfe_dynamics: int, nfe_upsampler: int) -> None:
    models = tiny_models()
    calls = {"denoiser": 0, "upsampler": 0}
    for name, m in models.items():
        original = m.denoise

        def counted(*args, _name=name, _original=original, **kw):
            calls[_name] += 1
            return _original(*args, **kw)

        m.denoise = counted
    b, horizon = 2, 2
    low_ctx = torch.rand(b, 4, 3, 30, 56) * 2 - 1
    full_last = torch.rand(b, 3, 150, 280) * 2 - 1
    acts = torch.from_numpy(encode_action(["w"], mouse_x=10)).expand(b, 4 + horizon - 1, 51).clone()
    low, full = imagine(models["denoiser"], models["upsampler"], low_ctx, full_last, acts, preset=preset)
    assert low.shape == (b, horizon, 3, 30, 56)
    assert full.shape == (b, horizon, 3, 150, 280)
    for x in (low, full):
        # the last Euler step to σ = 0 returns the 8-bit denoised estimate (spec §3.3) up to float rounding
        assert x.min() >= -1 - 1e-5 and x.max() <= 1 + 1e-5
        levels = (x + 1) * 127.5  # on the 256-level grid
        assert torch.allclose(levels, levels.round(), atol=1e-3)
    # spec §7.6: NFE per frame is 1 + 1 (fast; the upsampler's order 2 is inactive on its single, last step)
    # and 3 + 10 (higher_quality)
    assert calls == {"denoiser": nfe_dynamics * horizon, "upsampler": nfe_upsampler * horizon}
    frames = to_uint8_frames(full[0])
    assert frames.shape == (horizon, 150, 280, 3) and frames.dtype.name == "uint8"


def test_bad_context_is_rejected() -> None:
    models = tiny_models()
    with pytest.raises(ValueError, match="context frames"):
        imagine(models["denoiser"], models["upsampler"], torch.zeros(1, 3, 3, 30, 56), torch.zeros(1, 3, 150, 280),
                torch.zeros(1, 4, 51))
    with pytest.raises(ValueError, match="full_res_last"):
        imagine(models["denoiser"], models["upsampler"], torch.zeros(1, 4, 3, 30, 56), torch.zeros(1, 3, 64, 64),
                torch.zeros(1, 4, 51))
