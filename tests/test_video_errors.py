"""Streaming video I/O (stvsr.data.video): bad input and unwritable output raise one-line
``VideoError``s, and nothing partial is presented as finished.

Clips are generated with PyAV in ``tmp_path`` (helpers in ``_video_clips``).
"""

from __future__ import annotations

import os
import warnings
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from _video_clips import (
    assert_one_line,
    noisy,
    smooth,
    write_clip,
)

from stvsr.data.video import (
    VideoReader,
    VideoWriter,
    count_frames,
    list_frame_files,
    probe,
)
from stvsr.errors import VideoError

# ------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["missing", "random", "empty", "text", "audio_only"])
def test_bad_inputs_raise_video_error(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "bad.mp4"
    if kind == "random":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("this is not a video\n" * 20)
    elif kind == "audio_only":
        path = tmp_path / "sound.mka"
        with av.open(str(path), "w") as c:
            a = c.add_stream("aac", rate=48000)
            af = av.AudioFrame.from_ndarray(
                np.zeros((1, 2048), np.float32), format="fltp", layout="mono"
            )
            af.sample_rate, af.pts = 48000, 0
            c.mux(a.encode(af))
            c.mux(a.encode())
    with pytest.raises(VideoError) as exc:
        VideoReader(path)
    assert_one_line(exc)
    if kind == "audio_only":
        assert "no video stream" in str(exc.value)
    with pytest.raises(VideoError):
        probe(path)


def test_missing_or_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(VideoError) as exc:
        list_frame_files(tmp_path / "nope")
    assert_one_line(exc)
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(VideoError) as exc:
        VideoReader(tmp_path)
    assert_one_line(exc)


def test_truncated_file_yields_what_it_can(tmp_path: Path) -> None:
    full = tmp_path / "full.mkv"
    write_clip(full, 30, Fraction(25), options={"g": "5"})
    cut = tmp_path / "cut.mkv"
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.warns(RuntimeWarning, match="truncated"):
        got = list(VideoReader(cut))
    assert 5 <= len(got) < 30
    mp4 = tmp_path / "full.mp4"
    write_clip(mp4, 10, Fraction(25))
    (tmp_path / "cut.mp4").write_bytes(mp4.read_bytes()[:2000])  # index (moov) at the end: lost
    with pytest.raises(VideoError) as exc:
        VideoReader(tmp_path / "cut.mp4")
    assert_one_line(exc)


def _unwritable_dir(tmp_path: Path) -> Path:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        (ro / "probe").write_bytes(b"")
    except OSError:
        return ro
    (ro / "probe").unlink()
    if Path("/sys").is_dir() and not os.access("/sys", os.W_OK):
        return Path("/sys")
    try:  # root: chmod does not stop us; /sys is read-only in most containers
        (Path("/sys") / ".stvsr_probe").write_bytes(b"")
    except OSError:
        return Path("/sys")
    pytest.skip("no unwritable folder available (running as root on a writable /sys)")


def test_unwritable_output_raises_video_error(tmp_path: Path) -> None:
    ro = _unwritable_dir(tmp_path)
    try:
        for name in ("out.mp4", "frames"):
            with pytest.raises(VideoError) as exc:
                VideoWriter(ro / name, fps=25)
            assert_one_line(exc)
            assert "not writable" in str(exc.value)
    finally:
        (tmp_path / "ro").chmod(0o755)
    with pytest.raises(VideoError) as exc:
        VideoWriter(tmp_path / "no such dir" / "out.mp4", fps=25)
    assert_one_line(exc)
    with pytest.raises(VideoError):
        VideoWriter(tmp_path / "out.mp3", fps=25)
    with pytest.raises(VideoError):
        VideoWriter(tmp_path / "out.mp4", fps=25, codec="mpeg2video")


@pytest.mark.parametrize("name", ["out.mp4", "out frames"])
def test_partial_output_never_presented_as_finished(tmp_path: Path, name: str) -> None:
    target = tmp_path / name

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with VideoWriter(target, fps=25) as w:
            for i in range(3):
                w.write(smooth(i))
            raise Boom
    assert not target.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    # a finished output exists: a failed rewrite leaves it untouched
    write_clip(target, 4, Fraction(25))
    snapshot = {
        p.name: p.read_bytes() for p in ([target] if target.is_file() else sorted(target.iterdir()))
    }
    with pytest.raises(Boom):
        with VideoWriter(target, fps=25) as w:
            w.write(noisy(0))
            raise Boom
    after = {
        p.name: p.read_bytes() for p in ([target] if target.is_file() else sorted(target.iterdir()))
    }
    assert after == snapshot
    assert [p.name for p in tmp_path.iterdir()] == [name]
    # a successful rewrite replaces it
    write_clip(target, 2, Fraction(25))
    assert count_frames(target) == 2


def test_writer_rejects_bad_use(tmp_path: Path) -> None:
    w = VideoWriter(tmp_path / "t.mp4", fps=25)
    w.write(smooth(0), Fraction(1, 5))
    with pytest.raises(VideoError):
        w.write(smooth(1), Fraction(1, 5))  # times must increase
    with pytest.raises(VideoError):
        w.write(smooth(1)[:40])  # size change
    w.abort()
    assert not list(tmp_path.iterdir())
    with pytest.raises(VideoError, match="no frames"):
        with VideoWriter(tmp_path / "none.mp4", fps=25):
            pass
    assert not list(tmp_path.iterdir())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(VideoError):
            VideoWriter(tmp_path / "c.mkv", fps=25, color={"matrix": "nonsense"})


def test_disk_full_mid_write_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "full disk.mp4"
    w = VideoWriter(target, fps=25)
    w.write(smooth(0))

    class FullDisk:  # the real container, except that muxing fails like a full disk
        def __init__(self, inner: object) -> None:
            self.inner = inner

        def mux(self, packets: object) -> None:
            raise OSError(28, "No space left on device")

        def __getattr__(self, name: str) -> object:
            return getattr(self.inner, name)

    muxer = w._muxer  # the component that writes the container
    monkeypatch.setattr(muxer, "container", FullDisk(muxer.container))
    with pytest.raises(VideoError, match="No space left") as exc:
        for i in range(1, 40):  # x264 buffers frames: the failure comes once packets flow
            w.write(smooth(i))
        w.close()
    assert_one_line(exc)
    assert not list(tmp_path.iterdir())
