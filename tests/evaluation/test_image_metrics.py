"""PSNR and SSIM against hand computations and an independent scipy implementation."""

import math

import numpy as np
import pytest
import scipy.ndimage
import torch

from diamond_kedro.evaluation.image_metrics import finite_mean_db, gaussian_window, psnr, ssim, uint8_hwc_to_chw


def test_psnr_constant_images_by_hand():
    # uint8: every pixel differs by 10 -> MSE = 100, PSNR = 10 log10(255^2 / 100) = 20 log10(25.5)
    x = torch.full((3, 16, 16), 100, dtype=torch.uint8)
    y = torch.full((3, 16, 16), 110, dtype=torch.uint8)
    assert psnr(x, y).item() == pytest.approx(20 * math.log10(25.5), abs=1e-9)  # 28.1308...
    # float in [-1, 1] (L = 2): difference 0.2 -> MSE 0.04, PSNR = 10 log10(4 / 0.04) = 20 dB
    xf = torch.zeros(2, 3, 8, 8)
    yf = torch.full((2, 3, 8, 8), 0.2)
    np.testing.assert_allclose(psnr(xf, yf).numpy(), [20.0, 20.0], atol=1e-5)


def test_psnr_batched_per_image_and_identical_is_inf():
    x = torch.zeros(3, 3, 8, 8, dtype=torch.uint8)
    y = x.clone()
    y[1] = 1  # MSE 1 -> 10 log10(65025) = 48.1308...
    y[2, 0] = 3  # one channel of three differs by 3 -> MSE 9/3 = 3 -> 10 log10(65025 / 3)
    out = psnr(x, y)
    assert out.shape == (3,)
    assert math.isinf(out[0].item()) and out[0].item() > 0
    assert out[1].item() == pytest.approx(10 * math.log10(65025), abs=1e-9)
    assert out[2].item() == pytest.approx(10 * math.log10(65025 / 3), abs=1e-9)
    assert psnr(x, y, max_db=100.0)[0].item() == 100.0
    expected_mean = (100 + 10 * math.log10(65025) + 10 * math.log10(65025 / 3)) / 3  # inf counted as 100
    assert finite_mean_db(out, max_db=100.0) == pytest.approx(expected_mean)


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(torch.zeros(3, 8, 8), torch.zeros(3, 8, 9))
    with pytest.raises(ValueError, match="smaller than the SSIM window"):
        ssim(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="value_range"):
        psnr(torch.zeros(3, 8, 8), torch.zeros(3, 8, 8), value_range=(1.0, 1.0))
    with pytest.raises(ValueError, match="dtypes differ"):
        psnr(torch.zeros(3, 8, 8, dtype=torch.uint8), torch.zeros(3, 8, 8))


def test_ssim_identical_is_one():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=g)
    np.testing.assert_allclose(ssim(x, x).numpy(), [1.0, 1.0], atol=1e-6)


def test_ssim_constant_images_closed_form():
    # Constant images: all local variances/covariances are 0, so
    # SSIM = (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1) * (0 + C2) / (0 + C2).
    # uint8, L = 255: C1 = (0.01 * 255)^2 = 6.5025; mu_x = 100, mu_y = 150:
    # (30000 + 6.5025) / (10000 + 22500 + 6.5025) = 30006.5025 / 32506.5025 = 0.923091...
    x = torch.full((3, 16, 16), 100, dtype=torch.uint8)
    y = torch.full((3, 16, 16), 150, dtype=torch.uint8)
    assert ssim(x, y).item() == pytest.approx(30006.5025 / 32506.5025, abs=1e-6)
    # float in [-1, 1] is mapped to [0, 1] (L = 1, C1 = 0.01^2 = 1e-4): 0.5 -> 0.75, -0.25 -> 0.375
    # (2 * 0.75 * 0.375 + 1e-4) / (0.5625 + 0.140625 + 1e-4) = 0.5626 / 0.703225 = 0.800028...
    xf = torch.full((1, 3, 12, 12), 0.5)
    yf = torch.full((1, 3, 12, 12), -0.25)
    assert ssim(xf, yf).item() == pytest.approx(0.5626 / 0.703225, abs=1e-6)
    # an explicit value_range: values in [0, 10] -> 5 and 2.5 map to 0.5 and 0.25
    # (2 * 0.5 * 0.25 + 1e-4) / (0.25 + 0.0625 + 1e-4) = 0.2501 / 0.3126
    xr, yr = torch.full((3, 12, 12), 5.0), torch.full((3, 12, 12), 2.5)
    assert ssim(xr, yr, value_range=(0, 10)).item() == pytest.approx(0.2501 / 0.3126, abs=1e-6)


def _ssim_reference(x: np.ndarray, y: np.ndarray, data_range: float) -> float:
    """Independent float64 SSIM: scipy Gaussian filter (σ 1.5, truncate 3.5 -> 11 taps), crop the
    5-pixel border where the window leaves the image, average map then channels (CHW input)."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    vals = []
    for xc, yc in zip(x.astype(np.float64), y.astype(np.float64)):
        f = lambda a: scipy.ndimage.gaussian_filter(a, sigma=1.5, truncate=3.5)  # noqa: E731
        mx, my = f(xc), f(yc)
        vx, vy, cxy = f(xc * xc) - mx * mx, f(yc * yc) - my * my, f(xc * yc) - mx * my
        s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
        vals.append(s[5:-5, 5:-5].mean())
    return float(np.mean(vals))


def test_ssim_matches_independent_reference_on_random_images():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (4, 3, 40, 48), dtype=np.uint8)
    # correlated pair: y = x + noise, so SSIM is well inside (0, 1)
    y = np.clip(x.astype(np.int16) + rng.integers(-40, 41, x.shape), 0, 255).astype(np.uint8)
    ours = ssim(torch.from_numpy(x), torch.from_numpy(y)).numpy()
    ref = [_ssim_reference(a, b, 255.0) for a, b in zip(x, y)]
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    assert 0.2 < ours.min() and ours.max() < 0.99
    # The same frames in the model range [-1, 1] are mapped back onto the same [0, 1] scale, so the
    # SSIM is the standard (uint8, L = 255) one.
    xf = torch.from_numpy(x).float() / 127.5 - 1
    yf = torch.from_numpy(y).float() / 127.5 - 1
    np.testing.assert_allclose(ssim(xf, yf).numpy(), ref, atol=1e-5)


def test_gaussian_window_and_layout_helper():
    g = gaussian_window()
    assert g.shape == (11,) and g.sum().item() == pytest.approx(1.0, abs=1e-6)
    # g[5] / g[6] = exp(1 / (2 * 1.5^2)) = exp(0.2222...)
    assert (g[5] / g[6]).item() == pytest.approx(math.exp(1 / 4.5), rel=1e-6)
    frames = np.zeros((2, 5, 7, 3), dtype=np.uint8)
    frames[..., 1] = 9
    chw = uint8_hwc_to_chw(frames)
    assert chw.shape == (2, 3, 5, 7) and chw[:, 1].eq(9).all() and chw[:, 0].eq(0).all()
