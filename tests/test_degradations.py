"""BI / BD / BD-DUF degradations: explicit formulas and the shared DUF LR files."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from stvsr.data import degradations as D  # noqa: N812 - short in formulas
from stvsr.errors import StvsrError
from stvsr.ops.resize import imresize


def _on_grid(x: torch.Tensor) -> bool:
    v = x.double() * 255.0
    return bool(torch.all((v - v.round()).abs() < 1e-4)) and bool(x.min() >= 0 and x.max() <= 1)


def test_modcrop_and_quantize() -> None:
    x = torch.arange(2 * 3 * 10 * 7, dtype=torch.float32).reshape(2, 3, 10, 7)
    y = D.modcrop(x, 4)
    assert y.shape == (2, 3, 8, 4)
    assert torch.equal(y, x[..., :8, :4])
    q = D.quantize(torch.tensor([-0.2, 0.0, 0.5 / 255, 1.49 / 255, 100.5 / 255, 0.999, 1.7]))
    expected = torch.tensor([0.0, 0.0, 1.0, 1.0, 101.0, 255.0, 255.0]) / 255
    torch.testing.assert_close(q, expected, atol=1e-7, rtol=0)


def test_bi_is_rounded_imresize() -> None:
    hr = torch.rand(2, 3, 18, 22, dtype=torch.float64)
    lr = D.degrade_bi(hr, 4)
    assert lr.shape == (2, 3, 4, 5) and lr.dtype == torch.float64 and _on_grid(lr)
    ref = imresize(hr[..., :16, :20], 0.25)
    assert (lr - ref).abs().max() <= 0.5 / 255 + 1e-12
    assert D.degrade_bi(hr.float()).dtype == torch.float32


def _gauss(size: int, sigma: float) -> np.ndarray:
    """2-D kernel as MATLAB fspecial('gaussian', size, sigma): meshgrid, exp, normalise."""
    r = (size - 1) / 2
    ax = np.linspace(-r, r, size)
    xx, yy = np.meshgrid(ax, ax)
    k = np.exp(-(xx**2 + yy**2) / (2 * sigma**2))
    return k / k.sum()


def _naive_blur(img: np.ndarray, k: np.ndarray, anchor: int, pad: str) -> np.ndarray:
    """out[i, j] = sum_{a,b} k[a, b] * img[P(i + a - anchor), P(j + b - anchor)], loops."""
    h, w = img.shape
    n = k.shape[0]

    def fold(i: int, m: int) -> int:
        if pad == "replicate":
            return min(max(i, 0), m - 1)
        return -i if i < 0 else (2 * (m - 1) - i if i >= m else i)  # reflect, edge once

    out = np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            s = 0.0
            for a in range(n):
                for b in range(n):
                    s += k[a, b] * img[fold(i + a - anchor, h), fold(j + b - anchor, w)]
            out[i, j] = s
    return out


def test_bd_matches_explicit_formula() -> None:
    rng = np.random.default_rng(0)
    img = rng.random((16, 20))
    k = _gauss(12, 1.6)
    assert k.shape == (12, 12)
    blurred = _naive_blur(img, k, anchor=5, pad="replicate")  # MATLAB imfilter: anchor 6 of 1..12
    expected = np.floor(blurred[1::4, 1::4] * 255 + 0.5) / 255  # pixels 1, 5, 9, ... (0-based)
    x = torch.from_numpy(np.stack([img, img[::-1].copy(), img * 0.5]))[None]
    got = D.degrade_bd(x, 4).numpy()[0]
    assert got.shape == (3, 4, 5)
    np.testing.assert_allclose(got[0], expected, atol=1e-12, rtol=0)
    # channels are independent
    exp1 = np.floor(_naive_blur(img[::-1], k, 5, "replicate")[1::4, 1::4] * 255 + 0.5) / 255
    np.testing.assert_allclose(got[1], exp1, atol=1e-12, rtol=0)


def test_bd_duf_matches_explicit_formula() -> None:
    rng = np.random.default_rng(1)
    img = rng.random((16, 12))
    blurred = _naive_blur(img, _gauss(13, 1.6), anchor=6, pad="reflect")
    expected = np.floor(blurred[0::4, 0::4] * 255) / 255
    got = D.degrade_bd_duf(torch.from_numpy(img)[None, None].repeat(1, 3, 1, 1)).numpy()[0, 0]
    np.testing.assert_allclose(got, expected, atol=1e-12, rtol=0)
    rounded = D.degrade_bd_duf(torch.from_numpy(img)[None], truncate=False).numpy()[0]
    np.testing.assert_allclose(rounded, np.floor(blurred[0::4, 0::4] * 255 + 0.5) / 255, atol=1e-12)


def test_bd_offset_rule() -> None:
    assert D.bd_offset(4, 12) == 1  # published BD: pixels 1, 5, 9, ...
    assert D.bd_offset(2, 12) == 0
    assert D.bd_offset(3, 12) == 1
    assert D.bd_offset(4, 13) == 2  # odd kernel, centred: block centre 1.5 rounds up to 2
    assert D.bd_offset(3, 13) == 1
    # kernel size rule 2 * ceil(3 sigma) + 2 gives fspecial('gaussian', 12, 1.6)
    assert 2 * math.ceil(3 * 1.6) + 2 == 12


def test_constant_frames_and_dispatch() -> None:
    hr = torch.full((1, 3, 24, 32), 77 / 255)
    for name in D.DEGRADATIONS:
        lr = D.degrade(hr, name, scale=4)
        assert lr.shape == (1, 3, 6, 8)
        assert _on_grid(lr)
        torch.testing.assert_close(lr, torch.full_like(lr, 77 / 255), atol=1e-6, rtol=0)
    with pytest.raises(StvsrError, match="bd-duf"):
        D.degrade(hr, "gaussian")


def test_noise_and_jpeg() -> None:
    x = torch.full((2, 3, 16, 16), 0.5)
    g = torch.Generator().manual_seed(0)
    n1 = D.add_gaussian_noise(x, 0.1, g)
    n2 = D.add_gaussian_noise(x, 0.1, torch.Generator().manual_seed(0))
    assert torch.equal(n1, n2)
    assert 0.08 < float((n1 - x).std()) < 0.12 and n1.min() >= 0 and n1.max() <= 1
    torch.testing.assert_close(D.add_gaussian_noise(x, 0.0), x)
    rng = torch.Generator().manual_seed(1)
    img = torch.rand(1, 3, 32, 32, generator=rng)
    j10 = D.jpeg_compress(img, 10)
    j95 = D.jpeg_compress(img, 95)
    assert j10.shape == img.shape and _on_grid(j10)
    assert float((j95 - img).abs().mean()) < float((j10 - img).abs().mean())
    with pytest.raises(StvsrError):
        D.jpeg_compress(img, 0)


def _natural(p: Path) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)]


def test_bd_duf_matches_shared_calendar(vid4_dir: Path) -> None:
    from PIL import Image

    gt_dir = vid4_dir / "GT" / "calendar"
    lr_dir = vid4_dir / "LR_BDx4_DUF" / "calendar"
    if not lr_dir.is_dir():
        pytest.skip(f"{lr_dir} not found")
    gts = sorted(gt_dir.glob("*.png"), key=_natural)
    lrs = sorted(lr_dir.glob("*.png"), key=_natural)
    assert len(gts) == len(lrs) == 41
    pick = range(0, 41, 8)
    hr = (
        torch.stack([torch.from_numpy(np.array(Image.open(gts[i]).convert("RGB"))) for i in pick])
        .permute(0, 3, 1, 2)
        .float()
        / 255
    )
    ref = np.stack([np.array(Image.open(lrs[i]).convert("RGB")) for i in pick]).astype(np.float64)

    def mad(lr: torch.Tensor) -> float:
        out = lr.permute(0, 2, 3, 1).double().numpy() * 255
        assert out.shape == ref.shape
        return float(np.abs(out - ref)[:, 8:-8, 8:-8].mean())

    duf = mad(D.degrade_bd_duf(hr))
    assert duf <= 0.5, duf  # measured 0.13 (truncation)
    assert mad(D.degrade_bd_duf(hr, truncate=False)) <= 0.55  # rounding: about 0.50
    bd = mad(D.degrade_bd(hr))
    assert bd > 5 * max(duf, 0.1), (bd, duf)  # the published-numbers BD is another variant
