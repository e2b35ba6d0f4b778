"""The failure cases of docs/spec practical-video.md: each gives a clear one-line error (or the
right result) and leaves earlier outputs untouched."""

from __future__ import annotations

import errno
import warnings
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

import stvsr.data.video as video
import stvsr.data.video.reader as video_reader
import stvsr.infer.execute as execute
from stvsr.cli import main
from stvsr.data.video import VideoReader, read_image
from stvsr.errors import StvsrError, VideoError
from stvsr.infer.engine import upscale_video

FAST = {"preset": "ultrafast", "progress": "none", "log": lambda s: None}


def make_clip(path: Path, n: int, *, w: int = 32, h: int = 24, codec: str = "libx264",
              pix_fmt: str = "yuv420p", rate: Fraction = Fraction(25)) -> None:
    rng = np.random.default_rng(1)
    base = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=rate)
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        if codec == "libx264":
            s.options = {"preset": "ultrafast"}
        for k in range(n):
            f = av.VideoFrame.from_ndarray(np.roll(base, k, axis=1), format="rgb24")
            f = f.reformat(format=pix_fmt)
            f.pts, f.time_base = k, 1 / rate
            c.mux(s.encode(f))
        c.mux(s.encode(None))


def count(path: Path) -> int:
    return sum(1 for _ in VideoReader(path))


def test_no_frame_count_in_header(tmp_path: Path) -> None:
    src = tmp_path / "in.mkv"  # Matroska stores no frame count
    make_clip(src, 5)
    assert VideoReader(src).info.num_frames is None
    out = tmp_path / "o.mp4"
    s = upscale_video(src, out, model="bicubic", **FAST)
    assert s["frames_out"] == 5 == count(out)


def test_wrong_frame_count_in_header(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "in.mp4"
    make_clip(src, 5)
    real = video_reader.container_info  # what VideoReader calls

    def lying(*a, **k):
        info = real(*a, **k)
        info.num_frames = 50
        return info

    monkeypatch.setattr(video_reader, "container_info", lying)
    assert VideoReader(src).info.num_frames == 50
    out = tmp_path / "o.mp4"
    s = upscale_video(src, out, model="stvsr-bicubic", **FAST)
    assert s["frames_in"] == 5 and s["frames_out"] == 9


def test_odd_frame_size(tmp_path: Path) -> None:
    src = tmp_path / "odd.mkv"
    make_clip(src, 3, w=33, h=27, codec="ffv1", pix_fmt="bgr0")
    out = tmp_path / "odd.mp4"
    with pytest.warns(RuntimeWarning, match="padding"):
        s = upscale_video(src, out, model="bicubic", scale=3, **FAST)
    assert (s["width"], s["height"]) == (99, 81)
    info = VideoReader(out).info
    assert (info.width, info.height) == (100, 82)  # yuv420p: last row/column repeated
    png = tmp_path / "odd_png"
    upscale_video(src, png, model="bicubic", scale=3, **FAST)
    assert read_image(next(png.glob("*.png"))).shape == (81, 99, 3)


@pytest.mark.parametrize("n,expected", [(1, 1), (2, 3)])
def test_one_and_two_frame_videos(tmp_path: Path, n: int, expected: int) -> None:
    src = tmp_path / "short.mp4"
    make_clip(src, n)
    out = tmp_path / "o.mp4"
    s = upscale_video(src, out, model="stvsr-bicubic", **FAST)
    assert s["frames_out"] == expected == count(out)
    out2 = tmp_path / "o2.mp4"
    assert upscale_video(src, out2, model="bicubic", **FAST)["frames_out"] == n


def _assert_untouched(tmp_path: Path, out: Path) -> None:
    assert out.read_bytes() == b"previous result"
    assert not Path(str(out) + ".stvsr-work").exists()
    assert not list(tmp_path.glob(".*partial*"))


def test_audio_only_file(tmp_path: Path) -> None:
    src = tmp_path / "sound.m4a"
    with av.open(str(src), "w", format="mp4") as c:
        a = c.add_stream("aac", rate=48000)
        a.layout = "mono"
        for i in range(0, 48000, 1024):
            af = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp",
                                            layout="mono")
            af.sample_rate, af.pts = 48000, i
            c.mux(a.encode(af))
        c.mux(a.encode(None))
    out = tmp_path / "o.mp4"
    out.write_bytes(b"previous result")
    with pytest.raises(VideoError, match="no video stream") as err:
        upscale_video(src, out, model="bicubic", **FAST)
    assert "\n" not in str(err.value)
    _assert_untouched(tmp_path, out)


def test_corrupt_file(tmp_path: Path) -> None:
    src = tmp_path / "junk.mp4"
    src.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    out = tmp_path / "o.mp4"
    out.write_bytes(b"previous result")
    with pytest.raises(VideoError, match="cannot open|no decodable") as err:
        upscale_video(src, out, model="bicubic", **FAST)
    assert "\n" not in str(err.value)
    _assert_untouched(tmp_path, out)


def test_truncated_file_gives_the_decodable_frames(tmp_path: Path) -> None:
    full = tmp_path / "full.mkv"
    make_clip(full, 20, codec="ffv1", pix_fmt="bgr0")
    data = full.read_bytes()
    src = tmp_path / "cut.mkv"
    src.write_bytes(data[: len(data) // 2])
    out = tmp_path / "o.mkv"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        s = upscale_video(src, out, model="bicubic", codec="ffv1", **FAST)
    assert 0 < s["frames_out"] < 20
    assert count(out) == s["frames_out"]


def test_paths_with_spaces_and_non_ascii(tmp_path: Path) -> None:
    folder = tmp_path / "mes vidéos à traiter" / "日本 語"
    folder.mkdir(parents=True)
    src = folder / "clip ñ.mp4"
    make_clip(src, 3)
    out = folder / "sortie é.mkv"
    assert upscale_video(src, out, model="bicubic", **FAST)["frames_out"] == 3
    assert count(out) == 3


def test_output_not_writable(tmp_path: Path) -> None:
    src = tmp_path / "in.mp4"
    make_clip(src, 2)
    with pytest.raises(VideoError, match="not writable|does not exist"):
        upscale_video(src, Path("/proc/stvsr-test-out.mp4"), model="bicubic", **FAST)
    with pytest.raises(VideoError, match="does not exist"):
        upscale_video(src, tmp_path / "missing" / "o.mp4", model="bicubic", **FAST)


def test_disk_full_keeps_finished_segments_and_resumes(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "in.mp4"
    make_clip(src, 8)
    out = tmp_path / "o.mp4"
    out.write_bytes(b"previous result")
    real_write = video.VideoWriter.write
    calls = {"n": 0}

    def failing(self, rgb, time=None):
        calls["n"] += 1
        if calls["n"] > 3:  # segments of 2, 3, 3 frames: fails in the second
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, rgb, time)

    monkeypatch.setattr(video.VideoWriter, "write", failing)
    with pytest.raises(StvsrError, match="disk full") as err:
        upscale_video(src, out, model="bicubic", segment_frames=3, **FAST)
    assert "\n" not in str(err.value)
    assert out.read_bytes() == b"previous result"
    work = tmp_path / "o.mp4.stvsr-work"
    assert (work / "seg000000.nut").exists() and not (work / "seg000001.nut").exists()
    monkeypatch.setattr(video.VideoWriter, "write", real_write)
    s = upscale_video(src, out, model="bicubic", segment_frames=3, **FAST)
    assert s["resumed_segments"] == 1 and count(out) == 8 and not work.exists()


def test_ctrl_c_leaves_resumable_state_and_no_finished_looking_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "in.mp4"
    make_clip(src, 6)
    out = tmp_path / "o.mp4"
    seen = {"n": 0}
    real = execute.restore_segment

    def interrupted(*a, **k):
        seen["n"] += 1
        if seen["n"] == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(execute, "restore_segment", interrupted)
    with pytest.raises(KeyboardInterrupt):
        upscale_video(src, out, model="bicubic", segment_frames=2, **FAST)
    assert not out.exists() and not list(tmp_path.glob(".*partial*"))
    assert (tmp_path / "o.mp4.stvsr-work" / "manifest.json").exists()
    monkeypatch.setattr(execute, "restore_segment", real)
    assert upscale_video(src, out, model="bicubic", segment_frames=2, **FAST)[
        "resumed_segments"] == 1


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["upscale", str(tmp_path / "nope.mp4"), str(tmp_path / "o.mp4")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "not found" in err and "\n" not in err
    src = tmp_path / "in.mp4"
    make_clip(src, 2)
    assert main(["upscale", str(src), str(tmp_path / "o.webm"), "--model", "bicubic"]) == 2
    assert "unsupported output" in capsys.readouterr().err
    assert main(["upscale", str(src), str(tmp_path / "o.mp4"), "--model", "bicubic",
                 "--fps-factor", "2"]) == 2
    assert "space-time" in capsys.readouterr().err


def test_rotation_and_non_square_pixels_carried_over(tmp_path: Path) -> None:
    src = tmp_path / "phone.mp4"
    with video.VideoWriter(src, fps=25, preset="ultrafast", rotation=-90,
                           sample_aspect_ratio=Fraction(4, 3)) as w:
        for k in range(3):
            w.write(np.full((24, 32, 3), 40 * k, np.uint8))
    info = VideoReader(src).info
    assert info.rotation == -90 and info.sample_aspect_ratio == Fraction(4, 3)
    out = tmp_path / "o.mp4"
    upscale_video(src, out, model="bicubic", **FAST)
    oinfo = VideoReader(out).info
    assert oinfo.rotation == -90 and oinfo.sample_aspect_ratio == Fraction(4, 3)
    assert (oinfo.width, oinfo.height) == (128, 96)  # stored unrotated; players rotate it
    png = tmp_path / "png"
    upscale_video(src, png, model="bicubic", **FAST)
    assert read_image(next(png.glob("*.png"))).shape == (128, 96, 3)  # PNGs are upright


def test_untrained_model_says_so(tmp_path, capsys) -> None:
    """A preset without weights runs end to end but warns that its output is meaningless."""
    import av as _av
    import numpy as _np

    from stvsr.infer.engine import upscale_video

    src = tmp_path / "in.mp4"
    with _av.open(str(src), "w") as c:
        v = c.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 32, 24, "yuv420p"
        for i in range(5):
            img = _np.full((24, 32, 3), 40 * i, _np.uint8)
            for p in v.encode(_av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in v.encode():
            c.mux(p)
    lines: list[str] = []
    out = tmp_path / "out.mp4"
    summary = upscale_video(src, out, model="edvr-m", weights=None, progress="none",
                            log=lines.append)
    assert out.is_file() and summary["frames_out"] == 5
    assert any("random initialisation" in line for line in lines)
    # the plan names the deformable-conv implementation that will run
    from stvsr.ops import native

    lines.clear()
    plan = upscale_video(src, tmp_path / "plan.mp4", model="edvr-m", weights=None,
                         progress="none", log=lines.append, dry_run=True)
    expected = "native C kernel" if native.available() else "pure PyTorch"
    assert expected in plan["dcn_backend"] and any(expected in line for line in lines)
    plan = upscale_video(src, tmp_path / "plan.mp4", model="bicubic", progress="none",
                         dry_run=True)
    assert plan["dcn_backend"] is None
