"""Streaming video I/O (stvsr.data.video): what travels beside the pictures: audio and subtitle
copies, bit depth, colour matrices and tags, rotation, odd sizes, HDR.

Clips are generated with PyAV in ``tmp_path`` (helpers in ``_video_clips``).
"""

from __future__ import annotations

import warnings
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from _video_clips import (
    NTSC_FILM,
    H,
    W,
    make_av_source,
    noisy,
    smooth,
    write_clip,
)
from av.video.reformatter import ColorRange, Colorspace

from stvsr.data.video import (
    VideoReader,
    VideoWriter,
    concat_segments,
    probe,
)

# ------------------------------------------------------------------------------------------
# Audio
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ext", [".mp4", ".mkv"])
def test_audio_is_copied_not_reencoded(tmp_path: Path, ext: str) -> None:
    src = tmp_path / "with audio.mp4"
    make_av_source(src, 24, NTSC_FILM)
    assert probe(src).has_audio and probe(src).audio_streams == 1
    out = tmp_path / f"out{ext}"
    reader = VideoReader(src)
    with VideoWriter(out, fps=reader.info.frame_rate, audio_from=src) as w:
        for f in reader:
            w.write(f.rgb, f.time)
    info = probe(out)
    assert info.has_audio and info.frame_rate == NTSC_FILM
    with av.open(str(src)) as a, av.open(str(out)) as b:
        pa = [bytes(p) for p in a.demux(a.streams.audio[0]) if p.size]
        pb = [bytes(p) for p in b.demux(b.streams.audio[0]) if p.size]
    # the very same packets: remuxed, not re-encoded; Matroska cannot hold the AAC priming
    # packet that MP4 puts before time 0, so it is left out there (see the test below)
    assert pb == pa[len(pa) - len(pb):] and len(pa) - len(pb) == (ext == ".mkv")
    with av.open(str(out)) as c:
        vs, aus = c.streams.video[0], c.streams.audio[0]
        v_end = max(p.pts + p.duration for p in c.demux(vs) if p.size) * vs.time_base
        c.seek(0)
        a_pk = [p for p in c.demux(aus) if p.size]
        a_start = a_pk[0].pts * aus.time_base
        a_end = (a_pk[-1].pts + a_pk[-1].duration) * aus.time_base
    frame = 1 / NTSC_FILM
    assert abs(a_start) <= frame
    assert abs(a_end - v_end) <= frame


def _starts(path: Path) -> tuple[Fraction, Fraction, int]:
    """First video and first audio packet times (s) of ``path``, and the audio frame size."""
    with av.open(str(path)) as c:
        vs, aus = c.streams.video[0], c.streams.audio[0]
        v0 = min(p.pts for p in c.demux(vs) if p.size) * vs.time_base
        c.seek(0)
        a = [p for p in c.demux(aus) if p.size]
        return v0, a[0].pts * aus.time_base, aus.codec_context.frame_size or 1024


@pytest.mark.parametrize("how", ["writer", "concat"])
def test_mkv_with_copied_aac_starts_at_zero(tmp_path: Path, how: str) -> None:
    # MP4 stores the AAC priming packet at -1024 samples; Matroska cannot hold negative times,
    # and FFmpeg used to shift the whole file (video first packet at ~21 ms, header duration
    # beyond the video's end: "video ended at ... but the header says ...").
    fps, n = Fraction(120), 24
    src = tmp_path / "src.mp4"
    make_av_source(src, n, fps)
    v_in, a_in, frame_size = _starts(src)
    assert a_in < v_in == 0
    out = tmp_path / "out.mkv"
    if how == "writer":
        with VideoWriter(out, fps=fps, audio_from=src) as w:
            for f in VideoReader(src):
                w.write(f.rgb, f.time)
    else:  # the path of `stvsr upscale`: segments joined by remuxing
        segments = []
        frames = list(VideoReader(src))
        for s in range(2):
            seg = tmp_path / f"seg{s}.nut"
            part = frames[s * n // 2:(s + 1) * n // 2]
            with VideoWriter(seg, fps=fps) as w:
                for f in part:
                    w.write(f.rgb, f.time)
            segments.append((seg, [f.time for f in part]))
        assert concat_segments(segments, out, fps=fps, audio_from=src) == n
    v_out, a_out, _ = _starts(out)
    assert v_out == 0
    assert abs((a_out - v_out) - (a_in - v_in)) <= Fraction(frame_size, 48000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "header says ..." warning
        info = probe(out)
        times = [f.time for f in VideoReader(out)]
    assert info.start_time == 0 and info.has_audio
    assert times == [Fraction(k) / fps for k in range(n)]
    assert info.duration is not None and abs(info.duration - n / fps) <= 1 / fps


def test_mkv_audio_source_keeps_its_codec_delay(tmp_path: Path) -> None:
    # a Matroska source stores the priming packet before 0 through its CodecDelay, which the
    # copy carries over: nothing is dropped, nothing shifted
    src = tmp_path / "src.mkv"
    make_av_source(src, 12, Fraction(25))
    out = tmp_path / "out.mkv"
    with VideoWriter(out, fps=25, audio_from=src) as w:
        for f in VideoReader(src):
            w.write(f.rgb, f.time)
    assert _starts(out)[:2] == _starts(src)[:2]
    with av.open(str(src)) as a, av.open(str(out)) as b:
        assert [bytes(p) for p in a.demux(a.streams.audio[0]) if p.size] == [
            bytes(p) for p in b.demux(b.streams.audio[0]) if p.size
        ]


def test_audio_copy_to_png_folder_warns(tmp_path: Path) -> None:
    src = tmp_path / "a.mp4"
    make_av_source(src, 3, Fraction(25))
    with pytest.warns(RuntimeWarning, match="no audio"):
        with VideoWriter(tmp_path / "frames", fps=25, audio_from=src) as w:
            w.write(smooth(0))


# ------------------------------------------------------------------------------------------
# Bit depth and colour
# ------------------------------------------------------------------------------------------


def gradient16() -> np.ndarray:
    """Steps of 1/4 of an 8-bit level: only a >8-bit path can keep them."""
    ramp = np.arange(W, dtype=np.float64) / W * 16 * 257 + 100 * 257
    img = np.broadcast_to(ramp[None, :, None], (H, W, 3)).copy()
    img[..., 1] += 30 * 257
    return img.round().astype(np.uint16)


@pytest.mark.parametrize("codec,pix_fmt", [("h265", "yuv420p10le"), ("ffv1", "gbrp10le")])
def test_10bit_survives(tmp_path: Path, codec: str, pix_fmt: str) -> None:
    path = tmp_path / "ten.mkv"
    img = gradient16()
    with VideoWriter(path, fps=25, codec=codec, pix_fmt=pix_fmt, crf=4, preset="ultrafast") as w:
        for _ in range(3):
            w.write(img)
    reader = VideoReader(path, high_bit_depth=True)
    assert reader.info.bit_depth == 10 and reader.info.pix_fmt == pix_fmt
    got = next(iter(reader)).rgb
    assert got.dtype == np.uint16
    err16 = np.abs(got.astype(np.float64) - img).mean() / 257  # in 8-bit levels
    assert err16 < 0.2
    as8 = next(iter(VideoReader(path))).rgb
    assert as8.dtype == np.uint8
    assert np.abs(as8.astype(np.float64) - img / 257).mean() > err16  # 8 bits lose the steps


def test_writer_uses_and_tags_the_matrix(tmp_path: Path) -> None:
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = 255
    ys = {}
    for matrix in ("bt709", "bt470bg"):
        path = tmp_path / f"{matrix}.mp4"
        with VideoWriter(path, fps=25, color={"matrix": matrix, "range": "tv"}) as w:
            w.write(red)
        assert probe(path).color_space == matrix and probe(path).color_range == "tv"
        with av.open(str(path)) as c:
            ys[matrix] = int(next(c.decode(video=0)).to_ndarray()[8, 8])
        np.testing.assert_allclose(next(iter(VideoReader(path))).rgb[8, 8], [255, 0, 0], atol=3)
    # Y of pure red: 16 + 219 * Kr, Kr = 0.2126 (BT.709) or 0.299 (BT.601)
    assert abs(ys["bt709"] - 62.6) <= 1.5 and abs(ys["bt470bg"] - 81.5) <= 1.5


def test_untagged_hd_stream_decodes_as_bt709(tmp_path: Path) -> None:
    """No colour tags: HD is BT.709 (player convention), not PyAV's BT.601 default."""
    path = tmp_path / "untagged_hd.mkv"
    rgb = np.zeros((720, 1280, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 220, 40, 90
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25, options={"preset": "ultrafast", "qp": "0"})
        s.width, s.height, s.pix_fmt = 1280, 720, "yuv444p"
        f = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
            format="yuv444p", dst_colorspace=Colorspace.ITU709, dst_color_range=ColorRange.MPEG
        )
        f.colorspace, f.pts = 2, 0  # unspecified
        c.mux(s.encode(f))
        c.mux(s.encode())
    info = probe(path)
    assert info.color_space == "unknown" and info.color["matrix"] == "bt709"
    got = next(iter(VideoReader(path))).rgb
    assert np.abs(got[360, 640].astype(int) - [220, 40, 90]).max() <= 2


def test_color_tags_carry_over(tmp_path: Path) -> None:
    src = tmp_path / "sd.mkv"
    write_clip(
        src,
        2,
        Fraction(25),
        color={"matrix": "smpte170m", "primaries": "smpte170m", "trc": "smpte170m", "range": "tv"},
    )
    info = probe(src)
    out = tmp_path / "copy.mkv"
    write_clip(out, 2, Fraction(25), color=info.color)
    got = probe(out)
    assert (got.color_space, got.color_primaries, got.color_trc, got.color_range) == (
        "smpte170m",
        "smpte170m",
        "smpte170m",
        "tv",
    )


def test_rotation_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "phone.mp4"
    write_clip(path, 2, Fraction(30), rotation=90)
    assert probe(path).rotation == 90
    assert probe(tmp_path / "phone.mp4").width == W  # frames stay unrotated


def test_odd_size_is_padded_by_edge_replication(tmp_path: Path) -> None:
    path = tmp_path / "odd.mkv"
    img = noisy(0)[:47, :63]
    with pytest.warns(RuntimeWarning, match="padding 63x47 to 64x48"):
        with VideoWriter(path, fps=25, codec="ffv1", pix_fmt="yuv420p") as w:
            w.write(img)
    got = next(iter(VideoReader(path))).rgb
    assert got.shape == (48, 64, 3)
    with VideoWriter(tmp_path / "odd_rgb.mkv", fps=25, codec="ffv1") as w:  # RGB: no padding
        w.write(img)
    np.testing.assert_array_equal(next(iter(VideoReader(tmp_path / "odd_rgb.mkv"))).rgb, img)


def test_subtitles_copied_to_mkv_and_skipped_for_mp4(tmp_path: Path) -> None:
    base = tmp_path / "base.mp4"
    make_av_source(base, 10, Fraction(25), audio=False)
    srt = tmp_path / "subs.srt"
    srt.write_text("1\n00:00:00,100 --> 00:00:00,300\nHello\n")
    src = tmp_path / "with subs.mkv"
    with av.open(str(base)) as a, av.open(str(srt)) as b, av.open(str(src), "w") as o:
        streams = {
            (0, 0): o.add_stream_from_template(a.streams.video[0]),
            (1, 0): o.add_stream_from_template(b.streams.subtitles[0]),
        }
        for k, c in enumerate((a, b)):
            for p in c.demux():
                if p.dts is not None:
                    p.stream = streams[(k, 0)]
                    o.mux(p)
    assert probe(src).subtitle_streams == 1
    frames = list(VideoReader(src))
    with VideoWriter(tmp_path / "o.mkv", fps=25, audio_from=src) as w:
        for f in frames:
            w.write(f.rgb, f.time)
    assert probe(tmp_path / "o.mkv").subtitle_streams == 1
    with av.open(str(tmp_path / "o.mkv")) as c:
        pk = [p for p in c.demux(c.streams.subtitles[0]) if p.size]
        assert bytes(pk[0]) == b"Hello" and pk[0].pts * pk[0].time_base == Fraction(1, 10)
    with pytest.warns(RuntimeWarning, match="cannot be stored in .mp4"):
        with VideoWriter(tmp_path / "o.mp4", fps=25, audio_from=src) as w:
            for f in frames:
                w.write(f.rgb, f.time)
    assert probe(tmp_path / "o.mp4").subtitle_streams == 0
    # a cut inside the subtitle (0.1-0.3 s): Matroska cannot start it before 0, so it is trimmed
    with VideoWriter(tmp_path / "cut.mkv", fps=25, audio_from=src, audio_range=(0.2, None)) as w:
        for f in frames[5:]:
            w.write(f.rgb, f.time - Fraction(1, 5))
    with av.open(str(tmp_path / "cut.mkv")) as c:
        pk = [p for p in c.demux(c.streams.subtitles[0]) if p.size]
        assert bytes(pk[0]) == b"Hello" and pk[0].pts == 0
        assert pk[0].duration * pk[0].time_base == Fraction(1, 10)
        c.seek(0)
        assert min(p.pts for p in c.demux(c.streams.video[0]) if p.size) == 0


def test_hdr_input_warns(tmp_path: Path) -> None:
    path = tmp_path / "hdr.mkv"
    # FFV1, not x265: the check is about the reader's tags, and x265 once failed to finish a
    # 2-frame file under heavy CPU load ("Invalid argument"), which made this test flaky.
    write_clip(
        path,
        2,
        Fraction(25),
        codec="ffv1",
        pix_fmt="yuv420p10le",
        color={"matrix": "bt2020nc", "primaries": "bt2020", "trc": "smpte2084"},
    )
    with pytest.warns(RuntimeWarning, match="HDR"):
        reader = VideoReader(path, high_bit_depth=True)
    assert reader.info.is_hdr and reader.info.color["matrix"] == "bt2020nc"
