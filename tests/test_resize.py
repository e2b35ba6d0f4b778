"""MATLAB-compatible bicubic resizing against an independent loop-based reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stvsr.errors import StvsrError
from stvsr.ops import resize as R  # noqa: N812 - short in formulas
from stvsr.ops.resize import imresize, imresize_np


def _keys(t: float) -> float:
    """Keys cubic, a = -0.5, written out case by case."""
    t = abs(t)
    if t <= 1.0:
        return 1.5 * t**3 - 2.5 * t**2 + 1.0
    if t <= 2.0:
        return -0.5 * t**3 + 2.5 * t**2 - 4.0 * t + 2.0
    return 0.0


def _mirror(i: int, n: int) -> int:
    """1-based index ``i`` folded into 1..n by MATLAB's aux = [1..n, n..1] (cyclic)."""
    aux = list(range(1, n + 1)) + list(range(n, 0, -1))
    return aux[(i - 1) % (2 * n)]


def _naive_1d(v: np.ndarray, out_len: int, scale: float, antialias: bool = True) -> np.ndarray:
    """Loop over output pixels, MATLAB's ``contributions`` formula, float64."""
    n = len(v)
    width = 4.0
    shrink = scale < 1 and antialias
    if shrink:
        width = 4.0 / scale
    out = np.zeros(out_len)
    for x in range(1, out_len + 1):
        u = x / scale + 0.5 * (1 - 1 / scale)
        left = math.floor(u - width / 2)
        taps = math.ceil(width) + 2
        ws, idx = [], []
        for p in range(taps):
            j = left + p
            d = u - j
            ws.append(scale * _keys(scale * d) if shrink else _keys(d))
            idx.append(_mirror(j, n))
        total = sum(ws)
        out[x - 1] = sum(w / total * v[i - 1] for w, i in zip(ws, idx))
    return out


def _naive_2d(img: np.ndarray, scale: float) -> np.ndarray:
    oh, ow = math.ceil(img.shape[0] * scale), math.ceil(img.shape[1] * scale)
    rows = np.stack([_naive_1d(img[:, j], oh, scale) for j in range(img.shape[1])], axis=1)
    return np.stack([_naive_1d(rows[i], ow, scale) for i in range(oh)], axis=0)


@pytest.mark.parametrize("scale", [1 / 4, 1 / 3, 1 / 2, 2.0, 4.0])
def test_1d_matches_naive(scale: float) -> None:
    rng = np.random.default_rng(1)
    for n in (1, 2, 3, 5, 8, 13):
        v = rng.random(n)
        out_len = math.ceil(n * scale)
        got = imresize(torch.from_numpy(v)[:, None], scale)[:, 0].numpy()
        np.testing.assert_allclose(got, _naive_1d(v, out_len, scale), rtol=0, atol=1e-12)


@pytest.mark.parametrize("scale", [1 / 4, 1 / 3, 1 / 2, 2.0, 4.0])
def test_2d_matches_naive(scale: float) -> None:
    rng = np.random.default_rng(2)
    img = rng.random((12, 9)) * 255
    got = imresize(torch.from_numpy(img), scale).numpy()
    np.testing.assert_allclose(got, _naive_2d(img, scale), rtol=0, atol=1e-12)


def test_no_antialias_uses_plain_kernel() -> None:
    rng = np.random.default_rng(3)
    v = rng.random(16)
    got = imresize(torch.from_numpy(v)[:, None], 0.5, antialias=False)[:, 0].numpy()
    np.testing.assert_allclose(got, _naive_1d(v, 8, 0.5, antialias=False), atol=1e-12)
    assert not np.allclose(got, _naive_1d(v, 8, 0.5, antialias=True), atol=1e-3)


def test_hand_computed_8_to_2() -> None:
    """8 -> 2 at scale 1/4: 16 taps 0.25 * cubic(d / 4), d = +-0.5 ... +-7.5, written out."""
    # cubic(t) for t = 1/8, 3/8, ..., 15/8 (by hand: 1.5t^3 - 2.5t^2 + 1, then the outer piece)
    c = [
        0.9638671875,
        0.7275390625,
        0.3896484375,
        0.0908203125,
        -0.0478515625,
        -0.0732421875,
        -0.0439453125,
        -0.0068359375,
    ]
    half = [0.25 * t for t in c]  # distance 0.5, 1.5, ..., 7.5
    # output 1: u = 2.5, taps at 1-based -5..10; mirror: 0->1, -1->2, ..., -5->6, 9->8, 10->7
    taps = list(range(-5, 11))
    w = [half[int(abs(2.5 - j) - 0.5)] for j in taps]
    fold = {j: (1 - j if j <= 0 else (17 - j if j > 8 else j)) for j in taps}
    v = np.array([3.0, -1.0, 4.0, 1.0, -5.0, 9.0, 2.0, -6.0])
    total = sum(w)
    expected0 = sum(wj * v[fold[j] - 1] for wj, j in zip(w, taps)) / total
    # output 2 is the mirror image of output 1 on the reversed signal
    w2 = [half[int(abs(6.5 - j) - 0.5)] for j in range(-1, 15)]
    fold2 = {j: (1 - j if j <= 0 else (17 - j if j > 8 else j)) for j in range(-1, 15)}
    expected1 = sum(wj * v[fold2[j] - 1] for wj, j in zip(w2, range(-1, 15))) / sum(w2)
    got = imresize(torch.tensor(v)[:, None], 0.25)[:, 0].numpy()
    assert got.shape == (2,)
    np.testing.assert_allclose(got, [expected0, expected1], atol=1e-12)
    # the weight matrix rows: sum to 1, the two outputs are mirror images of each other
    mat = R.resize_weights(8, 2, 0.25)
    np.testing.assert_allclose(mat.sum(axis=1), 1.0, atol=1e-15)
    np.testing.assert_allclose(mat[0], mat[1][::-1], atol=1e-15)


def test_constant_stays_constant_and_identity() -> None:
    x = torch.full((2, 3, 17, 23), 0.3, dtype=torch.float64)
    for kw in ({"scale": 0.25}, {"scale": 3.0}, {"size": (5, 40)}):
        out = imresize(x, **kw)
        torch.testing.assert_close(out, torch.full_like(out, 0.3), atol=1e-14, rtol=0)
    y = torch.rand(4, 6, dtype=torch.float64)
    torch.testing.assert_close(imresize(y, 1.0), y, atol=1e-15, rtol=0)


def test_shapes_order_and_leading_dims() -> None:
    x = torch.rand(2, 5, 3, 20, 16, dtype=torch.float64)
    out = imresize(x, 0.25)
    assert out.shape == (2, 5, 3, 5, 4)
    assert imresize(torch.rand(7, 10), 1 / 3).shape == (3, 4)  # ceil, as MATLAB
    # per-sample result equals the batched one
    torch.testing.assert_close(out[1, 2], imresize(x[1, 2], 0.25), atol=1e-14, rtol=0)
    # size with different scales per axis: W shrinks (smaller scale, resized first), H grows
    img = np.random.default_rng(4).random((6, 12))
    got = imresize(torch.from_numpy(img), size=(9, 4)).numpy()
    cols = np.stack([_naive_1d(img[i], 4, 4 / 12) for i in range(6)], axis=0)
    ref = np.stack([_naive_1d(cols[:, j], 9, 9 / 6) for j in range(4)], axis=1)
    np.testing.assert_allclose(got, ref, atol=1e-12)


def test_float32_close_to_float64_and_cache() -> None:
    R.clear_cache()
    x = torch.rand(3, 32, 24, dtype=torch.float64)
    a = imresize(x, 0.25)
    b = imresize(x.float(), 0.25)
    assert b.dtype == torch.float32
    torch.testing.assert_close(b.double(), a, atol=1e-5, rtol=0)
    n = len(R._cache)
    imresize(x, 0.25)
    assert len(R._cache) == n  # reused, nothing new
    imresize(x.float(), 0.5)
    assert len(R._cache) > n


def test_imresize_np() -> None:
    rng = np.random.default_rng(5)
    img = rng.integers(0, 256, (16, 12, 3), dtype=np.uint8)
    out = imresize_np(img, 0.5)
    assert out.dtype == np.uint8 and out.shape == (8, 6, 3)
    ref = np.stack([_naive_2d(img[..., c].astype(np.float64), 0.5) for c in range(3)], axis=-1)
    np.testing.assert_array_equal(out, np.clip(np.floor(ref + 0.5), 0, 255).astype(np.uint8))
    f = imresize_np(img[..., 0].astype(np.float64), 2.0)
    assert f.dtype == np.float64 and f.shape == (32, 24)
    np.testing.assert_allclose(f, _naive_2d(img[..., 0].astype(np.float64), 2.0), atol=1e-10)


def test_errors() -> None:
    x = torch.rand(4, 4)
    with pytest.raises(StvsrError):
        imresize(x)
    with pytest.raises(StvsrError):
        imresize(x, 0.5, size=(2, 2))
    with pytest.raises(StvsrError):
        imresize(x, -1.0)
    with pytest.raises(StvsrError):
        imresize(torch.ones(4, 4, dtype=torch.uint8), 0.5)
