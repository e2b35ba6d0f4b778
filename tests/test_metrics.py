"""PSNR / SSIM / Y conversion / averaging against hand values and a naive SSIM."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from stvsr.errors import StvsrError
from stvsr.metrics import MetricAverager, frame_metrics, psnr, ssim, to_uint8
from stvsr.ops.color import rgb_to_y, rgb_to_ycbcr, ycbcr_to_rgb


def test_y_hand_values() -> None:
    px = np.array([[[255, 255, 255], [0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]]], np.uint8)
    np.testing.assert_allclose(
        rgb_to_y(px)[0], [235.0, 16.0, 16 + 65.481, 16 + 128.553, 16 + 24.966], atol=1e-12
    )
    t = torch.tensor(px[0].T.reshape(3, 1, 5) / 255.0, dtype=torch.float64)
    np.testing.assert_allclose(rgb_to_y(t)[0].numpy(), rgb_to_y(px)[0], atol=1e-12)
    ycc = rgb_to_ycbcr(px)[0]
    np.testing.assert_allclose(ycc[0], [235.0, 128.0, 128.0], atol=1e-12)
    np.testing.assert_allclose(ycc[1], [16.0, 128.0, 128.0], atol=1e-12)
    np.testing.assert_allclose(ycc[4, 1], 240.0, atol=1e-12)  # blue: Cb = 128 + 112
    np.testing.assert_allclose(ycbcr_to_rgb(ycc), px[0].astype(np.float64), atol=1e-9)
    x = torch.rand(2, 3, 4, 5, dtype=torch.float64)
    torch.testing.assert_close(ycbcr_to_rgb(rgb_to_ycbcr(x)), x, atol=1e-12, rtol=0)
    torch.testing.assert_close(rgb_to_ycbcr(x)[:, 0], rgb_to_y(x), atol=1e-12, rtol=0)


def test_to_uint8() -> None:
    x = torch.zeros(3, 1, 5)
    x[0, 0] = torch.tensor([-0.5, 0.5 / 255, 0.51 / 255, 1.5 / 255, 1.5])
    u = to_uint8(x)
    assert u.shape == (1, 5, 3) and u.dtype == np.uint8
    # clamped; ties (x * 255 exactly k + 1/2 in float32) go to the even neighbour
    assert u[0, :, 0].tolist() == [0, 0, 1, 2, 255]


def test_psnr_hand_values() -> None:
    a = np.zeros((4, 5, 3), np.uint8)
    b = a.copy()
    b[0, 2, 0] = 10  # MSE = 100 / 60
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 * 60 / 100), abs=1e-12)
    assert psnr(a, a) == math.inf
    # Y: difference 65.481 * 10 / 255 in one of 20 pixels
    dy = 65.481 * 10 / 255
    assert psnr(a, b, y_channel=True) == pytest.approx(
        10 * math.log10(255**2 * 20 / dy**2), abs=1e-12
    )
    # the changed pixel is cropped away
    assert psnr(a, b, crop_border=1) == math.inf
    with pytest.raises(StvsrError):
        psnr(a, b[:3])


def _naive_ssim(x: np.ndarray, y: np.ndarray) -> float:
    """Original MATLAB ssim_index: per valid window, Gaussian-weighted statistics."""
    t = np.arange(11) - 5.0
    g = np.exp(-(t[:, None] ** 2 + t[None, :] ** 2) / (2 * 1.5**2))
    w = g / g.sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    vals = []
    for i in range(x.shape[0] - 10):
        for j in range(x.shape[1] - 10):
            px = x[i : i + 11, j : j + 11]
            py = y[i : i + 11, j : j + 11]
            mx, my = (w * px).sum(), (w * py).sum()
            vx = (w * px * px).sum() - mx * mx
            vy = (w * py * py).sum() - my * my
            cxy = (w * px * py).sum() - mx * my
            vals.append(
                ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
            )
    return float(np.mean(vals))


def test_ssim_matches_naive() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
    noise = rng.integers(-40, 41, a.shape)
    b = np.clip(a.astype(int) // 2 + 60 + noise, 0, 255).astype(np.uint8)
    rgb = np.mean([_naive_ssim(a[..., c].astype(float), b[..., c].astype(float)) for c in range(3)])
    assert ssim(a, b) == pytest.approx(rgb, abs=1e-10)
    ya, yb = rgb_to_y(a), rgb_to_y(b)
    assert ssim(a, b, y_channel=True) == pytest.approx(_naive_ssim(ya, yb), abs=1e-10)
    c = 3
    crop = _naive_ssim(ya[c:-c, c:-c], yb[c:-c, c:-c])
    assert ssim(a, b, crop_border=c, y_channel=True) == pytest.approx(crop, abs=1e-10)
    assert ssim(a, b) == pytest.approx(ssim(b, a), abs=1e-14)
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-14)
    assert ssim(a, b) < 0.9
    with pytest.raises(StvsrError):
        ssim(a[:10], b[:10])


def test_frame_metrics_and_speed() -> None:
    rng = np.random.default_rng(1)
    gt = rng.integers(0, 256, (576, 720, 3), dtype=np.uint8)
    out = np.clip(gt.astype(int) + rng.integers(-3, 4, gt.shape), 0, 255).astype(np.uint8)
    m = frame_metrics(out, gt)
    assert set(m) == {"psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb"}
    assert m["psnr_rgb"] == pytest.approx(psnr(out, gt), abs=1e-12)
    assert m["ssim_y"] == pytest.approx(ssim(out, gt, y_channel=True), abs=1e-12)
    assert 30 < m["psnr_rgb"] < 60 and 0.9 < m["ssim_rgb"] < 1.0
    start = time.perf_counter()
    ssim(out, gt, y_channel=True)
    assert time.perf_counter() - start < 2.0  # ~0.02 s on an idle core; generous when shared


def test_averager_mean_of_clip_means() -> None:
    avg = MetricAverager()
    for i in range(3):
        avg.add("long", i, {"psnr_y": 30.0, "ssim_y": 0.9})
    avg.add("short", 0, {"psnr_y": 20.0, "ssim_y": 0.5})
    clips = avg.clip_means()
    assert clips["long"] == {"psnr_y": 30.0, "ssim_y": 0.9, "frames": 3}
    assert clips["short"]["frames"] == 1
    mean = avg.mean()
    assert mean["psnr_y"] == pytest.approx(25.0)  # mean of clips
    assert mean["ssim_y"] == pytest.approx(0.7)
    frame_weighted = (3 * 30.0 + 20.0) / 4
    assert mean["psnr_y"] != pytest.approx(frame_weighted)
    assert mean["clips"] == 2 and mean["frames"] == 4 and len(avg) == 4
    with pytest.raises(StvsrError):
        avg.add("long", 1, {"psnr_y": 1.0})
