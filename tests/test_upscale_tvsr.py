"""``stvsr upscale --scale 1 --fps-factor 5/2``: frame interpolation by any rational factor.

A 12-frame 64×48 clip at 24000/1001 fps (FFV1, lossless) pans a random block texture 5 px per
frame, so output slot ``k`` of 60000/1001 fps (time ``2k/5`` input frames) truly is the texture
moved ``2k`` px. Input frame 6 starts another shot (a darker texture): a scene cut. The timing
and selection logic is checked with a linear-blend stand-in interpolator (no weights); the real
``rife`` weights check the content of the new frames (skipped when they cannot be fetched).
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from _helpers import interrupt_after, write_panning_clips
from torch import nn

from stvsr.cli import main
from stvsr.data.video import VideoReader, VideoWriter, read_image
from stvsr.errors import StvsrError
from stvsr.infer.engine import upscale_video
from stvsr.infer.retime import (
    count_retimed,
    local_fraction,
    parse_rational,
    retime_plan,
    time_interpolator,
)
from stvsr.infer.segments import plan_segments

pytestmark = pytest.mark.usefixtures("one_thread")

RATE_IN, RATE_OUT = Fraction(24000, 1001), Fraction(60000, 1001)
N, CUT, STEP = 12, 6, 5
FAST = {"codec": "ffv1", "progress": "none", "log": lambda s: None}


class LinearBlend(nn.Module):
    """Stand-in interpolator: ``(1 - t)·img0 + t·img1`` (records every ``t`` it is asked for)."""

    kind, scale, num_frames = "spacetime", 1, 0

    def __init__(self) -> None:
        super().__init__()
        self.ts: list[float] = []

    def interpolate(self, img0: torch.Tensor, img1: torch.Tensor,
                    t: float | torch.Tensor = 0.5) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=img0.dtype).reshape(-1, 1, 1, 1)
        self.ts += t.flatten().tolist()
        return img0 * (1 - t) + img1 * t

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x.new_empty(x.shape[0], 2 * x.shape[1] - 1, *x.shape[2:])
        out[:, 0::2] = x
        out[:, 1::2] = self.interpolate(x[0, :-1], x[0, 1:])[None]
        return out


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[np.ndarray], np.ndarray]:
    """``(in.mkv, its frames, the shot-1 texture at frame 0)``."""
    root = tmp_path_factory.mktemp("tvsr")
    write_panning_clips(root / "png", 2, N, (12, 16), step=STEP)
    a = [read_image(root / "png" / "clip0" / f"{k:03d}.png") for k in range(N)]
    b = [read_image(root / "png" / "clip1" / f"{k:03d}.png") // 4 for k in range(N)]
    frames = a[:CUT] + b[CUT:]
    src = root / "in.mkv"
    with VideoWriter(src, fps=RATE_IN, codec="ffv1") as w:
        for f in frames:
            w.write(f)
    return src, frames, a[0]


def decode(path: Path) -> tuple[list[np.ndarray], list[Fraction], Fraction | None]:
    r = VideoReader(path)
    pairs = [(f.rgb, f.time) for f in r]
    return [p[0] for p in pairs], [p[1] for p in pairs], r.info.frame_rate


def expected_source(k: int) -> tuple[int, Fraction]:
    """Input frame ``i`` and fraction ``t`` of output slot ``k`` (input position ``2k/5``);
    across the cut the nearest frame (``t`` 0)."""
    pos = Fraction(k) * RATE_IN / RATE_OUT
    i, t = int(pos), pos - int(pos)
    if t and i + 1 == CUT:
        return (i, Fraction(0)) if t <= Fraction(1, 2) else (i + 1, Fraction(0))
    return i, t


# ---- timing logic alone ------------------------------------------------------------------


def test_parse_rational() -> None:
    assert parse_rational("5/2") == parse_rational("2.5") == parse_rational(2.5) == Fraction(5, 2)
    assert parse_rational(2) == 2 and parse_rational(" 60000 / 1001 ") == RATE_OUT
    assert parse_rational(2.4) == Fraction(12, 5)  # read as written, not as a binary float
    for bad in ("abc", "0", "-1", "1/0", float("nan"), None):
        with pytest.raises(StvsrError, match="--fps-factor"):
            parse_rational(bad)


def test_plan_is_the_exact_grid_with_cuts_and_segments() -> None:
    times = [k / RATE_IN for k in range(N)]
    n_out = count_retimed(times[-1], RATE_OUT)
    assert n_out == 28  # floor(11 · 5/2) + 1
    for length in (N, 4, 1):
        segs = plan_segments(N, [CUT], length)
        plan = [e for s in segs for e in retime_plan(s, times, RATE_OUT)]
        assert [g for _, _, g in plan] == [k * Fraction(1001, 60000) for k in range(n_out)]
        for k, (what, i, g) in enumerate(plan):
            src, t = expected_source(k)
            if t == 0:
                assert (what, i) == ("frame", src)
            else:
                assert (what, i) == ("interp", src) and local_fraction(times, i, g) == t
    # segments of one shot never need a frame of the next shot
    for s in plan_segments(N, [CUT], 4):
        lo, hi = s.context(0, 1)
        for what, i, _ in retime_plan(s, times, RATE_OUT):
            assert lo <= i and i + (what == "interp") < hi
    # a tie across a cut (factor 2) takes the earlier frame; one frame gives one output
    two = retime_plan(plan_segments(4, [2], 4)[0], [Fraction(k) for k in range(4)], Fraction(2))
    assert two[-1] == ("frame", 1, Fraction(3, 2))
    assert retime_plan(plan_segments(1, [], 4)[0], [Fraction(0)], RATE_OUT) == [
        ("frame", 0, Fraction(0))]


def test_time_interpolator_needs_any_time_and_scale_one() -> None:
    from stvsr import create_model

    assert time_interpolator(LinearBlend()) is not None
    assert time_interpolator(create_model("stvsr-bicubic")) is None  # x4, midpoints only


# ---- end to end with the stand-in ---------------------------------------------------------


def _blend_run(src: Path, out: Path, **kw) -> dict:
    return upscale_video(src, out, model=LinearBlend(), scale=1, fps_factor="5/2",
                         segment_frames=4, **FAST, **kw)


def test_stand_in_times_copies_blends_and_cut(clip, tmp_path: Path) -> None:
    src, frames, _ = clip
    out = tmp_path / "out.mkv"
    s = _blend_run(src, out)
    assert s["scene_cuts"] == [CUT] and s["frames_out"] == 28 and s["fps"] == "60000/1001"
    got, times, rate = decode(out)
    assert len(got) == 28 and rate == RATE_OUT
    assert times == [k * Fraction(1001, 60000) for k in range(28)]  # exact, no drift
    for k, y in enumerate(got):
        i, t = expected_source(k)
        if t == 0:  # on an input time, or the nearest frame across the cut: the input itself
            np.testing.assert_array_equal(y, frames[i])
        else:
            want = (1 - float(t)) * frames[i] + float(t) * frames[i + 1]
            assert np.abs(y - want).max() <= 0.5 + 1e-3
    # no blend across the cut: slots 13 (t=1/5) and 14 (t=3/5) are inputs 5 and 6
    np.testing.assert_array_equal(got[13], frames[CUT - 1])
    np.testing.assert_array_equal(got[14], frames[CUT])


def test_stand_in_resume_gives_the_same_output(clip, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    src, _, _ = clip
    ref, out = tmp_path / "ref.mkv", tmp_path / "res.mkv"
    _blend_run(src, ref)
    with pytest.raises(KeyboardInterrupt):
        _blend_run(src, out, on_segment_done=interrupt_after(2))
    work = tmp_path / "res.mkv.stvsr-work"
    assert not out.exists() and len(json.loads((work / "manifest.json").read_text())["done"]) == 2
    s = _blend_run(src, out)
    assert s["resumed_segments"] == 2 and s["segments"] == 4 and not work.exists()
    a, ta, _ = decode(ref)
    b, tb, _ = decode(out)
    assert ta == tb and len(a) == 28
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def test_variable_frame_rate_uses_the_uniform_grid(tmp_path: Path) -> None:
    src = tmp_path / "vfr.mkv"
    ms = (0, 40, 100, 120, 200, 230)
    frames = [np.full((16, 24, 3), 10 * k, np.uint8) for k in range(len(ms))]
    with VideoWriter(src, fps=25, codec="ffv1", time_base=Fraction(1, 1000)) as w:
        for f, t in zip(frames, ms, strict=True):
            w.write(f, time=Fraction(t, 1000))
    out = tmp_path / "o"
    net = LinearBlend()
    s = upscale_video(src, out, model=net, scale=1, output_fps=50, scene_detect=False, **FAST)
    assert s["frames_out"] == 12 and s["fps"] == "50"  # 0, 20, ..., 220 ms
    got = [read_image(f) for f in sorted(out.glob("*.png"))]
    for k, y in enumerate(got):
        g = 20 * k
        i = max(j for j in range(len(ms)) if ms[j] <= g)
        t = Fraction(g - ms[i], ms[i + 1] - ms[i]) if g != ms[i] else Fraction(0)
        want = 10 * i + 10 * float(t)  # the local time fraction, not a global one
        assert abs(int(y[0, 0, 0]) - want) <= 0.5 + 1e-3, (k, t)
    # 20 ms: t 1/2 of (0, 40); 60, 80: 1/3, 2/3 of (40, 100); 140-180: 1/4 ... of (120, 200)
    assert [round(t, 5) for t in net.ts] == [0.5, 0.33333, 0.66667, 0.25, 0.5, 0.75, 0.66667]


def test_factor_errors(clip, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src, _, _ = clip
    out = tmp_path / "o.mkv"
    with pytest.raises(StvsrError, match="interpolates at any time"):
        upscale_video(src, out, model="stvsr-bicubic", fps_factor="5/2", **FAST)
    with pytest.raises(StvsrError, match="space-time"):
        upscale_video(src, out, model="bicubic", fps_factor=2.5, **FAST)
    with pytest.raises(StvsrError, match=">= 1"):
        upscale_video(src, out, model=LinearBlend(), output_fps=20, **FAST)
    assert main(["upscale", str(src), str(out), "--model", "bicubic", "--fps-factor", "2",
                 "--output-fps", "50"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["upscale", str(src), str(out), "--scale", "1", "--fps-factor", "x"]) == 2
    assert capsys.readouterr().err.startswith("error: --fps-factor")
    assert not out.exists() and not (tmp_path / "o.mkv.stvsr-work").exists()


# ---- the real rife weights ----------------------------------------------------------------


def test_rife_five_halves(clip, tmp_path: Path, capsys: pytest.CaptureFixture,
                          pull_weights) -> None:
    pull_weights("rife-v3.9")
    src, frames, texture = clip
    out = tmp_path / "rife.mkv"
    args = ["upscale", str(src), str(out), "--scale", "1", "--fps-factor", "5/2",
            "--codec", "ffv1"]
    assert main([*args, "--dry-run"]) == 0  # rife is the default model of --scale 1
    err = capsys.readouterr().err
    assert "rife" in err and "28 frames" in err and "(60000/1001)" in err
    assert not out.exists()
    assert main([*args, "--quiet"]) == 0
    got, times, _ = decode(out)
    assert len(got) == 28 and times == [k * Fraction(1001, 60000) for k in range(28)]
    crop = (slice(None), slice(8, -8))  # the texture wraps around: occlusions at the sides
    for k, y in enumerate(got):
        i, t = expected_source(k)
        if t == 0:
            np.testing.assert_array_equal(y, frames[i])
        elif i + 1 < CUT:  # shot 1: slot k is the texture moved 2k px
            shift = int(STEP * Fraction(k) * RATE_IN / RATE_OUT)  # = 2k
            true = np.roll(texture, shift, axis=1)[crop].astype(float)
            err_true = np.abs(y[crop] - true).mean()
            err_nbr = min(np.abs(y[crop] - frames[j][crop].astype(float)).mean()
                          for j in (i, i + 1))
            assert err_true < 8 and err_true < err_nbr / 3, (k, err_true, err_nbr)
    np.testing.assert_array_equal(got[13], frames[CUT - 1])
    np.testing.assert_array_equal(got[14], frames[CUT])
