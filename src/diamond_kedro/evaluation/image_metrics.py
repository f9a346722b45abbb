"""Image-quality metrics for imagined vs real frames: PSNR and SSIM (Wang et al. 2004), in torch.

Inputs are channel-first images, a single one (C, H, W) or a batch (B, C, H, W), torch tensors or
numpy arrays. `value_range = (lo, hi)` says what the pixel values span; by default it follows the
dtype: (0, 255) for uint8, (-1, 1) for floats (the project's model convention). Both metrics are
computed after mapping that range onto [0, 1] (data range L = 1). PSNR does not care, but SSIM
does: its luminance term (2 μx μy + C1) / (μx² + μy² + C1) is scale-invariant, not
shift-invariant, and is defined for non-negative intensities, so a frame in [-1, 1] and the
same frame as uint8 must be brought to one non-negative scale to get the same (standard) SSIM.
Results are per image: shape (B,) for a batch, a 0-d tensor for a single image.
"""

from __future__ import annotations

import math

import numpy as np
import torch

# Wang et al. 2004, "Image quality assessment: from error visibility to structural similarity".
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _as_batch(x: torch.Tensor | np.ndarray, name: str) -> tuple[torch.Tensor, bool]:
    t = torch.as_tensor(x)
    if t.ndim == 3:
        return t.unsqueeze(0), True
    if t.ndim != 4:
        raise ValueError(f"{name}: expected (C, H, W) or (B, C, H, W), got shape {tuple(t.shape)}")
    return t, False


def _default_range(t: torch.Tensor, value_range: tuple[float, float] | None) -> tuple[float, float]:
    if value_range is not None:
        lo, hi = map(float, value_range)
        if not hi > lo:
            raise ValueError(f"value_range must be (lo, hi) with hi > lo, got {value_range}")
        return lo, hi
    if t.dtype == torch.uint8:
        return 0.0, 255.0
    if t.is_floating_point():
        return -1.0, 1.0
    raise ValueError(f"cannot infer the value range of dtype {t.dtype}; pass value_range=(lo, hi)")


def _prepare(x, y, value_range, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Batch both inputs and map value_range onto [0, 1]."""
    xb, single = _as_batch(x, "x")
    yb, _ = _as_batch(y, "y")
    if xb.shape != yb.shape:
        raise ValueError(f"x and y shapes differ: {tuple(xb.shape)} vs {tuple(yb.shape)}")
    if xb.dtype != yb.dtype:
        raise ValueError(f"x and y dtypes differ: {xb.dtype} vs {yb.dtype} (convert both to one range first)")
    lo, hi = _default_range(xb, value_range)
    return (xb.to(dtype) - lo) / (hi - lo), (yb.to(dtype) - lo) / (hi - lo), single


def psnr(
    x: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    value_range: tuple[float, float] | None = None,
    max_db: float | None = None,
) -> torch.Tensor:
    """Peak signal-to-noise ratio per image: PSNR = 10 log10(L^2 / MSE), MSE over C, H, W
    (L = 1 on the [0, 1]-mapped values, i.e. L = hi - lo on the original scale).

    Identical images have MSE = 0 and PSNR = +inf (returned as such, it is the exact value);
    pass `max_db` (e.g. 100) to clamp to a finite ceiling before averaging or logging.
    Computed in float64 so that small MSEs of uint8 images are exact.
    """
    xb, yb, single = _prepare(x, y, value_range, torch.float64)
    mse = (xb - yb).pow(2).flatten(1).mean(dim=1)
    out = 10.0 * torch.log10(1.0 / mse)  # mse == 0 -> +inf
    if max_db is not None:
        out = out.clamp(max=max_db)
    return out[0] if single else out


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA, dtype=torch.float32) -> torch.Tensor:
    """Normalised 1-D Gaussian g[i] ∝ exp(-(i - c)^2 / (2 σ^2)), i = 0..size-1, c = (size-1)/2."""
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return (g / g.sum()).to(dtype)


def _band_matrix(g: torch.Tensor, n: int) -> torch.Tensor:
    """(n, n - k + 1) matrix whose column j holds the window g at rows j..j+k-1 ('valid' filter)."""
    k = g.numel()
    m = torch.zeros(n, n - k + 1, dtype=g.dtype)
    for j in range(n - k + 1):
        m[j : j + k, j] = g
    return m


def ssim(
    x: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    value_range: tuple[float, float] | None = None,
    window_size: int = SSIM_WINDOW,
    sigma: float = SSIM_SIGMA,
    k1: float = SSIM_K1,
    k2: float = SSIM_K2,
) -> torch.Tensor:
    """Mean structural similarity per image, averaged over the SSIM map and the channels.

    With Gaussian-weighted local statistics (w = separable Gaussian window, * = valid filtering):
        μx = w * x,  σx² = w * x² − μx²,  σxy = w * (x y) − μx μy,  C1 = (K1 L)², C2 = (K2 L)²
        SSIM = (2 μx μy + C1)(2 σxy + C2) / ((μx² + μy² + C1)(σx² + σy² + C2))
    with L = 1 after mapping value_range onto [0, 1]. Only windows fully inside the image are used
    (no padding), as in Wang et al.'s reference code and scikit-image (`gaussian_weights=True,
    use_sample_covariance=False, data_range=255` on uint8).
    """
    xb, yb, single = _prepare(x, y, value_range, torch.float32)
    _, c, h, w = xb.shape
    if h < window_size or w < window_size:
        raise ValueError(f"images of size {h}x{w} are smaller than the SSIM window {window_size}")
    # Valid separable Gaussian filtering written as two matrix products, out = Gh^T t Gw, with the
    # banded matrices G[i, j] = g[i - j] for 0 <= i - j < window: one BLAS call per axis, much
    # faster than a depthwise convolution on CPU and just as fast on GPU.
    g_h = _band_matrix(gaussian_window(window_size, sigma), h).to(xb.device)  # (H, H - k + 1)
    g_w = _band_matrix(gaussian_window(window_size, sigma), w).to(xb.device)  # (W, W - k + 1)

    def filt(t: torch.Tensor) -> torch.Tensor:
        return g_h.T @ t @ g_w

    # (Co)variances are shift-invariant: compute them on images centred by their per-channel mean,
    # which avoids the float32 cancellation in E[x²] - μ² (exactly 0 for constant images).
    xc = xb - xb.mean(dim=(2, 3), keepdim=True)
    yc = yb - yb.mean(dim=(2, 3), keepdim=True)
    # One filtering call for all local moments (stacked along the batch axis).
    b = xb.shape[0]
    moments = filt(torch.cat([xb, yb, xc, yc, xc * xc, yc * yc, xc * yc], dim=0))
    mu_x, mu_y, mc_x, mc_y, e_xx, e_yy, e_xy = moments.split(b, dim=0)
    var_x = e_xx - mc_x**2
    var_y = e_yy - mc_y**2
    cov_xy = e_xy - mc_x * mc_y
    c1 = k1**2  # (K1 L)² with L = 1
    c2 = k2**2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    out = ssim_map.flatten(1).mean(dim=1)
    return out[0] if single else out


def uint8_hwc_to_chw(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(…, H, W, 3) uint8 as stored on disk -> (…, 3, H, W) uint8 tensor for psnr/ssim."""
    t = torch.as_tensor(frames)
    if t.dtype != torch.uint8 or t.ndim < 3 or t.shape[-1] != 3:
        raise ValueError(f"expected uint8 (..., H, W, 3) frames, got {t.dtype} {tuple(t.shape)}")
    return t.movedim(-1, -3)


def finite_mean_db(values: torch.Tensor, max_db: float = 100.0) -> float:
    """Batch mean of PSNR values with +inf (identical images) counted as `max_db`."""
    v = values.to(torch.float64).clamp(max=max_db)
    if torch.isnan(v).any():
        raise ValueError("PSNR values contain NaN")
    return float(v.mean()) if v.numel() else math.nan
