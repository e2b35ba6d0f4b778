"""Streaming video I/O (stvsr.data.video): lossy and lossless round trips, exact timing, names
and folders.

Clips are generated with PyAV in ``tmp_path`` (64x48, a few dozen frames at most; helpers in
``_video_clips``).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from _video_clips import (
    NTSC_FILM,
    NTSC_VIDEO,
    H,
    W,
    noisy,
    smooth,
    write_clip,
)
from PIL import Image

from stvsr.data.video import (
    VideoReader,
    VideoWriter,
    concat_segments,
    count_frames,
    list_frame_files,
    probe,
    read_image,
    write_image,
)

# ------------------------------------------------------------------------------------------
# Round trips
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,codec",
    [("clip.mp4", "h264"), ("clip.mkv", "h264"), ("clip.mov", "h265"), ("clip.avi", "libx264")],
)
def test_lossy_round_trip(tmp_path: Path, name: str, codec: str) -> None:
    path = tmp_path / name
    frames = write_clip(path, 12, Fraction(25), codec=codec, crf=12)
    with VideoReader(path) as reader:
        info = reader.info
        got = list(reader)
    assert (info.width, info.height, info.pix_fmt, info.bit_depth) == (W, H, "yuv420p", 8)
    assert info.color["matrix"] == "bt709" and info.color_range == "tv"
    assert len(got) == 12 and [f.index for f in got] == list(range(12))
    for f, ref in zip(got, frames):
        assert f.rgb.shape == (H, W, 3) and f.rgb.dtype == np.uint8
        assert np.abs(f.rgb.astype(int) - ref).mean() < 3.0
    assert not list(tmp_path.glob(".*partial*"))


@pytest.mark.parametrize("ext", [".mkv", ".avi", ".mp4"])
def test_ffv1_is_bit_exact(tmp_path: Path, ext: str) -> None:
    path = tmp_path / f"lossless{ext}"
    frames = [noisy(i) for i in range(10)]
    with VideoWriter(path, fps=Fraction(25), codec="ffv1") as w:
        for f in frames:
            w.write(f)
    reader = VideoReader(path)
    assert reader.info.pix_fmt == "bgr0" and reader.info.is_rgb
    got = [f.rgb for f in reader]
    assert len(got) == 10
    for a, b in zip(got, frames):
        np.testing.assert_array_equal(a, b)


def test_x265_lossless_rgb_is_bit_exact(tmp_path: Path) -> None:
    path = tmp_path / "lossless265.mkv"
    frames = [noisy(i) for i in range(4)]
    with VideoWriter(path, fps=25, codec="hevc", lossless=True, preset="ultrafast") as w:
        for f in frames:
            w.write(f)
    got = [f.rgb for f in VideoReader(path)]
    assert probe(path).pix_fmt == "gbrp"
    for a, b in zip(got, frames):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------------------
# Timing
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fps", [NTSC_FILM, NTSC_VIDEO])
@pytest.mark.parametrize("ext", [".mp4", ".mkv", ".mov", ".avi"])
def test_exact_ntsc_rates_survive(tmp_path: Path, fps: Fraction, ext: str) -> None:
    path = tmp_path / f"ntsc{ext}"
    write_clip(path, 15, fps)
    reader = VideoReader(path)
    assert reader.info.frame_rate == fps
    assert isinstance(reader.info.frame_rate, Fraction)
    times = [f.time for f in reader]
    assert times == [Fraction(k) / fps for k in range(15)]


@pytest.mark.parametrize("ext", [".mp4", ".mkv"])
def test_doubled_rate_has_exact_midpoints(tmp_path: Path, ext: str) -> None:
    src = tmp_path / "src.mp4"
    write_clip(src, 8, NTSC_FILM)
    out = tmp_path / f"double{ext}"
    reader = VideoReader(src)
    half = Fraction(1, 2) / reader.info.frame_rate
    with VideoWriter(out, fps=reader.info.frame_rate * 2) as w:
        for f in reader:
            w.write(f.rgb, f.time)
            w.write(f.rgb, f.time + half)
    back = VideoReader(out)
    assert back.info.frame_rate == Fraction(48000, 1001)
    assert [f.time for f in back] == [k * half for k in range(16)]


def _declared_rate(path: Path) -> Fraction:
    with av.open(str(path)) as c:
        rate = c.streams.video[0].average_rate
    assert rate is not None
    return Fraction(rate)


def _assert_rate_reads_back(path: Path, fps: Fraction, n: int) -> None:
    reader = VideoReader(path)
    assert reader.info.frame_rate == fps
    assert [f.time for f in reader] == [k / fps for k in range(n)]
    declared = _declared_rate(path)
    if path.suffix == ".mkv":
        # FFmpeg's Matroska demuxer derives the rate from the DefaultDuration (whole ns) and
        # reduces it to terms of at most 30000 (48000/1001 -> 7001/146): exact is impossible,
        # so the declared rate must be the nearest such value (and the reader snaps it back)
        assert abs(declared - fps) <= fps * Fraction(1, 10**6)
    else:
        assert declared == fps


@pytest.mark.parametrize("fps", [Fraction(48000, 1001), Fraction(60000, 1001)])
@pytest.mark.parametrize("ext", [".mkv", ".mp4", ".mov"])
def test_declared_rate_reads_back_exactly(tmp_path: Path, fps: Fraction, ext: str) -> None:
    path = tmp_path / f"rate{ext}"
    with VideoWriter(path, fps=fps, preset="ultrafast") as w:
        for i in range(12):
            w.write(smooth(i, 16, 16))
    _assert_rate_reads_back(path, fps, 12)


@pytest.mark.parametrize("ext", [".mkv", ".mp4", ".mov"])
def test_joined_segments_declare_the_exact_rate(tmp_path: Path, ext: str) -> None:
    fps = Fraction(48000, 1001)
    segments = []
    for s in range(2):  # B-frames (preset medium) make decode order differ from display order
        seg = tmp_path / f"seg{s}.nut"
        times = [Fraction(6 * s + k) / fps for k in range(6)]
        with VideoWriter(seg, fps=fps, time_base=Fraction(1, 720000)) as w:
            for k, t in enumerate(times):
                w.write(smooth(6 * s + k, 16, 16), t)
        segments.append((seg, times))
    out = tmp_path / f"joined{ext}"
    assert concat_segments(segments, out, fps=fps, time_base=Fraction(1, 720000)) == 12
    _assert_rate_reads_back(out, fps, 12)


def test_variable_frame_rate_times_survive_mp4(tmp_path: Path) -> None:
    times = [Fraction(0), Fraction(1, 30), Fraction(1, 10), Fraction(7, 60), Fraction(1, 2)]
    path = tmp_path / "vfr.mp4"
    with VideoWriter(path, fps=30) as w:
        for i, t in enumerate(times):
            w.write(smooth(i), t)
    assert [f.time for f in VideoReader(path)] == times


def test_frame_count_header_and_exact(tmp_path: Path) -> None:
    mp4, mkv = tmp_path / "c.mp4", tmp_path / "c.mkv"
    write_clip(mp4, 17, Fraction(25))
    write_clip(mkv, 17, Fraction(25))
    assert probe(mp4).num_frames == 17
    assert probe(mkv).num_frames is None  # Matroska has no frame count in its header
    for p in (mp4, mkv):
        assert count_frames(p) == 17
        assert count_frames(p, decode=True) == 17
        assert sum(1 for _ in VideoReader(p)) == 17


def test_range_selection_seeks_exactly(tmp_path: Path) -> None:
    path = tmp_path / "range.mp4"
    # a keyframe every 5 frames so the seek has to land before the start and skip forward
    write_clip(path, 30, NTSC_FILM, options={"g": "5", "keyint_min": "5"})
    start, end = 0.5, 1.0
    got = list(VideoReader(path, start=start, end=end))
    expect = [k for k in range(30) if start <= k / NTSC_FILM < end]
    assert [f.index for f in got] == expect
    assert [f.time for f in got] == [Fraction(k) / NTSC_FILM for k in expect]
    full = {f.index: f.rgb for f in VideoReader(path)}
    for f in got:
        np.testing.assert_array_equal(f.rgb, full[f.index])


# ------------------------------------------------------------------------------------------
# Names, folders, PNG output
# ------------------------------------------------------------------------------------------


def test_names_with_spaces_and_non_ascii(tmp_path: Path) -> None:
    folder = tmp_path / "my clips ü 漢字"
    folder.mkdir()
    path = folder / "Fête du vidéo 01 ☃.mkv"
    write_clip(path, 5, Fraction(25))
    assert path.is_file() and probe(path).num_frames is None
    assert len(list(VideoReader(path))) == 5


def test_folder_natural_sort_and_times(tmp_path: Path) -> None:
    names = ["Frame 10.png", "Frame 2.png", "Frame 1.png", "frame 3.jpg", "Frame 100.png"]
    values = {
        "Frame 1.png": 10,
        "Frame 2.png": 20,
        "frame 3.jpg": 30,
        "Frame 10.png": 100,
        "Frame 100.png": 200,
    }
    for n in names:
        rgb = np.full((6, 8, 3), values[n], np.uint8)
        if n.endswith(".png"):
            write_image(tmp_path / n, rgb)
        else:
            Image.fromarray(rgb).save(tmp_path / n, quality=100)
    (tmp_path / "notes.txt").write_text("not a frame")
    files = list_frame_files(tmp_path)
    assert [f.name for f in files] == [
        "Frame 1.png",
        "Frame 2.png",
        "frame 3.jpg",
        "Frame 10.png",
        "Frame 100.png",
    ]
    reader = VideoReader(tmp_path, fps_for_folders=NTSC_VIDEO)
    assert reader.info.is_folder and reader.info.num_frames == 5
    got = list(reader)
    assert [int(f.rgb[0, 0, 0]) for f in got] == [10, 20, 30, 100, 200]
    assert [f.time for f in got] == [Fraction(k) / NTSC_VIDEO for k in range(5)]
    assert [f.index for f in VideoReader(tmp_path, start=0.1)] == [3, 4]  # 3 / 29.97 > 0.1
    assert [f.index for f in VideoReader(tmp_path, fps_for_folders=10, start=0.1, end=0.3)] == [
        1,
        2,
    ]


def test_png_folder_output_round_trip(tmp_path: Path) -> None:
    out = tmp_path / "out frames"
    frames = [noisy(i) for i in range(12)]
    with VideoWriter(out, fps=25) as w:
        for f in frames:
            w.write(f)
    assert sorted(p.name for p in out.iterdir())[:2] == ["00000000.png", "00000001.png"]
    got = [f.rgb for f in VideoReader(out)]
    assert len(got) == 12
    for a, b in zip(got, frames):
        np.testing.assert_array_equal(a, b)


def test_16bit_png_round_trip(tmp_path: Path) -> None:
    img = np.random.default_rng(0).integers(0, 65536, (5, 7, 3), dtype=np.uint16)
    write_image(tmp_path / "x.png", img)
    np.testing.assert_array_equal(read_image(tmp_path / "x.png", high_bit_depth=True), img)
    low = read_image(tmp_path / "x.png")
    assert low.dtype == np.uint8
    assert np.abs(low.astype(int) - img / 257).max() <= 0.5 + 1e-9


def test_vid4_calendar_folder(vid4_dir: Path) -> None:
    folder = vid4_dir / "GT" / "calendar"
    files = list_frame_files(folder)
    assert files[0].name == "Frame 001.png" and len(files) == 41
    reader = VideoReader(folder)
    assert (reader.info.width, reader.info.height, reader.info.num_frames) == (720, 576, 41)
    first = next(iter(reader))
    assert first.rgb.shape == (576, 720, 3) and first.index == 0 and first.time == 0
    np.testing.assert_array_equal(first.rgb, read_image(files[0]))
