"""``stvsr upscale`` end to end on tiny generated clips: time, colour, scene cuts, tiling, CLI
(resuming: ``test_upscale_resume.py``)."""

from __future__ import annotations

import json
import warnings
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from _upscale_clips import FAST, decode, make_clip, pattern, scene
from torch import nn

from stvsr import create_model
from stvsr.cli import main
from stvsr.data.video import VideoReader, write_image
from stvsr.infer.engine import tensor_to_frame, upscale_video
from stvsr.infer.scenes import detect_cuts, frame_distance, luma_thumbnail
from stvsr.infer.segments import Segment, output_plan, plan_segments
from stvsr.ops.resize import imresize


def test_fps_exact_midpoints_audio_and_segment_join(tmp_path: Path) -> None:
    src = tmp_path / "clip with spaces ü.mp4"
    rate = Fraction(24000, 1001)
    make_clip(src, 7, rate=rate, audio=True)
    out = tmp_path / "out ü.mp4"
    s = upscale_video(src, out, model="stvsr-bicubic", segment_frames=2, **FAST)
    assert s["segments"] == 4 and s["frames_out"] == 13
    frames, times, r = decode(out)
    assert len(frames) == 2 * 7 - 1
    assert r.info.frame_rate == 2 * rate
    assert times == [Fraction(k * 1001, 48000) for k in range(13)]  # midpoints, exact
    assert (r.info.width, r.info.height) == (128, 96)
    # audio copied, in sync: same duration as the input's within one frame, starting at 0
    def audio(path: Path) -> tuple[Fraction, Fraction]:
        with av.open(str(path)) as c:
            a = c.streams.audio[0]
            pkts = [p for p in c.demux(a) if p.size]
            tb = a.time_base
            return sum(p.duration for p in pkts) * tb, min(p.pts for p in pkts) * tb

    (d_in, t_in), (d_out, t_out) = audio(src), audio(out)
    assert abs(d_out - d_in) <= 1 / (2 * rate)
    assert abs(t_out - t_in) <= 1 / (2 * rate)
    assert not (tmp_path / "out ü.mp4.stvsr-work").exists()


def test_vfr_times_kept_and_midpoints(tmp_path: Path) -> None:
    src = tmp_path / "vfr.mp4"
    times_in = [Fraction(x, 1000) for x in (0, 40, 100, 120, 200, 230)]
    make_clip(src, 6, times=times_in, tb=Fraction(1, 1000), rate=Fraction(25))
    out = tmp_path / "vfr_out.mp4"
    upscale_video(src, out, model="stvsr-bicubic", **FAST)
    _, times, _ = decode(out)
    expected = []
    for a, b in zip(times_in[:-1], times_in[1:], strict=True):
        expected += [a, (a + b) / 2]
    expected.append(times_in[-1])
    assert times == expected


def test_ten_bit_and_colour_tags_survive(tmp_path: Path) -> None:
    src = tmp_path / "ten.mkv"
    col = {"color_range": 1, "colorspace": 1, "color_primaries": 1, "color_trc": 1}  # bt709 tv
    make_clip(src, 3, codec="libx265", pix_fmt="yuv420p10le", color=col)
    assert VideoReader(src).info.bit_depth == 10
    out = tmp_path / "ten_out.mkv"
    s = upscale_video(src, out, model="bicubic", codec="libx265", **FAST)
    assert s["bits"] == 10
    frames, _, r = decode(out)
    assert r.info.bit_depth == 10 and r.info.pix_fmt == "yuv420p10le"
    assert (r.info.color_space, r.info.color_primaries, r.info.color_trc) == ("bt709",) * 3
    assert r.info.color_range == "tv"
    assert frames[0].dtype == np.uint16
    # more than 256 distinct levels: not 8-bit data padded into 10 bits
    assert len(np.unique(frames[1])) > 256


def test_png_folder_in_and_out_exact(tmp_path: Path) -> None:
    src = tmp_path / "frames in"
    src.mkdir()
    inputs = [pattern(k, 20, 14) for k in range(5)]
    for k, rgb in enumerate(inputs):
        write_image(src / f"f{k}.png", rgb)
    out = tmp_path / "frames out"
    s = upscale_video(src, out, model="bicubic", segment_frames=2, **FAST)
    files = sorted(out.glob("*.png"))
    assert len(files) == 5 and s["segments"] == 3
    from stvsr.data.video import read_image

    for k, f in enumerate(files):
        x = torch.from_numpy(inputs[k]).permute(2, 0, 1).float() / 255
        ref = tensor_to_frame(imresize(x, 4.0))
        np.testing.assert_array_equal(read_image(f), ref)


def test_scale_option_resizes(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for k in range(2):
        write_image(src / f"{k}.png", pattern(k, 20, 14))
    out = tmp_path / "out"
    s = upscale_video(src, out, model="bicubic", scale=2, **FAST)
    from stvsr.data.video import read_image

    assert read_image(next(out.glob("*.png"))).shape == (28, 40, 3)
    assert (s["width"], s["height"]) == (40, 28)


def test_scene_cut_gives_no_blended_frame(tmp_path: Path) -> None:
    src = tmp_path / "cut"
    src.mkdir()
    inputs = [scene(k, 32, 24, cut=4) for k in range(8)]
    for k, rgb in enumerate(inputs):
        write_image(src / f"{k:03d}.png", rgb)
    out = tmp_path / "cut_out"
    s = upscale_video(src, out, model="stvsr-bicubic", **FAST)
    assert s["scene_cuts"] == [4]
    from stvsr.data.video import read_image

    frames = [read_image(f).astype(int) for f in sorted(out.glob("*.png"))]
    assert len(frames) == 15
    # the slot between input 3 and input 4 (output 7) repeats output 6, it is no blend
    np.testing.assert_array_equal(frames[7], frames[6])
    assert np.abs(frames[7] - frames[8]).mean() > 20
    # elsewhere in-between frames are the model's blend of their neighbours
    blend = (frames[0] + frames[2]) / 2
    assert np.abs(frames[1] - blend).mean() < 0.5  # (clamping of overshoot aside)
    assert np.abs(frames[1] - frames[0]).mean() > 1


def test_detect_cuts_adaptive() -> None:
    steady = [0.0] + [0.02] * 10 + [0.5] + [0.02] * 5
    assert detect_cuts(steady) == [11]
    fast_motion = [0.0] + [0.2, 0.25, 0.22, 0.3, 0.21, 0.24, 0.26]  # high but steady
    assert detect_cuts(fast_motion) == []
    a = luma_thumbnail(pattern(0, 64, 48))
    assert a.shape[1] == 32 and 0 <= a.min() and a.max() <= 1
    assert frame_distance(a, a) == 0
    b = [luma_thumbnail(scene(k, 64, 48, cut=2)) for k in range(3)]
    assert frame_distance(b[0], b[1]) < 0.05 < 0.12 < frame_distance(b[1], b[2])


def test_plan_segments_respect_cuts() -> None:
    segs = plan_segments(10, [4], 3)
    assert [(s.start, s.end) for s in segs] == [(0, 2), (2, 4), (4, 7), (7, 10)]
    assert all(s.shot_end <= 4 or s.shot_start == 4 for s in segs)
    assert segs[1].context(5, 5) == (0, 4)
    times = [Fraction(k) for k in range(10)]
    plan = output_plan(Segment(1, 2, 4, 0, 4), times, interpolate=True)
    assert [(w, i) for w, i, _ in plan] == [("frame", 2), ("mid", 2), ("frame", 3), ("dup", 3)]
    assert plan[1][2] == Fraction(5, 2)


def test_fps_factor_two_needs_spacetime(tmp_path: Path) -> None:
    src = tmp_path / "a.mp4"
    make_clip(src, 2)
    from stvsr.errors import StvsrError

    with pytest.raises(StvsrError, match="space-time model"):
        upscale_video(src, tmp_path / "b.mp4", model="bicubic", fps_factor=2, **FAST)


def test_cli_dry_run_and_json_progress(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = tmp_path / "a.mp4"
    make_clip(src, 4)
    out = tmp_path / "b.mp4"
    assert main(["upscale", str(src), str(out), "--model", "stvsr-bicubic", "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert "7 frames" in err and "128x96" in err and "(50)" in err and "estimate" in err
    assert not out.exists() and not (tmp_path / "b.mp4.stvsr-work").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["upscale", str(src), str(out), "--model", "bicubic", "--progress", "json",
                     "--preset", "ultrafast"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines() if x.startswith("{")]
    ups = [x for x in lines if x.get("stage") == "upscale"]
    assert ups and ups[-1]["frames_done"] == ups[-1]["total"] == 4
    assert {"fps", "eta_s"} <= set(ups[-1])
    assert lines[-1]["stage"] == "done" and lines[-1]["frames_out"] == 4


def test_create_model_used_by_name_matches_module(tmp_path: Path, pull_weights,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Passing a preset name or the built module gives the same frames, and the resume key
    holds the SHA-256 of the weights file (a model with weights: BasicVSR, skipped when its
    official weights cannot be had)."""
    from stvsr.data.video import read_image
    from stvsr.infer.job import model_hash
    from stvsr.infer.segments import WorkDir
    from stvsr.weights import sha256_file

    path = pull_weights("basicvsr-vimeo-bi")
    keys: list[dict] = []
    real_open = WorkDir.open

    def recording_open(self, key, **kw):
        keys.append(key)
        return real_open(self, key, **kw)

    monkeypatch.setattr(WorkDir, "open", recording_open)
    src = tmp_path / "a.mkv"
    make_clip(src, 2, codec="ffv1", pix_fmt="bgr0")
    o1, o2 = tmp_path / "o1", tmp_path / "o2"
    upscale_video(src, o1, model="basicvsr-vimeo-bi", **FAST)
    net = create_model("basicvsr-vimeo-bi")
    upscale_video(src, o2, model=net, **FAST)
    assert keys[0]["model"] == keys[1]["model"]
    assert keys[0]["model"]["weights"] == "sha256:" + sha256_file(path) == model_hash(net)
    a_files, b_files = sorted(o1.glob("*.png")), sorted(o2.glob("*.png"))
    assert len(a_files) == len(b_files) == 2
    for a, b in zip(a_files, b_files, strict=True):
        np.testing.assert_array_equal(read_image(a), read_image(b))
    # other weights, another hash: the random initialisation is hashed from its state dict
    other = model_hash(create_model("basicvsr-vimeo-bi", weights=None))
    assert other.startswith("state:") and other != keys[0]["model"]["weights"]


class ToyWindow(nn.Module):
    """Toy window model (3 frames, ×1): centre + 0.25 × (left - right)."""

    kind, scale, num_frames = "window", 1, 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 1] + 0.25 * (x[:, 0] - x[:, 2])


def test_window_model_segments_have_no_seams(tmp_path: Path) -> None:
    from stvsr.infer.sliding import SlidingWindowRunner

    src = tmp_path / "in.mkv"
    inputs = make_clip(src, 7, codec="ffv1", pix_fmt="bgr0")
    out = tmp_path / "o.mkv"
    s = upscale_video(src, out, model=ToyWindow(), codec="ffv1", segment_frames=2,
                      scene_detect=False, **FAST)
    assert s["segments"] == 4
    x = torch.stack([torch.from_numpy(f).permute(2, 0, 1).float() / 255 for f in inputs])
    whole = SlidingWindowRunner(ToyWindow()).run_all(x)
    got, _, _ = decode(out)
    for k, y in enumerate(got):
        np.testing.assert_array_equal(y, tensor_to_frame(whole[k]))


def test_tiled_equals_untiled_for_bicubic(tmp_path: Path) -> None:
    src = tmp_path / "in.mkv"
    make_clip(src, 2, w=40, h=36, codec="ffv1", pix_fmt="bgr0")
    a, b = tmp_path / "a", tmp_path / "b"
    upscale_video(src, a, model="bicubic", **FAST)
    upscale_video(src, b, model="bicubic", tile=16, tile_overlap=8, **FAST)
    from stvsr.data.video import read_image

    for fa, fb in zip(sorted(a.glob("*.png")), sorted(b.glob("*.png")), strict=True):
        diff = np.abs(read_image(fa).astype(int) - read_image(fb).astype(int)).max()
        assert diff <= 1


def test_start_end_range_starts_at_zero(tmp_path: Path) -> None:
    src = tmp_path / "a.mkv"
    make_clip(src, 10, codec="ffv1", pix_fmt="bgr0")
    out = tmp_path / "b.mp4"
    s = upscale_video(src, out, model="stvsr-bicubic", start=0.1, end=0.3, **FAST)
    assert s["frames_in"] == 5 and s["frames_out"] == 9  # inputs at 0.12 ... 0.28 s
    _, times, _ = decode(out)
    assert times == [Fraction(k, 50) for k in range(9)]


def test_default_model_serves_the_input(tmp_path: Path, capsys, pull_weights) -> None:
    """Lossy input gets the compressed-input model, a lossless source the clean one; the run
    says which and why, and --model overrides."""
    from stvsr.infer.defaults import DEFAULT_COMPRESSED_MODEL, DEFAULT_MODEL

    pull_weights("basicvsr-vimeo-bi")
    pull_weights("rife-v3.9")
    assert DEFAULT_MODEL == "sfnet-s"
    for name in (DEFAULT_MODEL, DEFAULT_COMPRESSED_MODEL):
        assert create_model(name).pretrained  # shipped weights, no download
    for codec, pix_fmt, expected, why in (
            ("libx264", "yuv420p", DEFAULT_COMPRESSED_MODEL, "input is compressed (h264"),
            ("ffv1", "yuv444p", DEFAULT_MODEL, "not lossy-coded (ffv1 is a lossless codec")):
        src = tmp_path / f"a_{codec}.mkv"
        make_clip(src, 4, codec=codec, pix_fmt=pix_fmt)
        assert main(["upscale", str(src), str(tmp_path / "b.mp4"), "--dry-run"]) == 0
        err = capsys.readouterr().err
        assert f"model: {expected} (" in err and why in err and "7 frames" in err and "(50)" in err
    assert main(["upscale", str(src), str(tmp_path / "b.mp4"), "--dry-run", "--model",
                 "stvsr-bicubic"]) == 0
    assert "model: " not in capsys.readouterr().err
