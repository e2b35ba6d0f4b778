"""Which model `stvsr upscale` picks by default: lossy-coded input vs lossless sources."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from stvsr.data.video import VideoReader, write_image
from stvsr.infer.defaults import (
    COMPRESSED_MIN_CRF,
    DEFAULT_COMPRESSED_MODEL,
    DEFAULT_MODEL,
    INTERPOLATION_MODEL,
)
from stvsr.infer.source import default_model, source_coding

_X265 = "log-level=none:pools=none:frame-threads=1"  # x265 under 64 px corrupts memory


def _encode(path: Path, codec: str, options: dict[str, str], pix_fmt: str) -> Path:
    frames = (np.random.default_rng(0).random((4, 64, 96, 3)) * 255).astype(np.uint8)
    with av.open(str(path), "w") as out:
        s = out.add_stream(codec, rate=25)
        s.width, s.height, s.pix_fmt, s.options = 96, 64, pix_fmt, options
        for f in frames:
            out.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        out.mux(s.encode(None))
    return path


@pytest.mark.parametrize(("name", "codec", "options", "pix_fmt", "lossy"), [
    ("crf.mp4", "libx264", {"crf": "28"}, "yuv420p", True),
    ("crf12.mp4", "libx264", {"crf": "12"}, "yuv420p", True),
    ("qp0.mp4", "libx264", {"qp": "0"}, "yuv444p", False),
    ("hevc.mkv", "libx265", {"crf": "30", "x265-params": _X265}, "yuv420p", True),
    ("hevc_lossless.mkv", "libx265", {"x265-params": "lossless=1:" + _X265}, "yuv444p",
     False),
    ("ffv1.mkv", "ffv1", {}, "yuv444p", False),
    ("mpeg4.avi", "mpeg4", {}, "yuv420p", True),
])
def test_source_coding(tmp_path: Path, name, codec, options, pix_fmt, lossy) -> None:
    info = VideoReader(_encode(tmp_path / name, codec, options, pix_fmt)).info
    coding = source_coding(info)
    assert coding.lossy is lossy and coding.reason
    model, why = default_model(info, None)
    high_quality = coding.crf is not None and coding.crf < COMPRESSED_MIN_CRF
    assert model == (DEFAULT_COMPRESSED_MODEL if lossy and not high_quality else DEFAULT_MODEL)
    assert why and ("high quality" in why) == high_quality
    assert coding.crf is not None or "crf" not in name
    assert default_model(info, 1)[0] == INTERPOLATION_MODEL


def test_frame_folders(tmp_path: Path) -> None:
    frame = np.zeros((16, 16, 3), np.uint8)
    for ext, lossy in ((".png", False), (".jpg", True)):
        folder = tmp_path / ext[1:]
        folder.mkdir()
        for i in range(3):
            write_image(folder / f"{i:03d}{ext}", frame)
        assert source_coding(VideoReader(folder).info).lossy is lossy


def test_progress_shows_time_and_work_during_a_long_chunk(monkeypatch) -> None:
    """While no frame comes out (a chunk being restored) the bar keeps redrawing its clock and
    says what is being worked on; JSON lines carry the same."""
    import io
    import json
    import time

    from stvsr.infer import progress as prog

    monkeypatch.setattr(prog, "HEARTBEAT_S", 0.02)
    out = io.StringIO()
    bar = prog.Progress("bar", 10, stream=out)
    bar.status("segment 1/2: input frames 0-29")
    time.sleep(0.3)
    redraws = out.getvalue().count("\r")
    bar.close()
    assert "segment 1/2: input frames 0-29" in out.getvalue()
    assert redraws >= 5  # the heartbeat redrew it while nothing was done
    lines = io.StringIO()
    js = prog.Progress("json", 10, stream=lines)
    js.status("segment 2/2")
    js.update(3)
    js.close()
    last = json.loads(lines.getvalue().strip().splitlines()[-1])
    assert last["status"] == "segment 2/2" and last["frames_done"] == 3 and "elapsed_s" in last
